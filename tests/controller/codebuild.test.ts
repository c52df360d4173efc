/**
 * Builds placed on CodeBuild through the real controller: the storage emulators, the GitHub
 * stand-in, a loopback CodeBuild (./codebuild-stand-in.ts) that downloads the real runner bundle the
 * controller uploaded, checks its sha256 and runs it with `--input-url`, and the real events handler
 * (src/handlers/codebuild-events.ts) fed the completion events. Also the events nobody should
 * trust: duplicates, unknown builds, a LAMBKIN_BUILD naming another build.
 */
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCodeBuildClient } from '../../src/aws/clients.js';
import { CodeBuildRemoteRunner } from '../../src/aws/codebuild.js';
import { stopRemoteRunsOf } from '../../src/controller/codebuild-run.js';
import { runControllerBuild, type ControllerDependencies } from '../../src/controller/controller.js';
import { endCrashedJob } from '../../src/controller/job-controller.js';
import { LocalJobPool } from '../../src/local/job-pool.js';
import { ProcessRunnerInvoker } from '../../src/controller/runner-invoker.js';
import { runnerProgram } from '../../src/controller/runner-program.js';
import { sweepOverdueBuilds } from '../../src/controller/sweeper.js';
import { sweepRemoteRun } from '../../src/controller/codebuild-finish.js';
import type { BuildRecord, BuildRequest } from '../../src/core/build.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import { usageMonth } from '../../src/core/placement.js';
import { builderInvocationFor } from '../../src/core/protocol.js';
import { resolveArchiveUrl } from '../../src/github/archive.js';
import { createGitHubClient } from '../../src/github/client.js';
import { readRepoFile } from '../../src/github/contents.js';
import { GitHubStatusReporter } from '../../src/github/statuses.js';
import { createCodeBuildEventsHandler } from '../../src/handlers/codebuild-events.js';
import { DynamoBuildStore } from '../../src/store/builds.js';
import { DynamoJobStore } from '../../src/store/jobs.js';
import { S3LogStore } from '../../src/store/logs.js';
import { DynamoRemoteUsage, S3RemoteRunObjects } from '../../src/store/remote-runs.js';
import { DynamoSettingsStore } from '../../src/store/settings.js';
import { testBuildRequest } from '../support/builds.js';
import {
  createGitRepoFromDirectory,
  startGitHubServer,
  type GitHubStandIn,
} from '../support/github-server.js';
import { latestByContext } from '../support/statuses.js';
import { createTestStorage, type TestStorage } from '../support/storage.js';
import { startCodeBuildStandIn, stateChangeEvent, type CodeBuildStandIn } from './codebuild-stand-in.js';

const TOKEN = 'codebuild-test-token';
const PROJECT = 'lambkin-builds';
const SECRET = 'sekret-value-4711';

let storage: TestStorage;
let github: GitHubStandIn;
let builds: DynamoBuildStore;
let logs: S3LogStore;
let settings: DynamoSettingsStore;
let usage: DynamoRemoteUsage;
let scratch: string;
let live: CodeBuildStandIn;
let idle: CodeBuildStandIn;
let base: ControllerDependencies;
let onLive: ControllerDependencies;
let onIdle: ControllerDependencies;
/** Live's events go nowhere while set (an event EventBridge lost). */
let dropEvents = false;

function depsWith(
  standIn: { url: string },
  overrides: Partial<ControllerDependencies> = {},
): ControllerDependencies {
  return {
    ...base,
    codebuild: {
      platform: { project: PROJECT, dockerProject: `${PROJECT}-docker`, timeoutMinutes: 60 },
      runner: new CodeBuildRemoteRunner(
        createCodeBuildClient({
          endpoints: { codebuild: standIn.url },
          region: 'us-east-1',
          credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
          maxAttempts: 1,
        }),
      ),
      objects: new S3RemoteRunObjects(storage.clients.s3, storage.bucket, async () =>
        readFile((await runnerProgram()).file),
      ),
      usage,
    },
    ...overrides,
  };
}

