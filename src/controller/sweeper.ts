/**
 * The sweeper: a build must always end with a true status. Builds still `queued` or `running` past
 * their deadline (the builder was never invoked, lost the invocation, or died without reporting)
 * are ended here — `queued` as `error`, `running` as `timed_out` — each with one conditional
 * transition, so a build that finished (or was claimed) meanwhile is left as it is, then GitHub is
 * told with an `error` commit status. It also re-sends the final status of ended builds GitHub never
 * acknowledged (GitHub was down longer than the builder's retries): their `reportedState` differs
 * from their `state`. Scheduled every few minutes (src/handlers/sweeper.ts) and run by hand with
 * `lambkin sweep`.
 */
import { buildLabel, type BuildRecord, type RemoteRunRecord, type RepoName } from '../core/build.js';
import { isTerminal, type BuildState } from '../core/state-machine.js';
import { LambkinError, TransitionRefusedError, messageOf } from '../core/errors.js';
import { FINAL_DELIVERY } from '../github/statuses.js';
import type { Logger } from '../core/logger.js';
import { finalStatusOf } from './controller.js';
import { statusLinkOf } from './on-failure.js';
import { type DeliveryPolicy, type StatusReporter, type BuildStore, type JobStore } from '../core/ports.js';
import { reportBuildStatus } from './status-reporting.js';
import { reportJob } from './job-controller.js';
import { fanInDescription, type JobRecord } from '../core/job-record.js';
import { fanIn } from '../core/jobs.js';

export interface SweeperDependencies {
  /**
   * Without `unreportedBuilds` and `markReported` (test doubles) the sweep only ends overdue
   * builds; the handler and CLI pass the whole store.
   */
  builds: Pick<BuildStore, 'overdueBuilds' | 'transition'> &
    Partial<Pick<BuildStore, 'unreportedBuilds' | 'markReported'>>;
  statuses: StatusReporter;
  logger: Logger;
  /** Base of build links, for builds recorded without one. */
  publicUrl: string;
  /** What "now" is when looking for overdue builds; default Date.now. */
  clock?: () => number;
  /** Retries of each build's commit status; default SWEEP_STATUS_DELIVERY. */
  statusDelivery?: DeliveryPolicy;
  /**
   * An ended build's final status is re-sent only this long after it ended (before that, whoever
   * ended it may still be retrying); default UNREPORTED_GRACE_MS.
   */
  unreportedGraceMs?: number;
  /** The jobs of builds of several: a swept build's unfinished jobs end with it. */
  jobs?: Pick<JobStore, 'listJobs' | 'transitionJob'>;
  /**
   * Overdue runs on CodeBuild (src/controller/codebuild-finish.ts sweepRemoteRun): one CodeBuild
   * reports ended is finished as its lost event would have (true: leave the record alone); one still
   * running past its deadline, or lost, is stopped (false: the sweep ends the record as usual).
   */
  remoteRuns?: { sweep(record: { remote?: RemoteRunRecord }, name: string): Promise<boolean> };
}

export interface SweepOptions {
  /** Most overdue builds handled in one sweep (oldest first); the next sweep takes the rest. Default 100. */
  limit?: number;
  /**
   * Time for the whole sweep. No build is started with less than MIN_TIME_PER_BUILD_MS of it left
   * (it stays overdue for the next sweep), and no status waits past it. Default 2 minutes.
   */
  budgetMs?: number;
}

/** How each unfinished state ends when its deadline has passed. */
export const OVERDUE_ENDINGS = {
  queued: { to: 'error', reason: 'never started: the builder did not pick it up in time' },
  running: { to: 'timed_out', reason: 'stuck: the builder did not finish by its deadline' },
} as const satisfies Partial<Record<BuildState, { to: BuildState; reason: string }>>;

type OverdueState = keyof typeof OVERDUE_ENDINGS;

