/**
 * Runs on CodeBuild, the finishing side: a completion (CodeBuild's state-change event, or the
 * sweeper's BatchGetBuilds) finishes the build or job as a runner answer does, through the same
 * code (finishBuild, completeJob). The event names the build it is for (LAMBKIN_BUILD, a plain
 * variable anyone may read); only the CodeBuild id stored on that record by the controller that
 * started it makes it count. The verdict is the outcome object the runner PUT, and `success` only
 * when CodeBuild says SUCCEEDED too.
 */
import { buildLabel, type BuildKey, type BuildRecord, type RemoteRunRecord } from '../core/build.js';
import { isJobId } from '../core/job-id.js';
import { jobLabel, type JobRecord } from '../core/job-record.js';
import { pageUrlOf } from '../core/links.js';
import { billedMinutes, usageMonth } from '../core/placement.js';
import type { RemoteBuildReport, RemoteBuildStatus } from '../core/ports.js';
import { parseRemoteRunnerResult, type RemoteRunnerResult, type RunnerOutcome } from '../core/protocol.js';
import type { BuildState } from '../core/state-machine.js';
import { CODEBUILD_ENVIRONMENT } from './codebuild-run.js';
import type { ControllerDependencies } from './controller-dependencies.js';
import { finishBuild } from './controller.js';
import { completeJob } from './job-controller.js';
import { endingOfOutcome, endingWithout, type Ending } from './runner-run.js';

/** A CodeBuild build that ended, as the event (or BatchGetBuilds) tells it. */
export interface CodeBuildCompletion {
  /** CodeBuild's id (`project:uuid`) or ARN: the event gives the ARN. */
  buildId: string;
  status: RemoteBuildStatus;
  complete: boolean;
  /** LAMBKIN_BUILD: `owner/repo#7` or `owner/repo#7/<job id>`. */
  build?: string;
  /** Epoch ms. */
  startTime?: number;
  endTime?: number;
}

export type FinishResult =
  | { finished: true; build: string; state: BuildState }
  | {
      finished: false;
      reason: 'not final' | 'not a Lambkin build' | 'unknown build' | 'not this run' | 'duplicate';
    };

/** `owner/repo#7` or `owner/repo#7/node-22`: the record a CodeBuild build names. */
export function parseBuildName(name: string | undefined): (BuildKey & { job?: string }) | undefined {
  const match = /^([A-Za-z0-9][A-Za-z0-9-]{0,38}\/[A-Za-z0-9._-]{1,100})#([1-9][0-9]{0,8})(?:\/(.+))?$/.exec(
    name ?? '',
  );
  if (!match) return undefined;
  const job = match[3];
  if (job !== undefined && !isJobId(job)) return undefined;
  return { repo: match[1] ?? '', number: Number(match[2]), ...(job !== undefined ? { job } : {}) };
}

/** The completion from BatchGetBuilds' report of a build. */
export function completionOf(report: RemoteBuildReport): CodeBuildCompletion {
  return {
    buildId: report.arn,
    status: report.status,
    complete: report.complete,
    ...(report.environment[CODEBUILD_ENVIRONMENT.build] !== undefined
      ? { build: report.environment[CODEBUILD_ENVIRONMENT.build] }
      : {}),
    ...(report.startTime !== undefined ? { startTime: report.startTime } : {}),
    ...(report.endTime !== undefined ? { endTime: report.endTime } : {}),
  };
}

function matches(run: RemoteRunRecord | undefined, id: string): boolean {
  return run !== undefined && (run.buildId === id || run.arn === id);
}

