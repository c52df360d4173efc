/**
 * Builds of several jobs through the real controller (src/controller/job-controller.ts), attacked:
 * the storage emulators, the GitHub stand-in, real runner processes (one per job, on a Node.js from
 * a loopback stand-in of the registry's Node.js packages), jobs invoked by the local job pool as
 * the builder invokes itself. Faults are real: a runner process killed, a build cancelled while its
 * jobs run, invocations that are dropped or arrive twice, a controller that dies before the fan-in.
 */
import { ancestorRunning, processesRunning } from '../support/processes.js';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runControllerBuild, type ControllerDependencies } from '../../src/controller/controller.js';
import { endCrashedJob } from '../../src/controller/job-controller.js';
import { ProcessRunnerInvoker, RunnerFailedError } from '../../src/controller/runner-invoker.js';
import { sweepOverdueBuilds } from '../../src/controller/sweeper.js';
import { handleLogRequest } from '../../src/controller/log-route.js';
import { s3ObjectExists } from '../../src/handlers/logs.js';
import { endFailedBuild } from '../../src/controller/on-failure.js';
import type { BuildKey, BuildRequest } from '../../src/core/build.js';
import { createMemoryLogger, type MemoryLogger } from '../../src/core/logger.js';
import type { ControllerInvoker, RunnerInvoker } from '../../src/core/ports.js';
import { builderInvocationFor, type RunnerInput } from '../../src/core/protocol.js';
import { resolveArchiveUrl } from '../../src/github/archive.js';
import { createGitHubClient } from '../../src/github/client.js';
import { readRepoFile } from '../../src/github/contents.js';
import { GitHubStatusReporter } from '../../src/github/statuses.js';
import { CONTENTS_PERMISSIONS, createGitHubAccess } from '../../src/github/access.js';
import { statusReporterFor } from '../../src/wiring.js';
import { appKeyPair } from '../support/app-keys.js';
import { LocalJobPool } from '../../src/local/job-pool.js';
import { nodeArchOf, resolveNodeVersion } from '../../src/runner/node-runtime.js';
import { DynamoBuildStore } from '../../src/store/builds.js';
import { DynamoJobStore } from '../../src/store/jobs.js';
import { S3LogStore } from '../../src/store/logs.js';
import { DynamoSettingsStore, repoScope } from '../../src/store/settings.js';
import { testBuildRequest } from '../support/builds.js';
import { Registry, officialPackage } from '../support/fake-node.js';
import {
  commitFiles,
  createGitRepoFromDirectory,
  startGitHubServer,
  type GitHubStandIn,
} from '../support/github-server.js';
import { latestByContext as latestOf, type LatestStatus } from '../support/statuses.js';
import { createTestStorage, type TestStorage } from '../support/storage.js';
import { waitFor } from '../support/wait.js';

const TOKEN = 'job-controller-test-token';
const PUBLIC_URL = 'https://ci.example.test';
const NODE = '22.11.0';

let storage: TestStorage;
let github: GitHubStandIn;
let registry: Registry;
let builds: DynamoBuildStore;
let jobs: DynamoJobStore;
let logs: S3LogStore;
let settings: DynamoSettingsStore;
let logger: MemoryLogger;
let base: ControllerDependencies;
let scratch: string;

beforeAll(async () => {
  storage = await createTestStorage();
  github = await startGitHubServer({ token: TOKEN });
  registry = new Registry();
  await registry.start();
  registry.publish(`node-linux-${nodeArchOf()}`, NODE, { bytes: officialPackage(NODE) });
  builds = new DynamoBuildStore(storage.clients.documents, storage.buildsTable);
  jobs = new DynamoJobStore(storage.clients.documents, storage.buildsTable);
  logs = new S3LogStore(storage.clients.s3, storage.bucket);
  settings = new DynamoSettingsStore(storage.clients.documents, storage.settingsTable);
  logger = createMemoryLogger();
  scratch = await mkdtemp(join(tmpdir(), 'lambkin-job-controller-'));
  const octokit = createGitHubClient({ baseUrl: github.url, token: TOKEN });
  base = {
    builds,
    settings,
    statuses: new GitHubStatusReporter(octokit),
    logs,
    archives: { resolveArchiveUrl: (repo, sha) => resolveArchiveUrl(octokit, repo, sha) },
    repoFiles: { readFile: (repo, path, ref) => readRepoFile(octokit, repo, path, ref) },
    runner: new ProcessRunnerInvoker({ workRoot: join(scratch, 'work') }),
    jobs,
    nodeVersions: {
      resolve: (spec) => resolveNodeVersion(spec, { registryUrl: registry.url, arch: nodeArchOf() }),
    },
    logger,
    publicUrl: PUBLIC_URL,
    runnerTimeoutMs: 90_000,
    logLimitBytes: 1024 * 1024,
    watchIntervalMs: 200,
  };
});

afterAll(async () => {
  await github.close();
  await registry.stop();
  await rm(scratch, { recursive: true, force: true });
});

let projects = 0;
/** A repository whose test step is `sh job.sh` (no package.json: nothing to install). */
async function project(
  name: string,
  config: Record<string, unknown>,
  script: string[],
  files: Record<string, string> = {},
  standIn: GitHubStandIn = github,
  owner = 'octo',
): Promise<{ repo: string; sha: string; dir: string }> {
  const dir = join(scratch, `project-${++projects}`);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'job.sh'), [...script, ''].join('\n'));
  for (const [path, content] of Object.entries(files)) await writeFile(join(dir, path), content);
  await writeFile(
    join(dir, '.lambkin.json'),
    JSON.stringify({ install: [], test: 'sh job.sh', ...config }, null, 2) + '\n',
  );
  const repo = await createGitRepoFromDirectory(dir);
  standIn.addRepository({ owner, name, gitDir: repo.dir });
  return { repo: `${owner}/${name}`, sha: repo.sha, dir: repo.dir };
}

async function queue(request: Partial<BuildRequest> & Pick<BuildRequest, 'repo' | 'sha'>, logToken?: string) {
  const full = testBuildRequest(request);
  const number = await builds.allocateNumber(full.repo);
  return builds.putQueuedBuild(full, number, {
    deadline: Date.now() + 60_000,
    ...(logToken !== undefined ? { logToken } : {}),
  });
}

