/**
 * What `npm start`'s demo relies on: the example repository (examples/demo-app) served by the
 * GitHub stand-in from src/local, its archive reachable through the tarball redirect, commit
 * statuses reported to `onStatus`, and the example's own tests really passing.
 */
import { jest } from '@jest/globals';
import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { readRepoConfig } from '../../src/core/repo-config.js';
import { resolveArchiveUrl } from '../../src/github/archive.js';
import { createGitHubClient } from '../../src/github/client.js';
import { GitHubStatusReporter, INTAKE_DELIVERY } from '../../src/github/statuses.js';
import {
  createGitRepoFromDirectory,
  startGitHubServer,
  type CreatedStatus,
  type GitHubStandIn,
  type GitRepo,
} from '../../src/local/github/index.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import { readTarGz } from '../support/github-server.js';

const DEMO_APP_DIR = fileURLToPath(new URL('../../examples/demo-app/', import.meta.url));
const TOKEN = 'ghp_demoStandIn00000000000000000000000000';
const REPO = 'lambkin/demo-app';
const run = promisify(execFile);

let scratch: string;
let demoCopy: string;
let repo: GitRepo;
let server: GitHubStandIn;
const created: CreatedStatus[] = [];

/** Paths of the files under `dir`, relative and sorted, `node_modules` left out. */
async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => relative(dir, join(entry.parentPath, entry.name)))
    .filter((path) => !path.split('/').includes('node_modules'))
    .sort();
}

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'lambkin-demo-test-'));
  demoCopy = join(scratch, 'demo-app');
  await cp(DEMO_APP_DIR, demoCopy, { recursive: true });
  // A developer who tried the example locally has installed packages there: never committed.
  await mkdir(join(demoCopy, 'node_modules', 'leftover'), { recursive: true });
  await writeFile(join(demoCopy, 'node_modules', 'leftover', 'index.js'), 'export {};\n');
  repo = await createGitRepoFromDirectory(demoCopy, { message: 'The demo app', branch: 'main' });
  server = await startGitHubServer({ token: TOKEN, onStatus: (status) => created.push(status) });
  const [owner = '', name = ''] = REPO.split('/');
  server.addRepository({ owner, name, gitDir: repo.dir });
});

