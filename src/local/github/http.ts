/** How the stand-in answers, as GitHub does: its headers, JSON bodies, error bodies and ids. */
import { createHash, randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';

export const DOCS = 'https://docs.github.com/rest';
/** What GitHub answers a private resource with. */
export const PRIVATE_CACHE = 'private, max-age=60, s-maxage=60';

const EXPOSED_HEADERS =
  'ETag, Link, Location, Retry-After, X-GitHub-OTP, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Used, X-RateLimit-Resource, X-RateLimit-Reset, X-OAuth-Scopes, X-Accepted-OAuth-Scopes, X-Poll-Interval, X-GitHub-Media-Type, X-GitHub-SSO, X-GitHub-Request-Id, Deprecation, Sunset';

/** GitHub's timestamps: ISO 8601 in UTC, whole seconds. */
export function timestamp(at = Date.now()): string {
  return new Date(at).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** Like GitHub's `x-github-request-id`: five colon-separated upper-case hex groups. */
export function newRequestId(): string {
  return [2, 3, 4, 4, 4].map((bytes) => randomBytes(bytes).toString('hex').toUpperCase()).join(':');
}

export function nodeId(kind: string, id: number): string {
  return Buffer.from(`0:${kind}${id}`).toString('base64');
}

/** Thrown by a route: answered as GitHub's JSON error body. */
export class RouteError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly documentationUrl = DOCS,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

export const notFound = (): RouteError => new RouteError(404, 'Not Found');

/** GitHub's 422 for a field it refuses (`resource` is the kind of object, as `Status` or `Hook`). */
export function validationFailed(
  docs: string,
  resource: string,
  message: string,
  field?: string,
  code = 'custom',
): RouteError {
  return new RouteError(422, 'Validation Failed', docs, {
    errors: [{ resource, code, ...(field === undefined ? {} : { field }), message }],
  });
}

export function baseHeaders(requestId: string): Record<string, string> {
  return {
    'access-control-allow-origin': '*',
    'access-control-expose-headers': EXPOSED_HEADERS,
    'content-security-policy': "default-src 'none'",
    'referrer-policy': 'origin-when-cross-origin, strict-origin-when-cross-origin',
    'strict-transport-security': 'max-age=31536000; includeSubdomains; preload',
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'deny',
    'x-xss-protection': '0',
    'x-github-api-version-selected': '2022-11-28',
    'x-github-request-id': requestId,
  };
}

export function send(
  response: ServerResponse,
  status: number,
  headers: Record<string, string>,
  body: string | Buffer = '',
): void {
  if (response.destroyed || response.headersSent) return;
  const payload = typeof body === 'string' ? Buffer.from(body) : body;
  response.writeHead(status, { ...headers, 'content-length': String(payload.length) });
  response.end(payload);
}

export function sendJson(
  response: ServerResponse,
  status: number,
  headers: Record<string, string>,
  body: unknown,
): void {
  const text = JSON.stringify(body);
  const etag: Record<string, string> =
    status < 300 ? { etag: `W/"${createHash('sha256').update(text).digest('hex').slice(0, 32)}"` } : {};
  send(
    response,
    status,
    {
      ...headers,
      ...etag,
      'content-type': 'application/json; charset=utf-8',
      'x-github-media-type': 'github.v3; format=json',
    },
    text,
  );
}

export function errorBody(status: number, message: string, documentationUrl: string, extra = {}): unknown {
  return { message, ...extra, documentation_url: documentationUrl, status: String(status) };
}
