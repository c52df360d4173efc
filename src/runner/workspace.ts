/**
 * Work areas of builds. A warm Lambda runs build after build in the same /tmp, so every build gets
 * a fresh, private folder that is removed afterwards, and folders a crashed build left behind are
 * swept before the next one. Trusted and untrusted builds live under different folders and never
 * share one, not even the npm cache (an untrusted build could poison a cache a trusted build reads).
 *
 * Layout under the root:
 *   trusted/npm-cache/                 kept between trusted builds, for speed
 *   trusted/node-cache/                the jobs' Node.js versions (`node` matrix key), likewise
 *   trusted/kept-dependencies/         a dependency tree a controller lent or takes back (kept-dependencies.ts)
 *   trusted/build-<label>-p<pid>-XXXXXX/{checkout,home,tmp}
 *   untrusted/...                      the same, for untrusted builds
 */
import { lstatSync, readdirSync, readlinkSync, statSync, type Dirent } from 'node:fs';
import { chmod, lstat, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import {
  DEFAULT_MAX_NPM_CACHE_BYTES,
  KEPT_DEPENDENCIES_FOLDER,
  NPM_CACHE_FOLDER,
  TRUST_CLASS_FOLDERS,
} from '../core/work-layout.js';
import { WorkspaceError } from './source-errors.js';

export interface Workspace {
  /** This build's own folder (mode 0700); everything below is removed by `dispose`. */
  root: string;
  /** Where the source is unpacked and steps run. */
  checkout: string;
  /** HOME of the build steps. */
  home: string;
  /** TMPDIR of the build steps. */
  tmp: string;
  /**
   * The runner's own scratch folder (the cache archive it packs while steps run): beside `root`,
   * so outside the disk quota, and, under the step sandbox, out of the steps' sight.
   */
  runnerTmp: string;
  /** npm cache of this trust class, kept between builds (outside `root`). */
  npmCache: string;
  /**
   * The Node.js versions jobs asked for (src/runner/node-runtime.ts `installNode`), of this trust
   * class, kept between builds next to the npm cache. Made by `ensureNodeCache` when first needed.
   */
  nodeCache: string;
  /**
   * Where a controller that keeps dependency trees lends this build the tree of its cache key and
   * takes a passed build's back (src/runner/kept-dependencies.ts); outside `root`, beside the npm cache.
   */
  keptDependencies: string;
  trusted: boolean;
  /** Removes the work folder, read-only or deeply nested content included. Safe to call twice. */
  dispose(): Promise<void>;
}

export interface CreateWorkspaceOptions {
  trusted: boolean;
  /** Shown in the folder name (`owner-repo-12`), for whoever looks at /tmp. */
  label: string;
}

export interface SweepOptions {
  /** An npm cache larger than this is removed too. Default 1 GiB; `Infinity` keeps any size. */
  maxNpmCacheBytes?: number;
}

export interface SweepResult {
  /** Folders removed (stale work folders and oversized npm caches). */
  removed: string[];
  /** Bytes of content they held. */
  bytes: number;
}

const TRUST_CLASSES = Object.values(TRUST_CLASS_FOLDERS);
const WORK_FOLDER_PREFIX = 'build-';
const NODE_CACHE_FOLDER = 'node-cache';
/** folderSize holds the event loop at most about this long at a time. */
const FOLDER_SIZE_SLICE_MS = 10;

/** Work folders of this process not yet disposed: a sweep never takes them. */
const activeWorkFolders = new Set<string>();

/**
 * This process's PID namespace: pids name a process only within one. Locally each runner is pid 1
 * of a namespace of its own, so a work folder names its owner by pid and namespace, and a folder of
 * another namespace (whose processes this one cannot see) is judged by its age alone.
 */
const PID_NAMESPACE = pidNamespaceOfThisProcess();
/** Past any build's time limit: a folder of another PID namespace this old is left behind. */
export const FOREIGN_WORK_FOLDER_MAX_AGE_MS = 24 * 3600 * 1000;

function pidNamespaceOfThisProcess(): string {
  try {
    return /\[(\d+)\]/.exec(readlinkSync('/proc/self/ns/pid'))?.[1] ?? '0';
  } catch {
    return '0'; // no /proc: one namespace as far as this process can tell
  }
}

/** Makes a fresh work area for one build under `root/trusted/` or `root/untrusted/`. */
export async function createWorkspace(root: string, options: CreateWorkspaceOptions): Promise<Workspace> {
  const classFolder = await ensurePrivateFolder(
    root,
    options.trusted ? TRUST_CLASS_FOLDERS.trusted : TRUST_CLASS_FOLDERS.untrusted,
  );
  const npmCache = join(classFolder, NPM_CACHE_FOLDER);
  await mkdir(npmCache, { mode: 0o700 }).catch(ignoreCode('EEXIST'));
  await assertPrivateFolder(npmCache);
  // Made only when a job asks for a Node.js of its own (ensureNodeCache).
  const nodeCache = join(classFolder, NODE_CACHE_FOLDER);

  const prefix = `${WORK_FOLDER_PREFIX}${safeLabel(options.label)}-p${process.pid}n${PID_NAMESPACE}-`;
  // mkdtemp makes the folder 0700 with a random suffix: no other build or user can predict it.
  const workFolder = await mkdtemp(join(classFolder, prefix));
  activeWorkFolders.add(workFolder);
  // Named like a work folder, so a sweep judges it the same way when a crash leaves it behind.
  const runnerTmp = await mkdtemp(join(classFolder, prefix)).catch(async (error: unknown) => {
    await removeFolder(workFolder);
    activeWorkFolders.delete(workFolder);
    throw new WorkspaceError(`Could not make the runner's folder in ${classFolder}: ${String(error)}`, {
      cause: error,
    });
  });
  activeWorkFolders.add(runnerTmp);
  const workspace: Workspace = {
    root: workFolder,
    checkout: join(workFolder, 'checkout'),
    home: join(workFolder, 'home'),
    tmp: join(workFolder, 'tmp'),
    runnerTmp,
    npmCache,
    nodeCache,
    keptDependencies: join(classFolder, KEPT_DEPENDENCIES_FOLDER),
    trusted: options.trusted,
    dispose: once(async () => {
      for (const folder of [workFolder, runnerTmp]) {
        await removeFolder(folder);
        activeWorkFolders.delete(folder);
      }
    }),
  };
  try {
    for (const folder of [workspace.checkout, workspace.home, workspace.tmp])
      await mkdir(folder, { mode: 0o700 });
  } catch (error) {
    await workspace.dispose();
    throw new WorkspaceError(
      `Could not make the work area in ${workFolder}: ${String(error)}. Is /tmp full?`,
      {
        cause: error,
      },
    );
  }
  return workspace;
}

/** Makes the workspace's node cache folder (mode 0700, this user's) if it is not there yet. */
export async function ensureNodeCache(workspace: Pick<Workspace, 'nodeCache'>): Promise<string> {
  await mkdir(workspace.nodeCache, { mode: 0o700 }).catch(ignoreCode('EEXIST'));
  await assertPrivateFolder(workspace.nodeCache);
  return workspace.nodeCache;
}

/**
 * Removes work folders that earlier builds left behind (a crashed build never disposes): every
 * work folder except those of live builds of this process and those of other processes still
 * running. Keeps each class's npm cache unless it grew past `maxNpmCacheBytes`.
 */
export async function sweepStaleWorkspaces(root: string, options: SweepOptions = {}): Promise<SweepResult> {
  const maxNpmCacheBytes = options.maxNpmCacheBytes ?? DEFAULT_MAX_NPM_CACHE_BYTES;
  const result: SweepResult = { removed: [], bytes: 0 };
  const sweep = async (folder: string): Promise<void> => {
    const bytes = await folderSize(folder);
    await removeFolder(folder);
    result.removed.push(folder);
    result.bytes += bytes;
  };
  for (const trustClass of TRUST_CLASSES) {
    const classFolder = join(root, trustClass);
    let entries: Dirent[];
    try {
      await assertPrivateFolder(classFolder);
      entries = await readdir(classFolder, { withFileTypes: true });
    } catch (error) {
      if (hasCode(error, 'ENOENT')) continue;
      throw error;
    }
    for (const entry of entries) {
      const path = join(classFolder, entry.name);
      if (entry.name.startsWith(WORK_FOLDER_PREFIX) && isStale(path, entry.name)) {
        await sweep(path);
      } else if (
        entry.name === NPM_CACHE_FOLDER &&
        // Measuring a warm npm cache walks every file of it: not when any size is kept.
        maxNpmCacheBytes !== Infinity &&
        (await folderSize(path)) > maxNpmCacheBytes
      ) {
        await sweep(path);
      }
    }
  }
  return result;
}

function isStale(path: string, name: string): boolean {
  if (activeWorkFolders.has(path)) return false;
  const owner = /-p(\d+)(?:n(\d+))?-[^-]+$/.exec(name);
  const pid = owner?.[1] === undefined ? NaN : Number(owner[1]);
  if ((owner?.[2] ?? PID_NAMESPACE) !== PID_NAMESPACE) {
    const modified = statSync(path, { throwIfNoEntry: false })?.mtimeMs ?? 0;
    return Date.now() - modified > FOREIGN_WORK_FOLDER_MAX_AGE_MS;
  }
  // This process's own folders are stale once not active; another process's while it is gone.
  return pid === process.pid || !Number.isSafeInteger(pid) || !processIsAlive(pid);
}

function processIsAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, it just belongs to another user.
    return hasCode(error, 'EPERM');
  }
}

