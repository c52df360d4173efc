/**
 * `lambkin sweep` against the real storage servers (through a local stack file) and the GitHub API
 * stand-in.
 */
import { rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import type { SweepResult } from '../../src/controller/sweeper.js';
import type { BuildRecord } from '../../src/core/build.js';
import { DynamoBuildStore } from '../../src/store/builds.js';
import {
  createGitRepo,
  startGitHubServer,
  type GitHubStandIn,
  type GitRepo,
} from '../support/github-server.js';
import { createTestStorage } from '../support/storage.js';
import { expectOneLine, pushRequest, runInProcess, writeLocalStack, type CliRun } from './helpers.js';

const TOKEN = 'ghp_cliSweep00000000000000000000000000';
const REPO = 'acme/widget';
const PUBLIC_URL = 'http://127.0.0.1:3999';
const MINUTE = 60_000;

let github: GitHubStandIn;
let git: GitRepo;
const dataDirs: string[] = [];

beforeAll(async () => {
  git = await createGitRepo({ 'README.md': '# widget\n' });
  github = await startGitHubServer({ token: TOKEN });
  github.addRepository({ owner: 'acme', name: 'widget', gitDir: git.dir });
});

afterAll(async () => {
  await github.close();
  await rm(git.dir, { recursive: true, force: true });
  for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true });
});

afterEach(() => github.clearFaults());

/** A stack of its own for each test: the sweep ends every overdue build in the table. */
async function stack(): Promise<{
  builds: DynamoBuildStore;
  lambkin: (args: string[], token?: boolean) => Promise<CliRun>;
}> {
  const storage = await createTestStorage();
  const dataDir = writeLocalStack(storage, { publicUrl: PUBLIC_URL });
  dataDirs.push(dataDir);
  return {
    builds: new DynamoBuildStore(storage.clients.documents, storage.buildsTable),
    lambkin: (args, token = true) =>
      runInProcess([...args, `--local=${dataDir}`], {
        env: token ? { GITHUB_TOKEN: TOKEN, GITHUB_API_URL: github.url } : { GITHUB_API_URL: github.url },
      }),
  };
}

async function queued(builds: DynamoBuildStore, deadlineIn: number): Promise<BuildRecord> {
  const number = await builds.allocateNumber(REPO);
  return builds.putQueuedBuild(pushRequest({ repo: REPO, sha: git.sha, deliveryId: `d-${number}` }), number, {
    deadline: Date.now() + deadlineIn,
    pageUrl: (n) => `${PUBLIC_URL}/builds/acme/widget/${n}`,
  });
}

async function running(builds: DynamoBuildStore, deadlineIn: number): Promise<BuildRecord> {
  const build = await queued(builds, MINUTE);
  return builds.transition(build, { from: 'queued', to: 'running', deadline: Date.now() + deadlineIn });
}

describe('lambkin sweep', () => {
  it('ends the overdue builds, sets their statuses, leaves the others, and finds nothing the second time', async () => {
    const { builds, lambkin } = await stack();
    const stuckQueued = await queued(builds, -2 * MINUTE);
    const stuckRunning = await running(builds, -MINUTE);
    const fresh = await running(builds, 10 * MINUTE);
    const statusesBefore = github.statusesFor(REPO, git.sha).length;

    const result = await lambkin(['sweep']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(
      `ended ${REPO}#${stuckQueued.number}: queued → error (never started: the builder did not pick it up in time)\n` +
        `ended ${REPO}#${stuckRunning.number}: running → timed_out (stuck: the builder did not finish by its deadline)\n` +
        '2 overdue: 2 ended\n',
    );
    expect((await builds.getBuild(stuckQueued))?.state).toBe('error');
    expect((await builds.getBuild(stuckRunning))?.state).toBe('timed_out');
    expect((await builds.getBuild(fresh))?.state).toBe('running');
    const all = github.statusesFor(REPO, git.sha); // newest first
    const added = all.slice(0, all.length - statusesBefore);
    expect(added.map((status) => [status.state, status.description, status.target_url])).toEqual([
      [
        'error',
        `Build #${stuckRunning.number} timed out: stuck: the builder did not finish by its deadline`,
        `${PUBLIC_URL}/builds/acme/widget/${stuckRunning.number}`,
      ],
      [
        'error',
        `Build #${stuckQueued.number} error: never started: the builder did not pick it up in time`,
        `${PUBLIC_URL}/builds/acme/widget/${stuckQueued.number}`,
      ],
    ]);

    const again = await lambkin(['sweep']);
    expect(again).toEqual({ code: 0, stdout: 'no overdue builds\n', stderr: '' });
  });

  it('prints what it did as JSON', async () => {
    const { builds, lambkin } = await stack();
    const stuck = await queued(builds, -MINUTE);
    const result = await lambkin(['sweep', '--json']);
    expect(result.code).toBe(0);
    const parsed = JSON.parse(result.stdout) as SweepResult;
    expect(parsed).toMatchObject({ found: 1, leftAlone: [], failed: [], deferred: 0 });
    expect(parsed.ended).toEqual([
      expect.objectContaining({
        repo: REPO,
        number: stuck.number,
        from: 'queued',
        to: 'error',
        statusSet: true,
      }),
    ]);
  });

  it('refuses to sweep without GITHUB_TOKEN, in one line, changing nothing', async () => {
    const { builds, lambkin } = await stack();
    const stuck = await queued(builds, -MINUTE);
    const result = await lambkin(['sweep'], false);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expectOneLine(result.stderr);
    expect(result.stderr).toMatch(/^lambkin: GITHUB_TOKEN is not set: the sweep would end overdue builds/);
    expect((await builds.getBuild(stuck))?.state).toBe('queued');
  });

  it('ends the build but exits 1 with one line when GitHub will not take the status', async () => {
    const { builds, lambkin } = await stack();
    const stuck = await running(builds, -MINUTE);
    github.failNext({ mode: '500', method: 'POST', times: 10 });
    const result = await lambkin(['sweep']);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain(`ended ${REPO}#${stuck.number}: running → timed_out`);
    expectOneLine(result.stderr);
    expect(result.stderr).toContain(
      `lambkin: The sweep ended ${REPO}#${stuck.number} but could not set the commit status (`,
    );
    expect(result.stderr).toContain('GitHub answered 500');
    expect((await builds.getBuild(stuck))?.state).toBe('timed_out');
  });
});
