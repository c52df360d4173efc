/**
 * Badges of the cloud log route (`/badges/<owner>/<repo>.svg`), on real DynamoDB-compatible
 * servers: what each build state says, the default branch and `?branch=`, the headers GitHub's
 * image proxy needs, and private repositories, which answer exactly like unknown ones without
 * their badge token.
 */
import { renderBadge } from '../../src/pages/badge.js';
import type { BuildRecord, BuildRequest } from '../../src/core/build.js';
import {
  BADGE_RECENT_BUILDS,
  handleBadgeRequest,
  handleLogRequest,
  type LogRouteDependencies,
} from '../../src/controller/log-route.js';
import type { BuildState } from '../../src/core/state-machine.js';
import { s3ObjectExists } from '../../src/handlers/logs.js';
import type { HttpResponse } from '../../src/core/http.js';
import { createMemoryLogger, type MemoryLogger } from '../../src/core/logger.js';
import { DynamoBuildStore } from '../../src/store/builds.js';
import { S3LogStore } from '../../src/store/logs.js';
import { testBuildRequest } from '../support/builds.js';
import { createTestStorage, storageBackends, uniqueName, type TestStorage } from '../support/storage.js';

const LOG_TOKEN = 'a-build-log-t0ken_abcdefghij';

/** The word the badge shows (its `<title>` is `build: <word>`). */
function wordOf(response: HttpResponse): string | undefined {
  return /<title>build: ([a-z ]+)<\/title>/.exec(response.body)?.[1];
}

