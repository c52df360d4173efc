/**
 * Runs on CodeBuild, the starting side: where a build runs (placement), and a run started there.
 * The input is prepared exactly as for Lambda (prepareInput: deploy role, cache, fork rules), written
 * to the bucket, and StartBuild is given only presigned URLs and the build's name; the controller
 * records the CodeBuild build on the build (or job) record and returns without waiting. The
 * completion event finishes it (src/controller/codebuild-finish.ts).
 */
import { createHash, randomBytes } from 'node:crypto';
import { buildLabel, type BuildRecord, type RemoteRunRecord } from '../core/build.js';
import type { JobStore } from '../core/ports.js';
import { TransitionRefusedError, messageOf } from '../core/errors.js';
import {
  decidePlacement,
  escalationPlacement,
  usageMonth,
  type CodeBuildPlacement,
  type Placement,
  type PlacementInput,
} from '../core/placement.js';
import type { RunnerInput } from '../core/protocol.js';
import type { RunsOn } from '../core/repo-config/schema.js';
import type { CodeBuildDependencies, ControllerDependencies } from './controller-dependencies.js';

export type { CodeBuildDependencies };
import {
  FINISHING_MARGIN_MS,
  endingWithout,
  prepareInput,
  runRunner,
  type Ending,
  type RunTarget,
} from './runner-run.js';

/** Presigned URLs given to StartBuild (the bundle, the input) are good for this long. */
export const START_URL_SECONDS = 15 * 60;

/** The variables StartBuild sets (all plain: none is secret). */
export const CODEBUILD_ENVIRONMENT = {
  runnerUrl: 'LAMBKIN_RUNNER_URL',
  runnerSha256: 'LAMBKIN_RUNNER_SHA256',
  inputUrl: 'LAMBKIN_RUNNER_INPUT_URL',
  build: 'LAMBKIN_BUILD',
} as const;

/** A run target that can be recorded: the build itself, or one job of it. */
export interface RemoteTarget extends RunTarget {
  /** Records the run (and the new deadline) on the target's record; TransitionRefusedError when it is not running. */
  recordRemote(run: RemoteRunRecord, deadline: number): Promise<unknown>;
}

export type StartResult =
  | { kind: 'started'; run: RemoteRunRecord }
  /** Nothing runs on CodeBuild: end the target with this, as a runner answer. */
  | { kind: 'ended'; ending: Ending };

/** What the placement is decided from: the operator's settings, the deployment, the month's minutes. */
async function placementInput(
  deps: ControllerDependencies,
  build: Pick<BuildRecord, 'repo'>,
  runsOn: RunsOn,
  clock: () => number,
): Promise<PlacementInput> {
  const settings = (await deps.settings.effective(build.repo)).codebuild;
  const codebuild = deps.codebuild;
  const usedMinutes =
    settings.monthlyMinutes !== undefined && codebuild
      ? await codebuild.usage.minutesOf(usageMonth(clock()))
      : 0;
  return {
    repo: build.repo,
    runsOn,
    settings,
    platform: codebuild?.platform ?? { timeoutMinutes: 60 },
    usedMinutes,
  };
}

/**
 * Where a build (or each of its jobs) runs. `runsOn` is the resolved config's (undefined when it
 * was not read: Lambda, as always); `auto` starts on Lambda.
 */
export async function placeRun(
  deps: ControllerDependencies,
  build: Pick<BuildRecord, 'repo'>,
  runsOn: RunsOn | undefined,
  clock: () => number,
): Promise<Placement> {
  if (runsOn === undefined || runsOn === 'lambda' || runsOn === 'auto') return { kind: 'lambda' };
  return decidePlacement(await placementInput(deps, build, runsOn, clock));
}

/** Where an `auto` build that outgrew Lambda is rebuilt; undefined for any other build. */
export async function placeRebuild(
  deps: ControllerDependencies,
  build: Pick<BuildRecord, 'repo'>,
  runsOn: RunsOn | undefined,
  clock: () => number,
): Promise<Placement | undefined> {
  if (runsOn !== 'auto') return undefined;
  return escalationPlacement(await placementInput(deps, build, runsOn, clock));
}

