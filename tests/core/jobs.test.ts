import {
  DEFAULT_MAX_JOBS,
  FAN_IN_ORDER,
  MAX_JOBS_LIMIT,
  MAX_MATRIX_COMBINATIONS,
  TooManyJobsError,
  fanIn,
  matrixCells,
  matrixEnvNames,
  planJobs,
} from '../../src/core/jobs.js';
import { isJobId } from '../../src/core/job-id.js';
import type { JobPlan, JobsConfig } from '../../src/core/jobs.js';
import { RepoConfigError, validateRepoConfig } from '../../src/core/repo-config.js';
import type { MatrixInput } from '../../src/core/repo-config.js';
import { BUILD_STATES, TERMINAL_STATES } from '../../src/core/state-machine.js';
import type { BuildState } from '../../src/core/state-machine.js';

/** A config as a repository would write it, checked by the schema first (as the builder does). */
function plan(config: object, maxJobs = DEFAULT_MAX_JOBS): JobPlan[] {
  return planJobs(validateRepoConfig(config, '.lambkin.json'), { maxJobs });
}

function cells(matrix: object): unknown[] {
  return matrixCells(validateRepoConfig({ matrix }, '.lambkin.json').matrix);
}

function thrown(run: () => unknown): unknown {
  try {
    run();
  } catch (error) {
    return error;
  }
  throw new Error('expected an error');
}

describe('one job by default', () => {
  it('a config without matrix and parallel is exactly one job, context lambkin, no variables', () => {
    expect(plan({})).toEqual([
      {
        id: 'default',
        name: 'default',
        context: 'lambkin',
        title: 'default',
        matrix: {},
        shard: null,
        env: {},
      },
    ]);
    expect(plan({ test: 'npm test', env: { A: 1 } })).toEqual(plan({}));
  });

  it('parallel: 1 is the same as no parallel', () => {
    expect(plan({ parallel: 1 })).toEqual(plan({}));
    expect(plan({ matrix: { node: ['22'] }, parallel: 1 }).map((job) => job.shard)).toEqual([null]);
  });

  it('uses the default limit when none is given', () => {
    expect(planJobs({})).toHaveLength(1);
    expect(() => planJobs({ parallel: DEFAULT_MAX_JOBS + 1 })).toThrow(TooManyJobsError);
  });
});

describe("GitHub Actions' matrix rules (the examples of its documentation)", () => {
  it('makes every combination, the first name varying slowest', () => {
    expect(cells({ os: ['ubuntu', 'windows'], node: [20, 22], DB: ['a'] })).toEqual([
      { os: 'ubuntu', node: 20, DB: 'a' },
      { os: 'ubuntu', node: 22, DB: 'a' },
      { os: 'windows', node: 20, DB: 'a' },
      { os: 'windows', node: 22, DB: 'a' },
    ]);
  });

  it('include extends matching combinations and adds the others (the fruit and animal example)', () => {
    expect(
      cells({
        fruit: ['apple', 'pear'],
        animal: ['cat', 'dog'],
        include: [
          { color: 'green' },
          { color: 'pink', animal: 'cat' },
          { fruit: 'apple', shape: 'circle' },
          { fruit: 'banana' },
          { fruit: 'banana', animal: 'cat' },
        ],
      }),
    ).toEqual([
      { fruit: 'apple', animal: 'cat', color: 'pink', shape: 'circle' },
      { fruit: 'apple', animal: 'dog', color: 'green', shape: 'circle' },
      { fruit: 'pear', animal: 'cat', color: 'pink' },
      { fruit: 'pear', animal: 'dog', color: 'green' },
      { fruit: 'banana' },
      { fruit: 'banana', animal: 'cat' },
    ]);
  });

  it('include expands one combination (the os, node and npm example)', () => {
    expect(
      cells({
        os: ['windows-latest', 'ubuntu-latest'],
        node: [14, 16],
        include: [{ os: 'windows-latest', node: 16, npm: 6 }],
      }),
    ).toEqual([
      { os: 'windows-latest', node: 14 },
      { os: 'windows-latest', node: 16, npm: 6 },
      { os: 'ubuntu-latest', node: 14 },
      { os: 'ubuntu-latest', node: 16 },
    ]);
  });

  it('include adds a combination whose list value matches nothing (the version 17 example)', () => {
    const result = cells({
      os: ['windows-latest', 'ubuntu-latest'],
      version: [10, 12, 14],
      include: [{ os: 'windows-latest', version: 17 }],
    });
    expect(result).toHaveLength(7);
    expect(result[6]).toEqual({ os: 'windows-latest', version: 17 });
  });

  it('a matrix of include entries only is those combinations (the site and datacenter example)', () => {
    expect(
      cells({
        include: [
          { site: 'production', datacenter: 'site-a' },
          { site: 'staging', datacenter: 'site-b' },
        ],
      }),
    ).toEqual([
      { site: 'production', datacenter: 'site-a' },
      { site: 'staging', datacenter: 'site-b' },
    ]);
  });

  it('exclude removes full and partial combinations (the os, version and environment example)', () => {
    const result = cells({
      os: ['macos-latest', 'windows-latest'],
      version: [12, 14, 16],
      environment: ['staging', 'production'],
      exclude: [
        { os: 'macos-latest', version: 12, environment: 'production' },
        { os: 'windows-latest', version: 16 },
      ],
    });
    expect(result).toHaveLength(9);
    expect(result).not.toContainEqual({ os: 'macos-latest', version: 12, environment: 'production' });
    expect(result).not.toContainEqual({ os: 'windows-latest', version: 16, environment: 'staging' });
    expect(result).not.toContainEqual({ os: 'windows-latest', version: 16, environment: 'production' });
    expect(result[0]).toEqual({ os: 'macos-latest', version: 12, environment: 'staging' });
  });

  it('exclude runs before include, so include can add an excluded combination back, last', () => {
    expect(
      cells({
        node: ['20', '22'],
        DB: ['a', 'b'],
        exclude: [{ DB: 'b' }],
        include: [{ node: '22', DB: 'b', slow: true }],
      }),
    ).toEqual([
      { node: '20', DB: 'a' },
      { node: '22', DB: 'a' },
      { node: '22', DB: 'b', slow: true },
    ]);
  });

  it('an include never overwrites a list value, but replaces what an earlier include added', () => {
    expect(
      cells({
        os: ['linux'],
        include: [{ label: 'first' }, { label: 'second' }, { os: 'linux', label: 'third' }],
      }),
    ).toEqual([{ os: 'linux', label: 'third' }]);
  });

  it('compares values as text: 20 and "20" match', () => {
    expect(
      cells({ node: [20, 22], exclude: [{ node: '22' }], include: [{ node: '20', extra: 'x' }] }),
    ).toEqual([{ node: 20, extra: 'x' }]);
  });
});

