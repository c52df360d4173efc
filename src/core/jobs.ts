/**
 * A build's jobs: the pure plan that turns the config's `matrix` and `parallel` into the list of
 * jobs to run, and the fan-in of the jobs' states into the build's. No I/O.
 *
 * Expansion follows GitHub Actions' `strategy.matrix`:
 *   1. every combination of the lists, the first name varying slowest;
 *   2. less every combination an `exclude` entry matches (all of its values equal);
 *   3. then each `include` entry in order: it extends every combination of step 2 whose values agree
 *      with the entry's values for the lists' names (adding, or overwriting values an earlier include
 *      added, never a list's own value); if it extends none, it is a combination of its own, after the
 *      others (include-added combinations are never extended by later entries).
 * Values compare as text (`20` and `"20"` are the same). `parallel: N` (N ≥ 2) then runs every
 * combination as N shards, next to each other in the order.
 */
import { JOB_CONTEXT } from './job-id.js';
import { RepoConfigError } from './repo-config/config-errors.js';
import { MATRIX_ENV_PREFIX, matrixEnvNames, matrixLists, matrixValueText } from './repo-config/matrix.js';
import { MATRIX_NODE_KEY } from './repo-config/schema.js';
import type { MatrixCell, MatrixInput, MatrixValue } from './repo-config/schema.js';
import type { BuildState } from './state-machine.js';

/** Jobs per build when the operator sets no limit. */
export const DEFAULT_MAX_JOBS = 16;
/** The highest limit an operator may set. */
export const MAX_JOBS_LIMIT = 256;
/**
 * Combinations of the lists (before `exclude`) beyond which a matrix is refused without being
 * expanded: `exclude` never brings that many down to a usable build, and expanding it costs time.
 */
export const MAX_MATRIX_COMBINATIONS = 65_536;
/** The name of the one combination of a build without a matrix. */
export const DEFAULT_JOB_NAME = 'default';
/** The shard variables, set in every job of a build with `parallel` of 2 or more. */
export const SHARD_INDEX_ENV = 'LAMBKIN_SHARD_INDEX';
export const SHARD_TOTAL_ENV = 'LAMBKIN_SHARD_TOTAL';

/** What planning reads from the config: the top-level keys of a RepoConfigInput or ResolvedBuildConfig. */
export interface JobsConfig {
  matrix?: MatrixInput;
  parallel?: number;
}

/** The operator's limits. */
export interface JobLimits {
  /** Jobs per build, 1 to MAX_JOBS_LIMIT. */
  maxJobs: number;
}

export interface JobShard {
  /** 1..total. */
  index: number;
  total: number;
}

/** One job of a build. */
export interface JobPlan {
  /**
   * Stable key, unique in the build, for records, log prefixes and `--job`: the combination's
   * `name-value` pairs joined by `.`, then `.shard-N`: `node-22.db-a.shard-2`, `default`, `default.shard-2`.
   */
  id: string;
  /** The combination's name, without the shard: `node-22-db-a`, or `default` without a matrix. */
  name: string;
  /** Commit status context / check run name: `lambkin`, `lambkin/node-22-db-a`, `lambkin/node-22 (2/4)`, `lambkin (2/4)`. */
  context: string;
  /** For pages: `node 22, DB a, shard 2/4`, `shard 2/4`, or `default`. */
  title: string;
  /** The combination's values as the config wrote them, names in order (lists first, then include's). */
  matrix: MatrixCell;
  /** The Node.js version the job asks for (its `node` value: a major or an exact version); absent: the runner's. */
  node?: string;
  shard: JobShard | null;
  /** The job's own variables: the matrix variables and, when sharded, the shard variables. */
  env: Record<string, string>;
}

/**
 * A config that makes more jobs than the operator allows: refused before anything runs. A
 * RepoConfigError, so it is reported as any broken config is; `count` and `limit` say by how much.
 */