/** How the run ended: the runner's outcome, weighed against CodeBuild's own status. */
export function endingOfCompletion(
  completion: Pick<CodeBuildCompletion, 'status' | 'startTime' | 'endTime'>,
  result: RemoteRunnerResult | undefined,
  run: RemoteRunRecord,
): Ending {
  const outcome = result?.outcome;
  const failed = (description: string, note: string): Ending =>
    endingWithout(
      { state: 'error', description, steps: outcome?.steps ?? [], logNote: `\n[lambkin] ${note}` },
      [{ name: 'prepare', ms: run.prepareMs }],
    );
  switch (completion.status) {
    case 'TIMED_OUT':
      return endingWithout(
        {
          state: 'timed_out',
          description: `timed out after ${run.timeoutMinutes} min (CodeBuild's limit)`,
          steps: outcome?.steps ?? [],
          logNote: `\n[lambkin] CodeBuild stopped the build at its time limit (${run.timeoutMinutes} min).`,
        },
        [{ name: 'prepare', ms: run.prepareMs }],
      );
    case 'STOPPED':
      return endingWithout(
        {
          state: 'cancelled',
          stopped: true,
          description: 'stopped on CodeBuild',
          steps: outcome?.steps ?? [],
          logNote: '\n[lambkin] The build was stopped on CodeBuild.',
        },
        [{ name: 'prepare', ms: run.prepareMs }],
      );
    case 'SUCCEEDED':
      if (!outcome) {
        return failed(
          'build error: the runner on CodeBuild reported nothing',
          'CodeBuild says the build SUCCEEDED, but the runner delivered no outcome.',
        );
      }
      return fromOutcome(outcome, result?.afterword, completion, run);
    default:
      if (outcome && outcome.state !== 'success')
        return fromOutcome(outcome, result?.afterword, completion, run);
      if (outcome) {
        return failed(
          `build error: CodeBuild says ${completion.status} though the runner reported success`,
          `The runner's outcome said success, but CodeBuild ended the build ${completion.status}: success is not taken without CodeBuild's SUCCEEDED.`,
        );
      }
      return failed(
        `build error: CodeBuild ${completion.status === 'FAULT' ? 'faulted' : 'failed'} before the runner reported`,
        `The CodeBuild build ended ${completion.status} and the runner delivered no outcome: see the build's phases in CodeBuild (the bundle download or its checksum may have failed).`,
      );
  }
}

function fromOutcome(
  outcome: RunnerOutcome,
  afterword: RemoteRunnerResult['afterword'],
  completion: Pick<CodeBuildCompletion, 'startTime' | 'endTime'>,
  run: RemoteRunRecord,
): Ending {
  const runnerTimings = outcome.timings ?? [];
  const after = afterword?.timings ?? [];
  const runnerOwn = [...runnerTimings, ...after].reduce((sum, timing) => sum + timing.ms, 0);
  const wall = (completion.endTime ?? Date.now()) - (completion.startTime ?? run.startedAt);
  const lead = [
    { name: 'prepare', ms: run.prepareMs },
    // CodeBuild's queue, provisioning and the bundle's download, around the runner's phases.
    { name: 'CodeBuild start', ms: Math.max(wall - runnerOwn, 0) },
  ];
  return endingOfOutcome(outcome, lead, Promise.resolve({ timings: after, notes: afterword?.notes ?? [] }));
}

/**
 * Finishes the build or job a completed CodeBuild build ran, once: duplicates, events of builds
 * Lambkin did not start and events naming a record whose run is another are ignored (and said so).
 */