/** The controller with the local job pool invoking each job's controller, `concurrency` at once. */
function withPool(
  concurrency: number,
  overrides: Partial<ControllerDependencies> = {},
): { deps: ControllerDependencies; pool: LocalJobPool } {
  const pool = new LocalJobPool(
    (build, job) => runControllerBuild(deps, builderInvocationFor(build, job)),
    (build, job, reason) => endCrashedJob(deps, { ...build, job }, reason),
    concurrency,
    logger,
  );
  const deps: ControllerDependencies = {
    ...base,
    jobInvoker: pool,
    jobConcurrency: concurrency,
    ...overrides,
  };
  return { deps, pool };
}

/** An invoker that accepts every invocation and runs nothing (Lambda lost them all). */
function droppingInvoker(): ControllerInvoker & { invoked: (string | undefined)[] } {
  const invoked: (string | undefined)[] = [];
  return {
    invoked,
    invoke(_build: BuildKey, job?: string) {
      invoked.push(job);
      return Promise.resolve();
    },
  };
}

/** The latest status of each context of the commit. */
function latestByContext(
  repo: string,
  sha: string,
  standIn: GitHubStandIn = github,
): Map<string, LatestStatus> {
  return latestOf(standIn, repo, sha);
}

const statesOf = async (build: BuildKey) => (await jobs.listJobs(build)).map((job) => [job.id, job.state]);

const CONTEXTS_3 = ['lambkin/node-22 (1/3)', 'lambkin/node-22 (2/3)', 'lambkin/node-22 (3/3)'];

describe('a runner that dies mid-job', () => {
  it('ends that job `error`; the others finish; the build fans in `error`; each context says so', async () => {
    const marker = `sleep ${33_400 + (process.pid % 100)}`;
    const { repo, sha } = await project('runner-dies', { matrix: { node: ['22'] }, parallel: 3 }, [
      'echo "shard $LAMBKIN_SHARD_INDEX on $(node --version)"',
      `if [ "$LAMBKIN_SHARD_INDEX" = 2 ]; then echo ready; ${marker}; fi`,
    ]);
    const { deps, pool } = withPool(3);
    const queued = await queue({ repo, sha });
    const fanned = await runControllerBuild(deps, { kind: 'build', repo, number: queued.number });
    expect(fanned).toMatchObject({ ran: true });
    // Kill the runner process of shard 2 from outside, while its step runs.
    const step = await waitFor('the step of shard 2', async () => (await processesRunning(marker))[0]);
    const [, second] = await jobs.listJobs(queued);
    await waitFor('the log of shard 2 to be uploaded', async () =>
      (await logs.readLog(second?.logPrefix ?? ''))?.includes('ready') ? true : undefined,
    );
    const runner = ancestorRunning(step, 'lambkin-runner-program');
    expect(runner).toBeDefined();
    process.kill(runner ?? 0, 'SIGKILL');
    await pool.idle();

    const ended = await jobs.listJobs(queued);
    expect(ended.map((job) => [job.id, job.state])).toEqual([
      ['node-22.shard-1', 'success'],
      ['node-22.shard-2', 'error'],
      ['node-22.shard-3', 'success'],
    ]);
    expect(ended[1]?.description).toMatch(/runner was killed by SIGKILL/);
    const build = await builds.getBuild(queued);
    expect(build?.state).toBe('error');
    expect(build?.description).toMatch(
      /^node 22, shard 2\/3 error: .*SIGKILL.*\(1 of 3 jobs did not pass\)$/,
    );
    expect(build?.events.map((event) => event.to)).toEqual(['queued', 'running', 'error']);

    const latest = latestByContext(repo, sha);
    expect([...latest.keys()].sort()).toEqual(['lambkin', ...CONTEXTS_3]);
    expect(latest.get('lambkin')).toMatchObject({
      state: 'error',
      url: `${PUBLIC_URL}/builds/${repo}/${queued.number}`,
    });
    expect(latest.get(CONTEXTS_3[0] ?? '')?.state).toBe('success');
    expect(latest.get(CONTEXTS_3[1] ?? '')).toMatchObject({
      state: 'error',
      url: `${PUBLIC_URL}/builds/${repo}/${queued.number}/jobs/node-22.shard-2`,
    });
    expect(latest.get(CONTEXTS_3[2] ?? '')?.state).toBe('success');

    // The dead job's log is what its runner uploaded, and the controller's note of how it ended.
    const log = (await logs.readLog(ended[1]?.logPrefix ?? '')) ?? '';
    expect(log).toContain('ready');
    expect(log).toMatch(/The build did not complete: The runner was killed by SIGKILL/);
    expect(await logs.readLog(ended[0]?.logPrefix ?? '')).toContain(`shard 1 on v${NODE}`);
    // The build's own log lists the jobs.
    expect(await logs.readLog(queued.logPrefix)).toMatch(/\[lambkin\] Job node 22, shard 2\/3: error/);
  });
});

describe('a runner that hits its time limit', () => {
  it('ends that job `timed_out` and the build with it, the others passing', async () => {
    const { repo, sha } = await project('runner-times-out', { matrix: { node: ['22'] }, parallel: 3 }, [
      'echo "shard $LAMBKIN_SHARD_INDEX"',
    ]);
    const inner = base.runner;
    const runner: RunnerInvoker = {
      // Shard 3's runner function never answers within its limit (Lambda's `Task timed out`).
      run: (input, signal) =>
        input.job?.id === 'node-22.shard-3'
          ? Promise.reject(new RunnerFailedError('Task timed out after 900.00 seconds', true))
          : inner.run(input, signal),
    };
    const { deps, pool } = withPool(3, { runner });
    const queued = await queue({ repo, sha });
    await runControllerBuild(deps, { kind: 'build', repo, number: queued.number });
    await pool.idle();
    const ended = await jobs.listJobs(queued);
    expect(ended.map((job) => job.state)).toEqual(['success', 'success', 'timed_out']);
    expect(ended[2]?.description).toBe("timed out after 90 s (the runner's limit)");
    const build = await builds.getBuild(queued);
    expect(build?.state).toBe('timed_out');
    expect(build?.description).toBe(
      "node 22, shard 3/3 timed out: timed out after 90 s (the runner's limit) (1 of 3 jobs did not pass)",
    );
    const latest = latestByContext(repo, sha);
    expect(latest.get('lambkin/node-22 (3/3)')?.state).toBe('error');
    expect(latest.get('lambkin/node-22 (1/3)')?.state).toBe('success');
    expect(latest.get('lambkin')?.state).toBe('error');
  });
});