describe('job names, ids, contexts and titles', () => {
  it('names a combination by its name-value pairs, shards in the id and context only', () => {
    const jobs = plan({ matrix: { node: ['20', '22'], DB: ['a', 'b'] }, parallel: 2 });
    expect(jobs.map((job) => job.id)).toEqual([
      'node-20.db-a.shard-1',
      'node-20.db-a.shard-2',
      'node-20.db-b.shard-1',
      'node-20.db-b.shard-2',
      'node-22.db-a.shard-1',
      'node-22.db-a.shard-2',
      'node-22.db-b.shard-1',
      'node-22.db-b.shard-2',
    ]);
    expect(jobs[5]).toEqual({
      id: 'node-22.db-a.shard-2',
      name: 'node-22-db-a',
      context: 'lambkin/node-22-db-a (2/2)',
      title: 'node 22, DB a, shard 2/2',
      matrix: { node: '22', DB: 'a' },
      node: '22',
      shard: { index: 2, total: 2 },
      env: {
        LAMBKIN_MATRIX_NODE: '22',
        LAMBKIN_MATRIX_DB: 'a',
        DB: 'a',
        LAMBKIN_SHARD_INDEX: '2',
        LAMBKIN_SHARD_TOTAL: '2',
      },
    });
  });

  it("gives the issue's contexts: lambkin/node-22 and lambkin/node-22 (2/4)", () => {
    expect(plan({ matrix: { node: [22] } }).map((job) => job.context)).toEqual(['lambkin/node-22']);
    expect(plan({ matrix: { node: [22] }, parallel: 4 }).map((job) => job.context)).toEqual([
      'lambkin/node-22 (1/4)',
      'lambkin/node-22 (2/4)',
      'lambkin/node-22 (3/4)',
      'lambkin/node-22 (4/4)',
    ]);
  });

  it('shards a build without a matrix as lambkin (i/n)', () => {
    expect(
      plan({ parallel: 3 }).map(({ id, name, context, title }) => ({ id, name, context, title })),
    ).toEqual([
      { id: 'default.shard-1', name: 'default', context: 'lambkin (1/3)', title: 'shard 1/3' },
      { id: 'default.shard-2', name: 'default', context: 'lambkin (2/3)', title: 'shard 2/3' },
      { id: 'default.shard-3', name: 'default', context: 'lambkin (3/3)', title: 'shard 3/3' },
    ]);
  });

  it('turns other characters into dashes, keeps dots, and keeps values as written in matrix', () => {
    const [job] = plan({ matrix: { node: ['22.11.0'], os: ['Ubuntu 24.04 (arm)'], big: [true] } });
    expect(job?.name).toBe('node-22.11.0-os-ubuntu-24.04-arm-big-true');
    expect(job?.id).toBe('node-22.11.0.os-ubuntu-24.04-arm.big-true');
    expect(job?.title).toBe('node 22.11.0, os Ubuntu 24.04 (arm), big true');
    expect(job?.matrix).toEqual({ node: '22.11.0', os: 'Ubuntu 24.04 (arm)', big: true });
    expect(job?.node).toBe('22.11.0');
  });

  it('never makes an id with `..` (it names a folder): a run of dots is one, none at either end', () => {
    const ids = plan({ matrix: { dir: ['..', 'a..b', '.hidden.', '../../etc'] } }).map((job) => job.id);
    expect(ids).toEqual(['dir-2e-2e', 'dir-a.b', 'dir-hidden', 'dir-etc']);
    for (const id of ids) expect(isJobId(id)).toBe(true);
  });

  it('keeps ids and names unique, and refuses two combinations that would share one', () => {
    const ids = plan({ matrix: { a: ['x', 'y'], b: [1, 2] }, parallel: 2 }).map((job) => job.id);
    expect(new Set(ids).size).toBe(ids.length);

    const same = thrown(() => plan({ matrix: { os: ['Linux', 'linux'] } }));
    expect(same).toBeInstanceOf(RepoConfigError);
    expect((same as RepoConfigError).message).toBe(
      '"matrix" makes two jobs named "os-linux" ({"os":"Linux"} and {"os":"linux"})',
    );
    const twice = thrown(() => plan({ matrix: { include: [{ site: 'a' }, { site: 'a' }] } }));
    expect((twice as RepoConfigError).detail).toContain('remove the repeated include entry');
  });

  it('has no node when the combination has none', () => {
    expect(plan({ matrix: { DB: ['a'] } })[0]).not.toHaveProperty('node');
  });
});

