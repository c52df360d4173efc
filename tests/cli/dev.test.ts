/**
 * End to end: `lambkin dev` as its own process, driven with real signed webhook payloads; then the
 * other commands against it with --local, and `lambkin run` on passing, failing and misconfigured
 * projects.
 */
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, GetCommand } from '@aws-sdk/lib-dynamodb';
import type { StackFile } from '../../src/local/stack-file.js';
import {
  createGitRepo,
  type GitFiles,
  startGitHubServer,
  type GitHubStandIn,
} from '../support/github-server.js';
import { failingProject, npmProject, passingProject } from '../support/npm-projects.js';
import { pushPayload, pullRequestPayload, signedDelivery } from '../support/payloads.js';
import { childTestTimeout, runProcess } from './helpers.js';
import { startDevProcess, type DevProcess } from '../support/dev-process.js';

const SECRET = 'dev-e2e-secret';
const TOKEN = 'dev-e2e-token';

let github: GitHubStandIn;
let dataDir: string;
let dev: DevProcess;
let stack: StackFile;
const folders: string[] = [];

beforeAll(async () => {
  github = await startGitHubServer({ token: TOKEN });
  dataDir = mkdtempSync(join(tmpdir(), 'lambkin-dev-e2e-'));
  dev = await startDevProcess({
    dataDir,
    githubApi: github.url,
    env: { LAMBKIN_WEBHOOK_SECRET: SECRET, GITHUB_TOKEN: TOKEN },
  });
  stack = dev.stack;
  const ready = dev.startup;
  // Every endpoint, one per line, at start.
  for (const name of ['webhook', 'dynamodb', 's3', 'lambda', 'logs'] as const) {
    expect(ready).toContain(`${name} ${stack.endpoints[name]}\n`);
  }
}, 60_000);

afterAll(async () => {
  await dev.stop();
  await github.close();
  for (const folder of [dataDir, ...folders]) rmSync(folder, { recursive: true, force: true });
});

async function repository(name: string, files: GitFiles) {
  const repo = await createGitRepo(files);
  folders.push(repo.dir);
  github.addRepository({ owner: 'octo', name, gitDir: repo.dir });
  return repo;
}

async function deliver(event: string, payload: unknown) {
  const delivery = await signedDelivery(SECRET, event, payload);
  return fetch(stack.endpoints.webhook, { method: 'POST', headers: delivery.headers, body: delivery.body });
}

