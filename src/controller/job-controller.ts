/**
 * Builds of several jobs (the config's `matrix` and `parallel`), the controller's side:
 *
 *   plan    the build's controller reads the commit's config through the contents API, plans the
 *           jobs (src/core/jobs.ts) within the operator's limit and resolves each `node` value once;
 *   fan out it records the jobs `queued` under the build and invokes one controller per job, all
 *           at once (Lambda runs them within the builder's concurrency and queues the rest);
 *   run     each job's controller claims its job (queued → running, conditional), runs one runner
 *           with the job's own log, page, commit status context and check run, and records the end;
 *   fan in  whichever job ends last (every job re-reads all of them after its own end) moves the
 *           build to its jobs' fan-in state, writes the build's page and sets the build's status.
 *
 * A build with neither `matrix` nor `parallel` is planned as `single` and runs as it always did.
 */
import type { BuildKey, BuildRecord } from '../core/build.js';
import { buildLabel } from '../core/build.js';
import { LambkinError, TransitionRefusedError, messageOf } from '../core/errors.js';
import { fanInDescription, jobDurationMs, jobLabel, type JobRecord } from '../core/job-record.js';
import { fanIn, isJobId, planJobs, TooManyJobsError, type JobPlan } from '../core/jobs.js';
import { jobLinkFromBuildPage, jobPageUrl, pageUrlOf, relativeJobPageLinks } from '../core/links.js';
import { finalPageLog, formatDuration } from '../core/log-format.js';
import type { NewJob } from '../core/ports.js';
import type { BuilderInvocation, PhaseTiming, RunnerJob, RunnerJobNode } from '../core/protocol.js';
import { RepoConfigError } from '../core/repo-config/config-errors.js';
import { resolveBuildConfig, type ResolvedBuildConfig } from '../core/repo-config/resolve.js';
import { pullRequestSourceOf } from '../core/settings.js';
import type { RunsOn } from '../core/repo-config/schema.js';
import { commitStateFor, isTerminal, STATE_LABELS, type BuildState } from '../core/state-machine.js';
import { FINAL_DELIVERY, INTAKE_DELIVERY } from '../github/statuses.js';
import { renderLogPage, type LogPageJob } from '../pages/build-page.js';
import { readBaseConfig, readCommitConfig } from './base-config.js';
import {
  appendTimeBreakdown,
  pageFor,
  reportStatus,
  statusDescription,
  writeArtifacts,
} from './build-artifacts.js';
import type { ControllerDependencies } from './controller-dependencies.js';
import { FINISHING_MARGIN_MS, endingWithout, type Ending } from './runner-run.js';
import { runWhereConfigured, stopRemoteRun, type RemoteTarget } from './codebuild-run.js';
import { reportBuildStatus } from './status-reporting.js';

/** How a build runs: as one job (as always), as several, or not at all (its plan was refused). */
export type BuildPlan =
  | { kind: 'single'; runsOn?: RunsOn }
  | { kind: 'jobs'; jobs: NewJob[]; runsOn?: RunsOn }
  | { kind: 'refused'; ending: Ending };

/** A build's jobs could not be planned (the config over the limit, a Node.js that is not published). */
function refused(description: string, detail: string): BuildPlan {
  return {
    kind: 'refused',
    ending: endingWithout({ state: 'error', description, steps: [], logNote: `[lambkin] ${detail}` }),
  };
}

/**
 * The build's jobs, from its commit's config (the same layers the runner resolves: the operator's
 * defaults, a pull request's base branch and its allowed overrides). A config that does not parse
 * is `single`: the runner reports it, as it always has.
 */