describe('environment names', () => {
  it('exports each value as LAMBKIN_MATRIX_<NAME> and <NAME>, upper-cased; node only as LAMBKIN_MATRIX_NODE', () => {
    expect(matrixEnvNames('DB')).toEqual(['LAMBKIN_MATRIX_DB', 'DB']);
    expect(matrixEnvNames('region')).toEqual(['LAMBKIN_MATRIX_REGION', 'REGION']);
    expect(matrixEnvNames('node_env')).toEqual(['LAMBKIN_MATRIX_NODE_ENV', 'NODE_ENV']);
    expect(matrixEnvNames('node')).toEqual(['LAMBKIN_MATRIX_NODE']);
    const [job] = plan({ matrix: { node: [20], region: ['eu'], retries: [3], slow: [false] } });
    expect(job?.env).toEqual({
      LAMBKIN_MATRIX_NODE: '20',
      LAMBKIN_MATRIX_REGION: 'eu',
      REGION: 'eu',
      LAMBKIN_MATRIX_RETRIES: '3',
      RETRIES: '3',
      LAMBKIN_MATRIX_SLOW: 'false',
      SLOW: 'false',
    });
  });

  it('exports the values include added', () => {
    const jobs = plan({ matrix: { os: ['a', 'b'], include: [{ os: 'b', extra: 'yes' }] } });
    expect(jobs[1]?.env).toEqual({
      LAMBKIN_MATRIX_OS: 'b',
      OS: 'b',
      LAMBKIN_MATRIX_EXTRA: 'yes',
      EXTRA: 'yes',
    });
    expect(jobs[0]?.env).toEqual({ LAMBKIN_MATRIX_OS: 'a', OS: 'a' });
  });

  it('sets the shard variables only when sharded', () => {
    expect(plan({ parallel: 2 }).map((job) => job.env)).toEqual([
      { LAMBKIN_SHARD_INDEX: '1', LAMBKIN_SHARD_TOTAL: '2' },
      { LAMBKIN_SHARD_INDEX: '2', LAMBKIN_SHARD_TOTAL: '2' },
    ]);
    expect(plan({ matrix: { DB: ['a'] } })[0]?.env).not.toHaveProperty('LAMBKIN_SHARD_INDEX');
  });
});

