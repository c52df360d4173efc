/**
 * Gets the source of a build into its checkout folder: either GitHub's tarball of the commit,
 * streamed straight from the archive URL into the folder, or (repo config `git: { depth }`) a
 * shallow clone of exactly that commit.
 *
 * The archive is untrusted input: every entry is checked before node-tar sees it, and anything
 * that could land outside the checkout, or that is not a plain file, folder or link, ends the
 * whole fetch with an error naming the entry, instead of being skipped with a warning.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { createGunzip } from 'node:zlib';
import { execa } from 'execa';
import { ReadEntry } from 'tar';
import {
  ArchiveLimitError,
  ArchiveNotFoundError,
  CommitNotFoundError,
  GitMissingError,
  SourceFetchError,
  SourceTimeoutError,
  UnsafeArchiveError,
} from './source-errors.js';
import {
  ArchiveEntryGate,
  GuardedUnpack,
  TAR_OVERHEAD_PER_ENTRY,
  TAR_OVERHEAD_SLACK,
  type ArchiveEntryRules,
} from './archive-tree.js';
import { layerEnvironment } from './runtime-layer.js';
import { readBody } from './download.js';
import { describeErrorChain } from '../core/errors.js';

export interface ArchiveLimits {
  /** Unpacked bytes (sum of the entries' declared sizes). Default 2 GiB. */
  maxBytes?: number;
  /** Entries in the archive. Default 200 000. */
  maxEntries?: number;
  /** Downloaded (compressed) bytes. Default: no separate limit. */
  maxCompressedBytes?: number;
}

export interface FetchArchiveOptions {
  limits?: ArchiveLimits;
  /** For the whole fetch, retry included. Default 10 minutes. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface ExtractedArchive {
  /** Files and links written (folders not counted). */
  files: number;
  /** Bytes of file content written. */
  bytes: number;
}

export const DEFAULT_ARCHIVE_LIMITS = { maxBytes: 2 * 1024 ** 3, maxEntries: 200_000 } as const;
export const DEFAULT_FETCH_TIMEOUT_MS = 10 * 60_000;
const RETRY_DELAY_MS = 500;

const FILE_TYPES = new Set(['File', 'OldFile', 'ContiguousFile']);
const EXTRACTED_TYPES = new Set([...FILE_TYPES, 'Directory', 'SymbolicLink', 'Link']);

/**
 * Downloads the archive at `url` (GitHub's short-lived tarball URL; redirects are followed) and
 * unpacks it into `destination` without its top folder (`owner-repo-sha7/`), streaming: nothing
 * is buffered whole or written to a temporary file, and the limits stop a tar bomb as it crosses
 * them. A reset or server error before anything was unpacked is retried once.
 *
 * On failure the destination may hold part of the archive: dispose of the work area.
 */
export async function fetchArchive(
  url: string,
  destination: string,
  options: FetchArchiveOptions = {},
): Promise<ExtractedArchive> {
  const target = parseHttpUrl(url);
  const limits = resolveLimits(options.limits);
  const timeoutMs = options.timeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS;
  const deadline = AbortSignal.timeout(timeoutMs);
  const signal = options.signal ? AbortSignal.any([deadline, options.signal]) : deadline;
  const describeAbort = (): SourceFetchError | undefined => {
    if (deadline.aborted) return new SourceTimeoutError(timeoutMs, `Downloading ${target.label}`);
    if (options.signal?.aborted) {
      return new SourceFetchError(`Downloading ${target.label} was cancelled.`, { code: 'SOURCE_CANCELLED' });
    }
    return undefined;
  };

  for (let attempt = 1; ; attempt++) {
    const attemptState = { admittedEntries: 0 };
    try {
      return await downloadAndExtract(target, destination, limits, signal, attemptState);
    } catch (error) {
      // A refused entry or limit outranks an abort that raced with it; anything else was the abort.
      const failure =
        error instanceof SourceFetchError ? error : (describeAbort() ?? asSourceError(error, target.label));
      const nothingUnpacked = attemptState.admittedEntries === 0;
      if (attempt === 1 && failure.retryable && nothingUnpacked && !signal.aborted) {
        await sleep(RETRY_DELAY_MS, undefined, { signal }).catch(() => undefined);
        if (!signal.aborted) continue;
        throw describeAbort() ?? failure;
      }
      throw failure;
    }
  }
}

