/**
 * The dependency cache end to end: the controller locates the key through the GitHub stand-in's
 * trees API and the S3 emulator, the runner (a separate process) restores and saves through the
 * presigned URLs, with real npm installing real (local tarball) packages. Faults are real: servers
 * that answer 500 or drop the connection, archives that are damaged or hostile.
 */
import { HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, writeFile, mkdir, symlink, lstat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { performance } from 'node:perf_hooks';
import { join } from 'node:path';
import { createGzip } from 'node:zlib';
import { pipeline } from 'node:stream/promises';
import { Header, Pack, ReadEntry } from 'tar';
import { localDependencyProject } from '../../src/bench/projects.js';
import {
  MANIFEST_NAME,
  cacheCompressor,
  cachedPaths,
  checkoutLockfile,
  restoreCache,
  saveCache,
  startCacheSnapshot,
  type CacheManifest,
  type CacheSnapshot,
} from '../../src/runner/cache.js';
import { runControllerBuild, type ControllerDependencies } from '../../src/controller/controller.js';
import type { CacheAccess } from '../../src/core/protocol.js';
import { ProcessRunnerInvoker } from '../../src/controller/runner-invoker.js';
import { createS3Client } from '../../src/aws/clients.js';
import type { BuildRequest } from '../../src/core/build.js';
import {
  cacheKeyExtension,
  currentRuntime,
  preferredCacheCodec,
  runtimeId,
  supportedCacheCodecs,
  type CacheCodec,
} from '../../src/core/cache-key.js';
import { resolveBuildConfig } from '../../src/core/repo-config.js';
import { resolveArchiveUrl } from '../../src/github/archive.js';
import { createGitHubClient } from '../../src/github/client.js';
import { GitHubStatusReporter } from '../../src/github/statuses.js';
import { readLockfileBlob } from '../../src/github/trees.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import { DynamoBuildStore } from '../../src/store/builds.js';
import { S3CachePlanner } from '../../src/store/cache.js';
import { S3LogStore } from '../../src/store/logs.js';
import { DynamoSettingsStore } from '../../src/store/settings.js';
import { testBuildRequest } from '../support/builds.js';
import {
  commitFiles,
  createGitRepoFromDirectory,
  startGitHubServer,
  type GitHubStandIn,
} from '../support/github-server.js';
import { createTestStorage, type TestStorage } from '../support/storage.js';

const TOKEN = 'cache-test-token';
let storage: TestStorage;
let github: GitHubStandIn;
let builds: DynamoBuildStore;
let logs: S3LogStore;
let planner: S3CachePlanner;
let deps: ControllerDependencies;
let scratch: string;
let npmCache: string;

beforeAll(async () => {
  storage = await createTestStorage();
  github = await startGitHubServer({ token: TOKEN });
  builds = new DynamoBuildStore(storage.clients.documents, storage.buildsTable);
  logs = new S3LogStore(storage.clients.s3, storage.bucket);
  const octokit = createGitHubClient({ baseUrl: github.url, token: TOKEN });
  planner = new S3CachePlanner(storage.clients.s3, storage.bucket, {
    lockfiles: { readLockfileBlob: (repo, sha) => readLockfileBlob(octokit, repo, sha) },
  });
  scratch = await mkdtemp(join(tmpdir(), 'lambkin-cache-test-'));
  npmCache = join(scratch, 'npm-cache');
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
    cache: planner,
  };
});

afterAll(async () => {
  await github.close();
  await rm(scratch, { recursive: true, force: true });
});

let projects = 0;
/** A repository of a project with `count` local tarball dependencies, and its extra files. */
async function cachedProject(name: string, extra: Record<string, string> = {}, count = 3) {
  const dir = join(scratch, `project-${++projects}`);
  await localDependencyProject(dir, { count, npmCache });
  // Prints a marker whenever the install really runs.
  const packageJson = JSON.parse(await readFile(join(dir, 'package.json'), 'utf8')) as Record<
    string,
    unknown
  >;
  packageJson.scripts = { test: 'node --test', postinstall: 'echo INSTALL-RAN' };
  await writeFile(join(dir, 'package.json'), JSON.stringify(packageJson, null, 2) + '\n');
  for (const [path, content] of Object.entries(extra)) {
    await mkdir(join(dir, path, '..'), { recursive: true });
    await writeFile(join(dir, path), content);
  }
  const repo = await createGitRepoFromDirectory(dir);
  github.addRepository({ owner: 'octo', name, gitDir: repo.dir });
  return { repo: `octo/${name}`, sha: repo.sha, gitDir: repo.dir, projectDir: dir };
}

