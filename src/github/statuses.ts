/**
 * Commit statuses: how a build shows on GitHub. Delivery is bounded by a policy because the two
 * callers have different budgets: the webhook must answer GitHub within 10 s in total, while the
 * builder's final status may wait out a short outage or a rate limit reset.
 */
import type { Octokit } from '@octokit/rest';
import { splitRepoName } from './client.js';
import {
  GitHubApiError,
  adviceFor,
  isRateLimited,
  rateLimitRetryAt,
  readRequestFailure,
  shortSha,
  type RequestFailure,
} from './api-errors.js';
import type { CommitStatusUpdate, DeliveryPolicy, StatusReporter } from '../core/ports.js';

/** The webhook's pending status: ~3 s of the 10 s GitHub gives the whole delivery. */
export const INTAKE_DELIVERY: DeliveryPolicy = { deadlineMs: 3000, maxAttempts: 3, attemptTimeoutMs: 2000 };

/** The builder's final status: worth waiting for, within a minute (rate limit resets included). */
export const FINAL_DELIVERY: DeliveryPolicy = {
  deadlineMs: 60_000,
  maxAttempts: 8,
  attemptTimeoutMs: 10_000,
};

export const DEFAULT_STATUS_CONTEXT = 'lambkin';
/** GitHub answers 422 "description is too long (maximum is 140 characters)" beyond this. */
export const MAX_STATUS_DESCRIPTION_LENGTH = 140;
/** Not worth starting an attempt with less time than this left. */
const MIN_ATTEMPT_MS = 100;

/** Cuts `text` to GitHub's limit, counting characters (code points) as GitHub does, marking the cut. */
export function truncateDescription(text: string, limit = MAX_STATUS_DESCRIPTION_LENGTH): string {
  const characters = [...text];
  return characters.length <= limit ? text : `${characters.slice(0, limit - 1).join('')}…`;
}

/** Our own attempt timer fired: GitHub did not answer in time. */
class AttemptTimeout extends Error {}

/** Settles with `promise`, or rejects as soon as `signal` aborts (the request may sit in a queue). */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    if (signal.aborted) onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

interface AttemptOutcome {
  retryable: boolean;
  /** For the error message. */
  reason: string;
  failure?: RequestFailure;
  /** Earliest time (epoch ms) GitHub will take another request (rate limits). */
  retryAt?: number;
}

function judge(error: unknown, timedOut: boolean, timeoutMs: number): AttemptOutcome {
  if (timedOut) return { retryable: true, reason: `GitHub did not answer within ${timeoutMs} ms` };
  const failure = readRequestFailure(error);
  if (failure.status === undefined) {
    return failure.network
      ? { retryable: true, reason: `the connection to GitHub failed (${failure.message})`, failure }
      : { retryable: false, reason: failure.message, failure };
  }
  const reason = `GitHub answered ${failure.status}: ${failure.message}`;
  if (isRateLimited(failure)) {
    const retryAt = rateLimitRetryAt(failure);
    return { retryable: true, reason, failure, ...(retryAt === undefined ? {} : { retryAt }) };
  }
  return { retryable: failure.status >= 500, reason, failure };
}

export class GitHubStatusReporter implements StatusReporter {
  constructor(private readonly octokit: Octokit) {}

  async setStatus(update: CommitStatusUpdate, policy: DeliveryPolicy): Promise<void> {
    const started = Date.now();
    const deadline = started + policy.deadlineMs;
    const { owner, name } = splitRepoName(update.repo);
    const context = update.context ?? DEFAULT_STATUS_CONTEXT;
    const body = {
      owner,
      repo: name,
      sha: update.sha,
      state: update.state,
      description: truncateDescription(update.description),
      context,
      ...(update.targetUrl ? { target_url: update.targetUrl } : {}),
    };
    const initialBackoff = policy.initialBackoffMs ?? 250;
    const maxBackoff = policy.maxBackoffMs ?? 8000;

    for (let attempt = 1; ; attempt += 1) {
      const remaining = deadline - Date.now();
      const timeoutMs = Math.max(Math.min(remaining, policy.attemptTimeoutMs ?? remaining), 1);
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(new AttemptTimeout()), timeoutMs);
      let outcome: AttemptOutcome;
      try {
        // retries: 0 keeps the client's plugins from retrying on their own schedule.
        const request = this.octokit.rest.repos.createCommitStatus({
          ...body,
          request: { retries: 0, signal: controller.signal },
        });
        await untilAborted(request, controller.signal);
        return;
      } catch (error) {
        outcome = judge(error, controller.signal.aborted, timeoutMs);
      } finally {
        clearTimeout(timer);
      }

      const giveUp = (why: string): GitHubApiError => {
        const status = outcome.failure?.status;
        return new GitHubApiError(
          `Could not set the ${update.state} status of ${update.repo}@${shortSha(update.sha)} ` +
            `(context "${context}"): ${outcome.reason}; ${why} after ${attempt} attempt(s) in ${Date.now() - started} ms. ` +
            adviceFor(outcome.failure, `the repository ${update.repo} and commit ${update.sha}`),
          {
            repo: update.repo,
            ref: update.sha,
            attempts: attempt,
            ...(status === undefined ? {} : { status }),
            ...(outcome.failure?.requestId ? { requestId: outcome.failure.requestId } : {}),
          },
        );
      };
      if (!outcome.retryable) throw giveUp('not retried');
      if (attempt >= policy.maxAttempts) throw giveUp('gave up');
      const backoff = Math.min(initialBackoff * 2 ** (attempt - 1), maxBackoff) * (0.8 + Math.random() * 0.4);
      const wait = Math.max(backoff, (outcome.retryAt ?? 0) - Date.now());
      if (Date.now() + wait + MIN_ATTEMPT_MS > deadline) throw giveUp('no time left to retry');
      await sleep(wait);
    }
  }
}