interface HttpTarget {
  href: string;
  /** For messages: scheme, host and path only; the query of an archive URL carries a token. */
  label: string;
}

function parseHttpUrl(url: string): HttpTarget {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new SourceFetchError(
      'The archive URL is not a valid URL. The controller must pass the archive URL.',
    );
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') {
    throw new SourceFetchError(
      `The archive URL must use https (got ${parsed.protocol}). The controller must pass the archive URL.`,
    );
  }
  return { href: parsed.href, label: `${parsed.origin}${parsed.pathname}` };
}

type ResolvedLimits = Required<Omit<ArchiveLimits, 'maxCompressedBytes'>> & { maxCompressedBytes?: number };

function resolveLimits(limits: ArchiveLimits = {}): ResolvedLimits {
  const resolved: ResolvedLimits = {
    maxBytes: limits.maxBytes ?? DEFAULT_ARCHIVE_LIMITS.maxBytes,
    maxEntries: limits.maxEntries ?? DEFAULT_ARCHIVE_LIMITS.maxEntries,
    maxCompressedBytes: limits.maxCompressedBytes,
  };
  for (const [name, value] of Object.entries(resolved)) {
    if (value !== undefined && !(Number.isSafeInteger(value) && value > 0)) {
      throw new SourceFetchError(`Archive limit ${name} must be a positive whole number (got ${value}).`);
    }
  }
  return resolved;
}

async function downloadAndExtract(
  target: HttpTarget,
  destination: string,
  limits: ResolvedLimits,
  signal: AbortSignal,
  attemptState: { admittedEntries: number },
): Promise<ExtractedArchive> {
  const response = await fetch(target.href, { signal, redirect: 'follow' });
  if (!response.ok) {
    await response.body?.cancel().catch(() => undefined);
    throw httpStatusError(response.status, target.label);
  }
  const declaredLength = Number(response.headers.get('content-length') ?? NaN);
  if (limits.maxCompressedBytes !== undefined && declaredLength > limits.maxCompressedBytes) {
    await response.body?.cancel().catch(() => undefined);
    throw new ArchiveLimitError(
      'maxCompressedBytes',
      limits.maxCompressedBytes,
      `the archive is ${declaredLength} bytes to download`,
    );
  }
  if (!response.body) throw new SourceFetchError(`${target.label} answered with an empty body.`);

  await mkdir(destination, { recursive: true });
  const policy = new ArchiveEntryGate(sourceArchiveRules(limits));
  const unpack = new GuardedUnpack<SourceFetchError>({
    cwd: destination,
    admit: (entry) => {
      const extract = policy.admit(entry);
      if (extract) attemptState.admittedEntries++;
      return extract;
    },
    asError: extractionError,
    unsupported: (entry) =>
      new UnsafeArchiveError(
        entry.path,
        entry.meta
          ? 'has an extended header larger than 1 MiB'
          : `has an unsupported entry type (${entry.type})`,
      ),
  });

  const tarStreamLimit = limits.maxBytes + limits.maxEntries * TAR_OVERHEAD_PER_ENTRY + TAR_OVERHEAD_SLACK;
  let downloadedBytes = 0;
  let tarStreamBytes = 0;
  let abortedBy: unknown;
  try {
    await pipeline(
      readBody(response, { signal }),
      async function* countDownload(source: AsyncIterable<Uint8Array>) {
        for await (const chunk of source) {
          downloadedBytes += chunk.length;
          if (limits.maxCompressedBytes !== undefined && downloadedBytes > limits.maxCompressedBytes) {
            throw new ArchiveLimitError(
              'maxCompressedBytes',
              limits.maxCompressedBytes,
              `more than ${limits.maxCompressedBytes} bytes were downloaded`,
            );
          }
          yield chunk;
        }
      },
      createGunzip(),
      async function* countTarStream(source: AsyncIterable<Buffer>) {
        for await (const chunk of source) {
          tarStreamBytes += chunk.length;
          // Content is bounded by the entries' declared sizes; this bounds what is around it.
          if (tarStreamBytes > tarStreamLimit) {
            throw new ArchiveLimitError(
              'maxBytes',
              limits.maxBytes,
              `the unpacked tar stream passed ${tarStreamLimit} bytes`,
            );
          }
          yield chunk;
        }
      },
      unpack.feed,
      { signal: AbortSignal.any([signal, unpack.stop.signal]) },
    );
  } catch (error) {
    unpack.cutOffEarly();
    // A timeout or cancel is described by the caller, which knows which signal fired.
    if (!unpack.failure && signal.aborted) abortedBy = error;
    else unpack.fail(unpack.failure ?? asSourceError(error, target.label, downloadedBytes));
  } finally {
    await unpack.finish();
  }
  if (unpack.failure) throw unpack.failure;
  if (abortedBy !== undefined) throw abortedBy;
  policy.verifyLinks();
  // Links count as files here, as git lists them.
  return { files: policy.files + policy.links, bytes: policy.fileBytes };
}