async function build(request: Partial<BuildRequest> & Pick<BuildRequest, 'repo' | 'sha'>, using = deps) {
  const full = testBuildRequest(request);
  const number = await builds.allocateNumber(full.repo);
  const queued = await builds.putQueuedBuild(full, number, { deadline: Date.now() + 60_000 });
  const result = await runControllerBuild(using, { kind: 'build', repo: queued.repo, number: queued.number });
  if (!result.ran) throw new Error(`build did not run: ${result.reason}`);
  const log = (await logs.readLog(result.build.logPrefix)) ?? '';
  return { build: result.build, log, steps: result.build.steps?.map((step) => step.name) ?? [] };
}

async function stored(key: string): Promise<boolean> {
  return storage.clients.s3.send(new HeadObjectCommand({ Bucket: storage.bucket, Key: key })).then(
    () => true,
    () => false,
  );
}

async function keyOf(repo: string, sha: string): Promise<string> {
  const location = await planner.locate({ repo, sha });
  if (!location) throw new Error(`${repo}@${sha} has no cache key`);
  return location.key;
}

const fromFork = {
  event: 'pull_request' as const,
  pr: 3,
  fork: true,
  trusted: false,
  headRepo: 'stranger/fork',
  ref: 'refs/pull/3/head',
  baseBranch: 'main',
};