async function waitForStatus(repo: string, sha: string, state: string): Promise<void> {
  for (let i = 0; i < 240; i++) {
    if (github.statusesFor(repo, sha)[0]?.state === state) return;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(
    `no ${state} status for ${repo}@${sha}: ${JSON.stringify(github.statusesFor(repo, sha))}\n${dev.logs()}`,
  );
}

const localEnv = () => ({ LAMBKIN_DEBUG: '0' });

describe('lambkin dev (a separate process)', () => {
  it('builds a signed push: statuses on GitHub, the DynamoDB record, the S3 log and the page over HTTP', async () => {
    const repo = await repository('e2e', passingProject());
    const response = await deliver('push', pushPayload({ repo: 'octo/e2e', branch: 'main', sha: repo.sha }));
    expect(response.status).toBe(202);
    await waitForStatus('octo/e2e', repo.sha, 'success');
    const states = github
      .statusesFor('octo/e2e', repo.sha)
      .map((status) => `${status.state}: ${status.description}`);
    expect(states).toEqual([
      expect.stringMatching(/^success: Build #1 passed in/),
      'pending: Build #1 running',
      'pending: Build #1 queued',
    ]);

    // The stack's storage answers only its own key, which stack.json (0600) holds.
    const credentials = stack.credentials;
    const documents = DynamoDBDocumentClient.from(
      new DynamoDBClient({ endpoint: stack.endpoints.dynamodb, region: stack.region, credentials }),
    );
    const record = await documents.send(
      new GetCommand({ TableName: stack.tables.builds, Key: { repo: 'octo/e2e', number: 1 } }),
    );
    expect(record.Item).toMatchObject({
      state: 'success',
      sha: repo.sha,
      branch: 'main',
      logPrefix: 'logs/octo/e2e/builds/1/',
    });

    const s3 = new S3Client({
      endpoint: stack.endpoints.s3,
      region: stack.region,
      credentials,
      forcePathStyle: true,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    const log = await s3.send(
      new GetObjectCommand({ Bucket: stack.bucket, Key: 'logs/octo/e2e/builds/1/log.txt' }),
    );
    expect(await log.Body?.transformToString()).toMatch(/# pass 1/);
    s3.destroy();
    documents.destroy();

    const page = await fetch(`${stack.publicUrl}/builds/octo/e2e/1`);
    expect(page.status).toBe(200);
    expect(await page.text()).toMatch(/octo\/e2e/);
  });

  it('leaves pull requests from forks alone on a laptop, and builds same-repo pull requests', async () => {
    const repo = await repository('e2e-pr', failingProject());
    const fork = await deliver(
      'pull_request',
      pullRequestPayload({ repo: 'octo/e2e-pr', number: 2, action: 'opened', headSha: repo.sha, fork: true }),
    );
    expect(await fork.json()).toMatchObject({ ignored: true, reason: expect.stringMatching(/forks/) });
    const same = await deliver(
      'pull_request',
      pullRequestPayload({ repo: 'octo/e2e-pr', number: 3, action: 'opened', headSha: repo.sha }),
    );
    expect(same.status).toBe(202);
    await waitForStatus('octo/e2e-pr', repo.sha, 'failure');
  });

  it('answers the other commands with --local', async () => {
    const builds = await runProcess(['builds', `--local=${dataDir}`, 'octo/e2e', '--json'], localEnv());
    expect(builds.code).toBe(0);
    expect(JSON.parse(builds.stdout)).toEqual([expect.objectContaining({ number: 1, state: 'success' })]);
    const logs = await runProcess(['logs', `--local=${dataDir}`, 'octo/e2e', '1'], localEnv());
    expect(logs.code).toBe(0);
    expect(logs.stdout).toMatch(/# pass 1/);
    const set = await runProcess(
      ['config', 'set', `--local=${dataDir}`, '--repo', 'octo/e2e', 'config.timeout', '120'],
      localEnv(),
    );
    expect(set.code).toBe(0);
    const get = await runProcess(
      ['config', 'get', `--local=${dataDir}`, '--repo', 'octo/e2e', 'config.timeout'],
      localEnv(),
    );
    expect(get.stdout.trim()).toBe('120');
    const missing = await runProcess(['logs', `--local=${dataDir}`, 'octo/e2e', '99'], localEnv());
    expect(missing.code).toBe(1);
    expect(missing.stderr.trim().split('\n')).toHaveLength(1);
  });
});

describe('lambkin run', () => {
  function folder(files: GitFiles): string {
    const dir = mkdtempSync(join(tmpdir(), 'lambkin-run-cli-'));
    folders.push(dir);
    for (const [path, content] of Object.entries(files)) {
      mkdirSync(join(dir, path, '..'), { recursive: true });
      writeFileSync(join(dir, path), typeof content === 'string' ? content : '');
    }
    return dir;
  }

  it(
    'exits 0 for a passing project, the log live on stderr and only the JSON summary on stdout',
    async () => {
      const run = await runProcess(['run', folder(passingProject()), '--json'], {});
      expect(run.code).toBe(0);
      expect(run.stderr).toContain('▶ step install');
      expect(run.stderr).toMatch(/# pass 1/);
      const summary = JSON.parse(run.stdout) as {
        state: string;
        steps: unknown[];
      };
      expect(summary).toMatchObject({
        state: 'success',
        steps: [expect.objectContaining({ name: 'install' }), expect.objectContaining({ name: 'test' })],
      });
    },
    childTestTimeout(),
  );

  it(
    'exits 1 for a failing project, with one line on stderr',
    async () => {
      const run = await runProcess(['run', folder(failingProject())], {});
      expect(run.code).toBe(1);
      expect(run.stderr).toBe('lambkin: build failure: test failed (exit 1): npm test\n');
    },
    childTestTimeout(),
  );

  it(
    'exits 2 for a misconfigured project, naming the file and key',
    async () => {
      const run = await runProcess(
        ['run', folder(npmProject({ test: 'echo ok' }, { '.lambkin.json': '{"tset": "x"}' }))],
        {},
      );
      expect(run.code).toBe(2);
      expect(run.stderr).toMatch(/^lambkin: build error: \.lambkin\.json.*tset/);
      expect(run.stderr.trim().split('\n')).toHaveLength(1);
    },
    childTestTimeout(),
  );
});