export async function planBuild(deps: ControllerDependencies, build: BuildRecord): Promise<BuildPlan> {
  const fansOut = deps.jobs !== undefined && deps.jobInvoker !== undefined;
  // The config is read for jobs, and for where the build runs (runsOn) when CodeBuild is set up.
  if (!deps.repoFiles || (!fansOut && !deps.codebuild)) return { kind: 'single' };
  const settings = await deps.settings.effective(build.repo);
  const policy = build.pr !== undefined ? settings.build.pullRequests[pullRequestSourceOf(build)] : undefined;
  let config: ResolvedBuildConfig;
  try {
    const files = await readCommitConfig(deps.repoFiles, build.repo, build.sha);
    const base =
      build.pr !== undefined && build.baseBranch !== undefined
        ? await readBaseConfig(deps.repoFiles, build.repo, build.baseBranch)
        : undefined;
    config = resolveBuildConfig({
      settingsConfig: settings.config,
      repo: files,
      build,
      ...(base ? { base } : {}),
      ...(policy ? { pullRequestOverrides: policy.allowConfigOverrides } : {}),
    });
  } catch (error) {
    if (error instanceof RepoConfigError) return { kind: 'single' };
    throw error;
  }
  // A skipped build runs nowhere in particular: the Lambda runner says so in a second.
  if (!config.build) return { kind: 'single' };
  const runsOn = config.runsOn;
  if (!fansOut || (config.matrix === undefined && (config.parallel ?? 1) <= 1))
    return { kind: 'single', runsOn };
  let plans: JobPlan[];
  try {
    plans = planJobs(config, { maxJobs: settings.build.maxJobs });
  } catch (error) {
    if (!(error instanceof RepoConfigError)) throw error;
    const message = error.message;
    return refused(
      error instanceof TooManyJobsError
        ? `too many jobs: ${error.count}, the limit is ${error.limit}`
        : 'the matrix makes no valid jobs',
      `Nothing ran: ${message}`,
    );
  }
  // A job id names the job's log folder and link. The plan slugs matrix values, but a value of
  // dots (`..`) or a very long one makes an id that is no job id: refused here, with the value named,
  // rather than failing (jobLogPrefix throws) after the build was claimed, leaving it running.
  const unusable = plans.find((plan) => !isJobId(plan.id));
  if (unusable) {
    const id = unusable.id.length > 80 ? `${unusable.id.slice(0, 80)}…` : unusable.id;
    return refused(
      'the matrix makes a job id that cannot be used',
      `Nothing ran: the matrix makes the job id ${JSON.stringify(id)} (from ${JSON.stringify(unusable.matrix).slice(0, 200)}). ` +
        'Job ids are made of the matrix names and values: use values that are not only dots and at most a few dozen characters.',
    );
  }
  if (build.jobs !== undefined) {
    const wanted = new Set(build.jobs);
    const unknown = build.jobs.filter((id) => !plans.some((plan) => plan.id === id));
    if (unknown.length > 0) {
      return refused(
        `no job ${unknown.join(', ')} in this build`,
        `Nothing ran: this commit's config has no job ${unknown.map((id) => `"${id}"`).join(', ')}; its jobs are ${plans.map((plan) => plan.id).join(', ')}.`,
      );
    }
    plans = plans.filter((plan) => wanted.has(plan.id));
  }
  const nodes = new Map<string, RunnerJobNode>();
  for (const spec of new Set(plans.flatMap((plan) => (plan.node !== undefined ? [plan.node] : [])))) {
    if (!deps.nodeVersions) {
      return refused(
        'this builder cannot choose Node.js versions',
        `Nothing ran: the matrix asks for Node.js ${spec}, and this builder has no way to resolve Node.js versions.`,
      );
    }
    try {
      nodes.set(spec, await deps.nodeVersions.resolve(spec));
    } catch (error) {
      const message = messageOf(error);
      if (!(error instanceof LambkinError)) throw error;
      return refused(`Node.js ${spec} could not be resolved`, `Nothing ran: ${message}`);
    }
  }
  return {
    kind: 'jobs',
    runsOn,
    jobs: plans.map((plan) => {
      const resolvedNode = plan.node !== undefined ? nodes.get(plan.node) : undefined;
      return {
        plan,
        failFast: config.failFast ?? false,
        ...(resolvedNode ? { resolvedNode } : {}),
        ...(runsOn !== 'lambda' ? { runsOn } : {}),
      };
    }),
  };
}

/**
 * Claims the build, records its jobs and starts one controller per job. The build's deadline
 * covers its jobs running in waves of `jobConcurrency`.
 */
