/**
 * `lambkin run`'s dependency cache on local disk: real runs (real npm, real runner processes) with
 * the cache in a temporary folder, and the cache's loopback server asked directly for what a build
 * must not get.
 */
import { randomBytes } from 'node:crypto';
import {
  chmod,
  cp,
  lstat,
  mkdir,
  mkdtemp,
  readFile,
  readdir,
  rm,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { localDependencyProject } from '../../src/bench/projects.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import { runLocalBuild } from '../../src/local/local-run.js';
import { LocalDependencyCache, defaultLocalCacheDir } from '../../src/local/local-cache.js';
import { localRun } from '../support/local-run.js';

let scratch: string;
let project: string;

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'lambkin-run-cache-'));
  project = join(scratch, 'project');
  await localDependencyProject(project, { count: 3, npmCache: join(scratch, 'npm-cache') });
  // Prints a marker whenever the install really runs.
  const packageJson = JSON.parse(await readFile(join(project, 'package.json'), 'utf8')) as Record<
    string,
    unknown
  >;
  packageJson.scripts = { test: 'node --test', postinstall: 'echo INSTALL-RAN' };
  await writeFile(join(project, 'package.json'), JSON.stringify(packageJson, null, 2) + '\n');
});

afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

const modeOf = async (path: string): Promise<number> => (await stat(path)).mode & 0o777;