beforeAll(async () => {
  storage = await createTestStorage();
  github = await startGitHubServer({ token: TOKEN });
  builds = new DynamoBuildStore(storage.clients.documents, storage.buildsTable);
  logs = new S3LogStore(storage.clients.s3, storage.bucket);
  settings = new DynamoSettingsStore(storage.clients.documents, storage.settingsTable);
  usage = new DynamoRemoteUsage(storage.clients.documents, storage.settingsTable);
  scratch = await mkdtemp(join(tmpdir(), 'lambkin-codebuild-'));
  const octokit = createGitHubClient({ baseUrl: github.url, token: TOKEN });
  base = {
    builds,
    settings,
    statuses: new GitHubStatusReporter(octokit),
    logs,
    archives: { resolveArchiveUrl: (repo, sha) => resolveArchiveUrl(octokit, repo, sha) },
    repoFiles: { readFile: (repo, path, ref) => readRepoFile(octokit, repo, path, ref) },
    runner: new ProcessRunnerInvoker({ workRoot: join(scratch, 'lambda-work') }),
    jobs: new DynamoJobStore(storage.clients.documents, storage.buildsTable),
    logger: createMemoryLogger(),
    publicUrl: 'https://ci.example.test',
    runnerTimeoutMs: 90_000,
    logLimitBytes: 1024 * 1024,
    watchIntervalMs: 200,
  };
  const liveHandler = createCodeBuildEventsHandler(() => onLive);
  live = await startCodeBuildStandIn({
    onEvent: async (event) => (dropEvents ? undefined : liveHandler(event)),
    runnerEnv: { LAMBKIN_WORK_ROOT: join(scratch, 'codebuild-work') },
  });
  idle = await startCodeBuildStandIn({ onEvent: async () => undefined, dryRun: true });
  onLive = depsWith(live);
  onIdle = depsWith(idle);
  await settings.update({ kind: 'global' }, () => ({
    codebuild: { repos: ['octo/*'] },
    secretEnv: { DEPLOY_TOKEN: SECRET },
  }));
  await mkdir(join(scratch, 'codebuild-work'), { recursive: true });
}, 120_000);

afterAll(async () => {
  await live?.close();
  await idle?.close();
  await github?.close();
  await rm(scratch, { recursive: true, force: true });
});

let projects = 0;
/** A repository whose test step is `sh job.sh`, with `config` in .lambkin.json. */
async function project(
  config: Record<string, unknown>,
  script: string[],
): Promise<{ repo: string; sha: string }> {
  const name = `project-${++projects}`;
  const dir = join(scratch, name);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'job.sh'), [...script, ''].join('\n'));
  await writeFile(join(dir, '.lambkin.json'), JSON.stringify({ install: [], test: 'sh job.sh', ...config }));
  const repo = await createGitRepoFromDirectory(dir);
  github.addRepository({ owner: 'octo', name, gitDir: repo.dir });
  return { repo: `octo/${name}`, sha: repo.sha };
}

async function queue(
  request: Partial<BuildRequest> & Pick<BuildRequest, 'repo' | 'sha'>,
): Promise<BuildRecord> {
  const full = testBuildRequest(request);
  const number = await builds.allocateNumber(full.repo);
  return builds.putQueuedBuild(full, number, { deadline: Date.now() + 60_000 });
}

/** Runs the build through the controller; on CodeBuild, waits for its end and its event. */
async function build(
  deps: ControllerDependencies,
  request: Partial<BuildRequest> & Pick<BuildRequest, 'repo' | 'sha'>,
): Promise<{ done: BuildRecord; log: string }> {
  const queued = await queue(request);
  const result = await runControllerBuild(deps, builderInvocationFor(queued));
  if (!result.ran) throw new Error(`build did not run: ${result.reason}`);
  const record = (await builds.getBuild(queued)) ?? queued;
  if (record.remote && deps === onLive) await live.ended(record.remote.buildId);
  const done = (await builds.getBuild(queued)) ?? queued;
  return { done, log: (await logs.readLog(done.logPrefix)) ?? '' };
}

async function inputObjects(): Promise<string[]> {
  const listed = await storage.clients.s3.send(
    new ListObjectsV2Command({ Bucket: storage.bucket, Prefix: 'runner-input/' }),
  );
  return (listed.Contents ?? []).map((object) => object.Key ?? '');
}