export async function fanOutBuild(
  deps: ControllerDependencies,
  queued: BuildRecord,
  jobs: NewJob[],
): Promise<{ ran: true; build: BuildRecord } | { ran: false; reason: 'already claimed'; state: BuildState }> {
  const store = deps.jobs;
  const invoker = deps.jobInvoker;
  if (!store || !invoker) throw new Error('fanOutBuild needs the job store and the job invoker');
  const clock = deps.clock ?? Date.now;
  const label = buildLabel(queued);
  const waves = Math.ceil(jobs.length / Math.max(1, deps.jobConcurrency ?? jobs.length));
  // A job on CodeBuild (or `auto`'s rebuild there) runs up to CodeBuild's limit.
  const remoteMs =
    deps.codebuild && jobs.some((job) => job.runsOn !== undefined && job.runsOn !== 'lambda')
      ? deps.codebuild.platform.timeoutMinutes * 60_000
      : 0;
  const perJob = deps.runnerTimeoutMs + remoteMs + FINISHING_MARGIN_MS;
  let build: BuildRecord;
  try {
    build = await deps.builds.transition(queued, {
      from: 'queued',
      to: 'running',
      deadline: clock() + waves * perJob,
      reason: `${jobs.length} jobs`,
    });
  } catch (error) {
    if (!(error instanceof TransitionRefusedError)) throw error;
    deps.logger.info('build already claimed; nothing to do', { build: label, state: error.actual });
    return { ran: false, reason: 'already claimed', state: queued.state };
  }
  const records = await store.putJobs(build, jobs, { deadline: build.deadline });
  const url = pageUrlOf(build, deps.publicUrl);
  deps.logger.info('build started', { build: label, sha: build.sha, jobs: records.length });
  await reportStatus(
    deps,
    build,
    'pending',
    `Build #${build.number} running: ${records.length} jobs`,
    url,
    'running',
  );
  await writeBuildPage(deps, build, records, url, true);
  await Promise.all(records.map((job) => reportJob(deps, build, job, 'running')));
  await Promise.all(
    records.map(async (job) => {
      try {
        await invoker.invoke(build, job.id);
      } catch (error) {
        const message = messageOf(error);
        deps.logger.error('could not start a job', { build: jobLabel(keyOf(job)), error });
        await endJob(deps, build, job, ['queued'], 'error', `could not start the job: ${message}`);
      }
    }),
  );
  await finishBuildIfDone(deps, build);
  return { ran: true, build: (await deps.builds.getBuild(build)) ?? build };
}

/**
 * A build already fanned out and invoked again (Lambda's retry of a controller that died between
 * recording its jobs and invoking them all): its jobs still queued are invoked again (a job
 * claimed meanwhile ignores the second invocation), and the fan-in runs if they all ended.
 * Undefined for a build without jobs (one job: the caller's claim refuses the duplicate).
 */
export async function resumeFanOut(
  deps: ControllerDependencies,
  build: BuildRecord,
): Promise<{ ran: false; reason: 'already claimed'; state: BuildState } | undefined> {
  if (!deps.jobs || !deps.jobInvoker) return undefined;
  const recorded = await deps.jobs.listJobs(build);
  if (recorded.length === 0) return undefined;
  const invoker = deps.jobInvoker;
  const queued = recorded.filter((job) => job.state === 'queued');
  deps.logger.info('build fanned out already; invoking its queued jobs again', {
    build: buildLabel(build),
    queued: queued.length,
  });
  await Promise.all(
    queued.map(async (job) => {
      try {
        await invoker.invoke(build, job.id);
      } catch (error) {
        const message = messageOf(error);
        await endJob(deps, build, job, ['queued'], 'error', `could not start the job: ${message}`);
      }
    }),
  );
  await finishBuildIfDone(deps, build);
  return { ran: false, reason: 'already claimed', state: build.state };
}

export type JobControllerResult =
  | { ran: true; build: BuildRecord; job: JobRecord }
  | { ran: false; reason: 'not found' | 'already claimed'; state?: BuildState };

