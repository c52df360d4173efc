/**
 * What the controller keeps from one sandboxed build for the next (the local stack and `lambkin run`
 * as root): a store of folder trees only root may enter, the checks a tree passes before it is
 * kept, and the walk both use. The npm cache (npm-cache-handover.ts) and the dependency tree
 * (dependency-handover.ts) are kept this way.
 *
 * A tree is taken only once every process of its build is gone (the sandbox's teardown), so nothing
 * changes it during the checks; it is kept only when it holds nothing but folders, plain files with
 * one link each (no link to a file elsewhere, so a chown changes nothing outside) and, where
 * allowed, symbolic links to relative paths, all of the build's uid, within the limits. While kept
 * it is root's, with no setuid, setgid or sticky bit; links are moved and chowned as links, never
 * followed.
 */
import { randomBytes, createHash } from 'node:crypto';
import { chmodSync, lchownSync, lstatSync, opendirSync, readlinkSync, type Stats } from 'node:fs';
import { chown, lstat, mkdir, readdir, rename, rm, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { LambkinError } from '../core/errors.js';
import { TRUST_CLASS_FOLDERS } from '../core/work-layout.js';
import { removeInBackground } from './background-removal.js';

export class KeptTreeError extends LambkinError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('KEPT_TREE', message, options);
  }
}

/** The sandbox's part a handover needs (src/controller/build-sandbox.ts). */
export interface SandboxOwner {
  readonly uid: number;
  readonly gid: number;
  readonly workRoot: string;
}

/** What a `keep` did, for the stack's log and the tests. */
export type KeepResult = { kept: true; bytes: number; entries: number } | { kept: false; reason: string };

export interface TreeLimits {
  maxBytes: number;
  maxEntries: number;
  /**
   * A dependency tree: symbolic links to relative paths are kept (node_modules/.bin), and the
   * modes' owner bits and read and execute bits for others (a package's scripts stay executable).
   * Otherwise (the npm cache) any link is refused and every folder becomes 0700, every file 0600.
   */
  dependencyTree: boolean;
}

/** Why a tree is not kept: the caller says so and removes it with the work root. */
export class Refusal extends Error {}

const KEY_PATTERN = /^[0-9a-f]{32}$/;
/** Past any build's time limit: a lent or incoming tree this old was left by a stack that died. */
const STRAY_MAX_AGE_MS = 24 * 3600 * 1000;
/** A walk holds the event loop at most about this long at a time. */
const WALK_SLICE_MS = 10;

/** Kept trees by key in a folder only root may enter; the most recently kept `keep` stay. */
export class KeptTreeStore {
  constructor(private readonly options: { dir: string; keep: number }) {}

  /** The store key of these parts (a repository, a scope, a cache key). */
  keyOf(...parts: string[]): string {
    return createHash('sha256').update(parts.join('\0')).digest('hex').slice(0, 32);
  }

