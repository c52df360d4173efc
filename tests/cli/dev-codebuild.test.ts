/**
 * Issue 18's "done when", end to end through `lambkin dev` (its own process, signed pushes): a
 * repository set to CodeBuild builds on the stack's CodeBuild endpoint, which runs the runner bundle
 * the controller uploaded (sha256-checked, `--input-url`) in the build sandbox, and whose completion
 * event finishes the build: pending then final status, the log and the page, the cache restored by
 * a second build. A step longer than the (scaled-down) Lambda limit passes on CodeBuild; `"auto"`
 * rebuilds a Lambda timeout on CodeBuild once, and the log says so.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jest } from '@jest/globals';
import { TIME_BREAKDOWN_TITLE } from '../../src/core/log-format.js';
import type { StackFile } from '../../src/local/stack-file.js';
import { startGitHubServer, type GitHubStandIn } from '../support/github-server.js';
import { pushToDev, startDevProcess, type DevProcess } from '../support/dev-process.js';
import { runProcess } from './helpers.js';

const SECRET = 'dev-codebuild-secret';
const TOKEN = 'dev-codebuild-token';
/**
 * The Lambda runner's limit here (the runner stops 15 s before it): a step of 30 s outgrows it, not
 * CodeBuild's 60 minutes.
 */
const LAMBDA_SECONDS = 25;

jest.setTimeout(240_000);

let github: GitHubStandIn;
let dataDir: string;
let dev: DevProcess;
let stack: StackFile;
const folders: string[] = [];

beforeAll(async () => {
  github = await startGitHubServer({ token: TOKEN });
  dataDir = mkdtempSync(join(tmpdir(), 'lambkin-dev-codebuild-'));
  dev = await startDevProcess({
    dataDir,
    githubApi: github.url,
    env: {
      LAMBKIN_WEBHOOK_SECRET: SECRET,
      GITHUB_TOKEN: TOKEN,
      LAMBKIN_RUNNER_TIMEOUT_SECONDS: String(LAMBDA_SECONDS),
    },
  });
  stack = dev.stack;
  // The operator lets these repositories run on CodeBuild (without it, a build set to it ends `error`).
  const set = await runProcess(['config', 'set', `--local=${dataDir}`, 'codebuild.repos', '["octo/*"]'], {});
  expect([set.code, set.stderr]).toEqual([0, '']);
}, 60_000);

afterAll(async () => {
  await dev.stop();
  await github.close();
  for (const folder of [dataDir, ...folders]) rmSync(folder, { recursive: true, force: true });
});

/** The `lambkin` context's statuses of the commit, oldest first. */
function statuses(repo: string, sha: string) {
  return github
    .statusesFor(repo, sha)
    .filter((status) => status.context === 'lambkin')
    .reverse();
}