/** Runs one job of a build of several, then, when it was the last to end, the build's fan-in. */
export async function runControllerJob(
  deps: ControllerDependencies,
  invocation: BuilderInvocation & { job: string },
): Promise<JobControllerResult> {
  const clock = deps.clock ?? Date.now;
  const key = { repo: invocation.repo, number: invocation.number, job: invocation.job };
  const build = await deps.builds.getBuild(key);
  const queued = build ? (await deps.jobs?.listJobs(key))?.find((job) => job.id === key.job) : undefined;
  if (!build || !queued || !deps.jobs) {
    deps.logger.error('builder invoked for a job that does not exist', { build: jobLabel(key) });
    return { ran: false, reason: 'not found' };
  }
  if (build.state !== 'running') {
    // Superseded, swept or ended by failFast before this job's turn came. A job still `running`
    // here is a retry of a controller that died mid-run: ended too, as nothing else would end it
    // (the sweeper looks only at builds not ended). A live controller of the same job (a duplicate)
    // stops its runner at its next watch, and keeps this state.
    await endJob(
      deps,
      build,
      queued,
      ['queued', 'running'],
      'cancelled',
      `the build is ${STATE_LABELS[build.state]}`,
    );
    // The last of its jobs to end writes the ended build's page with its jobs' final list: no one
    // else does once the build was ended elsewhere (its page would list them queued for good).
    await finishBuildIfDone(deps, build);
    return { ran: false, reason: 'already claimed', state: build.state };
  }
  let job: JobRecord;
  try {
    job = await deps.jobs.transitionJob(queued, {
      from: 'queued',
      to: 'running',
      deadline: clock() + deps.runnerTimeoutMs + FINISHING_MARGIN_MS,
    });
  } catch (error) {
    if (!(error instanceof TransitionRefusedError)) throw error;
    deps.logger.info('job already claimed; nothing to do', { build: jobLabel(key), state: error.actual });
    // A retry of a controller that died after its job ended but before the fan-in: the fan-in is
    // done now (conditional: a no-op when another job's controller did it), not left to the sweeper.
    if (error.actual !== undefined && isTerminal(error.actual as BuildState)) {
      await finishBuildIfDone(deps, build);
    }
    return {
      ran: false,
      reason: 'already claimed',
      ...(error.actual ? { state: error.actual as BuildState } : {}),
    };
  }
  deps.logger.info('job started', { build: jobLabel(key), sha: build.sha });
  await reportJob(deps, build, job, 'running');
  await writeJobPage(deps, build, job, '', true);

  const runnerJob: RunnerJob = {
    id: job.id,
    title: job.title,
    env: job.env,
    ...(job.resolvedNode ? { node: job.resolvedNode } : {}),
  };
  const placed = await runWhereConfigured(
    deps,
    build,
    pageUrlOf(build, deps.publicUrl),
    clock,
    jobRemoteTarget(deps, build, job, runnerJob),
    job.runsOn,
  );
  if (placed.kind === 'started') {
    // On CodeBuild: its completion event finishes the job (src/controller/codebuild-finish.ts).
    return {
      ran: true,
      build,
      job: (await deps.jobs.listJobs(build)).find((other) => other.index === job.index) ?? job,
    };
  }
  const ended = await completeJob(deps, build, job, placed.ending, clock);
  return { ran: true, build: (await deps.builds.getBuild(build)) ?? build, job: ended };
}

/** One job as a run target: its own log, stopped once it or its build is no longer running. */
export function jobRemoteTarget(
  deps: ControllerDependencies,
  build: BuildRecord,
  job: JobRecord,
  runnerJob: RunnerJob,
): RemoteTarget {
  const jobs = deps.jobs;
  if (!jobs) throw new Error('a job needs the job store');
  return {
    label: jobLabel(keyOf(job)),
    logPrefix: job.logPrefix,
    job: runnerJob,
    stopReason: async () => {
      const [currentBuild, currentJob] = await Promise.all([
        deps.builds.getBuild(build),
        jobs.listJobs(build).then((all) => all.find((other) => other.index === job.index)),
      ]);
      if (currentJob && currentJob.state !== 'running') {
        return currentJob.description ?? currentJob.state;
      }
      if (currentBuild && currentBuild.state !== 'running') {
        return `the build is ${STATE_LABELS[currentBuild.state]}: ${currentBuild.description ?? ''}`.trim();
      }
      return undefined;
    },
    recordRemote: async (run, deadline) => {
      if (!jobs.recordJobRemoteRun) throw new Error('this job store cannot record CodeBuild runs');
      const recorded = await jobs.recordJobRemoteRun(job, run, deadline);
      // The build waits for its jobs: the sweeper must not end it while this one runs on CodeBuild.
      await deps.builds.extendDeadline?.(build, deadline);
      return recorded;
    },
  };
}

