/**
 * The dependency cache, the runner's side: restores a build's installed dependencies from the
 * presigned GET the controller prepared, and (trusted builds, after every step passed) saves them
 * through the presigned PUT. The runner holds no credentials; the URLs are all it gets.
 *
 * The archive is a compressed tar of paths inside the checkout (`node_modules` and the config's
 * `cache.paths`), led by a manifest entry, `lambkin-cache.json`, that says which lockfile, runtime
 * and paths it was made for. The key's extension names the codec (zstd, brotli or gzip: see
 * src/core/cache-key.ts); a runner whose runtime lacks it treats the entry as a miss. A restore
 * reads the manifest before anything is written and treats any difference as a miss. It streams
 * the download (read ahead, resumed after a break: download.ts) through the decompressor into the
 * unpacker, never through a temporary file: into
 * FreshUnpack (cache-unpack.ts) when the cached paths do not exist yet, node-tar's otherwise.
 * Archives are untrusted input like the source archive: entries outside the manifest's paths, links
 * leading out of the checkout, devices, duplicates and bombs are refused.
 *
 * Nothing here fails a build: every problem is a miss or a warning, and the build goes on.
 */
import { once } from 'node:events';
import { createReadStream, createWriteStream, lstatSync, readdirSync, type Dirent } from 'node:fs';
import { lstat, mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join, posix } from 'node:path';
import type { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { performance } from 'node:perf_hooks';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import * as zlib from 'node:zlib';
import { Header, PackSync, ReadEntry, type WriteEntry } from 'tar';
import {
  NPM_LOCKFILES,
  cacheCodecOf,
  currentRuntime,
  gitBlobSha,
  runtimeId,
  supportedCacheCodecs,
  type CacheCodec,
} from '../core/cache-key.js';
import { LambkinError, describeErrorChain, messageOf } from '../core/errors.js';
import { formatDuration, formatMiB } from '../core/log-format.js';
import {
  ArchiveEntryGate,
  GuardedUnpack,
  TAR_OVERHEAD_PER_ENTRY,
  TAR_OVERHEAD_SLACK,
} from './archive-tree.js';
import { FreshUnpack } from './cache-unpack.js';
import { readBody } from './download.js';
import type { CacheAccess } from '../core/protocol.js';

/** The manifest's name: always the archive's first entry. */
export const MANIFEST_NAME = 'lambkin-cache.json';
export const MANIFEST_FORMAT = 1;
/** Always cached; the config's `cache.paths` come on top. */
export const INSTALLED_PACKAGES_PATH = 'node_modules';
const MAX_MANIFEST_BYTES = 64 * 1024;
export const DEFAULT_CACHE_MAX_ENTRIES = 2_000_000;

/** What a cache archive was made for; a restore uses it only when all of it matches. */
export interface CacheManifest {
  format: typeof MANIFEST_FORMAT;
  /** `node20-linux-x64` (src/core/cache-key.ts runtimeId). */
  runtime: string;
  nodeVersion: string;
  lockfile: { path: string; sha: string };
  /** Paths inside the checkout, sorted; `node_modules` first among equals. */
  paths: string[];
  createdAt: string;
}

/** Why the cache could not be used or saved; logged as a warning, never the build's failure. */
export class CacheError extends LambkinError {
  constructor(message: string, options?: { cause?: unknown; code?: string }) {
    super(
      options?.code ?? 'CACHE',
      message,
      options?.cause === undefined ? undefined : { cause: options.cause },
    );
  }
}

/** The archive is usable but not for this build (other lockfile, runtime or paths): a plain miss. */
class CacheMismatch extends Error {}

export interface CacheTarget {
  /** The build's checkout: the archive's paths are relative to it. */
  checkout: string;
  /** The config's extra paths (`cache.paths`); `node_modules` is always included. */
  extraPaths: readonly string[];
  /** The job's own Node.js version (`node` matrix key): the runtime the archive is for. */
  nodeVersion?: string;
  /**
   * The lockfile the archive must be for, when `checkout` does not hold it (a restore into a
   * folder beside the checkout while the source is fetched); default: the checkout's own.
   */
  lockfile?: { path: string; sha: string };
}

export interface RestoreOptions {
  /** Bytes the unpacked archive may take (the work area's quota). */
  maxUnpackedBytes: number;
  maxEntries?: number;
  timeoutMs: number;
  signal?: AbortSignal;
}

export type RestoreResult =
  | {
      hit: true;
      files: number;
      /** The files' bytes as unpacked (`unpackedBytes` too). */
      bytes: number;
      unpackedBytes: number;
      downloadedBytes: number;
      codec: CacheCodec;
      durationMs: number;
      /** Moved in whole from the tree this machine kept for the key (kept-dependencies.ts). */
      kept?: boolean;
    }
  | { hit: false; reason: string; warning: boolean; durationMs: number };

export type SaveResult =
  | {
      saved: true;
      bytes: number;
      files: number;
      codec: CacheCodec;
      durationMs: number;
      /** Uploaded what a snapshot packed while the later steps ran (startCacheSnapshot). */
      packedAhead?: boolean;
    }
  | { saved: false; reason: string; warning: boolean; durationMs: number };

/** The codec of an access's key when this runtime can use it; otherwise why not (a plain miss). */
function usableCodec(key: string): { codec: CacheCodec } | { reason: string } {
  const codec = cacheCodecOf(key);
  if (codec === undefined) return { reason: `the key ${key} names no archive format this runner knows` };
  if (!supportedCacheCodecs().includes(codec)) {
    return { reason: `this runner's Node.js ${process.versions.node} has no ${codec} codec` };
  }
  return { codec };
}

/** Untyped where @types/node predates them: zstd arrived in Node 22.15 and 23.8. */
type ZstdZlib = { createZstdCompress(): Transform; createZstdDecompress(): Transform };

/** A decompressing stream for an archive of `codec` (the runtime must have it: usableCodec). */
export function cacheDecompressor(codec: CacheCodec): Transform {
  if (codec === 'gzip') return zlib.createGunzip();
  if (codec === 'br') return zlib.createBrotliDecompress();
  return (zlib as unknown as ZstdZlib).createZstdDecompress();
}

/**
 * Brotli at quality 3: smaller, faster to pack and to unpack than gzip -6 (src/core/cache-key.ts).
 * Quality 4 packs 12 % smaller but takes 2.3 times as long, and a `lambkin run` waits for its save.
 */
export function cacheCompressor(codec: CacheCodec): Transform {
  if (codec === 'gzip') return zlib.createGzip();
  if (codec === 'br')
    return zlib.createBrotliCompress({ params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 3 } });
  return (zlib as unknown as ZstdZlib).createZstdCompress();
}