describe('a build superseded while its jobs run', () => {
  it('stops the running job and cancels the queued ones when their turn comes; nothing sets the build again', async () => {
    const { repo, sha } = await project('superseded', { matrix: { node: ['22'] }, parallel: 3 }, [
      'echo "started shard $LAMBKIN_SHARD_INDEX"',
      'sleep 40',
      'echo "finished shard $LAMBKIN_SHARD_INDEX"',
    ]);
    // One job at a time: shard 1 runs, 2 and 3 wait their turn.
    const { deps, pool } = withPool(1);
    const queued = await queue({ repo, sha });
    await runControllerBuild(deps, { kind: 'build', repo, number: queued.number });
    const [first] = await jobs.listJobs(queued);
    await waitFor('shard 1 to run its step', async () =>
      (await logs.readLog(first?.logPrefix ?? ''))?.includes('started shard 1') ? true : undefined,
    );
    expect(await statesOf(queued)).toEqual([
      ['node-22.shard-1', 'running'],
      ['node-22.shard-2', 'queued'],
      ['node-22.shard-3', 'queued'],
    ]);
    // As the intake does when a newer push supersedes it.
    const running = await builds.getBuild(queued);
    await builds.transition(running ?? queued, {
      from: 'running',
      to: 'cancelled',
      reason: 'superseded by #99',
    });
    const stopped = Date.now();
    await pool.idle();
    expect(Date.now() - stopped).toBeLessThan(20_000);

    const ended = await jobs.listJobs(queued);
    expect(ended.map((job) => job.state)).toEqual(['cancelled', 'cancelled', 'cancelled']);
    expect(ended[0]?.description).toContain('superseded by #99');
    expect(ended[1]?.description).toBe('the build is cancelled');
    expect(ended[2]?.description).toBe('the build is cancelled');
    const log = (await logs.readLog(ended[0]?.logPrefix ?? '')) ?? '';
    expect(log).toContain('started shard 1');
    expect(log).not.toContain('finished shard 1');
    // Shards 2 and 3 never ran a step.
    expect(await logs.readLog(ended[1]?.logPrefix ?? '')).not.toContain('started shard');

    const build = await builds.getBuild(queued);
    expect(build?.state).toBe('cancelled');
    expect(build?.description).toBe('superseded by #99');
    expect(build?.events.map((event) => event.to)).toEqual(['queued', 'running', 'cancelled']);
    // The build's context is the intake's to set: the controllers set it only once, to pending.
    const buildStatuses = github.statusesFor(repo, sha).filter((status) => status.context === 'lambkin');
    expect(buildStatuses.map((status) => status.state)).toEqual(['pending']);
    const latest = latestByContext(repo, sha);
    for (const context of CONTEXTS_3) expect(latest.get(context)?.state).toBe('error');
    // The build's page lists its jobs as they ended.
    const page = (await logs.getObjectText(`${queued.logPrefix}index.html`)) ?? '';
    expect(page).toContain('jobs/node-22.shard-3');
    expect(page).not.toContain('http-equiv="refresh"');
  });
});

describe("a private build's jobs", () => {
  it("link their statuses and pages to the job's page with the build's token, which the log route serves", async () => {
    const { repo, sha } = await project('private-jobs', { matrix: { node: ['22'] }, parallel: 2 }, [
      'echo "private shard $LAMBKIN_SHARD_INDEX"',
    ]);
    const token = 'Pr1vate-job-t0ken_abcdefghijklmnop';
    const { deps, pool } = withPool(2);
    const queued = await queue({ repo, sha, privateRepo: true }, token);
    await runControllerBuild(deps, { kind: 'build', repo, number: queued.number });
    await pool.idle();
    const route = {
      builds,
      logs,
      objectExists: s3ObjectExists(storage.clients.s3, storage.bucket),
      logger,
    };
    const get = (url: string) => {
      const parsed = new URL(url);
      return handleLogRequest(route, { method: 'GET', path: parsed.pathname, query: parsed.search.slice(1) });
    };
    const target = latestByContext(repo, sha).get('lambkin/node-22 (2/2)')?.url ?? '';
    expect(target).toBe(`${PUBLIC_URL}/builds/${repo}/${queued.number}/jobs/node-22.shard-2?token=${token}`);
    const page = await get(target);
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain('node 22, shard 2/2');
    // Without the token: as an unknown build.
    const withoutToken = await get(target.slice(0, target.indexOf('?')));
    expect(withoutToken.statusCode).toBe(404);
    expect(withoutToken.body).not.toContain('shard 2/2');
    // The page's own links keep the token: its raw log, and back to the build.
    const links = [...page.body.matchAll(/href="([^"]+)"/g)].map((match) => match[1] ?? '');
    const raw = links.find((link) => link.includes('log.txt')) ?? '';
    const rawLog = await get(new URL(raw.replace(/&amp;/g, '&'), target).href);
    expect(rawLog.statusCode).toBe(302);
    expect(await (await fetch(rawLog.headers['location'] ?? '')).text()).toContain('private shard 2');
    const back = links.find((link) => link.startsWith('../../')) ?? '';
    const buildPage = await get(new URL(back.replace(/&amp;/g, '&'), target).href);
    expect(buildPage.statusCode).toBe(200);
    expect(buildPage.body).toContain('jobs/node-22.shard-1');
    expect(buildPage.body).toContain(`token=${token}`);
  });
});

