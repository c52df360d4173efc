/**
 * A build's jobs as they are recorded and run: one record per job under its build, each with the
 * build state machine of its own (conditional transitions, as builds have), its own log prefix
 * under the build's, its own page, commit status context and check run. Pure: no I/O.
 *
 * A build with one job (no `matrix`, no `parallel`) has no job records: it runs as it always did.
 */
import type { BuildKey, RunLifecycle } from './build.js';
import { FAN_IN_ORDER, isJobId, type JobPlan } from './jobs.js';
import type { RunnerJobNode } from './protocol.js';
import type { RunsOn } from './repo-config/schema.js';
import { STATE_LABELS, isTerminal } from './state-machine.js';

/** One job of a build: where it is recorded (`index`, 1-based, in plan order) and what it runs. */
export interface JobKey extends BuildKey {
  /** The job's id in its build (JobPlan.id): `node-22.shard-2`. */
  job: string;
}

/** Its lifecycle's `logPrefix` is `<build's prefix>jobs/<id>/`; a stuck job is swept with its build. */
export interface JobRecord extends BuildKey, RunLifecycle, Omit<JobPlan, 'node'> {
  /** Position in the plan, from 1: the record's key under its build. */
  index: number;
  /** The Node.js the matrix asked for (`22`); `resolvedNode` is the exact one the controller chose. */
  nodeSpec?: string;
  /** Resolved once per build, so every shard of a cell runs the same exact version. */
  resolvedNode?: RunnerJobNode;
  /** The build's `failFast`: the first failed job cancels the others. */
  failFast: boolean;
  /** The build config's `runsOn`, for each job's own placement (absent: Lambda). */
  runsOn?: RunsOn;
}

export function jobLabel(key: JobKey): string {
  return `${key.repo}#${key.number}/${key.job}`;
}

/** S3 prefix of a job's log files, under its build's: `logs/<owner>/<repo>/builds/<n>/jobs/<id>/`. */
export function jobLogPrefix(buildLogPrefix: string, id: string): string {
  if (!isJobId(id)) throw new RangeError(`not a job id: ${JSON.stringify(id)}`);
  return `${buildLogPrefix}jobs/${id}/`;
}

/** The job's id from a check run's external id (undefined when it is a build's or another's). */
export function jobOfExternalId(
  externalId: string,
): { repo: string; number: number; job: string } | undefined {
  const match = /^(.+)#([1-9][0-9]{0,8})\/(.+)$/.exec(externalId);
  if (!match || !isJobId(match[3])) return undefined;
  return { repo: match[1] ?? '', number: Number(match[2]), job: match[3] ?? '' };
}

/** Milliseconds a job ran (or has run, at `now`), undefined when it never started. */
export function jobDurationMs(
  job: Pick<JobRecord, 'startedAt' | 'endedAt'>,
  now = Date.now(),
): number | undefined {
  return job.startedAt === undefined ? undefined : (job.endedAt ?? now) - job.startedAt;
}

/**
 * The build's description from its finished jobs: `4 jobs passed`, or the worst job and how many
 * did not pass: `node-22 (2/4) failed: test (exit 1) (1 of 4 jobs failed)`.
 */
export function fanInDescription(
  jobs: readonly Pick<JobRecord, 'state' | 'title' | 'description'>[],
): string {
  const unfinished = jobs.filter((job) => !isTerminal(job.state)).length;
  if (unfinished > 0) return `${jobs.length - unfinished} of ${jobs.length} jobs finished`;
  const notPassed = jobs.filter((job) => job.state !== 'success');
  if (notPassed.length === 0) return jobs.length === 1 ? '1 job passed' : `${jobs.length} jobs passed`;
  const worst = FAN_IN_ORDER.map((state) => notPassed.find((job) => job.state === state)).find(Boolean);
  const first = worst ?? notPassed[0];
  const why = first?.description ? `: ${first.description}` : '';
  const count = jobs.length === 1 ? '' : ` (${notPassed.length} of ${jobs.length} jobs did not pass)`;
  return `${first?.title ?? 'a job'} ${STATE_LABELS[first?.state ?? 'error']}${why}${count}`;
}