const CONTENT_TYPES: Record<CacheCodec, string> = {
  gzip: 'application/gzip',
  br: 'application/x-brotli',
  zstd: 'application/zstd',
};

/** `node_modules` plus the extra paths, normalized, without duplicates or paths inside another. */
export function cachedPaths(extraPaths: readonly string[]): string[] {
  const normalized = [INSTALLED_PACKAGES_PATH, ...extraPaths].map((path) =>
    posix.normalize(path.replace(/\\/g, '/')).replace(/\/+$/, ''),
  );
  for (const path of normalized) {
    if (path === '' || path === '.' || path.startsWith('/') || path.split('/').includes('..')) {
      throw new CacheError(
        `cache path ${JSON.stringify(path)} is not a folder inside the checkout: fix "cache.paths" in the config.`,
      );
    }
  }
  const unique = [...new Set(normalized)].sort();
  return unique.filter((path) => !unique.some((other) => other !== path && path.startsWith(`${other}/`)));
}

/** The checkout's npm lockfile (npm's order) and its git blob sha; undefined without one. */
export async function checkoutLockfile(checkout: string): Promise<{ path: string; sha: string } | undefined> {
  for (const name of NPM_LOCKFILES) {
    const path = join(checkout, name);
    const stats = await lstat(path).catch(() => undefined);
    if (!stats?.isFile()) continue;
    return { path: name, sha: gitBlobSha(await readFile(path)) };
  }
  return undefined;
}

/**
 * Restores the cache entry into the checkout. A hit means every path of the archive was written
 * and the archive was made for exactly this lockfile, runtime and set of paths. On a failure
 * after something was written, the paths that did not exist before are removed again, so the
 * install starts from what the source holds.
 */
export async function restoreCache(
  access: CacheAccess,
  target: CacheTarget,
  options: RestoreOptions,
): Promise<RestoreResult> {
  const started = Date.now();
  const miss = (reason: string, warning = false): RestoreResult => ({
    hit: false,
    reason,
    warning,
    durationMs: Date.now() - started,
  });
  let paths: string[];
  try {
    paths = cachedPaths(target.extraPaths);
  } catch (error) {
    return miss(messageOf(error), true);
  }
  if (access.stored === false) return miss('nothing is stored at this key yet');
  const usable = usableCodec(access.key);
  if ('reason' in usable) return miss(usable.reason);
  const lockfile = target.lockfile ?? (await checkoutLockfile(target.checkout));
  if (!lockfile) return miss('the checkout has no npm lockfile');
  if (lockfile.sha !== access.lockfileSha) {
    return miss(
      `the checkout's ${lockfile.path} (${lockfile.sha.slice(0, 12)}) is not the one the key was made for ` +
        `(${access.lockfileSha.slice(0, 12)})`,
    );
  }
  const expected: Omit<CacheManifest, 'createdAt' | 'nodeVersion'> = {
    format: MANIFEST_FORMAT,
    runtime: runtimeId(currentRuntime(target.nodeVersion)),
    lockfile,
    paths,
  };
  const existedBefore = new Map<string, boolean>();
  for (const path of paths) {
    existedBefore.set(
      path,
      await lstat(join(target.checkout, path)).then(
        () => true,
        () => false,
      ),
    );
  }
  try {
    const fresh = await freshParents(target.checkout, paths, existedBefore);
    const restored = await downloadAndUnpack(access, usable.codec, target.checkout, expected, options, fresh);
    return {
      hit: true,
      ...restored,
      unpackedBytes: restored.bytes,
      codec: usable.codec,
      durationMs: Date.now() - started,
    };
  } catch (error) {
    // Whatever was written is of no use: the install must start from the source alone.
    for (const [path, existed] of existedBefore) {
      if (!existed)
        await rm(join(target.checkout, path), { recursive: true, force: true }).catch(() => undefined);
    }
    if (error instanceof NotStoredError) return miss('nothing is stored at this key');
    if (error instanceof CacheMismatch) return miss(error.message);
    return miss(messageOf(error), true);
  }
}

