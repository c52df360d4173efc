/**
 * "A true status, always": the builder against real servers when things go wrong — GitHub down
 * during the final report (the sweeper re-sends the status later), the controller process killed
 * mid-build (the sweeper ends it), the runner function dying out of memory, and a running build
 * cancelled from elsewhere (the controller stops the runner and keeps the cancelled state).
 */
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLambdaClient } from '../../src/aws/clients.js';
import { runControllerBuild, type ControllerDependencies } from '../../src/controller/controller.js';
import {
  LambdaRunnerInvoker,
  ProcessRunnerInvoker,
  RunnerAbortedError,
  RunnerFailedError,
} from '../../src/controller/runner-invoker.js';
import { sweepOverdueBuilds } from '../../src/controller/sweeper.js';
import type { RunnerInput } from '../../src/core/protocol.js';
import type { BuildRequest } from '../../src/core/build.js';
import { resolveArchiveUrl } from '../../src/github/archive.js';
import { createGitHubClient } from '../../src/github/client.js';
import { GitHubStatusReporter } from '../../src/github/statuses.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import { DynamoBuildStore } from '../../src/store/builds.js';
import { S3LogStore } from '../../src/store/logs.js';
import { DynamoSettingsStore } from '../../src/store/settings.js';
import { createGitRepo, startGitHubServer, type GitHubStandIn } from '../support/github-server.js';
import { startLambdaServer, type LambdaServer } from '../support/lambda-server.js';
import { npmProject } from '../support/npm-projects.js';
import { createTestStorage, type TestStorage } from '../support/storage.js';
import { itAsRoot } from '../support/tools.js';

const TOKEN = 'trust-test-token';
const PUBLIC_URL = 'https://ci.example.test';
const MINUTE = 60_000;

let storage: TestStorage;
let github: GitHubStandIn;
let lambda: LambdaServer;
let builds: DynamoBuildStore;
let logs: S3LogStore;
let statuses: GitHubStatusReporter;
let deps: ControllerDependencies;
const folders: string[] = [];

beforeAll(async () => {
  storage = await createTestStorage();
  github = await startGitHubServer({ token: TOKEN });
  lambda = await startLambdaServer();
  builds = new DynamoBuildStore(storage.clients.documents, storage.buildsTable);
  logs = new S3LogStore(storage.clients.s3, storage.bucket);
  const octokit = createGitHubClient({ baseUrl: github.url, token: TOKEN });
  statuses = new GitHubStatusReporter(octokit);
  deps = {
    builds,
    settings: new DynamoSettingsStore(storage.clients.documents, storage.settingsTable),
    statuses,
    logs,
    archives: { resolveArchiveUrl: (repo, sha) => resolveArchiveUrl(octokit, repo, sha) },
    runner: new ProcessRunnerInvoker(),
    logger: createMemoryLogger(),
    publicUrl: PUBLIC_URL,
    runnerTimeoutMs: 90_000,
    logLimitBytes: 1024 * 1024,
    watchIntervalMs: 200,
  };
});

afterEach(() => {
  github.clearFaults();
  lambda.clearFaults();
});

afterAll(async () => {
  await Promise.all([github.close(), lambda.close()]);
  for (const folder of folders) rmSync(folder, { recursive: true, force: true });
});

async function repository(name: string, test: string) {
  const repo = await createGitRepo(npmProject({ test }), { message: 'Initial commit' });
  folders.push(repo.dir);
  github.addRepository({ owner: 'octo', name, gitDir: repo.dir });
  return { repo: `octo/${name}`, sha: repo.sha };
}

async function queue(repo: string, sha: string) {
  const request: BuildRequest = {
    repo,
    sha,
    event: 'push',
    ref: 'refs/heads/main',
    branch: 'main',
    defaultBranch: 'main',
    fork: false,
    privateRepo: false,
    trusted: true,
    author: 'octocat',
    deliveryId: `delivery-${Math.random()}`,
  };
  const number = await builds.allocateNumber(repo);
  return builds.putQueuedBuild(request, number, { deadline: Date.now() + MINUTE });
}

/** Waits until the build's streamed log contains `text`. */
async function logContains(prefix: string, text: string, timeoutMs = 60_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if ((await logs.readLog(prefix))?.includes(text)) return;
    await sleep(200);
  }
  throw new Error(`the log never showed "${text}"`);
}

const sweepLater = (offsetMs: number) =>
  sweepOverdueBuilds({
    builds,
    statuses,
    logger: createMemoryLogger(),
    publicUrl: PUBLIC_URL,
    clock: () => Date.now() + offsetMs,
    statusDelivery: { deadlineMs: 3000, maxAttempts: 3, initialBackoffMs: 20 },
  });