/** A build the sweep ended. */
export interface SweptBuild {
  repo: RepoName;
  number: number;
  sha: string;
  from: OverdueState;
  /** As OVERDUE_ENDINGS says; a build whose jobs had all ended takes their fan-in instead. */
  to: BuildState;
  /** Why, as recorded on the build. */
  reason: string;
  /** The link given to GitHub, when the build has one. */
  url?: string;
  /** Whether GitHub took the commit status. */
  statusSet: boolean;
  /** Why the status could not be set. */
  statusError?: string;
}

export interface SweepResult {
  /** The "now" overdue builds were looked for at (epoch ms). */
  at: number;
  /** Overdue builds the query returned. */
  found: number;
  ended: SweptBuild[];
  /** Overdue builds that ended or were claimed meanwhile: left as they are, in the state they are in. */
  leftAlone: { repo: RepoName; number: number; state?: string }[];
  /** Overdue builds that could not be ended (the store failed): the next sweep tries again. */
  failed: { repo: RepoName; number: number; error: string }[];
  /** Overdue builds not handled within the budget: the next sweep takes them. */
  deferred: number;
  /** Ended builds whose final status GitHub had not acknowledged: sent again. */
  resent: ResentStatus[];
}

/** An ended build whose final commit status the sweep sent again. */
export interface ResentStatus {
  repo: RepoName;
  number: number;
  sha: string;
  state: BuildState;
  /** What GitHub had acknowledged before (undefined: nothing at all). */
  previouslyReported?: BuildState;
  statusSet: boolean;
  statusError?: string;
}

/** Each status: a few attempts within seconds (a sweep may end many builds). */
export const SWEEP_STATUS_DELIVERY: DeliveryPolicy = {
  deadlineMs: 20_000,
  maxAttempts: 4,
  attemptTimeoutMs: 8000,
};
export const DEFAULT_SWEEP_BUDGET_MS = 120_000;
export const DEFAULT_SWEEP_LIMIT = 100;
/** Not worth ending a build whose status would have less time than this. */
export const MIN_TIME_PER_BUILD_MS = 2000;
/** The builder retries its final status for FINAL_DELIVERY; the sweep waits that and a minute more. */
export const UNREPORTED_GRACE_MS = FINAL_DELIVERY.deadlineMs + 60_000;

/** Some overdue builds could not be ended, or GitHub did not take their status. */
export class SweepIncompleteError extends LambkinError {
  constructor(readonly result: SweepResult) {
    const parts: string[] = [];
    if (result.failed.length > 0) {
      const first = result.failed[0];
      parts.push(
        `could not end ${count(result.failed.length, 'overdue build')} ` +
          `(${result.failed.map(buildLabel).join(', ')}: ${first?.error ?? ''}); the next sweep tries again`,
      );
    }
    const unreported = result.ended.filter((build) => !build.statusSet);
    if (unreported.length > 0) {
      const first = unreported[0];
      parts.push(
        `ended ${unreported.map(buildLabel).join(', ')} but could not set the commit status ` +
          `(${first?.statusError ?? 'unknown error'}); GitHub still shows it pending`,
      );
    }
    const unsent = result.resent.filter((build) => !build.statusSet);
    if (unsent.length > 0) {
      parts.push(
        `could not re-send the final status of ${unsent.map(buildLabel).join(', ')} ` +
          `(${unsent[0]?.statusError ?? 'unknown error'}); the next sweep tries again`,
      );
    }
    super('SWEEP_INCOMPLETE', `The sweep ${parts.join('; it ')}.`);
  }
}

/** Throws SweepIncompleteError when the sweep left something undone that an operator should see. */
export function assertSweepComplete(result: SweepResult): SweepResult {
  if (
    result.failed.length > 0 ||
    result.ended.some((build) => !build.statusSet) ||
    result.resent.some((build) => !build.statusSet)
  ) {
    throw new SweepIncompleteError(result);
  }
  return result;
}

