/**
 * Verifies the AWS Signature Version 4 of a request to the local stack: the signature is computed
 * again with `@smithy/signature-v4` (the AWS SDK's own signer) from the request as received and the
 * caller's secret, and compared in constant time. Three forms exist:
 *
 * - the `Authorization` header (every SDK call: the stack's own clients, the CLI's `--local`);
 * - the query (`X-Amz-Signature`: presigned GET/PUT URLs the controller hands the runner);
 * - a POST form's policy signature (the log upload form the controller hands the runner).
 *
 * The local storage servers check none of this themselves (dynalite ignores credentials, s3rver
 * does not implement V4), so this is the stack's only lock.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { SignatureV4 } from '@smithy/signature-v4';
import type { StackCredentials } from './stack-credentials.js';

export type SignatureVerdict = { ok: true; accessKeyId: string } | { ok: false; reason: string };

/** What the verifier reads of a request: the raw path and query as sent, and its headers. */
export interface ReceivedRequest {
  method: string;
  /** The request target as sent: path and query, still encoded. */
  url: string;
  headers: IncomingHttpHeaders;
}

/** A header-signed request may be this far from the stack's clock (AWS allows the same). */
const CLOCK_SKEW_MS = 15 * 60 * 1000;
/** AWS's own limit on a presigned URL's lifetime: seven days. */
const MAX_PRESIGNED_SECONDS = 7 * 24 * 3600;
const UNSIGNED_PAYLOAD = 'UNSIGNED-PAYLOAD';

/**
 * The SDK's hash shape on Node's crypto: `@smithy/signature-v4` asks for a constructor, called with
 * a key for HMACs and without one for digests.
 */
class NodeSha256 {
  private hash: ReturnType<typeof createHash> | ReturnType<typeof createHmac>;
  constructor(private readonly secret?: string | ArrayBuffer | ArrayBufferView) {
    this.hash = this.start();
  }
  private start() {
    return this.secret === undefined ? createHash('sha256') : createHmac('sha256', toBuffer(this.secret));
  }
  update(data: string | ArrayBuffer | ArrayBufferView): void {
    this.hash.update(toBuffer(data));
  }
  digest(): Promise<Uint8Array> {
    return Promise.resolve(new Uint8Array(this.hash.digest()));
  }
  reset(): void {
    this.hash = this.start();
  }
}

function toBuffer(data: string | ArrayBuffer | ArrayBufferView): Buffer {
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return Buffer.from(data);
}

function refuse(reason: string): SignatureVerdict {
  return { ok: false, reason };
}

function sameText(expected: string, given: string): boolean {
  const a = Buffer.from(expected, 'utf8');
  const b = Buffer.from(given, 'utf8');
  return a.length === b.length && timingSafeEqual(a, b);
}

/** `20261206T091100Z` → a Date; undefined when it is not that shape. */
function parseAmzDate(text: string | undefined): Date | undefined {
  const match = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(text ?? '');
  if (!match) return undefined;
  const [, y, mo, d, h, mi, s] = match.map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  return new Date(Date.UTC(y, mo - 1, d, h, mi, s));
}

interface CredentialScope {
  accessKeyId: string;
  date: string;
  region: string;
  service: string;
}

/** `AKID/20261206/us-east-1/s3/aws4_request` */
function parseCredentialScope(text: string | undefined): CredentialScope | undefined {
  const parts = (text ?? '').split('/');
  if (parts.length !== 5 || parts[4] !== 'aws4_request') return undefined;
  const [accessKeyId, date, region, service] = parts as [string, string, string, string];
  if (!accessKeyId || !/^\d{8}$/.test(date) || !region || !service) return undefined;
  return { accessKeyId, date, region, service };
}

/** The query as the SDK's HttpRequest holds it: decoded values (`+` is not a space in SigV4). */
function parseQuery(search: string): Record<string, string | string[]> {
  const query: Record<string, string | string[]> = {};
  for (const pair of search.split('&')) {
    if (pair === '') continue;
    const index = pair.indexOf('=');
    const rawKey = index === -1 ? pair : pair.slice(0, index);
    const rawValue = index === -1 ? '' : pair.slice(index + 1);
    const key = decodeURIComponent(rawKey);
    const value = decodeURIComponent(rawValue);
    const existing = query[key];
    if (existing === undefined) query[key] = value;
    else query[key] = Array.isArray(existing) ? [...existing, value] : [existing, value];
  }
  return query;
}

function headerText(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value.join(',') : value;
}

function splitTarget(url: string): { path: string; search: string } {
  const index = url.indexOf('?');
  return index === -1
    ? { path: url, search: '' }
    : { path: url.slice(0, index), search: url.slice(index + 1) };
}