afterAll(async () => {
  await server?.close();
  if (repo) await rm(repo.dir, { recursive: true, force: true });
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

const client = () => createGitHubClient({ baseUrl: server.url, token: TOKEN, logger: createMemoryLogger() });

describe('the demo repository in the GitHub stand-in', () => {
  it('serves the demo app as committed from its folder (without node_modules) through the tarball redirect', async () => {
    const url = await resolveArchiveUrl(client(), REPO, repo.sha);
    expect(url.startsWith(server.url)).toBe(true);
    const response = await fetch(url); // as the runner downloads it: no credentials
    expect(response.status).toBe(200);
    const entries = await readTarGz(new Uint8Array(await response.arrayBuffer()));
    const prefix = `lambkin-demo-app-${repo.sha.slice(0, 7)}/`;
    const files = [...entries]
      .filter(([, entry]) => entry.type === 'File')
      .map(([path]) => path.slice(prefix.length))
      .sort();
    expect(files).toEqual(await listFiles(DEMO_APP_DIR));
    expect(files).toEqual(expect.arrayContaining(['.lambkin.json', 'package.json', 'package-lock.json']));
    expect(entries.get(`${prefix}package.json`)?.content.toString()).toContain('"name": "lambkin-demo-app"');
  });

  it('keeps executable files executable', async () => {
    const folder = join(scratch, 'scripts-only');
    await mkdir(folder);
    await writeFile(join(folder, 'hello.sh'), '#!/bin/sh\necho hello\n', { mode: 0o755 });
    await writeFile(join(folder, 'notes.txt'), 'plain\n');
    const scripts = await createGitRepoFromDirectory(folder);
    try {
      const { stdout } = await run('git', ['-C', scripts.dir, 'ls-tree', '-r', 'HEAD']);
      expect(stdout).toMatch(/^100755 blob \w+\thello\.sh$/m);
      expect(stdout).toMatch(/^100644 blob \w+\tnotes\.txt$/m);
    } finally {
      await rm(scripts.dir, { recursive: true, force: true });
    }
  });

  it('has a valid .lambkin.json with install, test and deploy commands', async () => {
    const { files, hasLockfile } = await readRepoConfig(DEMO_APP_DIR);
    expect(hasLockfile).toBe(true);
    expect(files).toEqual([
      {
        format: 'lambkin',
        source: '.lambkin.json',
        config: expect.objectContaining({ install: 'npm ci', test: 'npm test', deploy: expect.any(String) }),
      },
    ]);
  });
});

describe('onStatus', () => {
  it('tells of each status created through the status reporter', async () => {
    created.length = 0;
    await new GitHubStatusReporter(client()).setStatus(
      {
        repo: REPO,
        sha: repo.sha,
        state: 'pending',
        description: 'Build #1 running',
        targetUrl: 'http://127.0.0.1:1/logs/lambkin/demo-app/builds/1/',
      },
      INTAKE_DELIVERY,
    );
    expect(created).toEqual([
      {
        repo: REPO,
        sha: repo.sha,
        state: 'pending',
        description: 'Build #1 running',
        target_url: 'http://127.0.0.1:1/logs/lambkin/demo-app/builds/1/',
        context: 'lambkin',
      },
    ]);
    expect(server.statusesFor(REPO, repo.sha)[0]).toMatchObject({ state: 'pending', context: 'lambkin' });
  });

  it('keeps answering as GitHub when the listener throws', async () => {
    const errors = jest.spyOn(console, 'error').mockImplementation(() => undefined);
    const failing = await startGitHubServer({
      token: TOKEN,
      onStatus: () => {
        throw new Error('listener bug');
      },
    });
    try {
      failing.addRepository({ owner: 'lambkin', name: 'demo-app', gitDir: repo.dir });
      const octokit = createGitHubClient({
        baseUrl: failing.url,
        token: TOKEN,
        logger: createMemoryLogger(),
      });
      await new GitHubStatusReporter(octokit).setStatus(
        { repo: REPO, sha: repo.sha, state: 'success', description: 'Build #1 passed' },
        INTAKE_DELIVERY,
      );
      expect(failing.statusesFor(REPO, repo.sha)).toHaveLength(1);
      expect(failing.requests.map((request) => request.status)).toEqual([201]);
      expect(errors).toHaveBeenCalledTimes(1);
    } finally {
      errors.mockRestore();
      await failing.close();
    }
  });
});

describe('the demo app', () => {
  it('installs with npm ci and passes its own tests', async () => {
    const workDir = join(scratch, 'build');
    await cp(DEMO_APP_DIR, workDir, {
      recursive: true,
      filter: (source) => !relative(DEMO_APP_DIR, source).split('/').includes('node_modules'),
    });
    // Not this test run's npm settings (the outer `npm test` exports npm_* variables).
    const env = Object.fromEntries(
      Object.entries(process.env).filter(([name]) => !/^npm_/i.test(name) && name !== 'NODE_OPTIONS'),
    );
    Object.assign(env, {
      npm_config_cache: join(scratch, 'npm-cache'),
      npm_config_offline: 'true',
      npm_config_audit: 'false',
      npm_config_fund: 'false',
      npm_config_update_notifier: 'false',
    });
    await run('npm', ['ci'], { cwd: workDir, env });
    // TAP whatever the Node.js version's default reporter, so the counts can be read.
    const { stdout } = await run('npm', ['test', '--', '--test-reporter=tap'], { cwd: workDir, env });
    const count = (name: string): number => Number(new RegExp(`^# ${name} (\\d+)$`, 'm').exec(stdout)?.[1]);
    expect(count('fail')).toBe(0);
    expect(count('pass')).toBeGreaterThanOrEqual(10);
    expect(count('pass')).toBe(count('tests'));
  }, 60_000);
});
