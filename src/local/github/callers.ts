/**
 * Who is calling and how much they may still call, as GitHub does it:
 * - a wrong token (or a malformed Authorization header) is answered 401 `Bad credentials`;
 * - no Authorization header is an anonymous caller, limited to 60 requests an hour by address;
 * - when the stand-in has no `token` configured, any token is accepted (5000 requests an hour);
 * - when it knows GitHub Apps, a JWT is an App's (checked as GitHub does, jwt.ts), and an
 *   installation token it minted is that installation's, until it expires (then `Bad credentials`).
 */
import type { IncomingMessage } from 'node:http';
import { RouteError } from './http.js';
import { looksLikeJwt, verifyAppJwt } from './jwt.js';
import type { AppRecord, InstallationGrant } from './records.js';

/** `token`: a personal (or OAuth) token; `app`: an App's JWT; `installation`: an installation token. */
export type Caller =
  | { kind: 'anonymous'; authenticated: false; /** Rate limit bucket. */ identity: string }
  | { kind: 'token'; authenticated: true; identity: string }
  | { kind: 'app'; authenticated: true; identity: string; app: AppRecord }
  | { kind: 'installation'; authenticated: true; identity: string; grant: InstallationGrant };

/** What the stand-in knows of GitHub Apps: the Apps by id, the installation tokens it minted. */
export interface AppCredentials {
  apps: Map<number, AppRecord>;
  installationTokens: Map<string, InstallationGrant>;
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
export function identify(
  request: IncomingMessage,
  token: string | undefined,
  credentials?: AppCredentials,
): Caller {
  const presented = parseAuthorization(request.headers.authorization);
  if (presented === undefined)
    return { kind: 'anonymous', authenticated: false, identity: `anonymous:${request.socket.remoteAddress}` };
  if (presented === null) throw new RouteError(401, 'Bad credentials');
  if (credentials && credentials.apps.size > 0) {
    if (looksLikeJwt(presented)) {
      const app = verifyAppJwt(presented, credentials.apps.values());
      return { kind: 'app', authenticated: true, identity: `app:${app.id}`, app };
    }
    const grant = credentials.installationTokens.get(presented);
    if (grant) {
      if (grant.expiresAt <= Date.now()) throw new RouteError(401, 'Bad credentials');
      return {
        kind: 'installation',
        authenticated: true,
        identity: `installation:${grant.installationId}`,
        grant,
      };
    }
    if (presented.startsWith('ghs_')) throw new RouteError(401, 'Bad credentials');
  }
  if (token !== undefined && presented !== token) throw new RouteError(401, 'Bad credentials');
  return { kind: 'token', authenticated: true, identity: `token:${presented}` };
}

/** The caller's current hour in `windows` (by identity), a new one once the last has ended. */
/** GitHub's hourly limit for a token: 5 000 requests (anonymous callers: 60). */
export const AUTHENTICATED_RATE_LIMIT = 5000;

export function rateWindow(
  windows: Map<string, RateWindow>,
  caller: Caller,
  authenticatedLimit = AUTHENTICATED_RATE_LIMIT,
): RateWindow {
  const now = Math.floor(Date.now() / 1000);
  let window = windows.get(caller.identity);
  if (!window || window.reset <= now) {
    window = { limit: caller.authenticated ? authenticatedLimit : 60, used: 0, reset: now + 3600 };
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