function signerFor(scope: CredentialScope, secretAccessKey: string): SignatureV4 {
  return new SignatureV4({
    credentials: { accessKeyId: scope.accessKeyId, secretAccessKey },
    region: scope.region,
    service: scope.service,
    sha256: NodeSha256,
    // S3 signs the path as sent; every other service encodes it once more (as the SDK's clients do).
    uriEscapePath: scope.service !== 's3',
    applyChecksum: false,
  });
}

/** Only the headers the caller signed, as the signer must see them. */
function signedHeadersOf(
  headers: IncomingHttpHeaders,
  names: readonly string[],
): Record<string, string> | undefined {
  const picked: Record<string, string> = {};
  for (const name of names) {
    const value = headerText(headers, name);
    if (value === undefined) return undefined;
    picked[name] = value;
  }
  return picked;
}

export interface VerifyOptions {
  credentials: StackCredentials;
  /** The signing name this endpoint answers for: `dynamodb`, `s3`, `lambda`. */
  service: string;
  now?: Date;
}

/** True when the request claims a SigV4 signature in its query (a presigned URL). */
export function isPresignedRequest(request: ReceivedRequest): boolean {
  return /(^|&)X-Amz-Signature=/.test(splitTarget(request.url).search);
}

/**
 * A request signed in its `Authorization` header. `body` is needed unless the request carries
 * `x-amz-content-sha256` (S3 requests do): the signature then covers that hash.
 */
export async function verifyHeaderSignature(
  request: ReceivedRequest,
  body: Uint8Array | undefined,
  options: VerifyOptions,
): Promise<SignatureVerdict> {
  const authorization = headerText(request.headers, 'authorization');
  if (!authorization) return refuse('the request is not signed (no Authorization header)');
  const match =
    /^AWS4-HMAC-SHA256 Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]{64})$/.exec(
      authorization.trim(),
    );
  if (!match) return refuse('the Authorization header is not an AWS4-HMAC-SHA256 signature');
  const [, credential, signedHeaderList, givenSignature] = match as unknown as [
    string,
    string,
    string,
    string,
  ];
  const scope = parseCredentialScope(credential);
  if (!scope) return refuse('the signature has no valid credential scope');
  if (scope.service !== options.service)
    return refuse(`the signature is for ${scope.service}, not ${options.service}`);
  const secret = options.credentials.secretFor(scope.accessKeyId, 'stack');
  if (!secret) return refuse('the access key is not one of this stack');
  const signingDate = parseAmzDate(headerText(request.headers, 'x-amz-date'));
  if (!signingDate) return refuse('the request has no valid X-Amz-Date');
  const now = options.now ?? new Date();
  if (Math.abs(now.getTime() - signingDate.getTime()) > CLOCK_SKEW_MS)
    return refuse('the signature is older (or newer) than 15 minutes');
  const names = signedHeaderList.split(';');
  if (!names.includes('host')) return refuse('the signature does not cover the Host header');
  const headers = signedHeadersOf(request.headers, names);
  if (!headers) return refuse('a signed header is missing from the request');
  const hasPayloadHash = headerText(request.headers, 'x-amz-content-sha256') !== undefined;
  if (!hasPayloadHash && body === undefined)
    return refuse('the request body is needed to check its signature');
  if (hasPayloadHash && !('x-amz-content-sha256' in headers)) {
    // The hash is used in place of the body's, so it must itself be signed.
    return refuse('x-amz-content-sha256 is not signed');
  }
  const { path, search } = splitTarget(request.url);
  let query: Record<string, string | string[]>;
  try {
    query = parseQuery(search);
  } catch {
    return refuse('the query is not valid percent-encoding');
  }
  const signed = await signerFor(scope, secret).sign(
    {
      method: request.method,
      protocol: 'http:',
      hostname: headers.host ?? '',
      path,
      query,
      headers,
      ...(hasPayloadHash ? {} : { body }),
    },
    { signingDate, signableHeaders: new Set(names) },
  );
  const expected = /Signature=([0-9a-f]{64})/.exec(String(signed.headers.authorization ?? ''))?.[1];
  if (!expected || !sameText(expected, givenSignature)) return refuse('the signature does not match');
  return { ok: true, accessKeyId: scope.accessKeyId };
}

/**
 * A presigned URL: the signature and its scope in the query, the payload unsigned (S3's presigned
 * URLs), or, with `emptyPayload`, signed as empty (other services' presigned GETs, such as STS's).
 */
