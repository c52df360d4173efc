/**
 * What both sides of the dependency cache agree on: which npm lockfile a commit has, its git blob
 * sha, the runtime the installed packages were built for, and the object key made of them. No I/O
 * here: the controller learns the sha from GitHub (src/github/trees.ts), the runner from its checkout.
 */
import { createHash } from 'node:crypto';
import * as zlib from 'node:zlib';
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
 * How a cache archive is compressed; the key's extension says which, so a runner knows before the
 * first byte and never tries to read what its runtime cannot. Measured on a 64 MiB node_modules
 * tar here (Node 20): gzip -6 packs in 1.1–1.5 s to 11.2 MiB and unpacks in 175–260 ms; brotli
 * quality 3 packs in 0.37–0.39 s to 9.3 MiB and unpacks in 140–150 ms (quality 4: 0.86–0.98 s,
 * 8.2 MiB, 120–140 ms). zstd (Node >= 22.15 / 23.8)
 * is preferred where present: it decompresses several times faster than either.
 */
export const CACHE_CODECS = ['zstd', 'br', 'gzip'] as const;
export type CacheCodec = (typeof CACHE_CODECS)[number];

const CODEC_EXTENSIONS: Record<CacheCodec, string> = { zstd: '.tar.zst', br: '.tar.br', gzip: '.tar.gz' };

/** The extension a key of this codec ends with. */
export function cacheKeyExtension(codec: CacheCodec): string {
  return CODEC_EXTENSIONS[codec];
}

/** The codecs this process's zlib can read and write, best first. */
export function supportedCacheCodecs(zlibModule: object = zlib): CacheCodec[] {
  const has = (name: string): boolean => typeof (zlibModule as Record<string, unknown>)[name] === 'function';
  return CACHE_CODECS.filter((codec) =>
    codec === 'zstd'
      ? has('createZstdCompress') && has('createZstdDecompress')
      : codec === 'br'
        ? has('createBrotliCompress') && has('createBrotliDecompress')
        : has('createGzip') && has('createGunzip'),
  );
}

/** The codec new archives are written with: the best this runtime has (gzip is always there). */
export function preferredCacheCodec(supported: readonly CacheCodec[] = supportedCacheCodecs()): CacheCodec {
  return supported[0] ?? 'gzip';
}

/** The codec a key's extension names, or undefined for a key that names none. */
export function cacheCodecOf(key: string): CacheCodec | undefined {
  return CACHE_CODECS.find((codec) => key.endsWith(CODEC_EXTENSIONS[codec]));
}

/**
 * `cache/<owner>/<repo>/node20-linux-x64/<lockfile blob sha>.tar.br` (the extension names the
 * codec, `preferredCacheCodec()` by default). With `nodeVersion` (the job's Node.js, when its matrix
 * chooses one) the key's runtime part names that version's major instead of `runtime.nodeVersion`'s:
 * packages installed by Node 22 are not restored into a Node 20 job.
 */
export function cacheKeyOf(
  repo: RepoName,
  runtime: CacheRuntime,
  lockfileSha: string,
  nodeVersion?: string,
  codec: CacheCodec = preferredCacheCodec(),
): string {
  const used = nodeVersion === undefined ? runtime : { ...runtime, nodeVersion };
  return `${CACHE_PREFIX}${repo}/${runtimeId(used)}/${lockfileSha}${CODEC_EXTENSIONS[codec]}`;
}

/** Git's object id of a file's content: sha1 of `blob <length>\0<content>`, as the trees API gives it. */
export function gitBlobSha(content: Uint8Array): string {
  return createHash('sha1').update(`blob ${content.length}\0`).update(content).digest('hex');
}