class NotStoredError extends Error {}

/**
 * When none of the cached paths exists and every folder above them is a real folder (or missing),
 * the folders above them (made here) that FreshUnpack may write into; otherwise undefined, and
 * node-tar's unpacker, which handles what is already there, is used.
 */
async function freshParents(
  checkout: string,
  paths: readonly string[],
  existedBefore: ReadonlyMap<string, boolean>,
): Promise<string[] | undefined> {
  if ([...existedBefore.values()].some(Boolean)) return undefined;
  const parents = new Set<string>();
  for (const path of paths) {
    const segments = path.split('/').slice(0, -1);
    for (let depth = 1; depth <= segments.length; depth++) parents.add(segments.slice(0, depth).join('/'));
  }
  for (const parent of [...parents].sort()) {
    const stats = await lstat(join(checkout, parent)).catch(() => undefined);
    if (stats && !stats.isDirectory()) return undefined;
  }
  for (const parent of parents) await mkdir(join(checkout, parent), { recursive: true });
  return [...parents];
}

async function downloadAndUnpack(
  access: CacheAccess,
  codec: CacheCodec,
  checkout: string,
  expected: Omit<CacheManifest, 'createdAt' | 'nodeVersion'>,
  options: RestoreOptions,
  freshFolders: readonly string[] | undefined,
): Promise<{ files: number; bytes: number; downloadedBytes: number }> {
  const deadline = AbortSignal.timeout(Math.max(options.timeoutMs, 1));
  const signal = options.signal ? AbortSignal.any([deadline, options.signal]) : deadline;
  const label = urlLabel(access.getUrl);
  const response = await fetch(access.getUrl, { signal }).catch((error: unknown) => {
    throw new CacheError(`could not download ${label}: ${describeErrorChain(error)}`, { cause: error });
  });
  if (response.status === 404) {
    await response.body?.cancel().catch(() => undefined);
    throw new NotStoredError();
  }
  if (!response.ok || !response.body) {
    await response.body?.cancel().catch(() => undefined);
    throw new CacheError(`${label} answered HTTP ${response.status} to the download`);
  }
  const declared = Number(response.headers.get('content-length') ?? NaN);
  if (declared > access.maxBytes) {
    await response.body.cancel().catch(() => undefined);
    throw new CacheError(`the archive is ${declared} bytes, more than the limit of ${access.maxBytes}`);
  }

  const maxEntries = options.maxEntries ?? DEFAULT_CACHE_MAX_ENTRIES;
  const policy = new CacheEntryPolicy(expected.paths, options.maxUnpackedBytes, maxEntries);
  const unpackOptions = {
    cwd: checkout,
    admit: (entry: ReadEntry) => policy.admit(entry),
    asError: (error: unknown): Error =>
      error instanceof CacheError
        ? error
        : new CacheError(`could not unpack the archive: ${messageOf(error)}`, { cause: error }),
    unsupported: (entry: ReadEntry): Error =>
      new CacheError(
        `the archive's entry ${JSON.stringify(entry.path)} has an unsupported type (${entry.type})`,
      ),
  };
  const unpack =
    freshFolders === undefined
      ? new GuardedUnpack<Error>(unpackOptions)
      : new FreshUnpack<Error>({ ...unpackOptions, existingFolders: freshFolders });

  const tarStreamLimit = options.maxUnpackedBytes + maxEntries * TAR_OVERHEAD_PER_ENTRY + TAR_OVERHEAD_SLACK;
  let downloadedBytes = 0;
  let tarBytes = 0;
  try {
    await pipeline(
      readBody(response, { signal }),
      async function* countDownload(source: AsyncIterable<Uint8Array>) {
        for await (const chunk of source) {
          downloadedBytes += chunk.length;
          if (downloadedBytes > access.maxBytes) {
            throw new CacheError(`the download passed the limit of ${access.maxBytes} bytes`);
          }
          yield chunk;
        }
      },
      cacheDecompressor(codec),
      async function* checkManifestFirst(source: AsyncIterable<Buffer>) {
        // Nothing reaches the extractor before the manifest says the archive is for this build.
        let pending: Buffer | undefined = Buffer.alloc(0);
        for await (const chunk of source) {
          tarBytes += chunk.length;
          if (tarBytes > tarStreamLimit) {
            throw new CacheError(`the unpacked archive passed ${tarStreamLimit} bytes`);
          }
          if (pending === undefined) {
            yield chunk;
            continue;
          }
          pending = Buffer.concat([pending, chunk]);
          const needed = manifestSpan(pending);
          if (needed === undefined || pending.length < needed) continue;
          checkManifest(readManifest(pending), expected);
          yield pending;
          pending = undefined;
        }
        if (pending !== undefined) throw new CacheError('the archive ends before its manifest');
      },
      unpack.feed,
      { signal: AbortSignal.any([signal, unpack.stop.signal]) },
    );
  } catch (error) {
    unpack.cutOffEarly();
    if (!unpack.failure) {
      unpack.fail(
        error instanceof CacheError || error instanceof CacheMismatch
          ? error
          : deadline.aborted
            ? new CacheError(`the restore took longer than ${Math.round(options.timeoutMs / 1000)} s`)
            : new CacheError(`the download of ${label} broke off: ${describeErrorChain(error)}`, {
                cause: error,
              }),
      );
    }
  } finally {
    await unpack.finish();
  }
  if (unpack.failure) throw unpack.failure;
  if (!policy.sawManifest) throw new CacheError('the archive has no manifest');
  policy.verifyLinks();
  return { files: policy.files, bytes: policy.fileBytes, downloadedBytes };
}

