/**
 * The trusted npm cache handed from one sandboxed build to the next (src/controller/npm-cache-handover.ts):
 * real folders chowned to build uids, the trees a hostile build would leave (links to root's files,
 * hard links, a FIFO, a setuid file, someone else's file, a swapped folder), and, in real build
 * sandboxes, stand-in runners that read and write their npm cache, one of them hostile. Root only:
 * handing a folder from uid to uid is root's job.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import {
  chmod,
  chown,
  link,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_FIRST_SANDBOX_UID } from '../../src/controller/build-sandbox.js';
import { NpmCacheHandover, type SandboxOwner } from '../../src/controller/npm-cache-handover.js';
import { ProcessRunnerInvoker } from '../../src/controller/runner-invoker.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import type { RunnerInput, RunnerOutcome } from '../../src/core/protocol.js';

const asRoot = process.getuid?.() === 0;
const describeAsRoot = asRoot ? describe : describe.skip;

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'lambkin-npm-handover-'));
  await chmod(scratch, 0o755);
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

// Below the build sandbox's range, never used by a real build while these tests run.
const FIRST_UID = DEFAULT_FIRST_SANDBOX_UID - 100;
let nextUid = FIRST_UID;

/** A work root as a sandbox has it (the build's uid's, 0700) with a trusted npm cache in it. */
async function sandboxWithCache(files: Record<string, string> = { 'index-v5/ab/cd': 'entry' }): Promise<{
  sandbox: SandboxOwner;
  cache: string;
}> {
  const uid = nextUid++;
  const workRoot = await mkdtemp(join(scratch, 'sandbox-'));
  const cache = join(workRoot, 'trusted', 'npm-cache');
  for (const [name, content] of Object.entries(files)) {
    await mkdir(join(cache, name, '..'), { recursive: true });
    await writeFile(join(cache, name), content);
  }
  await mkdir(cache, { recursive: true });
  await chownTree(workRoot, uid);
  return { sandbox: { uid, gid: uid, workRoot }, cache };
}

async function emptySandbox(): Promise<SandboxOwner> {
  const uid = nextUid++;
  const workRoot = await mkdtemp(join(scratch, 'sandbox-'));
  await chown(workRoot, uid, uid);
  return { uid, gid: uid, workRoot };
}

async function chownTree(path: string, uid: number): Promise<void> {
  execFileSync('chown', ['-R', '-h', `${uid}:${uid}`, path]);
}

const handoverIn = async (name: string, options: { maxEntries?: number; keep?: number } = {}) =>
  new NpmCacheHandover({ dir: join(await mkdtemp(join(scratch, `${name}-`)), 'npm-caches'), ...options });

