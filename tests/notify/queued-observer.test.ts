/**
 * The local stack's stand-in for the builds table's stream: changes are handed on after the write
 * returns, in order per repository, the ones that pile up behind a slow one handed on together, and
 * a failing observer never holds up later changes; changes that only queue builds are held a moment
 * so that a burst's page is written once.
 */
import type { BuildRecord } from '../../src/core/build.js';
import type { BuildState } from '../../src/core/state-machine.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import { QueuedObserver, type BuildObserver } from '../../src/notify/observer.js';
import { testBuildRequest } from '../support/builds.js';

function build(repo: string, number: number, state: BuildState): BuildRecord {
  return {
    ...testBuildRequest({ repo, sha: 'a'.repeat(40) }),
    number,
    state,
    queuedAt: 0,
    deadline: 0,
    logPrefix: `logs/${repo}/builds/${number}/`,
    events: [],
  };
}

/** Records each batch; holds each call until released, so changes pile up behind it. */
function slowObserver(options: { batches: boolean; failFirst?: boolean }) {
  const seen: string[][] = [];
  const releases: (() => void)[] = [];
  let calls = 0;
  const handle = async (builds: readonly BuildRecord[]): Promise<void> => {
    seen.push(builds.map((b) => `${b.repo}#${b.number}:${b.state}`));
    await new Promise<void>((resolve) => releases.push(resolve));
    if (options.failFirst && calls++ === 0) throw new Error('observer broke');
  };
  const observer: BuildObserver = options.batches
    ? { buildChanged: (b) => handle([b]), buildsChanged: handle }
    : { buildChanged: (b) => handle([b]) };
  const releaseAll = async (): Promise<void> => {
    for (let round = 0; round < 20; round++) {
      releases.splice(0).forEach((release) => release());
      await new Promise((resolve) => setImmediate(resolve));
    }
  };
  return { observer, seen, releaseAll };
}

describe('QueuedObserver', () => {
  it('returns at once and hands on changes in order, the ones that piled up as one batch', async () => {
    const { observer, seen, releaseAll } = slowObserver({ batches: true });
    const queued = new QueuedObserver(observer, createMemoryLogger(), { queuedHoldMs: 0 });
    await queued.buildChanged(build('o/a', 1, 'queued'));
    await queued.buildChanged(build('o/a', 1, 'running'));
    await queued.buildChanged(build('o/b', 7, 'queued'));
    await queued.buildChanged(build('o/a', 1, 'success'));
    expect(seen).toEqual([['o/a#1:queued'], ['o/b#7:queued']]); // one call per repository at a time
    let drained = false;
    const draining = queued.drained().then(() => (drained = true));
    await new Promise((resolve) => setImmediate(resolve));
    expect(drained).toBe(false);
    await releaseAll();
    await draining;
    expect(seen).toEqual([['o/a#1:queued'], ['o/b#7:queued'], ['o/a#1:running', 'o/a#1:success']]);
  });

  it('hands batched changes one by one to an observer without buildsChanged', async () => {
    const { observer, seen, releaseAll } = slowObserver({ batches: false });
    const queued = new QueuedObserver(observer, createMemoryLogger(), { queuedHoldMs: 0 });
    await queued.buildChanged(build('o/a', 1, 'queued'));
    await queued.buildChanged(build('o/a', 1, 'running'));
    await queued.buildChanged(build('o/a', 2, 'queued'));
    const draining = queued.drained();
    await releaseAll();
    await draining;
    expect(seen).toEqual([['o/a#1:queued'], ['o/a#1:running'], ['o/a#2:queued']]);
  });

  it('logs a change an observer failed on and goes on with the next', async () => {
    const { observer, seen, releaseAll } = slowObserver({ batches: true, failFirst: true });
    const logger = createMemoryLogger();
    const queued = new QueuedObserver(observer, logger, { queuedHoldMs: 0 });
    await queued.buildChanged(build('o/a', 1, 'queued'));
    await queued.buildChanged(build('o/a', 1, 'running'));
    const draining = queued.drained();
    await releaseAll();
    await draining;
    expect(seen).toEqual([['o/a#1:queued'], ['o/a#1:running']]);
    expect(logger.entries.map((entry) => [entry.level, entry.message, entry.fields.builds])).toEqual([
      ['warn', 'build changes were not handed on', ['o/a#1']],
    ]);
  });

  it('holds changes that only queue builds, so a burst is one batch; a start or an end goes at once', async () => {
    const seen: string[][] = [];
    const observer: BuildObserver = {
      buildChanged: async (b) => void seen.push([`${b.repo}#${b.number}:${b.state}`]),
      buildsChanged: async (builds) => void seen.push(builds.map((b) => `${b.repo}#${b.number}:${b.state}`)),
    };
    const queued = new QueuedObserver(observer, createMemoryLogger(), { queuedHoldMs: 200 });
    const started = Date.now();
    for (let number = 1; number <= 5; number++) {
      await queued.buildChanged(build('o/a', number, 'queued'));
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(seen).toEqual([]);
    await queued.drained();
    expect(Date.now() - started).toBeGreaterThanOrEqual(200);
    expect(seen).toEqual([['o/a#1:queued', 'o/a#2:queued', 'o/a#3:queued', 'o/a#4:queued', 'o/a#5:queued']]);

    await queued.buildChanged(build('o/a', 1, 'running'));
    await new Promise((resolve) => setImmediate(resolve));
    expect(seen.at(-1)).toEqual(['o/a#1:running']);
    await queued.drained();
  });
});