describe('the sweeper and builds of several jobs', () => {
  const sweep = (offsetMs: number) =>
    sweepOverdueBuilds({
      builds,
      jobs,
      statuses: base.statuses,
      logger,
      publicUrl: PUBLIC_URL,
      clock: () => Date.now() + offsetMs,
      statusDelivery: { deadlineMs: 5000, maxAttempts: 2, attemptTimeoutMs: 2000 },
    });

  it('ends a build whose job controllers never ran, and its jobs, with a status for each context', async () => {
    const { repo, sha } = await project('never-ran', { matrix: { node: ['22'] }, parallel: 3 }, [
      'echo never',
    ]);
    const invoker = droppingInvoker();
    const deps = { ...base, jobInvoker: invoker };
    const queued = await queue({ repo, sha });
    const fanned = await runControllerBuild(deps, { kind: 'build', repo, number: queued.number });
    expect(fanned).toMatchObject({ ran: true, build: { state: 'running' } });
    expect(invoker.invoked).toEqual(['node-22.shard-1', 'node-22.shard-2', 'node-22.shard-3']);

    // Not overdue yet: nothing happens.
    const early = await sweep(0);
    expect(early.ended.filter((build) => build.repo === repo)).toEqual([]);

    const result = await sweep(60 * 60_000);
    expect(result.ended.filter((build) => build.repo === repo)).toEqual([
      expect.objectContaining({ number: queued.number, from: 'running', to: 'timed_out', statusSet: true }),
    ]);
    expect((await builds.getBuild(queued))?.state).toBe('timed_out');
    const ended = await jobs.listJobs(queued);
    expect(ended.map((job) => job.state)).toEqual(['cancelled', 'cancelled', 'cancelled']);
    for (const job of ended) expect(job.description).toMatch(/never started.*\(swept with its build\)/);
    const latest = latestByContext(repo, sha);
    expect(latest.get('lambkin')?.state).toBe('error');
    for (const context of CONTEXTS_3) expect(latest.get(context)?.state).toBe('error');

    // The lost invocations arrive after all: they change nothing.
    const late = await runControllerBuild(deps, builderInvocationFor(queued, 'node-22.shard-2'));
    expect(late).toMatchObject({ ran: false, reason: 'already claimed', state: 'timed_out' });
    expect(await statesOf(queued)).toEqual([
      ['node-22.shard-1', 'cancelled'],
      ['node-22.shard-2', 'cancelled'],
      ['node-22.shard-3', 'cancelled'],
    ]);
    expect((await builds.getBuild(queued))?.events.map((event) => event.to)).toEqual([
      'queued',
      'running',
      'timed_out',
    ]);
  });

  /** The build store, but the builder dies on the build's fan-in (after its job has ended). */
  function diesBeforeFanIn(): DynamoBuildStore {
    const dying = Object.create(builds) as DynamoBuildStore;
    dying.transition = async (key, request) => {
      if (request.from === 'running') throw new Error('the builder was killed before the fan-in');
      return builds.transition(key, request);
    };
    return dying;
  }

  it('gives a build whose jobs all ended but whose fan-in never happened the fan-in state', async () => {
    const { repo, sha } = await project('no-fan-in', { matrix: { node: ['22'] }, parallel: 2 }, [
      'echo "shard $LAMBKIN_SHARD_INDEX"',
      'if [ "$LAMBKIN_SHARD_INDEX" = 2 ]; then exit 3; fi',
    ]);
    const deps = { ...base, jobInvoker: droppingInvoker() };
    const queued = await queue({ repo, sha });
    await runControllerBuild(deps, { kind: 'build', repo, number: queued.number });
    await runControllerBuild(deps, builderInvocationFor(queued, 'node-22.shard-1'));
    // The last job's controller ends its job, then dies (and is never retried).
    const dying = { ...deps, builds: diesBeforeFanIn() };
    await expect(runControllerBuild(dying, builderInvocationFor(queued, 'node-22.shard-2'))).rejects.toThrow(
      'killed before the fan-in',
    );
    expect(await statesOf(queued)).toEqual([
      ['node-22.shard-1', 'success'],
      ['node-22.shard-2', 'failure'],
    ]);
    expect((await builds.getBuild(queued))?.state).toBe('running');

    const result = await sweep(60 * 60_000);
    expect(result.ended.filter((build) => build.repo === repo)).toEqual([
      expect.objectContaining({
        from: 'running',
        to: 'failure',
        reason: expect.stringMatching(/^node 22, shard 2\/2 failed: .*\(1 of 2 jobs did not pass\)$/),
        statusSet: true,
      }),
    ]);
    expect((await builds.getBuild(queued))?.state).toBe('failure');
    // The jobs are left as they ended.
    expect(await statesOf(queued)).toEqual([
      ['node-22.shard-1', 'success'],
      ['node-22.shard-2', 'failure'],
    ]);
    expect(latestByContext(repo, sha).get('lambkin')?.state).toBe('failure');
  });

  it("fans in when a job's controller is retried after it died between its job's end and the fan-in", async () => {
    const { repo, sha } = await project('retry-fan-in', { matrix: { node: ['22'] }, parallel: 2 }, [
      'echo "shard $LAMBKIN_SHARD_INDEX"',
    ]);
    const deps = { ...base, jobInvoker: droppingInvoker() };
    const queued = await queue({ repo, sha });
    await runControllerBuild(deps, { kind: 'build', repo, number: queued.number });
    await runControllerBuild(deps, builderInvocationFor(queued, 'node-22.shard-1'));
    // The last job ends, and its controller dies before the fan-in…
    await expect(
      runControllerBuild(
        { ...deps, builds: diesBeforeFanIn() },
        builderInvocationFor(queued, 'node-22.shard-2'),
      ),
    ).rejects.toThrow('killed before the fan-in');
    expect((await builds.getBuild(queued))?.state).toBe('running');
    // …Lambda retries it: the job is not run again, and the build takes its jobs' state now, not
    // when the sweeper finds it overdue.
    const retried = await runControllerBuild(deps, builderInvocationFor(queued, 'node-22.shard-2'));
    expect(retried).toMatchObject({ ran: false, reason: 'already claimed' });
    const build = await builds.getBuild(queued);
    expect(build?.state).toBe('success');
    expect(build?.description).toBe('2 jobs passed');
    expect(latestByContext(repo, sha).get('lambkin')?.state).toBe('success');
    const job = (await jobs.listJobs(queued))[1];
    expect(job?.events.map((event) => event.to)).toEqual(['queued', 'running', 'success']);
  });
});

describe('a job whose controller died mid-run, then its build was superseded', () => {
  it("is ended by the controller's retry (nothing else would: the sweeper skips ended builds)", async () => {
    const { repo, sha } = await project('died-then-superseded', { matrix: { node: ['22'] }, parallel: 2 }, [
      'echo x',
    ]);
    const deps = { ...base, jobInvoker: droppingInvoker() };
    const queued = await queue({ repo, sha });
    await runControllerBuild(deps, { kind: 'build', repo, number: queued.number });
    // Shard 1's controller claimed its job, then died (no runner, no end recorded).
    const [first] = await jobs.listJobs(queued);
    if (!first) throw new Error('the build has no jobs');
    await jobs.transitionJob(first, { from: 'queued', to: 'running' });
    // A newer push supersedes the build.
    const running = await builds.getBuild(queued);
    await builds.transition(running ?? queued, {
      from: 'running',
      to: 'cancelled',
      reason: 'superseded by #2',
    });
    // The sweeper does not look at an ended build.
    const swept = await sweepOverdueBuilds({
      builds,
      jobs,
      statuses: base.statuses,
      logger,
      publicUrl: PUBLIC_URL,
      clock: () => Date.now() + 60 * 60_000,
    });
    expect(swept.ended.filter((build) => build.repo === repo)).toEqual([]);
    // Lambda retries shard 1's invocation; shard 2's arrives late.
    for (const job of ['node-22.shard-1', 'node-22.shard-2']) {
      expect(await runControllerBuild(deps, builderInvocationFor(queued, job))).toMatchObject({
        ran: false,
        state: 'cancelled',
      });
    }
    expect(await statesOf(queued)).toEqual([
      ['node-22.shard-1', 'cancelled'],
      ['node-22.shard-2', 'cancelled'],
    ]);
    const latest = latestByContext(repo, sha);
    expect(latest.get('lambkin/node-22 (1/2)')?.state).toBe('error');
    expect(latest.get('lambkin/node-22 (2/2)')?.state).toBe('error');
    expect((await builds.getBuild(queued))?.events.map((event) => event.to)).toEqual([
      'queued',
      'running',
      'cancelled',
    ]);
  });
});