describe('the dependency cache in builds', () => {
  it('misses and saves on a trusted build; the next build restores it and skips the install', async () => {
    const { repo, sha } = await cachedProject('warm');
    const key = await keyOf(repo, sha);
    const first = await build({ repo, sha });
    expect(first.build.state).toBe('success');
    expect(first.log).toContain(`Cache: miss for ${key}: nothing is stored at this key yet`);
    expect(first.log).toContain('INSTALL-RAN');
    expect(first.log).toMatch(new RegExp(`Cache: saved ${key} \\(\\d+ files, [\\d.]+ MiB\\) in `));
    expect(await stored(key)).toBe(true);

    const second = await build({ repo, sha });
    expect(second.build.state).toBe('success');
    expect(second.log).toMatch(
      /Cache: restored .* install skipped: the dependencies of this lockfile are in place/,
    );
    expect(second.log).not.toContain('INSTALL-RAN');
    expect(second.steps).toEqual(['test']);
    // The tests require every package: they were restored whole.
    expect(second.log).toMatch(/# pass 3/);
    expect(second.log).not.toContain('Cache: saved');
  });

  it('lets an untrusted build read the cache but never write it', async () => {
    const { repo, sha } = await cachedProject('forked');
    const key = await keyOf(repo, sha);
    const fork = await build({ repo, sha, ...fromFork });
    expect(fork.build.state).toBe('success');
    expect(fork.log).toContain('Cache: not saved: this build may read the cache but never write it');
    expect(await stored(key)).toBe(false);

    await build({ repo, sha }); // trusted: saves
    expect(await stored(key)).toBe(true);
    const forkAgain = await build({ repo, sha, ...fromFork, pr: 4, ref: 'refs/pull/4/head' });
    expect(forkAgain.log).toContain('Cache: restored');
    expect(forkAgain.steps).toEqual(['test']);
  });

  it('does neither restore nor save with "cache": false', async () => {
    const { repo, sha } = await cachedProject('no-cache', { '.lambkin.json': '{ "cache": false }\n' });
    const key = await keyOf(repo, sha);
    const first = await build({ repo, sha });
    expect(first.build.state).toBe('success');
    expect(first.log).toContain('Cache: off ("cache": false in the config)');
    expect(await stored(key)).toBe(false);
  });

  it('misses after the lockfile changed, and saves under the new key', async () => {
    const { repo, sha, gitDir, projectDir } = await cachedProject('changing');
    await build({ repo, sha });
    const oldKey = await keyOf(repo, sha);
    const lockfile = JSON.parse(await readFile(join(projectDir, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, Record<string, unknown>>;
    };
    (lockfile.packages[''] as Record<string, unknown>).version = '1.0.1';
    const changed = await commitFiles(gitDir, {
      'package-lock.json': JSON.stringify(lockfile, null, 2) + '\n',
      'package.json': (await readFile(join(projectDir, 'package.json'), 'utf8'))
        .replace('"version": "1.0.0"', '"version": "1.0.1"')
        .replace('"test": "node --test"', '"test": "node --test"'),
    });
    const newKey = await keyOf(repo, changed);
    expect(newKey).not.toBe(oldKey);
    const next = await build({ repo, sha: changed });
    expect(next.build.state).toBe('success');
    expect(next.log).toContain(`Cache: miss for ${newKey}`);
    expect(next.log).toContain('INSTALL-RAN');
    expect(await stored(newKey)).toBe(true);
  });

  it('warns and installs normally when the stored archive is damaged', async () => {
    const { repo, sha } = await cachedProject('damaged');
    const key = await keyOf(repo, sha);
    await storage.clients.s3.send(
      new PutObjectCommand({
        Bucket: storage.bucket,
        Key: key,
        Body: Buffer.from('not a gzip archive at all'),
      }),
    );
    const result = await build({ repo, sha });
    expect(result.build.state).toBe('success');
    expect(result.log).toMatch(
      new RegExp(`Warning: cache: could not restore ${key}: .*Installing without it\\.`),
    );
    expect(result.log).toContain('INSTALL-RAN');
    expect(result.steps).toEqual(['install', 'test']);
  });

  it('refuses a hostile archive (a link out of the checkout, a path outside node_modules) and installs', async () => {
    const { repo, sha, projectDir } = await cachedProject('hostile');
    const key = await keyOf(repo, sha);
    const lockfile = await checkoutLockfile(projectDir);
    const archive = await hostileArchive(lockfile ?? { path: 'package-lock.json', sha: '' }, [
      { path: 'node_modules/evil', type: 'SymbolicLink', linkpath: '../../../../../../etc' },
      { path: 'node_modules/evil/passwd', type: 'File', content: 'owned' },
    ]);
    await storage.clients.s3.send(new PutObjectCommand({ Bucket: storage.bucket, Key: key, Body: archive }));
    const result = await build({ repo, sha });
    expect(result.build.state).toBe('success');
    expect(result.log).toMatch(
      /Warning: cache: could not restore .*node_modules\/evil.*resolves outside the checkout/,
    );
    expect(result.log).toContain('INSTALL-RAN');
  });

  it('goes on when S3 answers 500 to the download and drops the upload', async () => {
    const faulty = await startFaultyServer({ upstream: storage.backend.s3Endpoint });
    try {
      const faultyClient = createS3Client({ endpoints: { s3: faulty.url } });
      const withFaults: ControllerDependencies = {
        ...deps,
        // The runner's URLs are signed for the faulty server; the lookups still reach the emulator.
        signer: { forBuild: () => Promise.resolve(faultyClient) },
      };
      const { repo, sha } = await cachedProject('faulty');
      const key = await keyOf(repo, sha);
      await storage.clients.s3.send(new PutObjectCommand({ Bucket: storage.bucket, Key: key, Body: 'x' }));
      const restoring = await build({ repo, sha }, withFaults);
      expect(restoring.build.state).toBe('success');
      expect(restoring.log).toMatch(/Warning: cache: could not restore .*HTTP 500.*Installing without it/);
      expect(restoring.log).toContain('INSTALL-RAN');

      const { repo: repo2, sha: sha2 } = await cachedProject('faulty-save');
      const saving = await build({ repo: repo2, sha: sha2 }, withFaults);
      expect(saving.build.state).toBe('success');
      expect(saving.log).toMatch(/Warning: cache: could not save .*The build is not affected\./);
      const cacheRequests = faulty.requests.filter((request) => request.url.includes('/cache/'));
      expect(cacheRequests.map((request) => request.method)).toEqual(['GET', 'PUT']);
    } finally {
      await faulty.close();
    }
  });
});

describe('restoreCache and saveCache', () => {
  let checkout: string;
  let access: CacheAccess;
  let project: Awaited<ReturnType<typeof cachedProject>>;

  beforeAll(async () => {
    project = await cachedProject('direct', {}, 2);
    const location = await planner.locate({ repo: project.repo, sha: project.sha });
    if (!location) throw new Error('no cache location');
    access = await planner.presign(location, undefined, { write: true, expiresInSeconds: 600 });
  });

  /** Restores the key into a fresh checkout that has the same lockfile. */
  async function restoreIntoFresh(extraPaths: string[] = []) {
    const fresh = await mkdtemp(join(scratch, 'checkout-'));
    await writeFile(join(fresh, 'package-lock.json'), await readFile(join(checkout, 'package-lock.json')));
    const restored = await restoreCache(
      { ...access, stored: true },
      { checkout: fresh, extraPaths },
      { maxUnpackedBytes: 1024 ** 3, timeoutMs: 30_000 },
    );
    return { fresh, restored };
  }

  beforeEach(async () => {
    checkout = await mkdtemp(join(scratch, 'checkout-'));
    for (const file of ['package.json', 'package-lock.json']) {
      await writeFile(join(checkout, file), await readFile(join(project.projectDir, file)));
    }
  });

  it('saves node_modules with the extra paths, and restores exactly those', async () => {
    await mkdir(join(checkout, 'node_modules', 'pkg', 'lib'), { recursive: true });
    await writeFile(join(checkout, 'node_modules', 'pkg', 'lib', 'index.js'), 'module.exports = 1;\n');
    await mkdir(join(checkout, 'node_modules', '.bin'), { recursive: true });
    await symlink('../pkg/lib/index.js', join(checkout, 'node_modules', '.bin', 'pkg'));
    await mkdir(join(checkout, '.cache', 'tool'), { recursive: true });
    await writeFile(join(checkout, '.cache', 'tool', 'data'), 'cached');
    const saved = await saveCache(
      access,
      { checkout, extraPaths: ['.cache/tool/'] },
      { tmpDir: scratch, timeoutMs: 30_000 },
    );
    expect(saved).toMatchObject({ saved: true, files: 2 });

    const { fresh, restored } = await restoreIntoFresh(['.cache/tool']);
    expect(restored).toMatchObject({ hit: true, files: 2 });
    expect(await readFile(join(fresh, '.cache', 'tool', 'data'), 'utf8')).toBe('cached');
    expect((await lstat(join(fresh, 'node_modules', '.bin', 'pkg'))).isSymbolicLink()).toBe(true);

    // Other paths in the config: the archive is not for this build.
    const { fresh: other, restored: mismatch } = await restoreIntoFresh();
    expect(mismatch).toMatchObject({ hit: false, warning: false });
    expect(await lstat(join(other, 'node_modules')).catch(() => undefined)).toBeUndefined();
  });

  it('packs a tree of thousands of files whole, in slices (the event loop keeps turning), and restores each', async () => {
    for (let folder = 0; folder < 30; folder++) {
      const dir = join(checkout, 'node_modules', `pkg-${folder}`, 'lib');
      await mkdir(dir, { recursive: true });
      await Promise.all(
        Array.from({ length: 100 }, (_, file) => writeFile(join(dir, `${file}.js`), `${folder}/${file}\n`)),
      );
    }
    await mkdir(join(checkout, 'node_modules', 'empty-folder'));
    // The longest the event loop was held: a 1 ms timer notes the gaps between its turns.
    let longestGap = 0;
    let lastTurn = performance.now();
    const ticking = setInterval(() => {
      const now = performance.now();
      longestGap = Math.max(longestGap, now - lastTurn);
      lastTurn = now;
    }, 1);
    const started = performance.now();
    const saved = await saveCache(
      access,
      { checkout, extraPaths: [] },
      { tmpDir: scratch, timeoutMs: 30_000 },
    );
    const elapsed = performance.now() - started;
    clearInterval(ticking);
    expect(saved).toMatchObject({ saved: true, files: 3000 });
    // Sliced, the longest hold was 25-27 ms here; packed in one go, 230-285 ms of a 260-315 ms save.
    expect(longestGap).toBeLessThan(Math.max(elapsed / 3, 100));

    const { fresh, restored } = await restoreIntoFresh();
    expect(restored).toMatchObject({ hit: true, files: 3000 });
    for (const [folder, file] of [
      [0, 0],
      [17, 42],
      [29, 99],
    ]) {
      expect(await readFile(join(fresh, 'node_modules', `pkg-${folder}`, 'lib', `${file}.js`), 'utf8')).toBe(
        `${folder}/${file}\n`,
      );
    }
    expect((await lstat(join(fresh, 'node_modules', 'empty-folder'))).isDirectory()).toBe(true);
  });

  it('uploads a snapshot packed after the install only when no file in it changed since', async () => {
    const file = join(checkout, 'node_modules', 'pkg', 'index.js');
    await mkdir(join(checkout, 'node_modules', 'pkg'), { recursive: true });
    await writeFile(file, 'module.exports = "installed";\n');
    const target = { checkout, extraPaths: [] };
    const options = { tmpDir: scratch, timeoutMs: 30_000 };
    const restoredContent = async (): Promise<string> => {
      const { fresh, restored } = await restoreIntoFresh();
      expect(restored).toMatchObject({ hit: true });
      return readFile(join(fresh, 'node_modules', 'pkg', 'index.js'), 'utf8');
    };

    /** Saves with `snapshot`, and checks whether its archive was the one uploaded and what it holds. */
    const saveWith = async (snapshot: CacheSnapshot, packedAhead: boolean, content: string) => {
      await snapshot.packed;
      expect(await saveCache(access, target, options, snapshot)).toMatchObject({ saved: true, packedAhead });
      expect(await restoredContent()).toBe(content);
    };

    // Nothing changed after the install: the snapshot is what is uploaded.
    await sleep(20); // the install ended a while after its last write, as a step's process exits
    const untouched = startCacheSnapshot(access, target, { ...options, since: Date.now() });
    await saveWith(untouched, true, 'module.exports = "installed";\n');

    // A later step rewrote a file after it was packed: packed again, with what the checkout holds now.
    const since = Date.now();
    await sleep(30);
    const rewritten = startCacheSnapshot(access, target, { ...options, since });
    expect(await rewritten.packed).toMatchObject({ files: 1 });
    await writeFile(file, 'module.exports = "tested";\n');
    await saveWith(rewritten, false, 'module.exports = "tested";\n');

    // Changed before it was packed, but after the install: also packed again.
    const before = Date.now();
    await sleep(30);
    await writeFile(file, 'module.exports = "early";\n');
    await saveWith(
      startCacheSnapshot(access, target, { ...options, since: before }),
      false,
      'module.exports = "early";\n',
    );
    // No archive is left behind in the build's tmp either way.
    expect((await readdir(scratch)).filter((name) => name.startsWith('lambkin-cache-'))).toEqual([]);
  });

  it('saves nothing with a link to an absolute path, or past the size limit', async () => {
    await mkdir(join(checkout, 'node_modules', 'pkg'), { recursive: true });
    await writeFile(join(checkout, 'node_modules', 'pkg', 'noise.bin'), randomBytes(256 * 1024));
    expect(
      await saveCache(
        { ...access, maxBytes: 64 * 1024 },
        { checkout, extraPaths: [] },
        { tmpDir: scratch, timeoutMs: 30_000 },
      ),
    ).toMatchObject({ saved: false, reason: expect.stringMatching(/passed the limit of 65536 bytes/) });
    await symlink('/etc/passwd', join(checkout, 'node_modules', 'pkg', 'passwd'));
    expect(
      await saveCache(access, { checkout, extraPaths: [] }, { tmpDir: scratch, timeoutMs: 30_000 }),
    ).toMatchObject({
      saved: false,
      reason: expect.stringMatching(
        /node_modules\/pkg\/passwd is a symbolic link to the absolute path \/etc\/passwd/,
      ),
    });
  });

  it('misses without downloading when the checkout’s lockfile is not the key’s', async () => {
    await writeFile(join(checkout, 'package-lock.json'), '{"changed": true}\n');
    const result = await restoreCache(
      { ...access, stored: true, getUrl: 'http://127.0.0.1:9/never-asked' },
      { checkout, extraPaths: [] },
      { maxUnpackedBytes: 1024 ** 3, timeoutMs: 30_000 },
    );
    expect(result).toMatchObject({ hit: false, warning: false });
    expect(result.hit ? '' : result.reason).toMatch(
      /checkout's package-lock.json .* is not the one the key was made for/,
    );
  });

  it('warns (no hit) when the download breaks off mid-archive, and leaves no partial node_modules', async () => {
    const faulty = await startFaultyServer({ truncateAfter: 100 });
    try {
      const result = await restoreCache(
        { ...access, stored: true, getUrl: `${faulty.url}/cache.tar.gz` },
        { checkout, extraPaths: [] },
        { maxUnpackedBytes: 1024 ** 3, timeoutMs: 30_000 },
      );
      expect(result).toMatchObject({ hit: false, warning: true });
      expect(await lstat(join(checkout, 'node_modules')).catch(() => undefined)).toBeUndefined();
    } finally {
      await faulty.close();
    }
  });

  it('resumes a download the network cut off, with a Range request to the storage, and restores all of it', async () => {
    // Incompressible bytes, so the archive is larger than the cut.
    await mkdir(join(checkout, 'node_modules', 'big'), { recursive: true });
    const content = randomBytes(1024 * 1024);
    await writeFile(join(checkout, 'node_modules', 'big', 'blob.bin'), content);
    const saved = await saveCache(
      access,
      { checkout, extraPaths: [] },
      { tmpDir: scratch, timeoutMs: 30_000 },
    );
    expect(saved).toMatchObject({ saved: true });

    const cutting = await startCuttingProxy(new URL(access.getUrl).origin, 200_000);
    try {
      const fresh = await mkdtemp(join(scratch, 'checkout-'));
      await writeFile(join(fresh, 'package-lock.json'), await readFile(join(checkout, 'package-lock.json')));
      const proxied = new URL(access.getUrl);
      const restored = await restoreCache(
        { ...access, stored: true, getUrl: `${cutting.url}${proxied.pathname}${proxied.search}` },
        { checkout: fresh, extraPaths: [] },
        { maxUnpackedBytes: 1024 ** 3, timeoutMs: 30_000 },
      );
      expect(restored).toMatchObject({ hit: true, files: 1 });
      expect((await readFile(join(fresh, 'node_modules', 'big', 'blob.bin'))).equals(content)).toBe(true);
      // The second request starts where the first answer stopped: after some of the body, never
      // from its beginning (how much of the cut answer arrives depends on the sockets' buffers).
      expect(cutting.ranges).toHaveLength(2);
      expect(cutting.ranges[0]).toBeUndefined();
      const resumedAt = Number(/^bytes=(\d+)-$/.exec(cutting.ranges[1] ?? '')?.[1]);
      expect(resumedAt).toBeGreaterThan(0);
      expect(resumedAt).toBeLessThanOrEqual(200_000);
    } finally {
      await cutting.close();
    }
  });

  it('refuses archives with entries outside the cached paths, devices, and a wrong manifest', async () => {
    const lockfile = (await checkoutLockfile(checkout)) ?? { path: '', sha: '' };
    const cases: [string, Awaited<ReturnType<typeof hostileArchive>>, RegExp][] = [
      [
        'outside',
        await hostileArchive(lockfile, [{ path: 'package.json', type: 'File', content: '{}' }]),
        /is outside the cached paths/,
      ],
      [
        'dotdot',
        await hostileArchive(lockfile, [{ path: 'node_modules/../../x', type: 'File', content: 'x' }]),
        /'\.\.' path segment/,
      ],
      [
        'fifo',
        await hostileArchive(lockfile, [{ path: 'node_modules/pipe', type: 'FIFO', content: '' }]),
        /FIFO entry/,
      ],
      [
        'no manifest',
        await hostileArchive(undefined, [{ path: 'node_modules/a', type: 'File', content: 'a' }]),
        /manifest/,
      ],
    ];
    for (const [name, archive, expected] of cases) {
      const server = await startArchiveServer(archive);
      try {
        const result = await restoreCache(
          { ...access, stored: true, getUrl: server.url },
          { checkout, extraPaths: [] },
          { maxUnpackedBytes: 1024 ** 3, timeoutMs: 30_000 },
        );
        expect([name, result.hit, result.hit ? '' : result.reason]).toEqual([
          name,
          false,
          expect.stringMatching(expected),
        ]);
        expect(await readFile(join(checkout, 'package.json'), 'utf8')).not.toBe('{}');
      } finally {
        await server.close();
      }
    }
  });

  it('saves and restores in every codec this runtime has, each key naming its own', async () => {
    await mkdir(join(checkout, 'node_modules', 'pkg'), { recursive: true });
    await writeFile(join(checkout, 'node_modules', 'pkg', 'index.js'), 'module.exports = 2;\n');
    // Larger than what the unpacker buffers: streamed to its file instead.
    const big = Buffer.alloc(5 * 1024 * 1024 + 3, 'lambkin');
    await writeFile(join(checkout, 'node_modules', 'pkg', 'big.bin'), big);
    for (const codec of supportedCacheCodecs()) {
      const key = access.key.replace(
        /\.tar\.[a-z]+$/,
        `.${codec}-test.tar${codec === 'gzip' ? '.gz' : codec === 'br' ? '.br' : '.zst'}`,
      );
      const location = { key, lockfileSha: access.lockfileSha, exists: false };
      const own = await planner.presign(location, undefined, { write: true, expiresInSeconds: 600 });
      expect(
        await saveCache(own, { checkout, extraPaths: [] }, { tmpDir: scratch, timeoutMs: 30_000 }),
      ).toMatchObject({
        saved: true,
        codec,
      });
      const fresh = await mkdtemp(join(scratch, 'checkout-'));
      await writeFile(join(fresh, 'package-lock.json'), await readFile(join(checkout, 'package-lock.json')));
      const restored = await restoreCache(
        { ...own, stored: true },
        { checkout: fresh, extraPaths: [] },
        { maxUnpackedBytes: 1024 ** 3, timeoutMs: 30_000 },
      );
      expect(restored).toMatchObject({ hit: true, files: 2, codec, unpackedBytes: 20 + big.length });
      expect((await readFile(join(fresh, 'node_modules', 'pkg', 'big.bin'))).equals(big)).toBe(true);
      expect(await readFile(join(fresh, 'node_modules', 'pkg', 'index.js'), 'utf8')).toBe(
        'module.exports = 2;\n',
      );
    }
  });

  it('treats a key of a codec this runtime lacks as a miss (no download, no warning) and saves nothing', async () => {
    // zstd where this Node.js has none; an unknown extension where it has every codec.
    const foreign = supportedCacheCodecs().includes('zstd') ? '.tar.lz' : '.tar.zst';
    const key = access.key.replace(/\.tar\.[a-z]+$/, foreign);
    const restored = await restoreCache(
      { ...access, key, stored: true, getUrl: 'http://127.0.0.1:9/never-asked' },
      { checkout, extraPaths: [] },
      { maxUnpackedBytes: 1024 ** 3, timeoutMs: 30_000 },
    );
    expect(restored).toMatchObject({ hit: false, warning: false });
    expect(restored.hit ? '' : restored.reason).toMatch(/has no zstd codec|names no archive format/);
    await mkdir(join(checkout, 'node_modules'), { recursive: true });
    const saved = await saveCache(
      { ...access, key, putUrl: 'http://127.0.0.1:9/never-asked' },
      { checkout, extraPaths: [] },
      { tmpDir: scratch, timeoutMs: 30_000 },
    );
    expect(saved).toMatchObject({ saved: false, warning: false });
  });

  /** Restores, into the checkout, an archive of these entries in `codec` served over HTTP. */
  async function restoreArchiveOf(
    lockfile: { path: string; sha: string },
    entries: RawEntry[],
    codec: CacheCodec,
  ): Promise<Awaited<ReturnType<typeof restoreCache>>> {
    const server = await startArchiveServer(await hostileArchive(lockfile, entries, codec));
    const key = access.key.replace(/\.tar\.[a-z]+$/, cacheKeyExtension(codec));
    try {
      return await restoreCache(
        { ...access, key, stored: true, getUrl: server.url },
        { checkout, extraPaths: [] },
        { maxUnpackedBytes: 1024 ** 3, timeoutMs: 30_000 },
      );
    } finally {
      await server.close();
    }
  }

  it('refuses hostile entries in every codec, and over an existing node_modules too', async () => {
    const lockfile = (await checkoutLockfile(checkout)) ?? { path: '', sha: '' };
    const hostile: RawEntry[] = [
      { path: 'node_modules/a', type: 'Directory' },
      { path: 'node_modules/a/link', type: 'SymbolicLink', linkpath: '../../..' },
      { path: 'node_modules/a/link/escaped', type: 'File', content: 'x' },
    ];
    for (const existing of [false, true]) {
      if (existing) await mkdir(join(checkout, 'node_modules'), { recursive: true });
      for (const codec of supportedCacheCodecs()) {
        const result = await restoreArchiveOf(lockfile, hostile, codec);
        expect([codec, existing, result.hit ? '' : result.reason]).toEqual([
          codec,
          existing,
          expect.stringMatching(/resolves outside the checkout/),
        ]);
        expect(await lstat(join(checkout, '..', 'escaped')).catch(() => undefined)).toBeUndefined();
        expect(
          await lstat(join(checkout, 'node_modules')).then(
            () => true,
            () => false,
          ),
        ).toBe(existing);
      }
    }
  });

  it('refuses a hard link in every codec, fresh or over an existing node_modules (the cache never holds one)', async () => {
    const lockfile = (await checkoutLockfile(checkout)) ?? { path: '', sha: '' };
    const linked: RawEntry[] = [
      { path: 'node_modules/a', type: 'Directory' },
      { path: 'node_modules/a/index.js', type: 'File', content: 'module.exports = 7;\n' },
      { path: 'node_modules/a/alias.js', type: 'Link', linkpath: 'node_modules/a/index.js' },
    ];
    for (const existing of [false, true]) {
      for (const codec of supportedCacheCodecs()) {
        await rm(join(checkout, 'node_modules'), { recursive: true, force: true });
        if (existing) await mkdir(join(checkout, 'node_modules'), { recursive: true });
        const result = await restoreArchiveOf(lockfile, linked, codec);
        expect([codec, existing, result.hit ? 'hit' : result.reason]).toEqual([
          codec,
          existing,
          expect.stringMatching(/alias\.js.* is a Link entry/),
        ]);
        expect(
          await lstat(join(checkout, 'node_modules', 'a', 'alias.js')).catch(() => undefined),
        ).toBeUndefined();
      }
    }
  });

  it('normalizes and checks the configured paths', () => {
    expect(cachedPaths(['./.cache/', 'node_modules/.cache', 'a/b', 'a'])).toEqual([
      '.cache',
      'a',
      'node_modules',
    ]);
    expect(() => cachedPaths(['../up'])).toThrow(/not a folder inside the checkout/);
    expect(() => cachedPaths(['/abs'])).toThrow(/not a folder inside the checkout/);
  });
});

describe('the "cache" config key', () => {
  const resolve = (config: unknown) =>
    resolveBuildConfig({
      settingsConfig: {},
      repo: {
        files: [
          { source: '.lambkin.json', file: '.lambkin.json', format: 'lambkin', config: config as never },
        ],
        notes: [],
        hasLockfile: true,
        hasPackageJson: true,
      } as never,
      build: { event: 'push', branch: 'main', defaultBranch: 'main' },
    });

  it('is on by default, off with false, and takes extra paths', () => {
    expect(resolve({}).cache).toEqual({ enabled: true, paths: [] });
    expect(resolve({ cache: false }).cache).toEqual({ enabled: false, paths: [] });
    expect(resolve({ cache: { paths: ['.cache/x'] } }).cache).toEqual({ enabled: true, paths: ['.cache/x'] });
    expect(resolve({ cache: true, branches: { main: { cache: false } } }).cache.enabled).toBe(false);
  });
});

// --- helpers ---------------------------------------------------------------------------------

interface RawEntry {
  path: string;
  type: 'File' | 'SymbolicLink' | 'Link' | 'Directory' | 'FIFO';
  content?: string;
  linkpath?: string;
}

/**
 * A compressed tar (by default in the codec the planner's keys name) with a manifest for this
 * lockfile (none when undefined) and these raw entries.
 */
async function hostileArchive(
  lockfile: { path: string; sha: string } | undefined,
  entries: RawEntry[],
  codec: CacheCodec = preferredCacheCodec(),
) {
  const pack = new Pack({ portable: true });
  const add = (entry: RawEntry): void => {
    const content = Buffer.from(entry.content ?? '');
    const read = new ReadEntry(
      new Header({
        path: entry.path,
        type: entry.type,
        mode: entry.type === 'Directory' ? 0o755 : 0o644,
        size: entry.type === 'File' ? content.length : 0,
        mtime: new Date(),
        ...(entry.linkpath ? { linkpath: entry.linkpath } : {}),
      }),
    );
    if (entry.type === 'File') read.end(content);
    else read.end();
    pack.add(read);
  };
  if (lockfile) {
    const manifest: CacheManifest = {
      format: 1,
      runtime: runtimeId(currentRuntime()),
      nodeVersion: process.versions.node,
      lockfile,
      paths: ['node_modules'],
      createdAt: new Date().toISOString(),
    };
    add({ path: MANIFEST_NAME, type: 'File', content: JSON.stringify(manifest) });
  }
  for (const entry of entries) add(entry);
  pack.end();
  const chunks: Buffer[] = [];
  await pipeline(pack, cacheCompressor(codec), async function collect(source: AsyncIterable<Buffer>) {
    for await (const chunk of source) chunks.push(chunk);
  });
  return Buffer.concat(chunks);
}

async function listen(server: Server): Promise<{ url: string; close(): Promise<void> }> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

async function startArchiveServer(archive: Buffer) {
  return listen(
    createServer((_request, response) => {
      response.writeHead(200, { 'content-type': 'application/gzip', 'content-length': archive.length });
      response.end(archive);
    }),
  );
}

/**
 * Passes every request on to `upstream`; the first answer's connection is cut after `cutAfter`
 * bytes of its body. Records the Range of each request.
 */
async function startCuttingProxy(upstream: string, cutAfter: number) {
  const ranges: (string | undefined)[] = [];
  const server = createServer((request, response) => {
    ranges.push(request.headers.range);
    const cut = ranges.length === 1;
    const target = new URL(request.url ?? '/', upstream);
    const forwarded = httpRequest(
      target,
      { method: request.method ?? 'GET', headers: { ...request.headers, host: target.host } },
      (answer) => {
        response.writeHead(answer.statusCode ?? 502, answer.headers);
        if (!cut) {
          answer.pipe(response);
          return;
        }
        let sent = 0;
        answer.on('data', (chunk: Buffer) => {
          if (sent >= cutAfter) return;
          const part = chunk.subarray(0, cutAfter - sent);
          sent += part.length;
          // Cut once the part is handed to the kernel, so the client can read all of it first.
          if (sent >= cutAfter) response.write(part, () => request.socket.destroy());
          else response.write(part);
        });
      },
    );
    forwarded.on('error', () => response.destroy());
    request.pipe(forwarded);
  });
  const running = await listen(server);
  return { ...running, ranges };
}

/**
 * Cache requests: GET is answered 500 (or, with `truncateAfter`, a gzip stream cut off by closing
 * the socket) and every PUT's connection is dropped without an answer. Anything else (the log
 * uploads) is passed on to `upstream`.
 */
async function startFaultyServer(options: { truncateAfter?: number; upstream?: string } = {}) {
  const requests: { method: string; url: string }[] = [];
  const server = createServer((request, response) => {
    requests.push({ method: request.method ?? '', url: request.url ?? '' });
    if (options.upstream && !(request.url ?? '').includes('/cache/')) {
      const target = new URL(request.url ?? '/', options.upstream);
      const forwarded = httpRequest(
        target,
        { method: request.method ?? 'GET', headers: { ...request.headers, host: target.host } },
        (answer) => {
          response.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(response);
        },
      );
      forwarded.on('error', () => response.destroy());
      request.pipe(forwarded);
      return;
    }
    if (request.method === 'PUT') {
      request.once('data', () => request.socket.destroy());
      return;
    }
    if (options.truncateAfter !== undefined) {
      const gzip = createGzip();
      response.writeHead(200, { 'content-type': 'application/gzip', 'content-length': 1_000_000 });
      gzip.on('data', (chunk: Buffer) => response.write(chunk));
      gzip.write(Buffer.alloc(600_000, 7));
      gzip.flush(() => setTimeout(() => request.socket.destroy(), 20));
      return;
    }
    response.writeHead(500, { 'content-type': 'application/xml' });
    response.end('<Error><Code>InternalError</Code></Error>');
  });
  const running = await listen(server);
  return { ...running, requests };
}
