import { rm } from 'node:fs/promises';
import { createGitHubClient } from '../../src/github/client.js';
import { resolveArchiveUrl } from '../../src/github/archive.js';
import { GitHubApiError, GitHubNotFoundError } from '../../src/github/api-errors.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import {
  commitFiles,
  createGitRepo,
  readTarGz,
  startGitHubServer,
  type GitHubStandIn,
  type GitRepo,
} from '../support/github-server.js';

const TOKEN = 'ghp_archiveTest0000000000000000000000000';
let server: GitHubStandIn;
let publicRepo: GitRepo;
let privateRepo: GitRepo;
let firstSha: string;

beforeAll(async () => {
  publicRepo = await createGitRepo({ 'package.json': '{"name":"widget"}\n', 'test.js': 'v1\n' });
  firstSha = publicRepo.sha;
  publicRepo.sha = await commitFiles(publicRepo.dir, { 'test.js': 'v2\n' }, 'Second');
  privateRepo = await createGitRepo({ 'secret.txt': 'classified\n' });
  server = await startGitHubServer({ token: TOKEN });
  server.addRepository({ owner: 'acme', name: 'widget', gitDir: publicRepo.dir });
  server.addRepository({ owner: 'acme', name: 'vault', gitDir: privateRepo.dir, private: true });
});

afterAll(async () => {
  await server.close();
  await rm(publicRepo.dir, { recursive: true, force: true });
  await rm(privateRepo.dir, { recursive: true, force: true });
});

const client = (token?: string) =>
  createGitHubClient({ baseUrl: server.url, ...(token ? { token } : {}), logger: createMemoryLogger() });

/** Downloads as the runner does: a plain GET, no credentials. */
async function download(url: string): Promise<Map<string, string>> {
  const response = await fetch(url);
  expect(response.status).toBe(200);
  const entries = await readTarGz(new Uint8Array(await response.arrayBuffer()));
  return new Map(
    [...entries]
      .filter(([, entry]) => entry.type === 'File')
      .map(([path, entry]) => [path, entry.content.toString()]),
  );
}

describe('resolveArchiveUrl', () => {
  it('resolves the archive of each commit of a public repository, without following the redirect', async () => {
    const since = server.requests.length;
    const latestUrl = await resolveArchiveUrl(client(TOKEN), 'acme/widget', publicRepo.sha);
    const firstUrl = await resolveArchiveUrl(client(), 'acme/widget', firstSha);
    expect(
      server.requests.slice(since).map((request) => [request.method, request.path, request.status]),
    ).toEqual([
      ['GET', `/repos/acme/widget/tarball/${publicRepo.sha}`, 302],
      ['GET', `/repos/acme/widget/tarball/${firstSha}`, 302],
    ]);
    const latest = await download(latestUrl);
    expect(latest.get(`acme-widget-${publicRepo.sha.slice(0, 7)}/test.js`)).toBe('v2\n');
    expect(latest.get(`acme-widget-${publicRepo.sha.slice(0, 7)}/package.json`)).toBe('{"name":"widget"}\n');
    const first = await download(firstUrl);
    expect(first.get(`acme-widget-${firstSha.slice(0, 7)}/test.js`)).toBe('v1\n');
  });

  it('resolves a private repository’s archive with the token; the URL itself needs none', async () => {
    const since = server.requests.length;
    const url = await resolveArchiveUrl(client(TOKEN), 'acme/vault', privateRepo.sha);
    expect(new URL(url).searchParams.get('token')).toBeTruthy();
    const files = await download(url);
    expect([...files]).toEqual([[`acme-vault-${privateRepo.sha.slice(0, 7)}/secret.txt`, 'classified\n']]);
    const [resolve, fetched] = server.requests.slice(since);
    expect(resolve?.headers.authorization).toBe(`token ${TOKEN}`);
    expect(fetched?.headers.authorization).toBeUndefined();
  });

  it('reports a private repository seen without a token as not found, saying the token needs access', async () => {
    const error = await resolveArchiveUrl(client(), 'acme/vault', privateRepo.sha).catch(
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(GitHubNotFoundError);
    expect(error).toMatchObject({
      status: 404,
      repo: 'acme/vault',
      ref: privateRepo.sha,
      code: 'GITHUB_NOT_FOUND',
    });
    expect((error as Error).message).toContain(`acme/vault`);
    expect((error as Error).message).toContain('GITHUB_TOKEN has access');
  });

  it('reports unknown repositories and commits as not found', async () => {
    await expect(resolveArchiveUrl(client(TOKEN), 'acme/nope', publicRepo.sha)).rejects.toBeInstanceOf(
      GitHubNotFoundError,
    );
    const missing = 'a'.repeat(40);
    await expect(resolveArchiveUrl(client(TOKEN), 'acme/widget', missing)).rejects.toThrow(
      /GitHub has no archive of the commit aaaaaaa of acme\/widget/,
    );
  });

  it('reports other failures as GitHub API errors with the status', async () => {
    const error = await resolveArchiveUrl(client('ghp_wrong'), 'acme/widget', publicRepo.sha).catch(
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(GitHubApiError);
    expect(error).not.toBeInstanceOf(GitHubNotFoundError);
    expect(error).toMatchObject({ status: 401, code: 'GITHUB_API' });
    expect((error as Error).message).toContain('Bad credentials');
  });

  it('is retried by the client after a server error', async () => {
    server.failNext({ mode: '502', path: /\/tarball\// });
    const since = server.requests.length;
    const url = await resolveArchiveUrl(client(TOKEN), 'acme/widget', publicRepo.sha);
    expect(server.requests.slice(since).map((request) => request.status)).toEqual([502, 302]);
    expect(url).toContain(`/acme/widget/legacy.tar.gz/${publicRepo.sha}`);
  });
});