/** Bytes the first entry (header + padded content) takes, once its header is there. */
function manifestSpan(tar: Buffer): number | undefined {
  if (tar.length < 512) return undefined;
  const header = new Header(tar.subarray(0, 512));
  if (!header.cksumValid || header.path !== MANIFEST_NAME || header.type !== 'File') {
    throw new CacheError(`the archive does not start with its manifest (${MANIFEST_NAME})`);
  }
  const size = header.size ?? 0;
  if (size > MAX_MANIFEST_BYTES)
    throw new CacheError(`the archive's manifest is larger than ${MAX_MANIFEST_BYTES} bytes`);
  return 512 + Math.ceil(size / 512) * 512;
}

function readManifest(tar: Buffer): Partial<CacheManifest> {
  const size = new Header(tar.subarray(0, 512)).size ?? 0;
  try {
    const value: unknown = JSON.parse(tar.subarray(512, 512 + size).toString('utf8'));
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('not an object');
    return value as Partial<CacheManifest>;
  } catch (error) {
    throw new CacheError(`the archive's manifest is not valid JSON (${messageOf(error)})`);
  }
}

function checkManifest(
  manifest: Partial<CacheManifest>,
  expected: Omit<CacheManifest, 'createdAt' | 'nodeVersion'>,
): void {
  if (manifest.format !== expected.format) {
    throw new CacheMismatch(`the archive's format ${String(manifest.format)} is not ${expected.format}`);
  }
  if (manifest.runtime !== expected.runtime) {
    throw new CacheMismatch(
      `the archive was made on ${String(manifest.runtime)}, this runner is ${expected.runtime}`,
    );
  }
  if (manifest.lockfile?.sha !== expected.lockfile.sha || manifest.lockfile.path !== expected.lockfile.path) {
    throw new CacheMismatch(`the archive was made for another ${expected.lockfile.path}`);
  }
  const paths = Array.isArray(manifest.paths) ? manifest.paths : [];
  if (paths.length !== expected.paths.length || paths.some((path, index) => path !== expected.paths[index])) {
    throw new CacheMismatch(
      `the archive holds ${JSON.stringify(paths)}, the config asks for ${JSON.stringify(expected.paths)} ` +
        '(a changed "cache.paths" takes effect with the next lockfile change)',
    );
  }
}

const EXTRACTED_TYPES = new Set(['File', 'OldFile', 'ContiguousFile', 'Directory', 'SymbolicLink']);

/**
 * The cache archive's entries: its manifest first (checkManifestFirst already read and checked it;
 * it is not written anywhere), then only plain files, folders and symbolic links under the
 * manifest's paths, links resolving inside the checkout (the gate's checks).
 */
class CacheEntryPolicy {
  sawManifest = false;
  private readonly gate: ArchiveEntryGate;

  constructor(paths: readonly string[], maxBytes: number, maxEntries: number) {
    const unsafe = (name: string, why: string): CacheError =>
      new CacheError(`the archive's entry ${JSON.stringify(name)} ${why}`, { code: 'CACHE_UNSAFE_ARCHIVE' });
    this.gate = new ArchiveEntryGate({
      types: EXTRACTED_TYPES,
      maxEntries,
      maxBytes,
      place: (segments, entryName) => {
        const relative = segments.join('/');
        if (!paths.some((path) => relative === path || relative.startsWith(`${path}/`))) {
          throw unsafe(entryName, `is outside the cached paths ${JSON.stringify(paths)}`);
        }
        return relative;
      },
      unsafe,
      tooManyEntries: (limit) =>
        new CacheError(`the archive has more than ${limit} entries`, { code: 'CACHE_UNSAFE_ARCHIVE' }),
      tooLarge: (entryName, _size, limit) =>
        unsafe(entryName, `takes the unpacked size past the limit of ${limit} bytes`),
    });
  }