function httpStatusError(status: number, label: string): SourceFetchError {
  if (status === 404) return new ArchiveNotFoundError(label);
  if (status === 401 || status === 403 || status === 410) {
    return new SourceFetchError(
      `${label} refused the archive download (HTTP ${status}). Archive URLs are short-lived: ` +
        're-run the build so the controller resolves a fresh one.',
      { code: 'ARCHIVE_REFUSED' },
    );
  }
  const retryable = status >= 500 || status === 429;
  return new SourceFetchError(
    `${label} answered HTTP ${status} to the archive download. ` +
      (retryable ? 'The server is having trouble: re-run the build later.' : 'Check the archive URL.'),
    { code: 'ARCHIVE_HTTP_ERROR', retryable },
  );
}

/** Errors node-tar reports while writing (strict mode turns its warnings into these). */
function extractionError(error: unknown): SourceFetchError {
  if (error instanceof SourceFetchError) return error;
  const details = (error ?? {}) as { code?: unknown; message?: unknown; tarCode?: unknown; entry?: unknown };
  const code = typeof details.code === 'string' ? details.code : '';
  const message = typeof details.message === 'string' ? details.message : String(error);
  const entry = details.entry instanceof ReadEntry ? details.entry.path : undefined;
  if (code === 'ENOSPC') {
    return new SourceFetchError(
      "The disk is full while unpacking the source archive. Raise the builder function's ephemeral storage.",
      { code: 'DISK_FULL', cause: error },
    );
  }
  if (code === 'TAR_SYMLINK_ERROR' && entry !== undefined) {
    return new UnsafeArchiveError(entry, 'would be written through a symbolic link');
  }
  return new SourceFetchError(
    `Could not unpack the source archive${entry === undefined ? '' : ` at ${JSON.stringify(entry)}`}: ${message}. ` +
      'The archive is damaged or not a tar.gz archive of the repository.',
    { code: 'ARCHIVE_INVALID', cause: error },
  );
}

/** Turns whatever a download attempt threw into a typed error. */
function asSourceError(error: unknown, label: string, downloadedBytes = 0): SourceFetchError {
  if (error instanceof SourceFetchError) return error;
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && code.startsWith('Z_')) {
    return new SourceFetchError(
      `The download from ${label} is not valid gzip data (${(error as Error).message}). Check the archive URL.`,
      { code: 'ARCHIVE_INVALID', cause: error },
    );
  }
  const reason = describeErrorChain(error);
  const where = downloadedBytes > 0 ? `broke off after ${downloadedBytes} bytes` : 'failed';
  return new SourceFetchError(
    `Downloading the source archive from ${label} ${where}: ${reason}. Re-run the build; if it keeps ` +
      'failing, check that the builder can reach the host.',
    { code: 'ARCHIVE_DOWNLOAD_FAILED', cause: error, retryable: true },
  );
}

/**
 * The source archive's rules for the entry gate: everything lives under one top folder
 * (`owner-repo-sha7/`), which is left out of the written paths; hard links may point at earlier
 * files; limits are the fetch's.
 */
function sourceArchiveRules(limits: ResolvedLimits): ArchiveEntryRules {
  let topFolder: string | undefined;
  return {
    types: EXTRACTED_TYPES,
    maxEntries: limits.maxEntries,
    maxBytes: limits.maxBytes,
    // `owner-repo-sha7/src/a.ts` → `src/a.ts`, refusing anything that is not under the one top folder.
    place: (segments, entryName, verb) => {
      const [top, ...rest] = segments;
      if (top === undefined) throw new UnsafeArchiveError(entryName, `${verb} an empty path`);
      topFolder ??= top;
      if (top !== topFolder) {
        throw new UnsafeArchiveError(
          entryName,
          `${verb} a path outside the archive's top folder ${JSON.stringify(topFolder)}`,
        );
      }
      return rest.join('/');
    },
    unsafe: (entryName, why) => new UnsafeArchiveError(entryName, why),
    tooManyEntries: (limit) =>
      new ArchiveLimitError('maxEntries', limit, `the archive has more than ${limit} entries`),
    tooLarge: (entryName, size, limit) =>
      new ArchiveLimitError(
        'maxBytes',
        limit,
        `entry ${JSON.stringify(entryName)} (${size} bytes) takes the unpacked size past the limit`,
      ),
  };
}