/** The ending of a build CodeBuild was refused for: `error`, with what to change in the log. */
export function refusedEnding(placement: Extract<Placement, { kind: 'refused' }>): Ending {
  return endingWithout({
    state: 'error',
    description: placement.description,
    steps: [],
    logNote: `[lambkin] Nothing ran: ${placement.detail}`,
  });
}

/** `runner-input/<owner>/<repo>/<number>[/<job>]/<random>`: the input's key without its extension. */
export function runnerInputBase(
  build: Pick<BuildRecord, 'repo' | 'number'>,
  job: string | undefined,
): string {
  return `runner-input/${build.repo}/${build.number}/${job !== undefined ? `${job}/` : ''}${randomBytes(12).toString('hex')}`;
}

/** A retried controller asking again for the same build, job and attempt starts no second build. */
export function idempotencyTokenOf(label: string, attempt: number): string {
  return createHash('sha256').update(`${label}#attempt-${attempt}`).digest('hex');
}

/**
 * Starts the target's run on CodeBuild and records it. Returns `ended` when nothing could start
 * (the ending says why) or the target was ended meanwhile (its own state stands: `stopped`).
 */
export async function startCodeBuildRun(
  deps: ControllerDependencies,
  build: BuildRecord,
  url: string,
  clock: () => number,
  target: RemoteTarget,
  placement: CodeBuildPlacement,
  attempt = 1,
): Promise<StartResult> {
  const codebuild = deps.codebuild;
  if (!codebuild) {
    return {
      kind: 'ended',
      ending: endingWithout({
        state: 'error',
        description: 'runsOn: the operator has not enabled CodeBuild',
        steps: [],
        logNote: '[lambkin] This builder has no CodeBuild client: LAMBKIN_CODEBUILD_PROJECT is unset.',
      }),
    };
  }
  const preparing = clock();
  const timeoutMs = placement.timeoutMinutes * 60_000;
  const base = runnerInputBase(build, target.job?.id);
  const inputKey = `${base}.json`;
  const outcomeKey = `${base}.outcome.json`;
  let written = false;
  try {
    const expiresInSeconds = Math.ceil((timeoutMs + FINISHING_MARGIN_MS) / 1000);
    const [prepared, outcome, inputUrls, bundle] = await Promise.all([
      prepareInput(deps, build, url, clock, target, timeoutMs),
      codebuild.objects.presignOutcome(outcomeKey, expiresInSeconds),
      codebuild.objects.presignInput(inputKey, START_URL_SECONDS),
      codebuild.objects.runnerBundle(START_URL_SECONDS),
    ]);
    const input: RunnerInput = {
      ...prepared,
      outcomeUpload: { url: outcome.url, headers: outcome.headers, inputDeleteUrl: inputUrls.deleteUrl },
    };
    await codebuild.objects.putInput(inputKey, JSON.stringify(input));
    written = true;
    const prepareMs = clock() - preparing;
    const started = await codebuild.runner.start({
      project: placement.project,
      idempotencyToken: idempotencyTokenOf(target.label, attempt),
      computeType: placement.computeType,
      ...(placement.image !== undefined ? { image: placement.image } : {}),
      timeoutMinutes: placement.timeoutMinutes,
      environment: {
        [CODEBUILD_ENVIRONMENT.runnerUrl]: bundle.url,
        [CODEBUILD_ENVIRONMENT.runnerSha256]: bundle.sha256,
        [CODEBUILD_ENVIRONMENT.inputUrl]: inputUrls.getUrl,
        [CODEBUILD_ENVIRONMENT.build]: target.label,
      },
    });
    const run: RemoteRunRecord = {
      kind: 'codebuild',
      buildId: started.buildId,
      arn: started.arn,
      project: placement.project,
      attempt,
      inputKey,
      outcomeKey,
      logPrefix: target.logPrefix,
      startedAt: clock(),
      timeoutMinutes: placement.timeoutMinutes,
      compute: placement.compute,
      docker: placement.docker,
      ...(placement.image !== undefined ? { image: placement.image } : {}),
      prepareMs,
    };
    try {
      // CodeBuild's own limit, plus the time to finish the log and report after it.
      await target.recordRemote(run, run.startedAt + timeoutMs + FINISHING_MARGIN_MS);
    } catch (error) {
      if (!(error instanceof TransitionRefusedError)) throw error;
      // Cancelled (or swept) while it was being started: stop it, the record's state stands.
      await codebuild.runner.stop(run.buildId).catch(() => undefined);
      await codebuild.objects.remove([inputKey, outcomeKey]).catch(() => undefined);
      const reason = `the ${target.job ? 'job' : 'build'} ended while it was started on CodeBuild`;
      deps.logger.info('CodeBuild run stopped at once: its record ended meanwhile', { build: target.label });
      return {
        kind: 'ended',
        ending: endingWithout({
          state: target.job ? 'cancelled' : 'error',
          stopped: true,
          description: reason,
          steps: [],
          logNote: `\n[lambkin] The build was stopped: ${reason}`,
        }),
      };
    }
    deps.logger.info('build started on CodeBuild', {
      build: target.label,
      codebuild: run.buildId,
      compute: run.compute,
      attempt,
    });
    return { kind: 'started', run };
  } catch (error) {
    if (written) await codebuild.objects.remove([inputKey]).catch(() => undefined);
    const message = messageOf(error);
    deps.logger.error('could not start the build on CodeBuild', { build: target.label, error });
    return {
      kind: 'ended',
      ending: endingWithout({
        state: 'error',
        description: `could not start on CodeBuild: ${message}`.slice(0, 140),
        steps: [],
        logNote: `\n[lambkin] The build could not start on CodeBuild: ${message}`,
      }),
    };
  }
}