export class TooManyJobsError extends RepoConfigError {
  constructor(
    readonly count: number,
    readonly limit: number,
    detail: { key: 'matrix' | 'parallel'; combinations: number; shards: number; beforeExclude?: boolean },
  ) {
    const made = detail.beforeExclude
      ? `makes ${count} combinations before "exclude"`
      : detail.shards > 1
        ? `makes ${count} jobs (${detail.combinations === 1 ? '' : `${detail.combinations} combinations × `}${detail.shards} shards)`
        : `makes ${count} jobs`;
    super([{ path: detail.key, message: `${made}, over the limit of ${limit} jobs per build` }], {
      hint:
        'Make fewer jobs: remove values from the matrix lists, "exclude" combinations, or lower "parallel"; ' +
        `or ask whoever runs Lambkin to raise the jobs-per-build limit (at most ${MAX_JOBS_LIMIT}).`,
    });
  }
}

function sameValue(a: MatrixValue | undefined, b: MatrixValue): boolean {
  return a !== undefined && matrixValueText(a) === matrixValueText(b);
}

/** Whether every value of `partial` is the cell's own (for the given names only, when set). */
function agrees(cell: MatrixCell, partial: MatrixCell, names?: ReadonlySet<string>): boolean {
  return Object.entries(partial).every(
    ([name, value]) => (names !== undefined && !names.has(name)) || sameValue(cell[name], value),
  );
}

/** The combinations of a matrix, in job order (see the top of this file); `[{}]` without one. */
export function matrixCells(matrix: MatrixInput | undefined): MatrixCell[] {
  if (matrix === undefined) return [{}];
  const lists = matrixLists(matrix);
  const listNames = new Set(lists.map(([name]) => name));
  let cells: MatrixCell[] = [];
  if (lists.length > 0) {
    cells = [{}];
    for (const [name, values] of lists) {
      cells = cells.flatMap((cell) => values.map((value) => ({ ...cell, [name]: value })));
    }
  }
  const excludes = matrix.exclude ?? [];
  const kept = cells.filter((cell) => !excludes.some((entry) => agrees(cell, entry)));
  const added: MatrixCell[] = [];
  for (const entry of matrix.include ?? []) {
    const extended = kept.filter((cell) => agrees(cell, entry, listNames));
    if (extended.length === 0) {
      added.push({ ...entry });
      continue;
    }
    for (const cell of extended) {
      for (const [name, value] of Object.entries(entry)) {
        if (!listNames.has(name)) cell[name] = value;
      }
    }
  }
  return [...kept, ...added];
}

/** Lower case, runs of anything but letters, digits, `.` and `_` as `-`: `"Ubuntu 22"` → `ubuntu-22`. */
function slug(text: string): string {
  const cleaned = text
    .toLowerCase()
    .replace(/[^a-z0-9._]+/g, '-')
    // A run of dots is one (no `..` in an id, which names a folder), and none at either end.
    .replace(/\.{2,}/g, '.')
    .replace(/^[-.]+|[-.]+$/g, '');
  // Nothing left (a value of only punctuation): its characters' code points, so it stays distinct.
  return cleaned || [...text].map((char) => char.codePointAt(0)?.toString(16) ?? '').join('-');
}

function checkLimits(limits: JobLimits): void {
  const { maxJobs } = limits;
  if (!Number.isInteger(maxJobs) || maxJobs < 1 || maxJobs > MAX_JOBS_LIMIT) {
    throw new RangeError(
      `The jobs-per-build limit must be a whole number from 1 to ${MAX_JOBS_LIMIT} (got ${String(maxJobs)})`,
    );
  }
}

/**
 * The build's jobs, in order: combinations as `matrixCells` lists them, each one's shards next to
 * each other. No `parallel` (or 1) leaves the combinations unsharded, and no `matrix` is one
 * combination: a config with neither is exactly one job, context `lambkin`, empty `env`, as before.
 * Throws TooManyJobsError over `limits.maxJobs`, and a RepoConfigError when two jobs would get the
 * same name. Expects a config the schema has accepted (validateRepoConfig / resolveBuildConfig).
 */
