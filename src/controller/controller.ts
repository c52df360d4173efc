/**
 * The builder's controller (trusted): claims a queued build, prepares what the runner needs
 * (settings, the archive URL resolved with the token, a POST form for the build's log prefix),
 * runs the runner, then records the result, writes the final log, page, badge and latest
 * pointers, and sets the final commit status. It never runs build code.
 */
import type { BuildKey, BuildRecord } from '../core/build.js';
import { buildLabel } from '../core/build.js';
import { pageUrlOf } from '../core/links.js';
import { commitStateFor, type BuildState } from '../core/state-machine.js';
import { TransitionRefusedError } from '../core/errors.js';
import type { BuilderInvocation } from '../core/protocol.js';
import type { ControllerDependencies } from './controller-dependencies.js';
import { FINISHING_MARGIN_MS, buildTarget, type Ending } from './runner-run.js';
import { runWhereConfigured, type RemoteTarget } from './codebuild-run.js';
import {
  appendTimeBreakdown,
  pageFor,
  reportStatus,
  statusDescription,
  writeArtifacts,
} from './build-artifacts.js';
import { finalPageLog } from '../core/log-format.js';
import {
  fanOutBuild,
  planBuild,
  resumeFanOut,
  runControllerJob,
  type JobControllerResult,
} from './job-controller.js';

export type { ControllerDependencies } from './controller-dependencies.js';
export { finalStatusOf, statusDescription } from './build-artifacts.js';

export type ControllerResult =
  | { ran: true; build: BuildRecord }
  | { ran: false; reason: 'not found' | 'already claimed'; state?: BuildState }
  | JobControllerResult;

/**
 * Runs what the builder function was invoked for: a build (planned first: several jobs fan out to
 * one controller each, src/controller/job-controller.ts) or one job of a build.
 */
export async function runControllerBuild(
  deps: ControllerDependencies,
  invocation: BuilderInvocation,
): Promise<ControllerResult> {
  const { job } = invocation;
  if (job !== undefined) return runControllerJob(deps, { ...invocation, job });
  const clock = deps.clock ?? Date.now;
  const key: BuildKey = { repo: invocation.repo, number: invocation.number };
  const label = buildLabel(key);
  const queued = await deps.builds.getBuild(key);
  if (!queued) {
    deps.logger.error('builder invoked for a build that does not exist', { build: label });
    return { ran: false, reason: 'not found' };
  }
  // Only a build still queued is planned: a retried or duplicate invocation of one that runs
  // reads nothing (its claim below is refused).
  // A retried invocation of a build that fanned out (it may have died before invoking every job):
  // its queued jobs are invoked again, which their conditional claims make harmless.
  if (queued.state === 'running') {
    const resumed = await resumeFanOut(deps, queued);
    if (resumed) return resumed;
  }
  const plan = queued.state === 'queued' ? await planBuild(deps, queued) : { kind: 'single' as const };
  if (plan.kind === 'jobs') return fanOutBuild(deps, queued, plan.jobs);
  let build: BuildRecord;
  try {
    build = await deps.builds.transition(key, {
      from: 'queued',
      to: 'running',
      deadline: clock() + deps.runnerTimeoutMs + FINISHING_MARGIN_MS,
    });
  } catch (error) {
    if (!(error instanceof TransitionRefusedError)) throw error;
    // A retried or duplicate invocation: the build is someone else's (or already over).
    deps.logger.info('build already claimed; nothing to do', { build: label, state: error.actual });
    return { ran: false, reason: 'already claimed', ...(queued ? { state: queued.state } : {}) };
  }
  const url = pageUrlOf(build, deps.publicUrl);
  deps.logger.info('build started', { build: label, sha: build.sha });
  // Told while the runner is prepared and started; the final status waits for it (its order).
  const announced = Promise.all([
    reportStatus(deps, build, 'pending', `Build #${build.number} running`, url, 'running'),
    deps.logs
      .putPage(build.logPrefix, pageFor(build, '', true, url))
      .catch((error: unknown) =>
        deps.logger.warn('could not write the first log page', { build: label, error }),
      ),
  ]);

  // A refused plan (too many jobs, a Node.js that does not exist) ends the build before any runner.
  const placed =
    plan.kind === 'refused'
      ? { kind: 'ended' as const, ending: plan.ending }
      : await runWhereConfigured(deps, build, url, clock, buildRemoteTarget(deps, build), plan.runsOn);
  await announced;
  if (placed.kind === 'started') {
    // On CodeBuild: its completion event finishes the build (src/controller/codebuild-finish.ts).
    return { ran: true, build: (await deps.builds.getBuild(build)) ?? build };
  }
  return { ran: true, build: await finishBuild(deps, build, placed.ending, url, clock) };
}

