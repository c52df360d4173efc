/** `lambkin builds` and `lambkin logs` against the real DynamoDB- and S3-compatible servers. */
import { rmSync } from 'node:fs';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { LOG_KEYS } from '../../src/core/protocol.js';
import type { BuildRecord } from '../../src/core/build.js';
import { DynamoBuildStore } from '../../src/store/builds.js';
import { S3LogStore } from '../../src/store/logs.js';
import { createTestStorage, type TestStorage } from '../support/storage.js';
import { expectOneLine, pushRequest, runInProcess, writeLocalStack, type CliRun } from './helpers.js';

const NOW = Date.UTC(2026, 2, 14, 12, 0, 0);
const MINUTE = 60_000;
let storage: TestStorage;
let dataDir: string;
let builds: DynamoBuildStore;
let logs: S3LogStore;

beforeAll(async () => {
  storage = await createTestStorage();
  dataDir = writeLocalStack(storage);
  builds = new DynamoBuildStore(storage.clients.documents, storage.buildsTable);
  logs = new S3LogStore(storage.clients.s3, storage.bucket);
});

afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

function lambkin(
  args: string[],
  options: { finalLogGraceMs?: number; env?: Record<string, string> } = {},
): Promise<CliRun> {
  return runInProcess([...args, `--local=${dataDir}`], { now: () => NOW, ...options });
}

async function queue(
  repo: string,
  overrides: Parameters<typeof pushRequest>[0] = {},
  at = NOW,
): Promise<BuildRecord> {
  const number = await builds.allocateNumber(repo);
  return builds.putQueuedBuild(
    pushRequest({ repo, deliveryId: `d-${repo}-${number}`, ...overrides }),
    number,
    {
      deadline: at + 20 * MINUTE,
      at,
    },
  );
}

async function putChunk(build: BuildRecord, index: number, text: string): Promise<void> {
  await storage.clients.s3.send(
    new PutObjectCommand({ Bucket: storage.bucket, Key: LOG_KEYS.chunk(build.logPrefix, index), Body: text }),
  );
}

describe('lambkin builds', () => {
  const repo = 'octo-org/listed';

  beforeAll(async () => {
    // #1 success (ran 1m 05s, 3 h ago), #2 fork PR failure, #3 tag running for 2 min, #4 queued.
    const first = await queue(repo, {}, NOW - 3 * 60 * MINUTE);
    await builds.transition(first, { from: 'queued', to: 'running', at: NOW - 3 * 60 * MINUTE + 1000 });
    await builds.transition(first, { from: 'running', to: 'success', at: NOW - 3 * 60 * MINUTE + 66_000 });
    const second = await queue(
      repo,
      { event: 'pull_request', pr: 7, fork: true, trusted: false, branch: 'patch-1', author: 'forker' },
      NOW - 30 * MINUTE,
    );
    await builds.transition(second, { from: 'queued', to: 'running', at: NOW - 30 * MINUTE });
    await builds.transition(second, { from: 'running', to: 'failure', at: NOW - 30 * MINUTE + 42_000 });
    const third = await queue(
      repo,
      { ref: 'refs/tags/v1.0.0', tag: 'v1.0.0', sha: 'f00dfeed'.repeat(5), branch: undefined },
      NOW - 3 * MINUTE,
    );
    await builds.transition(third, { from: 'queued', to: 'running', at: NOW - 2 * MINUTE });
    await queue(repo, {}, NOW - 10_000);
  });

  it('prints the latest builds, newest first, as a table', async () => {
    const result = await lambkin(['builds', repo]);
    expect(result.code).toBe(0);
    expect(result.stderr).toBe('');
    expect(result.stdout.split('\n')).toEqual([
      '#  STATE    TARGET        COMMIT   AUTHOR   DURATION  AGE',
      '4  queued   main          a1b2c3d  octocat         -  10s ago',
      '3  running  tag v1.0.0    f00dfee  octocat    2m 00s  3 min ago',
      '2  failure  PR #7 (fork)  a1b2c3d  forker        42s  30 min ago',
      '1  success  main          a1b2c3d  octocat    1m 05s  3 h ago',
      '',
    ]);
  });

  it('--json prints the stored records and --limit bounds them', async () => {
    const result = await lambkin(['builds', repo, '--json', '--limit', '2']);
    expect(result.code).toBe(0);
    const records = JSON.parse(result.stdout) as BuildRecord[];
    expect(records.map((build) => [build.number, build.state])).toEqual([
      [4, 'queued'],
      [3, 'running'],
    ]);
    expect(records[1]).toEqual(await builds.getBuild({ repo, number: 3 }));
  });

  it('says when a repository has no builds', async () => {
    expect(await lambkin(['builds', 'octo-org/nothing'])).toEqual({
      code: 0,
      stdout: 'no builds of octo-org/nothing yet\n',
      stderr: '',
    });
    expect(JSON.parse((await lambkin(['builds', 'octo-org/nothing', '--json'])).stdout)).toEqual([]);
  });

  it.each([
    [[], /a repository is needed \(owner\/repo\): builds are stored per repository/],
    [['not-a-repo'], /"not-a-repo" is not a repository: write owner\/name/],
    [[repo, '--limit', '0'], /"0" is not a whole number from 1 to 1000/],
  ])('refuses %j with a usage error', async (args, message) => {
    const result = await lambkin(['builds', ...args]);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expectOneLine(result.stderr);
    expect(result.stderr).toMatch(message);
  });
});

