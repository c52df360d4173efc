/**
 * A build's own time: the breakdown at the end of every log (where the time went, phase by phase),
 * and the final status that never waits for the cache save. Real builds: the controller with the
 * storage emulators and the GitHub stand-in, the runner as a separate process, the cache through
 * presigned URLs; the save's faults are a real loopback server that holds or refuses the upload.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { runControllerBuild, type ControllerDependencies } from '../../src/controller/controller.js';
import { ProcessRunnerInvoker } from '../../src/controller/runner-invoker.js';
import { TIME_BREAKDOWN_TITLE } from '../../src/core/log-format.js';
import { createMemoryLogger, type MemoryLogger } from '../../src/core/logger.js';
import type { CachePlanner } from '../../src/core/ports.js';
import { resolveArchiveUrl } from '../../src/github/archive.js';
import { createGitHubClient } from '../../src/github/client.js';
import { GitHubStatusReporter } from '../../src/github/statuses.js';
import { readLockfileBlob } from '../../src/github/trees.js';
import { DynamoBuildStore } from '../../src/store/builds.js';
import { S3CachePlanner } from '../../src/store/cache.js';
import { S3LogStore } from '../../src/store/logs.js';
import { DynamoSettingsStore } from '../../src/store/settings.js';
import { testBuildRequest } from '../support/builds.js';
import { createGitRepo, startGitHubServer, type GitHubStandIn } from '../support/github-server.js';
import { npmProject } from '../support/npm-projects.js';
import { createTestStorage, type TestStorage } from '../support/storage.js';

const TOKEN = 'timing-test-token';
let storage: TestStorage;
let github: GitHubStandIn;
let builds: DynamoBuildStore;
let logs: S3LogStore;
let logger: MemoryLogger;
let deps: ControllerDependencies;
let scratch: string;
const folders: string[] = [];

beforeAll(async () => {
  storage = await createTestStorage();
  github = await startGitHubServer({ token: TOKEN });
  builds = new DynamoBuildStore(storage.clients.documents, storage.buildsTable);
  logs = new S3LogStore(storage.clients.s3, storage.bucket);
  logger = createMemoryLogger();
  scratch = await mkdtemp(join(tmpdir(), 'lambkin-timing-test-'));
  const octokit = createGitHubClient({ baseUrl: github.url, token: TOKEN });
  deps = {
    builds,
    settings: new DynamoSettingsStore(storage.clients.documents, storage.settingsTable),
    statuses: new GitHubStatusReporter(octokit),
    logs,
    archives: { resolveArchiveUrl: (repo, sha) => resolveArchiveUrl(octokit, repo, sha) },
    runner: new ProcessRunnerInvoker({ workRoot: join(scratch, 'work') }),
    logger,
    publicUrl: 'https://ci.example.test',
    runnerTimeoutMs: 90_000,
    logLimitBytes: 1024 * 1024,
    cache: planner(),
  };
});

afterAll(async () => {
  await github.close();
  await rm(scratch, { recursive: true, force: true });
  for (const folder of folders) await rm(folder, { recursive: true, force: true });
});

function planner(maxBytes?: number): S3CachePlanner {
  const octokit = createGitHubClient({ baseUrl: github.url, token: TOKEN });
  return new S3CachePlanner(storage.clients.s3, storage.bucket, {
    lockfiles: { readLockfileBlob: (repo, sha) => readLockfileBlob(octokit, repo, sha) },
    ...(maxBytes !== undefined ? { maxBytes } : {}),
  });
}

/** The real planner, but the runner's PUT goes to `putUrl` (a loopback server of the test's). */
function savingTo(inner: CachePlanner, putUrl: string): CachePlanner {
  return {
    locate: (build, options) => inner.locate(build, options),
    presign: async (location, signer, options) => {
      const access = await inner.presign(location, signer, options);
      return access.putUrl ? { ...access, putUrl } : access;
    },
  };
}

let projects = 0;
/**
 * A repository whose install makes a node_modules of its own (so a trusted build has something
 * to save; a unique lockfile per project, so nothing is stored at its key yet).
 */
async function project(install: string[], test = 'echo tested', config: Record<string, unknown> = {}) {
  const name = `timing-${++projects}`;
  const files = npmProject({ test }, {}, { name });
  files['.lambkin.json'] = JSON.stringify({ install, test: [test], ...config }) + '\n';
  const repo = await createGitRepo(files, { message: 'Initial commit' });
  folders.push(repo.dir);
  github.addRepository({ owner: 'octo', name, gitDir: repo.dir });
  return { repo: `octo/${name}`, sha: repo.sha };
}

async function build(request: { repo: string; sha: string }, using = deps) {
  const full = testBuildRequest(request);
  const number = await builds.allocateNumber(full.repo);
  const queued = await builds.putQueuedBuild(full, number, { deadline: Date.now() + 60_000 });
  const result = await runControllerBuild(using, { kind: 'build', repo: queued.repo, number: queued.number });
  if (!result.ran) throw new Error(`build did not run: ${result.reason}`);
  const log = (await logs.readLog(result.build.logPrefix)) ?? '';
  return { build: result.build, log, statuses: github.statusesFor(request.repo, request.sha) };
}

/** The phase names of the log's breakdown, before and after the final status. */
function breakdownOf(log: string): { until: string[]; after: string[] } {
  const start = log.lastIndexOf(TIME_BREAKDOWN_TITLE);
  expect(start).toBeGreaterThan(-1);
  const lines = log.slice(start).trimEnd().split('\n').slice(1);
  const split = lines.indexOf('After the final status:');
  const names = (part: string[]) => part.map((line) => line.trim().replace(/\s+\d+(\.\d)? (ms|s)$/, ''));
  return split < 0
    ? { until: names(lines), after: [] }
    : { until: names(lines.slice(0, split)), after: names(lines.slice(split + 1)) };
}

