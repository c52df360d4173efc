/**
 * The one way a service tells GitHub what a build is doing: set the commit status (and in App mode
 * the check run that says the same), then record on
 * the build what GitHub acknowledged (`reportedState`). A terminal build whose acknowledged state
 * differs from its state stays in the sweeper's index, and the sweeper sends it again; so a status
 * that could not be set is logged, never thrown: the build goes on.
 */
import { buildLabel, type BuildRecord } from '../core/build.js';
import { checkReportOf, type CheckReportInput, type CheckRunReport } from '../core/check-run.js';
import type { Logger } from '../core/logger.js';
import type { BuildStore, CommitStatusUpdate, DeliveryPolicy, StatusReporter } from '../core/ports.js';
import type { BuildState } from '../core/state-machine.js';
import { messageOf } from '../core/errors.js';

export interface StatusReportingDependencies {
  statuses: StatusReporter;
  /** Without `markReported` (a store that keeps no such record) the acknowledgement is not recorded. */
  builds: Partial<Pick<BuildStore, 'markReported'>>;
  logger: Logger;
}

export interface BuildStatusReport {
  build: BuildRecord;
  /** The commit status; the check run that goes with it (App mode) is made from it and the build. */
  status: Omit<CommitStatusUpdate, 'check'>;
  /** What only the controller knows at the end: the log and where the source was. */
  checkDetails?: Pick<CheckReportInput, 'log' | 'checkoutRoot' | 'job'>;
  /** The build state this status stands for: recorded as acknowledged once GitHub took it. */
  reports: BuildState;
  policy: DeliveryPolicy;
  /** What to log when GitHub did not take it, and how loudly (a final status is an error). */
  onFailure: { level: 'warn' | 'error'; message: string };
}

/** Whether GitHub took the status; its error's message when it did not. */
export type ReportResult = { set: true } | { set: false; error: string };

export async function reportBuildStatus(
  deps: StatusReportingDependencies,
  report: BuildStatusReport,
): Promise<ReportResult> {
  const label = buildLabel(report.build);
  try {
    const check = checkReportFor(deps, report);
    await deps.statuses.setStatus({ ...report.status, check }, report.policy);
  } catch (error) {
    deps.logger[report.onFailure.level](report.onFailure.message, {
      build: label,
      state: report.status.state,
      error,
    });
    return { set: false, error: messageOf(error) };
  }
  await deps.builds
    .markReported?.(report.build, report.reports)
    .catch((error: unknown) =>
      deps.logger.warn('could not record the reported status', { build: label, error }),
    );
  return { set: true };
}

/**
 * The check run that goes with the status. Reading the log is the build's own output at work: should
 * it ever fail, the report goes out without the log's end and annotations rather than not at all.
 */
function checkReportFor(deps: StatusReportingDependencies, report: BuildStatusReport): CheckRunReport {
  const input = { build: report.build, state: report.reports, description: report.status.description };
  try {
    return checkReportOf({ ...input, ...report.checkDetails });
  } catch (error) {
    deps.logger.error("could not read the build's log for its check run; reporting without it", {
      build: buildLabel(report.build),
      error,
    });
    return checkReportOf({ ...input, ...(report.checkDetails?.job ? { job: report.checkDetails.job } : {}) });
  }
}