describe('duplicate and retried invocations', () => {
  it('fans a build invoked twice at once out once, and runs a job invoked twice once', async () => {
    const { repo, sha } = await project('duplicates', { matrix: { node: ['22'] }, parallel: 2 }, [
      'echo "RAN shard $LAMBKIN_SHARD_INDEX"',
    ]);
    const invoker = droppingInvoker();
    const deps = { ...base, jobInvoker: invoker };
    const queued = await queue({ repo, sha });
    const invocation = { kind: 'build' as const, repo, number: queued.number };
    const results = await Promise.all([
      runControllerBuild(deps, invocation),
      runControllerBuild(deps, invocation),
    ]);
    expect(results.filter((result) => result.ran)).toHaveLength(1);
    expect(results.find((result) => !result.ran)).toMatchObject({ reason: 'already claimed' });
    expect(invoker.invoked).toEqual(['node-22.shard-1', 'node-22.shard-2']);
    const recorded = await jobs.listJobs(queued);
    expect(recorded).toHaveLength(2);
    // And once more, later (Lambda's retry of a controller that may have died before invoking every
    // job): no second fan-out, but the jobs still queued are invoked again, which is harmless.
    expect(await runControllerBuild(deps, invocation)).toMatchObject({
      ran: false,
      reason: 'already claimed',
    });
    expect(invoker.invoked).toEqual([
      'node-22.shard-1',
      'node-22.shard-2',
      'node-22.shard-1',
      'node-22.shard-2',
    ]);
    expect(await jobs.listJobs(queued)).toEqual(recorded);

    // putJobs again (a retried fan-out) keeps the first records.
    const again = await jobs.putJobs(
      { ...queued, logPrefix: queued.logPrefix },
      [
        {
          plan: {
            id: 'node-22.shard-1',
            name: 'x',
            context: 'x',
            title: 'x',
            matrix: {},
            shard: null,
            env: {},
            node: '18',
          },
          failFast: true,
        },
      ],
      { deadline: 1, at: 1 },
    );
    expect(again).toHaveLength(2);
    expect(again.map((job) => job.id)).toEqual(['node-22.shard-1', 'node-22.shard-2']);
    expect(again[0]).toEqual(recorded[0]);

    const job = builderInvocationFor(queued, 'node-22.shard-1');
    const runs = await Promise.all([runControllerBuild(deps, job), runControllerBuild(deps, job)]);
    expect(runs.filter((result) => result.ran)).toHaveLength(1);
    expect(runs.find((result) => !result.ran)).toMatchObject({ reason: 'already claimed', state: 'running' });
    expect(await runControllerBuild(deps, job)).toMatchObject({ ran: false, reason: 'already claimed' });
    const [first] = await jobs.listJobs(queued);
    expect(first?.state).toBe('success');
    expect(first?.events.map((event) => event.to)).toEqual(['queued', 'running', 'success']);
    expect(((await logs.readLog(first?.logPrefix ?? '')) ?? '').match(/RAN shard 1/g)).toHaveLength(1);
    const statuses = github
      .statusesFor(repo, sha)
      .filter((status) => status.context === 'lambkin/node-22 (1/2)');
    // Pending at fan-out, pending when claimed, then its end: never a second run's.
    expect(statuses.map((status) => status.state)).toEqual(['success', 'pending', 'pending']);

    await runControllerBuild(deps, builderInvocationFor(queued, 'node-22.shard-2'));
    expect((await builds.getBuild(queued))?.state).toBe('success');
  });

  it('refuses a job the build does not have', async () => {
    const { repo, sha } = await project('unknown-job', { matrix: { node: ['22'] }, parallel: 2 }, ['echo x']);
    const deps = { ...base, jobInvoker: droppingInvoker() };
    const queued = await queue({ repo, sha });
    await runControllerBuild(deps, { kind: 'build', repo, number: queued.number });
    expect(await runControllerBuild(deps, builderInvocationFor(queued, 'node-22.shard-9'))).toEqual({
      ran: false,
      reason: 'not found',
    });
    expect(
      await runControllerBuild(deps, builderInvocationFor({ repo, number: 999 }, 'node-22.shard-1')),
    ).toEqual({
      ran: false,
      reason: 'not found',
    });
  });
});