/** Stops the record's CodeBuild run, if it has one that has not finished; never throws. */
/** What stopping needs: StopBuild only. */
export interface RemoteStopDependencies {
  codebuild?: Pick<CodeBuildDependencies, 'runner'>;
  logger: ControllerDependencies['logger'];
}

export async function stopRemoteRun(
  deps: RemoteStopDependencies,
  record: { remote?: RemoteRunRecord },
  label: string,
): Promise<void> {
  const run = record.remote;
  if (!run || run.finishedAt !== undefined || !deps.codebuild) return;
  try {
    await deps.codebuild.runner.stop(run.buildId);
    deps.logger.info('CodeBuild run stopped', { build: label, codebuild: run.buildId });
  } catch (error) {
    deps.logger.warn('could not stop the CodeBuild run; it ends at its own time limit', {
      build: label,
      codebuild: run.buildId,
      error,
    });
  }
}

/** A Lambda run's ending `auto` rebuilds on CodeBuild: it timed out, or ran out of disk space. */
export function outgrewLambda(ending: Ending): boolean {
  if (ending.stopped) return false;
  if (ending.state === 'timed_out') return true;
  return ending.state === 'error' && /disk quota|no space left|ENOSPC/i.test(ending.description);
}

/** The log's line between the Lambda run and its rebuild. */
export function escalationHead(ending: Ending, lambdaMs: number, placement: CodeBuildPlacement): string {
  const seconds = Math.round(lambdaMs / 1000);
  const why =
    ending.state === 'timed_out'
      ? `timed out on Lambda after ${seconds} s`
      : `ran out of disk space on Lambda (${ending.description})`;
  return `\n[lambkin] The build ${why}; rebuilt once on CodeBuild (${placement.compute}, up to ${placement.timeoutMinutes} min).\n`;
}

/** How a placed run went: it ended (as a runner answer), or it runs on CodeBuild now. */
export type PlacedRun = { kind: 'ended'; ending: Ending } | { kind: 'started'; run: RemoteRunRecord };

/**
 * Runs the target where its config and the operator put it: on Lambda (runRunner), or started on
 * CodeBuild. `auto`: a Lambda run that timed out or ran out of disk is started once on CodeBuild,
 * its log continuing in its own folder (LOG_KEYS.attempt) after a line that says so.
 */
