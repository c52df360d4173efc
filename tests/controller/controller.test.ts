/**
 * The builder end to end: the controller claims builds in the real build store, resolves the
 * tarball through the GitHub stand-in, starts the runner as a separate process with a clean
 * environment, which fetches real git archives, runs real npm, and streams the log to the S3
 * emulator through a presigned POST.
 */
import { processesRunning, stepAndRunner } from '../support/processes.js';
import { rmSync, writeFileSync } from 'node:fs';
import { jest } from '@jest/globals';
import { runControllerBuild, type ControllerDependencies } from '../../src/controller/controller.js';
import { ProcessRunnerInvoker } from '../../src/controller/runner-invoker.js';
import type { BuildRequest } from '../../src/core/build.js';
import { resolveArchiveUrl } from '../../src/github/archive.js';
import { createGitHubClient } from '../../src/github/client.js';
import { readRepoFile } from '../../src/github/contents.js';
import { GitHubStatusReporter } from '../../src/github/statuses.js';
import { createMemoryLogger, type MemoryLogger } from '../../src/core/logger.js';
import { DynamoBuildStore } from '../../src/store/builds.js';
import { S3LogStore } from '../../src/store/logs.js';
import { DynamoSettingsStore, repoScope } from '../../src/store/settings.js';
import {
  commitFiles,
  createGitRepo,
  startGitHubServer,
  type GitFiles,
  type GitHubStandIn,
} from '../support/github-server.js';
import { failingProject, npmProject, passingProject } from '../support/npm-projects.js';
import { gitHttpBackend, startArchiveServer } from '../support/archive-server.js';
import { basename, dirname, join } from 'node:path';
import { testBuildRequest } from '../support/builds.js';
import { itAsRoot } from '../support/tools.js';
import { waitFor } from '../support/wait.js';
import { createTestStorage, type TestStorage } from '../support/storage.js';

// Each test runs whole builds (git, npm, a runner process): on a busy 2-core CI machine one
// can take longer than jest's default 30 s, and a timed-out step alone may take up to 45 s below.
jest.setTimeout(120_000);

const TOKEN = 'builder-test-token';
const PUBLIC_URL = 'https://ci.example.test';

let storage: TestStorage;
let github: GitHubStandIn;
let builds: DynamoBuildStore;
let settings: DynamoSettingsStore;
let logs: S3LogStore;
let logger: MemoryLogger;
let deps: ControllerDependencies;
const folders: string[] = [];

beforeAll(async () => {
  storage = await createTestStorage();
  github = await startGitHubServer({ token: TOKEN });
  builds = new DynamoBuildStore(storage.clients.documents, storage.buildsTable);
  settings = new DynamoSettingsStore(storage.clients.documents, storage.settingsTable);
  logs = new S3LogStore(storage.clients.s3, storage.bucket);
  logger = createMemoryLogger();
  const octokit = createGitHubClient({ baseUrl: github.url, token: TOKEN });
  deps = {
    builds,
    settings,
    statuses: new GitHubStatusReporter(octokit),
    logs,
    archives: { resolveArchiveUrl: (repo, sha) => resolveArchiveUrl(octokit, repo, sha) },
    // The default branch's config decides whether a push deploys (read through the contents API).
    repoFiles: { readFile: (repo, path, ref) => readRepoFile(octokit, repo, path, ref) },
    runner: new ProcessRunnerInvoker(),
    logger,
    publicUrl: PUBLIC_URL,
    runnerTimeoutMs: 90_000,
    logLimitBytes: 1024 * 1024,
  };
});

afterAll(async () => {
  await github.close();
  for (const folder of folders) rmSync(folder, { recursive: true, force: true });
});

/** Makes a repository on the stand-in with these files; returns its name and head sha. */
async function repository(name: string, files: GitFiles, options: { private?: boolean } = {}) {
  const repo = await createGitRepo(files, { message: 'Initial commit' });
  folders.push(repo.dir);
  github.addRepository({ owner: 'octo', name, gitDir: repo.dir, private: options.private ?? false });
  return { repo: `octo/${name}`, sha: repo.sha, dir: repo.dir };
}

async function queue(request: Partial<BuildRequest> & Pick<BuildRequest, 'repo' | 'sha'>) {
  const full = testBuildRequest({ ...request });
  const number = await builds.allocateNumber(full.repo);
  return builds.putQueuedBuild(full, number, { deadline: Date.now() + 60_000 });
}