  get files(): number {
    return this.gate.files;
  }

  get fileBytes(): number {
    return this.gate.fileBytes;
  }

  admit(entry: ReadEntry): boolean {
    if (!this.sawManifest) {
      if (entry.path !== MANIFEST_NAME) throw new CacheError('the archive does not start with its manifest');
      this.sawManifest = true;
      return false;
    }
    return this.gate.admit(entry);
  }

  verifyLinks(): void {
    this.gate.verifyLinks();
  }
}

export interface SaveOptions {
  /** A folder of the build's own for the archive while it uploads (the work area's tmp). */
  tmpDir: string;
  timeoutMs: number;
  signal?: AbortSignal;
}

/** What a save packs: the key's codec, the paths present and the manifest; or why nothing. */
type SavePlan =
  { codec: CacheCodec; paths: string[]; manifest: CacheManifest } | { skip: string; warning: boolean };

async function planSave(access: CacheAccess, target: CacheTarget): Promise<SavePlan> {
  if (!access.putUrl) return { skip: 'this build may not write the cache', warning: false };
  const usable = usableCodec(access.key);
  if ('reason' in usable) return { skip: usable.reason, warning: false };
  const paths = cachedPaths(target.extraPaths);
  const lockfile = await checkoutLockfile(target.checkout);
  if (!lockfile || lockfile.sha !== access.lockfileSha) {
    return { skip: "the checkout's lockfile is not the one the key was made for", warning: true };
  }
  const present: string[] = [];
  for (const path of paths) {
    if (
      await lstat(join(target.checkout, path)).then(
        () => true,
        () => false,
      )
    )
      present.push(path);
  }
  if (!present.includes(INSTALLED_PACKAGES_PATH))
    return { skip: 'the install left no node_modules to cache', warning: false };
  const runtime = currentRuntime(target.nodeVersion);
  const manifest: CacheManifest = {
    format: MANIFEST_FORMAT,
    runtime: runtimeId(runtime),
    nodeVersion: runtime.nodeVersion,
    lockfile,
    paths,
    createdAt: new Date().toISOString(),
  };
  return { codec: usable.codec, paths: present, manifest };
}

/** An archive packed ahead of the save (startCacheSnapshot), in a folder of its own. */
interface PackedArchive {
  folder: string;
  file: string;
  codec: CacheCodec;
  bytes: number;
  files: number;
  /** Each packed file as it was read: a save checks none changed since. */
  stamps: FileStamp[];
}

interface FileStamp {
  path: string;
  ino: number;
  ctimeMs: number;
}

/**
 * After a build's install step, when a save may follow (a trusted build, a miss, no extra paths):
 * starts its snapshot. Undefined when no save would follow.
 */
export function startBuildCacheSnapshot(
  access: CacheAccess | undefined,
  config: BuildCacheConfig,
  state: BuildCacheState,
  folders: { checkout: string; tmp: string },
  options: Omit<SaveOptions, 'tmpDir'> & { since: number },
  nodeVersion?: string,
): CacheSnapshot | undefined {
  if (!access?.putUrl || !config.cache.enabled || state.hit || config.cache.paths.length > 0)
    return undefined;
  return startCacheSnapshot(
    access,
    {
      checkout: folders.checkout,
      extraPaths: [],
      ...(nodeVersion !== undefined ? { nodeVersion } : {}),
    },
    { ...options, tmpDir: folders.tmp },
  );
}

/** node_modules packed while the steps after the install run (runSteps), for saveCache to upload. */
export interface CacheSnapshot {
  /** When the install ended: a packed file changed since (by a later step) spoils the snapshot. */
  readonly since: number;
  /** The archive, or why there is none (saveCache then packs after the steps, as without one). */
  readonly packed: Promise<PackedArchive | { reason: string }>;
  /** Stops the packing and removes the archive; safe to call twice. */
  discard(): Promise<void>;
}

/**
 * Starts packing what a save of this build would, right after its install, while the later steps
 * run: the final status then waits for no pack at all. Only without extra paths (those are what
 * later steps write). saveCache uploads it only when no file it holds changed after `since`;
 * else it packs again, as it would have without a snapshot.
 */
export function startCacheSnapshot(
  access: CacheAccess,
  target: CacheTarget,
  options: SaveOptions & { since: number },
): CacheSnapshot {
  const stop = new AbortController();
  let folder: string | undefined;
  const packed = (async (): Promise<PackedArchive | { reason: string }> => {
    if (target.extraPaths.length > 0) return { reason: 'extra paths are saved after the steps' };
    const plan = await planSave(access, target);
    if ('skip' in plan) return { reason: plan.skip };
    const signal = AbortSignal.any([stop.signal, AbortSignal.timeout(Math.max(options.timeoutMs, 1))]);
    folder = await mkdtemp(join(options.tmpDir, 'lambkin-cache-'));
    const file = join(folder, 'cache.tar');
    const result = await packArchive(
      target.checkout,
      plan.manifest,
      plan.paths,
      { file, codec: plan.codec },
      access.maxBytes,
      options.signal ? AbortSignal.any([signal, options.signal]) : signal,
    );
    return { folder, file, codec: plan.codec, ...result };
  })().catch(async (error: unknown) => {
    if (folder) await rm(folder, { recursive: true, force: true }).catch(() => undefined);
    return { reason: messageOf(error) };
  });
  return {
    since: options.since,
    packed,
    discard: async () => {
      stop.abort();
      const result = await packed;
      if ('folder' in result)
        await rm(result.folder, { recursive: true, force: true }).catch(() => undefined);
    },
  };
}

