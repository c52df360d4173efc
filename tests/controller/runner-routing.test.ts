/**
 * Two runner functions, trusted and untrusted builds: the controller sends each build to the
 * function of its kind (TrustRoutedRunnerInvoker, as src/wiring.ts wires it), a runner function
 * refuses a build of the other kind, and a runner that ends an unclean container
 * (`Runtime.ExitError`, exit status 75) gets the build again once, on a fresh container. Real
 * builds through the real runner handler behind the Lambda Invoke API stand-in.
 */
import { rmSync } from 'node:fs';
import { createLambdaClient } from '../../src/aws/clients.js';
import { runControllerBuild, type ControllerDependencies } from '../../src/controller/controller.js';
import {
  LambdaRunnerInvoker,
  RunnerFailedError,
  TrustRoutedRunnerInvoker,
} from '../../src/controller/runner-invoker.js';
import { UNCLEAN_CONTAINER_EXIT_STATUS, isUncleanContainerExit } from '../../src/core/container.js';
import type { BuildRequest } from '../../src/core/build.js';
import type { RunnerInput } from '../../src/core/protocol.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import { resolveArchiveUrl } from '../../src/github/archive.js';
import { createGitHubClient } from '../../src/github/client.js';
import { GitHubStatusReporter } from '../../src/github/statuses.js';
import {
  RunnerRefusedError,
  createRunnerHandler,
  type RunnerHandlerOptions,
  type RunnerTrust,
} from '../../src/handlers/runner.js';
import type { SweepReport } from '../../src/runner/container-hygiene.js';
import { DynamoBuildStore } from '../../src/store/builds.js';
import { S3LogStore } from '../../src/store/logs.js';
import { DynamoSettingsStore } from '../../src/store/settings.js';
import { createGitRepo, startGitHubServer, type GitHubStandIn } from '../support/github-server.js';
import { startLambdaServer, type LambdaServer } from '../support/lambda-server.js';
import { npmProject } from '../support/npm-projects.js';
import { createTestStorage, type TestStorage } from '../support/storage.js';

const TOKEN = 'routing-test-token';
const MINUTE = 60_000;

let storage: TestStorage;
let github: GitHubStandIn;
let lambda: LambdaServer;
let builds: DynamoBuildStore;
let deps: ControllerDependencies;
const folders: string[] = [];

/** What Lambda answers when the runtime process exits during an invocation. */
function runtimeExit(status: number | string): Error {
  const error = new Error(
    `RequestId: 7d3c0f5e-0000-4000-8000-000000000000 Error: Runtime exited with error: ${
      typeof status === 'number' ? `exit status ${status}` : status
    }`,
  );
  error.name = 'Runtime.ExitError';
  return error;
}

const CLEAN: SweepReport = {
  clean: true,
  killed: [],
  removed: [],
  remainingProcesses: [],
  remainingFiles: [],
  problems: [],
};
const UNCLEAN: SweepReport = {
  ...CLEAN,
  clean: false,
  problems: ['process 42 (sleep, uid 0) is still running: not permitted to signal it'],
};

/**
 * A runner function's container: the deployed handler of that kind. Its sweep is the given one
 * (the real sweep kills every process it may signal: tests/runner/container-hygiene.test.ts runs
 * it in a PID namespace of its own), and process.exit is what Lambda makes of it.
 */
function container(trust: RunnerTrust, sweeps: SweepReport[] | 'none' = 'none', log?: string[]) {
  const options: RunnerHandlerOptions = {
    trust,
    hygiene: sweeps === 'none' ? { kind: 'off' } : { kind: 'on' },
    workRoot: `/tmp/lambkin-routing-test-${trust}`,
    exit: (status) => {
      throw runtimeExit(status);
    },
    log: (line) => log?.push(line),
    ...(sweeps === 'none' ? {} : { sweep: () => Promise.resolve(sweeps.shift() ?? CLEAN) }),
  };
  return createRunnerHandler(options);
}

