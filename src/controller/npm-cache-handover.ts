/**
 * The trusted builds' npm cache, handed from one sandboxed build to the next (the local stack and
 * `lambkin run` as root). Unsandboxed, and in a warm Lambda container, the runner keeps its
 * trusted npm cache in its work root between builds; a build sandbox's work root goes with its
 * build, so every build's `npm ci` would start from an empty cache and download every package.
 *
 * What holds (docs/security.md):
 * - Only trusted builds' caches are handed on, only to trusted builds, and only within one key:
 *   a repository (and, for `lambkin run`, one working copy). Untrusted builds start empty.
 * - The cache is taken back only once every process of the build is gone (the sandbox's teardown
 *   calls `keep` between the kill and the work root's removal), so nothing changes it during the
 *   checks. It is kept only when it holds nothing but folders and plain files of the build's uid,
 *   each file with one link (no link to a file elsewhere, no device, no setuid bit survives: the
 *   modes are reset), within the size limit; anything else and it is removed with the work root.
 * - Between builds it is root's, in a folder only root may enter; it is given to the next build's
 *   uid before it is moved into that build's work root, ahead of the runner's input.
 */
import { randomBytes, createHash } from 'node:crypto';
import { chmodSync, lchownSync, lstatSync, opendirSync, type Stats } from 'node:fs';
import { chown, lstat, mkdir, readdir, rename, rm, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { LambkinError } from '../core/errors.js';
import { DEFAULT_MAX_NPM_CACHE_BYTES, NPM_CACHE_FOLDER, TRUST_CLASS_FOLDERS } from '../core/work-layout.js';

/** The kept caches' folder, beside the sandboxes' work roots (one file system: moves are renames). */
export const NPM_CACHES_FOLDER = 'npm-caches';

export class NpmCacheHandoverError extends LambkinError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('NPM_CACHE_HANDOVER', message, options);
  }
}

export interface NpmCacheHandoverOptions {
  /** Where kept caches wait for their next build: made 0700, root's. */
  dir: string;
  /** Mixed into every key: `lambkin run` passes the working copy's path, so copies never share. */
  scope?: string;
  /** How many keys' caches are kept; the least recently kept go first. Default 8. */
  keep?: number;
  /** A cache larger than this is not kept. Default the runner's own limit, 1 GiB. */
  maxBytes?: number;
  /** A cache with more entries than this is not kept. Default 500 000. */
  maxEntries?: number;
}

/** The sandbox's part the handover needs (src/controller/build-sandbox.ts). */
export interface SandboxOwner {
  readonly uid: number;
  readonly gid: number;
  readonly workRoot: string;
}

/** What `keep` did, for the stack's log and the tests. */
export type KeepResult = { kept: true; bytes: number; entries: number } | { kept: false; reason: string };

const DEFAULT_KEEP = 8;
const DEFAULT_MAX_ENTRIES = 500_000;
/** A walk holds the event loop at most about this long at a time. */
const WALK_SLICE_MS = 10;
const KEY_PATTERN = /^[0-9a-f]{32}$/;

export class NpmCacheHandover {
  constructor(private readonly options: NpmCacheHandoverOptions) {}

