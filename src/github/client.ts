/**
 * The process's GitHub REST client: Octokit with the retry and throttling plugins. Made once per
 * process by the composition root and passed in, never imported as a singleton.
 *
 * Retries: ordinary calls are retried by the plugins (server errors by plugin-retry, rate limits by
 * plugin-throttling when the wait is short). A call made with `request: { retries: 0 }` is retried
 * by neither: its caller owns the retry policy (the status reporter, whose deadlines the plugins'
 * waits would break).
 */
import { Octokit } from '@octokit/rest';
import { retry } from '@octokit/plugin-retry';
import { throttling } from '@octokit/plugin-throttling';
import Bottleneck from 'bottleneck';
import { BadRequestError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';

export const DEFAULT_GITHUB_API_URL = 'https://api.github.com';

const LambkinOctokit = Octokit.plugin(retry, throttling);
export type GitHubClient = InstanceType<typeof LambkinOctokit>;

/** Numbers the clients of this process (their throttling queues are kept apart). */
let clientCount = 0;

export interface GitHubClientOptions {
  /** `GITHUB_API_URL`; GitHub Enterprise Server is `https://<host>/api/v3`. */
  baseUrl?: string;
  /** `GITHUB_TOKEN`; without it the client is anonymous (public repositories, 60 requests an hour). */
  token?: string;
  userAgent?: string;
  /** Longest rate limit wait the plugins sit out before failing a call; default 60 s. */
  maxRateLimitWaitSeconds?: number;
  /** Where Octokit's warnings go (deprecations, rate limit waits); default the console. */
  logger?: Logger;
}

/** What the throttling handlers read of a request's options (`request.retries` is set per call). */
interface ThrottledRequest {
  method?: string;
  url?: string;
  request?: Record<string, unknown>;
}

/** What every client of the process shares: the API, the token, the user agent and the log. */
function baseOptions(options: GitHubClientOptions) {
  const logger = options.logger;
  const warn = (message: string): void => (logger ? logger.warn(message) : console.warn(message));
  return {
    baseUrl: (options.baseUrl ?? DEFAULT_GITHUB_API_URL).replace(/\/+$/, ''),
    ...(options.token ? { auth: options.token } : {}),
    userAgent: options.userAgent ?? 'lambkin',
    log: {
      debug: () => undefined,
      info: () => undefined,
      warn,
      // Octokit logs every failed request at error level; callers report failures with context, so
      // these lines would only repeat them (a 404 for an absent file is not even a failure).
      error: () => undefined,
    },
  };
}

/**
 * A client without the retry and throttling plugins, for callers that bound and retry each call
 * themselves (src/github/delivery.ts: the commit status reporter). The plugins' queues (Bottleneck)
 * wait on the timer loop several times per request: ~20 ms a call that GitHub answers in 2.
 */
export function createDirectGitHubClient(options: GitHubClientOptions = {}): Octokit {
  return new Octokit(baseOptions(options));
}

export function createGitHubClient(options: GitHubClientOptions = {}): GitHubClient {
  const maxWaitSeconds = options.maxRateLimitWaitSeconds ?? 60;
  const base = baseOptions(options);
  const warn = base.log.warn;
  const sitOut =
    (kind: string) =>
    (retryAfterSeconds: number, requestOptions: ThrottledRequest, _octokit: unknown, retryCount: number) => {
      // The plugin retries when this returns true (its type says void; its code reads the result).
      if (requestOptions.request?.retries === 0) return false; // the caller retries
      const wait = retryAfterSeconds <= maxWaitSeconds && retryCount < 1;
      warn(
        `GitHub ${kind} hit for ${requestOptions.method ?? ''} ${requestOptions.url ?? ''}: ` +
          (wait ? `retrying in ${retryAfterSeconds} s` : `not waiting ${retryAfterSeconds} s`),
      );
      return wait;
    };
  return new LambkinOctokit({
    ...base,
    // 403 and 429 are rate limits (or refusals): the throttling plugin decides on those, by their reset.
    retry: { retries: 3, doNotRetry: [400, 401, 403, 404, 410, 422, 429, 451] },
    throttle: {
      id: `lambkin-${++clientCount}`,
      // The plugin's default spaces writes 1 s apart in one queue per process, and an attempt the
      // status reporter has already abandoned keeps its slot: a busy process (the dev server, a
      // burst of webhooks) then starves the statuses that matter. Lambkin writes few statuses per
      // build; GitHub's secondary limits, if hit, answer 403/429 with a wait that the callers honour.
      write: new Bottleneck.Group({ maxConcurrent: 8, minTime: 0 }),
      onRateLimit: sitOut('rate limit'),
      onSecondaryRateLimit: sitOut('secondary rate limit'),
    },
  });
}

export interface RepoCoordinates {
  owner: string;
  name: string;
}

/** Splits `owner/name`; anything else is a programming or configuration error. */
export function splitRepoName(repo: string): RepoCoordinates {
  const match = /^([^/\s]+)\/([^/\s]+)$/.exec(repo);
  if (!match?.[1] || !match[2]) {
    throw new BadRequestError(`"${repo}" is not a repository name: use owner/name, as GitHub's full_name.`);
  }
  return { owner: match[1], name: match[2] };
}
