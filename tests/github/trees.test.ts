/**
 * readLockfileBlob against the GitHub stand-in serving real git repositories: the lockfile's git
 * blob sha comes from the commit's root tree, and agrees with what the runner computes from the
 * checkout (gitBlobSha) and with git itself.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { gitBlobSha } from '../../src/core/cache-key.js';
import { createGitHubClient } from '../../src/github/client.js';
import { GitHubApiError, GitHubNotFoundError } from '../../src/github/api-errors.js';
import { readLockfileBlob } from '../../src/github/trees.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import {
  commitFiles,
  createGitRepo,
  startGitHubServer,
  type GitHubStandIn,
  type GitRepo,
} from '../support/github-server.js';

const TOKEN = 'ghp_treesTest0000000000000000000000000000';
const LOCK = '{\n  "name": "widget",\n  "lockfileVersion": 3,\n  "packages": {}\n}\n';
let server: GitHubStandIn;
let repo: GitRepo;
let withLockfile: string;
let withShrinkwrap: string;
let withoutLockfile: string;
let nestedOnly: string;

beforeAll(async () => {
  repo = await createGitRepo({ 'package.json': '{}\n', 'package-lock.json': LOCK, 'src/a.js': 'a\n' });
  withLockfile = repo.sha;
  withShrinkwrap = await commitFiles(
    repo.dir,
    { 'npm-shrinkwrap.json': '{"shrinkwrap":true}\n' },
    'Shrinkwrap',
  );
  withoutLockfile = await commitFiles(repo.dir, { 'npm-shrinkwrap.json': null, 'package-lock.json': null });
  nestedOnly = await commitFiles(repo.dir, { 'packages/x/package-lock.json': LOCK }, 'Nested lockfile only');
  server = await startGitHubServer({ token: TOKEN });
  server.addRepository({ owner: 'acme', name: 'widget', gitDir: repo.dir, private: true });
});

afterAll(async () => {
  await server.close();
  await rm(repo.dir, { recursive: true, force: true });
});

const client = (token = TOKEN) =>
  createGitHubClient({ baseUrl: server.url, token, logger: createMemoryLogger() });

function gitBlobOf(sha: string, path: string): string {
  return execFileSync('git', ['-C', repo.dir, 'rev-parse', `${sha}:${path}`], { encoding: 'utf8' }).trim();
}

describe('readLockfileBlob', () => {
  it('gives package-lock.json’s blob sha, the same git and the runner compute', async () => {
    const found = await readLockfileBlob(client(), 'acme/widget', withLockfile);
    expect(found).toEqual({ path: 'package-lock.json', sha: gitBlobOf(withLockfile, 'package-lock.json') });
    expect(found?.sha).toBe(gitBlobSha(Buffer.from(LOCK)));
  });

  it('prefers npm-shrinkwrap.json, as npm does', async () => {
    expect(await readLockfileBlob(client(), 'acme/widget', withShrinkwrap)).toEqual({
      path: 'npm-shrinkwrap.json',
      sha: gitBlobOf(withShrinkwrap, 'npm-shrinkwrap.json'),
    });
  });

  it('answers undefined without a lockfile at the root (a nested one does not count)', async () => {
    expect(await readLockfileBlob(client(), 'acme/widget', withoutLockfile)).toBeUndefined();
    expect(await readLockfileBlob(client(), 'acme/widget', nestedOnly)).toBeUndefined();
    // A branch name is a tree-ish too.
    expect(await readLockfileBlob(client(), 'acme/widget', 'main')).toBeUndefined();
  });

  it('reads the checkout’s file the same way (gitBlobSha of the bytes on disk)', () => {
    execFileSync('git', ['-C', repo.dir, 'checkout', '--quiet', withLockfile]);
    try {
      const bytes = readFileSync(join(repo.dir, 'package-lock.json'));
      expect(gitBlobSha(bytes)).toBe(gitBlobOf(withLockfile, 'package-lock.json'));
    } finally {
      execFileSync('git', ['-C', repo.dir, 'checkout', '--quiet', 'main']);
    }
  });

  it('reports an unknown commit as GitHubNotFoundError and a refused token as GitHubApiError', async () => {
    const missing = await readLockfileBlob(client(), 'acme/widget', 'f'.repeat(40)).catch(
      (error: unknown) => error,
    );
    expect(missing).toBeInstanceOf(GitHubNotFoundError);
    expect(missing).toMatchObject({ status: 404, repo: 'acme/widget' });
    expect((missing as Error).message).toMatch(
      /file list of acme\/widget@fffffff.*check the repository name/,
    );
    const refused = await readLockfileBlob(client('ghp_wrong'), 'acme/widget', withLockfile).catch(
      (error: unknown) => error,
    );
    expect(refused).toBeInstanceOf(GitHubApiError);
    expect(refused).toMatchObject({ status: 401 });
    expect((refused as Error).message).toContain('set GITHUB_TOKEN');
  });

  it('is retried by the client through a server error', async () => {
    server.failNext({ mode: '500', path: /\/git\/trees\// });
    const since = server.requests.length;
    expect(await readLockfileBlob(client(), 'acme/widget', withLockfile)).toMatchObject({
      path: 'package-lock.json',
    });
    expect(server.requests.slice(since).map((request) => request.status)).toEqual([500, 200]);
  });
});