export async function sweepOverdueBuilds(
  deps: SweeperDependencies,
  options: SweepOptions = {},
): Promise<SweepResult> {
  const started = performance.now();
  const budgetMs = options.budgetMs ?? DEFAULT_SWEEP_BUDGET_MS;
  const remaining = (): number => budgetMs - (performance.now() - started);
  const policy = deps.statusDelivery ?? SWEEP_STATUS_DELIVERY;
  const at = (deps.clock ?? Date.now)();
  const overdue = await deps.builds.overdueBuilds(at, { limit: options.limit ?? DEFAULT_SWEEP_LIMIT });
  const result: SweepResult = {
    at,
    found: overdue.length,
    ended: [],
    leftAlone: [],
    failed: [],
    deferred: 0,
    resent: [],
  };

  for (const [index, build] of overdue.entries()) {
    if (remaining() < MIN_TIME_PER_BUILD_MS) {
      result.deferred = overdue.length - index;
      deps.logger.warn('sweep budget spent; the next sweep takes the rest', {
        deferred: result.deferred,
        budgetMs,
      });
      break;
    }
    await sweepOne(deps, build, result, {
      ...policy,
      deadlineMs: Math.max(Math.min(policy.deadlineMs, remaining()), 1),
    });
  }
  if (result.deferred === 0) await resendUnreported(deps, result, policy, remaining);
  deps.logger.info('sweep finished', {
    at,
    found: result.found,
    ended: result.ended.length,
    leftAlone: result.leftAlone.length,
    failed: result.failed.length,
    deferred: result.deferred,
    resent: result.resent.length,
  });
  return result;
}

/** Sends again the final status of ended builds GitHub never acknowledged. */
async function resendUnreported(
  deps: SweeperDependencies,
  result: SweepResult,
  policy: DeliveryPolicy,
  remaining: () => number,
): Promise<void> {
  const { unreportedBuilds, markReported } = deps.builds;
  if (!unreportedBuilds || !markReported) return;
  const endedBefore = result.at - (deps.unreportedGraceMs ?? UNREPORTED_GRACE_MS);
  let unreported: BuildRecord[];
  try {
    unreported = await unreportedBuilds.call(deps.builds, endedBefore, { limit: DEFAULT_SWEEP_LIMIT });
  } catch (error) {
    deps.logger.error('could not look for builds whose final status GitHub never got', { error });
    return;
  }
  for (const build of unreported) {
    if (!isTerminal(build.state)) continue;
    const key = { repo: build.repo, number: build.number };
    if (build.reportedState === build.state) {
      // Acknowledged, but the index was not updated (a lost write): tidy up, send nothing.
      await markReported.call(deps.builds, key, build.state).catch(() => undefined);
      continue;
    }
    if (remaining() < MIN_TIME_PER_BUILD_MS) break;
    const url = statusLinkOf(build, deps.publicUrl);
    const report = await reportBuildStatus(deps, {
      build,
      status: finalStatusOf(build, url),
      reports: build.state,
      policy: { ...policy, deadlineMs: Math.max(Math.min(policy.deadlineMs, remaining()), 1) },
      onFailure: {
        level: 'error',
        message: 'could not re-send the final status; the next sweep tries again',
      },
    });
    if (report.set) {
      deps.logger.warn('re-sent the final status GitHub never got', {
        build: buildLabel(build),
        state: build.state,
        reported: build.reportedState,
      });
    }
    const resent: ResentStatus = {
      ...key,
      sha: build.sha,
      state: build.state,
      ...(build.reportedState ? { previouslyReported: build.reportedState } : {}),
      statusSet: report.set,
      ...(report.set ? {} : { statusError: report.error }),
    };
    result.resent.push(resent);
  }
}

