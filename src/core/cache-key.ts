/**
 * What both sides of the dependency cache agree on: which npm lockfile a commit has, its git blob
 * sha, the runtime the installed packages were built for, and the object key made of them. No I/O
 * here: the controller learns the sha from GitHub (src/github/trees.ts), the runner from its checkout.
 */
import { createHash } from 'node:crypto';
import type { RepoName } from './build.js';

/**
 * npm's lockfiles in the order npm itself prefers them: `npm-shrinkwrap.json` wins over
 * `package-lock.json` when a folder has both.
 */
export const NPM_LOCKFILES = ['npm-shrinkwrap.json', 'package-lock.json'] as const;
export type NpmLockfileName = (typeof NPM_LOCKFILES)[number];

export const CACHE_PREFIX = 'cache/';

/** What the cache depends on besides the lockfile: installed packages may hold native code. */
export interface CacheRuntime {
  /** `process.versions.node`; the key holds its major version (native modules' ABI). */
  nodeVersion: string;
  platform: string;
  arch: string;
}

/**
 * This process's runtime; with `nodeVersion` (a job's own Node.js, the `node` matrix key) that
 * version instead of the process's: the job's steps install and run with it.
 */
export function currentRuntime(nodeVersion?: string): CacheRuntime {
  return {
    nodeVersion: nodeVersion ?? process.versions.node,
    platform: process.platform,
    arch: process.arch,
  };
}

/** `node20-linux-x64`: the part of the key (and of the archive's manifest) naming the runtime. */
export function runtimeId(runtime: CacheRuntime): string {
  const major = runtime.nodeVersion.replace(/^v/, '').split('.')[0] ?? '';
  return `node${major}-${runtime.platform}-${runtime.arch}`;
}

/**
 * `cache/<owner>/<repo>/node20-linux-x64/<lockfile blob sha>.tar.gz`. With `nodeVersion` (the job's
 * Node.js, when its matrix chooses one) the key's runtime part names that version's major instead
 * of `runtime.nodeVersion`'s: packages installed by Node 22 are not restored into a Node 20 job.
 */
export function cacheKeyOf(
  repo: RepoName,
  runtime: CacheRuntime,
  lockfileSha: string,
  nodeVersion?: string,
): string {
  const used = nodeVersion === undefined ? runtime : { ...runtime, nodeVersion };
  return `${CACHE_PREFIX}${repo}/${runtimeId(used)}/${lockfileSha}.tar.gz`;
}

/** Git's object id of a file's content: sha1 of `blob <length>\0<content>`, as the trees API gives it. */
export function gitBlobSha(content: Uint8Array): string {
  return createHash('sha1').update(`blob ${content.length}\0`).update(content).digest('hex');
}