/**
 * The snapshot's archive when it still holds what the checkout has: no file it packed was changed
 * or replaced after the install ended (a later step writing into node_modules while it was read
 * could have torn a file). Else undefined, and the snapshot is discarded.
 */
async function unchangedSnapshot(
  snapshot: CacheSnapshot,
  codec: CacheCodec,
): Promise<PackedArchive | undefined> {
  const packed = await snapshot.packed;
  if (!('folder' in packed)) return undefined;
  // The install wrote its files before `since` (taken after its process ended), and a timestamp
  // never runs ahead of the clock: a ctime at or past `since` is a later step's change.
  const changed =
    packed.codec !== codec ||
    packed.stamps.some((stamp) => {
      if (stamp.ctimeMs >= snapshot.since) return true;
      const now = lstatSync(stamp.path, { throwIfNoEntry: false });
      return now !== undefined && (now.ino !== stamp.ino || now.ctimeMs >= snapshot.since);
    });
  if (!changed) return packed;
  await snapshot.discard();
  return undefined;
}

/**
 * Packs `node_modules` and the extra paths (with the manifest first) into an archive in `tmpDir`,
 * then uploads it with the presigned PUT (S3 needs its length up front, hence the file). With a
 * snapshot packed while the later steps ran, and nothing in it changed since, uploads that.
 */