describe('a true status, always', () => {
  it('re-sends the final status GitHub never got, once GitHub is back (sweeper)', async () => {
    const { repo, sha } = await repository('outage', 'echo tested');
    const queued = await queue(repo, sha);
    // GitHub answers 500 to every status for longer than the (shortened) final delivery budget.
    github.failNext({ mode: '500', method: 'POST', path: /\/statuses\//, times: 1000 });
    const result = await runControllerBuild(
      { ...deps, finalDelivery: { deadlineMs: 1500, maxAttempts: 3, initialBackoffMs: 50 } },
      { kind: 'build', repo, number: queued.number },
    );
    if (!result.ran) throw new Error('the build did not run');
    const ended = await builds.getBuild(queued);
    expect(ended?.state).toBe('success');
    expect(ended?.reportedState).toBeUndefined();
    expect(github.statusesFor(repo, sha)).toEqual([]);

    // Still down: the sweep tries, says so, and keeps the build for the next one.
    const down = await sweepLater(5 * MINUTE);
    expect(down.resent).toEqual([expect.objectContaining({ number: queued.number, statusSet: false })]);
    expect(github.statusesFor(repo, sha)).toEqual([]);

    // Too soon after the build ended: the sweep leaves it to the builder's own retries.
    github.clearFaults();
    expect(
      (await sweepOverdueBuilds({ builds, statuses, logger: createMemoryLogger(), publicUrl: PUBLIC_URL }))
        .resent,
    ).toEqual([]);

    const back = await sweepLater(5 * MINUTE);
    expect(back.resent).toEqual([
      expect.objectContaining({ number: queued.number, state: 'success', statusSet: true }),
    ]);
    expect(github.statusesFor(repo, sha)[0]).toMatchObject({
      state: 'success',
      description: expect.stringMatching(new RegExp(`^Build #${queued.number} passed`)),
    });
    expect(await builds.getBuild(queued)).toMatchObject({ state: 'success', reportedState: 'success' });
    // Reported: no later sweep sends it again.
    expect((await sweepLater(10 * MINUTE)).resent).toEqual([]);
    expect(github.statusesFor(repo, sha)).toHaveLength(1);
  });

  it('records the state GitHub acknowledged when the final status goes through', async () => {
    const { repo, sha } = await repository('acknowledged', 'echo tested');
    const queued = await queue(repo, sha);
    await runControllerBuild(deps, { kind: 'build', repo, number: queued.number });
    expect(await builds.getBuild(queued)).toMatchObject({ state: 'success', reportedState: 'success' });
    expect((await sweepLater(10 * MINUTE)).resent).toEqual([]);
  });

  it('ends a build whose controller was killed mid-build as timed_out (sweeper), with its status', async () => {
    const { repo, sha } = await repository('killed', 'echo step-started; sleep 60');
    const queued = await queue(repo, sha);
    const runnerTimeoutMs = 60_000;
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'tests/support/controller-process.ts', `${repo}#${queued.number}`],
      {
        detached: true,
        stdio: ['ignore', 'pipe', 'inherit'],
        env: {
          ...process.env,
          TEST_BUILDS_TABLE: storage.buildsTable,
          TEST_SETTINGS_TABLE: storage.settingsTable,
          TEST_BUCKET: storage.bucket,
          GITHUB_API_URL: github.url,
          GITHUB_TOKEN: TOKEN,
          TEST_RUNNER_TIMEOUT_MS: String(runnerTimeoutMs),
        },
      },
    );
    let output = '';
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    const exited = new Promise<NodeJS.Signals | null>((resolve) =>
      child.once('exit', (_, signal) => resolve(signal)),
    );
    try {
      await logContains(queued.logPrefix, 'step-started');
    } finally {
      // The controller and its runner die at once, as when the container is killed.
      process.kill(-(child.pid ?? 0), 'SIGKILL');
    }
    expect(await exited).toBe('SIGKILL');
    expect(output).not.toContain('"ran"');
    const stuck = await builds.getBuild(queued);
    expect(stuck?.state).toBe('running');
    expect(github.statusesFor(repo, sha).map((status) => status.state)).toEqual(['pending']);

    // Not yet past its deadline: left alone.
    expect((await sweepLater(0)).ended).toEqual([]);
    const swept = await sweepLater(runnerTimeoutMs + 2 * MINUTE);
    expect(swept.ended).toEqual([
      expect.objectContaining({ number: queued.number, from: 'running', to: 'timed_out', statusSet: true }),
    ]);
    expect(await builds.getBuild(queued)).toMatchObject({ state: 'timed_out', reportedState: 'timed_out' });
    expect(github.statusesFor(repo, sha)[0]).toMatchObject({
      state: 'error',
      description: `Build #${queued.number} timed out: stuck: the builder did not finish by its deadline`,
    });
  }, 120_000);

  /** A running build cancelled elsewhere, stopped through `runner`; `marker` is its step's unusual sleep. */
  async function cancelWhileRunning(
    name: string,
    marker: string,
    runner: ControllerDependencies['runner'],
  ): Promise<void> {
    // An unusual duration, so the step's own process can be found (and must be gone) afterwards.
    const { repo, sha } = await repository(name, `echo step-started; ${marker}`);
    const queued = await queue(repo, sha);
    const started = Date.now();
    const running = runControllerBuild({ ...deps, runner }, { kind: 'build', repo, number: queued.number });
    await logContains(queued.logPrefix, 'step-started');
    // What the intake does for a newer push to the same branch.
    await builds.transition(queued, { from: 'running', to: 'cancelled', reason: 'superseded by #99' });
    await statuses.setStatus(
      { repo, sha, state: 'error', description: `Build #${queued.number} cancelled: superseded by #99` },
      { deadlineMs: 3000, maxAttempts: 1 },
    );
    await builds.markReported(queued, 'cancelled');
    const result = await running;
    expect(Date.now() - started).toBeLessThan(40_000);
    if (!result.ran) throw new Error('the build did not run');
    expect(result.build).toMatchObject({ state: 'cancelled', description: 'superseded by #99' });
    expect(await builds.getBuild(queued)).toMatchObject({ state: 'cancelled', reportedState: 'cancelled' });
    // Stopping the runner stopped its step too: nothing of the build is left running.
    expect(await processesRunning(marker)).toEqual([]);
    // The controller set no status after the cancellation.
    expect(github.statusesFor(repo, sha).map((status) => status.description)).toEqual([
      `Build #${queued.number} cancelled: superseded by #99`,
      `Build #${queued.number} running`,
    ]);
    const log = (await logs.readLog(queued.logPrefix)) ?? '';
    expect(log).toContain('step-started');
    expect(log).toContain('The build was stopped: cancelled: superseded by #99');
    expect(await logs.getObjectText(`${queued.logPrefix}index.html`)).toContain('cancelled');
  }

  it(
    'stops a running build cancelled elsewhere and keeps it cancelled, with its log',
    () => cancelWhileRunning('cancelled', 'sleep 64.25', deps.runner),
    60_000,
  );

  itAsRoot(
    'stops it the same way when the runner runs in a build sandbox (its own uid and PID namespace)',
    () =>
      cancelWhileRunning(
        'cancelled-namespaced',
        'sleep 65.25',
        new ProcessRunnerInvoker({ sandbox: true, workRoot: '/tmp/lambkin-sandbox-test' }),
      ),
    60_000,
  );

  it('ends the build as error when the runner function dies (out of memory, killed)', async () => {
    const { repo, sha } = await repository('oom', 'echo never');
    lambda.setHandler('runner-oom', () =>
      Promise.reject(new Error('Runtime exited with error: signal: killed (out of memory)')),
    );
    const runner = new LambdaRunnerInvoker(
      createLambdaClient({ endpoints: { lambda: lambda.endpoint } }),
      'runner-oom',
    );
    const queued = await queue(repo, sha);
    const result = await runControllerBuild(
      { ...deps, runner },
      { kind: 'build', repo, number: queued.number },
    );
    if (!result.ran) throw new Error('the build did not run');
    expect(result.build.state).toBe('error');
    expect(result.build.description).toMatch(/runner crashed: Runtime exited with error: signal: killed/);
    expect(github.statusesFor(repo, sha)[0]).toMatchObject({
      state: 'error',
      description: expect.stringContaining('signal: killed'),
    });
    expect(await builds.getBuild(queued)).toMatchObject({ state: 'error', reportedState: 'error' });
  });

  it('aborts a runner function invocation when asked', async () => {
    lambda.setHandler('runner-slow', async () => {
      await sleep(10_000);
      return null;
    });
    const runner = new LambdaRunnerInvoker(
      createLambdaClient({ endpoints: { lambda: lambda.endpoint } }),
      'runner-slow',
    );
    const abort = new AbortController();
    setTimeout(() => abort.abort(new Error('cancelled: superseded by #3')), 300);
    const started = Date.now();
    const error: unknown = await runner
      .run({} as RunnerInput, abort.signal)
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(RunnerAbortedError);
    expect(error).not.toBeInstanceOf(RunnerFailedError);
    expect((error as RunnerAbortedError).reason).toBe('cancelled: superseded by #3');
    expect(Date.now() - started).toBeLessThan(5000);
  });
});

/** Pids whose command line contains `fragment` (waits briefly for a killed group to go). */
async function processesRunning(fragment: string): Promise<string[]> {
  const { readdirSync, readFileSync } = await import('node:fs');
  let found: string[] = [];
  for (let attempt = 0; attempt < 30; attempt++) {
    found = readdirSync('/proc')
      .filter((name) => /^\d+$/.test(name))
      .filter((pid) => {
        try {
          const state = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '')[0];
          return (
            state !== 'Z' &&
            readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').includes(fragment)
          );
        } catch {
          return false; // gone while looking
        }
      });
    if (found.length === 0) return found;
    await sleep(100);
  }
  return found;
}
