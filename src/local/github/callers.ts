/**
 * Who is calling and how much they may still call, as GitHub does it:
 * - a wrong token (or a malformed Authorization header) is answered 401 `Bad credentials`;
 * - no Authorization header is an anonymous caller, limited to 60 requests an hour by address;
 * - when the stand-in has no `token` configured, any token is accepted (5000 requests an hour).
 */
import type { IncomingMessage } from 'node:http';
import { RouteError } from './http.js';

export interface Caller {
  authenticated: boolean;
  /** Rate limit bucket. */
  identity: string;
}

export interface RateWindow {
  limit: number;
  used: number;
  /** Epoch seconds. */
  reset: number;
}

export const RATE_LIMIT_DOCS = 'https://docs.github.com/rest/overview/rate-limits-for-the-rest-api';

function parseAuthorization(header: string | undefined): string | undefined | null {
  if (header === undefined) return undefined;
  const match = /^(?:token|bearer)\s+(\S+)\s*$/i.exec(header);
  return match?.[1] ?? null; // null: present but malformed
}

/** The caller of `request`; throws the 401 for a token other than `token` (when there is one). */
export function identify(request: IncomingMessage, token: string | undefined): Caller {
  const presented = parseAuthorization(request.headers.authorization);
  if (presented === undefined)
    return { authenticated: false, identity: `anonymous:${request.socket.remoteAddress}` };
  if (presented === null || (token !== undefined && presented !== token)) {
    throw new RouteError(401, 'Bad credentials');
  }
  return { authenticated: true, identity: `token:${presented}` };
}

/** The caller's current hour in `windows` (by identity), a new one once the last has ended. */
export function rateWindow(windows: Map<string, RateWindow>, caller: Caller): RateWindow {
  const now = Math.floor(Date.now() / 1000);
  let window = windows.get(caller.identity);
  if (!window || window.reset <= now) {
    window = { limit: caller.authenticated ? 5000 : 60, used: 0, reset: now + 3600 };
    windows.set(caller.identity, window);
  }
  return window;
}

export function rateLimitHeaders(window: RateWindow): Record<string, string> {
  return {
    'x-ratelimit-limit': String(window.limit),
    'x-ratelimit-remaining': String(Math.max(window.limit - window.used, 0)),
    'x-ratelimit-reset': String(window.reset),
    'x-ratelimit-used': String(window.used),
    'x-ratelimit-resource': 'core',
  };
}