export interface CloneCommitOptions {
  /** Repository URL (`https://github.com/owner/name.git`). */
  url: string;
  /** Full commit id to check out. */
  sha: string;
  /** Empty or missing folder to clone into. */
  destination: string;
  /** History depth to fetch (repo config `git: { depth }`). */
  depth: number;
  /** For the whole clone. Default 10 minutes. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Transports git may use. Default `['https']`; tests add `file` or `http`. */
  allowedProtocols?: readonly string[];
  /** The git binary. Default `git` from PATH. */
  gitBinary?: string;
}

/**
 * A shallow clone of exactly one commit: `git init`, `git fetch --depth N <url> <sha>`, checkout
 * of FETCH_HEAD, detached. Git runs with no system or user config (so no credential helpers or
 * hooks), never prompts, and may use only the allowed transports. Returns the commit checked out.
 */
export async function cloneCommit(options: CloneCommitOptions): Promise<{ sha: string }> {
  const { url, destination, depth } = options;
  const sha = options.sha.toLowerCase();
  if (!/^[0-9a-f]{40}([0-9a-f]{24})?$/.test(sha)) {
    throw new SourceFetchError(`Commit id ${JSON.stringify(options.sha)} is not a full 40-character id.`);
  }
  if (!Number.isSafeInteger(depth) || depth < 1) {
    throw new SourceFetchError(
      `git depth must be a whole number of at least 1 (got ${depth}). Fix the repo config.`,
    );
  }
  const label = redactUrlCredentials(url);
  const timeoutMs = options.timeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS;
  const git = new GitRunner(
    options.gitBinary ?? 'git',
    options.allowedProtocols ?? ['https'],
    timeoutMs,
    options.signal,
  );

  try {
    await git.prepare();
    await mkdir(destination, { recursive: true });
    await git.run(['init', '--quiet', '--template=', destination], 'git init');
    const fetched = await git.run(
      [
        '-C',
        destination,
        'fetch',
        '--quiet',
        '--no-tags',
        '--no-recurse-submodules',
        `--depth=${depth}`,
        // Whatever the URL looks like, git reads it as a repository, never as an option.
        '--',
        url,
        sha,
      ],
      `Fetching ${sha} from ${label}`,
      { allowFailure: true },
    );
    if (fetched.exitCode !== 0) throw fetchFailure(fetched.stderr, sha, label, url);
    await git.run(['-C', destination, 'checkout', '--quiet', '--detach', 'FETCH_HEAD'], 'git checkout');
    // Tools that ask for `origin` get the URL, but never the credentials a URL might carry.
    await git.run(['-C', destination, 'remote', 'add', 'origin', label], 'git remote add');
    const head = (await git.run(['-C', destination, 'rev-parse', 'HEAD'], 'git rev-parse')).stdout.trim();
    if (head !== sha) {
      throw new SourceFetchError(`The clone of ${label} checked out ${head} instead of ${sha}.`);
    }
    return { sha: head };
  } finally {
    await git.dispose();
  }
}