beforeAll(async () => {
  storage = await createTestStorage();
  github = await startGitHubServer({ token: TOKEN });
  lambda = await startLambdaServer({ strictFunctions: true });
  builds = new DynamoBuildStore(storage.clients.documents, storage.buildsTable);
  const octokit = createGitHubClient({ baseUrl: github.url, token: TOKEN });
  const trusted = container('trusted');
  const untrusted = container('untrusted');
  lambda.setHandler('runner-trusted', (payload) => trusted(payload as RunnerInput));
  lambda.setHandler('runner-untrusted', (payload) => untrusted(payload as RunnerInput));
  deps = {
    builds,
    settings: new DynamoSettingsStore(storage.clients.documents, storage.settingsTable),
    statuses: new GitHubStatusReporter(octokit),
    logs: new S3LogStore(storage.clients.s3, storage.bucket),
    archives: { resolveArchiveUrl: (repo, sha) => resolveArchiveUrl(octokit, repo, sha) },
    runner: new TrustRoutedRunnerInvoker(invoker('runner-trusted'), invoker('runner-untrusted')),
    logger: createMemoryLogger(),
    publicUrl: 'https://ci.example.test',
    runnerTimeoutMs: 90_000,
    logLimitBytes: 1024 * 1024,
  };
});

afterAll(async () => {
  await Promise.all([github.close(), lambda.close()]);
  for (const folder of folders) rmSync(folder, { recursive: true, force: true });
  for (const trust of ['trusted', 'untrusted']) {
    rmSync(`/tmp/lambkin-routing-test-${trust}`, { recursive: true, force: true });
  }
});

function invoker(functionName: string): LambdaRunnerInvoker {
  return new LambdaRunnerInvoker(
    createLambdaClient({ endpoints: { lambda: lambda.endpoint } }),
    functionName,
  );
}

let repoCount = 0;
async function queue(trusted: boolean) {
  const name = `routing-${++repoCount}`;
  const repo = await createGitRepo(npmProject({ test: `echo ran-${name}` }), { message: 'Initial commit' });
  folders.push(repo.dir);
  github.addRepository({ owner: 'octo', name, gitDir: repo.dir });
  const request: BuildRequest = {
    repo: `octo/${name}`,
    sha: repo.sha,
    event: 'push',
    ref: 'refs/heads/main',
    branch: 'main',
    defaultBranch: 'main',
    fork: !trusted,
    privateRepo: false,
    trusted,
    author: 'octocat',
    deliveryId: `delivery-${Math.random()}`,
  };
  const number = await builds.allocateNumber(request.repo);
  const queued = await builds.putQueuedBuild(request, number, { deadline: Date.now() + MINUTE });
  return { repo: request.repo, number: queued.number, queued };
}

/** Runs the build with the controller; returns it as stored and the runner invocations it made. */
async function build(trusted: boolean, runner = deps.runner) {
  const { repo, number, queued } = await queue(trusted);
  const before = lambda.invocations.length;
  const result = await runControllerBuild({ ...deps, runner }, { kind: 'build', repo, number });
  if (!result.ran) throw new Error('the build did not run');
  return {
    build: await builds.getBuild(queued),
    invoked: lambda.invocations.slice(before).map((invocation) => invocation.functionName),
  };
}

describe('a runner function per kind of build', () => {
  it('sends a trusted build to the trusted runner function', async () => {
    const { build: ended, invoked } = await build(true);
    expect(ended).toMatchObject({ state: 'success' });
    expect(invoked).toEqual(['runner-trusted']);
  }, 60_000);

  it('sends an untrusted build (a fork pull request) to the untrusted runner function', async () => {
    const { build: ended, invoked } = await build(false);
    expect(ended).toMatchObject({ state: 'success' });
    expect(invoked).toEqual(['runner-untrusted']);
  }, 60_000);

  it('a runner function refuses a build of the other kind: a misrouted build never runs', async () => {
    // A controller that sends everything to one function (as before the split, or misconfigured).
    const misrouted = new TrustRoutedRunnerInvoker(invoker('runner-trusted'), invoker('runner-trusted'));
    const { build: ended, invoked } = await build(false, misrouted);
    expect(invoked).toEqual(['runner-trusted']);
    expect(ended).toMatchObject({ state: 'error' });
    expect(ended?.description).toMatch(/runs trusted builds only/);
    const other = new TrustRoutedRunnerInvoker(invoker('runner-untrusted'), invoker('runner-untrusted'));
    const second = await build(true, other);
    expect(second.build).toMatchObject({ state: 'error' });
    expect(second.build?.description).toMatch(/runs untrusted builds only/);
  }, 60_000);

  it('refuses every build when the function does not say which kind it runs, and a non-input', async () => {
    const input = { kind: 'run', build: { repo: 'octo/x', number: 1, trusted: true } } as RunnerInput;
    await expect(createRunnerHandler({ trust: undefined, hygiene: { kind: 'off' } })(input)).rejects.toThrow(
      /LAMBKIN_RUNNER_TRUST is not set/,
    );
    await expect(container('untrusted')(input)).rejects.toThrow(RunnerRefusedError);
    // Anything but `trusted: true` is untrusted.
    await expect(
      container('trusted')({ ...input, build: { ...input.build, trusted: 'yes' as unknown as boolean } }),
    ).rejects.toThrow(/is untrusted: refused/);
    await expect(container('trusted')({} as RunnerInput)).rejects.toThrow(/expects a RunnerInput/);
  });
});

