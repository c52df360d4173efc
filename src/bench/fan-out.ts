/**
 * The bench's fan-out figure (issue 16): one suite of slow, CPU-light test files built as 1, 2, 4
 * and 8 shards (`parallel`), and what each build's records say about it. Pure: the suite's files,
 * the checks that a build really ran as many jobs as asked and each test file exactly once, and
 * the figures of one build. src/bench/main.ts drives the builds on the local stack.
 */
import type { BuildRecord } from '../core/build.js';
import type { JobRecord } from '../core/job-record.js';

export interface ShardedSuite {
  /** Test files, each waiting `perFileMs` (a timer: busy without using a core). */
  files: number;
  perFileMs: number;
}

/** The shard's part of `node --test`: sorted files, every TOTAL-th; without the variables, all. */
export const SHARDED_TEST_COMMAND =
  'node --test --test-concurrency=1 --test-shard=${LAMBKIN_SHARD_INDEX:-1}/${LAMBKIN_SHARD_TOTAL:-1}';

/** The name of a suite file's one test: each job's log must name each file's test exactly once overall. */
export function suiteTestName(file: number): string {
  return `fan-out file ${String(file + 1).padStart(2, '0')}`;
}

/**
 * A repository whose `node --test` suite is `files` files of one test each, waiting `perFileMs`,
 * split `parallel` ways. `--test-concurrency=1` runs a job's files one after another, as a suite
 * whose files keep a core busy would run on a runner of one core, so that on a machine of many
 * cores one job does not run the whole suite at once.
 */
export function shardedSuiteFiles(suite: ShardedSuite, parallel: number): Record<string, string> {
  const files: Record<string, string> = {
    '.lambkin.json': JSON.stringify({ parallel, install: [], test: SHARDED_TEST_COMMAND }, null, 2) + '\n',
    'package.json':
      JSON.stringify(
        { name: 'bench-fan-out', version: '1.0.0', private: true, scripts: { test: SHARDED_TEST_COMMAND } },
        null,
        2,
      ) + '\n',
  };
  for (let file = 0; file < suite.files; file++) {
    const name = suiteTestName(file);
    files[`test/file-${String(file + 1).padStart(2, '0')}.test.mjs`] =
      "import { test } from 'node:test';\n" +
      `test(${JSON.stringify(name)}, () => new Promise((resolve) => setTimeout(resolve, ${suite.perFileMs})));\n`;
  }
  return files;
}

/** A fan-out build that did not run as asked: the bench stops rather than print its numbers. */
export class FanOutRunError extends Error {
  constructor(label: string, problem: string) {
    super(`fan-out bench, ${label}: ${problem}`);
    this.name = 'FanOutRunError';
  }
}

/** One build's figures, in milliseconds. */
export interface FanOutBuildFigures {
  jobs: number;
  /** Build queued → the last job running (the build itself running, for one job). */
  queuedToLastRunningMs: number;
  /** The longest job, claim to end (the build's own claim to end, for one job). */
  slowestJobMs: number;
  /** Build queued → build ended. */
  wallMs: number;
}

export interface FanOutRun {
  /** The `parallel` asked for. */
  shards: number;
  build: BuildRecord | undefined;
  /** The build's job records (none for one shard: the build runs as one job, as it always has). */
  jobs: readonly JobRecord[];
  /** The final log of each job by its id, or of the build (key `build`) for one shard. */
  logs: ReadonlyMap<string, string>;
}

function defined(label: string, what: string, value: number | undefined): number {
  if (value === undefined || !Number.isFinite(value)) throw new FanOutRunError(label, `${what} is missing`);
  return value;
}

/**
 * Checks that the build passed as `shards` jobs (none recorded for 1), one per shard, all passing,
 * and that every test file ran in exactly one of them; answers its figures. Throws FanOutRunError.
 */
export function fanOutFigures(run: FanOutRun, suite: ShardedSuite): FanOutBuildFigures {
  const { build, jobs, shards } = run;
  const label = `${shards} shard${shards === 1 ? '' : 's'}${build ? ` (${build.repo}#${build.number})` : ''}`;
  if (!build) throw new FanOutRunError(label, 'the build was not recorded');
  if (build.state !== 'success') {
    throw new FanOutRunError(label, `the build ended ${build.state}: ${build.description ?? ''}`);
  }
  const queuedAt = defined(label, "the build's queuedAt", build.queuedAt);
  const buildStarted = defined(label, "the build's startedAt", build.startedAt);
  const buildEnded = defined(label, "the build's endedAt", build.endedAt);
  let spans: { id: string; startedAt: number; endedAt: number }[];
  if (shards === 1) {
    if (jobs.length !== 0) {
      throw new FanOutRunError(label, `one shard should run as the build itself, not ${jobs.length} jobs`);
    }
    spans = [{ id: 'build', startedAt: buildStarted, endedAt: buildEnded }];
  } else {
    if (jobs.length !== shards) {
      throw new FanOutRunError(label, `the build ran ${jobs.length} jobs, not ${shards}`);
    }
    const failed = jobs.filter((job) => job.state !== 'success');
    if (failed.length > 0) {
      throw new FanOutRunError(
        label,
        `jobs did not pass: ${failed.map((job) => `${job.id} ${job.state} (${job.description ?? ''})`).join(', ')}`,
      );
    }
    const indexes = jobs
      .map((job) => (job.shard?.total === shards ? job.shard.index : 0))
      .sort((a, b) => a - b);
    if (indexes.some((index, position) => index !== position + 1)) {
      throw new FanOutRunError(
        label,
        `the jobs are not shards 1 to ${shards} of ${shards}: ${JSON.stringify(jobs.map((job) => job.shard))}`,
      );
    }
    spans = jobs.map((job) => ({
      id: job.id,
      startedAt: defined(label, `job ${job.id}'s startedAt`, job.startedAt),
      endedAt: defined(label, `job ${job.id}'s endedAt`, job.endedAt),
    }));
  }
  // Every test file ran, in exactly one job: the shards split the suite and none ran all of it.
  for (let file = 0; file < suite.files; file++) {
    const name = suiteTestName(file);
    const ranIn = spans.filter((span) => (run.logs.get(span.id) ?? '').includes(name)).map((span) => span.id);
    if (ranIn.length !== 1) {
      throw new FanOutRunError(
        label,
        `test "${name}" ran in ${ranIn.length === 0 ? 'no job' : `${ranIn.length} jobs (${ranIn.join(', ')})`}, not exactly one`,
      );
    }
  }
  return {
    jobs: spans.length,
    queuedToLastRunningMs: Math.max(...spans.map((span) => span.startedAt)) - queuedAt,
    slowestJobMs: Math.max(...spans.map((span) => span.endedAt - span.startedAt)),
    wallMs: buildEnded - queuedAt,
  };
}
