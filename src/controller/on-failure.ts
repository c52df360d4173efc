/**
 * The builder function's on-failure destination: Lambda gave up on an async invocation of the
 * builder (it failed every attempt, or the event grew too old to run), so the build it named ends
 * as `error` and GitHub is told — never `pending` forever. One implementation: the cloud's
 * FailureFunction (src/handlers/failure.ts) and the local stack's Lambda service both call it.
 */
import { buildLabel, type BuildKey, type BuildRecord } from '../core/build.js';
import { pageUrlOf } from '../core/links.js';
import { TransitionRefusedError } from '../core/errors.js';
import { FINAL_DELIVERY } from '../github/statuses.js';
import type { Logger } from '../core/logger.js';
import { finalStatusOf } from './controller.js';
import { parseBuilderInvocation } from '../core/protocol.js';
import { type DeliveryPolicy, type StatusReporter, type BuildStore, type JobStore } from '../core/ports.js';
import { reportBuildStatus } from './status-reporting.js';
import { reportJob } from './job-controller.js';
import { fanInDescription, type JobRecord } from '../core/job-record.js';
import { fanIn } from '../core/jobs.js';
import { isTerminal } from '../core/state-machine.js';

export interface OnFailureDependencies {
  /** `markReported` records GitHub's acknowledgement (absent in test doubles: not recorded). */
  builds: Pick<BuildStore, 'transition'> & Partial<Pick<BuildStore, 'markReported' | 'getBuild'>>;
  statuses: StatusReporter;
  logger: Logger;
  publicUrl: string;
  /** How long the `error` status may be retried; default FAILURE_STATUS_DELIVERY. */
  statusDelivery?: DeliveryPolicy;
  /**
   * Ends one crashed job of a build of several (src/controller/job-controller.ts); without it a
   * crashed job's invocation ends its whole build `error`.
   */
  jobController?: {
    endCrashedJob(build: BuildKey, job: string, reason: string): Promise<{ build: BuildRecord } | undefined>;
  };
  /**
   * Without `jobController` (the cloud's failure function, which writes no pages): the jobs, so a
   * crashed job ends `error` with its status, and the build takes its jobs' fan-in when it was the last.
   */
  jobs?: Pick<JobStore, 'listJobs' | 'transitionJob'>;
}

/**
 * An async invocation Lambda gave up on. The local Lambda service's `AsyncFailure` has this shape;
 * the cloud's destination record is read into it by `parseDestinationRecord`.
 */
export interface FailedInvocation {
  /** The payload the function was invoked with (a builder invocation, `{kind, repo, number}`). */
  payload: unknown;
  /** How many times the function ran (0 when it never ran, e.g. the event expired in the queue). */
  attempts: number;
  error: { errorType: string; errorMessage: string };
  functionName?: string;
  requestId?: string;
}

export type OnFailureResult =
  | { ended: true; build: BuildRecord; statusSet: boolean }
  | { ended: false; reason: 'not a build' | 'already ended'; build?: BuildKey };

/**
 * The final status of a build, like the builder's own: worth waiting for within a minute (the
 * builder is already down, and its failure may have been GitHub's). The function's time limit
 * (template.yaml) leaves room for it.
 */
export const FAILURE_STATUS_DELIVERY: DeliveryPolicy = FINAL_DELIVERY;

/** Longest error message kept in the build's description (GitHub shows 140 characters of it). */
const MAX_MESSAGE_LENGTH = 300;

/**
 * The build's link for its commit status: the one fixed at intake, or one made from the public URL.
 * Undefined when neither gives an absolute http(s) URL (GitHub refuses anything else).
 */
export function statusLinkOf(
  build: BuildKey & { pageUrl?: string; logToken?: string },
  publicUrl: string,
): string | undefined {
  const url = pageUrlOf(build, publicUrl);
  return /^https?:\/\/[^/]/.test(url) ? url : undefined;
}

/** The reason recorded on the build: one line, saying what Lambda reported. */
export function failureReason(failure: FailedInvocation): string {
  const flat = failure.error.errorMessage.replace(/\s+/g, ' ').trim() || failure.error.errorType;
  const message = flat.length > MAX_MESSAGE_LENGTH ? `${flat.slice(0, MAX_MESSAGE_LENGTH - 1)}…` : flat;
  if (failure.attempts <= 0) return `the builder never ran: ${message}`;
  return `the builder failed after ${failure.attempts} attempt${failure.attempts === 1 ? '' : 's'}: ${message}`;
}