describe('what the jobs of untrusted builds get', () => {
  /** The runner, with every input it was given kept. */
  function recordingRunner(): RunnerInvoker & { inputs: RunnerInput[] } {
    const inputs: RunnerInput[] = [];
    const inner = base.runner;
    return {
      inputs,
      run(input, signal) {
        inputs.push(input);
        return inner.run(input, signal);
      },
    };
  }

  const SECRET = 'job-secret-value-0a9f';

  it("gives a fork's pull request's jobs no secrets, and its head config no more jobs than the base's", async () => {
    const script = ['echo "secret=[$MY_SECRET] shard=$LAMBKIN_SHARD_INDEX"'];
    // The base branch's config: two shards. The fork's commit asks for forty.
    const {
      repo,
      sha: baseSha,
      dir,
    } = await project('fork-pr', { matrix: { node: ['22'] }, parallel: 2 }, script);
    await settings.update(repoScope(repo), () => ({ secretEnv: { MY_SECRET: SECRET } }));
    const runner = recordingRunner();
    const { deps, pool } = withPool(2, { runner });
    // Trusted push: its jobs get the secret (masked in the log).
    const push = await queue({ repo, sha: baseSha });
    await runControllerBuild(deps, { kind: 'build', repo, number: push.number });
    await pool.idle();
    expect(runner.inputs.map((input) => input.secretEnv)).toEqual([
      { MY_SECRET: SECRET },
      { MY_SECRET: SECRET },
    ]);
    expect((await builds.getBuild(push))?.state).toBe('success');
    for (const job of await jobs.listJobs(push)) {
      const log = (await logs.readLog(job.logPrefix)) ?? '';
      expect(log).toContain('secret=[***] shard=');
      expect(log).not.toContain(SECRET);
    }

    runner.inputs.length = 0;
    // The fork's commit, on a branch of its own (the base branch keeps its config).
    execFileSync('git', ['-C', dir, 'checkout', '--quiet', '-b', 'feature']);
    const forkSha = await commitFiles(
      dir,
      {
        '.lambkin.json': JSON.stringify({
          install: [],
          test: 'sh job.sh',
          matrix: { node: ['22'] },
          parallel: 40,
        }),
      },
      'Forty shards',
    );
    const pr = await queue({
      repo,
      sha: forkSha,
      event: 'pull_request',
      pr: 7,
      ref: 'refs/pull/7/head',
      branch: 'feature',
      baseBranch: 'main',
      fork: true,
      trusted: false,
      headRepo: 'stranger/fork-pr',
    });
    const result = await runControllerBuild(deps, { kind: 'build', repo, number: pr.number });
    await pool.idle();
    expect(result.ran).toBe(true);
    const prJobs = await jobs.listJobs(pr);
    expect(prJobs.map((job) => job.id)).toEqual(['node-22.shard-1', 'node-22.shard-2']);
    expect(runner.inputs).toHaveLength(2);
    for (const input of runner.inputs) {
      expect(input.secretEnv).toEqual({});
      expect(input.build.trusted).toBe(false);
      expect(JSON.stringify(input)).not.toContain(SECRET);
    }
    for (const job of prJobs) {
      const log = (await logs.readLog(job.logPrefix)) ?? '';
      expect(log).toContain('secret=[] shard=');
      expect(log).not.toContain(SECRET);
    }
  });
});

describe('hostile matrices', () => {
  /** Queues a build of a config and runs its controller (jobs run by the pool); the build as it ended. */
  async function buildOf(name: string, config: Record<string, unknown>, request: Partial<BuildRequest> = {}) {
    const { repo, sha } = await project(name, config, ['echo "JOB RAN $LAMBKIN_MATRIX_DIR"']);
    const { deps, pool } = withPool(2);
    const queued = await queue({ repo, sha, ...request });
    const result = await runControllerBuild(deps, { kind: 'build', repo, number: queued.number });
    await pool.idle();
    const build = await builds.getBuild(queued);
    return {
      repo,
      sha,
      result,
      build,
      jobs: await jobs.listJobs(queued),
      log: (await logs.readLog(queued.logPrefix)) ?? '',
    };
  }

  it('keeps a matrix value of dots from making a job id that climbs out of its folder', async () => {
    const {
      build,
      jobs: recorded,
      repo,
    } = await buildOf('dots', {
      matrix: { dir: ['ok', '..', '../../x'] },
    });
    expect(build?.state).toBe('success');
    // A run of dots is one dot, none at either end; a value of dots alone is its code points.
    expect(recorded.map((job) => job.id)).toEqual(['dir-ok', 'dir-2e-2e', 'dir-x']);
    for (const job of recorded) expect(job.logPrefix).toBe(`${build?.logPrefix ?? ''}jobs/${job.id}/`);
    // Nothing was written outside the build's folder.
    expect(await logs.getObjectText(`logs/${repo}/builds/index.html`)).toBeUndefined();
  });

  it('refuses, before anything runs, a matrix whose job id would be too long to name a folder', async () => {
    const long = 'v'.repeat(100);
    const {
      build,
      jobs: recorded,
      log,
    } = await buildOf('long-id', {
      matrix: { a: [long], b: [long], c: [long] },
    });
    expect(build).toMatchObject({
      state: 'error',
      description: 'the matrix makes a job id that cannot be used',
    });
    expect(recorded).toEqual([]);
    expect(log).toContain('Nothing ran: the matrix makes the job id "a-vvvv');
    expect(log).not.toContain('JOB RAN');
  });

  it('keeps slugs of values with slashes and other punctuation inside the build', async () => {
    const { build, jobs: recorded } = await buildOf('slashes', {
      matrix: { dir: ['/etc/passwd', 'a/b\\c', '%2e%2e'] },
    });
    expect(build?.state).toBe('success');
    expect(recorded.map((job) => job.id)).toEqual(['dir-etc-passwd', 'dir-a-b-c', 'dir-2e-2e']);
    for (const job of recorded) expect(job.logPrefix).toBe(`${build?.logPrefix ?? ''}jobs/${job.id}/`);
    const log = (await logs.readLog(recorded[0]?.logPrefix ?? '')) ?? '';
    expect(log).toContain('JOB RAN /etc/passwd');
  });

  it('shows a matrix value of markup as text on the job and build pages and in the statuses', async () => {
    const value = '"><script>alert(1)</script><img src=x onerror=alert(2)>';
    const {
      build,
      jobs: recorded,
      repo,
      sha,
    } = await buildOf('markup', { matrix: { dir: [value, 'plain'] } });
    expect(build?.state).toBe('success');
    expect(recorded[0]?.id).toMatch(/^dir-[a-z0-9._-]+$/);
    expect(recorded[0]?.title).toBe(`dir ${value}`);
    const pages = [
      (await logs.getObjectText(`${build?.logPrefix ?? ''}index.html`)) ?? '',
      (await logs.getObjectText(`${recorded[0]?.logPrefix ?? ''}index.html`)) ?? '',
    ];
    for (const page of pages) {
      expect(page).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
      expect(page).not.toContain('<script>alert');
      expect(page).not.toContain('<img src=x');
    }
    const latest = latestByContext(repo, sha);
    expect(latest.get(`lambkin/${recorded[0]?.name ?? ''}`)?.description).toContain('<script>alert(1)');
    expect(latest.get(`lambkin/${recorded[0]?.name ?? ''}`)?.state).toBe('success');
  });

  it('refuses a matrix of a million combinations at once, saying how many and the limit', async () => {
    const values = Array.from({ length: 100 }, (_, index) => String(index));
    const started = Date.now();
    const {
      build,
      jobs: recorded,
      log,
    } = await buildOf('huge', { matrix: { a: values, b: values, c: values } });
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(build).toMatchObject({ state: 'error', description: 'too many jobs: 1000000, the limit is 16' });
    expect(recorded).toEqual([]);
    expect(log).toContain('makes 1000000 combinations before "exclude", over the limit of 16 jobs per build');
  });

  it("holds a fork's pull request to the operator's jobs limit even where it may set the config", async () => {
    const name = 'fork-limit';
    await settings.update(repoScope(`octo/${name}`), () => ({
      build: { maxJobs: 4, pullRequests: { fromForkPublicRepo: { allowConfigOverrides: true } } },
    }));
    const {
      build,
      jobs: recorded,
      log,
    } = await buildOf(
      name,
      { matrix: { node: ['22'] }, parallel: 40 },
      {
        event: 'pull_request',
        pr: 8,
        ref: 'refs/pull/8/head',
        branch: 'feature',
        baseBranch: 'main',
        fork: true,
        trusted: false,
        headRepo: 'stranger/fork-limit',
      },
    );
    expect(build).toMatchObject({ state: 'error', description: 'too many jobs: 40, the limit is 4' });
    expect(recorded).toEqual([]);
    expect(log).toContain('makes 40 jobs (40 shards), over the limit of 4 jobs per build');
  });
});

