/** Failures injected with `failNext`: server errors, rate limits, slow answers, reset connections. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { RATE_LIMIT_DOCS, rateLimitHeaders, type Caller, type RateWindow } from './callers.js';
import type { RecordedRequest } from './context.js';
import { baseHeaders, DOCS, errorBody, send, sendJson } from './http.js';

/**
 * - `500`, `502`: a server error (502 with GitHub's HTML body, not JSON).
 * - `rate-limit`: 403 with the primary rate limit spent (`x-ratelimit-remaining: 0`, reset soon).
 * - `429`: the secondary rate limit, with `retry-after`.
 * - `slow`: answers normally after `delayMs`.
 * - `reset`: reads the request, then destroys the connection without answering.
 */
export type FaultMode = '500' | '502' | 'rate-limit' | '429' | 'slow' | 'reset';

export interface Fault {
  mode: FaultMode;
  /** How many matching requests fail; default 1. */
  times?: number;
  /** Only requests with this method (any when omitted). */
  method?: string;
  /** Only requests whose path matches. */
  path?: RegExp;
  /** `slow`: delay before answering; default 5000, at most 60000. */
  delayMs?: number;
  /** `429`: the `retry-after` seconds; default 1. */
  retryAfterSeconds?: number;
  /** `rate-limit`: seconds until `x-ratelimit-reset`; default 1. */
  resetInSeconds?: number;
}

type ActiveFault = Required<Pick<Fault, 'mode' | 'times'>> & Fault;

/** The request a fault answers, and who sent it (undefined: bad credentials, or no API request). */
interface FaultedRequest {
  request: IncomingMessage;
  response: ServerResponse;
  requestId: string;
  caller: Caller | undefined;
  window: RateWindow | undefined;
}

const SECONDARY_RATE_LIMIT_DOCS =
  'https://docs.github.com/free-pro-team@latest/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits';
const MAX_FAULT_DELAY_MS = 60_000;

/** The faults waiting for a request, used in the order they were added. */
export class Faults {
  private readonly waiting: ActiveFault[] = [];
  /** The `slow` delays under way, so that closing the server ends them. */
  private readonly delays = new Set<NodeJS.Timeout>();

  add(fault: Fault): void {
    this.waiting.push({ ...fault, times: fault.times ?? 1 });
  }

  /** How many failures are still waiting for a request. */
  pending(): number {
    return this.waiting.reduce((sum, fault) => sum + fault.times, 0);
  }

  clear(): void {
    this.waiting.length = 0;
  }

  cancelDelays(): void {
    for (const timer of this.delays) clearTimeout(timer);
    this.delays.clear();
  }

  /** The first fault that matches `recorded`, counted as used once. */
  take(recorded: RecordedRequest): ActiveFault | undefined {
    const index = this.waiting.findIndex(
      (fault) =>
        (fault.method === undefined || fault.method.toUpperCase() === recorded.method) &&
        (fault.path === undefined || fault.path.test(recorded.path)),
    );
    if (index < 0) return undefined;
    const fault = this.waiting[index] as ActiveFault;
    fault.times -= 1;
    if (fault.times <= 0) this.waiting.splice(index, 1);
    return fault;
  }

  /** Answers the fault; returns false when the request should then be served normally (`slow`). */
  async apply(
    fault: ActiveFault,
    { request, response, requestId, caller, window }: FaultedRequest,
  ): Promise<boolean> {
    const limits = window ? rateLimitHeaders(window) : {};
    switch (fault.mode) {
      case 'reset':
        request.socket.destroy();
        return true;
      case 'slow': {
        const delay = Math.min(Math.max(fault.delayMs ?? 5000, 0), MAX_FAULT_DELAY_MS);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            this.delays.delete(timer);
            resolve();
          }, delay);
          this.delays.add(timer);
        });
        return false;
      }
      case '500':
        sendJson(
          response,
          500,
          { ...baseHeaders(requestId), ...limits },
          errorBody(500, 'Server Error', DOCS),
        );
        return true;
      case '502':
        send(
          response,
          502,
          { ...baseHeaders(requestId), 'content-type': 'text/html; charset=utf-8' },
          '<html><body><h1>502 Bad Gateway</h1><p>We couldn\u2019t respond to your request in time. Sorry about that. Please try resubmitting your request and contact us if the problem persists.</p></body></html>',
        );
        return true;
      case 'rate-limit': {
        const reset = Math.ceil(Date.now() / 1000) + (fault.resetInSeconds ?? 1);
        const who = caller?.authenticated ? 'user ID 1' : (request.socket.remoteAddress ?? 'your IP');
        sendJson(
          response,
          403,
          {
            ...baseHeaders(requestId),
            'x-ratelimit-limit': String(window?.limit ?? 5000),
            'x-ratelimit-remaining': '0',
            'x-ratelimit-reset': String(reset),
            'x-ratelimit-used': String(window?.limit ?? 5000),
            'x-ratelimit-resource': 'core',
          },
          errorBody(
            403,
            `API rate limit exceeded for ${who}. If you reach out to GitHub Support for help, please include the request ID ${requestId}.`,
            RATE_LIMIT_DOCS,
          ),
        );
        return true;
      }
      case '429':
        sendJson(
          response,
          429,
          { ...baseHeaders(requestId), ...limits, 'retry-after': String(fault.retryAfterSeconds ?? 1) },
          errorBody(
            429,
            `You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID ${requestId}.`,
            SECONDARY_RATE_LIMIT_DOCS,
          ),
        );
        return true;
    }
  }
}
