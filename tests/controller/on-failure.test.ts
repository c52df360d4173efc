/**
 * The on-failure destination's logic against the real storage servers and the GitHub API stand-in:
 * a builder invocation Lambda gave up on ends its build as `error` with a true commit status.
 */
import { rm } from 'node:fs/promises';
import {
  endFailedBuild,
  failureReason,
  type FailedInvocation,
  type OnFailureDependencies,
} from '../../src/controller/on-failure.js';
import type { BuildRecord } from '../../src/core/build.js';
import { createGitHubClient } from '../../src/github/client.js';
import { GitHubStatusReporter } from '../../src/github/statuses.js';
import { createMemoryLogger, type MemoryLogger } from '../../src/core/logger.js';
import { DynamoBuildStore } from '../../src/store/builds.js';
import { pushRequest } from '../cli/helpers.js';
import {
  createGitRepo,
  startGitHubServer,
  type GitHubStandIn,
  type GitRepo,
} from '../support/github-server.js';
import { createTestStorage } from '../support/storage.js';
import { DynamoJobStore } from '../../src/store/jobs.js';
import { planJobs } from '../../src/core/jobs.js';

const TOKEN = 'ghp_onFailureTest0000000000000000000000';
const REPO = 'acme/gadget';
const PUBLIC_URL = 'https://ci.example.test';

let github: GitHubStandIn;
let git: GitRepo;
let builds: DynamoBuildStore;
let logger: MemoryLogger;
let deps: OnFailureDependencies;
let jobs: DynamoJobStore;

beforeAll(async () => {
  git = await createGitRepo({ 'README.md': '# gadget\n' });
  github = await startGitHubServer({ token: TOKEN });
  github.addRepository({ owner: 'acme', name: 'gadget', gitDir: git.dir });
  const storage = await createTestStorage();
  builds = new DynamoBuildStore(storage.clients.documents, storage.buildsTable);
  jobs = new DynamoJobStore(storage.clients.documents, storage.buildsTable);
  logger = createMemoryLogger();
  deps = {
    builds,
    statuses: new GitHubStatusReporter(createGitHubClient({ baseUrl: github.url, token: TOKEN })),
    logger,
    publicUrl: PUBLIC_URL,
  };
});

afterAll(async () => {
  await github.close();
  await rm(git.dir, { recursive: true, force: true });
});

afterEach(() => github.clearFaults());

async function queued(): Promise<BuildRecord> {
  const number = await builds.allocateNumber(REPO);
  return builds.putQueuedBuild(pushRequest({ repo: REPO, sha: git.sha, deliveryId: `d-${number}` }), number, {
    deadline: Date.now() + 60_000,
  });
}

function failureOf(build: BuildRecord, overrides: Partial<FailedInvocation> = {}): FailedInvocation {
  return {
    functionName: 'lambkin-builder',
    requestId: 'c0ffee00-0000-4000-8000-000000000001',
    payload: { kind: 'build', repo: build.repo, number: build.number },
    attempts: 3,
    error: { errorType: 'Runtime.ExitError', errorMessage: 'Runtime exited with error: signal: killed' },
    ...overrides,
  };
}

function statusesOf(number: number) {
  return github
    .statusesFor(REPO, git.sha)
    .filter((status) => status.description?.startsWith(`Build #${number} `));
}

