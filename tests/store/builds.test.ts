import { GetCommand } from '@aws-sdk/lib-dynamodb';
import { DynamoBuildStore, isBuildItemKey } from '../../src/store/builds.js';
import type { BuildRequest } from '../../src/core/build.js';
import { TransitionRefusedError } from '../../src/core/errors.js';
import { createTestStorage, storageBackends, type TestStorage } from '../support/storage.js';

function request(overrides: Partial<BuildRequest> = {}): BuildRequest {
  return {
    repo: 'octo/app',
    event: 'push',
    ref: 'refs/heads/main',
    sha: 'a'.repeat(40),
    branch: 'main',
    fork: false,
    privateRepo: false,
    trusted: true,
    author: 'octocat',
    deliveryId: 'delivery-1',
    ...overrides,
  };
}

describe.each(storageBackends())('DynamoBuildStore on $name', (backend) => {
  let storage: TestStorage;
  let store: DynamoBuildStore;
  let now = 1_700_000_000_000;
  const clock = () => now;

  beforeAll(async () => {
    storage = await createTestStorage(backend);
    store = new DynamoBuildStore(storage.clients.documents, storage.buildsTable, clock);
  });

  async function queue(overrides: Partial<BuildRequest> = {}, deadline = now + 60_000) {
    const req = request(overrides);
    const number = await store.allocateNumber(req.repo);
    return store.putQueuedBuild(req, number, { deadline });
  }

  it('numbers builds per repo from 1, increasing', async () => {
    const first = await queue({ repo: 'numbers/one' });
    const second = await queue({ repo: 'numbers/one' });
    const other = await queue({ repo: 'numbers/two' });
    expect([first.number, second.number, other.number]).toEqual([1, 2, 1]);
    expect(first.state).toBe('queued');
    expect(first.logPrefix).toBe('logs/numbers/one/builds/1/');
  });

  // moto_server answers on threads with no lock around an update's read and write, so concurrent
  // ADDs can be lost there (seen: 38 numbers for 40); DynamoDB's updates are atomic, as dynalite's.
  (backend.name === 'moto' ? it.skip : it)('hands out unique numbers under concurrency', async () => {
    const numbers = await Promise.all(Array.from({ length: 40 }, () => store.allocateNumber('numbers/busy')));
    expect(new Set(numbers).size).toBe(40);
    expect(Math.max(...numbers)).toBe(40);
  });

  it('never overwrites a build', async () => {
    const build = await queue({ repo: 'overwrite/one' });
    await expect(
      store.putQueuedBuild(request({ repo: 'overwrite/one' }), build.number, { deadline: now }),
    ).rejects.toThrow(/ConditionalCheckFailed|conditional/i);
  });

  it('records each transition with its time, reason and event', async () => {
    const build = await queue({ repo: 'flow/one' });
    now += 1000;
    const running = await store.transition(build, { from: 'queued', to: 'running', deadline: now + 5000 });
    expect(running.state).toBe('running');
    expect(running.startedAt).toBe(now);
    expect(running.deadline).toBe(now + 5000);
    now += 2000;
    const done = await store.transition(build, {
      from: 'running',
      to: 'failure',
      reason: 'test failed (exit 1)',
      steps: [{ name: 'test', exitCode: 1, durationMs: 2000 }],
    });
    expect(done).toMatchObject({
      state: 'failure',
      endedAt: now,
      description: 'test failed (exit 1)',
      steps: [{ name: 'test', exitCode: 1, durationMs: 2000 }],
    });
    expect(done.events.map((event) => [event.from, event.to])).toEqual([
      [null, 'queued'],
      ['queued', 'running'],
      ['running', 'failure'],
    ]);
    expect(await store.getBuild(build)).toEqual(done);
  });

  it('refuses illegal transitions without writing', async () => {
    const build = await queue({ repo: 'illegal/one' });
    await expect(store.transition(build, { from: 'queued', to: 'success' })).rejects.toBeInstanceOf(
      TransitionRefusedError,
    );
    expect((await store.getBuild(build))?.state).toBe('queued');
  });

  it('lets exactly one of two racing claims win', async () => {
    const build = await queue({ repo: 'race/one' });
    const results = await Promise.allSettled(
      Array.from({ length: 5 }, () => store.transition(build, { from: 'queued', to: 'running' })),
    );
    expect(results.filter((result) => result.status === 'fulfilled')).toHaveLength(1);
    const refused = results.filter((result) => result.status === 'rejected');
    expect(refused).toHaveLength(4);
    for (const result of refused) {
      expect((result as PromiseRejectedResult).reason).toBeInstanceOf(TransitionRefusedError);
      expect(String((result as PromiseRejectedResult).reason.message)).toContain('it is running');
    }
  });

  it('never changes a terminal state', async () => {
    const build = await queue({ repo: 'terminal/one' });
    await store.transition(build, { from: ['queued', 'running'], to: 'error', reason: 'invoke failed' });
    await expect(store.transition(build, { from: ['queued', 'running'], to: 'timed_out' })).rejects.toThrow(
      /it is error/,
    );
    expect((await store.getBuild(build))?.description).toBe('invoke failed');
  });

  it('lists the latest builds of a repo, newest first, without the counter', async () => {
    for (let i = 0; i < 3; i++) await queue({ repo: 'list/one' });
    const builds = await store.listBuilds('list/one', { limit: 2 });
    expect(builds.map((build) => build.number)).toEqual([3, 2]);
    expect(builds[0]).not.toHaveProperty('repoSha');
  });

  it('follows query pages past 1 MB until the limit is reached', async () => {
    // Four builds of ~300 KB each: DynamoDB ends a query page at 1 MB, before the limit.
    for (let i = 0; i < 4; i++) await queue({ repo: 'list/large', commitTitle: 'x'.repeat(300 * 1024) });
    const builds = await store.listBuilds('list/large', { limit: 4 });
    expect(builds.map((build) => build.number)).toEqual([4, 3, 2, 1]);
  });

  it('finds the builds of a commit and the latest of a branch and a PR', async () => {
    const sha = 'c'.repeat(40);
    await queue({ repo: 'find/one', sha, branch: 'main' });
    await queue({ repo: 'find/one', sha: 'd'.repeat(40), branch: 'feature' });
    await queue({ repo: 'find/one', sha, branch: 'main' });
    await queue({ repo: 'find/one', event: 'pull_request', pr: 7, branch: 'feature', sha: 'e'.repeat(40) });
    expect((await store.buildsOfCommit('find/one', sha)).map((build) => build.number)).toEqual([3, 1]);
    expect((await store.latestBuildOf('find/one', { branch: 'main' }))?.number).toBe(3);
    expect((await store.latestBuildOf('find/one', { branch: 'feature' }))?.number).toBe(2);
    expect((await store.latestBuildOf('find/one', { pr: 7 }))?.number).toBe(4);
    expect(await store.latestBuildOf('find/one', { pr: 8 })).toBeUndefined();
  });

  it('finds unfinished builds past their deadline across repos, and forgets finished ones', async () => {
    const late = await queue({ repo: 'sweep/one' }, now - 10);
    const lateRunning = await queue({ repo: 'sweep/two' }, now - 5);
    await store.transition(lateRunning, { from: 'queued', to: 'running', deadline: now - 5 });
    const finished = await queue({ repo: 'sweep/three' }, now - 1);
    await store.transition(finished, { from: 'queued', to: 'cancelled', reason: 'superseded' });
    await queue({ repo: 'sweep/four' }, now + 60_000);
    const overdue = (await store.overdueBuilds(now)).filter((build) => build.repo.startsWith('sweep/'));
    expect(overdue.map((build) => `${build.repo}#${build.number}:${build.state}`)).toEqual([
      `sweep/one#${late.number}:queued`,
      `sweep/two#${lateRunning.number}:running`,
    ]);
  });

  it('guards deliveries: the first claim wins, later ones see its build', async () => {
    const build = { repo: 'guard/one', number: 1 };
    const first = await store.claimDelivery('d-1', build, now + 86_400_000);
    expect(first).toEqual({ claimed: true, record: { deliveryId: 'd-1', build } });
    const again = await store.claimDelivery('d-1', { repo: 'guard/one', number: 2 }, now);
    expect(again).toEqual({ claimed: false, record: { deliveryId: 'd-1', build } });
    await store.markDeliveryInvoked('d-1', now);
    expect(await store.getDelivery('d-1')).toEqual({ deliveryId: 'd-1', build, invokedAt: now });
    expect(await store.getDelivery('d-unknown')).toBeUndefined();
  });

  it('guards signed bodies per event: the first delivery to bring one is kept', async () => {
    const body = { event: 'push', bodySha256: 'a'.repeat(64) };
    const first = await store.claimBody(body, 'd-first', now + 86_400_000);
    expect(first).toEqual({ claimed: true, record: { ...body, deliveryId: 'd-first' } });
    const replay = await store.claimBody(body, 'd-replay', now + 86_400_000);
    expect(replay).toEqual({ claimed: false, record: { ...body, deliveryId: 'd-first' } });
    // The same bytes under another event are another body.
    const other = await store.claimBody({ ...body, event: 'pull_request' }, 'd-other', now + 86_400_000);
    expect(other.claimed).toBe(true);
    // Kept beside the builds, expiring like delivery guards, never taken for a build.
    const item = await storage.clients.documents.send(
      new GetCommand({
        TableName: storage.buildsTable,
        Key: { repo: `body#push#${body.bodySha256}`, number: 0 },
      }),
    );
    expect(item.Item).toEqual({
      repo: `body#push#${body.bodySha256}`,
      number: 0,
      deliveryId: 'd-first',
      expiresAt: Math.floor((now + 86_400_000) / 1000),
    });
    expect(isBuildItemKey({ repo: `body#push#${body.bodySha256}`, number: 1 })).toBe(false);
  });
});
