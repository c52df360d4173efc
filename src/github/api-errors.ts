/**
 * Typed errors for calls to the GitHub REST API, and the one place that reads Octokit's failures
 * (HTTP errors, network errors, aborts) into plain facts.
 */
import { LambkinError } from '../core/errors.js';
import { isPlainObject } from '../core/values.js';

export interface GitHubErrorDetails {
  /** `owner/name`. */
  repo: string;
  /** The commit or ref the call was about, when there was one. */
  ref?: string;
  /** HTTP status GitHub answered; undefined when no answer came (timeout, reset connection). */
  status?: number;
  /** GitHub's `x-github-request-id`: quote it to GitHub Support. */
  requestId?: string;
  /** How many requests were made before giving up. */
  attempts?: number;
  cause?: unknown;
}

/** A GitHub API call failed; the message says which call, why and what to do. */
export class GitHubApiError extends LambkinError {
  readonly repo: string;
  readonly ref?: string;
  readonly status?: number;
  readonly requestId?: string;
  readonly attempts?: number;

  constructor(message: string, details: GitHubErrorDetails, code = 'GITHUB_API') {
    super(code, message, details.cause === undefined ? undefined : { cause: details.cause });
    this.repo = details.repo;
    if (details.ref !== undefined) this.ref = details.ref;
    if (details.status !== undefined) this.status = details.status;
    if (details.requestId !== undefined) this.requestId = details.requestId;
    if (details.attempts !== undefined) this.attempts = details.attempts;
  }
}

/** The repository, commit or file does not exist, or the token cannot see it (GitHub answers 404 to both). */
export class GitHubNotFoundError extends GitHubApiError {
  constructor(message: string, details: GitHubErrorDetails) {
    super(message, details, 'GITHUB_NOT_FOUND');
  }
}

/** What went wrong with one request, read from whatever Octokit threw. */
export interface RequestFailure {
  /** HTTP status of GitHub's answer; undefined when there was no answer. */
  status?: number;
  /** GitHub's `message` (or the network error's). */
  message: string;
  headers: Record<string, string>;
  requestId?: string;
  /** The failure came from the network (no HTTP answer): connection reset, refused, DNS. */
  network: boolean;
}

type HeaderValue = string | number | string[] | undefined;

function headerText(headers: Record<string, HeaderValue>): Record<string, string> {
  const result: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined)
      result[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : String(value);
  }
  return result;
}

/**
 * Octokit's RequestError carries `status` and, when GitHub answered, `response`; a network error
 * is a RequestError with status 500 and no response. Read by shape rather than class so this does
 * not depend on Octokit's internal packages.
 */
export function readRequestFailure(error: unknown): RequestFailure {
  if (!isPlainObject(error)) return { message: String(error), headers: {}, network: false };
  const response = isPlainObject(error.response) ? error.response : undefined;
  const text = error instanceof Error ? error.message : String(error.message ?? 'unknown error');
  if (response === undefined || typeof response.status !== 'number') {
    const isHttpClientError = typeof error.status === 'number' && isPlainObject(error.request);
    return { message: text, headers: {}, network: isHttpClientError };
  }
  const headers = isPlainObject(response.headers)
    ? headerText(response.headers as Record<string, HeaderValue>)
    : {};
  const data = response.data;
  const githubMessage = isPlainObject(data) && typeof data.message === 'string' ? data.message : text;
  return {
    status: response.status,
    message: githubMessage,
    headers,
    ...(headers['x-github-request-id'] ? { requestId: headers['x-github-request-id'] } : {}),
    network: false,
  };
}

/** Short commit id for messages. */
export function shortSha(sha: string): string {
  return /^[0-9a-f]{40}$/i.test(sha) ? sha.slice(0, 7) : sha;
}

/** Whether a 403/429 is GitHub's primary or secondary rate limit (as opposed to a permission problem). */
export function isRateLimited(failure: RequestFailure): boolean {
  if (failure.status === 429) return true;
  if (failure.status !== 403) return false;
  return failure.headers['x-ratelimit-remaining'] === '0' || /rate limit/i.test(failure.message);
}

/** When the rate limit lets requests through again (epoch ms), from `retry-after` or `x-ratelimit-reset`. */
export function rateLimitRetryAt(failure: RequestFailure, now = Date.now()): number | undefined {
  const retryAfter = Number(failure.headers['retry-after']);
  if (failure.headers['retry-after'] !== undefined && Number.isFinite(retryAfter)) {
    return now + Math.max(retryAfter, 0) * 1000;
  }
  const reset = Number(failure.headers['x-ratelimit-reset']);
  if (failure.headers['x-ratelimit-remaining'] === '0' && Number.isFinite(reset) && reset > 0) {
    return reset * 1000;
  }
  return undefined;
}

/** The details of a failed call about `repo` at `ref`, for GitHubApiError. */
export function failureDetails(
  error: unknown,
  failure: RequestFailure,
  repo: string,
  ref: string,
): GitHubErrorDetails {
  return {
    repo,
    ref,
    cause: error,
    ...(failure.status === undefined ? {} : { status: failure.status }),
    ...(failure.requestId ? { requestId: failure.requestId } : {}),
  };
}

/** What to do about a failed call, by what GitHub answered. `subject` names the thing asked for. */
export function adviceFor(failure: RequestFailure | undefined, subject: string): string {
  const status = failure?.status;
  if (failure && isRateLimited(failure)) {
    const retryAt = rateLimitRetryAt(failure);
    const until = retryAt === undefined ? '' : ` until ${new Date(retryAt).toISOString()}`;
    return `The token is rate limited${until}: wait for the limit to reset, or use a token with a higher limit (a GitHub App installation).`;
  }
  switch (status) {
    case 401:
      return "GitHub refused the credentials: set GITHUB_TOKEN to a valid, unexpired token (token mode), or check the App's id and private key and that its installation is not suspended (App mode).";
    case 403:
      return `The token is not allowed to do this: give it access to ${subject} (for commit statuses, the "Commit statuses: write" permission or the repo:status scope; in App mode, accept the App's requested permissions on its installation).`;
    case 404:
      return `${subject} does not exist or the token cannot see it: check the repository name and commit, and that GITHUB_TOKEN has access to the repository (private repositories need it), or in App mode that the App is installed on it.`;
    case 422:
      return `GitHub rejected the request: check ${subject} and that the commit has been pushed.`;
    default:
      return "GitHub did not answer in time or failed: check GITHUB_API_URL and GitHub's status, then run the build again.";
  }
}