describe('endFailedBuild', () => {
  it('ends a queued build as error and sets the error status with its link', async () => {
    const build = await queued();
    const result = await endFailedBuild(deps, failureOf(build));
    const reason = 'the builder failed after 3 attempts: Runtime exited with error: signal: killed';
    expect(result).toMatchObject({
      ended: true,
      statusSet: true,
      build: { state: 'error', description: reason },
    });
    expect(await builds.getBuild(build)).toMatchObject({ state: 'error', description: reason });
    expect(statusesOf(build.number)).toEqual([
      expect.objectContaining({
        state: 'error',
        description: `Build #${build.number} error: ${reason}`,
        target_url: `${PUBLIC_URL}/builds/acme/gadget/${build.number}`,
      }),
    ]);
  });

  it('ends a running build (the builder died mid-build) as error', async () => {
    const build = await queued();
    await builds.transition(build, { from: 'queued', to: 'running' });
    const result = await endFailedBuild(deps, failureOf(build, { attempts: 1 }));
    expect(result.ended).toBe(true);
    const ended = await builds.getBuild(build);
    expect(ended?.state).toBe('error');
    expect(ended?.events.at(-1)).toMatchObject({ to: 'error' });
    expect(ended?.description).toBe(
      'the builder failed after 1 attempt: Runtime exited with error: signal: killed',
    );
  });

  it('leaves a build that already ended as it is, and tells GitHub nothing', async () => {
    const build = await queued();
    await builds.transition(build, { from: 'queued', to: 'running' });
    await builds.transition(build, { from: 'running', to: 'success', reason: 'all steps passed' });
    const result = await endFailedBuild(deps, failureOf(build));
    expect(result).toEqual({
      ended: false,
      reason: 'already ended',
      build: { repo: REPO, number: build.number },
    });
    expect(await builds.getBuild(build)).toMatchObject({ state: 'success', description: 'all steps passed' });
    expect(statusesOf(build.number)).toEqual([]);
  });

  it('ends only the crashed job of a build of several, and the build once it was the last job', async () => {
    const build = await builds.transition(await queued(), { from: 'queued', to: 'running' });
    const [first, second] = await jobs.putJobs(
      build,
      planJobs({ parallel: 2 }).map((plan) => ({ plan, failFast: false })),
      { deadline: Date.now() + 60_000 },
    );
    if (!first || !second) throw new Error('two jobs expected');
    const withJobs = { ...deps, jobs };
    // The first job's controller crashed while the second still runs: only the first ends.
    const crash = failureOf(build, {
      payload: { kind: 'build', repo: REPO, number: build.number, job: first.id },
    });
    await jobs.transitionJob(first, { from: 'queued', to: 'running' });
    await jobs.transitionJob(second, { from: 'queued', to: 'running' });
    const result = await endFailedBuild(withJobs, crash);
    expect(result).toMatchObject({ ended: true, build: { state: 'running' } });
    expect((await jobs.listJobs(build)).map((job) => job.state)).toEqual(['error', 'running']);
    expect(statusesOf(build.number)).toEqual([
      expect.objectContaining({ context: 'lambkin (1/2)', state: 'error' }),
    ]);
    expect(statusesOf(build.number)[0]?.target_url).toBe(
      `${PUBLIC_URL}/builds/${REPO}/${build.number}/jobs/default.shard-1`,
    );
    // The same failure again (a retried destination) changes nothing.
    expect(await endFailedBuild(withJobs, crash)).toMatchObject({ ended: false, reason: 'already ended' });

    // The second passes, and then its controller crashes before the fan-in: the failure ends the build.
    const passed = await jobs.transitionJob(second, { from: 'running', to: 'success', reason: 'passed' });
    expect(passed.state).toBe('success');
    await jobs
      .transitionJob({ ...second, state: 'success' }, { from: 'running', to: 'error' })
      .catch(() => undefined);
    const third = await queued();
    const running = await builds.transition(third, { from: 'queued', to: 'running' });
    const [a, b] = await jobs.putJobs(
      running,
      planJobs({ parallel: 2 }).map((plan) => ({ plan, failFast: false })),
      { deadline: Date.now() + 60_000 },
    );
    if (!a || !b) throw new Error('two jobs expected');
    await jobs.transitionJob(a, { from: 'queued', to: 'running' });
    await jobs.transitionJob(a, { from: 'running', to: 'success', reason: 'passed' });
    const last = await endFailedBuild(
      withJobs,
      failureOf(running, { payload: { kind: 'build', repo: REPO, number: running.number, job: b.id } }),
    );
    expect(last).toMatchObject({ ended: true, build: { state: 'error' } });
    const ended = await builds.getBuild(running);
    expect(ended).toMatchObject({
      state: 'error',
      description: expect.stringMatching(/^shard 2\/2 error: the builder failed after 3 attempts/),
    });
    expect(statusesOf(running.number).map((status) => [status.context, status.state])).toEqual([
      ['lambkin', 'error'],
      ['lambkin (2/2)', 'error'],
    ]);
  });

  it('logs and drops a failed invocation that is not a build', async () => {
    const before = logger.entries.length;
    const result = await endFailedBuild(deps, {
      payload: { kind: 'other', repo: 'x' },
      attempts: 3,
      error: { errorType: 'Error', errorMessage: 'boom' },
      requestId: 'r-not-a-build',
    });
    expect(result).toEqual({ ended: false, reason: 'not a build' });
    expect(logger.entries.slice(before)).toContainEqual(
      expect.objectContaining({
        level: 'error',
        message: 'an async invocation failed and is not a build',
        fields: expect.objectContaining({ requestId: 'r-not-a-build' }),
      }),
    );
  });

  it('keeps the reason to one line, and says when the builder never ran', () => {
    const long = `Error: first line\n    at frame (file.js:1:1)\n${'x'.repeat(400)}`;
    const reason = failureReason({
      payload: {},
      attempts: 2,
      error: { errorType: 'Error', errorMessage: long },
    });
    expect(reason).toMatch(
      /^the builder failed after 2 attempts: Error: first line at frame \(file\.js:1:1\) x+…$/,
    );
    expect(reason).not.toContain('\n');
    expect(reason.length).toBeLessThan(400);
    expect(
      failureReason({
        payload: {},
        attempts: 0,
        error: { errorType: 'EventAgeExceeded', errorMessage: 'the event expired' },
      }),
    ).toBe('the builder never ran: the event expired');
  });

  it('retries the status through a GitHub 500, and still ends the build when GitHub stays down', async () => {
    const first = await queued();
    github.failNext({ mode: '500', method: 'POST' });
    expect(await endFailedBuild(deps, failureOf(first))).toMatchObject({ ended: true, statusSet: true });
    expect(statusesOf(first.number)).toHaveLength(1);

    const second = await queued();
    github.failNext({ mode: '500', method: 'POST', times: 10 });
    const result = await endFailedBuild(
      { ...deps, statusDelivery: { deadlineMs: 2000, maxAttempts: 2, initialBackoffMs: 20 } },
      failureOf(second),
    );
    expect(result).toMatchObject({ ended: true, statusSet: false });
    expect((await builds.getBuild(second))?.state).toBe('error');
    expect(statusesOf(second.number)).toEqual([]);
    expect(logger.entries).toContainEqual(
      expect.objectContaining({
        level: 'error',
        message: 'could not set the error commit status',
        fields: expect.objectContaining({ build: `${REPO}#${second.number}` }),
      }),
    );
  });
});