describeAsRoot('the npm cache handover', () => {
  it("keeps a build's cache as root's, then lends it to the next build of the repository as that build's", async () => {
    const store = join(await mkdtemp(join(scratch, 'round-')), 'npm-caches');
    const handover = new NpmCacheHandover({ dir: store });
    const first = await sandboxWithCache({ 'index-v5/ab/cd': 'entry', 'content-v2/sha512/00/11': 'tarball' });
    await chmod(join(first.cache, 'content-v2/sha512/00/11'), 0o4755); // a setuid bit goes
    expect(await handover.keep('o/r', first.sandbox)).toEqual({ kept: true, bytes: 12, entries: 8 });
    expect(existsSync(first.cache)).toBe(false);

    // Between builds: root's, closed to everyone, no setuid bit.
    expect((await stat(store)).mode & 0o777).toBe(0o700);
    const [key] = await readdir(store);
    const kept = join(store, key ?? '');
    const tarball = await stat(join(kept, 'content-v2/sha512/00/11'));
    expect([tarball.uid, tarball.mode & 0o7777]).toEqual([0, 0o600]);

    // Another repository gets nothing; the next build of this one gets it, as its own uid.
    const other = await emptySandbox();
    expect(await handover.lend('o/other', other)).toBe(false);
    const next = await emptySandbox();
    expect(await handover.lend('o/r', next)).toBe(true);
    const lent = join(next.workRoot, 'trusted', 'npm-cache');
    expect(await readFile(join(lent, 'content-v2/sha512/00/11'), 'utf8')).toBe('tarball');
    for (const path of [join(next.workRoot, 'trusted'), lent, join(lent, 'index-v5/ab/cd')]) {
      expect((await lstat(path)).uid).toBe(next.uid);
    }
    // Lent to one build only: a build beside it starts empty.
    expect(await handover.lend('o/r', await emptySandbox())).toBe(false);
  });

  it('keeps nothing when the scope differs (a working copy never gets another copy’s cache)', async () => {
    const dir = join(await mkdtemp(join(scratch, 'scope-')), 'npm-caches');
    const build = await sandboxWithCache();
    expect(
      (await new NpmCacheHandover({ dir, scope: '/home/a/project' }).keep('local/project', build.sandbox))
        .kept,
    ).toBe(true);
    expect(
      await new NpmCacheHandover({ dir, scope: '/home/b/project' }).lend(
        'local/project',
        await emptySandbox(),
      ),
    ).toBe(false);
    expect(
      await new NpmCacheHandover({ dir, scope: '/home/a/project' }).lend(
        'local/project',
        await emptySandbox(),
      ),
    ).toBe(true);
  });

  it.each([
    [
      'a link to a file of root’s',
      async (cache: string) => symlink('/etc/shadow', join(cache, 'index-v5', 'evil')),
      /neither a folder nor a plain file/,
    ],
    [
      'a hard link (to a file elsewhere in the work root)',
      async (cache: string) => {
        await writeFile(join(cache, '..', 'outside'), 'x');
        await link(join(cache, '..', 'outside'), join(cache, 'index-v5', 'linked'));
      },
      /has 2 links/,
    ],
    [
      'a FIFO',
      async (cache: string) => execFileSync('mkfifo', [join(cache, 'index-v5', 'pipe')]),
      /neither a folder nor a plain file/,
    ],
  ])('refuses a cache holding %s, and lends nothing after', async (_what, plant, reason) => {
    const handover = await handoverIn('hostile');
    const build = await sandboxWithCache();
    await plant(build.cache);
    await chownTree(build.sandbox.workRoot, build.sandbox.uid);
    const result = await handover.keep('o/r', build.sandbox);
    expect(result.kept).toBe(false);
    expect(result.kept ? '' : result.reason).toMatch(reason);
    expect(await handover.lend('o/r', await emptySandbox())).toBe(false);
    // Left where it was, for the teardown to remove with the work root; /etc/shadow untouched.
    expect(existsSync(build.cache)).toBe(true);
    expect((await lstat('/etc/shadow').catch(() => ({ uid: 0 }))).uid).toBe(0);
  });

  it("refuses a file that is not the build's, a swapped folder, and too many entries", async () => {
    const handover = await handoverIn('refusals', { maxEntries: 5 });
    const foreign = await sandboxWithCache();
    await chown(join(foreign.cache, 'index-v5/ab/cd'), 0, 0);
    expect(await handover.keep('o/r', foreign.sandbox)).toEqual({
      kept: false,
      reason: expect.stringMatching(/is not the build's \(uid 0\)/),
    });

    // The class folder swapped for a link to a folder the build owns elsewhere.
    const swapped = await sandboxWithCache();
    const elsewhere = await mkdtemp(join(scratch, 'elsewhere-'));
    await rm(join(swapped.sandbox.workRoot, 'trusted'), { recursive: true });
    await symlink(elsewhere, join(swapped.sandbox.workRoot, 'trusted'));
    expect((await handover.keep('o/r', swapped.sandbox)).kept).toBe(false);

    const many = await sandboxWithCache(Object.fromEntries([1, 2, 3, 4, 5, 6].map((n) => [`f${n}`, 'x'])));
    expect(await handover.keep('o/r', many.sandbox)).toEqual({
      kept: false,
      reason: 'it holds more than 5 entries',
    });
    expect(await handover.lend('o/r', await emptySandbox())).toBe(false);
  });

  it('keeps the newest cache of a key and the most recently kept keys only', async () => {
    const handover = await handoverIn('evict', { keep: 2 });
    await handover.keep('o/a', (await sandboxWithCache({ first: 'a1' })).sandbox);
    await handover.keep('o/a', (await sandboxWithCache({ second: 'a2' })).sandbox);
    await handover.keep('o/b', (await sandboxWithCache({ b: 'b' })).sandbox);
    await handover.keep('o/c', (await sandboxWithCache({ c: 'c' })).sandbox);
    const a = await emptySandbox();
    expect(await handover.lend('o/a', a)).toBe(false); // the least recently kept went
    const b = await emptySandbox();
    expect(await handover.lend('o/b', b)).toBe(true);
    expect(await handover.lend('o/c', await emptySandbox())).toBe(true);
    expect(await readdir(join(b.workRoot, 'trusted', 'npm-cache'))).toEqual(['b']);
  });

  it('refuses a store folder that is not root’s alone', async () => {
    const dir = join(await mkdtemp(join(scratch, 'open-')), 'npm-caches');
    await mkdir(dir, { mode: 0o777 });
    await chmod(dir, 0o777);
    await expect(new NpmCacheHandover({ dir }).lend('o/r', await emptySandbox())).rejects.toThrow(
      /not a folder only root may enter/,
    );
  });
});

/**
 * A stand-in runner in a real build sandbox: answers with what its trusted npm cache held
 * (`marker`'s content or "empty"), then writes its own id there. A hostile one leaves a link to
 * /etc/shadow and a process that keeps writing into the cache after the runner has answered.
 */
const STAND_IN = [
  'sh',
  '-c',
  `input=$(cat)
id=$(printf '%s' "$input" | sed -n 's/.*"id":"\\([a-z0-9-]*\\)".*/\\1/p')
cache="$LAMBKIN_WORK_ROOT/trusted/npm-cache"
seen=$(cat "$cache/marker" 2>/dev/null || echo empty)
mkdir -p "$cache" && printf '%s' "$id" > "$cache/marker"
case "$input" in *'"hostile":true'*)
  ln -s /etc/shadow "$cache/shadow"
  (while :; do printf x >> "$cache/growing"; done) >/dev/null 2>&1 &;;
esac
printf '{"kind":"outcome","state":"success","description":"%s","steps":[],"log":{}}\\n' "$seen"`,
];

const input = (id: string, build: { repo: string; trusted: boolean }, extra: Record<string, unknown> = {}) =>
  ({
    deadlineAt: Date.now() + 60_000,
    id,
    build: { number: 1, ...build },
    ...extra,
  }) as unknown as RunnerInput;

/** The sandboxes' parent, as the stack makes it: root's, passable by the build uids. */
async function workRootFolder(): Promise<string> {
  const folder = await mkdtemp(join(scratch, 'work-'));
  await chmod(folder, 0o711);
  return folder;
}

/** The stand-in runner in real build sandboxes, with the handover's store beside them. */
async function sandboxedInvoker() {
  const workRoot = await workRootFolder();
  const logger = createMemoryLogger();
  const invoker = new ProcessRunnerInvoker({
    command: STAND_IN,
    sandbox: true,
    workRoot,
    npmCaches: { handover: new NpmCacheHandover({ dir: join(workRoot, 'npm-caches') }), logger },
  });
  return { invoker, logger };
}

const seen = (outcome: RunnerOutcome): string => outcome.description;

describeAsRoot('sandboxed builds with the npm cache handover', () => {
  it('gives a trusted build the last trusted build’s cache of its repository, and untrusted builds none', async () => {
    const { invoker, logger } = await sandboxedInvoker();
    const trusted = { repo: 'o/r', trusted: true };
    expect(seen(await invoker.run(input('one', trusted)))).toBe('empty');
    expect(seen(await invoker.run(input('two', trusted)))).toBe('one');
    // Untrusted builds neither read the trusted cache nor leave theirs for a trusted build.
    expect(seen(await invoker.run(input('fork', { repo: 'o/r', trusted: false })))).toBe('empty');
    expect(seen(await invoker.run(input('three', trusted)))).toBe('two');
    expect(seen(await invoker.run(input('elsewhere', { repo: 'o/other', trusted: true })))).toBe('empty');
    expect(logger.entries.filter((entry) => entry.level !== 'info')).toEqual([]);
  }, 30_000);

  it('keeps nothing of a hostile build: the next build starts empty and root’s files stay root’s', async () => {
    const { invoker, logger } = await sandboxedInvoker();
    const trusted = { repo: 'o/r', trusted: true };
    const shadowBefore = await lstat('/etc/shadow').catch(() => undefined);
    expect(seen(await invoker.run(input('one', trusted)))).toBe('empty');
    expect(seen(await invoker.run(input('evil', trusted, { hostile: true })))).toBe('one');
    // Its writer was killed with the build, and its cache was not kept.
    expect(logger.entries.map((entry) => entry.message)).toContainEqual(
      expect.stringMatching(/npm cache: not kept: .*shadow is neither a folder nor a plain file/),
    );
    expect(seen(await invoker.run(input('after', trusted)))).toBe('empty');
    const shadowAfter = await lstat('/etc/shadow').catch(() => undefined);
    expect(shadowAfter?.uid).toBe(shadowBefore?.uid);
    expect(shadowAfter?.mode).toBe(shadowBefore?.mode);
  }, 30_000);
});

describe('runners without the build sandbox (not run as root)', () => {
  it('keep their own npm cache in their work root, and nothing is handed over', async () => {
    const workRoot = await mkdtemp(join(scratch, 'unsandboxed-'));
    const store = join(workRoot, 'npm-caches');
    const invoker = new ProcessRunnerInvoker({
      command: STAND_IN,
      workRoot,
      npmCaches: { handover: new NpmCacheHandover({ dir: store }) },
    });
    const trusted = { repo: 'o/r', trusted: true };
    expect(seen(await invoker.run(input('one', trusted)))).toBe('empty');
    expect(seen(await invoker.run(input('two', trusted)))).toBe('one');
    expect(existsSync(store)).toBe(false);
  });
});
