/**
 * What an ended build leaves behind and tells: its page (with its jobs, for a build of several),
 * badge and latest pointers, and its commit status (and check run) on GitHub.
 */
import type { BuildRecord } from '../core/build.js';
import { buildLabel } from '../core/build.js';
import { commitStateFor } from '../core/state-machine.js';
import { FINAL_DELIVERY, INTAKE_DELIVERY } from '../github/statuses.js';
import { renderBadge } from '../pages/badge.js';
import { logPageLinksFor, renderLogPage, type LogPageJob } from '../pages/build-page.js';
import type { CommitStatusUpdate } from '../core/ports.js';
import { reportBuildStatus, type BuildStatusReport } from './status-reporting.js';
import { finalPageLog, formatTimeBreakdown } from '../core/log-format.js';
import type { PhaseTiming } from '../core/protocol.js';
import type { Ending } from './runner-run.js';
import type { ControllerDependencies } from './controller-dependencies.js';

/** The commit status that tells GitHub how an ended build ended, linking to its page. */
export function finalStatusOf(build: BuildRecord, url: string | undefined): CommitStatusUpdate {
  return {
    repo: build.repo,
    sha: build.sha,
    state: commitStateFor(build.state),
    description: statusDescription(build),
    ...(url ? { targetUrl: url } : {}),
  };
}

/** GitHub has no timed_out or cancelled: those are `error` with a description that says which. */
export function statusDescription(build: BuildRecord): string {
  const what = build.description ?? build.state;
  switch (build.state) {
    case 'success':
      return `Build #${build.number} ${what}`;
    case 'failure':
      return `Build #${build.number} failed: ${what}`;
    case 'timed_out':
      return `Build #${build.number} ${what.startsWith('timed out') ? what : `timed out: ${what}`}`;
    case 'cancelled':
      return `Build #${build.number} ${what.startsWith('cancelled') ? what : `cancelled: ${what}`}`;
    default:
      return `Build #${build.number} error: ${what}`;
  }
}

export async function writeArtifacts(
  deps: ControllerDependencies,
  build: BuildRecord,
  log: string,
  url: string,
  jobs?: readonly LogPageJob[],
): Promise<void> {
  const label = buildLabel(build);
  const writes: Promise<void>[] = [
    deps.logs.putPage(build.logPrefix, pageFor(build, finalPageLog(log), false, url, jobs)),
  ];
  const pointer = {
    number: build.number,
    state: build.state,
    url,
    sha: build.sha,
    at: build.endedAt ?? Date.now(),
  };
  // Only the branch's own code speaks for it: an untrusted build (a check suite's, which may be a
  // fork's commit named like the branch) is no branch's latest build and sets no badge.
  if (build.pr === undefined && build.trusted) {
    writes.push(deps.logs.putLatest(build.repo, build.branch ?? build.tag, pointer));
    if (build.branch) writes.push(deps.logs.putBadge(build.repo, build.branch, renderBadge(build.state)));
  }
  const results = await Promise.allSettled(writes);
  for (const result of results) {
    if (result.status === 'rejected') {
      deps.logger.error('could not write a log page, badge or pointer', {
        build: label,
        error: result.reason,
      });
    }
  }
}

export function pageFor(
  build: BuildRecord,
  log: string,
  running: boolean,
  url: string,
  jobs?: readonly LogPageJob[],
): string {
  return renderLogPage({
    build,
    log,
    running,
    links: logPageLinksFor(url, build.htmlUrl),
    ...(jobs ? { jobs } : {}),
  });
}

export async function reportStatus(
  deps: ControllerDependencies,
  build: BuildRecord,
  state: 'pending' | 'success' | 'failure' | 'error',
  description: string,
  url: string,
  phase: 'running' | 'final',
  checkDetails?: BuildStatusReport['checkDetails'],
): Promise<void> {
  // Never silent: the final status is retried within FINAL_DELIVERY; past that it is logged as an
  // error naming the build, and the sweeper re-sends it (the build stays unreported).
  await reportBuildStatus(deps, {
    build,
    status: { repo: build.repo, sha: build.sha, state, description, targetUrl: url },
    ...(checkDetails ? { checkDetails } : {}),
    reports: build.state,
    policy: phase === 'final' ? (deps.finalDelivery ?? FINAL_DELIVERY) : INTAKE_DELIVERY,
    onFailure: {
      level: phase === 'final' ? 'error' : 'warn',
      message: `could not set the ${phase} commit status`,
    },
  });
}

export interface TimeBreakdownTarget {
  /** For the controller's log: `owner/repo#7` or `owner/repo#7/node-22`. */
  label: string;
  logPrefix: string;
  ending: Ending;
  /** From `running` to the final status, in order. */
  untilStatus: PhaseTiming[];
  /** Running → final status, as measured. */
  totalMs: number;
  /** Writes the build's (or job's) page with the log's final text. */
  writePage: (log: string) => Promise<void>;
}

/**
 * After the final status: waits for the runner's work after its verdict (the cache save), then
 * writes the log once more with the runner's notes about it and where the time went, and the page
 * with it. The status is out already; a failure here costs the log its last lines, nothing more.
 */
export async function appendTimeBreakdown(
  deps: ControllerDependencies,
  target: TimeBreakdownTarget,
): Promise<void> {
  const rest = await target.ending.rest;
  const breakdown = { untilStatus: target.untilStatus, totalMs: target.totalMs, after: rest.timings };
  const closing = [target.ending.logNote, ...rest.notes, `\n${formatTimeBreakdown(breakdown).trimEnd()}`];
  try {
    const text = await deps.logs.finalizeLog(
      target.logPrefix,
      closing.filter((line) => line !== undefined).join('\n'),
    );
    await target.writePage(text);
  } catch (error) {
    deps.logger.warn('could not append the time breakdown to the log', { build: target.label, error });
  }
  deps.logger.info('build time', { build: target.label, ...breakdown });
}