/**
 * Bytes of the files and links under `dir` (their own size: links are not followed; a file with
 * several hard links counts once). Content it cannot read is left out rather than failing.
 */
export async function folderSize(dir: string): Promise<number> {
  let total = 0;
  const counted = new Set<string>();
  const pending = [dir];
  // Synchronous calls, yielding to the event loop every few ms: a node_modules tree has tens of
  // thousands of entries, and a promise per lstat cost 5-7 times the calls themselves (15 332
  // files: 270-640 ms against 75-95 ms), CPU taken from the step the watcher runs beside.
  let slice = performance.now();
  for (let folder = pending.pop(); folder !== undefined; folder = pending.pop()) {
    if (performance.now() - slice > FOLDER_SIZE_SLICE_MS) {
      await new Promise((resolve) => setImmediate(resolve));
      slice = performance.now();
    }
    let entries: Dirent[];
    try {
      entries = readdirSync(folder, { withFileTypes: true });
    } catch (error) {
      if (folder === dir && hasCode(error, 'ENOTDIR')) return lstatSync(dir).size;
      continue; // gone, unreadable or too deep to name: best effort
    }
    for (const entry of entries) {
      const path = join(folder, entry.name);
      if (entry.isDirectory()) {
        pending.push(path);
        continue;
      }
      let stats;
      try {
        stats = lstatSync(path, { throwIfNoEntry: false });
      } catch {
        continue; // in a folder it may list but not search: best effort, as above
      }
      if (!stats) continue; // removed meanwhile
      if (stats.nlink > 1) {
        const identity = `${stats.dev}:${stats.ino}`;
        if (counted.has(identity)) continue;
        counted.add(identity);
      }
      total += stats.size;
    }
  }
  return total;
}