async function sweepOne(
  deps: SweeperDependencies,
  overdue: BuildRecord,
  result: SweepResult,
  policy: DeliveryPolicy,
): Promise<void> {
  const label = buildLabel(overdue);
  const key = { repo: overdue.repo, number: overdue.number };
  if (overdue.state !== 'queued' && overdue.state !== 'running') {
    // The index lags the table: the build ended since.
    result.leftAlone.push({ ...key, state: overdue.state });
    return;
  }
  const from: OverdueState = overdue.state;
  if (await sweptRemotely(deps, overdue, label)) {
    result.leftAlone.push({ ...key, state: 'finished from CodeBuild' });
    return;
  }
  const jobs = deps.jobs ? await deps.jobs.listJobs(key) : [];
  // Every job ended but the last one's controller died before the fan-in: the jobs decide.
  const fannedIn = jobs.length > 0 && jobs.every((job) => isTerminal(job.state));
  const ending = fannedIn
    ? { to: fanIn(jobs.map((job) => job.state)), reason: fanInDescription(jobs) }
    : OVERDUE_ENDINGS[from];
  let ended: BuildRecord;
  try {
    ended = await deps.builds.transition(key, { from, to: ending.to, reason: ending.reason });
  } catch (error) {
    if (error instanceof TransitionRefusedError) {
      deps.logger.info('overdue build changed meanwhile; left as it is', {
        build: label,
        state: error.actual,
      });
      result.leftAlone.push({ ...key, ...(error.actual ? { state: error.actual } : {}) });
      return;
    }
    const message = messageOf(error);
    deps.logger.error('could not end an overdue build', { build: label, error });
    result.failed.push({ ...key, error: message });
    return;
  }
  deps.logger.warn('overdue build ended by the sweeper', {
    build: label,
    from,
    to: ended.state,
    reason: ending.reason,
    deadline: overdue.deadline,
  });
  await endUnfinishedJobs(deps, ended, jobs);
  const url = statusLinkOf(ended, deps.publicUrl);
  // Not taken: never silent, and a later sweep re-sends it (the build stays unreported).
  const report = await reportBuildStatus(deps, {
    build: ended,
    status: finalStatusOf(ended, url),
    reports: ended.state,
    policy,
    onFailure: { level: 'error', message: 'could not set the commit status of a swept build' },
  });
  const swept: SweptBuild = {
    ...key,
    sha: ended.sha,
    from,
    to: ending.to,
    reason: ending.reason,
    ...(url ? { url } : {}),
    statusSet: report.set,
    ...(report.set ? {} : { statusError: report.error }),
  };
  result.ended.push(swept);
}

/** A swept build's jobs that had not ended: running ones end as the build did, queued ones cancelled. */
/**
 * Whether the overdue build's CodeBuild runs (its own, or its running jobs') were finished from
 * what CodeBuild reports: the sweep then leaves it (the next one looks again if it still runs).
 */
async function sweptRemotely(
  deps: SweeperDependencies,
  overdue: BuildRecord,
  label: string,
): Promise<boolean> {
  const remote = deps.remoteRuns;
  if (!remote || overdue.state !== 'running') return false;
  try {
    if (overdue.remote) return await remote.sweep(overdue, label);
    const jobs = deps.jobs ? await deps.jobs.listJobs(overdue) : [];
    const handled = await Promise.all(
      jobs
        .filter((job) => job.state === 'running' && job.remote)
        .map((job) => remote.sweep(job, `${label}/${job.id}`)),
    );
    return handled.some(Boolean);
  } catch (error) {
    deps.logger.warn('could not look at an overdue build on CodeBuild; ending it', { build: label, error });
    return false;
  }
}

async function endUnfinishedJobs(
  deps: SweeperDependencies,
  build: BuildRecord,
  jobs: readonly JobRecord[],
): Promise<void> {
  for (const job of jobs) {
    if (isTerminal(job.state)) continue;
    const to = job.state === 'running' ? OVERDUE_ENDINGS.running.to : 'cancelled';
    const reason = `${OVERDUE_ENDINGS[job.state === 'running' ? 'running' : 'queued'].reason} (swept with its build)`;
    try {
      const ended = await deps.jobs?.transitionJob(job, { from: job.state, to, reason });
      if (ended) await reportJob(deps, build, ended, 'final');
    } catch (error) {
      deps.logger.warn('could not end a job of a swept build', {
        build: buildLabel(build),
        job: job.id,
        error,
      });
    }
  }
}

function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}