const INSTALL = ['mkdir -p node_modules/made && echo "module.exports = 1" > node_modules/made/index.js'];

describe('where the time went', () => {
  it('ends the log of a passing build with every phase, the cache save after the final status', async () => {
    const { repo, sha } = await project(INSTALL);
    const { build: done, log, statuses } = await build({ repo, sha });
    expect(done.state).toBe('success');
    expect(statuses[0]?.state).toBe('success');
    expect(breakdownOf(log)).toEqual({
      until: [
        'prepare',
        'runner start',
        'work area',
        'fetch',
        'config',
        'cache restore',
        'step install',
        // Measured after each step, counted once: after the install while the test step runs
        // (no time of the build's), after the last step before the verdict.
        'step test',
        'quota check',
        'runner, other',
        'log upload',
        'log and record',
        'final status',
      ],
      after: ['cache save', 'cleanup'],
    });
    // The save's own line comes with it, after the runner's summary.
    expect(log.slice(log.indexOf('build passed'))).toMatch(/Cache: saved cache\/octo\/timing-/);
    // The same figures for whoever reads the controller's log (the bench does).
    const entry = logger.entries.find(
      (candidate) =>
        candidate.message === 'build time' && candidate.fields.build === `${repo}#${done.number}`,
    );
    expect(entry?.fields).toMatchObject({ totalMs: expect.any(Number), after: expect.any(Array) });
    // The page shows the log with its breakdown.
    expect(await logs.getObjectText(`${done.logPrefix}index.html`)).toContain(TIME_BREAKDOWN_TITLE);
  });

  it('ends a failing build’s log too: its steps up to the failure, nothing saved', async () => {
    const { repo, sha } = await project(INSTALL, 'exit 3');
    const { build: done, log } = await build({ repo, sha });
    expect(done.state).toBe('failure');
    const { until, after } = breakdownOf(log);
    expect(until).toEqual(expect.arrayContaining(['fetch', 'step install', 'step test', 'final status']));
    expect(after).toEqual(['cleanup']);
  });
});

describe('the cache restored while the source is fetched', () => {
  // The first build's install leaves a marker; the second build's install keeps what is there,
  // so the marker is there only when the cache brought it.
  const install = [
    'test -d node_modules/made || { mkdir -p node_modules/made && echo "from the cache" > node_modules/made/marker; }',
  ];

  it('puts node_modules in place for the next build of the same lockfile', async () => {
    const { repo, sha } = await project(install, 'cat node_modules/made/marker');
    const first = await build({ repo, sha });
    expect(first.log).toMatch(/Cache: saved/);
    const second = await build({ repo, sha });
    expect(second.build.state).toBe('success');
    expect(second.log).toMatch(/Cache: restored cache\/octo\/timing-/);
    expect(second.log).toContain('from the cache');
    expect(breakdownOf(second.log).until).toContain('cache restore');
  });

  it('restores what the config asks for when it caches more than node_modules', async () => {
    const { repo, sha } = await project(
      [...install, 'test -d .tool-cache || { mkdir .tool-cache && echo "tool cache" > .tool-cache/kept; }'],
      'cat node_modules/made/marker .tool-cache/kept',
      { cache: { paths: ['.tool-cache'] } },
    );
    await build({ repo, sha });
    const second = await build({ repo, sha });
    expect(second.build.state).toBe('success');
    expect(second.log).toMatch(/Cache: restored/);
    expect(second.log).toContain('tool cache');
  });
});

describe('the final status does not wait for the cache save', () => {
  let server: Server | undefined;
  afterEach(async () => {
    server?.closeAllConnections();
    server?.close();
    server = undefined;
  });

  it('reports the status while the upload hangs, then logs the failed save; the status stays true', async () => {
    const { repo, sha } = await project(INSTALL);
    // Holds the runner's upload until the final status is on GitHub, then refuses it. A final
    // status that waited for the save would never come: the upload is released by the safety
    // valve instead, and `releasedBy` says so.
    let releasedBy: 'status' | 'valve' | undefined;
    server = createServer((request, response) => {
      request.resume();
      void (async () => {
        for (let waited = 0; waited < 20_000; waited += 50) {
          if (github.statusesFor(repo, sha).some((status) => status.state !== 'pending')) {
            releasedBy = 'status';
            break;
          }
          await sleep(50);
        }
        releasedBy ??= 'valve';
        response.writeHead(500).end('no');
      })();
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const putUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/cache`;
    const {
      build: done,
      log,
      statuses,
    } = await build({ repo, sha }, { ...deps, cache: savingTo(planner(), putUrl) });
    expect(releasedBy).toBe('status');
    expect(done.state).toBe('success');
    expect(statuses.map((status) => status.state)).toEqual(['success', 'pending']);
    expect(log).toMatch(
      /Warning: cache: could not save cache\/octo\/timing-\S+: .*The build is not affected\./,
    );
    expect(breakdownOf(log).after).toEqual(['cache save', 'cleanup']);
  });

  it('keeps the status of a build whose dependencies are too large to save', async () => {
    // 2 MiB that do not compress, against a limit of 64 KiB.
    const { repo, sha } = await project([
      'mkdir -p node_modules/big && head -c 2097152 /dev/urandom > node_modules/big/blob.bin',
    ]);
    const { build: done, log, statuses } = await build({ repo, sha }, { ...deps, cache: planner(64 * 1024) });
    expect(done.state).toBe('success');
    expect(statuses[0]?.state).toBe('success');
    expect(log).toMatch(/cache: (could not save|not saved)/i);
    expect(log).not.toMatch(/Cache: saved/);
  });
});