describe('App mode', () => {
  const APP_ID = 7123;
  const { publicKey, privateKey } = appKeyPair();
  let app: GitHubStandIn;
  let appDeps: ControllerDependencies;

  beforeAll(async () => {
    app = await startGitHubServer({
      apps: [{ id: APP_ID, publicKey }],
      installations: [{ id: 21, account: 'acme', repositories: ['acme/widget', 'acme/swept-jobs'] }],
    });
    const access = createGitHubAccess({
      baseUrl: app.url,
      logger,
      app: { appId: String(APP_ID), privateKey },
    });
    const contents = (repo: string) => access.forRepo(repo, CONTENTS_PERMISSIONS);
    appDeps = {
      ...base,
      statuses: statusReporterFor(access),
      archives: { resolveArchiveUrl: (repo, sha) => resolveArchiveUrl(contents(repo), repo, sha) },
      repoFiles: { readFile: (repo, path, ref) => readRepoFile(contents(repo), repo, path, ref) },
    };
  });

  afterAll(async () => {
    await app.close();
  });

  it("gives each job a check run of its own beside the build's `Lambkin` run", async () => {
    const { repo, sha } = await project(
      'widget',
      { matrix: { node: ['22'] }, parallel: 4 },
      ['echo "shard $LAMBKIN_SHARD_INDEX"', 'if [ "$LAMBKIN_SHARD_INDEX" = 2 ]; then exit 1; fi'],
      {},
      app,
      'acme',
    );
    const { deps, pool } = withPool(4, appDeps);
    const queued = await queue({ repo, sha });
    await runControllerBuild(deps, { kind: 'build', repo, number: queued.number });
    await pool.idle();
    expect((await builds.getBuild(queued))?.state).toBe('failure');

    const runs = app.checkRunsFor(repo, sha);
    const byName = (name: string) => runs.filter((run) => run.name === name);
    // One run per name: the job's updates went to its own run, never a new one.
    expect(runs.map((run) => run.name).sort()).toEqual([
      'Lambkin',
      'Lambkin/node-22 (1/4)',
      'Lambkin/node-22 (2/4)',
      'Lambkin/node-22 (3/4)',
      'Lambkin/node-22 (4/4)',
    ]);
    expect(byName('Lambkin')[0]).toMatchObject({
      status: 'completed',
      conclusion: 'failure',
      external_id: `${repo}#${queued.number}`,
    });
    for (const shard of [1, 2, 3, 4]) {
      expect(byName(`Lambkin/node-22 (${shard}/4)`)[0]).toMatchObject({
        status: 'completed',
        conclusion: shard === 2 ? 'failure' : 'success',
        external_id: `${repo}#${queued.number}/node-22.shard-${shard}`,
        details_url: `${PUBLIC_URL}/builds/${repo}/${queued.number}/jobs/node-22.shard-${shard}`,
      });
    }
    // And the statuses beside them, one context per job.
    expect(latestByContext(repo, sha, app).get('lambkin/node-22 (2/4)')?.state).toBe('failure');
  });

  it("completes every job's check run when the sweeper ends a build whose jobs never ran", async () => {
    const { repo, sha } = await project(
      'swept-jobs',
      { matrix: { node: ['22'] }, parallel: 2 },
      ['echo never'],
      {},
      app,
      'acme',
    );
    const deps = { ...appDeps, jobInvoker: droppingInvoker() };
    const queued = await queue({ repo, sha });
    await runControllerBuild(deps, { kind: 'build', repo, number: queued.number });
    expect(app.checkRunsFor(repo, sha).filter((run) => run.status !== 'completed')).toHaveLength(3);
    const result = await sweepOverdueBuilds({
      builds,
      jobs,
      statuses: appDeps.statuses,
      logger,
      publicUrl: PUBLIC_URL,
      clock: () => Date.now() + 60 * 60_000,
      statusDelivery: { deadlineMs: 5000, maxAttempts: 2, attemptTimeoutMs: 2000 },
    });
    expect(result.ended.filter((build) => build.repo === repo)).toHaveLength(1);
    const runs = app.checkRunsFor(repo, sha);
    expect(runs).toHaveLength(3);
    for (const run of runs) expect(run.status).toBe('completed');
  });
});