export async function runWhereConfigured(
  deps: ControllerDependencies,
  build: BuildRecord,
  url: string,
  clock: () => number,
  target: RemoteTarget,
  runsOn: RunsOn | undefined,
): Promise<PlacedRun> {
  let placement: Placement;
  try {
    placement = await placeRun(deps, build, runsOn, clock);
  } catch (error) {
    deps.logger.error('could not decide where the build runs', { build: target.label, error });
    return {
      kind: 'ended',
      ending: endingWithout({
        state: 'error',
        description: `build error: could not decide where it runs: ${messageOf(error)}`.slice(0, 140),
        steps: [],
        logNote: `\n[lambkin] Could not read the settings that decide where the build runs: ${messageOf(error)}`,
      }),
    };
  }
  if (placement.kind === 'refused') return { kind: 'ended', ending: refusedEnding(placement) };
  if (placement.kind === 'codebuild') return startCodeBuildRun(deps, build, url, clock, target, placement);

  const lambdaStarted = clock();
  const ending = await runRunner(deps, build, url, clock, target);
  if (runsOn !== 'auto' || !outgrewLambda(ending)) return { kind: 'ended', ending };
  const lambdaMs = clock() - lambdaStarted;
  const escalation = await placeRebuild(deps, build, runsOn, clock).catch((error: unknown): Placement => ({
    kind: 'refused',
    description: 'could not read the settings',
    detail: messageOf(error),
  }));
  const withNote = (note: string): PlacedRun => ({
    kind: 'ended',
    ending: { ...ending, logNote: `${ending.logNote ?? ''}\n[lambkin] ${note}` },
  });
  if (escalation?.kind !== 'codebuild') {
    return withNote(
      `Not rebuilt on CodeBuild ("runsOn": "auto"): ${escalation?.kind === 'refused' ? escalation.detail : 'CodeBuild is not set up'}`,
    );
  }
  if (!deps.logs.beginAttempt)
    return withNote('Not rebuilt on CodeBuild: this log store keeps one run per build');
  // The Lambda runner's work after its verdict ends before the log goes on.
  const rest = await ending.rest;
  const head = [
    ...(ending.logNote !== undefined ? [ending.logNote.trim()] : []),
    ...rest.notes,
    escalationHead(ending, lambdaMs, escalation).trim(),
  ].join('\n');
  let attemptPrefix: string;
  try {
    attemptPrefix = await deps.logs.beginAttempt(target.logPrefix, 2, `\n${head}\n`);
  } catch (error) {
    return withNote(`Not rebuilt on CodeBuild: its log could not be started (${messageOf(error)})`);
  }
  deps.logger.info('rebuilding on CodeBuild after Lambda', { build: target.label, state: ending.state });
  const started = await startCodeBuildRun(
    deps,
    build,
    url,
    clock,
    { ...target, logPrefix: attemptPrefix },
    escalation,
    2,
  );
  if (started.kind === 'started') return started;
  // The rebuild could not start: the Lambda run's verdict stands, with the reason in the log.
  return {
    kind: 'ended',
    ending: {
      ...ending,
      logNote: started.ending.logNote?.trim() ?? '[lambkin] The rebuild on CodeBuild could not start.',
      rest: Promise.resolve({ timings: rest.timings, notes: [] }),
    },
  };
}

/**
 * Stops what a cancelled build has running on CodeBuild: its own run and its jobs' (no controller
 * watches those: they were handed to CodeBuild). Never throws.
 */
export async function stopRemoteRunsOf(
  deps: RemoteStopDependencies & { jobs?: Pick<JobStore, 'listJobs'> },
  build: BuildRecord,
): Promise<void> {
  if (!deps.codebuild) return;
  await stopRemoteRun(deps, build, buildLabel(build));
  const jobs = await deps.jobs?.listJobs(build).catch(() => []);
  await Promise.all((jobs ?? []).map((job) => stopRemoteRun(deps, job, `${buildLabel(build)}/${job.id}`)));
}
