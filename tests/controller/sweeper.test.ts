/**
 * The sweeper against the real storage servers and the GitHub API stand-in: overdue builds end in
 * the right state with the right commit status; fresh and finished builds, and builds that change
 * during the sweep, are left as they are; GitHub failing during the sweep is retried or reported.
 */
import { rm } from 'node:fs/promises';
import {
  assertSweepComplete,
  OVERDUE_ENDINGS,
  SweepIncompleteError,
  sweepOverdueBuilds,
  type SweeperDependencies,
} from '../../src/controller/sweeper.js';
import type { BuildRecord } from '../../src/core/build.js';
import { createGitHubClient } from '../../src/github/client.js';
import { GitHubStatusReporter } from '../../src/github/statuses.js';
import { createMemoryLogger, type MemoryLogger } from '../../src/core/logger.js';
import { DynamoBuildStore } from '../../src/store/builds.js';
import { pushRequest } from '../cli/helpers.js';
import {
  createGitRepo,
  startGitHubServer,
  type GitHubStandIn,
  type GitRepo,
} from '../support/github-server.js';
import { createTestStorage, type TestStorage } from '../support/storage.js';

const TOKEN = 'ghp_sweeperTest000000000000000000000000';
const PUBLIC_URL = 'https://ci.example.test';
const MINUTE = 60_000;

let github: GitHubStandIn;
let git: GitRepo;
let statuses: GitHubStatusReporter;
/** The repository of the running test: each has its own, so statuses never mix across tests. */
let repo = '';
let repoCount = 0;

beforeAll(async () => {
  git = await createGitRepo({ 'README.md': '# widget\n' });
  github = await startGitHubServer({ token: TOKEN });
  statuses = new GitHubStatusReporter(createGitHubClient({ baseUrl: github.url, token: TOKEN }));
});

afterAll(async () => {
  await github.close();
  await rm(git.dir, { recursive: true, force: true });
});

afterEach(() => github.clearFaults());

/** Each test gets its own tables: the sweep looks at every overdue build in the table. */
async function setup(): Promise<{
  storage: TestStorage;
  builds: DynamoBuildStore;
  logger: MemoryLogger;
  deps: SweeperDependencies;
}> {
  const storage = await createTestStorage();
  repoCount += 1;
  github.addRepository({ owner: 'acme', name: `widget-${repoCount}`, gitDir: git.dir });
  repo = `acme/widget-${repoCount}`;
  const builds = new DynamoBuildStore(storage.clients.documents, storage.buildsTable);
  const logger = createMemoryLogger();
  return { storage, builds, logger, deps: { builds, statuses, logger, publicUrl: PUBLIC_URL } };
}

async function queued(
  builds: DynamoBuildStore,
  deadlineIn: number,
  options: { pageUrl?: boolean } = {},
): Promise<BuildRecord> {
  const number = await builds.allocateNumber(repo);
  return builds.putQueuedBuild(pushRequest({ repo: repo, sha: git.sha, deliveryId: `d-${number}` }), number, {
    deadline: Date.now() + deadlineIn,
    ...(options.pageUrl ? { pageUrl: (n: number) => `https://links.example.test/${repo}/${n}` } : {}),
  });
}

async function running(builds: DynamoBuildStore, deadlineIn: number): Promise<BuildRecord> {
  const build = await queued(builds, MINUTE);
  return builds.transition(build, { from: 'queued', to: 'running', deadline: Date.now() + deadlineIn });
}

function statusesOf(number: number) {
  return github
    .statusesFor(repo, git.sha)
    .filter((status) => status.description?.startsWith(`Build #${number} `));
}