async function waitForFinal(repo: string, sha: string, number: number): Promise<string> {
  for (let i = 0; i < 900; i++) {
    const final = statuses(repo, sha).find(
      (status) => status.state !== 'pending' && (status.description ?? '').startsWith(`Build #${number} `),
    );
    if (final) return final.state;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(
    `build #${number} of ${repo} did not end: ${JSON.stringify(statuses(repo, sha))}\n${dev.logs()}`,
  );
}

/**
 * The build's whole log: the controller appends the cache save's lines and the time breakdown once
 * the final status is out (src/controller/build-artifacts.ts), so wait for the breakdown.
 */
async function logOf(repo: string, number: number): Promise<string> {
  let text = '';
  for (let attempt = 0; attempt < 200; attempt++) {
    const response = await fetch(`${stack.publicUrl}/builds/${repo}/${number}/log.txt`);
    expect(response.status).toBe(200);
    text = await response.text();
    if (text.includes(TIME_BREAKDOWN_TITLE)) return text;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`the log of ${repo}#${number} never got its time breakdown:\n${text}`);
}

const install = 'mkdir -p node_modules/dep && echo "module.exports = 1" > node_modules/dep/index.js';
const lockfile = '{ "name": "cb", "lockfileVersion": 3, "packages": {} }\n';

describe('a repository set to CodeBuild', () => {
  it('builds on the local CodeBuild endpoint: statuses, log, page, and the cache on a second build', async () => {
    const { repo, response } = await pushToDev(dev, github, SECRET, 'octo/cb', {
      '.lambkin.json': JSON.stringify({
        runsOn: { codebuild: { compute: 'small' } },
        install: [install],
        test: ['echo "ON CODEBUILD uid=$(id -u)"', 'test -f node_modules/dep/index.js'],
      }),
      'package-lock.json': lockfile,
    });
    folders.push(repo.dir);
    expect(response.status).toBe(202);
    expect(await waitForFinal('octo/cb', repo.sha, 1)).toBe('success');
    const seen = statuses('octo/cb', repo.sha);
    expect(seen[0]?.state).toBe('pending');
    const log = await logOf('octo/cb', 1);
    // The steps ran as a build's own user, not as the stack's (root here).
    expect(log).toMatch(/^ON CODEBUILD uid=(\d+)$/m);
    if (process.getuid?.() === 0) expect(Number(/^ON CODEBUILD uid=(\d+)$/m.exec(log)?.[1])).not.toBe(0);
    expect(log).toMatch(/^Cache: saved /m);
    const page = await fetch(seen[seen.length - 1]?.target_url ?? '');
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('octo/cb');

    const rebuild = await runProcess(['rebuild', 'octo/cb', '1', '--json', `--local=${dataDir}`], {});
    expect([rebuild.code, rebuild.stderr]).toEqual([0, '']);
    expect(await waitForFinal('octo/cb', repo.sha, 2)).toBe('success');
    expect(await logOf('octo/cb', 2)).toMatch(/^Cache: restored /m);
  });

  it('passes a step longer than the Lambda limit', async () => {
    const { repo } = await pushToDev(dev, github, SECRET, 'octo/cb-long', {
      '.lambkin.json': JSON.stringify({
        runsOn: { codebuild: { compute: 'small' } },
        install: [],
        test: [`sleep ${LAMBDA_SECONDS + 5}`, 'echo "LONG STEP DONE"'],
      }),
    });
    folders.push(repo.dir);
    expect(await waitForFinal('octo/cb-long', repo.sha, 1)).toBe('success');
    const log = await logOf('octo/cb-long', 1);
    expect(log).toMatch(/^LONG STEP DONE$/m);
    expect(log).not.toContain('timed out');
  });

  it('"auto" rebuilds a Lambda timeout on CodeBuild exactly once, and says so in the log', async () => {
    const { repo } = await pushToDev(dev, github, SECRET, 'octo/cb-auto', {
      '.lambkin.json': JSON.stringify({
        runsOn: 'auto',
        install: [],
        test: [`sleep ${LAMBDA_SECONDS + 5}`, 'echo "AUTO STEP DONE"'],
      }),
    });
    folders.push(repo.dir);
    expect(await waitForFinal('octo/cb-auto', repo.sha, 1)).toBe('success');
    const log = await logOf('octo/cb-auto', 1);
    // The Lambda run's part, the line that says why it moved, then the CodeBuild run's part: once.
    expect(log.match(/^Lambkin build #1 of octo\/cb-auto/gm)).toHaveLength(2);
    expect(log.match(/■ build timed out/g)).toHaveLength(1);
    expect(log.match(/rebuilt once on CodeBuild/g)).toHaveLength(1);
    expect(log).toMatch(
      /^\[lambkin\] The build timed out on Lambda after \d+ s; rebuilt once on CodeBuild \(small/m,
    );
    expect(log.indexOf('rebuilt once on CodeBuild')).toBeLessThan(log.lastIndexOf('Lambkin build #1 of'));
    expect(log.match(/^AUTO STEP DONE$/gm)).toHaveLength(1);
    expect(log.match(/■ build passed/g)).toHaveLength(1);
  });

  it('fails a build whose step fails on CodeBuild', async () => {
    const { repo } = await pushToDev(dev, github, SECRET, 'octo/cb-fail', {
      '.lambkin.json': JSON.stringify({
        runsOn: { codebuild: { compute: 'small' } },
        install: [],
        test: ['echo "FAILING ON CODEBUILD"', 'exit 3'],
      }),
    });
    folders.push(repo.dir);
    expect(await waitForFinal('octo/cb-fail', repo.sha, 1)).toBe('failure');
    expect(await logOf('octo/cb-fail', 1)).toContain('FAILING ON CODEBUILD');
  });
});