export async function finishCodeBuildRun(
  deps: ControllerDependencies,
  completion: CodeBuildCompletion,
): Promise<FinishResult> {
  const clock = deps.clock ?? Date.now;
  if (!completion.complete || completion.status === 'IN_PROGRESS')
    return { finished: false, reason: 'not final' };
  const key = parseBuildName(completion.build);
  if (!key) {
    deps.logger.warn('a CodeBuild build ended that names no Lambkin build', {
      codebuild: completion.buildId,
    });
    return { finished: false, reason: 'not a Lambkin build' };
  }
  const label = key.job !== undefined ? jobLabel({ ...key, job: key.job }) : buildLabel(key);
  const build = await deps.builds.getBuild(key);
  const job =
    build && key.job !== undefined
      ? (await deps.jobs?.listJobs(key))?.find((candidate) => candidate.id === key.job)
      : undefined;
  const record: BuildRecord | JobRecord | undefined = key.job !== undefined ? job : build;
  if (!build || !record) {
    deps.logger.warn('a CodeBuild build ended for a build that does not exist', {
      build: label,
      codebuild: completion.buildId,
    });
    return { finished: false, reason: 'unknown build' };
  }
  const run = record.remote;
  if (!run || !matches(run, completion.buildId)) {
    // A build that names another (LAMBKIN_BUILD is plain text), or an attempt no longer recorded.
    deps.logger.warn('a CodeBuild build ended that is not the run recorded for the build it names; ignored', {
      build: label,
      codebuild: completion.buildId,
      recorded: run?.buildId,
    });
    return { finished: false, reason: 'not this run' };
  }
  const now = clock();
  const claimed = job
    ? await deps.jobs?.claimJobRemoteFinish?.(job, run.buildId, now)
    : await deps.builds.claimRemoteFinish?.(key, run.buildId, now);
  if (!claimed) {
    deps.logger.info('CodeBuild completion already handled', { build: label, codebuild: run.buildId });
    return { finished: false, reason: 'duplicate' };
  }
  const codebuild = deps.codebuild;
  const endedAt = completion.endTime ?? now;
  if (codebuild) {
    const minutes = billedMinutes(completion.startTime ?? run.startedAt, endedAt);
    await codebuild.usage
      .addMinutes(usageMonth(endedAt), minutes)
      .catch((error: unknown) =>
        deps.logger.warn('could not count the CodeBuild minutes of a run', { build: label, minutes, error }),
      );
  }
  let result: RemoteRunnerResult | undefined;
  try {
    const text = await codebuild?.objects.readOutcome(run.outcomeKey);
    result = text !== undefined ? parseRemoteRunnerResult(text) : undefined;
    if (text !== undefined && !result) {
      deps.logger.warn('the outcome object of a CodeBuild run is not an outcome; ignored', { build: label });
    }
  } catch (error) {
    deps.logger.error('could not read the outcome of a CodeBuild run', { build: label, error });
  }
  await codebuild?.objects
    .remove([run.inputKey, run.outcomeKey])
    .catch((error: unknown) =>
      deps.logger.warn("could not delete a CodeBuild run's objects", { build: label, error }),
    );
  const ending = endingOfCompletion(completion, result, run);
  const url = pageUrlOf(build, deps.publicUrl);
  if (job) {
    const ended = await completeJob(deps, build, job, ending, clock);
    return { finished: true, build: label, state: ended.state };
  }
  const ended = await finishBuild(deps, build, ending, url, clock);
  await ending.rest;
  return { finished: true, build: label, state: ended.state };
}

/**
 * The sweeper's look at an overdue record that runs on CodeBuild: a build CodeBuild reports ended is
 * finished as its event would have; one still running past its deadline is stopped. Returns true
 * when it was finished here (the sweeper leaves it), false when the sweeper should end it itself.
 */
export async function sweepRemoteRun(
  deps: ControllerDependencies,
  record: { remote?: RemoteRunRecord },
  name: string,
): Promise<boolean> {
  const run = record.remote;
  const codebuild = deps.codebuild;
  if (!run || run.finishedAt !== undefined || !codebuild) return false;
  let report: RemoteBuildReport | undefined;
  try {
    [report] = await codebuild.runner.describe([run.buildId]);
  } catch (error) {
    deps.logger.warn('could not ask CodeBuild about an overdue run', { build: name, error });
    return false;
  }
  if (report?.complete) {
    const result = await finishCodeBuildRun(deps, { ...completionOf(report), build: name });
    return result.finished || result.reason === 'duplicate';
  }
  // Still running past the deadline (or lost): stop it; the sweeper ends the record.
  await codebuild.runner.stop(run.buildId).catch(() => undefined);
  await codebuild.objects.remove([run.inputKey, run.outcomeKey]).catch(() => undefined);
  return false;
}