describe('failFast and crashed job controllers', () => {
  it('with failFast, a failed job stops the jobs still running and cancels the queued ones', async () => {
    const { repo, sha } = await project(
      'fail-fast-running',
      { matrix: { node: ['22'] }, parallel: 4, failFast: true },
      [
        'echo "started shard $LAMBKIN_SHARD_INDEX"',
        // Shard 1 fails once shards 2 and 3 run (their steps sleep); shard 4 waits its turn.
        'if [ "$LAMBKIN_SHARD_INDEX" = 1 ]; then sleep 3; exit 5; fi',
        'sleep 40',
        'echo "finished shard $LAMBKIN_SHARD_INDEX"',
      ],
    );
    const { deps, pool } = withPool(3);
    const queued = await queue({ repo, sha });
    await runControllerBuild(deps, { kind: 'build', repo, number: queued.number });
    const started = Date.now();
    await pool.idle();
    expect(Date.now() - started).toBeLessThan(30_000);
    const ended = await jobs.listJobs(queued);
    expect(ended.map((job) => job.state)).toEqual(['failure', 'cancelled', 'cancelled', 'cancelled']);
    for (const job of ended.slice(1)) {
      expect(job.description).toBe('cancelled: node 22, shard 1/4 failed (failFast)');
    }
    // Shards 2 and 3 had started; their runners were stopped, not left to finish.
    for (const job of ended.slice(1, 3)) {
      const log = (await logs.readLog(job.logPrefix)) ?? '';
      expect(log).not.toContain('finished shard');
      expect(job.events.map((event) => event.to)).toEqual(['queued', 'running', 'cancelled']);
    }
    expect(ended[3]?.events.map((event) => event.to)).toEqual(['queued', 'cancelled']);
    const build = await builds.getBuild(queued);
    expect(build?.state).toBe('failure');
    expect(build?.description).toMatch(/^node 22, shard 1\/4 failed: .*\(4 of 4 jobs did not pass\)$/);
    const latest = latestByContext(repo, sha);
    expect(latest.get('lambkin')?.state).toBe('failure');
    expect(latest.get('lambkin/node-22 (1/4)')?.state).toBe('failure');
    for (const shard of [2, 3, 4]) expect(latest.get(`lambkin/node-22 (${shard}/4)`)?.state).toBe('error');
  });

  it("ends a job whose controller throws `error` (the pool's on-failure), and the build fans in", async () => {
    const { repo, sha } = await project('controller-throws', { matrix: { node: ['22'] }, parallel: 2 }, [
      'echo "shard $LAMBKIN_SHARD_INDEX"',
    ]);
    // The job store fails (as DynamoDB would) when shard 2's end is recorded: its controller throws.
    const failing = Object.create(jobs) as DynamoJobStore;
    failing.transitionJob = async (job, request) => {
      if (job.index === 2 && request.from === 'running') throw new Error('ProvisionedThroughputExceeded');
      return jobs.transitionJob(job, request);
    };
    const { deps, pool } = withPool(2, { jobs: failing });
    const queued = await queue({ repo, sha });
    await runControllerBuild(deps, { kind: 'build', repo, number: queued.number });
    await pool.idle();
    const ended = await jobs.listJobs(queued);
    expect(ended.map((job) => job.state)).toEqual(['success', 'error']);
    expect(ended[1]?.description).toBe("the job's controller failed: ProvisionedThroughputExceeded");
    expect((await builds.getBuild(queued))?.state).toBe('error');
    const latest = latestByContext(repo, sha);
    expect(latest.get('lambkin/node-22 (2/2)')?.state).toBe('error');
    expect(latest.get('lambkin')?.state).toBe('error');
  });

  it('the on-failure destination with the job controller (as the local stack wires it) ends only the crashed job', async () => {
    const { repo, sha } = await project('on-failure-job', { matrix: { node: ['22'] }, parallel: 2 }, [
      'echo x',
    ]);
    const deps = { ...base, jobInvoker: droppingInvoker() };
    const queued = await queue({ repo, sha });
    await runControllerBuild(deps, { kind: 'build', repo, number: queued.number });
    // With the job controller (as the local stack wires it): that job ends, the build runs on.
    const result = await endFailedBuild(
      {
        builds,
        statuses: base.statuses,
        logger,
        publicUrl: PUBLIC_URL,
        jobController: {
          endCrashedJob: async (build, job, reason) => {
            const ended = await endCrashedJob(deps, { ...build, job }, reason);
            const record = ended ? await builds.getBuild(build) : undefined;
            return record ? { build: record } : undefined;
          },
        },
      },
      {
        payload: builderInvocationFor(queued, 'node-22.shard-1'),
        attempts: 3,
        error: { errorType: 'Runtime.ExitError', errorMessage: 'signal: killed' },
      },
    );
    expect(result).toMatchObject({ ended: true });
    expect(await statesOf(queued)).toEqual([
      ['node-22.shard-1', 'error'],
      ['node-22.shard-2', 'queued'],
    ]);
    expect((await builds.getBuild(queued))?.state).toBe('running');
    // The other job still runs to its end, and the build fans in.
    await runControllerBuild(deps, builderInvocationFor(queued, 'node-22.shard-2'));
    expect(await statesOf(queued)).toEqual([
      ['node-22.shard-1', 'error'],
      ['node-22.shard-2', 'success'],
    ]);
    expect((await builds.getBuild(queued))?.state).toBe('error');
  });

  // The cloud's failure function gets createBuildEnderDependencies (builds, jobs, statuses, logger,
  // publicUrl) and no `jobController`: with `jobs` it still ends only the crashed job.
  it('the on-failure destination as the cloud wires it ends only the crashed job', async () => {
    const { repo, sha } = await project('on-failure-cloud', { matrix: { node: ['22'] }, parallel: 2 }, [
      'echo x',
    ]);
    const deps = { ...base, jobInvoker: droppingInvoker() };
    const queued = await queue({ repo, sha });
    await runControllerBuild(deps, { kind: 'build', repo, number: queued.number });
    await endFailedBuild(
      { builds, jobs, statuses: base.statuses, logger, publicUrl: PUBLIC_URL } as Parameters<
        typeof endFailedBuild
      >[0],
      {
        payload: builderInvocationFor(queued, 'node-22.shard-1'),
        attempts: 3,
        error: { errorType: 'Runtime.ExitError', errorMessage: 'signal: killed' },
      },
    );
    expect(await statesOf(queued)).toEqual([
      ['node-22.shard-1', 'error'],
      ['node-22.shard-2', 'queued'],
    ]);
    expect((await builds.getBuild(queued))?.state).toBe('running');
  });

  it('ends a job Lambda would not start `error`; the others run; the build fans in once', async () => {
    const { repo, sha } = await project('invoke-fails', { matrix: { node: ['22'] }, parallel: 4 }, [
      'echo "shard $LAMBKIN_SHARD_INDEX"',
    ]);
    const { deps: pooled, pool } = withPool(4);
    const inner = pooled.jobInvoker as LocalJobPool;
    const deps: ControllerDependencies = {
      ...pooled,
      jobInvoker: {
        invoke: (build, job) =>
          job === 'node-22.shard-3'
            ? Promise.reject(new Error('TooManyRequestsException: Rate Exceeded'))
            : inner.invoke(build, job),
      },
    };
    const queued = await queue({ repo, sha });
    await runControllerBuild(deps, { kind: 'build', repo, number: queued.number });
    await pool.idle();
    const ended = await jobs.listJobs(queued);
    expect(ended.map((job) => job.state)).toEqual(['success', 'success', 'error', 'success']);
    expect(ended[2]?.description).toBe('could not start the job: TooManyRequestsException: Rate Exceeded');
    const build = await builds.getBuild(queued);
    expect(build?.state).toBe('error');
    expect(build?.events.map((event) => event.to)).toEqual(['queued', 'running', 'error']);
    // Whichever jobs ended last, the build's final status was set once.
    const final = github
      .statusesFor(repo, sha)
      .filter((status) => status.context === 'lambkin' && status.state !== 'pending');
    expect(final.map((status) => status.state)).toEqual(['error']);
  });
});
