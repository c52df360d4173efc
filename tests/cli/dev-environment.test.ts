/**
 * `lambkin dev` and the documented variables, end to end: a separate `lambkin dev` process with
 * LAMBKIN_SLACK_API_URL pointed at the Slack stand-in posts and updates its Slack message there,
 * while the variables it overrides (table names, the public URL) and those that do not apply on a
 * laptop are ignored, and it says which at start. A bad value stops it before any server starts.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startGitHubServer, type GitHubStandIn } from '../support/github-server.js';
import { passingProject } from '../support/npm-projects.js';
import { startSlackServer, type SlackStandIn } from '../support/slack-server.js';
import { pushToDev, startDevProcess, type DevProcess } from '../support/dev-process.js';
import { runProcess } from './helpers.js';

const SECRET = 'dev-environment-secret';
const TOKEN = 'dev-environment-token';
/** Values a shell may hold from working with a deployed stack. */
const CLOUD_VARIABLES = {
  LAMBKIN_BUILDS_TABLE: 'lambkin-BuildsTable-CLOUD',
  LAMBKIN_PUBLIC_URL: 'https://ci.example.com',
  LAMBKIN_SECRET_ARN: 'arn:aws:secretsmanager:us-east-1:123456789012:secret:lambkin-AbCdEf',
};

let github: GitHubStandIn;
let slack: SlackStandIn;
let dev: DevProcess;
let dataDir: string;
const folders: string[] = [];

beforeAll(async () => {
  github = await startGitHubServer({ token: TOKEN });
  slack = await startSlackServer();
  dataDir = mkdtempSync(join(tmpdir(), 'lambkin-dev-env-'));
  folders.push(dataDir);
  dev = await startDevProcess({
    dataDir,
    githubApi: github.url,
    env: {
      LAMBKIN_WEBHOOK_SECRET: SECRET,
      GITHUB_TOKEN: TOKEN,
      LAMBKIN_SLACK_API_URL: slack.apiUrl,
      LAMBKIN_QUEUE_TIMEOUT_SECONDS: '600',
      ...CLOUD_VARIABLES,
    },
  });
}, 60_000);

afterAll(async () => {
  await dev.stop();
  await github.close();
  await slack.close();
  for (const folder of folders) rmSync(folder, { recursive: true, force: true });
});

async function until<T>(what: string, probe: () => T | undefined): Promise<T> {
  for (let attempt = 0; attempt < 240; attempt++) {
    const value = probe();
    if (value !== undefined) return value;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`${what} did not happen:\n${dev.logs()}`);
}

describe('lambkin dev and the documented variables', () => {
  it('says at start which variables it took from the environment and which it overrides', () => {
    const base = dev.stack.publicUrl;
    const lines = dev.startup.split('\n');
    expect(lines).toContain(
      `from the environment: LAMBKIN_QUEUE_TIMEOUT_SECONDS=600 LAMBKIN_SLACK_API_URL=${slack.apiUrl}`,
    );
    expect(lines).toContain(
      'overrides: LAMBKIN_BUILDS_TABLE=lambkin-builds LAMBKIN_SETTINGS_TABLE=lambkin-settings ' +
        `LAMBKIN_BUCKET=lambkin-logs LAMBKIN_BUILDER_FUNCTION=lambkin-builder LAMBKIN_PUBLIC_URL=${base}`,
    );
    expect(lines).toContain(
      'not used locally: LAMBKIN_RUNNER_FUNCTION LAMBKIN_UNTRUSTED_RUNNER_FUNCTION LAMBKIN_SECRET_ARN LAMBKIN_SETTINGS_KMS_KEY LAMBKIN_UPLOAD_ROLE LAMBKIN_JOB_CONCURRENCY',
    );
    expect(lines).toContain(
      'ignored from the environment: LAMBKIN_BUILDS_TABLE LAMBKIN_PUBLIC_URL LAMBKIN_SECRET_ARN',
    );
    // Said once, before the endpoints; no secret in it.
    expect(dev.startup.match(/^overrides: /gm)).toHaveLength(1);
    expect(dev.startup.indexOf('overrides: ')).toBeLessThan(dev.startup.indexOf('webhook '));
    expect(dev.startup).not.toContain(SECRET);
    expect(dev.startup).not.toContain(TOKEN);
    expect(dev.stack.tables.builds).toBe('lambkin-builds');
  });

  it('notifies the Slack that LAMBKIN_SLACK_API_URL names, with links to its own pages', async () => {
    for (const [key, value] of [
      ['notifications.slack.token', slack.token],
      ['notifications.slack.channel', '#builds'],
    ] as const) {
      const set = await runProcess(['config', 'set', `--local=${dataDir}`, key, value], {});
      expect({ key, code: set.code, stderr: set.stderr }).toEqual({ key, code: 0, stderr: '' });
    }
    const { repo, response } = await pushToDev(dev, github, SECRET, 'octo/slacked', passingProject());
    folders.push(repo.dir);
    expect(response.status).toBe(202);

    await until('the success status', () =>
      github.statusesFor('octo/slacked', repo.sha)[0]?.state === 'success' ? true : undefined,
    );
    const message = await until('the Slack message update', () =>
      slack.messages[0]?.updates === 1 ? slack.messages[0] : undefined,
    );
    expect(slack.requests.map((request) => [request.kind, request.answer, request.authorization])).toEqual([
      ['chat.postMessage', 'ok', `Bearer ${slack.token}`],
      ['chat.update', 'ok', `Bearer ${slack.token}`],
    ]);
    const [attachment] = (message.body.attachments ?? []) as Record<string, unknown>[];
    expect(attachment).toMatchObject({
      title: 'octo/slacked #1 passed',
      // The stack's own URL, not the environment's LAMBKIN_PUBLIC_URL.
      title_link: `${dev.stack.publicUrl}/builds/octo/slacked/1`,
    });
  }, 90_000);

  it.each([
    ['LAMBKIN_SLACK_API_URL', 'slack.internal:8080'],
    ['GITHUB_API_URL', 'github.internal'],
  ])(
    'stops before any server starts when %s is wrong',
    async (name, value) => {
      const folder = mkdtempSync(join(tmpdir(), 'lambkin-dev-env-bad-'));
      folders.push(folder);
      const run = await runProcess(['dev', '--port', '0', '--data-dir', join(folder, 'data')], {
        LAMBKIN_WEBHOOK_SECRET: SECRET,
        [name]: value,
      });
      expect(run.code).toBe(1);
      expect(run.stdout).toBe('');
      expect(run.stderr).toBe(
        `lambkin: not configured: ${name} must be an http(s) URL (got "${value}"): fix or unset it ` +
          '(`lambkin dev --help` lists the variables it reads)\n',
      );
      expect(existsSync(join(folder, 'data'))).toBe(false);
    },
    30_000,
  );
});
