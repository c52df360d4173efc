/**
 * `lambkin rebuild` and `lambkin cancel` against the real storage servers, the Lambda Invoke API
 * stand-in (the builder) and the GitHub API stand-in (commit statuses).
 */
import { rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import type { BuildRecord } from '../../src/core/build.js';
import { DynamoBuildStore } from '../../src/store/builds.js';
import {
  createGitRepo,
  startGitHubServer,
  type GitHubStandIn,
  type GitRepo,
} from '../support/github-server.js';
import { startLambdaServer, type LambdaServer } from '../support/lambda-server.js';
import { createTestStorage, type TestStorage } from '../support/storage.js';
import { expectOneLine, pushRequest, runInProcess, writeLocalStack, type CliRun } from './helpers.js';

const TOKEN = 'ghp_cliTest0000000000000000000000000000';
const REPO = 'acme/widget';
const PUBLIC_URL = 'http://127.0.0.1:3999';
let storage: TestStorage;
let lambda: LambdaServer;
let github: GitHubStandIn;
let git: GitRepo;
let dataDir: string;
let builds: DynamoBuildStore;

beforeAll(async () => {
  storage = await createTestStorage();
  lambda = await startLambdaServer();
  git = await createGitRepo({ 'README.md': '# widget\n' });
  github = await startGitHubServer({ token: TOKEN });
  github.addRepository({ owner: 'acme', name: 'widget', gitDir: git.dir });
  dataDir = writeLocalStack(storage, { lambda: lambda.endpoint, publicUrl: PUBLIC_URL });
  builds = new DynamoBuildStore(storage.clients.documents, storage.buildsTable);
});

afterAll(async () => {
  await lambda.close();
  await github.close();
  await rm(git.dir, { recursive: true, force: true });
  rmSync(dataDir, { recursive: true, force: true });
});

afterEach(() => lambda.clearFaults());

function lambkin(args: string[], options: { token?: boolean } = {}): Promise<CliRun> {
  const env = {
    USER: 'tester',
    ...(options.token === false ? {} : { GITHUB_TOKEN: TOKEN, GITHUB_API_URL: github.url }),
  };
  return runInProcess([...args, `--local=${dataDir}`], { env });
}

async function queue(overrides: Parameters<typeof pushRequest>[0] = {}): Promise<BuildRecord> {
  const number = await builds.allocateNumber(REPO);
  return builds.putQueuedBuild(
    pushRequest({ repo: REPO, sha: git.sha, deliveryId: `delivery-${number}`, ...overrides }),
    number,
    { deadline: Date.now() + 60_000 },
  );
}

/** What a build keeps of the request it was made from (all but its own number, state, times…). */
const RECORD_ONLY = [
  'number',
  'state',
  'queuedAt',
  'startedAt',
  'endedAt',
  'deadline',
  'logPrefix',
  'description',
  'events',
  'steps',
  'deliveryId',
  'pageUrl',
  'logToken',
];

function requestPart(build: BuildRecord | undefined): Record<string, unknown> {
  return Object.fromEntries(Object.entries(build ?? {}).filter(([key]) => !RECORD_ONLY.includes(key)));
}

function invocationsOf(number: number) {
  return lambda.invocations.filter(
    (invocation) => (invocation.payload as { number?: number }).number === number,
  );
}

function statusesOf(number: number) {
  return github
    .statusesFor(REPO, git.sha)
    .filter((status) => status.description?.startsWith(`Build #${number} `));
}

describe('lambkin rebuild', () => {
  it('queues the same request under a new number, sets pending and invokes the builder', async () => {
    const original = await queue({ commitTitle: 'Fix the widget', htmlUrl: 'https://github.example/c/1' });
    await builds.transition(original, { from: 'queued', to: 'running' });
    await builds.transition(original, { from: 'running', to: 'failure', reason: 'npm test failed' });

    const result = await lambkin(['rebuild', REPO, String(original.number)]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const number = original.number + 1;
    const url = `${PUBLIC_URL}/builds/acme/widget/${number}`;
    expect(result.stdout).toBe(
      `queued build ${REPO}#${number}: rebuild of #${original.number} (${git.sha.slice(0, 7)})\n${url}\n`,
    );

    const rebuilt = await builds.getBuild({ repo: REPO, number });
    expect(rebuilt?.state).toBe('queued');
    expect(rebuilt?.deliveryId).toMatch(/^rebuild-[0-9a-f-]{36}$/);
    expect(requestPart(rebuilt)).toEqual(requestPart(original));
    expect(rebuilt?.logPrefix).toBe(`logs/${REPO}/builds/${number}/`);
    expect(rebuilt?.pageUrl).toBe(url);

    // The CLI waited for the service's 202, so the invocation is recorded.
    const [invocation] = invocationsOf(number);
    expect(invocation).toMatchObject({
      functionName: 'lambkin-builder',
      invocationType: 'Event',
      payload: { kind: 'build', repo: REPO, number },
    });
    expect(statusesOf(number)).toEqual([
      expect.objectContaining({
        state: 'pending',
        description: `Build #${number} queued (rebuild of #${original.number})`,
        target_url: url,
        context: 'lambkin',
      }),
    ]);
  });

  it("keeps a fork pull request's build untrusted", async () => {
    const original = await queue({
      event: 'pull_request',
      pr: 9,
      fork: true,
      trusted: false,
      headRepo: 'forker/widget',
      baseBranch: 'main',
    });
    const result = await lambkin(['rebuild', REPO, String(original.number), '--json']);
    expect(result.code).toBe(0);
    const printed = JSON.parse(result.stdout) as { number: number; rebuildOf: number; url: string };
    expect(printed).toEqual({
      repo: REPO,
      number: original.number + 1,
      rebuildOf: original.number,
      sha: git.sha,
      url: `${PUBLIC_URL}/builds/acme/widget/${original.number + 1}`,
    });
    expect(await builds.getBuild({ repo: REPO, number: printed.number })).toMatchObject({
      trusted: false,
      fork: true,
      pr: 9,
      headRepo: 'forker/widget',
    });
  });

  it('without a GitHub token, queues and invokes but sets no status', async () => {
    const original = await queue();
    const before = github.requests.length;
    const result = await lambkin(['rebuild', REPO, String(original.number)], { token: false });
    expect(result.code).toBe(0);
    const number = original.number + 1;
    await lambda.waitForIdle(10_000);
    expect(invocationsOf(number)).toHaveLength(1);
    expect(github.requests.length).toBe(before);
  });

  it('marks the new build error, with its status, when the builder cannot be invoked', async () => {
    const original = await queue();
    lambda.failNext({ kind: 'notFound404' });
    const result = await lambkin(['rebuild', REPO, String(original.number)]);
    const number = original.number + 1;
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expectOneLine(result.stderr);
    expect(result.stderr).toMatch(
      new RegExp(
        `^lambkin: build ${REPO}#${number} was queued but the builder could not be started \\(ResourceNotFoundException`,
      ),
    );
    expect(await builds.getBuild({ repo: REPO, number })).toMatchObject({
      state: 'error',
      description: expect.stringMatching(/^could not start the builder: /),
    });
    expect(statusesOf(number).map((status) => status.state)).toEqual(['error', 'pending']);
  });

  it('fails in one line for a build that does not exist', async () => {
    const result = await lambkin(['rebuild', REPO, '9999']);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      `lambkin: build ${REPO}#9999 was not found. Check the repository name and build number.\n`,
    );
  });
});

describe('lambkin cancel', () => {
  it('cancels a queued build and sets the error status that says so', async () => {
    const build = await queue();
    const result = await lambkin(['cancel', REPO, String(build.number)]);
    expect(result).toEqual({
      code: 0,
      stdout: `cancelled build ${REPO}#${build.number} (it was queued)\n`,
      stderr: '',
    });
    const cancelled = await builds.getBuild(build);
    expect(cancelled).toMatchObject({ state: 'cancelled', description: 'cancelled by tester' });
    expect(cancelled?.events.at(-1)).toMatchObject({
      from: 'queued',
      to: 'cancelled',
      reason: 'cancelled by tester',
    });
    expect(statusesOf(build.number)).toEqual([
      expect.objectContaining({
        state: 'error',
        description: `Build #${build.number} cancelled by tester`,
        target_url: `${PUBLIC_URL}/builds/acme/widget/${build.number}`,
      }),
    ]);
  });

  it('cancels a running build', async () => {
    const build = await queue();
    await builds.transition(build, { from: 'queued', to: 'running' });
    const result = await lambkin(['cancel', REPO, String(build.number)]);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(`cancelled build ${REPO}#${build.number} (it was running)\n`);
    expect((await builds.getBuild(build))?.events.at(-1)).toMatchObject({ from: 'running', to: 'cancelled' });
  });

  it('refuses a finished build in one line, changing nothing', async () => {
    const build = await queue();
    await builds.transition(build, { from: 'queued', to: 'running' });
    const finished = await builds.transition(build, { from: 'running', to: 'success', reason: 'all green' });
    const before = github.requests.length;
    const result = await lambkin(['cancel', REPO, String(build.number)]);
    expect(result).toEqual({
      code: 1,
      stdout: '',
      stderr: `lambkin: build ${REPO}#${build.number} already finished (success: all green); nothing to cancel\n`,
    });
    expect(await builds.getBuild(build)).toEqual(finished);
    expect(github.requests.length).toBe(before);
  });

  it('says that the status stays pending when no GitHub token is set', async () => {
    const build = await queue();
    const result = await lambkin(['cancel', REPO, String(build.number)], { token: false });
    expect(result.code).toBe(0);
    expect(result.stderr).toBe(
      'neither GITHUB_TOKEN nor a GitHub App is set: the commit status on GitHub still says pending\n',
    );
    expect((await builds.getBuild(build))?.state).toBe('cancelled');
  });

  it('fails in one line for a build that does not exist', async () => {
    const result = await lambkin(['cancel', REPO, '9999']);
    expect(result.code).toBe(1);
    expectOneLine(result.stderr);
  });
});