/**
 * Ends the build a failed builder invocation named as `error` (from `queued` or `running`: the
 * builder may have died mid-build) and sets its commit status. A build that already ended is left
 * as it is; a payload that is not a build invocation is logged and dropped (nothing to end).
 */
/** The failure function's ending of a crashed job: its record and status, then the build's fan-in. */
async function endJobAndFanIn(
  deps: OnFailureDependencies,
  key: BuildKey,
  id: string,
  reason: string,
): Promise<{ build: BuildRecord } | undefined> {
  const jobs = deps.jobs;
  const job = (await jobs?.listJobs(key))?.find((other) => other.id === id);
  if (!jobs || !job) return undefined;
  let ended: JobRecord;
  try {
    ended = await jobs.transitionJob(job, { from: ['queued', 'running'], to: 'error', reason });
  } catch (error) {
    if (error instanceof TransitionRefusedError) return undefined;
    throw error;
  }
  const all = await jobs.listJobs(key);
  const done = all.every((other) => isTerminal(other.state));
  let build: BuildRecord;
  try {
    build = done
      ? await deps.builds.transition(key, {
          from: 'running',
          to: fanIn(all.map((other) => other.state)),
          reason: fanInDescription(all),
        })
      : ((await deps.builds.getBuild?.(key)) ?? ({ ...key } as BuildRecord));
  } catch (error) {
    if (!(error instanceof TransitionRefusedError)) throw error;
    build = (await deps.builds.getBuild?.(key)) ?? ({ ...key } as BuildRecord);
  }
  if (build.sha !== undefined) {
    await reportJob(
      { ...deps, finalDelivery: deps.statusDelivery ?? FAILURE_STATUS_DELIVERY },
      build,
      ended,
      'final',
    );
    if (done && isTerminal(build.state)) {
      await reportBuildStatus(deps, {
        build,
        status: finalStatusOf(build, statusLinkOf(build, deps.publicUrl)),
        reports: build.state,
        policy: deps.statusDelivery ?? FAILURE_STATUS_DELIVERY,
        onFailure: {
          level: 'error',
          message: 'could not set the commit status of a build whose last job crashed',
        },
      });
    }
  }
  return { build };
}

export async function endFailedBuild(
  deps: OnFailureDependencies,
  failure: FailedInvocation,
): Promise<OnFailureResult> {
  let key: BuildKey;
  let job: string | undefined;
  try {
    const invocation = parseBuilderInvocation(failure.payload);
    key = { repo: invocation.repo, number: invocation.number };
    job = invocation.job;
  } catch (error) {
    deps.logger.error('an async invocation failed and is not a build', {
      functionName: failure.functionName,
      requestId: failure.requestId,
      error,
    });
    return { ended: false, reason: 'not a build' };
  }
  const label = buildLabel(key);
  const reason = failureReason(failure);
  // One job's controller crashed: that job ends `error`, the build when its jobs all ended.
  if (job !== undefined && (deps.jobController || deps.jobs)) {
    const ended = deps.jobController
      ? await deps.jobController.endCrashedJob(key, job, reason)
      : await endJobAndFanIn(deps, key, job, reason);
    deps.logger.error('job ended as error by the on-failure destination', {
      build: `${label}/${job}`,
      reason,
    });
    return ended
      ? { ended: true, build: ended.build, statusSet: true }
      : { ended: false, reason: 'already ended', build: key };
  }
  let build: BuildRecord;
  try {
    build = await deps.builds.transition(key, { from: ['queued', 'running'], to: 'error', reason });
  } catch (error) {
    if (!(error instanceof TransitionRefusedError)) throw error;
    deps.logger.info('on-failure: the build already ended', { build: label, state: error.actual });
    return { ended: false, reason: 'already ended', build: key };
  }
  deps.logger.error('build ended as error by the on-failure destination', {
    build: label,
    reason,
    requestId: failure.requestId,
  });
  const url = statusLinkOf(build, deps.publicUrl);
  // Not taken: the sweeper re-sends it once GitHub is back (the build stays unreported).
  const report = await reportBuildStatus(deps, {
    build,
    status: finalStatusOf(build, url),
    reports: build.state,
    policy: deps.statusDelivery ?? FAILURE_STATUS_DELIVERY,
    onFailure: { level: 'error', message: 'could not set the error commit status' },
  });
  const statusSet = report.set;
  return { ended: true, build, statusSet };
}
