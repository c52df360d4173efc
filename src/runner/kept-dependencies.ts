/**
 * The runner's side of the dependency trees a controller keeps between sandboxed trusted builds of
 * one cache key (src/controller/dependency-handover.ts; `CacheAccess.keepTree`): the restore takes
 * the tree lent for this build's key, moved in whole instead of unpacked, and a passed build hands
 * its `node_modules` back when nothing in it changed after its install.
 */
import { lstatSync, opendirSync, readdirSync, readlinkSync } from 'node:fs';
import { lstat, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { cacheCodecOf } from '../core/cache-key.js';
import type { CacheAccess } from '../core/protocol.js';
import { KEPT_DEPENDENCIES_NOTE, type KeptDependenciesNote } from '../core/work-layout.js';
import { INSTALLED_PACKAGES_PATH, cachedPaths, checkoutLockfile, type RestoreResult } from './cache.js';

/** The walk holds the event loop at most about this long at a time. */
const WALK_SLICE_MS = 10;

/**
 * Moves the tree lent for this build's key (`kept`, the trusted class's kept-dependencies folder)
 * to `into/node_modules`: a hit, as a restore of the archive at the key would be. Undefined when no
 * tree of this key was lent (the archive is restored then).
 */
export async function takeKeptDependencies(
  access: CacheAccess,
  kept: string,
  into: string,
): Promise<RestoreResult | undefined> {
  if (!access.keepTree) return undefined;
  const started = performance.now();
  try {
    const note = JSON.parse(
      await readFile(join(kept, KEPT_DEPENDENCIES_NOTE), 'utf8'),
    ) as Partial<KeptDependenciesNote>;
    const codec = cacheCodecOf(access.key);
    if (note.key !== access.key || !codec) return undefined;
    await rename(join(kept, INSTALLED_PACKAGES_PATH), join(into, INSTALLED_PACKAGES_PATH));
    const bytes = Number(note.bytes) || 0;
    return {
      hit: true,
      kept: true,
      files: Number(note.files) || 0,
      bytes,
      unpackedBytes: bytes,
      downloadedBytes: 0,
      codec,
      durationMs: Math.round(performance.now() - started),
    };
  } catch {
    return undefined;
  } finally {
    // What was lent is this build's now, taken or not: nothing of it goes back but a hand-back.
    await rm(kept, { recursive: true, force: true }).catch(() => undefined);
  }
}

/**
 * `node_modules` as the install (or the restore, when no install ran) left it: when, and the names
 * at its top. A later change spoils the tree, but for a `.cache` folder the steps made at its top.
 */
export interface DependenciesMark {
  since: number;
  names: ReadonlySet<string>;
}

/** Tools' own caches (nyc, babel-loader, ESLint…) go here, written by the test steps. */
const TOOL_CACHE = '.cache';

/** Marks `node_modules` of the checkout now; call it once the install (or the restore) ended. */
export function markDependencies(checkout: string, now: number): DependenciesMark {
  let names: string[] = [];
  try {
    names = readdirSync(join(checkout, INSTALLED_PACKAGES_PATH));
  } catch {
    // no node_modules (yet): nothing to hand back unless a later install makes one
  }
  return { since: now, names: new Set(names) };
}

export interface HandBackTarget {
  checkout: string;
  /** The trusted class's kept-dependencies folder, where the controller looks at teardown. */
  kept: string;
  mark: DependenciesMark;
  extraPaths: readonly string[];
}

/**
 * After a passed build whose controller keeps trees: moves `node_modules` to the kept-dependencies
 * folder with a note of the key, when it is what the archive at the key holds (the key's lockfile,
 * no extra cache paths, and no entry changed after the mark but a tool cache the steps made). Returns why not, or undefined when
 * handed back.
 */
export async function handBackDependencies(
  access: CacheAccess | undefined,
  target: HandBackTarget,
): Promise<string | undefined> {
  if (!access?.keepTree) return 'this machine keeps no trees';
  const paths = cachedPaths(target.extraPaths);
  if (paths.length !== 1) return 'the config caches more than node_modules';
  const lockfile = await checkoutLockfile(target.checkout);
  if (lockfile?.sha !== access.lockfileSha) return "the checkout's lockfile is not the key's";
  const tree = join(target.checkout, INSTALLED_PACKAGES_PATH);
  const stats = await lstat(tree).catch(() => undefined);
  if (!stats?.isDirectory()) return 'there is no node_modules folder';
  // A tool cache the steps made is not the install's: the archive (packed after the install) never
  // holds it, so neither does the tree. One the install made is judged like any other entry.
  const toolCache = target.mark.names.has(TOOL_CACHE) ? undefined : TOOL_CACHE;
  const changed = await changedSince(tree, target.mark, toolCache);
  if (changed) return `${changed} changed after the install`;
  if (toolCache) await rm(join(tree, toolCache), { recursive: true, force: true });
  await rm(target.kept, { recursive: true, force: true });
  await mkdir(target.kept, { mode: 0o700 });
  const note: KeptDependenciesNote = { key: access.key, files: 0, bytes: 0 };
  await writeFile(join(target.kept, KEPT_DEPENDENCIES_NOTE), JSON.stringify(note), { mode: 0o600 });
  await rename(tree, join(target.kept, INSTALLED_PACKAGES_PATH));
  return undefined;
}

/**
 * The first entry of `root` (itself included) whose inode changed at or after the mark, or a link to
 * an absolute path (which no archive would hold); undefined when none. A timestamp never runs ahead
 * of the clock, so whatever a step wrote, renamed or removed in the tree after the mark shows as a
 * ctime at or past it on the entry or its folder. `ignored` (a name at the top) is not looked into,
 * and the top folder itself may have changed only by its coming: its other names must be the
 * mark's. Synchronous, in slices of ~10 ms.
 */
async function changedSince(
  root: string,
  mark: DependenciesMark,
  ignored: string | undefined,
): Promise<string | undefined> {
  const pending = [root];
  let slice = performance.now();
  for (let path = pending.pop(); path !== undefined; path = pending.pop()) {
    const stats = lstatSync(path, { throwIfNoEntry: false });
    if (!stats) return path;
    if (stats.ctimeMs >= mark.since) {
      if (path !== root || ignored === undefined) return path;
      const names = readdirSync(root).filter((name) => name !== ignored);
      if (names.length !== mark.names.size || names.some((name) => !mark.names.has(name))) return path;
    }
    if (stats.isSymbolicLink() && readlinkSync(path).startsWith('/')) return path;
    if (stats.isDirectory()) {
      const folder = opendirSync(path);
      try {
        for (let entry = folder.readSync(); entry !== null; entry = folder.readSync())
          if (path !== root || entry.name !== ignored) pending.push(join(path, entry.name));
      } finally {
        folder.closeSync();
      }
    }
    if (performance.now() - slice > WALK_SLICE_MS) {
      await yieldToEventLoop();
      slice = performance.now();
    }
  }
  return undefined;
}