export async function saveCache(
  access: CacheAccess,
  target: CacheTarget,
  options: SaveOptions,
  snapshot?: CacheSnapshot,
): Promise<SaveResult> {
  const started = Date.now();
  const skip = (reason: string, warning: boolean): SaveResult => ({
    saved: false,
    reason,
    warning,
    durationMs: Date.now() - started,
  });
  let folder: string | undefined;
  try {
    const plan = await planSave(access, target);
    if ('skip' in plan) {
      await snapshot?.discard();
      return skip(plan.skip, plan.warning);
    }
    const deadline = AbortSignal.timeout(Math.max(options.timeoutMs, 1));
    const signal = options.signal ? AbortSignal.any([deadline, options.signal]) : deadline;
    const ahead = snapshot ? await unchangedSnapshot(snapshot, plan.codec) : undefined;
    let packed: Pick<PackedArchive, 'file' | 'bytes' | 'files'>;
    if (ahead) {
      folder = ahead.folder;
      packed = ahead;
    } else {
      folder = await mkdtemp(join(options.tmpDir, 'lambkin-cache-'));
      const file = join(folder, 'cache.tar');
      packed = {
        file,
        ...(await packArchive(
          target.checkout,
          plan.manifest,
          plan.paths,
          { file, codec: plan.codec },
          access.maxBytes,
          signal,
        )),
      };
    }
    await upload(access, packed.file, packed.bytes, CONTENT_TYPES[plan.codec], signal);
    return {
      saved: true,
      bytes: packed.bytes,
      files: packed.files,
      codec: plan.codec,
      durationMs: Date.now() - started,
      packedAhead: ahead !== undefined,
    };
  } catch (error) {
    return skip(messageOf(error), true);
  } finally {
    if (folder) await rm(folder, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** node-tar stores a file it saw before under another name as a hard link; a cache never does. */
class NoLinkCache extends Map<`${number}:${number}`, string> {
  override get(): undefined {
    return undefined;
  }
  override set(): this {
    return this;
  }
}

/** Tar output is handed to the compressor in pieces of about this size, not header by header. */
const PACK_BATCH_BYTES = 1024 * 1024;
/** How much tar output may wait for the compressor before packing pauses. */
const PACK_AHEAD_BYTES = 4 * PACK_BATCH_BYTES;
/** The pack holds the event loop at most about this long at a time. */
const PACK_SLICE_MS = 10;

/**
 * Packs `paths` of the checkout into `file`. node-tar's synchronous packer, fed one entry at a time
 * from a walk of our own, in slices of ~10 ms, its output handed to the compressor 1 MiB at a time
 * with backpressure: 15 332 files (112.8 MiB) took 1.7 s instead of 3.0-4.0 s with the
 * asynchronous packer, whose several callbacks per file, and a compressor call per 512-byte
 * header, cost more than the reads and the compression themselves.
 */
async function packArchive(
  checkout: string,
  manifest: CacheManifest,
  paths: readonly string[],
  { file, codec }: { file: string; codec: CacheCodec },
  maxBytes: number,
  signal: AbortSignal,
): Promise<{ bytes: number; files: number; stamps: FileStamp[] }> {
  let problem: string | undefined;
  let files = 0;
  const stamps: FileStamp[] = [];
  const pack = new PackSync({
    cwd: checkout,
    portable: true,
    noDirRecurse: true,
    linkCache: new NoLinkCache(),
    onWriteEntry: (entry: WriteEntry) => {
      if (entry.type === 'File' && entry.path !== MANIFEST_NAME) {
        files++;
        if (entry.stat)
          stamps.push({ path: entry.absolute, ino: entry.stat.ino, ctimeMs: entry.stat.ctimeMs });
      }
      // A restore would refuse these; better not to store an entry no build could use.
      if (entry.type === 'SymbolicLink' && (entry.linkpath ?? '').startsWith('/')) {
        problem ??= `${entry.path} is a symbolic link to the absolute path ${entry.linkpath ?? ''}`;
      }
    },
  });
  let packError: unknown;
  pack.on('error', (error: unknown) => (packError ??= error));
  let pieces: Buffer[] = [];
  let pieceBytes = 0;
  pack.on('data', (chunk: Buffer) => {
    pieces.push(chunk);
    pieceBytes += chunk.length;
  });

  let bytes = 0;
  const compressor = cacheCompressor(codec);
  const writing = pipeline(
    compressor,
    async function* bound(source: AsyncIterable<Buffer>) {
      for await (const chunk of source) {
        bytes += chunk.length;
        if (bytes > maxBytes)
          throw new CacheError(`the archive passed the limit of ${maxBytes} bytes; not saved`);
        if (problem) throw new CacheError(`not saved: ${problem}, which no restore would accept`);
        yield chunk;
      }
    },
    createWriteStream(file),
    { signal },
  );
  let writeError: unknown;
  writing.catch((error: unknown) => (writeError ??= error));
  /** Hands the tar output so far to the compressor; waits while it is behind. */
  const flush = async (): Promise<void> => {
    if (pieceBytes === 0) return;
    const piece = Buffer.concat(pieces, pieceBytes);
    pieces = [];
    pieceBytes = 0;
    compressor.write(piece);
    // A few pieces ahead, so packing and compressing overlap; no more, so memory stays bounded.
    if (compressor.writableLength >= PACK_AHEAD_BYTES) {
      await Promise.race([once(compressor, 'drain'), writing]);
    }
  };
  const stopIfFailed = (): void => {
    signal.throwIfAborted();
    if (writeError) throw writeError;
    if (packError) throw packError;
    if (problem) throw new CacheError(`not saved: ${problem}, which no restore would accept`);
  };

  try {
    const content = Buffer.from(JSON.stringify(manifest, null, 2) + '\n');
    const manifestEntry = new ReadEntry(
      new Header({ path: MANIFEST_NAME, mode: 0o644, size: content.length, type: 'File', mtime: new Date() }),
    );
    manifestEntry.end(content);
    pack.add(manifestEntry);
    // A folder before what it holds, as tar lists them; links are stored, never followed.
    const pending = [...paths]
      .reverse()
      .map((path) => ({ path, folder: lstatSync(join(checkout, path)).isDirectory() }));
    let slice = performance.now();
    for (let entry = pending.pop(); entry !== undefined; entry = pending.pop()) {
      pack.add(entry.path);
      stopIfFailed();
      if (entry.folder) {
        const children = readdirSync(join(checkout, entry.path), { withFileTypes: true });
        for (let index = children.length - 1; index >= 0; index--) {
          const child = children[index] as Dirent;
          pending.push({ path: join(entry.path, child.name), folder: child.isDirectory() });
        }
      }
      if (pieceBytes >= PACK_BATCH_BYTES) await flush();
      if (performance.now() - slice > PACK_SLICE_MS) {
        await flush();
        await yieldToEventLoop();
        slice = performance.now();
      }
    }
    pack.end();
    await flush();
    compressor.end();
    await writing;
  } catch (error) {
    compressor.destroy();
    await writing.catch(() => undefined);
    throw error;
  }
  stopIfFailed();
  return { bytes: (await stat(file)).size, files, stamps };
}

/** PUT with an explicit Content-Length (fetch would send a streamed body chunked, which S3 refuses). */
async function upload(
  access: CacheAccess,
  file: string,
  bytes: number,
  contentType: string,
  signal: AbortSignal,
): Promise<void> {
  const url = new URL(access.putUrl ?? '');
  const label = urlLabel(url.href);
  const send = url.protocol === 'https:' ? httpsRequest : url.protocol === 'http:' ? httpRequest : undefined;
  if (!send) throw new CacheError(`the cache upload URL must use https (got ${url.protocol})`);
  const request = send(url, {
    method: 'PUT',
    headers: {
      ...(access.putHeaders ?? {}),
      'content-length': String(bytes),
      'content-type': contentType,
    },
    signal,
  });
  const answered = once(request, 'response') as Promise<[IncomingMessage]>;
  try {
    await pipeline(createReadStream(file), request);
    const [response] = await answered;
    const body = await readSome(response);
    // 412: another build stored this key meanwhile (the PUT is signed with If-None-Match: *).
    if (response.statusCode === 412) return;
    if ((response.statusCode ?? 0) < 200 || (response.statusCode ?? 0) >= 300) {
      throw new CacheError(
        `${label} answered HTTP ${response.statusCode ?? '?'} to the upload: ${body.slice(0, 300)}`,
      );
    }
  } catch (error) {
    answered.catch(() => undefined);
    if (error instanceof CacheError) throw error;
    throw new CacheError(`the upload to ${label} failed: ${describeErrorChain(error)}`, { cause: error });
  }
}

async function readSome(response: IncomingMessage): Promise<string> {
  let text = '';
  for await (const chunk of response) {
    if (text.length < 4096) text += String(chunk);
  }
  return text;
}

/** Scheme, host and path: a presigned URL's query is a credential. */
function urlLabel(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.origin}${parsed.pathname}`;
  } catch {
    return 'the cache URL';
  }
}

/** The install commands Lambkin runs by default: a hit makes them pointless, so they are skipped. */
const DEFAULT_INSTALLS = new Set(['npm ci', 'npm install']);

export interface BuildCacheConfig {
  cache: { enabled: boolean; paths: string[] };
  install: string[];
}

export interface BuildCacheState {
  /** The archive was restored completely. */
  hit: boolean;
  /** A hit with the default install: `npm ci` would only delete what was restored. */
  skipInstall: boolean;
}

/**
 * Before the install step: restores the build's cache entry when it has one and the config does
 * not turn the cache off. Writes one line to the build log saying what happened and why.
 */
export async function restoreBuildCache(
  access: CacheAccess | undefined,
  config: BuildCacheConfig,
  checkout: string,
  options: RestoreOptions,
  log: (line: string) => void,
  nodeVersion?: string,
  /** The restore made beforehand (beside the fetch), a hit already moved into the checkout: only logged. */
  restored?: RestoreResult,
): Promise<BuildCacheState> {
  const none: BuildCacheState = { hit: false, skipInstall: false };
  if (!access) return none;
  if (!config.cache.enabled) {
    log('Cache: off ("cache": false in the config)');
    return none;
  }
  const result =
    restored ??
    (await restoreCache(
      access,
      { checkout, extraPaths: config.cache.paths, ...(nodeVersion !== undefined ? { nodeVersion } : {}) },
      options,
    ));
  if (!result.hit) {
    log(
      result.warning
        ? `Warning: cache: could not restore ${access.key}: ${result.reason}. Installing without it.`
        : `Cache: miss for ${access.key}: ${result.reason}`,
    );
    return none;
  }
  const skipInstall =
    config.install.length > 0 && config.install.every((command) => DEFAULT_INSTALLS.has(command.trim()));
  const mibPerSecond = result.unpackedBytes / 1024 ** 2 / Math.max(result.durationMs / 1000, 0.001);
  log(
    (result.kept
      ? `Cache: restored ${access.key} from the tree this machine kept for it (${result.files} files, ` +
        `${formatMiB(result.unpackedBytes)} MiB, moved in whole) in ${formatDuration(result.durationMs)}; `
      : `Cache: restored ${access.key} (${result.files} files, ${formatMiB(result.unpackedBytes)} MiB unpacked ` +
        `from ${formatMiB(result.downloadedBytes)} MiB ${result.codec}) in ${formatDuration(result.durationMs)}, ` +
        `${mibPerSecond.toFixed(1)} MiB/s; `) +
      (skipInstall
        ? 'install skipped: the dependencies of this lockfile are in place'
        : 'the install commands run as configured'),
  );
  return { hit: true, skipInstall };
}

/**
 * After every step passed: saves the dependencies when the controller gave this build a PUT URL
 * (a trusted build, and nothing stored at the key yet). Never fails the build.
 */
export async function saveBuildCache(
  access: CacheAccess | undefined,
  config: BuildCacheConfig,
  state: BuildCacheState,
  folders: { checkout: string; tmp: string },
  options: Omit<SaveOptions, 'tmpDir'>,
  log: (line: string) => void,
  nodeVersion?: string,
  snapshot?: CacheSnapshot,
): Promise<void> {
  if (!access || !config.cache.enabled || state.hit) return;
  if (!access.putUrl) {
    if (access.stored === false) log('Cache: not saved: this build may read the cache but never write it');
    return;
  }
  const result = await saveCache(
    access,
    {
      checkout: folders.checkout,
      extraPaths: config.cache.paths,
      ...(nodeVersion !== undefined ? { nodeVersion } : {}),
    },
    { ...options, tmpDir: folders.tmp },
    snapshot,
  );
  if (result.saved) {
    log(
      `Cache: saved ${access.key} (${result.files} files, ${formatMiB(result.bytes)} MiB) in ${formatDuration(result.durationMs)}` +
        (result.packedAhead ? ', packed while the steps after the install ran' : ''),
    );
  } else {
    log(
      result.warning
        ? `Warning: cache: could not save ${access.key}: ${result.reason}. The build is not affected.`
        : `Cache: not saved: ${result.reason}`,
    );
  }
}