describe('lambkin logs', () => {
  const repo = 'octo-org/logged';

  it("prints a finished build's final log", async () => {
    const build = await queue(repo);
    await putChunk(build, 1, '\u001b[1m$ npm test\u001b[0m\n');
    await putChunk(build, 2, 'ok 1 - greets\n');
    await logs.finalizeLog(build.logPrefix, '[lambkin] done');
    // Not a terminal: the log's colours are left out, unless FORCE_COLOR asks for them.
    const coloured = await lambkin(['logs', repo, String(build.number)], { env: { FORCE_COLOR: '1' } });
    expect(coloured.stdout).toBe('\u001b[1m$ npm test\u001b[0m\nok 1 - greets\n[lambkin] done\n');
    const result = await lambkin(['logs', repo, String(build.number)]);
    expect(result).toEqual({
      code: 0,
      stdout: '$ npm test\nok 1 - greets\n[lambkin] done\n',
      stderr: '',
    });
  });

  it('prints what a running build uploaded so far', async () => {
    const build = await queue(repo);
    await builds.transition(build, { from: 'queued', to: 'running' });
    await putChunk(build, 1, 'installing\n');
    const result = await lambkin(['logs', repo, `#${build.number}`]);
    expect(result).toEqual({ code: 0, stdout: 'installing\n', stderr: '' });
  });

  it('says so on stderr when there is no log yet', async () => {
    const build = await queue(repo);
    expect(await lambkin(['logs', repo, String(build.number)])).toEqual({
      code: 0,
      stdout: '',
      stderr: `no log yet: build ${repo}#${build.number}: queued\n`,
    });
  });

  it('fails in one line for a build that does not exist', async () => {
    const result = await lambkin(['logs', repo, '999']);
    expect(result.code).toBe(1);
    expectOneLine(result.stderr);
    expect(result.stderr).toBe(
      `lambkin: build ${repo}#999 was not found. Check the repository name and build number.\n`,
    );
  });

  it('--follow prints new output as it comes, once, and stops with the final log', async () => {
    const build = await queue(repo);
    await builds.transition(build, { from: 'queued', to: 'running' });
    await putChunk(build, 1, 'step 1\n');
    const following = lambkin(['logs', repo, String(build.number), '--follow']);
    // The builder's side, while the CLI polls every 20 ms.
    await new Promise((resolve) => setTimeout(resolve, 150));
    await putChunk(build, 2, 'step 2\n');
    await new Promise((resolve) => setTimeout(resolve, 150));
    await putChunk(build, 3, 'step 3');
    await logs.finalizeLog(build.logPrefix, '[lambkin] build passed');
    await builds.transition(build, { from: 'running', to: 'success', reason: 'passed in 3 s' });

    const result = await following;
    expect(result.code).toBe(0);
    expect(result.stdout).toBe('step 1\nstep 2\nstep 3\n[lambkin] build passed\n');
    expect(result.stderr).toBe(`build ${repo}#${build.number}: success (passed in 3 s)\n`);
  }, 15_000);

  it('--follow stops at once for a build that ended before it ever ran', async () => {
    const build = await queue(repo);
    await builds.transition(build, { from: 'queued', to: 'cancelled', reason: 'cancelled by someone' });
    const result = await lambkin(['logs', repo, String(build.number), '-f']);
    expect(result).toEqual({
      code: 0,
      stdout: '',
      stderr: `build ${repo}#${build.number}: cancelled (cancelled by someone)\n`,
    });
  });

  it('--follow gives up waiting for a final log that is not written, and says so', async () => {
    const build = await queue(repo);
    await builds.transition(build, { from: 'queued', to: 'running' });
    await putChunk(build, 1, 'half a line');
    await builds.transition(build, { from: 'running', to: 'cancelled', reason: 'cancelled by someone' });
    const started = Date.now();
    const result = await runInProcess(
      ['logs', repo, String(build.number), '--follow', `--local=${dataDir}`],
      {
        finalLogGraceMs: 200,
      },
    );
    expect(Date.now() - started).toBeGreaterThanOrEqual(200);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe('half a line\n');
    expect(result.stderr).toBe(
      'the final log was not written; above is what the build uploaded\n' +
        `build ${repo}#${build.number}: cancelled (cancelled by someone)\n`,
    );
  });
});