/** The build as a run target that can hold a CodeBuild run. */
export function buildRemoteTarget(deps: ControllerDependencies, build: BuildRecord): RemoteTarget {
  return {
    ...buildTarget(deps, build),
    recordRemote: (run, deadline) => {
      if (!deps.builds.recordRemoteRun) throw new Error('this build store cannot record CodeBuild runs');
      return deps.builds.recordRemoteRun(build, run, deadline);
    },
  };
}

/**
 * Ends the build as the runner's verdict says, at once: the log is assembled while the record
 * changes, the page and pointers are written while the status is sent. Only then does it wait for
 * the runner's work after its verdict (the cache save), whose notes and the time breakdown it
 * appends to the log.
 */
export async function finishBuild(
  deps: ControllerDependencies,
  running: BuildRecord,
  ending: Ending,
  url: string,
  clock: () => number,
): Promise<BuildRecord> {
  const label = buildLabel(running);
  const recording = clock();
  const [finalText, transitioned] = await Promise.all([
    deps.logs.finalizeLog(running.logPrefix, ending.logNote).catch((error: unknown) => {
      deps.logger.error('could not assemble the final log', { build: label, error });
      return '';
    }),
    deps.builds
      .transition(running, {
        from: 'running',
        to: ending.state,
        reason: ending.description,
        steps: ending.steps,
      })
      .catch((error: unknown) => {
        if (!(error instanceof TransitionRefusedError)) throw error;
        return undefined;
      }),
  ]);
  const reporting = clock();
  const untilStatus = [...ending.timings, { name: 'log and record', ms: reporting - recording }];
  let build: BuildRecord;
  if (!transitioned) {
    // Ended meanwhile (cancelled, or swept as stuck): that state stands and was reported.
    build = (await deps.builds.getBuild(running)) ?? running;
    // A cancel (a newer push, `lambkin cancel`, Ctrl-C on `lambkin run`) is routine; a sweep is not.
    deps.logger[build.state === 'cancelled' ? 'info' : 'warn'](
      'the build ended elsewhere while it ran; keeping that state',
      { build: label, state: build.state },
    );
    await writeArtifacts(deps, build, finalText, url);
  } else {
    build = transitioned;
    await Promise.all([
      writeArtifacts(deps, build, finalText, url),
      reportStatus(deps, build, commitStateFor(build.state), statusDescription(build), url, 'final', {
        log: finalText,
        ...(ending.checkoutRoot !== undefined ? { checkoutRoot: ending.checkoutRoot } : {}),
      }),
    ]);
    untilStatus.push({ name: 'final status', ms: clock() - reporting });
    deps.logger.info('build finished', { build: label, state: build.state, description: build.description });
  }
  const ended = build;
  await appendTimeBreakdown(deps, {
    label,
    logPrefix: running.logPrefix,
    ending,
    untilStatus,
    totalMs: clock() - (running.startedAt ?? recording),
    writePage: (log) => deps.logs.putPage(running.logPrefix, pageFor(ended, finalPageLog(log), false, url)),
  });
  return build;
}
