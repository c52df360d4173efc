/**
 * Typed errors of the builder's source and work-area code. Every failure to get the source of a
 * build is a `SourceFetchError` (the build ends in `error` with its message); the subclasses say
 * which kind, for callers and tests that need to tell them apart.
 */
import { LambkinError } from '../core/errors.js';

/** The source of the build could not be fetched or unpacked. */
export class SourceFetchError extends LambkinError {
  /** Whether trying again later could succeed (network trouble, server errors). */
  readonly retryable: boolean;

  constructor(message: string, options: { code?: string; cause?: unknown; retryable?: boolean } = {}) {
    super(options.code ?? 'SOURCE_FETCH', message, { cause: options.cause });
    this.retryable = options.retryable ?? false;
  }
}

/** The archive URL answered 404. */
export class ArchiveNotFoundError extends SourceFetchError {
  constructor(readonly url: string) {
    super(
      `The source archive was not found (HTTP 404 from ${url}). Is the commit pushed? ` +
        'A private repository needs the controller to resolve the archive URL with its token.',
      { code: 'ARCHIVE_NOT_FOUND' },
    );
  }
}

/** An archive entry that could write outside the checkout or is not a plain file, folder or link. */
export class UnsafeArchiveError extends SourceFetchError {
  constructor(
    readonly entry: string,
    readonly reason: string,
  ) {
    super(
      `Refused the source archive: entry ${JSON.stringify(entry)} ${reason}. Nothing outside the ` +
        'checkout was written. A GitHub archive never contains such an entry: check the archive URL.',
      { code: 'UNSAFE_ARCHIVE' },
    );
  }
}

export type ArchiveLimit = 'maxBytes' | 'maxEntries' | 'maxCompressedBytes';

/** The archive is larger than the limits allow; extraction was stopped when it crossed one. */
export class ArchiveLimitError extends SourceFetchError {
  constructor(
    readonly limit: ArchiveLimit,
    readonly value: number,
    detail: string,
  ) {
    super(
      `Stopped unpacking the source archive: ${detail} (limit ${limit} = ${value}). ` +
        `Make the repository smaller or raise ${limit} in the builder's archive limits.`,
      { code: 'ARCHIVE_TOO_LARGE' },
    );
  }
}

/** Fetching the source took longer than allowed. */
export class SourceTimeoutError extends SourceFetchError {
  constructor(
    readonly timeoutMs: number,
    what: string,
  ) {
    super(
      `${what} took longer than ${Math.round(timeoutMs / 1000)} s and was stopped. ` +
        'Check that the source host is reachable from the builder, or raise the fetch timeout.',
      { code: 'SOURCE_TIMEOUT', retryable: true },
    );
  }
}

/** The `git` binary is not installed where the builder runs. */
export class GitMissingError extends SourceFetchError {
  constructor(binary: string, cause?: unknown) {
    super(
      `The git binary (${binary}) was not found, but the repository config asks for a git clone. ` +
        'Add the runtime layer that provides git to the builder function, or remove `git` from the config.',
      { code: 'GIT_MISSING', cause },
    );
  }
}

/** The remote does not have (or will not serve) the commit to build. */
export class CommitNotFoundError extends SourceFetchError {
  constructor(
    readonly sha: string,
    url: string,
    detail: string,
  ) {
    super(
      `Commit ${sha} was not found in ${url} (${detail}). Is the commit pushed, and was it not ` +
        'removed by a force-push? A private repository needs credentials the controller provides.',
      { code: 'COMMIT_NOT_FOUND' },
    );
  }
}

/** A work area could not be made or removed safely. */
export class WorkspaceError extends LambkinError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('WORKSPACE', message, options);
  }
}