/**
 * A job's run ended (its runner answered, or its CodeBuild run completed): records it, sets its
 * status, cancels the others under failFast, does the build's fan-in when it was the last, then
 * appends the time breakdown to its log.
 */
export async function completeJob(
  deps: ControllerDependencies,
  build: BuildRecord,
  job: JobRecord,
  ending: Ending,
  clock: () => number,
): Promise<JobRecord> {
  const { job: ended, untilStatus } = await finishJob(deps, build, job, ending, clock);
  if (ended.failFast && ended.state !== 'success' && ended.state !== 'cancelled') {
    await cancelOtherJobs(deps, build, ended);
  }
  await finishBuildIfDone(deps, build);
  // After the statuses: the job's cache save, then its log's last lines and time breakdown.
  await appendTimeBreakdown(deps, {
    label: jobLabel(keyOf(job)),
    logPrefix: job.logPrefix,
    ending,
    untilStatus,
    totalMs: clock() - (ended.startedAt ?? clock()),
    writePage: (log) => writeJobPage(deps, build, ended, log, false),
  });
  return ended;
}

function keyOf(job: JobRecord): BuildKey & { job: string } {
  return { repo: job.repo, number: job.number, job: job.id };
}

/** Records how the job's run ended, writes its page and sets its status (unless it ended elsewhere). */
async function finishJob(
  deps: ControllerDependencies,
  build: BuildRecord,
  running: JobRecord,
  ending: Ending,
  clock: () => number,
): Promise<{ job: JobRecord; untilStatus: PhaseTiming[] }> {
  const label = jobLabel(keyOf(running));
  const recording = clock();
  let finalText = '';
  try {
    finalText = await deps.logs.finalizeLog(running.logPrefix, ending.logNote);
  } catch (error) {
    deps.logger.error('could not assemble the final log', { build: label, error });
  }
  let job: JobRecord;
  let reported = false;
  try {
    job = await (deps.jobs as NonNullable<ControllerDependencies['jobs']>).transitionJob(running, {
      from: 'running',
      to: ending.state,
      reason: ending.description,
      steps: ending.steps,
    });
  } catch (error) {
    if (!(error instanceof TransitionRefusedError)) throw error;
    // Ended meanwhile (failFast, the sweeper): that state stands and was reported.
    job = (await deps.jobs?.listJobs(build))?.find((other) => other.index === running.index) ?? running;
    reported = true;
  }
  const reporting = clock();
  const untilStatus = [...ending.timings, { name: 'log and record', ms: reporting - recording }];
  await Promise.all([
    writeJobPage(deps, build, job, finalText, false),
    reported
      ? undefined
      : reportJob(deps, build, job, 'final', {
          log: finalText,
          ...(ending.checkoutRoot !== undefined ? { checkoutRoot: ending.checkoutRoot } : {}),
        }),
  ]);
  untilStatus.push({ name: 'final status', ms: clock() - reporting });
  deps.logger.info('job finished', { build: label, state: job.state, description: job.description });
  return { job, untilStatus };
}

/**
 * Ends a job that has not ended (a job that could not start, one the build's end or failFast
 * stops) and reports it; a job that moved on meanwhile is left as it is.
 */
async function endJob(
  deps: ControllerDependencies,
  build: BuildRecord,
  job: JobRecord,
  from: BuildState[],
  to: BuildState,
  reason: string,
): Promise<JobRecord | undefined> {
  let ended: JobRecord;
  try {
    ended = await (deps.jobs as NonNullable<ControllerDependencies['jobs']>).transitionJob(job, {
      from,
      to,
      reason,
    });
  } catch (error) {
    if (!(error instanceof TransitionRefusedError)) throw error;
    return undefined;
  }
  // A job on CodeBuild has no controller watching it: stop it here.
  await stopRemoteRun(deps, ended, jobLabel(keyOf(ended)));
  // The log so far (none, for a job that never ran) and why it ended; its own controller, if it
  // still runs, finalizes it again when its runner stops.
  const log = await deps.logs
    .finalizeLog(job.logPrefix, `[lambkin] ${reason}`)
    .catch(() => `[lambkin] ${reason}\n`);
  await writeJobPage(deps, build, ended, log, false);
  await reportJob(deps, build, ended, 'final');
  return ended;
}