async function build(request: Parameters<typeof queue>[0]) {
  const queued = await queue(request);
  const result = await runControllerBuild(deps, { kind: 'build', repo: queued.repo, number: queued.number });
  if (!result.ran) throw new Error(`build did not run: ${result.reason}`);
  const log = (await logs.readLog(result.build.logPrefix)) ?? '';
  return { build: result.build, log, statuses: github.statusesFor(queued.repo, queued.sha) };
}

describe('builder', () => {
  it('builds a passing npm project: success in DynamoDB, on GitHub and in the S3 log', async () => {
    const { repo, sha } = await repository('passing', passingProject());
    const { build: done, log, statuses } = await build({ repo, sha });
    expect(done).toMatchObject({ state: 'success', description: expect.stringMatching(/^passed in/) });
    expect(done.steps?.map((step) => [step.name, step.exitCode])).toEqual([
      ['install', 0],
      ['test', 0],
    ]);
    expect(done.events.map((event) => event.to)).toEqual(['queued', 'running', 'success']);
    expect(statuses.map((status) => status.state)).toEqual(['success', 'pending']);
    expect(statuses[0]).toMatchObject({
      description: expect.stringMatching(/^Build #1 passed in/),
      target_url: `${PUBLIC_URL}/builds/octo/passing/1`,
    });
    expect(statuses[1]?.description).toBe('Build #1 running');
    expect(log).toContain('npm ci');
    expect(log).toMatch(/# pass 1/);
    const page = await logs.getObjectText(`${done.logPrefix}index.html`);
    expect(page).toContain('octo/passing');
    expect(page).not.toContain('http-equiv="refresh"');
    expect(await logs.getObjectText('logs/octo/passing/branches/main/badge.svg')).toMatch(/passing/);
    expect(JSON.parse((await logs.getObjectText('logs/octo/passing/latest.json')) ?? '{}')).toMatchObject({
      number: 1,
      state: 'success',
    });
  });

  it('reports a failing test as failure, naming the step', async () => {
    const { repo, sha } = await repository('failing', failingProject());
    const { build: done, log, statuses } = await build({ repo, sha });
    expect(done).toMatchObject({ state: 'failure', description: 'test failed (exit 1): npm test' });
    expect(statuses[0]).toMatchObject({
      state: 'failure',
      description: 'Build #1 failed: test failed (exit 1): npm test',
    });
    expect(log).toMatch(/# fail 1/);
  });

  it('uses npm install when there is no lockfile', async () => {
    const { repo, sha } = await repository(
      'no-lockfile',
      npmProject({ test: 'echo ok' }, {}, { lockfile: false }),
    );
    const { build: done, log } = await build({ repo, sha });
    expect(done.state).toBe('success');
    expect(log).toContain('npm install');
  });

  it('ends a build with a broken config as error, naming the file and key', async () => {
    const { repo, sha } = await repository(
      'broken-config',
      npmProject({ test: 'echo ok' }, { '.lambkin.json': JSON.stringify({ test: 'echo hi', timeuot: 10 }) }),
    );
    const { build: done, log, statuses } = await build({ repo, sha });
    expect(done.state).toBe('error');
    expect(done.description).toMatch(/\.lambkin\.json/);
    expect(done.description).toMatch(/timeuot/);
    expect(statuses[0]?.state).toBe('error');
    expect(statuses[0]?.description).toMatch(/\.lambkin\.json.*timeuot/);
    expect(log).toMatch(/timeuot/);
    expect(done.steps).toEqual([]);
  });

  it('kills a step that runs past the timeout and says which step', async () => {
    const { repo, sha } = await repository(
      'hangs',
      npmProject({ test: 'echo started; sleep 60' }, { '.lambkin.json': JSON.stringify({ timeout: 3 }) }),
    );
    const started = Date.now();
    const { build: done, log, statuses } = await build({ repo, sha });
    expect(Date.now() - started).toBeLessThan(45_000);
    expect(done).toMatchObject({ state: 'timed_out', description: 'timed out after 3 s in test' });
    expect(statuses[0]).toMatchObject({
      state: 'error',
      description: 'Build #1 timed out after 3 s in test',
    });
    expect(log).toContain('started');
  });

  it('deploys only pushes to a deploy branch, and only after the tests pass', async () => {
    const files = npmProject(
      { test: 'echo tested' },
      { '.lambkin.json': JSON.stringify({ deploy: 'echo DEPLOYING from $LAMBKIN_BRANCH' }) },
    );
    const { repo, sha } = await repository('deploys', files);
    const main = await build({ repo, sha, branch: 'main' });
    expect(main.build.steps?.map((step) => step.name)).toEqual(['install', 'test', 'deploy']);
    expect(main.log).toContain('DEPLOYING from main');
    const feature = await build({ repo, sha, branch: 'feature', ref: 'refs/heads/feature' });
    expect(feature.build.steps?.map((step) => step.name)).toEqual(['install', 'test']);
    expect(feature.log).not.toContain('DEPLOYING');
    expect(feature.log).toContain('Deploy skipped: feature is not a deploy branch');
    const pr = await build({
      repo,
      sha,
      event: 'pull_request',
      pr: 4,
      branch: 'main',
      ref: 'refs/pull/4/head',
    });
    expect(pr.build.steps?.map((step) => step.name)).toEqual(['install', 'test']);
    expect(pr.log).toContain('pull requests never deploy');
  });

  it('gives secrets to trusted builds, masked in the log, and none to pull requests from forks', async () => {
    const secret = 'hunter2-very-secret-value';
    const files = npmProject({
      test: 'echo "secret=$MY_SECRET"; printf "%s" "$MY_SECRET" | base64; printf "x%s" "$MY_SECRET" | base64',
    });
    const { repo, sha } = await repository('secrets', files);
    await settings.update(repoScope(repo), () => ({ secretEnv: { MY_SECRET: secret } }));
    const trusted = await build({ repo, sha });
    expect(trusted.build.state).toBe('success');
    expect(trusted.log).toContain('secret=***');
    expect(trusted.log).not.toContain(secret);
    expect(trusted.log).not.toContain(Buffer.from(secret).toString('base64').slice(0, 20));
    expect(trusted.log).not.toContain(Buffer.from(`x${secret}`).toString('base64').slice(4, 24));
    const fork = await build({
      repo,
      sha,
      event: 'pull_request',
      pr: 7,
      fork: true,
      trusted: false,
      headRepo: 'stranger/secrets',
      ref: 'refs/pull/7/head',
    });
    expect(fork.build.state).toBe('success');
    expect(fork.log).toMatch(/secret=\n/);
    expect(fork.log).not.toContain(secret);
  });

  it('keeps a 10 MiB log within the limit, cut in the middle, with the tail', async () => {
    const files = npmProject({
      test: "node -e \"for (let i = 0; i < 160000; i++) console.log('line ' + i + ' ' + 'x'.repeat(56)); console.log('THE END')\"",
    });
    const { repo, sha } = await repository('big-log', files);
    const { build: done, log } = await build({ repo, sha });
    expect(done.state).toBe('success');
    expect(Buffer.byteLength(log)).toBeLessThan(1.2 * 1024 * 1024);
    expect(log).toMatch(/truncated/);
    expect(log).toContain('line 0 ');
    expect(log).toContain('THE END');
    // The build's summary follows the kept tail.
    expect(log.indexOf('■ build passed')).toBeGreaterThan(log.indexOf('THE END'));
  });

  it('runs a build invoked twice only once', async () => {
    const { repo, sha } = await repository('twice', npmProject({ test: 'echo ran-once' }));
    const queued = await queue({ repo, sha });
    const invocation = { kind: 'build' as const, repo, number: queued.number };
    const results = await Promise.all([
      runControllerBuild(deps, invocation),
      runControllerBuild(deps, invocation),
    ]);
    expect(results.filter((result) => result.ran)).toHaveLength(1);
    expect(results.find((result) => !result.ran)).toMatchObject({ ran: false, reason: 'already claimed' });
    const again = await runControllerBuild(deps, invocation);
    expect(again).toMatchObject({ ran: false, reason: 'already claimed' });
    expect(
      github.statusesFor(repo, sha).filter((status) => status.description === 'Build #1 running'),
    ).toHaveLength(1);
  });

  it('fetches through the tarball redirect; a private repo with the token, which never reaches the runner', async () => {
    const { repo, sha } = await repository('private', npmProject({ test: 'env | sort' }), { private: true });
    const { build: done, log } = await build({ repo, sha, privateRepo: true });
    expect(done.state).toBe('success');
    const tarball = github.requests.find((request) => request.path === `/repos/${repo}/tarball/${sha}`);
    expect(tarball?.status).toBe(302);
    expect(tarball?.headers.authorization).toMatch(TOKEN);
    const download = github.requests.find((request) => request.path.startsWith('/_codeload/octo/private'));
    expect(download?.status).toBe(200);
    expect(download?.headers.authorization).toBeUndefined();
    expect(log).not.toContain(TOKEN);
    expect(log).not.toMatch(/AWS_SECRET_ACCESS_KEY|AWS_ACCESS_KEY_ID|GITHUB_TOKEN/);
    expect(log).toContain('LAMBKIN_REPO=octo/private');
  });

  it('streams the log to S3 while a step is still running', async () => {
    // The step goes on only once the test has seen its early output and opened the gate in the
    // step's folder (a fixed sleep could end first on a busy machine); after 90 s without it, it
    // goes on anyway, so a failure cannot hang.
    const { repo, sha } = await repository(
      'streams',
      npmProject({
        test: 'echo EARLY-$((2+3)) in "$PWD"; for i in $(seq 900); do [ -e gate ] && break; sleep 0.1; done; echo LATE-$((3+4))',
      }),
    );
    const queued = await queue({ repo, sha });
    const running = runControllerBuild(deps, { kind: 'build', repo, number: queued.number });
    const seen = await waitFor('the early output in the S3 log', async () => {
      const log = await logs.readLog(queued.logPrefix);
      return log?.includes('EARLY-5') ? log : undefined;
    });
    expect(seen).not.toContain('LATE-7');
    expect((await builds.getBuild(queued))?.state).toBe('running');
    const page = await logs.getObjectText(`${queued.logPrefix}index.html`);
    expect(page).toContain('http-equiv="refresh"');
    const stepFolder = /EARLY-5 in (\/\S+)/.exec(seen)?.[1];
    expect(stepFolder).toBeDefined();
    writeFileSync(join(stepFolder ?? '/nonexistent', 'gate'), '');
    const result = await running;
    expect(result.ran && result.build.state).toBe('success');
    expect(await logs.readLog(queued.logPrefix)).toContain('LATE-7');
  });

  it('ends the build as error when the runner dies mid-build', async () => {
    // Killed from outside: a step cannot see the runner (its own PID namespace, src/runner/step-sandbox.ts).
    const marker = `sleep ${30_400 + (process.pid % 100)}`;
    const { repo, sha } = await repository('runner-dies', npmProject({ test: `echo ready; ${marker}` }));
    const running = build({ repo, sha });
    const { runner } = await stepAndRunner(marker, 'lambkin-runner-program');
    process.kill(runner, 'SIGKILL');
    const { build: done, log, statuses } = await running;
    expect(done.state).toBe('error');
    expect(done.description).toMatch(/runner was killed by SIGKILL/);
    expect(statuses[0]?.state).toBe('error');
    expect(log).toMatch(/The build did not complete: The runner was killed by SIGKILL/);
  });

  it('finds new commits: each build fetches its own sha', async () => {
    const { repo, sha, dir } = await repository(
      'moves',
      npmProject({ test: 'cat version.txt' }, { 'version.txt': 'one\n' }),
    );
    const second = await commitFiles(dir, { 'version.txt': 'two\n' }, 'Second');
    const first = await build({ repo, sha });
    const next = await build({ repo, sha: second });
    expect(first.log).toMatch(/\none\n/);
    expect(next.log).toMatch(/\ntwo\n/);
  });

  it('refuses to build when the runtime Node does not satisfy the config, saying so', async () => {
    const { repo, sha } = await repository(
      'node-version',
      npmProject({ test: 'echo never' }, { '.lambkin.json': JSON.stringify({ node: '>=99' }) }),
    );
    const { build: done, log } = await build({ repo, sha });
    expect(done.state).toBe('error');
    expect(done.description).toMatch(/>=99/);
    expect(done.description).toContain(process.versions.node);
    expect(done.steps).toEqual([]);
    expect(log).not.toContain('never');
  });

  it('never deploys after a failing test', async () => {
    const files = npmProject(
      { test: 'exit 3' },
      { '.lambkin.json': JSON.stringify({ deploy: 'echo SHOULD-NOT-$((1+1))' }) },
    );
    const { repo, sha } = await repository('deploy-after-failure', files);
    const { build: done, log } = await build({ repo, sha, branch: 'main' });
    expect(done).toMatchObject({ state: 'failure', description: 'test failed (exit 3): npm test' });
    expect(done.steps?.map((step) => step.name)).toEqual(['install', 'test']);
    expect(log).not.toContain('SHOULD-NOT-2');
  });

  it('delivers the final status through GitHub server errors', async () => {
    const { repo, sha } = await repository('final-status', npmProject({ test: 'sleep 2; echo done' }));
    const queued = await queue({ repo, sha });
    const running = runControllerBuild(deps, { kind: 'build', repo, number: queued.number });
    // The running status is set (waited for: a fixed 500 ms could let the faults hit it instead);
    // the next status is the final one.
    await waitFor('the running status', () =>
      github.statusesFor(repo, sha).some((status) => status.state === 'pending') ? true : undefined,
    );
    github.failNext({ mode: '500', times: 3, path: /\/statuses\// });
    const result = await running;
    expect(result.ran && result.build.state).toBe('success');
    const statuses = github.statusesFor(repo, sha);
    expect(statuses[0]).toMatchObject({ state: 'success' });
    expect(github.pendingFaults()).toBe(0);
    const attempts = github.requests.filter((request) => request.path === `/repos/${repo}/statuses/${sha}`);
    expect(attempts.filter((request) => request.status === 500)).toHaveLength(3);
  });

  it('makes a shallow clone of the exact commit when the config asks for history', async () => {
    const files = npmProject(
      { test: 'echo "depth=$(git log --oneline | wc -l) head=$(git rev-parse HEAD)"' },
      { '.lambkin.json': JSON.stringify({ git: { depth: 2 } }) },
    );
    const { repo, dir } = await repository('history', files);
    await commitFiles(dir, { 'a.txt': 'a\n' }, 'Second');
    const third = await commitFiles(dir, { 'b.txt': 'b\n' }, 'Third');
    const git = await startArchiveServer();
    try {
      git.route('/git', gitHttpBackend(dirname(dir), '/git'));
      const cloneUrl = git.url(`/git/${basename(dir)}/.git`);
      const { build: done, log } = await build({ repo, sha: third, cloneUrl });
      expect(done.state).toBe('success');
      expect(log).toContain(`depth=2 head=${third}`);
      expect(log).toContain(`Cloned ${third} with history depth 2`);
    } finally {
      await git.close();
    }
  });

  itAsRoot(
    "runs the runner as a uid of the build's own in a PID namespace of its own when started as root",
    async () => {
      const { repo, sha } = await repository(
        'unprivileged',
        npmProject({
          test:
            'echo "uid=$(id -u)"; echo "init=$(tr \'\\0\' \' \' < /proc/1/cmdline)"; ' +
            `cat /proc/${process.pid}/environ`,
        }),
      );
      const unprivileged = asNobody();
      const queued = await queue({ repo, sha });
      const result = await runControllerBuild(unprivileged, { kind: 'build', repo, number: queued.number });
      const log = (await logs.readLog(queued.logPrefix)) ?? '';
      // A uid of the build's own (src/controller/build-sandbox.ts).
      expect(log).toMatch(/uid=18790\d{5}\b/);
      // Its own PID namespace: pid 1 is the step sandbox's shell (src/runner/step-sandbox.ts), and
      // neither the runner nor the controller's process is there at all.
      expect(log).toMatch(/init=\/bin\/bash -p -c set -e/);
      expect(log).toMatch(
        new RegExp(`/proc/${process.pid}/environ: (No such file or directory|Permission denied)`),
      );
      expect(result.ran && result.build.state).toBe('failure');
    },
  );

  /** The controller's dependencies with a build sandbox per build, as the local stack runs as root. */
  function asNobody(): ControllerDependencies {
    return {
      ...deps,
      runner: new ProcessRunnerInvoker({ sandbox: true, workRoot: '/tmp/lambkin-sandbox-test' }),
    };
  }

  itAsRoot('takes every step with it when the runner is killed', async () => {
    const marker = `sleep ${32_400 + (process.pid % 100)}`;
    const { repo, sha } = await repository('runner-killed', npmProject({ test: `echo ready; ${marker}` }));
    const unprivileged = asNobody();
    const queued = await queue({ repo, sha });
    const running = runControllerBuild(unprivileged, { kind: 'build', repo, number: queued.number });
    const { runner } = await stepAndRunner(marker, 'lambkin-runner-program');
    process.kill(runner, 'SIGKILL');
    const result = await running;
    expect(result.ran && result.build.state).toBe('error');
    expect(await processesRunning(marker)).toEqual([]);
  });

  itAsRoot('ends every process a build leaves behind when the build ends', async () => {
    const marker = `sleep ${31_400 + (process.pid % 100)}`;
    const { repo, sha } = await repository(
      'leftovers',
      npmProject({
        test: `setsid ${marker} </dev/null >/dev/null 2>&1 & (${marker} &) ; sleep 0.2; echo started`,
      }),
    );
    const unprivileged = asNobody();
    const queued = await queue({ repo, sha });
    const result = await runControllerBuild(unprivileged, { kind: 'build', repo, number: queued.number });
    expect(result.ran && result.build.state).toBe('success');
    expect(await logs.readLog(queued.logPrefix)).toContain('started');
    const leftovers = await processesRunning(marker);
    expect(leftovers).toEqual([]);
  });
});
