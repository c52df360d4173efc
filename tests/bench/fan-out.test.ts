/**
 * The bench's fan-out figure (src/bench/fan-out.ts): the generated suite really splits by
 * `LAMBKIN_SHARD_INDEX/TOTAL` (its `.lambkin.json` test command run through `sh -c` for every
 * shard of 1, 2, 4 and 8, each test file in exactly one shard), its config asks for the shards,
 * and a build that did not run as asked (failed, fewer jobs, a job failed, a file run twice or not
 * at all) throws instead of giving figures. The figures themselves come from the records' times.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { BuildRecord } from '../../src/core/build.js';
import type { JobRecord } from '../../src/core/job-record.js';
import {
  FanOutRunError,
  fanOutFigures,
  shardedSuiteFiles,
  suiteTestName,
  type FanOutRun,
  type ShardedSuite,
} from '../../src/bench/fan-out.js';

const SUITE: ShardedSuite = { files: 8, perFileMs: 0 };
const names = Array.from({ length: SUITE.files }, (_, file) => suiteTestName(file));

function build(overrides: Partial<BuildRecord> = {}): BuildRecord {
  return {
    repo: 'bench/fan-out-2',
    number: 3,
    state: 'success',
    queuedAt: 1_000,
    startedAt: 1_100,
    endedAt: 9_000,
    deadline: 100_000,
    logPrefix: 'logs/bench/fan-out-2/builds/3/',
    events: [],
    ...overrides,
  } as BuildRecord;
}

function job(index: number, total: number, overrides: Partial<JobRecord> = {}): JobRecord {
  return {
    repo: 'bench/fan-out-2',
    number: 3,
    index,
    id: `default.shard-${index}`,
    name: 'default',
    context: `lambkin (${index}/${total})`,
    title: `shard ${index}/${total}`,
    matrix: {},
    shard: { index, total },
    env: {},
    failFast: false,
    state: 'success',
    queuedAt: 1_200,
    startedAt: 1_300 + index * 1_000,
    endedAt: 5_500 + index * 1_500,
    deadline: 100_000,
    logPrefix: `logs/bench/fan-out-2/builds/3/jobs/default.shard-${index}/`,
    events: [],
    ...overrides,
  } as JobRecord;
}

/** Logs naming each test in the job that `--test-shard` gives it (sorted files, every TOTAL-th). */
function shardLogs(jobs: readonly JobRecord[]): Map<string, string> {
  return new Map(
    jobs.map((record) => [
      record.id,
      names.filter((_, file) => file % jobs.length === (record.shard?.index ?? 0) - 1).join('\n'),
    ]),
  );
}

function twoShards(): FanOutRun {
  const jobs = [job(1, 2), job(2, 2)];
  return { shards: 2, build: build(), jobs, logs: shardLogs(jobs) };
}

describe('the fan-out suite', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'lambkin-bench-fan-out-'));
    for (const [path, text] of Object.entries(shardedSuiteFiles(SUITE, 4))) {
      mkdirSync(dirname(join(dir, path)), { recursive: true });
      writeFileSync(join(dir, path), text);
    }
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('asks for the shards, installs nothing and tests with the shard variables', () => {
    const config = JSON.parse(shardedSuiteFiles(SUITE, 4)['.lambkin.json'] ?? '') as Record<string, unknown>;
    expect(config).toEqual({ parallel: 4, install: [], test: expect.stringContaining('--test-shard=') });
    expect(config.test).toContain('${LAMBKIN_SHARD_INDEX:-1}/${LAMBKIN_SHARD_TOTAL:-1}');
  });

  /** The tests `sh -c <the config's test command>` ran as shard `index` of `total`. */
  async function ranTests(index: number, total: number): Promise<string[]> {
    const config = JSON.parse(shardedSuiteFiles(SUITE, total)['.lambkin.json'] ?? '') as { test: string };
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(
        'sh',
        ['-c', config.test],
        {
          cwd: dir,
          env: {
            PATH: process.env.PATH ?? '',
            LAMBKIN_SHARD_INDEX: String(index),
            LAMBKIN_SHARD_TOTAL: String(total),
          },
        },
        (error, out, err) => (error ? reject(new Error(`${error.message}\n${out}\n${err}`)) : resolve(out)),
      );
    });
    return names.filter((name) => stdout.includes(name));
  }

  it.each([1, 2, 4, 8])(
    'splits into %i shards that together run every file once',
    async (total) => {
      const ran = await Promise.all(Array.from({ length: total }, (_, shard) => ranTests(shard + 1, total)));
      expect(ran.flat().sort()).toEqual([...names].sort());
      expect(ran.every((tests) => tests.length === SUITE.files / total)).toBe(true);
    },
    60_000,
  );
});

describe('fanOutFigures', () => {
  it('answers a sharded build’s figures from its jobs’ records', () => {
    // The jobs ran 2 300–7 000 and 3 300–8 500; the build was queued at 1 000 and ended at 9 000.
    expect(fanOutFigures(twoShards(), SUITE)).toEqual({
      jobs: 2,
      queuedToLastRunningMs: 2_300,
      slowestJobMs: 5_200,
      wallMs: 8_000,
    });
  });

  it('takes a one-shard build, which records no jobs, as its own job', () => {
    const run: FanOutRun = {
      shards: 1,
      build: build(),
      jobs: [],
      logs: new Map([['build', names.join('\n')]]),
    };
    expect(fanOutFigures(run, SUITE)).toEqual({
      jobs: 1,
      queuedToLastRunningMs: 100,
      slowestJobMs: 7_900,
      wallMs: 8_000,
    });
  });

  it.each<[string, (run: FanOutRun) => FanOutRun, RegExp]>([
    ['a build not recorded', (run) => ({ ...run, build: undefined }), /not recorded/],
    [
      'a failed build',
      (run) => ({ ...run, build: build({ state: 'failure', description: '1 of 2 jobs failed' }) }),
      /ended failure: 1 of 2 jobs failed/,
    ],
    ['fewer jobs than shards', (run) => ({ ...run, shards: 4 }), /ran 2 jobs, not 4/],
    [
      'a job that did not pass',
      (run) => ({ ...run, jobs: [job(1, 2), job(2, 2, { state: 'error', description: 'boom' })] }),
      /default\.shard-2 error \(boom\)/,
    ],
    [
      'jobs that are not the shards asked for',
      (run) => ({ ...run, jobs: [job(1, 2), job(1, 2, { id: 'default.shard-1b' })] }),
      /not shards 1 to 2/,
    ],
    [
      'a job without a start',
      (run) => ({ ...run, jobs: [job(1, 2), job(2, 2, { startedAt: undefined })] }),
      /startedAt is missing/,
    ],
    [
      'a job that ran the whole suite',
      (run) => ({ ...run, logs: new Map([...run.logs, ['default.shard-2', names.join('\n')]]) }),
      /ran in 2 jobs \(default\.shard-1, default\.shard-2\)/,
    ],
    [
      'a test that ran nowhere',
      (run) => ({ ...run, logs: new Map([...run.logs, ['default.shard-2', '']]) }),
      /ran in no job/,
    ],
    [
      'a one-shard build that fanned out',
      (run) => ({ ...run, shards: 1, jobs: [job(1, 1)] }),
      /one shard should run as the build itself, not 1 jobs/,
    ],
  ])('throws for %s', (_, change, message) => {
    const attempt = () => fanOutFigures(change(twoShards()), SUITE);
    expect(attempt).toThrow(FanOutRunError);
    expect(attempt).toThrow(message);
  });
});