function fetchFailure(stderr: string, sha: string, label: string, url: string): SourceFetchError {
  const detail = lastLine(stderr.split(url).join(label));
  if (
    /not our ref|unadvertised object|couldn't find remote ref|no such remote ref|did not send all necessary/i.test(
      stderr,
    )
  ) {
    return new CommitNotFoundError(sha, label, detail);
  }
  if (/not found|does not appear to be a git repository|repository .* does not exist/i.test(stderr)) {
    return new SourceFetchError(
      `The repository ${label} was not found (${detail}). Check the repository URL; a private repository ` +
        'needs credentials the controller provides.',
      { code: 'REPOSITORY_NOT_FOUND' },
    );
  }
  if (/could not read Username|Authentication failed|terminal prompts disabled/i.test(stderr)) {
    return new SourceFetchError(
      `${label} asks for credentials (${detail}). Public repositories clone without; a private one needs ` +
        'a URL with a token, which the controller provides.',
      { code: 'GIT_AUTH_REQUIRED' },
    );
  }
  if (/transport .* not allowed/i.test(stderr)) {
    return new SourceFetchError(`git refused the transport of ${label} (${detail}). Use an https URL.`, {
      code: 'GIT_TRANSPORT_REFUSED',
    });
  }
  return new SourceFetchError(`git fetch of ${label} failed: ${detail}. Re-run the build; check the URL.`, {
    code: 'GIT_FAILED',
    retryable: true,
  });
}

function lastLine(text: string): string {
  const lines = text
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean);
  return lines.at(-1) ?? 'no error output';
}

/** `https://user:token@host/x` → `https://host/x`, for messages and the stored remote. */
function redactUrlCredentials(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.username = '';
    parsed.password = '';
    parsed.search = '';
    return parsed.href;
  } catch {
    return url.replace(/\/\/[^@/]*@/, '//');
  }
}

interface GitResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs git commands under one deadline, in a clean environment; a command over time is killed
 * with its whole process group.
 */
class GitRunner {
  private readonly deadline: number;
  private home: string | undefined;

  constructor(
    private readonly binary: string,
    private readonly allowedProtocols: readonly string[],
    private readonly timeoutMs: number,
    private readonly signal: AbortSignal | undefined,
  ) {
    this.deadline = Date.now() + timeoutMs;
  }

  /** Makes an empty HOME (no .netrc, no .gitconfig to pick up) and checks git is there. */
  async prepare(): Promise<void> {
    this.home = await mkdtemp(join(tmpdir(), 'lambkin-git-home-'));
    await this.run(['--version'], 'git --version');
  }

  async dispose(): Promise<void> {
    if (this.home) await rm(this.home, { recursive: true, force: true });
  }

  async run(args: string[], what: string, options: { allowFailure?: boolean } = {}): Promise<GitResult> {
    const remaining = this.deadline - Date.now();
    if (remaining <= 0) throw new SourceTimeoutError(this.timeoutMs, what);
    if (this.signal?.aborted) {
      throw new SourceFetchError(`${what} was cancelled.`, { code: 'SOURCE_CANCELLED' });
    }

    const child = execa(this.binary, ['-c', 'credential.helper=', '-c', 'core.fsmonitor=false', ...args], {
      env: this.environment(),
      extendEnv: false,
      reject: false,
      stdin: 'ignore',
      // Its own process group, so a timeout also ends helpers such as git-remote-https.
      detached: true,
    });
    let timedOut = false;
    const killGroup = (): void => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup();
    }, remaining);
    this.signal?.addEventListener('abort', killGroup, { once: true });
    const result = await child.finally(() => {
      clearTimeout(timer);
      this.signal?.removeEventListener('abort', killGroup);
    });

    if (timedOut) throw new SourceTimeoutError(this.timeoutMs, what);
    if (this.signal?.aborted) {
      throw new SourceFetchError(`${what} was cancelled.`, { code: 'SOURCE_CANCELLED' });
    }
    if ((result as { code?: unknown }).code === 'ENOENT') {
      throw new GitMissingError(this.binary, result.cause);
    }
    const outcome: GitResult = {
      exitCode: result.exitCode ?? -1,
      stdout: String(result.stdout),
      stderr: String(result.stderr),
    };
    if (outcome.exitCode !== 0 && !options.allowFailure) {
      throw new SourceFetchError(`${what} failed: ${lastLine(outcome.stderr)}.`, { code: 'GIT_FAILED' });
    }
    return outcome;
  }

  private environment(): Record<string, string> {
    return {
      PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
      HOME: this.home ?? '/nonexistent',
      LANG: 'C',
      LC_ALL: 'C',
      GIT_TERMINAL_PROMPT: '0',
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_CONFIG_GLOBAL: '/dev/null',
      GIT_ALLOW_PROTOCOL: this.allowedProtocols.join(':'),
      // Without this, ssh transports would ask; with GIT_ALLOW_PROTOCOL they are refused anyway.
      GIT_SSH_COMMAND: 'false',
      ...layerEnvironment(),
    };
  }
}
