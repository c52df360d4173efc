/** What several commands do alike: find a build, change a commit status without failing on it. */
import { buildLabel, type BuildKey, type BuildRecord } from '../../core/build.js';
import { checkReportOf } from '../../core/check-run.js';
import { NotFoundError, messageOf } from '../../core/errors.js';
import type { BuildState } from '../../core/state-machine.js';
import { oneLine } from '../cli-errors.js';
import type { CliContext } from '../program.js';
import type { Stack } from '../stack.js';
import { type CommitStatusUpdate, type DeliveryPolicy } from '../../core/ports.js';

/** A person is waiting: a few attempts within seconds, not the builder's minute. */
export const CLI_STATUS_DELIVERY: DeliveryPolicy = {
  deadlineMs: 10_000,
  maxAttempts: 3,
  attemptTimeoutMs: 5000,
};

export async function buildOrFail(stack: Stack, key: BuildKey): Promise<BuildRecord> {
  const build = await stack.builds.getBuild(key);
  if (!build) throw new NotFoundError(`build ${buildLabel(key)}`);
  return build;
}

/**
 * Sets a commit status (and in App mode the build's check run) when GitHub credentials are configured. A status that cannot be set is a
 * warning on stderr: the change to the build is recorded either way. Returns whether it was set.
 */
export async function setStatusOrWarn(
  context: CliContext,
  stack: Stack,
  update: Omit<CommitStatusUpdate, 'check'>,
  /** The build and the state the status stands for: in App mode, its check run says the same. */
  build: BuildRecord,
  reports: BuildState,
): Promise<boolean> {
  if (!stack.statuses) return false;
  try {
    const check = checkReportOf({ build, state: reports, description: update.description });
    await stack.statuses.setStatus({ ...update, check }, CLI_STATUS_DELIVERY);
    return true;
  } catch (error) {
    const reason = messageOf(error);
    context.stderr.write(
      `lambkin: warning: could not set the ${update.state} commit status: ${oneLine(reason)}\n`,
    );
    return false;
  }
}