  /**
   * Moves the npm cache kept for `repo` into the sandbox's work root, where the runner's trusted
   * builds look for theirs, owned by the sandbox's uid. False when none was kept (or another build
   * of the key has it now: each kept cache serves one build).
   */
  async lend(repo: string, sandbox: SandboxOwner): Promise<boolean> {
    const store = await this.store();
    const kept = join(store, this.keyOf(repo));
    const taken = `${kept}.lent-${randomBytes(6).toString('hex')}`;
    try {
      await rename(kept, taken);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw error;
    }
    try {
      // Given to the build's uid while it is still in root's folder, then moved in whole.
      await walkTree(taken, (path) => lchownSync(path, sandbox.uid, sandbox.gid));
      const classFolder = join(sandbox.workRoot, TRUST_CLASS_FOLDERS.trusted);
      await mkdir(classFolder, { mode: 0o700 }).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'EEXIST') throw error;
      });
      const stats = await lstat(classFolder);
      if (!stats.isDirectory() || (stats.uid !== 0 && stats.uid !== sandbox.uid)) {
        throw new NpmCacheHandoverError(
          `${classFolder} is not a folder of the build's: not lending it a cache.`,
        );
      }
      await chown(classFolder, sandbox.uid, sandbox.gid);
      await rename(taken, join(classFolder, NPM_CACHE_FOLDER));
      return true;
    } catch (error) {
      await rm(taken, { recursive: true, force: true });
      throw error;
    }
  }

  /**
   * Takes the trusted npm cache out of a sandbox's work root for `repo`'s next build. Call it only
   * once every process of the sandbox's uid is gone, before the work root is removed.
   */
  async keep(repo: string, sandbox: SandboxOwner): Promise<KeepResult> {
    const classFolder = join(sandbox.workRoot, TRUST_CLASS_FOLDERS.trusted);
    const cache = join(classFolder, NPM_CACHE_FOLDER);
    for (const folder of [sandbox.workRoot, classFolder, cache]) {
      const stats = await lstat(folder).catch(() => undefined);
      if (!stats) return { kept: false, reason: `${folder} is not there` };
      if (!stats.isDirectory() || stats.uid !== sandbox.uid) {
        return { kept: false, reason: `${folder} is not a folder of the build's uid` };
      }
    }
    const maxBytes = this.options.maxBytes ?? DEFAULT_MAX_NPM_CACHE_BYTES;
    const maxEntries = this.options.maxEntries ?? DEFAULT_MAX_ENTRIES;
    let bytes = 0;
    let entries = 0;
    try {
      await walkTree(
        cache,
        (path, stats) => {
          if (stats.uid !== sandbox.uid) throw new Refusal(`${path} is not the build's (uid ${stats.uid})`);
          if (stats.isFile()) {
            if (stats.nlink !== 1) throw new Refusal(`${path} has ${stats.nlink} links`);
            bytes += stats.size;
          } else if (!stats.isDirectory()) {
            throw new Refusal(`${path} is neither a folder nor a plain file`);
          }
          if (++entries > maxEntries) throw new Refusal(`it holds more than ${maxEntries} entries`);
          if (bytes > maxBytes) throw new Refusal(`it holds more than ${maxBytes} bytes`);
          // Root's from here on, with no setuid, setgid or sticky bit and closed to everyone else.
          lchownSync(path, 0, 0);
          chmodSync(path, stats.isDirectory() ? 0o700 : 0o600);
        },
        maxEntries,
      );
    } catch (error) {
      if (error instanceof Refusal) return { kept: false, reason: error.message };
      throw error;
    }
    const store = await this.store();
    const key = this.keyOf(repo);
    const incoming = join(store, `${key}.in-${randomBytes(6).toString('hex')}`);
    await rename(cache, incoming);
    const kept = join(store, key);
    // The newest wins: the cache a build just used holds what its lockfile needed.
    const old = `${kept}.old-${randomBytes(6).toString('hex')}`;
    await rename(kept, old).catch(() => undefined);
    await rm(old, { recursive: true, force: true });
    try {
      await rename(incoming, kept);
    } catch {
      // Another build of the key kept its cache in between: that one stays.
      await rm(incoming, { recursive: true, force: true });
      return { kept: false, reason: 'another build of the same key kept its cache first' };
    }
    const now = new Date();
    await utimes(kept, now, now);
    await this.evict(store);
    return { kept: true, bytes, entries };
  }

  private keyOf(repo: string): string {
    return createHash('sha256')
      .update(`${this.options.scope ?? ''}\0${repo}`)
      .digest('hex')
      .slice(0, 32);
  }

  private async store(): Promise<string> {
    const store = this.options.dir;
    await mkdir(store, { recursive: true, mode: 0o700 });
    const stats = await lstat(store);
    if (!stats.isDirectory() || stats.uid !== 0 || (stats.mode & 0o077) !== 0) {
      throw new NpmCacheHandoverError(
        `${store} is not a folder only root may enter (a link, someone else's, or open to others): ` +
          'remove it; the stack makes it again.',
      );
    }
    return store;
  }

  /** Keeps the most recently kept caches; removes the rest and what an interrupted move left. */
  private async evict(store: string): Promise<void> {
    const names = await readdir(store);
    const kept: { name: string; mtimeMs: number }[] = [];
    for (const name of names) {
      const stats = await lstat(join(store, name)).catch(() => undefined);
      if (!stats) continue;
      if (KEY_PATTERN.test(name)) kept.push({ name, mtimeMs: stats.mtimeMs });
      // A lent or incoming cache of a stack that died mid-move: old enough to be nobody's.
      else if (Date.now() - stats.mtimeMs > STRAY_MAX_AGE_MS)
        await rm(join(store, name), { recursive: true, force: true });
    }
    kept.sort((a, b) => b.mtimeMs - a.mtimeMs);
    for (const { name } of kept.slice(this.options.keep ?? DEFAULT_KEEP)) {
      await rm(join(store, name), { recursive: true, force: true });
    }
  }
}

/** Past any build's time limit. */
const STRAY_MAX_AGE_MS = 24 * 3600 * 1000;

class Refusal extends Error {}

/**
 * Calls `visit` for `root` and every entry below it (a folder before its entries), without
 * following links, synchronously in slices of about WALK_SLICE_MS: a promise per entry would take
 * several times longer on a cache of tens of thousands of files.
 */
async function walkTree(
  root: string,
  visit: (path: string, stats: Stats) => void,
  maxEntries = Infinity,
): Promise<void> {
  const pending = [root];
  let sliceStart = performance.now();
  for (let path = pending.pop(); path !== undefined; path = pending.pop()) {
    const stats = lstatSync(path);
    visit(path, stats);
    if (stats.isDirectory()) {
      // Entry by entry: a folder of millions of names never sits in memory whole.
      const folder = opendirSync(path);
      try {
        for (let entry = folder.readSync(); entry !== null; entry = folder.readSync()) {
          pending.push(join(path, entry.name));
          if (pending.length > maxEntries) throw new Refusal(`it holds more than ${maxEntries} entries`);
        }
      } finally {
        folder.closeSync();
      }
    }
    if (performance.now() - sliceStart > WALK_SLICE_MS) {
      await yieldToEventLoop();
      sliceStart = performance.now();
    }
  }
}