describe('an unclean container', () => {
  it('recognises only the exit of an unclean container', () => {
    const exit = runtimeExit(UNCLEAN_CONTAINER_EXIT_STATUS);
    expect(isUncleanContainerExit(exit.name, exit.message)).toBe(true);
    expect(isUncleanContainerExit(exit.name, runtimeExit(1).message)).toBe(false);
    expect(isUncleanContainerExit(exit.name, runtimeExit(750).message)).toBe(false);
    expect(isUncleanContainerExit(exit.name, runtimeExit('signal: killed').message)).toBe(false);
    expect(isUncleanContainerExit('Error', exit.message)).toBe(false);
  });

  it('found before the build: the runtime exits, and the build runs once on a fresh container', async () => {
    const log: string[] = [];
    // The first container finds a process it cannot kill; Lambda then starts a fresh one.
    const containers = [container('trusted', [UNCLEAN], log), container('trusted', [CLEAN, CLEAN], log)];
    let current = containers.shift();
    lambda.setHandler('runner-unclean', async (payload) => {
      try {
        return await current!(payload as RunnerInput);
      } catch (error) {
        if ((error as Error).name === 'Runtime.ExitError') current = containers.shift();
        throw error;
      }
    });
    const runner = new TrustRoutedRunnerInvoker(invoker('runner-unclean'), invoker('runner-untrusted'));
    const { build: ended, invoked } = await build(true, runner);
    expect(invoked).toEqual(['runner-unclean', 'runner-unclean']);
    expect(lambda.invocations.at(-2)?.outcome).toMatchObject({
      status: 'failed',
      errorType: 'Runtime.ExitError',
    });
    expect(ended).toMatchObject({ state: 'success' });
    expect(log.join('\n')).toMatch(/ending this container \(exit 75\): process 42/);
  }, 60_000);

  it('found twice: the build ends as error after two invocations, never a third', async () => {
    lambda.setHandler('runner-always-unclean', () => Promise.reject(runtimeExit(75)));
    const runner = new TrustRoutedRunnerInvoker(
      invoker('runner-always-unclean'),
      invoker('runner-untrusted'),
    );
    const { build: ended, invoked } = await build(true, runner);
    expect(invoked).toEqual(['runner-always-unclean', 'runner-always-unclean']);
    expect(ended).toMatchObject({ state: 'error' });
    expect(ended?.description).toMatch(/container unclean twice/);
  }, 60_000);

  it('does not retry any other exit of the runtime (out of memory: the build may have run)', async () => {
    lambda.setHandler('runner-oom', () => Promise.reject(runtimeExit('signal: killed')));
    const error = await invoker('runner-oom')
      .run({ kind: 'run' } as RunnerInput)
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(RunnerFailedError);
    expect(lambda.invocations.filter((entry) => entry.functionName === 'runner-oom')).toHaveLength(1);
  });

  it('found after the build: the outcome is returned, and the next invocation ends the container', async () => {
    const log: string[] = [];
    const handler = container('trusted', [CLEAN, UNCLEAN], log);
    lambda.setHandler('runner-tainted', (payload) => handler(payload as RunnerInput));
    const runner = new TrustRoutedRunnerInvoker(invoker('runner-tainted'), invoker('runner-untrusted'));
    const first = await build(true, runner);
    expect(first.build).toMatchObject({ state: 'success' });
    expect(first.invoked).toEqual(['runner-tainted']);
    // The same (tainted) container exits at once, again on the retry: nothing runs in it.
    const second = await build(true, runner);
    expect(second.invoked).toEqual(['runner-tainted', 'runner-tainted']);
    expect(second.build).toMatchObject({ state: 'error' });
    expect(log.filter((line) => line.includes('ending this container'))).toHaveLength(2);
  }, 60_000);
});