/**
 * A job's controller that failed every attempt (the on-failure destination, or the local
 * service's): the job ends `error`, and the build takes its jobs' fan-in if it was the last.
 */
export async function endCrashedJob(
  deps: ControllerDependencies,
  key: BuildKey & { job: string },
  reason: string,
): Promise<JobRecord | undefined> {
  const build = await deps.builds.getBuild(key);
  const job = build ? (await deps.jobs?.listJobs(key))?.find((other) => other.id === key.job) : undefined;
  if (!build || !job) return undefined;
  const ended = await endJob(deps, build, job, ['queued', 'running'], 'error', reason);
  await finishBuildIfDone(deps, build);
  return ended;
}

/** failFast: the first failed job cancels the others (a running one's controller stops its runner). */
async function cancelOtherJobs(
  deps: ControllerDependencies,
  build: BuildRecord,
  failed: JobRecord,
): Promise<void> {
  const others = ((await deps.jobs?.listJobs(build)) ?? []).filter(
    (job) => job.index !== failed.index && !isTerminal(job.state),
  );
  const reason = `cancelled: ${failed.title} ${STATE_LABELS[failed.state]} (failFast)`;
  await Promise.all(
    others.map((job) => endJob(deps, build, job, ['queued', 'running'], 'cancelled', reason)),
  );
}

/**
 * The fan-in: once every job has ended, the build takes their worst state (success only if all
 * passed). Every job checks after its own end, so the last one to end finds them all ended; of
 * two that end at once, the conditional transition lets one through.
 */
export async function finishBuildIfDone(deps: ControllerDependencies, build: BuildKey): Promise<void> {
  const jobs = (await deps.jobs?.listJobs(build)) ?? [];
  if (jobs.length === 0 || jobs.some((job) => !isTerminal(job.state))) return;
  const running = await deps.builds.getBuild(build);
  if (!running) return;
  const url = pageUrlOf(running, deps.publicUrl);
  const state = fanIn(jobs.map((job) => job.state));
  const summary = jobSummary(jobs);
  let ended: BuildRecord;
  try {
    ended = await deps.builds.transition(running, {
      from: 'running',
      to: state,
      reason: fanInDescription(jobs),
    });
  } catch (error) {
    if (!(error instanceof TransitionRefusedError)) throw error;
    // Another job's controller got there first, or the build was cancelled or swept: its page
    // still gets the jobs' final list.
    const current = (await deps.builds.getBuild(build)) ?? running;
    if (isTerminal(current.state)) await writeBuildPage(deps, current, jobs, url, false, summary);
    return;
  }
  let log = summary;
  try {
    log = await deps.logs.finalizeLog(ended.logPrefix, summary);
  } catch (error) {
    deps.logger.error('could not assemble the final log', { build: buildLabel(ended), error });
  }
  await writeArtifacts(deps, ended, log, url, pageJobs(ended, jobs, url));
  await reportStatus(deps, ended, commitStateFor(ended.state), statusDescription(ended), url, 'final', {
    log,
  });
  deps.logger.info('build finished', {
    build: buildLabel(ended),
    state: ended.state,
    description: ended.description,
  });
}

/** The build's own log: one line per job, with its state, time and page. */
function jobSummary(jobs: readonly JobRecord[]): string {
  const lines = jobs.map((job) => {
    const duration = jobDurationMs(job);
    const time = duration === undefined ? '' : ` in ${formatDuration(duration)}`;
    const why = job.description ? ` (${job.description})` : '';
    return `[lambkin] Job ${job.title}: ${STATE_LABELS[job.state]}${time}${why}`;
  });
  return `${lines.join('\n')}\n`;
}

