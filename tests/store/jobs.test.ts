/**
 * The job store (src/store/jobs.ts) on the DynamoDB emulator, beside the builds it shares a table
 * with: records are written once (a retried fan-out keeps the first), every change is one
 * conditional update (of two at once, one wins), and job items never show up where builds are
 * looked for (the repository's list, the sweeper's overdue index, the unreported index).
 */
import type { BuildRecord } from '../../src/core/build.js';
import { TransitionRefusedError } from '../../src/core/errors.js';
import { planJobs } from '../../src/core/jobs.js';
import type { NewJob } from '../../src/core/ports.js';
import { DynamoBuildStore } from '../../src/store/builds.js';
import { DynamoJobStore } from '../../src/store/jobs.js';
import { testBuildRequest } from '../support/builds.js';
import { createTestStorage, type TestStorage } from '../support/storage.js';

let storage: TestStorage;
let builds: DynamoBuildStore;
let jobs: DynamoJobStore;

beforeAll(async () => {
  storage = await createTestStorage();
  builds = new DynamoBuildStore(storage.clients.documents, storage.buildsTable);
  jobs = new DynamoJobStore(storage.clients.documents, storage.buildsTable);
});

const plan = (parallel: number): NewJob[] =>
  planJobs({ matrix: { node: ['22'] }, parallel }, { maxJobs: 16 }).map((job) => ({
    plan: job,
    failFast: false,
  }));

function defined<T>(value: T | undefined): T {
  if (value === undefined) throw new Error('expected a value');
  return value;
}

async function runningBuild(repo: string): Promise<BuildRecord> {
  const number = await builds.allocateNumber(repo);
  const queued = await builds.putQueuedBuild(testBuildRequest({ repo, sha: 'd'.repeat(40) }), number, {
    deadline: Date.now() + 60_000,
  });
  return builds.transition(queued, { from: 'queued', to: 'running', deadline: Date.now() - 1000 });
}

describe('DynamoJobStore', () => {
  it('records a build’s jobs once: put again (at once or later) the first records stand', async () => {
    const build = await runningBuild('octo/put-twice');
    const [first, second] = await Promise.all([
      jobs.putJobs(build, plan(3), { deadline: 1000, at: 10 }),
      jobs.putJobs(build, plan(3), { deadline: 2000, at: 20 }),
    ]);
    expect(first).toEqual(second);
    expect(first.map((job) => [job.index, job.id, job.state])).toEqual([
      [1, 'node-22.shard-1', 'queued'],
      [2, 'node-22.shard-2', 'queued'],
      [3, 'node-22.shard-3', 'queued'],
    ]);
    await jobs.transitionJob(defined(first[0]), { from: 'queued', to: 'running' });
    const later = await jobs.putJobs(build, plan(3), { deadline: 3000, at: 30 });
    expect(later[0]?.state).toBe('running');
    expect(later[0]?.events).toHaveLength(2);
    expect(later.slice(1)).toEqual(first.slice(1));
    expect(later[0]?.logPrefix).toBe(`${build.logPrefix}jobs/node-22.shard-1/`);
  });

  it('lets one of two claims of a job through, and refuses a change from a state it is not in', async () => {
    const build = await runningBuild('octo/claims');
    const [job] = await jobs.putJobs(build, plan(2), { deadline: Date.now() + 60_000 });
    const claims = await Promise.allSettled([
      jobs.transitionJob(defined(job), { from: 'queued', to: 'running' }),
      jobs.transitionJob(defined(job), { from: 'queued', to: 'running' }),
    ]);
    expect(claims.filter((claim) => claim.status === 'fulfilled')).toHaveLength(1);
    const refused = claims.find((claim) => claim.status === 'rejected');
    expect(refused?.status === 'rejected' && refused.reason).toBeInstanceOf(TransitionRefusedError);
    expect(refused?.status === 'rejected' && (refused.reason as TransitionRefusedError).actual).toBe(
      'running',
    );
    // Ended: it never runs again.
    const ended = await jobs.transitionJob(defined(job), {
      from: 'running',
      to: 'success',
      reason: 'passed',
    });
    await expect(jobs.transitionJob(ended, { from: ['queued', 'running'], to: 'error' })).rejects.toThrow(
      TransitionRefusedError,
    );
    expect((await jobs.listJobs(build))[0]?.events.map((event) => event.to)).toEqual([
      'queued',
      'running',
      'success',
    ]);
  });

  it('keeps builds 1 and 10 apart, and a build of one job has none', async () => {
    const repo = 'octo/apart';
    const builds1to10: BuildRecord[] = [];
    for (let index = 0; index < 10; index++) builds1to10.push(await runningBuild(repo));
    const [one, ten] = [builds1to10[0], builds1to10[9]] as [BuildRecord, BuildRecord];
    expect([one.number, ten.number]).toEqual([1, 10]);
    await jobs.putJobs(one, plan(2), { deadline: 1 });
    await jobs.putJobs(ten, plan(3), { deadline: 1 });
    expect(await jobs.listJobs(one)).toHaveLength(2);
    expect(await jobs.listJobs(ten)).toHaveLength(3);
    expect(await jobs.listJobs(builds1to10[4] as BuildRecord)).toEqual([]);
  });

  it('never lists job items as builds: not in the repository, nor overdue, nor unreported', async () => {
    const repo = 'octo/not-builds';
    const build = await runningBuild(repo);
    const recorded = await jobs.putJobs(build, plan(3), { deadline: Date.now() - 60_000 });
    await jobs.transitionJob(defined(recorded[0]), { from: 'queued', to: 'running', deadline: 1 });
    await jobs.transitionJob(defined(recorded[1]), { from: 'queued', to: 'error', reason: 'x' });
    const far = Date.now() + 24 * 3600_000;
    const overdue = await builds.overdueBuilds(far, { limit: 1000 });
    expect(overdue.filter((each) => each.repo.startsWith('job#') || each.repo !== each.repo.trim())).toEqual(
      [],
    );
    expect(overdue.filter((each) => each.repo === repo).map((each) => each.number)).toEqual([build.number]);
    const unreported = await builds.unreportedBuilds(far, { limit: 1000 });
    expect(unreported.filter((each) => each.repo.startsWith('job#'))).toEqual([]);
    const listed = await builds.listBuilds(repo);
    expect(listed.map((each) => each.number)).toEqual([build.number]);
  });
});