describe.each(storageBackends())('badges on $name', (backend) => {
  let storage: TestStorage;
  let builds: DynamoBuildStore;
  let logger: MemoryLogger;
  let deps: LogRouteDependencies;
  let sha = 0;

  beforeAll(async () => {
    storage = await createTestStorage(backend);
    builds = new DynamoBuildStore(storage.clients.documents, storage.buildsTable);
    logger = createMemoryLogger();
    deps = {
      builds,
      logs: new S3LogStore(storage.clients.s3, storage.bucket),
      objectExists: s3ObjectExists(storage.clients.s3, storage.bucket),
      logger,
    };
  });

  /** A build of `repo` that went through the legal transitions to `state`. */
  async function build(
    repo: string,
    state: BuildState,
    overrides: Partial<BuildRequest> = {},
    logToken?: string,
  ): Promise<BuildRecord> {
    const number = await builds.allocateNumber(repo);
    sha++;
    const queued = await builds.putQueuedBuild(
      testBuildRequest({ repo, sha: sha.toString(16).padStart(40, '0'), ...overrides }),
      number,
      { deadline: Date.now() + 60_000, ...(logToken ? { logToken } : {}) },
    );
    if (state === 'queued') return queued;
    if (state === 'cancelled') return builds.transition(queued, { from: 'queued', to: state });
    const running = await builds.transition(queued, { from: 'queued', to: 'running' });
    if (state === 'running') return running;
    return builds.transition(running, { from: 'running', to: state });
  }

  function get(path: string, query = '', method = 'GET'): Promise<HttpResponse> {
    return handleLogRequest(deps, { method, path, query });
  }

  describe('a public repository', () => {
    const repo = 'octo/badged';

    beforeAll(async () => {
      await build(repo, 'success', { branch: 'main' });
      await build(repo, 'failure', { branch: 'feature/x', ref: 'refs/heads/feature/x' });
      await build(repo, 'error', { branch: 'broken' });
      await build(repo, 'timed_out', { branch: 'slow' });
      await build(repo, 'running', { branch: 'busy' });
      // Newer builds of main without a verdict: the badge keeps the last one that ended.
      await build(repo, 'cancelled', { branch: 'main' });
      await build(repo, 'running', { branch: 'main' });
      // A pull request of main's head branch is not main's build.
      await build(repo, 'failure', { event: 'pull_request', pr: 4, branch: 'main', baseBranch: 'main' });
    });

    it('answers 200 with an SVG that GitHub’s image proxy may keep for a minute at most', async () => {
      const response = await get(`/badges/${repo}.svg`);
      expect(response.statusCode).toBe(200);
      expect(response.headers['content-type']).toBe('image/svg+xml');
      const cacheControl = response.headers['cache-control'] ?? '';
      expect(cacheControl).toMatch(/(^|,\s*)no-cache(\s*,|$)/);
      const maxAge = /max-age=(\d+)/.exec(cacheControl);
      expect(Number(maxAge?.[1])).toBeLessThanOrEqual(60);
      expect(response.headers['x-content-type-options']).toBe('nosniff');
      // Opened on its own, the image can load nothing and run nothing.
      expect(response.headers['content-security-policy']).toMatch(/default-src 'none'/);
      expect(response.body).toBe(renderBadge('success'));
    });

    it.each([
      ['the default branch', 'passing', ''],
      ['a failing branch', 'failing', 'branch=feature%2Fx'],
      ['a branch whose build errored', 'error', 'branch=broken'],
      ['a branch whose build timed out', 'error', 'branch=slow'],
      ['a branch with only a running build', 'unknown', 'branch=busy'],
      ['a branch without builds', 'unknown', 'branch=nothing-here'],
      ['an empty branch name', 'unknown', 'branch='],
      ['a branch given twice', 'unknown', 'branch=main&branch=feature%2Fx'],
      ['a branch name too long to be one', 'unknown', `branch=${'b'.repeat(300)}`],
    ])('shows %s as "%s"', async (_what, word, query) => {
      const response = await get(`/badges/${repo}.svg`, query);
      expect(response.statusCode).toBe(200);
      expect(wordOf(response)).toBe(word);
    });

    it('answers HEAD with the same status and headers and no body, and refuses other methods', async () => {
      const [got, head] = [await get(`/badges/${repo}.svg`), await get(`/badges/${repo}.svg`, '', 'HEAD')];
      expect(head).toEqual({ ...got, body: '' });
      const post = await get(`/badges/${repo}.svg`, '', 'POST');
      expect(post.statusCode).toBe(405);
      expect(post.headers.allow).toBe('GET, HEAD');
    });

    it('keeps what the query holds out of the image', async () => {
      const response = await get(`/badges/${repo}.svg`, 'branch=%3Cscript%3Ealert(1)%3C%2Fscript%3E');
      expect(wordOf(response)).toBe('unknown');
      expect(response.body).not.toMatch(/script|alert/);
    });
  });

  it('follows the default branch the latest build recorded', async () => {
    const repo = 'octo/renamed';
    await build(repo, 'success', { branch: 'master', ref: 'refs/heads/master', defaultBranch: 'master' });
    await build(repo, 'failure', { branch: 'trunk', ref: 'refs/heads/trunk', defaultBranch: 'master' });
    expect(wordOf(await get(`/badges/${repo}.svg`))).toBe('passing');
    // The default branch became trunk: the next webhook says so.
    await build(repo, 'running', { branch: 'trunk', ref: 'refs/heads/trunk', defaultBranch: 'trunk' });
    expect(wordOf(await get(`/badges/${repo}.svg`))).toBe('failing');
    expect(wordOf(await get(`/badges/${repo}.svg`, 'branch=master'))).toBe('passing');
  });

  it('answers unknown for a repository without builds, or none that recorded its default branch', async () => {
    expect(wordOf(await get('/badges/nobody/nothing.svg'))).toBe('unknown');
    const repo = 'octo/no-default';
    await build(repo, 'success', { defaultBranch: undefined });
    expect(wordOf(await get(`/badges/${repo}.svg`))).toBe('unknown');
    expect(wordOf(await get(`/badges/${repo}.svg`, 'branch=main'))).toBe('passing');
  });

  it('answers 404 for paths that are not a badge', async () => {
    for (const path of [
      '/badges/octo/badged',
      '/badges/octo/badged.png',
      '/badges/octo/badged.svg/more',
      '/badges/../badged.svg',
      '/badges/octo/...svg',
      '/badges/octo.svg',
    ]) {
      const response = await get(path);
      expect({ path, status: response.statusCode }).toEqual({ path, status: 404 });
      expect(response.headers['content-type']).toMatch(/^text\/html/);
    }
  });

  describe('a private repository', () => {
    const repo = 'octo/hidden';
    let badgeToken: string;

    beforeAll(async () => {
      await build(repo, 'success', { privateRepo: true }, LOG_TOKEN);
      await build(repo, 'failure', { privateRepo: true, branch: 'dev', ref: 'refs/heads/dev' }, LOG_TOKEN);
      badgeToken = await builds.ensureBadgeToken(repo);
    });

    it('shows its state with its badge token, for any branch', async () => {
      const query = new URLSearchParams({ token: badgeToken }).toString();
      expect(wordOf(await get(`/badges/${repo}.svg`, query))).toBe('passing');
      expect(wordOf(await get(`/badges/${repo}.svg`, `branch=dev&${query}`))).toBe('failing');
    });

    it('answers exactly as for an unknown repository without it', async () => {
      const unknown = await get('/badges/nobody/nothing.svg');
      for (const query of [
        '',
        'token=wrong',
        `token=${badgeToken}&token=${badgeToken}`,
        `token=${badgeToken.slice(0, -1)}`,
        // A build's log token opens that build's log, not the repository's badge.
        `token=${LOG_TOKEN}`,
        'branch=dev',
      ]) {
        expect({ query, response: await get(`/badges/${repo}.svg`, query) }).toEqual({
          query,
          response: unknown,
        });
      }
    });

    it('stays private when its latest builds were public but the shown one was not', async () => {
      const other = 'octo/went-public';
      await build(other, 'success', { privateRepo: true }, LOG_TOKEN);
      for (let i = 0; i < BADGE_RECENT_BUILDS; i++) await build(other, 'queued', { branch: `q${i}` });
      expect(
        (await builds.listBuilds(other, { limit: BADGE_RECENT_BUILDS })).some((b) => b.privateRepo),
      ).toBe(false);
      expect(wordOf(await get(`/badges/${other}.svg`))).toBe('unknown');
      const token = await builds.ensureBadgeToken(other);
      expect(wordOf(await get(`/badges/${other}.svg`, `token=${token}`))).toBe('passing');
    });

    it('needs a badge token made for it: none opens a private repository without one', async () => {
      const other = 'octo/never-linked';
      await build(other, 'success', { privateRepo: true }, LOG_TOKEN);
      expect(await builds.badgeTokenOf(other)).toBeUndefined();
      expect(wordOf(await get(`/badges/${other}.svg`, 'token='))).toBe('unknown');
      expect(wordOf(await get(`/badges/${other}.svg`, `token=${badgeToken}`))).toBe('unknown');
    });

    it('stops showing it with a replaced token', async () => {
      const other = 'octo/rotated';
      await build(other, 'success', { privateRepo: true }, LOG_TOKEN);
      const old = await builds.ensureBadgeToken(other);
      const replaced = await builds.replaceBadgeToken(other);
      expect(replaced).not.toBe(old);
      expect(await builds.ensureBadgeToken(other)).toBe(replaced);
      expect(wordOf(await get(`/badges/${other}.svg`, `token=${old}`))).toBe('unknown');
      expect(wordOf(await get(`/badges/${other}.svg`, `token=${replaced}`))).toBe('passing');
    });

    it('is private when any of its latest builds is', async () => {
      const other = 'octo/one-private';
      await build(other, 'success', { privateRepo: false });
      await build(other, 'running', { branch: 'x', privateRepo: true }, LOG_TOKEN);
      for (let i = 0; i < BADGE_RECENT_BUILDS - 2; i++) await build(other, 'queued', { branch: `q${i}` });
      expect(wordOf(await get(`/badges/${other}.svg`))).toBe('unknown');
    });
  });

  describe('badge tokens', () => {
    it('are made once per repository and kept, also when asked for at the same moment', async () => {
      const repo = 'octo/tokens';
      expect(await builds.badgeTokenOf(repo)).toBeUndefined();
      const made = await Promise.all([1, 2, 3, 4].map(() => builds.ensureBadgeToken(repo)));
      expect(new Set(made).size).toBe(1);
      expect(made[0]).toMatch(/^[A-Za-z0-9_-]{24}$/);
      expect(await builds.ensureBadgeToken(repo)).toBe(made[0]);
      expect(await builds.badgeTokenOf(repo)).toBe(made[0]);
      expect(await builds.ensureBadgeToken('octo/other-tokens')).not.toBe(made[0]);
    });

    it('are no builds: listing, numbering and the badge ignore them', async () => {
      const repo = 'octo/only-token';
      await builds.ensureBadgeToken(repo);
      expect(await builds.listBuilds(repo)).toEqual([]);
      expect(await builds.allocateNumber(repo)).toBe(1);
      expect(wordOf(await get(`/badges/${repo}.svg`))).toBe('unknown');
    });
  });

  it('answers unknown, still an image, and logs the cause when the store fails', async () => {
    const broken = {
      builds: new DynamoBuildStore(storage.clients.documents, uniqueName('missing-table')),
      logger,
    };
    const response = await handleBadgeRequest(broken, {
      method: 'GET',
      path: '/badges/octo/app.svg',
      query: '',
    });
    expect(response.statusCode).toBe(200);
    expect(wordOf(response)).toBe('unknown');
    expect(logger.entries.at(-1)).toMatchObject({
      level: 'error',
      message: 'log route: could not look up the badge',
      fields: { repo: 'octo/app', error: { name: 'ResourceNotFoundException' } },
    });
  });
});