describe('a build set to CodeBuild', () => {
  it('runs there end to end: the real runner, its log, status, the input gone, the minutes counted', async () => {
    const { repo, sha } = await project({ runsOn: { codebuild: { compute: 'medium' } } }, [
      'echo "hello from codebuild"',
      'test -n "$DEPLOY_TOKEN" && echo "the secret reached the step"',
    ]);
    const before = await usage.minutesOf(usageMonth(Date.now()));
    const { done, log } = await build(onLive, { repo, sha });
    expect(done.state).toBe('success');
    expect(done.remote).toMatchObject({ kind: 'codebuild', project: PROJECT, attempt: 1, compute: 'medium' });
    expect(done.remote?.finishedAt).toBeDefined();
    // Its deadline was CodeBuild's limit plus the controller's margin, not Lambda's.
    expect(done.deadline).toBeGreaterThanOrEqual((done.remote?.startedAt ?? Infinity) + 60 * 60_000);
    expect(log).toContain('hello from codebuild');
    expect(log).toContain('the secret reached the step');
    expect(log).not.toContain(SECRET);
    expect(log).toContain('CodeBuild start');
    expect(latestByContext(github, repo, sha).get('lambkin')?.state).toBe('success');

    // The StartBuild request: the overrides the contract fixes, plain variables, no secret.
    const started = live.requests.filter((request) => request.target.endsWith('.StartBuild')).at(-1);
    const body = started?.body as Record<string, unknown>;
    expect(body).toMatchObject({
      projectName: PROJECT,
      computeTypeOverride: 'BUILD_GENERAL1_MEDIUM',
      timeoutInMinutesOverride: 60,
    });
    expect(body['imageOverride']).toBeUndefined();
    expect(typeof body['idempotencyToken']).toBe('string');
    const variables = body['environmentVariablesOverride'] as { name: string; value: string; type: string }[];
    expect(variables.map((variable) => variable.name).sort()).toEqual([
      'LAMBKIN_BUILD',
      'LAMBKIN_RUNNER_INPUT_URL',
      'LAMBKIN_RUNNER_SHA256',
      'LAMBKIN_RUNNER_URL',
    ]);
    expect(variables.every((variable) => variable.type === 'PLAINTEXT')).toBe(true);
    expect(variables.find((variable) => variable.name === 'LAMBKIN_BUILD')?.value).toBe(
      `${repo}#${done.number}`,
    );
    expect(JSON.stringify(body)).not.toContain(SECRET);
    // The input lived only while it was needed; the month's minutes grew by the run's.
    expect(await inputObjects()).toEqual([]);
    expect(await usage.minutesOf(usageMonth(Date.now()))).toBeGreaterThanOrEqual(before + 1);
  }, 120_000);

  it('fails as the runner says when a step fails (CodeBuild: FAILED)', async () => {
    const { repo, sha } = await project({ runsOn: { codebuild: {} } }, ['echo "about to fail"', 'exit 3']);
    const { done, log } = await build(onLive, { repo, sha });
    expect(done.state).toBe('failure');
    expect(done.description).toMatch(/test/);
    expect(log).toContain('about to fail');
    const ran = live.builds.find((candidate) => candidate.id === done.remote?.buildId);
    expect(ran?.buildStatus).toBe('FAILED');
  }, 120_000);

  it('a second event of the same build changes nothing and counts no minutes twice', async () => {
    const { repo, sha } = await project({ runsOn: { codebuild: {} } }, ['echo once']);
    const { done } = await build(onLive, { repo, sha });
    const ran = live.builds.find((candidate) => candidate.id === done.remote?.buildId);
    if (!ran) throw new Error('no CodeBuild build');
    const minutes = await usage.minutesOf(usageMonth(Date.now()));
    const handler = createCodeBuildEventsHandler(() => onLive);
    await expect(handler(stateChangeEvent(ran))).resolves.toEqual({ finished: false, reason: 'duplicate' });
    // Even one that says otherwise.
    await expect(handler(stateChangeEvent({ ...ran, buildStatus: 'FAILED' }))).resolves.toEqual({
      finished: false,
      reason: 'duplicate',
    });
    expect((await builds.getBuild(done))?.state).toBe('success');
    expect(await usage.minutesOf(usageMonth(Date.now()))).toBe(minutes);
  }, 120_000);

  it('honours idempotency: the same token starts no second build', async () => {
    const runner = onIdle.codebuild?.runner;
    const request = {
      project: PROJECT,
      idempotencyToken: 'same-token',
      computeType: 'BUILD_GENERAL1_SMALL',
      timeoutMinutes: 60,
      environment: { LAMBKIN_BUILD: 'octo/x#1' },
    };
    const first = await runner?.start(request);
    const second = await runner?.start(request);
    expect(second).toEqual(first);
  });
});