export async function verifyQuerySignature(
  request: ReceivedRequest,
  options: VerifyOptions & { emptyPayload?: boolean },
): Promise<SignatureVerdict> {
  const { path, search } = splitTarget(request.url);
  let query: Record<string, string | string[]>;
  try {
    query = parseQuery(search);
  } catch {
    return refuse('the query is not valid percent-encoding');
  }
  const single = (name: string): string | undefined => {
    const value = query[name];
    return typeof value === 'string' ? value : undefined;
  };
  if (single('X-Amz-Algorithm') !== 'AWS4-HMAC-SHA256') return refuse('the URL is not SigV4-signed');
  const scope = parseCredentialScope(single('X-Amz-Credential'));
  if (!scope) return refuse('the URL has no valid credential scope');
  if (scope.service !== options.service)
    return refuse(`the signature is for ${scope.service}, not ${options.service}`);
  const secret = options.credentials.secretFor(scope.accessKeyId, 'presign');
  if (!secret) return refuse('the access key is not one of this stack, or has expired');
  const signingDate = parseAmzDate(single('X-Amz-Date'));
  const expiresIn = Number(single('X-Amz-Expires'));
  if (!signingDate) return refuse('the URL has no valid X-Amz-Date');
  if (!Number.isSafeInteger(expiresIn) || expiresIn < 1 || expiresIn > MAX_PRESIGNED_SECONDS)
    return refuse('the URL has no valid X-Amz-Expires');
  const now = (options.now ?? new Date()).getTime();
  if (signingDate.getTime() - CLOCK_SKEW_MS > now) return refuse('the URL is signed in the future');
  if (now > signingDate.getTime() + expiresIn * 1000) return refuse('the URL has expired');
  const givenSignature = single('X-Amz-Signature') ?? '';
  const names = (single('X-Amz-SignedHeaders') ?? '').split(';');
  if (!names.includes('host')) return refuse('the signature does not cover the Host header');
  const headers = signedHeadersOf(request.headers, names);
  if (!headers) return refuse('a signed header is missing from the request');
  // The signer puts these back; everything else in the query is signed as it came.
  const unsignedQuery = { ...query };
  for (const name of [
    'X-Amz-Algorithm',
    'X-Amz-Credential',
    'X-Amz-Date',
    'X-Amz-Expires',
    'X-Amz-SignedHeaders',
    'X-Amz-Signature',
  ])
    delete unsignedQuery[name];
  const presigned = await signerFor(scope, secret).presign(
    {
      method: request.method,
      protocol: 'http:',
      hostname: headers.host ?? '',
      path,
      query: unsignedQuery,
      // S3's presigner signs the payload as unsigned; the header only tells the signer so.
      headers: options.emptyPayload ? headers : { ...headers, 'x-amz-content-sha256': UNSIGNED_PAYLOAD },
    },
    {
      signingDate,
      expiresIn,
      signableHeaders: new Set(names),
      unsignableHeaders: new Set(['x-amz-content-sha256']),
      unhoistableHeaders: new Set(['x-amz-content-sha256', ...names]),
    },
  );
  const expected = presigned.query?.['X-Amz-Signature'];
  if (typeof expected !== 'string' || !sameText(expected, givenSignature))
    return refuse('the signature does not match');
  return { ok: true, accessKeyId: scope.accessKeyId };
}

/**
 * A browser-style POST upload: the form's `Policy` (base64 JSON) is signed with the key of the
 * credential it names. The policy's own conditions are for the storage server; this checks that
 * the stack issued it and that it has not expired.
 */
export function verifyPostPolicySignature(
  fields: ReadonlyMap<string, string>,
  options: Omit<VerifyOptions, 'service'>,
): SignatureVerdict {
  const field = (name: string): string | undefined => fields.get(name.toLowerCase());
  if (field('x-amz-algorithm') !== 'AWS4-HMAC-SHA256') return refuse('the form is not SigV4-signed');
  const scope = parseCredentialScope(field('x-amz-credential'));
  if (!scope || scope.service !== 's3') return refuse('the form has no valid S3 credential scope');
  const secret = options.credentials.secretFor(scope.accessKeyId, 'presign');
  if (!secret) return refuse('the access key is not one of this stack, or has expired');
  const policy = field('policy');
  const givenSignature = field('x-amz-signature');
  if (!policy || !givenSignature) return refuse('the form has no policy or no signature');
  let expiration: number;
  try {
    const parsed = JSON.parse(Buffer.from(policy, 'base64').toString('utf8')) as { expiration?: unknown };
    expiration = typeof parsed.expiration === 'string' ? Date.parse(parsed.expiration) : NaN;
  } catch {
    return refuse('the policy is not base64 JSON');
  }
  if (!Number.isFinite(expiration)) return refuse('the policy has no expiration');
  if ((options.now ?? new Date()).getTime() > expiration) return refuse('the policy has expired');
  let key: Buffer = createHmac('sha256', `AWS4${secret}`).update(scope.date).digest();
  for (const part of [scope.region, scope.service, 'aws4_request'])
    key = createHmac('sha256', key).update(part).digest();
  const expected = createHmac('sha256', key).update(policy).digest('hex');
  if (!sameText(expected, givenSignature)) return refuse('the policy signature does not match');
  return { ok: true, accessKeyId: scope.accessKeyId };
}