function pageJobs(build: BuildRecord, jobs: readonly JobRecord[], url: string): LogPageJob[] {
  return jobs.map((job) => {
    const durationMs = jobDurationMs(job);
    return {
      title: job.title,
      state: job.state,
      href: jobLinkFromBuildPage(url, job.id),
      ...(durationMs !== undefined ? { durationMs } : {}),
    };
  });
}

async function writeBuildPage(
  deps: ControllerDependencies,
  build: BuildRecord,
  jobs: readonly JobRecord[],
  url: string,
  running: boolean,
  log = '',
): Promise<void> {
  await deps.logs
    .putPage(build.logPrefix, pageFor(build, finalPageLog(log), running, url, pageJobs(build, jobs, url)))
    .catch((error: unknown) =>
      deps.logger.warn('could not write the build page', { build: buildLabel(build), error }),
    );
}

/** A job's page: the build's facts with the job's state, steps and log, and a link back to the build. */
async function writeJobPage(
  deps: ControllerDependencies,
  build: BuildRecord,
  job: JobRecord,
  log: string,
  running: boolean,
): Promise<void> {
  const buildUrl = pageUrlOf(build, deps.publicUrl);
  const links = relativeJobPageLinks(buildUrl, job.id);
  const html = renderLogPage({
    build: {
      ...build,
      state: job.state,
      queuedAt: job.queuedAt,
      ...(job.startedAt !== undefined ? { startedAt: job.startedAt } : { startedAt: undefined }),
      ...(job.endedAt !== undefined ? { endedAt: job.endedAt } : { endedAt: undefined }),
      ...(job.description !== undefined ? { description: job.description } : { description: undefined }),
      ...(job.steps !== undefined ? { steps: job.steps } : { steps: undefined }),
    },
    log: running ? log : finalPageLog(log),
    running,
    links: { raw: links.rawLog, self: links.self, ...(build.htmlUrl ? { github: build.htmlUrl } : {}) },
    job: { title: job.title, buildHref: links.build },
  });
  await deps.logs
    .putPage(job.logPrefix, html)
    .catch((error: unknown) =>
      deps.logger.warn('could not write the job page', { build: jobLabel(keyOf(job)), error }),
    );
}

/** `Build #7 · node 22, shard 2/4 failed: test (exit 1)`: a job's commit status description. */
export function jobStatusDescription(build: Pick<BuildRecord, 'number'>, job: JobRecord): string {
  const what = job.description ? `: ${job.description}` : '';
  return `Build #${build.number} · ${job.title} ${STATE_LABELS[job.state]}${job.state === 'queued' || job.state === 'running' ? '' : what}`;
}

/** The job's commit status (its own context) and, in App mode, its own check run. */
export async function reportJob(
  deps: Pick<ControllerDependencies, 'statuses' | 'logger' | 'publicUrl' | 'finalDelivery'>,
  build: BuildRecord,
  job: JobRecord,
  phase: 'running' | 'final',
  details: { log?: string; checkoutRoot?: string } = {},
): Promise<void> {
  const url = jobPageUrl(pageUrlOf(build, deps.publicUrl), job.id);
  await reportBuildStatus(
    // A job's acknowledgement is not recorded: the sweeper re-sends builds' statuses only.
    { statuses: deps.statuses, builds: {}, logger: deps.logger },
    {
      build: {
        ...build,
        ...(job.startedAt !== undefined ? { startedAt: job.startedAt } : {}),
        ...(job.endedAt !== undefined ? { endedAt: job.endedAt } : {}),
        ...(job.steps !== undefined ? { steps: job.steps } : { steps: [] }),
      },
      status: {
        repo: build.repo,
        sha: build.sha,
        state: commitStateFor(job.state),
        description: jobStatusDescription(build, job),
        targetUrl: url,
        context: job.context,
      },
      checkDetails: { job: { id: job.id, context: job.context }, ...details },
      reports: job.state,
      policy: phase === 'final' ? (deps.finalDelivery ?? FINAL_DELIVERY) : INTAKE_DELIVERY,
      onFailure: {
        level: phase === 'final' ? 'error' : 'warn',
        message: `could not set the ${phase} commit status of a job`,
      },
    },
  );
}
