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
import { rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { DEFAULT_MAX_NPM_CACHE_BYTES, NPM_CACHE_FOLDER, TRUST_CLASS_FOLDERS } from '../core/work-layout.js';
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

export type { KeepResult, SandboxOwner } from './kept-trees.js';

/** The kept caches' folder, beside the sandboxes' work roots (one file system: moves are renames). */
export const NPM_CACHES_FOLDER = 'npm-caches';

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

const DEFAULT_KEEP = 8;
const DEFAULT_MAX_ENTRIES = 500_000;

export class NpmCacheHandover {
  private readonly store: KeptTreeStore;

  constructor(private readonly options: NpmCacheHandoverOptions) {
    this.store = new KeptTreeStore({ dir: options.dir, keep: options.keep ?? DEFAULT_KEEP });
  }

  /**
   * Moves the npm cache kept for `repo` into the sandbox's work root, where the runner's trusted
   * builds look for theirs, owned by the sandbox's uid. False when none was kept (or another build
   * of the key has it now: each kept cache serves one build).
   */
  async lend(repo: string, sandbox: SandboxOwner): Promise<boolean> {
    const taken = await this.store.take(this.keyOf(repo));
    if (!taken) return false;
    try {
      // Given to the build's uid while it is still in root's folder, then moved in whole.
      await giveTree(taken, sandbox);
      await rename(taken, join(await trustedClassFolder(sandbox), NPM_CACHE_FOLDER));
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
    const notKept = await notTheBuilds([sandbox.workRoot, classFolder, cache], sandbox.uid);
    if (notKept) return { kept: false, reason: notKept };
    let checked;
    try {
      checked = await checkTree(cache, sandbox.uid, {
        maxBytes: this.options.maxBytes ?? DEFAULT_MAX_NPM_CACHE_BYTES,
        maxEntries: this.options.maxEntries ?? DEFAULT_MAX_ENTRIES,
        dependencyTree: false,
      });
    } catch (error) {
      if (error instanceof Refusal) return { kept: false, reason: error.message };
      throw error;
    }
    if (!(await this.store.put(this.keyOf(repo), cache))) {
      return { kept: false, reason: 'another build of the same key kept its cache first' };
    }
    return { kept: true, bytes: checked.bytes, entries: checked.entries };
  }

  private keyOf(repo: string): string {
    return this.store.keyOf(this.options.scope ?? '', repo);
  }
}