/**
 * Removes a folder and everything in it, also when a build left read-only folders (which keep
 * their content from being removed) or nesting deeper than a path can name (PATH_MAX).
 */
export async function removeFolder(dir: string): Promise<void> {
  try {
    await rm(dir, { recursive: true, force: true, maxRetries: 2 });
    return;
  } catch {
    // read-only or too deep: below
  }
  await makeFoldersWritable(dir);
  try {
    await rm(dir, { recursive: true, force: true, maxRetries: 2 });
    return;
  } catch {
    // too deep for paths: the system tools walk folder by folder, without full paths
  }
  const tools = await execa('chmod', ['-R', 'u+rwx', '--', dir], { reject: false }).then(() =>
    execa('rm', ['-rf', '--', dir], { reject: false }),
  );
  const left = await lstat(dir).then(
    () => true,
    () => false,
  );
  if (left) {
    throw new WorkspaceError(
      `Could not remove ${dir}${tools.stderr ? ` (${String(tools.stderr).trim()})` : ''}. ` +
        'Remove it by hand; builds keep working, but it takes space in /tmp.',
    );
  }
}

/** Gives the owner rwx on every folder (links are not followed), so their content can go. */
async function makeFoldersWritable(dir: string): Promise<void> {
  const pending = [dir];
  for (let folder = pending.pop(); folder !== undefined; folder = pending.pop()) {
    try {
      const stats = await lstat(folder);
      if (!stats.isDirectory()) continue;
      await chmod(folder, (stats.mode & 0o7777) | 0o700);
      for (const entry of await readdir(folder, { withFileTypes: true })) {
        if (entry.isDirectory()) pending.push(join(folder, entry.name));
      }
    } catch {
      // best effort: what stays is reported by removeFolder
    }
  }
}

/** Makes (or checks) `root/<name>` as a folder only this user can use, refusing a planted link. */
async function ensurePrivateFolder(root: string, name: string): Promise<string> {
  await mkdir(root, { recursive: true, mode: 0o700 });
  const folder = join(root, name);
  await mkdir(folder, { mode: 0o700 }).catch(ignoreCode('EEXIST'));
  await assertPrivateFolder(folder);
  return folder;
}

async function assertPrivateFolder(folder: string): Promise<void> {
  const stats = await lstat(folder);
  const uid = process.getuid?.();
  if (!stats.isDirectory() || (uid !== undefined && stats.uid !== uid)) {
    throw new WorkspaceError(
      `${folder} is not a folder of this user (a link, a file or someone else's). Remove it; ` +
        'work areas are only made in folders the builder made itself.',
    );
  }
  if ((stats.mode & 0o077) !== 0) await chmod(folder, 0o700);
}

function safeLabel(label: string): string {
  const safe = label
    .replace(/[^A-Za-z0-9._]+/g, '-')
    .replace(/^[-.]+|-+$/g, '')
    .slice(0, 60);
  return safe === '' ? 'build' : safe;
}

function once(action: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | undefined;
  return () => {
    running ??= action().catch((error: unknown) => {
      running = undefined; // a later call may try again
      throw error;
    });
    return running;
  };
}

function hasCode(error: unknown, code: string): boolean {
  return (error as { code?: unknown } | null)?.code === code;
}

function ignoreCode(code: string): (error: unknown) => void {
  return (error) => {
    if (!hasCode(error, code)) throw error;
  };
}
