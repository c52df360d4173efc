import { rm } from 'node:fs/promises';
import { createGitHubClient } from '../../src/github/client.js';
import { readRepoFile } from '../../src/github/contents.js';
import { GitHubApiError, GitHubNotFoundError } from '../../src/github/api-errors.js';
import { createMemoryLogger, type MemoryLogger } from '../../src/core/logger.js';
import {
  commitFiles,
  createGitRepo,
  startGitHubServer,
  type GitHubStandIn,
  type GitRepo,
} from '../support/github-server.js';

const TOKEN = 'ghp_contentsTest000000000000000000000000';
const CONFIG = '{ "build": ["npm ci", "npm test"], "note": "déjà vu 🐑" }\n';
let server: GitHubStandIn;
let repo: GitRepo;
let firstSha: string;
let logger: MemoryLogger;

beforeAll(async () => {
  repo = await createGitRepo({ '.lambkin.json': CONFIG, 'src/index.js': 'x\n' });
  firstSha = repo.sha;
  repo.sha = await commitFiles(
    repo.dir,
    { '.lambkin.json': null, 'big.txt': 'lamb '.repeat(300_000) },
    'Second',
  );
  server = await startGitHubServer({ token: TOKEN });
  server.addRepository({ owner: 'acme', name: 'widget', gitDir: repo.dir, private: true });
});

afterAll(async () => {
  await server.close();
  await rm(repo.dir, { recursive: true, force: true });
});

function client(token = TOKEN) {
  logger = createMemoryLogger();
  return createGitHubClient({ baseUrl: server.url, token, logger });
}

describe('readRepoFile', () => {
  it('reads a file’s text at a commit', async () => {
    expect(await readRepoFile(client(), 'acme/widget', '.lambkin.json', firstSha)).toBe(CONFIG);
    expect(await readRepoFile(client(), 'acme/widget', 'src/index.js', repo.sha)).toBe('x\n');
  });

  it('answers undefined for a file the commit does not have', async () => {
    expect(await readRepoFile(client(), 'acme/widget', '.lambkin.json', repo.sha)).toBeUndefined();
    expect(await readRepoFile(client(), 'acme/widget', 'no/such/file', firstSha)).toBeUndefined();
  });

  it('reads files over 1 MB, which GitHub sends without inline content', async () => {
    const since = server.requests.length;
    const text = await readRepoFile(client(), 'acme/widget', 'big.txt', repo.sha);
    expect(text).toHaveLength(1_500_000);
    expect(text?.startsWith('lamb lamb ')).toBe(true);
    const accepts = server.requests.slice(since).map((request) => request.headers.accept);
    expect(accepts).toEqual(['application/vnd.github.v3+json', 'application/vnd.github.v3.raw']);
  });

  it('refuses a directory with a typed error', async () => {
    const error = await readRepoFile(client(), 'acme/widget', 'src', repo.sha).catch(
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(GitHubApiError);
    expect((error as Error).message).toMatch(/src in acme\/widget@[0-9a-f]{7} is a directory, not a file/);
  });

  it('treats an unknown commit as an error, not as an absent file', async () => {
    const error = await readRepoFile(client(), 'acme/widget', '.lambkin.json', 'no-such-branch').catch(
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(GitHubNotFoundError);
    expect(error).toMatchObject({ status: 404, ref: 'no-such-branch' });
    expect((error as Error).message).toContain('No commit found for the ref no-such-branch');
  });

  it('reports a refused token as a typed error that says what to do', async () => {
    const error = await readRepoFile(client('ghp_wrong'), 'acme/widget', '.lambkin.json', firstSha).catch(
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(GitHubApiError);
    expect(error).toMatchObject({ status: 401, repo: 'acme/widget' });
    expect((error as Error).message).toContain('set GITHUB_TOKEN');
  });

  it('is retried by the client through a server error and a short rate limit', async () => {
    server.failNext({ mode: '500', path: /\/contents\// });
    server.failNext({ mode: 'rate-limit', path: /\/contents\//, resetInSeconds: 1 });
    const since = server.requests.length;
    expect(await readRepoFile(client(), 'acme/widget', 'src/index.js', repo.sha)).toBe('x\n');
    expect(server.requests.slice(since).map((request) => request.status)).toEqual([500, 403, 200]);
    expect(logger.entries.map((entry) => entry.message)).toEqual([
      expect.stringMatching(/^GitHub rate limit hit for GET .*: retrying in \d+ s$/),
    ]);
  });
});