describe('completion events that must not count', () => {
  /** A build started on the idle stand-in: recorded as running there, nothing runs. */
  async function startedIdle(): Promise<BuildRecord> {
    const { repo, sha } = await project({ runsOn: { codebuild: {} } }, ['echo idle']);
    const queued = await queue({ repo, sha });
    await runControllerBuild(onIdle, builderInvocationFor(queued));
    const record = await builds.getBuild(queued);
    if (!record?.remote) throw new Error('not started on CodeBuild');
    expect(record.state).toBe('running');
    return record;
  }
  const idleBuild = (record: BuildRecord) => {
    const found = idle.builds.find((candidate) => candidate.id === record.remote?.buildId);
    if (!found) throw new Error('no idle build');
    return found;
  };

  it('an unknown CodeBuild build naming a real build is ignored', async () => {
    const record = await startedIdle();
    const stranger = {
      ...idleBuild(record),
      id: `${PROJECT}:not-ours`,
      arn: `arn:aws:codebuild:us-east-1:123456789012:build/${PROJECT}:not-ours`,
      buildStatus: 'SUCCEEDED',
      buildComplete: true,
      endTime: Date.now(),
    };
    const handler = createCodeBuildEventsHandler(() => onIdle);
    await expect(handler(stateChangeEvent(stranger))).resolves.toEqual({
      finished: false,
      reason: 'not this run',
    });
    expect((await builds.getBuild(record))?.state).toBe('running');
  });

  it('a build whose LAMBKIN_BUILD names another build cannot finish that one', async () => {
    const victim = await startedIdle();
    const attacker = await startedIdle();
    const forged = {
      ...idleBuild(attacker),
      buildStatus: 'SUCCEEDED',
      buildComplete: true,
      endTime: Date.now(),
      environment: { ...idleBuild(attacker).environment, LAMBKIN_BUILD: `${victim.repo}#${victim.number}` },
    };
    const handler = createCodeBuildEventsHandler(() => onIdle);
    await expect(handler(stateChangeEvent(forged))).resolves.toEqual({
      finished: false,
      reason: 'not this run',
    });
    expect((await builds.getBuild(victim))?.state).toBe('running');
    expect((await builds.getBuild(attacker))?.state).toBe('running');
  });

  it('an event that names nothing, or no build that exists, or is not final, is ignored', async () => {
    const record = await startedIdle();
    const handler = createCodeBuildEventsHandler(() => onIdle);
    const ran = idleBuild(record);
    await expect(handler(stateChangeEvent(ran))).resolves.toEqual({ finished: false, reason: 'not final' });
    const done = { ...ran, buildStatus: 'SUCCEEDED', buildComplete: true };
    await expect(handler(stateChangeEvent({ ...done, environment: {} }))).resolves.toEqual({
      finished: false,
      reason: 'not a Lambkin build',
    });
    await expect(
      handler(stateChangeEvent({ ...done, environment: { LAMBKIN_BUILD: `${record.repo}#99999` } })),
    ).resolves.toEqual({ finished: false, reason: 'unknown build' });
    await expect(handler({ detail: { nothing: true } })).resolves.toEqual({
      finished: false,
      reason: 'not final',
    });
  });

  it('TIMED_OUT ends the build timed_out; SUCCEEDED without an outcome is an error, never success', async () => {
    const handler = createCodeBuildEventsHandler(() => onIdle);
    const slow = await startedIdle();
    const timedOut = {
      ...idleBuild(slow),
      buildStatus: 'TIMED_OUT',
      buildComplete: true,
      endTime: Date.now(),
    };
    await expect(handler(stateChangeEvent(timedOut))).resolves.toMatchObject({
      finished: true,
      state: 'timed_out',
    });
    expect((await builds.getBuild(slow))?.description).toBe("timed out after 60 min (CodeBuild's limit)");

    const silent = await startedIdle();
    const succeeded = {
      ...idleBuild(silent),
      buildStatus: 'SUCCEEDED',
      buildComplete: true,
      endTime: Date.now(),
    };
    await expect(handler(stateChangeEvent(succeeded))).resolves.toMatchObject({
      finished: true,
      state: 'error',
    });
    expect((await builds.getBuild(silent))?.description).toBe(
      'build error: the runner on CodeBuild reported nothing',
    );
  });

  it('a forged outcome that says success is not taken when CodeBuild says FAILED', async () => {
    const record = await startedIdle();
    const run = record.remote;
    if (!run) throw new Error('no run');
    // Written where the runner writes (as a step that found the URL could have).
    const forged = {
      outcome: {
        kind: 'outcome',
        state: 'success',
        description: 'all good, trust me',
        steps: [],
        log: { chunks: 0, totalBytes: 0, truncatedBytes: 0, tail: false },
      },
    };
    const upload = await onIdle.codebuild?.objects.presignOutcome(run.outcomeKey, 60);
    await fetch(upload?.url ?? '', { method: 'PUT', headers: upload?.headers, body: JSON.stringify(forged) });
    const handler = createCodeBuildEventsHandler(() => onIdle);
    const failed = { ...idleBuild(record), buildStatus: 'FAILED', buildComplete: true, endTime: Date.now() };
    await expect(handler(stateChangeEvent(failed))).resolves.toMatchObject({
      finished: true,
      state: 'error',
    });
    expect((await builds.getBuild(record))?.description).toBe(
      'build error: CodeBuild says FAILED though the runner reported success',
    );
  });
});