describe('lambkin run with its dependency cache', () => {
  it('saves after a passing run, and the next run restores and skips the install', async () => {
    const cacheDir = join(scratch, 'cache-a', 'lambkin');
    const first = await localRun(project, { cacheDir });
    expect(first.result.state).toBe('success');
    expect(first.output).toContain('INSTALL-RAN');
    expect(first.output).toMatch(/Cache: miss for cache\/local\/project-[0-9a-f]{16}\//);
    expect(first.output).toMatch(
      /Cache: saved cache\/local\/project-.*, packed while the steps after the install ran/,
    );
    expect(await modeOf(cacheDir)).toBe(0o700);
    expect(await modeOf(join(cacheDir, 'deps'))).toBe(0o700);

    const second = await localRun(project, { cacheDir });
    expect(second.result.state).toBe('success');
    expect(second.output).toMatch(/Cache: restored .* install skipped/);
    expect(second.output).not.toContain('INSTALL-RAN');
    expect(second.result.steps.map((step) => step.name)).toEqual(['test']);
    // The working copy itself is never written: the build runs on its own copy.
    expect(await lstat(join(project, 'node_modules')).catch(() => undefined)).toBeUndefined();
  });

  it('saves what the steps left when a step after the install changed node_modules, and nothing when one failed', async () => {
    const changing = join(scratch, 'changing');
    await cp(project, changing, { recursive: true });
    const manifestPath = join(changing, 'package.json');
    const manifest = JSON.parse(await readFile(manifestPath, 'utf8')) as { scripts: Record<string, string> };
    // The test step rewrites an installed file (a tool's cache, a generated client), then passes
    // or fails as FAIL_AFTER says.
    manifest.scripts.test =
      "node -e \"require('fs').appendFileSync('node_modules/local-dep-0/index.js', '// touched by the tests\\n')\" && node --test";
    await writeFile(manifestPath, JSON.stringify(manifest, null, 2) + '\n');
    const cacheDir = join(scratch, 'cache-changing', 'lambkin');
    const first = await localRun(changing, { cacheDir });
    expect(first.result.state).toBe('success');
    expect(first.output).toMatch(/Cache: saved cache\/local\/changing-[^\n]* in [^\n,]*\n/);
    expect(first.output).not.toContain('packed while the steps after the install ran');
    // The archive holds the file as the steps left it: the next build restores that.
    manifest.scripts.test =
      "node -e \"process.exit(require('fs').readFileSync('node_modules/local-dep-0/index.js', 'utf8').includes('touched by the tests') ? 0 : 3)\"";
    await writeFile(manifestPath, JSON.stringify(manifest, null, 2) + '\n');
    const second = await localRun(changing, { cacheDir });
    expect(second.output).toMatch(/Cache: restored/);
    expect(second.result.state).toBe('success');

    const failing = join(scratch, 'failing');
    await cp(project, failing, { recursive: true });
    const failingManifest = JSON.parse(await readFile(join(failing, 'package.json'), 'utf8')) as {
      scripts: Record<string, string>;
    };
    failingManifest.scripts.test = 'exit 1';
    await writeFile(join(failing, 'package.json'), JSON.stringify(failingManifest, null, 2) + '\n');
    const failed = await localRun(failing, { cacheDir: join(scratch, 'cache-failing', 'lambkin') });
    expect(failed.result.state).toBe('failure');
    expect(failed.output).not.toMatch(/Cache: saved/);
    expect(await readdir(join(scratch, 'cache-failing', 'lambkin', 'deps')).catch(() => [])).toEqual([]);
  });

  it("never gives one working copy another's entry, even with the same lockfile", async () => {
    const cacheDir = join(scratch, 'cache-b', 'lambkin');
    expect((await localRun(project, { cacheDir })).output).toMatch(/Cache: saved/);
    const twin = join(scratch, 'twin', 'project');
    await cp(project, twin, { recursive: true });
    const other = await localRun(twin, { cacheDir });
    expect(other.result.state).toBe('success');
    expect(other.output).toMatch(/Cache: miss for .*: nothing is stored at this key yet/);
    expect(other.output).toContain('INSTALL-RAN');
    // Two projects, one entry each.
    const projects = await readdir(join(cacheDir, 'deps', 'local'));
    expect(projects).toHaveLength(2);
  });

  it('keeps one entry per project and runtime: a new lockfile replaces the old entry', async () => {
    const cacheDir = join(scratch, 'cache-c', 'lambkin');
    const copy = join(scratch, 'changing', 'project');
    await cp(project, copy, { recursive: true });
    await localRun(copy, { cacheDir });
    const lock = JSON.parse(await readFile(join(copy, 'package-lock.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    await writeFile(join(copy, 'package-lock.json'), JSON.stringify(lock, null, 4) + '\n');
    const changed = await localRun(copy, { cacheDir });
    expect(changed.output).toMatch(/Cache: saved/);
    const [folder] = await readdir(join(cacheDir, 'deps', 'local'));
    const runtimes = await readdir(join(cacheDir, 'deps', 'local', folder ?? ''));
    const entries = await readdir(join(cacheDir, 'deps', 'local', folder ?? '', runtimes[0] ?? ''));
    expect(entries).toHaveLength(1);
  });

  it('narrows a folder open to others to 0700, and runs without the cache when the folder is a link', async () => {
    const open = join(scratch, 'cache-open');
    await mkdir(open, { mode: 0o755 });
    const cache = await LocalDependencyCache.start({ dir: open, projectPath: project });
    await cache.close();
    expect(await modeOf(open)).toBe(0o700);

    const elsewhere = join(scratch, 'elsewhere');
    await mkdir(elsewhere);
    const linked = join(scratch, 'cache-link');
    await symlink(elsewhere, linked);
    const logger = createMemoryLogger();
    let output = '';
    const result = await runLocalBuild({
      path: project,
      cacheDir: linked,
      write: (text) => (output += text),
      logger,
    });
    expect(result.state).toBe('success');
    expect(logger.entries.map((entry) => entry.message)).toContainEqual(
      expect.stringMatching(/dependency cache is off for this run: .*cache-link is not a folder/),
    );
    expect(output).not.toMatch(/Cache: (saved|restored|miss)/);
    expect(await readdir(elsewhere)).toEqual([]);
  });

  it("keeps npm's own cache from run to run (as root, handed from one build sandbox to the next)", async () => {
    const warmth = join(scratch, 'npm-warmth');
    await mkdir(warmth);
    // A name of this test run's: the runner's work root outlives test runs when not run as root.
    const marker = `lambkin-test-${randomBytes(6).toString('hex')}`;
    const manifest = { name: 'npm-warmth', version: '1.0.0', private: true };
    const check =
      `const f = require('path').join(process.env.npm_config_cache, '${marker}'); const fs = require('fs'); ` +
      // Joined at run time: npm echoes the script, which must not hold the words looked for.
      "console.log(['NPM', 'CACHE', fs.existsSync(f) ? 'WARM' : 'COLD'].join('-')); fs.writeFileSync(f, 'x');";
    await writeFile(
      join(warmth, 'package.json'),
      JSON.stringify({ ...manifest, scripts: { test: `node -e "${check}"` } }),
    );
    await writeFile(
      join(warmth, 'package-lock.json'),
      JSON.stringify({ ...manifest, lockfileVersion: 3, requires: true, packages: { '': manifest } }),
    );
    const cacheDir = join(scratch, 'cache-npm', 'lambkin');
    // A work root of this test's: the shared one's kept caches are evicted by other tests' builds.
    await chmod(scratch, 0o711);
    const workRoot = join(scratch, 'work-root');
    const first = await localRun(warmth, { cacheDir, workRoot });
    expect(first.result.state).toBe('success');
    expect(first.output).toContain('NPM-CACHE-COLD');
    const second = await localRun(warmth, { cacheDir, workRoot });
    expect(first.output).not.toContain('NPM-CACHE-WARM');
    expect(second.output).toContain('NPM-CACHE-WARM');
  });

  (process.getuid?.() === 0 ? it : it.skip)(
    'moves the tree the run before handed back into the next run, as root; none a step changed, none once the cache is gone',
    async () => {
      // A work root of this test's: the shared one's kept trees are evicted by other tests' builds.
      await chmod(scratch, 0o711);
      const workRoot = join(scratch, 'work-root-trees');
      const cacheDir = join(scratch, 'cache-trees', 'lambkin');
      const first = await localRun(project, { cacheDir, workRoot });
      expect(first.output).toContain('INSTALL-RAN');
      expect(first.output).toContain('Cache: node_modules handed back, kept on this machine');
      const second = await localRun(project, { cacheDir, workRoot });
      expect(second.result.state).toBe('success');
      expect(second.output).toMatch(
        /Cache: restored \S+ from the tree this machine kept for it \(\d+ files, [\d.]+ MiB, moved in whole\) in .*; install skipped/,
      );
      expect(second.output).not.toContain('INSTALL-RAN');
      expect(second.output).toContain('Cache: node_modules handed back');

      // The cache deleted: the kept tree is not lent (the run installs), and its tree replaces it.
      await rm(cacheDir, { recursive: true, force: true });
      const afterClear = await localRun(project, { cacheDir, workRoot });
      expect(afterClear.output).toMatch(/Cache: miss for .*: nothing is stored at this key yet/);
      expect(afterClear.output).toContain('INSTALL-RAN');

      // A test step that writes into node_modules: its tree is not kept, the next run unpacks.
      const touching = join(scratch, 'touching');
      await cp(project, touching, { recursive: true });
      const manifestPath = join(touching, 'package.json');
      const manifest = JSON.parse(await readFile(manifestPath, 'utf8')) as {
        scripts: Record<string, string>;
      };
      manifest.scripts.test =
        "node -e \"require('fs').writeFileSync('node_modules/.test-cache', 'x')\" && node --test";
      await writeFile(manifestPath, JSON.stringify(manifest, null, 2) + '\n');
      const touched = await localRun(touching, { cacheDir, workRoot });
      expect(touched.output).toMatch(
        /Cache: node_modules not kept on this machine: \S*node_modules changed after the install/,
      );
      const unpacked = await localRun(touching, { cacheDir, workRoot });
      expect(unpacked.output).toMatch(/Cache: restored \S+ \(\d+ files, .* MiB\/s; install skipped/);
      expect(unpacked.result.state).toBe('success');

      // A tool's cache the tests make in node_modules/.cache (nyc, babel-loader): the tree is kept
      // without it, as the archive packed after the install holds none.
      const toolCache = join(scratch, 'tool-cache');
      await cp(project, toolCache, { recursive: true });
      const toolManifest = JSON.parse(await readFile(join(toolCache, 'package.json'), 'utf8')) as {
        scripts: Record<string, string>;
      };
      toolManifest.scripts.test =
        "node -e \"const fs = require('fs'); if (fs.existsSync('node_modules/.cache')) process.exit(4); " +
        "fs.mkdirSync('node_modules/.cache/nyc', { recursive: true }); fs.writeFileSync('node_modules/.cache/nyc/x', '1')\"";
      await writeFile(join(toolCache, 'package.json'), JSON.stringify(toolManifest, null, 2) + '\n');
      const withToolCache = await localRun(toolCache, { cacheDir, workRoot });
      expect(withToolCache.output).toContain('Cache: node_modules handed back');
      const again = await localRun(toolCache, { cacheDir, workRoot });
      expect(again.output).toMatch(/Cache: restored \S+ from the tree this machine kept for it/);
      expect(again.result.state).toBe('success');
    },
    120_000,
  );

  it('is under XDG_CACHE_HOME when it is absolute, else under ~/.cache', () => {
    expect(defaultLocalCacheDir({ XDG_CACHE_HOME: '/x/cache' }, '/home/u')).toBe('/x/cache/lambkin');
    expect(defaultLocalCacheDir({ XDG_CACHE_HOME: 'relative' }, '/home/u')).toBe('/home/u/.cache/lambkin');
    expect(defaultLocalCacheDir({}, '/root')).toBe('/root/.cache/lambkin');
  });
});

describe("the local cache's loopback server", () => {
  let cache: LocalDependencyCache;
  beforeAll(async () => {
    cache = await LocalDependencyCache.start({ dir: join(scratch, 'cache-server'), projectPath: project });
  });
  afterAll(() => cache.close());

  it('answers only granted keys with the run token, writes once, and a read grant cannot write', async () => {
    const location = await cache.locate({}, {});
    if (!location) throw new Error('the project has a lockfile');
    expect(location.exists).toBe(false);
    const readOnly = await cache.presign(location, undefined, { write: false, expiresInSeconds: 60 });
    expect(readOnly.putUrl).toBeUndefined();
    const body = Buffer.from('archive');
    const put = (url: string, headers: Record<string, string> = { 'if-none-match': '*' }) =>
      fetch(url, { method: 'PUT', body, headers: { ...headers, 'content-length': String(body.length) } });
    // An untrusted build gets no PUT; the GET URL does not take one either.
    expect((await put(readOnly.getUrl)).status).toBe(403);
    expect((await fetch(readOnly.getUrl)).status).toBe(404);

    const writable = await cache.presign(location, undefined, { write: true, expiresInSeconds: 60 });
    if (!writable.putUrl) throw new Error('a trusted build of a missing key gets a PUT');
    const wrongToken = writable.putUrl.replace(/\/[0-9a-f]{48}\//, `/${'0'.repeat(48)}/`);
    expect(wrongToken).not.toBe(writable.putUrl);
    expect((await put(wrongToken)).status).toBe(403);
    expect((await put(writable.putUrl, {})).status).toBe(400); // S3's rule: If-None-Match: * signed in
    expect((await put(writable.putUrl)).status).toBe(200);
    expect(Buffer.from(await (await fetch(writable.getUrl)).arrayBuffer()).toString()).toBe('archive');
    // Written once: the grant is used up.
    expect((await put(writable.putUrl)).status).toBe(403);
    expect((await cache.locate({}, {}))?.exists).toBe(true);

    // A key of another project is never granted.
    await expect(
      cache.presign(
        { ...location, key: location.key.replace(/project-[0-9a-f]+/, 'other-0000') },
        undefined,
        {
          write: true,
          expiresInSeconds: 60,
        },
      ),
    ).rejects.toThrow(/not this project's key/);
    const traversal = writable.getUrl.replace(/\/cache\/.*$/, '/cache/local/../../../../etc/passwd');
    expect((await fetch(traversal)).status).toBe(403);
  });
});