describe('sweepOverdueBuilds', () => {
  it('ends a stuck queued build as error and a stuck running one as timed_out, with their statuses', async () => {
    const { builds, deps } = await setup();
    const stuckQueued = await queued(builds, -5 * MINUTE, { pageUrl: true });
    const stuckRunning = await running(builds, -MINUTE);
    const freshQueued = await queued(builds, 10 * MINUTE);
    const freshRunning = await running(builds, 10 * MINUTE);
    const finished = await running(builds, -2 * MINUTE);
    await builds.transition(finished, { from: 'running', to: 'success', reason: 'passed' });

    const result = await sweepOverdueBuilds(deps);

    expect(result.found).toBe(2);
    expect(result.leftAlone).toEqual([]);
    expect(result.failed).toEqual([]);
    expect(result.deferred).toBe(0);
    // Oldest deadline first.
    expect(result.ended).toEqual([
      {
        repo: repo,
        number: stuckQueued.number,
        sha: git.sha,
        from: 'queued',
        to: 'error',
        reason: 'never started: the builder did not pick it up in time',
        url: `https://links.example.test/${repo}/${stuckQueued.number}`,
        statusSet: true,
      },
      {
        repo: repo,
        number: stuckRunning.number,
        sha: git.sha,
        from: 'running',
        to: 'timed_out',
        reason: 'stuck: the builder did not finish by its deadline',
        url: `${PUBLIC_URL}/builds/${repo}/${stuckRunning.number}`,
        statusSet: true,
      },
    ]);

    const endedQueued = await builds.getBuild(stuckQueued);
    expect(endedQueued).toMatchObject({ state: 'error', description: OVERDUE_ENDINGS.queued.reason });
    expect(endedQueued?.events.at(-1)).toMatchObject({
      from: 'queued',
      to: 'error',
      reason: OVERDUE_ENDINGS.queued.reason,
    });
    expect(endedQueued?.endedAt).toBeGreaterThanOrEqual(result.at);
    expect(await builds.getBuild(stuckRunning)).toMatchObject({
      state: 'timed_out',
      description: OVERDUE_ENDINGS.running.reason,
    });
    expect(statusesOf(stuckQueued.number)).toEqual([
      expect.objectContaining({
        state: 'error',
        context: 'lambkin',
        description: `Build #${stuckQueued.number} error: never started: the builder did not pick it up in time`,
        target_url: `https://links.example.test/${repo}/${stuckQueued.number}`,
      }),
    ]);
    expect(statusesOf(stuckRunning.number)).toEqual([
      expect.objectContaining({
        state: 'error',
        description: `Build #${stuckRunning.number} timed out: stuck: the builder did not finish by its deadline`,
        target_url: `${PUBLIC_URL}/builds/${repo}/${stuckRunning.number}`,
      }),
    ]);

    // Fresh and finished builds are untouched, and GitHub heard nothing about them.
    expect((await builds.getBuild(freshQueued))?.state).toBe('queued');
    expect((await builds.getBuild(freshRunning))?.state).toBe('running');
    expect((await builds.getBuild(finished))?.state).toBe('success');
    for (const build of [freshQueued, freshRunning, finished]) expect(statusesOf(build.number)).toEqual([]);

    // Ended builds leave the deadline index: a second sweep finds nothing.
    const again = await sweepOverdueBuilds(deps);
    expect(again).toMatchObject({ found: 0, ended: [] });
    expect(assertSweepComplete(result)).toBe(result);
  });

  it('leaves alone a build that finishes, and one that is claimed, between the query and its transition', async () => {
    const { builds, deps, logger } = await setup();
    const finishing = await running(builds, -MINUTE);
    const claimed = await queued(builds, -MINUTE);
    const stuck = await running(builds, -MINUTE / 2);
    const racing: SweeperDependencies = {
      ...deps,
      builds: {
        transition: (key, request) => builds.transition(key, request),
        overdueBuilds: async (now, options) => {
          const overdue = await builds.overdueBuilds(now, options);
          // The controller reports and the builder claims while the sweep is looking.
          await builds.transition(finishing, { from: 'running', to: 'success', reason: 'all steps passed' });
          await builds.transition(claimed, { from: 'queued', to: 'running', deadline: Date.now() + MINUTE });
          return overdue;
        },
      },
    };

    const result = await sweepOverdueBuilds(racing);

    expect(result.found).toBe(3);
    expect(result.ended.map((build) => build.number)).toEqual([stuck.number]);
    expect(result.leftAlone).toEqual(
      expect.arrayContaining([
        { repo: repo, number: finishing.number, state: 'success' },
        { repo: repo, number: claimed.number, state: 'running' },
      ]),
    );
    expect(result.leftAlone).toHaveLength(2);
    expect(await builds.getBuild(finishing)).toMatchObject({
      state: 'success',
      description: 'all steps passed',
    });
    expect((await builds.getBuild(claimed))?.state).toBe('running');
    expect((await builds.getBuild(stuck))?.state).toBe('timed_out');
    expect(statusesOf(finishing.number)).toEqual([]);
    expect(statusesOf(claimed.number)).toEqual([]);
    expect(statusesOf(stuck.number)).toHaveLength(1);
    expect(logger.entries.filter((entry) => entry.message.includes('changed meanwhile'))).toHaveLength(2);
  });

  it('retries the status when GitHub answers 500, within the budget', async () => {
    const { builds, deps } = await setup();
    const stuck = await queued(builds, -MINUTE);
    const statusPath = new RegExp(`/repos/${repo}/statuses/${git.sha}$`);
    github.failNext({ mode: '500', method: 'POST', path: statusPath, times: 2 });
    const before = github.requests.length;

    const result = await sweepOverdueBuilds(deps);

    expect(result.ended).toEqual([expect.objectContaining({ number: stuck.number, statusSet: true })]);
    const posts = github.requests.slice(before).filter((request) => request.method === 'POST');
    expect(posts.map((request) => request.status)).toEqual([500, 500, 201]);
    expect(statusesOf(stuck.number)).toEqual([expect.objectContaining({ state: 'error' })]);
    expect(github.pendingFaults()).toBe(0);
  });

  it('still ends the build when GitHub stays down, and says so', async () => {
    const { builds, deps, logger } = await setup();
    const stuck = await running(builds, -MINUTE);
    github.failNext({ mode: '500', method: 'POST', times: 10 });

    const result = await sweepOverdueBuilds({
      ...deps,
      statusDelivery: { deadlineMs: 3000, maxAttempts: 3, initialBackoffMs: 20 },
    });

    expect((await builds.getBuild(stuck))?.state).toBe('timed_out');
    const [swept] = result.ended;
    expect(swept).toMatchObject({ number: stuck.number, statusSet: false });
    expect(swept?.statusError).toMatch(/GitHub answered 500.*after 3 attempt/);
    expect(statusesOf(stuck.number)).toEqual([]);
    expect(logger.entries).toContainEqual(
      expect.objectContaining({
        level: 'error',
        message: 'could not set the commit status of a swept build',
        fields: expect.objectContaining({ build: `${repo}#${stuck.number}` }),
      }),
    );
    let thrown: unknown;
    try {
      assertSweepComplete(result);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(SweepIncompleteError);
    const message = (thrown as Error).message;
    expect(message).toContain(`ended ${repo}#${stuck.number} but could not set the commit status`);
    expect(message).not.toContain('\n');
  });

  it('reports a build it could not end (the store failed) and goes on with the others', async () => {
    const { storage, builds, deps, logger } = await setup();
    const broken = await queued(builds, -2 * MINUTE);
    const fine = await queued(builds, -MINUTE);
    // A table that does not exist: DynamoDB answers ResourceNotFoundException, a real store failure.
    const missingTable = new DynamoBuildStore(storage.clients.documents, `${storage.buildsTable}-gone`);
    const result = await sweepOverdueBuilds({
      ...deps,
      builds: {
        overdueBuilds: (now, options) => builds.overdueBuilds(now, options),
        transition: (key, request) =>
          (key.number === broken.number ? missingTable : builds).transition(key, request),
      },
    });
    expect(result.ended.map((build) => build.number)).toEqual([fine.number]);
    expect(result.failed).toEqual([expect.objectContaining({ repo: repo, number: broken.number })]);
    expect((await builds.getBuild(broken))?.state).toBe('queued');
    expect(logger.entries.some((entry) => entry.message === 'could not end an overdue build')).toBe(true);
    expect(() => assertSweepComplete(result)).toThrow(
      `could not end 1 overdue build (${repo}#${broken.number}: `,
    );
  });

  it('takes the oldest first up to the limit, uses the injected clock, and leaves the rest when out of time', async () => {
    const { builds, deps } = await setup();
    const older = await queued(builds, 2 * MINUTE);
    const newer = await queued(builds, 3 * MINUTE);
    // Nothing is overdue now.
    expect((await sweepOverdueBuilds(deps)).found).toBe(0);

    const later = { ...deps, clock: () => Date.now() + 5 * MINUTE };
    const none = await sweepOverdueBuilds(later, { budgetMs: 0 });
    expect(none).toMatchObject({ found: 2, ended: [], deferred: 2 });
    expect((await builds.getBuild(older))?.state).toBe('queued');

    const first = await sweepOverdueBuilds(later, { limit: 1 });
    expect(first.ended.map((build) => build.number)).toEqual([older.number]);
    expect((await builds.getBuild(newer))?.state).toBe('queued');
    const second = await sweepOverdueBuilds(later, { limit: 1 });
    expect(second.ended.map((build) => build.number)).toEqual([newer.number]);
  });
});