describe('stopping and sweeping', () => {
  it('a cancelled (superseded) build is stopped on CodeBuild and stays cancelled', async () => {
    const { repo, sha } = await project({ runsOn: { codebuild: {} } }, [
      'echo started',
      'sleep 60',
      'echo never',
    ]);
    const queued = await queue({ repo, sha });
    await runControllerBuild(onLive, builderInvocationFor(queued));
    const running = await builds.getBuild(queued);
    if (!running?.remote) throw new Error('not on CodeBuild');
    // Give the runner time to begin its step.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const cancelled = await builds.transition(queued, {
      from: ['queued', 'running'],
      to: 'cancelled',
      reason: 'superseded by #99',
    });
    await stopRemoteRunsOf({ ...onLive, jobs: onLive.jobs }, cancelled);
    expect(live.requests.some((request) => request.target.endsWith('.StopBuild'))).toBe(true);
    const ended = await live.ended(running.remote.buildId);
    expect(ended.buildStatus).toBe('STOPPED');
    const done = await builds.getBuild(queued);
    expect(done?.state).toBe('cancelled');
    expect(done?.description).toBe('superseded by #99');
    expect(done?.remote?.finishedAt).toBeDefined();
    expect((await logs.readLog(running.logPrefix)) ?? '').not.toContain('never');
  }, 120_000);

  it('the sweeper finishes a run whose event was lost, from BatchGetBuilds', async () => {
    const { repo, sha } = await project({ runsOn: { codebuild: {} } }, ['echo "event lost"']);
    dropEvents = true;
    let record: BuildRecord | undefined;
    try {
      const queued = await queue({ repo, sha });
      await runControllerBuild(onLive, builderInvocationFor(queued));
      record = await builds.getBuild(queued);
      if (!record?.remote) throw new Error('not on CodeBuild');
      await live.ended(record.remote.buildId);
    } finally {
      dropEvents = false;
    }
    expect((await builds.getBuild(record))?.state).toBe('running');
    const result = await sweepOverdueBuilds({
      builds,
      statuses: onLive.statuses,
      logger: onLive.logger,
      publicUrl: onLive.publicUrl,
      clock: () => Date.now() + 3 * 60 * 60 * 1000,
      jobs: onLive.jobs,
      remoteRuns: { sweep: (candidate, name) => sweepRemoteRun(onLive, candidate, name) },
    });
    expect(result.leftAlone).toContainEqual({
      repo: record.repo,
      number: record.number,
      state: 'finished from CodeBuild',
    });
    const done = await builds.getBuild(record);
    expect(done?.state).toBe('success');
    expect((await logs.readLog(record.logPrefix)) ?? '').toContain('event lost');
  }, 120_000);

  it('the sweeper ends a run CodeBuild no longer knows as timed out, and stops it', async () => {
    const record = await (async () => {
      const { repo, sha } = await project({ runsOn: { codebuild: {} } }, ['echo lost']);
      const queued = await queue({ repo, sha });
      await runControllerBuild(onIdle, builderInvocationFor(queued));
      return builds.getBuild(queued);
    })();
    if (!record?.remote) throw new Error('not on CodeBuild');
    // CodeBuild lost it: the idle stand-in forgets the build.
    idle.builds.splice(
      idle.builds.findIndex((candidate) => candidate.id === record.remote?.buildId),
      1,
    );
    await sweepOverdueBuilds({
      builds,
      statuses: onIdle.statuses,
      logger: onIdle.logger,
      publicUrl: onIdle.publicUrl,
      clock: () => Date.now() + 3 * 60 * 60 * 1000,
      jobs: onIdle.jobs,
      remoteRuns: { sweep: (candidate, name) => sweepRemoteRun(onIdle, candidate, name) },
    });
    const done = await builds.getBuild(record);
    expect(done?.state).toBe('timed_out');
    expect(idle.requests.some((request) => request.target.endsWith('.BatchGetBuilds'))).toBe(true);
  });
});

