/**
 * Notification settings through `lambkin config` (a local stack file: secrets are sealed with the
 * data directory's key) and the pure parts: merging, the failure tail.
 */
import { rmSync } from 'node:fs';
import { formatStepFooter, formatStepHeader } from '../../src/core/log-format.js';
import { mergeSettings } from '../../src/core/settings.js';
import { failingStepTail } from '../../src/notify/log-tail.js';
import { DynamoSettingsStore, repoScope } from '../../src/store/settings.js';
import { LocalSecretCipher, isSealed } from '../../src/store/secret-cipher.js';
import { runInProcess, writeLocalStack, type CliRun } from '../cli/helpers.js';
import { createTestStorage, type TestStorage } from '../support/storage.js';

const REPO = 'octo-org/notified';
const TOKEN = 'xoxb-1234-5678-s3cr3t';
const WEBHOOK = 'https://hooks.example.test/services/T0/B0/s3cr3tpath';
let storage: TestStorage;
let dataDir: string;
let settings: DynamoSettingsStore;

beforeAll(async () => {
  storage = await createTestStorage();
  dataDir = writeLocalStack(storage);
  settings = new DynamoSettingsStore(storage.clients.documents, storage.settingsTable);
});
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

const config = (...args: string[]): Promise<CliRun> =>
  runInProcess(['config', ...args, `--local=${dataDir}`]);

async function expectOk(run: Promise<CliRun>): Promise<CliRun> {
  const result = await run;
  expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 0, stderr: '' });
  return result;
}

describe('lambkin config: notifications', () => {
  it('seals the Slack secrets, shows them as ***, and opens them only for --show-secrets', async () => {
    const scope = ['--repo', REPO];
    const set = await expectOk(config('set', 'notifications.slack.token', TOKEN, ...scope));
    expect(set.stdout).toBe(`set notifications.slack.token = *** (${REPO})\n`);
    await expectOk(config('set', 'notifications.slack.channel', '#builds', ...scope));
    await expectOk(config('set', 'notifications.slack.on', 'failure', ...scope));
    const whole = await expectOk(
      config('set', 'notifications.slack', `{"webhookUrl": "${WEBHOOK}"}`, '--repo', 'octo-org/hooked'),
    );
    expect(whole.stdout).toBe('set notifications.slack = {"webhookUrl":"***"} (octo-org/hooked)\n');

    const stored = await settings.get(repoScope(REPO));
    expect(stored?.notifications?.slack).toMatchObject({ channel: '#builds', on: ['failure'] });
    expect(isSealed(stored?.notifications?.slack?.token ?? '')).toBe(true);
    expect(JSON.stringify(stored)).not.toContain('s3cr3t');
    const hooked = await settings.get(repoScope('octo-org/hooked'));
    expect(isSealed(hooked?.notifications?.slack?.webhookUrl ?? '')).toBe(true);

    const got = await expectOk(config('get', ...scope));
    expect(JSON.parse(got.stdout)).toEqual({
      notifications: { slack: { token: '***', channel: '#builds', on: ['failure'] } },
    });
    const effective = await expectOk(config('get', '--effective', ...scope));
    expect(effective.stdout).not.toContain('s3cr3t');
    expect(JSON.parse(effective.stdout).notifications.slack.token).toBe('***');
    const shown = await expectOk(config('get', 'notifications.slack.token', '--show-secrets', ...scope));
    expect(shown.stdout).toBe(`"${TOKEN}"\n`);

    // What the notifier reads: opened with the same key.
    const builder = new DynamoSettingsStore(
      storage.clients.documents,
      storage.settingsTable,
      new LocalSecretCipher(dataDir),
    );
    expect((await builder.effective(REPO, { decryptSecrets: true })).notifications.slack?.token).toBe(TOKEN);
    expect((await builder.effective(REPO)).notifications.slack?.token).not.toBe(TOKEN);
  });

  it('refuses keys and values notifications do not have', async () => {
    const refused = async (run: Promise<CliRun>, message: RegExp) => {
      const result = await run;
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(message);
    };
    await refused(config('set', 'notifications.slack.colour', 'red'), /notifications\.slack\.colour/);
    await refused(
      config('set', 'notifications.slack.on', '["failed"]'),
      /must be a list of started, success, fixed/,
    );
    await refused(config('set', 'notifications.sns.topicArn', 'my-topic'), /must be an SNS topic ARN/);
    await expectOk(config('set', 'notifications.sns.topicArn', 'arn:aws:sns:eu-west-1:123456789012:builds'));
  });
});

describe('merging notification settings', () => {
  it('takes the repository keys over the global ones; its own connection replaces the inherited one', () => {
    const merged = mergeSettings(
      {
        notifications: {
          slack: { token: 'xoxb-global', channel: '#ci', on: ['failure'] },
          sns: { topicArn: 'a' },
        },
      },
      { notifications: { slack: { webhookUrl: 'https://hooks.example.test/x' } } },
    );
    expect(merged.notifications).toEqual({
      slack: { webhookUrl: 'https://hooks.example.test/x', on: ['failure'] },
      sns: { topicArn: 'a' },
    });
    const channelOnly = mergeSettings(
      { notifications: { slack: { token: 'xoxb-global', channel: '#ci' } } },
      { notifications: { slack: { channel: '#team' } } },
    );
    expect(channelOnly.notifications.slack).toEqual({ token: 'xoxb-global', channel: '#team' });
  });
});

describe('failingStepTail', () => {
  const log =
    formatStepHeader({ name: 'install', command: 'npm ci' }) +
    'added 0 packages\n' +
    formatStepFooter({ name: 'install', exitCode: 0, durationMs: 900 }) +
    formatStepHeader({ name: 'test', command: 'npm test' }) +
    Array.from({ length: 30 }, (_, index) => `\u001b[31mline ${index + 1}\u001b[0m`).join('\n') +
    '\nsecret is sup3r-secret-value\n' +
    formatStepFooter({ name: 'test', exitCode: 1, durationMs: 1200 }) +
    'after the step\n';

  it('takes the last lines of the failing step, without escapes, masked', () => {
    const tail = failingStepTail(log, ['sup3r-secret-value'], { lines: 5 });
    expect(tail).toEqual({ step: 'test', text: 'line 27\nline 28\nline 29\nline 30\nsecret is ***' });
  });

  it('takes the end of the log when no step failed', () => {
    expect(failingStepTail('one\ntwo\nthree\n', [], { lines: 2 })).toEqual({ text: 'two\nthree' });
  });
});