export function planJobs(config: JobsConfig, limits: JobLimits = { maxJobs: DEFAULT_MAX_JOBS }): JobPlan[] {
  checkLimits(limits);
  const shards = config.parallel ?? 1;
  const key = config.matrix !== undefined ? 'matrix' : 'parallel';
  if (config.matrix !== undefined) {
    const combinations = matrixLists(config.matrix).reduce(
      (product, [, values]) => product * values.length,
      1,
    );
    if (combinations > MAX_MATRIX_COMBINATIONS) {
      throw new TooManyJobsError(combinations, limits.maxJobs, {
        key,
        combinations,
        shards,
        beforeExclude: true,
      });
    }
  }
  const cells = matrixCells(config.matrix);
  const count = cells.length * shards;
  if (count > limits.maxJobs) {
    throw new TooManyJobsError(count, limits.maxJobs, { key, combinations: cells.length, shards });
  }

  const jobs: JobPlan[] = [];
  /** Combinations by id and by name: both must be unique. */
  const byId = new Map<string, MatrixCell>();
  for (const cell of cells) {
    const entries = Object.entries(cell);
    const pairs = entries.map(([name, value]) => `${slug(name)}-${slug(matrixValueText(value))}`);
    const name = pairs.length > 0 ? pairs.join('-') : DEFAULT_JOB_NAME;
    const cellId = pairs.length > 0 ? pairs.join('.') : DEFAULT_JOB_NAME;
    const cellTitle = entries.map(([label, value]) => `${label} ${matrixValueText(value)}`).join(', ');
    const cellEnv: Record<string, string> = {};
    for (const [label, value] of entries) {
      for (const variable of matrixEnvNames(label)) cellEnv[variable] = matrixValueText(value);
    }
    const node = cell[MATRIX_NODE_KEY];
    const earlier = byId.get(cellId) ?? byId.get(name);
    if (earlier !== undefined) {
      throw new RepoConfigError(
        [
          {
            path: 'matrix',
            message: `makes two jobs named "${name}" (${JSON.stringify(earlier)} and ${JSON.stringify(cell)})`,
          },
        ],
        {
          hint: 'Make every combination distinct: remove the repeated include entry, or change values that differ only in case or punctuation.',
        },
      );
    }
    byId.set(cellId, cell);
    byId.set(name, cell);
    const sharded = shards > 1;
    for (let index = 1; index <= shards; index++) {
      const shard = sharded ? { index, total: shards } : null;
      const suffix = shard ? ` (${index}/${shards})` : '';
      jobs.push({
        id: shard ? `${cellId}.shard-${index}` : cellId,
        name,
        context: (pairs.length > 0 ? `${JOB_CONTEXT}/${name}` : JOB_CONTEXT) + suffix,
        title:
          [cellTitle, shard ? `shard ${index}/${shards}` : ''].filter(Boolean).join(', ') || DEFAULT_JOB_NAME,
        matrix: { ...cell },
        ...(node !== undefined ? { node: matrixValueText(node) } : {}),
        shard,
        env: {
          ...cellEnv,
          ...(shard ? { [SHARD_INDEX_ENV]: String(index), [SHARD_TOTAL_ENV]: String(shards) } : {}),
        },
      });
    }
  }
  return jobs;
}

export { JOB_CONTEXT, isJobId } from './job-id.js';

/** Prefix of every matrix variable (`LAMBKIN_MATRIX_NODE`); the rule is in src/core/repo-config/matrix.ts. */
export { MATRIX_ENV_PREFIX, matrixEnvNames };

/**
 * Finished states from worst to best. `error` first: Lambkin or the infrastructure failed, so the
 * code was not judged at all and someone must look. `timed_out`: the job never finished, its result
 * is unknown and the time limit needs attention. `failure`: the code was judged and failed.
 * `cancelled` ranks below those because cancellations are usually a consequence (failFast stops the
 * other jobs after a failure, which must then name the build), and `success` is best.
 */
export const FAN_IN_ORDER = ['error', 'timed_out', 'failure', 'cancelled', 'success'] as const;

/**
 * The build's state from its jobs' states. While any job is unfinished the build is `running`
 * (`queued` when every job is still queued). Once all are finished: `success` only if every job
 * succeeded, else the worst job's state in FAN_IN_ORDER. Throws for an empty list: a build has at
 * least one job.
 */
export function fanIn(states: readonly BuildState[]): BuildState {
  if (states.length === 0) throw new RangeError('fanIn needs the state of at least one job');
  if (states.every((state) => state === 'queued')) return 'queued';
  if (states.some((state) => state === 'queued' || state === 'running')) return 'running';
  for (const state of FAN_IN_ORDER) {
    if (states.includes(state)) return state;
  }
  return 'success'; // unreachable: every finished state is in FAN_IN_ORDER
}