describe('placement refused', () => {
  it('a repository the operator did not allow ends error, saying so, and starts nothing', async () => {
    const { repo, sha } = await project({ runsOn: { codebuild: {} } }, ['echo never']);
    await settings.update({ kind: 'repo', repo }, () => ({ codebuild: { repos: ['someone-else/*'] } }));
    const starts = idle.requests.length;
    const { done, log } = await build(onIdle, { repo, sha });
    expect(done.state).toBe('error');
    expect(done.description).toBe(`runsOn: CodeBuild is not allowed for ${repo}`);
    expect(log).toContain('codebuild.repos');
    expect(idle.requests.length).toBe(starts);
  });

  it('without a CodeBuild project the build says the operator has not enabled CodeBuild', async () => {
    const { repo, sha } = await project({ runsOn: { codebuild: {} } }, ['echo never']);
    const { done } = await build(
      {
        ...base,
        codebuild: {
          ...(onIdle.codebuild as NonNullable<ControllerDependencies['codebuild']>),
          platform: { timeoutMinutes: 60 },
        },
      },
      { repo, sha },
    );
    expect(done.state).toBe('error');
    expect(done.description).toBe('runsOn: the operator has not enabled CodeBuild');
  });

  it("refuses at the month's cap, saying so", async () => {
    const { repo, sha } = await project({ runsOn: { codebuild: {} } }, ['echo never']);
    const used = await usage.minutesOf(usageMonth(Date.now()));
    await settings.update({ kind: 'repo', repo }, () => ({
      codebuild: { monthlyMinutes: Math.max(used, 1) },
    }));
    await usage.addMinutes(usageMonth(Date.now()), used < 1 ? 1 : 0);
    const { done } = await build(onIdle, { repo, sha });
    expect(done.state).toBe('error');
    expect(done.description).toMatch(/^runsOn: this month's CodeBuild minutes are used up/);
  });
});

describe('"runsOn": "auto"', () => {
  it('rebuilds a Lambda timeout once on CodeBuild, and the log says so', async () => {
    const { repo, sha } = await project({ runsOn: 'auto' }, [
      'echo "attempt starts"',
      'sleep 14',
      'echo "finished the long step"',
    ]);
    // Lambda's limit made short: the runner answers 15 s before it, so it has about 10 s.
    const deps = { ...onLive, runnerTimeoutMs: 25_000 };
    const starts = live.requests.filter((request) => request.target.endsWith('.StartBuild')).length;
    const queued = await queue({ repo, sha });
    await runControllerBuild(deps, builderInvocationFor(queued));
    const record = await builds.getBuild(queued);
    expect(record?.remote?.attempt).toBe(2);
    onLive = deps;
    try {
      await live.ended(record?.remote?.buildId ?? '');
    } finally {
      onLive = depsWith(live);
    }
    const done = await builds.getBuild(queued);
    expect(done?.state).toBe('success');
    const log = (await logs.readLog(queued.logPrefix)) ?? '';
    expect(log).toMatch(/timed out on Lambda after \d+ s; rebuilt once on CodeBuild/);
    // Both runs' lines, the first run's before the rebuild's.
    expect(log.indexOf('attempt starts')).toBeLessThan(log.indexOf('rebuilt once on CodeBuild'));
    expect(log.lastIndexOf('attempt starts')).toBeGreaterThan(log.indexOf('rebuilt once on CodeBuild'));
    expect(log).toContain('finished the long step');
    expect(live.requests.filter((request) => request.target.endsWith('.StartBuild')).length).toBe(starts + 1);
  }, 180_000);

  it('never escalates a failure, nor a build not set to auto', async () => {
    const failing = await project({ runsOn: 'auto' }, ['exit 1']);
    const starts = live.requests.length;
    const { done } = await build(onLive, failing);
    expect(done.state).toBe('failure');
    const slow = await project({}, ['sleep 14']);
    const { done: timedOut } = await build({ ...onLive, runnerTimeoutMs: 25_000 }, slow);
    expect(timedOut.state).toBe('timed_out');
    expect(timedOut.remote).toBeUndefined();
    expect(live.requests.length).toBe(starts);
  }, 120_000);
});

describe('a hostile build on CodeBuild', () => {
  it('finds no input in its environment, and the input URL reads nothing once the runner has it', async () => {
    const { repo, sha } = await project({ runsOn: { codebuild: {} } }, [
      'env | grep LAMBKIN_RUNNER || echo "no runner variables in the step"',
      // Every input URL any process shows (command lines, environments), fetched.
      'for f in /proc/[0-9]*/cmdline /proc/[0-9]*/environ; do tr "\\0" "\\n" < "$f" 2>/dev/null; done | grep -o "http://[^ ]*runner-input[^ ]*" | sort -u > found.txt',
      'echo "found $(wc -l < found.txt) input URLs"',
      'while read -r url; do echo "input fetch: $(curl -s -o /dev/null -w "%{http_code}" "$url")"; done < found.txt',
      'sleep 3',
    ]);
    const queued = await queue({ repo, sha });
    await runControllerBuild(onLive, builderInvocationFor(queued));
    const record = await builds.getBuild(queued);
    const ran = live.builds.find((candidate) => candidate.id === record?.remote?.buildId);
    if (!ran) throw new Error('not on CodeBuild');
    const inputUrl = ran.environment['LAMBKIN_RUNNER_INPUT_URL'] ?? '';
    // While the build still runs, its input URL (valid for 15 minutes) already reads nothing.
    let spentWhileRunning = false;
    for (let tries = 0; tries < 100 && !ran.buildComplete; tries++) {
      const status = (await fetch(inputUrl)).status;
      if (status === 404 && !ran.buildComplete) {
        spentWhileRunning = true;
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await live.ended(ran.id);
    expect(spentWhileRunning).toBe(true);
    const done = await builds.getBuild(queued);
    const log = (await logs.readLog(queued.logPrefix)) ?? '';
    expect(done?.state).toBe('success');
    expect(log).toContain('no runner variables in the step');
    expect(log).not.toMatch(/input fetch: 200/);
    expect(log).not.toContain('X-Amz-Signature');
  }, 120_000);
});

describe('jobs on CodeBuild', () => {
  it('each job of a build runs on CodeBuild; the last to finish does the fan-in', async () => {
    const { repo, sha } = await project({ runsOn: { codebuild: {} }, parallel: 2 }, [
      'echo "shard $LAMBKIN_SHARD_INDEX of $LAMBKIN_SHARD_TOTAL"',
    ]);
    const deps: ControllerDependencies = {
      ...onLive,
      jobInvoker: new LocalJobPool(
        (key, job) => runControllerBuild(deps, builderInvocationFor(key, job)),
        (key, job, reason) => endCrashedJob(deps, { ...key, job }, reason),
        2,
        onLive.logger,
      ),
    };
    const queued = await queue({ repo, sha });
    await runControllerBuild(deps, builderInvocationFor(queued));
    const jobStore = deps.jobs;
    if (!jobStore) throw new Error('no job store');
    // Each job's controller starts it on CodeBuild and returns; wait for both to be recorded.
    let jobs = await jobStore.listJobs(queued);
    for (let tries = 0; tries < 100 && !jobs.every((job) => job.remote); tries++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      jobs = await jobStore.listJobs(queued);
    }
    expect(jobs.map((job) => job.remote?.kind)).toEqual(['codebuild', 'codebuild']);
    const names = jobs.map(
      (job) => live.builds.find((ran) => ran.id === job.remote?.buildId)?.environment['LAMBKIN_BUILD'],
    );
    expect(names).toEqual(jobs.map((job) => `${repo}#${queued.number}/${job.id}`));
    await Promise.all(jobs.map((job) => live.ended(job.remote?.buildId ?? '')));
    const done = await builds.getBuild(queued);
    expect(done?.state).toBe('success');
    expect(done?.description).toBe('2 jobs passed');
    const ended = await jobStore.listJobs(queued);
    expect(ended.map((job) => job.state)).toEqual(['success', 'success']);
    expect((await logs.readLog(ended[1]?.logPrefix ?? '')) ?? '').toContain('shard 2 of 2');
  }, 120_000);
});

describe('failFast with jobs on CodeBuild', () => {
  it('the first failed job stops the others on CodeBuild', async () => {
    const { repo, sha } = await project({ runsOn: { codebuild: {} }, parallel: 2, failFast: true }, [
      'if [ "$LAMBKIN_SHARD_INDEX" = 1 ]; then sleep 2; exit 1; fi',
      'sleep 60',
      'echo "never printed"',
    ]);
    const deps: ControllerDependencies = {
      ...onLive,
      jobInvoker: new LocalJobPool(
        (key, job) => runControllerBuild(deps, builderInvocationFor(key, job)),
        (key, job, reason) => endCrashedJob(deps, { ...key, job }, reason),
        2,
        onLive.logger,
      ),
    };
    const queued = await queue({ repo, sha });
    await runControllerBuild(deps, builderInvocationFor(queued));
    const jobStore = deps.jobs;
    if (!jobStore) throw new Error('no job store');
    let jobs = await jobStore.listJobs(queued);
    for (let tries = 0; tries < 100 && !jobs.every((job) => job.remote); tries++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      jobs = await jobStore.listJobs(queued);
    }
    await Promise.all(jobs.map((job) => live.ended(job.remote?.buildId ?? '')));
    const ran = jobs.map((job) => live.builds.find((candidate) => candidate.id === job.remote?.buildId));
    expect(ran.map((build) => build?.buildStatus)).toEqual(['FAILED', 'STOPPED']);
    const ended = await jobStore.listJobs(queued);
    expect(ended.map((job) => job.state)).toEqual(['failure', 'cancelled']);
    expect((await builds.getBuild(queued))?.state).toBe('failure');
  }, 120_000);
});

describe('what StartBuild is asked for', () => {
  it('an allowed image is overridden, Docker goes to the privileged project, large where allowed', async () => {
    const image = 'public.ecr.aws/docker/library/node:22';
    const { repo, sha } = await project(
      { runsOn: { codebuild: { compute: 'large', image, docker: true } }, timeout: 1800 },
      ['echo hi'],
    );
    await settings.update({ kind: 'repo', repo }, () => ({
      codebuild: { images: [image], computes: ['small', 'large'], docker: true },
    }));
    const queued = await queue({ repo, sha });
    await runControllerBuild(onIdle, builderInvocationFor(queued));
    const started = idle.requests.filter((request) => request.target.endsWith('.StartBuild')).at(-1);
    expect(started?.body).toMatchObject({
      projectName: `${PROJECT}-docker`,
      computeTypeOverride: 'BUILD_GENERAL1_LARGE',
      imageOverride: image,
    });
    const record = await builds.getBuild(queued);
    expect(record?.remote).toMatchObject({
      docker: true,
      compute: 'large',
      image,
      project: `${PROJECT}-docker`,
    });
  });
});
