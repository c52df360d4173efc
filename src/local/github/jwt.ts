/**
 * GitHub App JSON Web Tokens as GitHub checks them: RS256, signed with the App's private key,
 * `iss` the App's id (or its client id), `iat` not in the future and `exp` in the future (each
 * with 60 s allowed for clock drift), and `exp` at most 10 minutes after `iat`. A refused JWT is
 * answered 401 with GitHub's own messages (which @octokit/auth-app reads to correct a clock skew).
 */
import { createPublicKey, verify } from 'node:crypto';
import { RouteError } from './http.js';
import type { AppRecord } from './records.js';

export const JWT_UNDECODABLE = 'A JSON web token could not be decoded';
export const JWT_EXPIRED =
  "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires";
export const JWT_TOO_LONG = "'Expiration time' claim ('exp') is too far in the future";
export const JWT_IAT_INVALID =
  "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued";
/** Longest JWT lifetime GitHub accepts, in seconds. */
export const JWT_MAX_LIFETIME = 600;
/** Clock drift allowed either way, in seconds. */
export const JWT_CLOCK_SKEW = 60;

const BASE64URL = /^[A-Za-z0-9_-]+$/;

function decodePart(part: string): Record<string, unknown> | undefined {
  if (!BASE64URL.test(part)) return undefined;
  try {
    const value: unknown = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/** Whether `credential` has the form of a JWT (three base64url parts, the first a JOSE header). */
export function looksLikeJwt(credential: string): boolean {
  const parts = credential.split('.');
  return parts.length === 3 && typeof decodePart(parts[0] ?? '')?.alg === 'string';
}

/** The App whose JWT `credential` is; throws GitHub's 401 when it is not a valid one now. */
export function verifyAppJwt(credential: string, apps: Iterable<AppRecord>, nowMs = Date.now()): AppRecord {
  const [headerPart = '', payloadPart = '', signaturePart = ''] = credential.split('.');
  const header = decodePart(headerPart);
  const payload = decodePart(payloadPart);
  const undecodable = new RouteError(401, JWT_UNDECODABLE);
  if (!header || !payload || header.alg !== 'RS256' || !BASE64URL.test(signaturePart)) throw undecodable;
  const issuer = payload.iss;
  const app = [...apps].find(
    (candidate) =>
      (typeof issuer === 'number' && issuer === candidate.id) ||
      (typeof issuer === 'string' && (issuer === String(candidate.id) || issuer === candidate.clientId)),
  );
  if (!app) throw undecodable;
  const signed = verify(
    'RSA-SHA256',
    Buffer.from(`${headerPart}.${payloadPart}`),
    createPublicKey(app.publicKey),
    Buffer.from(signaturePart, 'base64url'),
  );
  if (!signed) throw undecodable;
  const now = Math.floor(nowMs / 1000);
  const { iat, exp } = payload;
  if (typeof iat !== 'number' || !Number.isInteger(iat) || iat > now + JWT_CLOCK_SKEW) {
    throw new RouteError(401, JWT_IAT_INVALID);
  }
  if (typeof exp !== 'number' || exp <= now - JWT_CLOCK_SKEW) throw new RouteError(401, JWT_EXPIRED);
  if (exp - iat > JWT_MAX_LIFETIME || exp > now + JWT_MAX_LIFETIME + JWT_CLOCK_SKEW) {
    throw new RouteError(401, JWT_TOO_LONG);
  }
  return app;
}