describe('the jobs limit', () => {
  it('exports the default and the highest limit', () => {
    expect(DEFAULT_MAX_JOBS).toBe(16);
    expect(MAX_JOBS_LIMIT).toBe(256);
  });

  it('accepts exactly the limit, counting shards', () => {
    expect(plan({ matrix: { node: ['20', '22'] }, parallel: 8 })).toHaveLength(16);
    expect(plan({ parallel: 64 }, 64)).toHaveLength(64);
  });

  it('refuses one job more, naming the count, the limit and how to reduce it', () => {
    const error = thrown(() => plan({ matrix: { node: ['20', '22', '24'] }, parallel: 6 }));
    expect(error).toBeInstanceOf(TooManyJobsError);
    expect(error).toBeInstanceOf(RepoConfigError);
    const tooMany = error as TooManyJobsError;
    expect(tooMany.count).toBe(18);
    expect(tooMany.limit).toBe(16);
    expect(tooMany.code).toBe('REPO_CONFIG');
    expect(tooMany.message).toBe(
      '"matrix" makes 18 jobs (3 combinations × 6 shards), over the limit of 16 jobs per build',
    );
    expect(tooMany.detail).toContain(
      'remove values from the matrix lists, "exclude" combinations, or lower "parallel"',
    );
    expect(tooMany.detail).toContain('at most 256');
  });

  it('names parallel when there is no matrix, and counts combinations after exclude and include', () => {
    expect((thrown(() => plan({ parallel: 5 }, 4)) as TooManyJobsError).message).toBe(
      '"parallel" makes 5 jobs (5 shards), over the limit of 4 jobs per build',
    );
    const matrix = { a: [1, 2, 3], b: [1, 2], exclude: [{ a: 1 }], include: [{ a: 9 }] };
    expect(plan({ matrix }, 5)).toHaveLength(5);
    expect((thrown(() => plan({ matrix }, 4)) as TooManyJobsError).message).toBe(
      '"matrix" makes 5 jobs, over the limit of 4 jobs per build',
    );
  });

  it('refuses a huge matrix without expanding it', () => {
    const values = Array.from({ length: 256 }, (_, index) => index);
    const matrix: MatrixInput = { a: values, b: values, c: values };
    const error = thrown(() => planJobs({ matrix, parallel: 1 }, { maxJobs: 256 })) as TooManyJobsError;
    expect(error).toBeInstanceOf(TooManyJobsError);
    expect(error.count).toBe(256 ** 3);
    expect(error.count).toBeGreaterThan(MAX_MATRIX_COMBINATIONS);
    expect(error.message).toBe(
      '"matrix" makes 16777216 combinations before "exclude", over the limit of 256 jobs per build',
    );
  });

  it("refuses an operator's limit outside 1 to 256", () => {
    const config: JobsConfig = {};
    for (const maxJobs of [0, -1, 257, 1.5, Number.NaN]) {
      expect(() => planJobs(config, { maxJobs })).toThrow(
        `The jobs-per-build limit must be a whole number from 1 to 256 (got ${maxJobs})`,
      );
    }
  });
});

describe('fanIn', () => {
  it('is success only when every job succeeded', () => {
    expect(fanIn(['success'])).toBe('success');
    expect(fanIn(['success', 'success', 'success'])).toBe('success');
  });

  it('is the worst finished state: error > timed_out > failure > cancelled > success', () => {
    expect(FAN_IN_ORDER).toEqual(['error', 'timed_out', 'failure', 'cancelled', 'success']);
    expect(fanIn(['success', 'failure', 'success'])).toBe('failure');
    expect(fanIn(['failure', 'cancelled', 'cancelled'])).toBe('failure');
    expect(fanIn(['cancelled', 'success'])).toBe('cancelled');
    expect(fanIn(['failure', 'timed_out'])).toBe('timed_out');
    expect(fanIn(['timed_out', 'error', 'failure'])).toBe('error');
    // Every finished state is ranked, so the order decides between any two of them.
    expect([...FAN_IN_ORDER].sort()).toEqual([...TERMINAL_STATES].sort());
    for (const worse of FAN_IN_ORDER) {
      for (const better of FAN_IN_ORDER.slice(FAN_IN_ORDER.indexOf(worse))) {
        expect(fanIn([better, worse])).toBe(worse);
      }
    }
  });

  it('is running while any job is unfinished, queued while every job is queued', () => {
    expect(fanIn(['queued', 'queued'])).toBe('queued');
    expect(fanIn(['queued', 'running'])).toBe('running');
    expect(fanIn(['failure', 'queued'])).toBe('running');
    expect(fanIn(['success', 'running', 'error'])).toBe('running');
  });

  it('gives a known state for every input, and refuses an empty list', () => {
    for (const a of BUILD_STATES) {
      for (const b of BUILD_STATES) expect(BUILD_STATES).toContain(fanIn([a, b] as BuildState[]));
    }
    expect(() => fanIn([])).toThrow('fanIn needs the state of at least one job');
  });
});