  /**
   * Takes the tree kept at `key` out of the store (each kept tree serves one build) to a path of
   * its own in the store; undefined when none is kept.
   */
  async take(key: string): Promise<string | undefined> {
    const store = await this.store();
    const taken = join(store, `${key}.lent-${randomBytes(6).toString('hex')}`);
    try {
      await rename(join(store, key), taken);
      return taken;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
  }

  /**
   * Moves `tree` (checked by `checkTree`, root's now) into the store at `key`, replacing what was
   * kept there: the newest wins, it holds what the latest build needed. False when another build
   * of the key kept its tree in between.
   */
  async put(key: string, tree: string): Promise<boolean> {
    const store = await this.store();
    const incoming = join(store, `${key}.in-${randomBytes(6).toString('hex')}`);
    await rename(tree, incoming);
    const kept = join(store, key);
    const old = `${kept}.old-${randomBytes(6).toString('hex')}`;
    // The tree it replaces goes in the background: no build waits for its deletion.
    if (
      await rename(kept, old).then(
        () => true,
        () => false,
      )
    )
      await removeInBackground(old);
    try {
      await rename(incoming, kept);
    } catch {
      await rm(incoming, { recursive: true, force: true });
      return false;
    }
    const now = new Date();
    await utimes(kept, now, now);
    await this.evict(store);
    return true;
  }

  /** Removes what is kept (`lambkin` never needs this; the bench measures a machine without it). */
  async clear(): Promise<void> {
    const store = await this.store();
    for (const name of await readdir(store)) await rm(join(store, name), { recursive: true, force: true });
  }

  private async store(): Promise<string> {
    const store = this.options.dir;
    await mkdir(store, { recursive: true, mode: 0o700 });
    const stats = await lstat(store);
    if (!stats.isDirectory() || stats.uid !== 0 || (stats.mode & 0o077) !== 0) {
      throw new KeptTreeError(
        `${store} is not a folder only root may enter (a link, someone else's, or open to others): ` +
          'remove it; the stack makes it again.',
      );
    }
    return store;
  }

  /** Keeps the most recently kept trees; removes the rest and what an interrupted move left. */
  private async evict(store: string): Promise<void> {
    const kept: { name: string; mtimeMs: number }[] = [];
    for (const name of await readdir(store)) {
      const stats = await lstat(join(store, name)).catch(() => undefined);
      if (!stats) continue;
      if (KEY_PATTERN.test(name)) kept.push({ name, mtimeMs: stats.mtimeMs });
      // By ctime: a rename (lent, incoming, old) sets it, the tree's mtime is of when it was kept.
      else if (Date.now() - stats.ctimeMs > STRAY_MAX_AGE_MS) await removeInBackground(join(store, name));
    }
    kept.sort((a, b) => b.mtimeMs - a.mtimeMs);
    for (const { name } of kept.slice(this.options.keep)) {
      // Renamed first, so the key is free at once and a later evict never removes it twice.
      const evicted = join(store, `${name}.old-${randomBytes(6).toString('hex')}`);
      if (
        await rename(join(store, name), evicted).then(
          () => true,
          () => false,
        )
      ) {
        await removeInBackground(evicted);
      }
    }
  }
}

/**
 * Checks every entry of `tree` (the build's uid's, nothing but what `limits` allow) and makes it
 * root's while it does: throws a Refusal at the first entry that may not be kept (the tree is
 * then removed with the work root, half root's or not).
 */
export async function checkTree(
  tree: string,
  uid: number,
  limits: TreeLimits,
): Promise<{ bytes: number; entries: number; files: number }> {
  let bytes = 0;
  let entries = 0;
  let files = 0;
  await walkTree(
    tree,
    (path, stats) => {
      if (stats.uid !== uid) throw new Refusal(`${path} is not the build's (uid ${stats.uid})`);
      if (stats.isSymbolicLink() && limits.dependencyTree) {
        if (readlinkSync(path).startsWith('/')) throw new Refusal(`${path} links to an absolute path`);
      } else if (stats.isFile()) {
        if (stats.nlink !== 1) throw new Refusal(`${path} has ${stats.nlink} links`);
        bytes += stats.size;
        files++;
      } else if (!stats.isDirectory()) {
        throw new Refusal(`${path} is neither a folder nor a plain file`);
      }
      if (++entries > limits.maxEntries) throw new Refusal(`it holds more than ${limits.maxEntries} entries`);
      if (bytes > limits.maxBytes) throw new Refusal(`it holds more than ${limits.maxBytes} bytes`);
      lchownSync(path, 0, 0);
      // chmod would follow a link; a link's own mode means nothing. Most entries have their mode
      // already (npm writes 0644 and 0755): one system call fewer each.
      if (!stats.isSymbolicLink()) {
        const mode = limits.dependencyTree ? stats.mode & 0o755 : stats.isDirectory() ? 0o700 : 0o600;
        if ((stats.mode & 0o7777) !== mode) chmodSync(path, mode);
      }
    },
    limits.maxEntries,
  );
  return { bytes, entries, files };
}

/** Gives every entry of `tree` (root's, in the store) to the build's uid, links as links. */
export async function giveTree(tree: string, owner: SandboxOwner): Promise<void> {
  await walkTree(tree, (path) => lchownSync(path, owner.uid, owner.gid));
}

/**
 * The sandbox's trusted class folder, made when missing, the build's: what is lent goes in there.
 * Refuses anything but a folder of root's (just made) or of the build's uid.
 */
export async function trustedClassFolder(owner: SandboxOwner): Promise<string> {
  const classFolder = join(owner.workRoot, TRUST_CLASS_FOLDERS.trusted);
  await mkdir(classFolder, { mode: 0o700 }).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'EEXIST') throw error;
  });
  const stats = await lstat(classFolder);
  if (!stats.isDirectory() || (stats.uid !== 0 && stats.uid !== owner.uid)) {
    throw new KeptTreeError(`${classFolder} is not a folder of the build's: not lending it anything.`);
  }
  await chown(classFolder, owner.uid, owner.gid);
  return classFolder;
}

/**
 * Why the folders from the work root down to `folders`' last are not all real folders of the
 * build's uid; undefined when they are.
 */
export async function notTheBuilds(folders: readonly string[], uid: number): Promise<string | undefined> {
  for (const folder of folders) {
    const stats = await lstat(folder).catch(() => undefined);
    if (!stats) return `${folder} is not there`;
    if (!stats.isDirectory() || stats.uid !== uid) return `${folder} is not a folder of the build's uid`;
  }
  return undefined;
}

/**
 * Calls `visit` for `root` and every entry below it (a folder before its entries), without
 * following links, synchronously in slices of about WALK_SLICE_MS: a promise per entry would take
 * several times longer on a tree of tens of thousands of files.
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
