/**
 * Sending one thing to GitHub within a budget: attempts each with their own timeout, retried on
 * network errors, 5xx and rate limits (waiting for the reset GitHub names), never past the
 * deadline. The commit status and the check run reporters share it: the webhook must answer
 * GitHub within 10 s in total, while the builder's final report may wait out a short outage.
 */
import { isRateLimited, rateLimitRetryAt, readRequestFailure, type RequestFailure } from './api-errors.js';
import type { DeliveryPolicy } from '../core/ports.js';

/** Not worth starting an attempt with less time than this left. */
const MIN_ATTEMPT_MS = 100;

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

export interface AttemptOutcome {
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

/** Why a delivery gave up: the last attempt's outcome, and how far it got. */
export interface DeliveryFailure {
  outcome: AttemptOutcome;
  /** "not retried", "gave up" or "no time left to retry". */
  why: string;
  attempts: number;
  elapsedMs: number;
}

/**
 * Calls `send` until it succeeds or `policy` says stop; `send` must pass the signal to its
 * requests and ask the client not to retry on its own (`request: { retries: 0, signal }`).
 * `giveUp` makes the error thrown at the end.
 */
export async function deliver<T>(
  policy: DeliveryPolicy,
  send: (signal: AbortSignal) => Promise<T>,
  giveUp: (failure: DeliveryFailure) => Error,
): Promise<T> {
  const started = Date.now();
  const deadline = started + policy.deadlineMs;
  const initialBackoff = policy.initialBackoffMs ?? 250;
  const maxBackoff = policy.maxBackoffMs ?? 8000;
  for (let attempt = 1; ; attempt += 1) {
    const remaining = deadline - Date.now();
    const timeoutMs = Math.max(Math.min(remaining, policy.attemptTimeoutMs ?? remaining), 1);
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new AttemptTimeout()), timeoutMs);
    let outcome: AttemptOutcome;
    try {
      return await untilAborted(send(controller.signal), controller.signal);
    } catch (error) {
      outcome = judge(error, controller.signal.aborted, timeoutMs);
    } finally {
      clearTimeout(timer);
    }
    const stop = (why: string): Error =>
      giveUp({ outcome, why, attempts: attempt, elapsedMs: Date.now() - started });
    if (!outcome.retryable) throw stop('not retried');
    if (attempt >= policy.maxAttempts) throw stop('gave up');
    const backoff = Math.min(initialBackoff * 2 ** (attempt - 1), maxBackoff) * (0.8 + Math.random() * 0.4);
    const wait = Math.max(backoff, (outcome.retryAt ?? 0) - Date.now());
    if (Date.now() + wait + MIN_ATTEMPT_MS > deadline) throw stop('no time left to retry');
    await sleep(wait);
  }
}
