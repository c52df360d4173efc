/**
 * The trusted builds' unpacked dependency tree, kept on the machine from one sandboxed build to the
 * next build of the same cache key (the local stack and `lambkin run` as root). Restoring the
 * cache archive writes every file of `node_modules` again (15 332 files of the large bench project:
 * 2 s on a settled disk, 9–14 s right after a large removal on ext4 with online discard), and the
 * sandbox's teardown removes them all again; a kept tree is moved in and out whole.
 *
 * What holds (docs/security.md), beside what every kept tree's checks hold (kept-trees.ts):
 * - Only a trusted build's tree, only to a trusted build, only within one key: the repository (and,
 *   for `lambkin run`, the working copy) and the cache key, which names the lockfile and the
 *   runtime. The same builds could restore the archive stored at that key; the tree is lent only
 *   while that archive is stored (a cache deleted is deleted here too, at the next build).
 * - The runner hands a tree back only when its build passed and no entry of `node_modules` changed
 *   after the install (or after the restore, when the install was skipped): the tree is what the
 *   archive at the key holds.
 */
import { constants } from 'node:fs';
import { chmod, lchown, lstat, open, readdir, readFile, rename, rm, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import {
  KEPT_DEPENDENCIES_FOLDER,
  KEPT_DEPENDENCIES_NOTE,
  TRUST_CLASS_FOLDERS,
  type KeptDependenciesNote,
} from '../core/work-layout.js';
import {
  checkTree,
  giveTree,
  KeptTreeStore,
  notTheBuilds,
  Refusal,
  trustedClassFolder,
  type KeepResult,
  type SandboxOwner,
} from './kept-trees.js';

/** The kept trees' folder, beside the sandboxes' work roots (one file system: moves are renames). */
export const DEPENDENCY_TREES_FOLDER = 'dependency-trees';
/** The folder the runner's install writes and a kept tree holds. */
const TREE_FOLDER = 'node_modules';

export interface DependencyHandoverOptions {
  /** Where kept trees wait for their next build: made 0700, root's. */
  dir: string;
  /** Mixed into every key: `lambkin run` passes the working copy's path, so copies never share. */
  scope?: string;
  /** How many trees are kept; the least recently kept go first. Default 4. */
  keep?: number;
  /** A tree larger than this is not kept. Default 2 GiB. */
  maxBytes?: number;
  /** A tree with more entries than this is not kept. Default 2 000 000, the archive's limit. */
  maxEntries?: number;
}

const DEFAULT_KEEP = 4;
const DEFAULT_MAX_BYTES = 2 * 1024 ** 3;
const DEFAULT_MAX_ENTRIES = 2_000_000;
/** A note is a few dozen bytes: a larger one is not a note of the runner's. */
const MAX_NOTE_BYTES = 4096;

export class DependencyHandover {
  private readonly store: KeptTreeStore;

  constructor(private readonly options: DependencyHandoverOptions) {
    this.store = new KeptTreeStore({ dir: options.dir, keep: options.keep ?? DEFAULT_KEEP });
  }

  /**
   * Moves the tree kept for `repo`'s cache key `cacheKey` into the sandbox's work root, with a note
   * of the key, owned by the sandbox's uid. False when none is kept (each kept tree serves one build).
   */
  async lend(repo: string, cacheKey: string, sandbox: SandboxOwner): Promise<boolean> {
    const taken = await this.store.take(this.keyOf(repo, cacheKey));
    if (!taken) return false;
    try {
      await giveTree(taken, sandbox);
      await rename(taken, join(await trustedClassFolder(sandbox), KEPT_DEPENDENCIES_FOLDER));
      return true;
    } catch (error) {
      await rm(taken, { recursive: true, force: true });
      throw error;
    }
  }

  /**
   * Takes the tree the runner handed back (or did not take) out of a sandbox's work root for the
   * next build of `cacheKey`. Call it only once every process of the sandbox's uid is gone, before
   * the work root is removed.
   */
  async keep(repo: string, cacheKey: string, sandbox: SandboxOwner): Promise<KeepResult> {
    const classFolder = join(sandbox.workRoot, TRUST_CLASS_FOLDERS.trusted);
    const folder = join(classFolder, KEPT_DEPENDENCIES_FOLDER);
    const tree = join(folder, TREE_FOLDER);
    const notKept = await notTheBuilds([sandbox.workRoot, classFolder, folder, tree], sandbox.uid);
    if (notKept) return { kept: false, reason: notKept };
    try {
      const note = await readNote(join(folder, KEPT_DEPENDENCIES_NOTE), sandbox.uid);
      if (note.key !== cacheKey) {
        return { kept: false, reason: `the tree is of ${note.key}, not of this build's key ${cacheKey}` };
      }
      const names = (await readdir(folder)).filter(
        (name) => name !== TREE_FOLDER && name !== KEPT_DEPENDENCIES_NOTE,
      );
      if (names.length > 0) throw new Refusal(`${folder} holds ${names.join(', ')} beside the tree`);
      const checked = await checkTree(tree, sandbox.uid, {
        maxBytes: this.options.maxBytes ?? DEFAULT_MAX_BYTES,
        maxEntries: this.options.maxEntries ?? DEFAULT_MAX_ENTRIES,
        dependencyTree: true,
      });
      // The note is the controller's own from here: the runner's is replaced, never followed.
      await unlink(join(folder, KEPT_DEPENDENCIES_NOTE));
      const written: KeptDependenciesNote = { key: cacheKey, files: checked.files, bytes: checked.bytes };
      const file = await open(
        join(folder, KEPT_DEPENDENCIES_NOTE),
        constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
        0o644,
      );
      await file.writeFile(JSON.stringify(written));
      await file.close();
      await lchown(folder, 0, 0);
      await chmod(folder, 0o700);
      if (!(await this.store.put(this.keyOf(repo, cacheKey), folder))) {
        return { kept: false, reason: 'another build of the same key kept its tree first' };
      }
      return { kept: true, bytes: checked.bytes, entries: checked.entries };
    } catch (error) {
      if (error instanceof Refusal) return { kept: false, reason: error.message };
      throw error;
    }
  }

  /** Removes every kept tree (the bench measures a restore from the archive with this). */
  clear(): Promise<void> {
    return this.store.clear();
  }

  private keyOf(repo: string, cacheKey: string): string {
    return this.store.keyOf(this.options.scope ?? '', repo, cacheKey);
  }
}

/** The runner's note: a plain file of the build's uid, small, naming a key. */
async function readNote(path: string, uid: number): Promise<KeptDependenciesNote> {
  const stats = await lstat(path).catch(() => undefined);
  if (!stats?.isFile() || stats.uid !== uid || stats.nlink !== 1 || stats.size > MAX_NOTE_BYTES) {
    throw new Refusal(`${path} is not a note of the runner's`);
  }
  let note: unknown;
  try {
    note = JSON.parse(
      await readFile(path, { encoding: 'utf8', flag: constants.O_RDONLY | constants.O_NOFOLLOW }),
    );
  } catch {
    throw new Refusal(`${path} is not JSON`);
  }
  const key = (note as { key?: unknown } | null)?.key;
  if (typeof key !== 'string') throw new Refusal(`${path} names no key`);
  return { key, files: 0, bytes: 0 };
}
