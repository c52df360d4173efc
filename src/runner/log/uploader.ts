/**
 * The runner's way to put objects on S3 without credentials: a multipart/form-data POST through the
 * form the controller presigned (protocol.ts `PresignedPost`). Plain fetch and FormData, no SDK.
 *
 * The form is limited to one key prefix and object size by its policy; the same limits are checked
 * here first so that a mistake fails with a clear message instead of S3's AccessDenied.
 */
import { LambkinError } from '../../core/errors.js';
import type { PresignedPost } from '../../core/protocol.js';

export const DEFAULT_UPLOAD_TIMEOUT_MS = 30_000;
export const DEFAULT_UPLOAD_RETRIES = 3;
export const DEFAULT_UPLOAD_RETRY_DELAY_MS = 250;

/** Fields the uploader sets itself, per object; S3 field names are case-insensitive. */
const PER_OBJECT_FIELDS = new Set(['key', 'content-type', 'file']);

/** S3 answers these 4xx codes for trouble on the way, not for a wrong request. */
const RETRYABLE_S3_CODES = new Set(['RequestTimeout', 'SlowDown', 'InternalError', 'ServiceUnavailable']);

/** Longest part of an S3 error message quoted in ours. */
const MAX_QUOTED_MESSAGE_CHARS = 300;

export interface PresignedUploaderOptions {
  /** Milliseconds one POST may take, response included (default 30 s). */
  timeoutMs?: number;
  /** Further attempts after a transient failure (5xx, reset, timeout); default 3. */
  retries?: number;
  /** First backoff delay; doubles per attempt (default 250 ms). */
  retryDelayMs?: number;
}

/** The upload was not attempted: it is outside what the form allows. */
export class UploadRefusedError extends LambkinError {
  constructor(message: string) {
    super('UPLOAD_REFUSED', message);
  }
}

/** S3 refused the upload, or it kept failing on the way. */
export class UploadFailedError extends LambkinError {
  constructor(
    message: string,
    readonly details: {
      key: string;
      /** HTTP status, when S3 answered. */
      status?: number;
      /** S3's error code (`AccessDenied`, `EntityTooLarge`, …), when it sent one. */
      s3Code?: string;
      attempts: number;
      cause?: unknown;
    },
  ) {
    super('UPLOAD_FAILED', message, { cause: details.cause });
  }
}

export class PresignedUploader {
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly retryDelayMs: number;

  constructor(
    private readonly post: PresignedPost,
    options: PresignedUploaderOptions = {},
  ) {
    this.timeoutMs = options.timeoutMs ?? DEFAULT_UPLOAD_TIMEOUT_MS;
    this.retries = options.retries ?? DEFAULT_UPLOAD_RETRIES;
    this.retryDelayMs = options.retryDelayMs ?? DEFAULT_UPLOAD_RETRY_DELAY_MS;
  }

  async put(key: string, body: string | Uint8Array | Blob, contentType: string): Promise<void> {
    const { keyPrefix, maxObjectBytes } = this.post;
    if (!key.startsWith(keyPrefix) || key.length === keyPrefix.length) {
      throw new UploadRefusedError(
        `Refused to upload ${JSON.stringify(key)}: the upload form only covers keys under ` +
          `${JSON.stringify(keyPrefix)}. Build the key with LOG_KEYS from the form's keyPrefix.`,
      );
    }
    // One copy of our own, made once for every attempt (the caller may reuse its buffer while a
    // retry is pending): a Blob copies bytes and encodes text as UTF-8, and shares another Blob's.
    const file = new Blob([body], { type: contentType });
    if (file.size > maxObjectBytes) {
      throw new UploadRefusedError(
        `Refused to upload ${key}: it is ${file.size} bytes and the upload form allows at most ` +
          `${maxObjectBytes}. Upload it in smaller parts, or have the controller presign a larger limit.`,
      );
    }
    let attempt = 0;
    for (;;) {
      attempt++;
      const result = await this.attempt(key, file, contentType);
      if (result.ok) return;
      if (!result.retryable || attempt > this.retries) throw this.failure(key, result, attempt);
      await sleep(this.backoffMs(attempt));
    }
  }

  private async attempt(key: string, file: Blob, contentType: string): Promise<AttemptResult> {
    const form = new FormData();
    for (const [name, value] of Object.entries(this.post.fields)) {
      if (!PER_OBJECT_FIELDS.has(name.toLowerCase())) form.append(name, value);
    }
    form.append('key', key);
    form.append('Content-Type', contentType);
    // S3 ignores every field after the file: it must come last.
    form.append('file', file, key.slice(key.lastIndexOf('/') + 1));
    let response: Response;
    try {
      response = await fetch(this.post.url, {
        method: 'POST',
        body: form,
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (error) {
      // Resets, refused connections, DNS trouble and timeouts: all may pass on a later try.
      return { ok: false, retryable: true, cause: error };
    }
    let text: string;
    try {
      text = await response.text();
    } catch (error) {
      if (response.ok) return { ok: true };
      return { ok: false, retryable: true, status: response.status, cause: error };
    }
    if (response.ok) return { ok: true };
    const s3Code = xmlElement(text, 'Code');
    const s3Message = xmlElement(text, 'Message');
    const retryable =
      response.status >= 500 ||
      response.status === 429 ||
      (s3Code !== undefined && RETRYABLE_S3_CODES.has(s3Code));
    return {
      ok: false,
      retryable,
      status: response.status,
      ...(s3Code !== undefined ? { s3Code } : {}),
      ...(s3Message !== undefined ? { s3Message } : {}),
    };
  }

  private failure(key: string, result: FailedAttempt, attempts: number): UploadFailedError {
    const tries = attempts === 1 ? '' : ` after ${attempts} attempts`;
    const expired = Date.now() > this.post.expiresAt ? ' The upload form has expired.' : '';
    let message: string;
    if (result.status === undefined) {
      const cause = describeUploadFailure(result.cause);
      message =
        `Could not upload ${key}${tries}: ${cause}. Check that the builder can reach ` +
        `${safeOrigin(this.post.url)}.${expired}`;
    } else {
      const code = result.s3Code ?? `HTTP ${result.status}`;
      const quoted = result.s3Message ? `: ${this.redact(result.s3Message)}` : '';
      message =
        `S3 refused the upload of ${key} (${code}, HTTP ${result.status}${quoted})${tries}.` +
        (expired ||
          (result.status === 403
            ? ' The form no longer matches what S3 expects: have the controller presign a new one.'
            : ''));
    }
    return new UploadFailedError(message, {
      key,
      attempts,
      ...(result.status !== undefined ? { status: result.status } : {}),
      ...(result.s3Code !== undefined ? { s3Code: result.s3Code } : {}),
      ...(result.cause !== undefined ? { cause: result.cause } : {}),
    });
  }

  /** S3 may echo form values (policy, signature, credential) in its message: never pass them on. */
  private redact(message: string): string {
    let redacted = message.slice(0, MAX_QUOTED_MESSAGE_CHARS);
    for (const value of Object.values(this.post.fields)) {
      if (value.length >= 8) redacted = redacted.split(value).join('***');
    }
    return redacted;
  }

  private backoffMs(attempt: number): number {
    const base = this.retryDelayMs * 2 ** (attempt - 1);
    return base + Math.random() * base * 0.5;
  }
}

type AttemptResult = { ok: true } | FailedAttempt;

interface FailedAttempt {
  ok: false;
  retryable: boolean;
  status?: number;
  s3Code?: string;
  s3Message?: string;
  cause?: unknown;
}

/** The text of the first `<name>` element of an S3 error document. */
function xmlElement(xml: string, name: string): string | undefined {
  const match = new RegExp(`<${name}>([^<]*)</${name}>`).exec(xml);
  return match?.[1]?.trim();
}

/** fetch says only "fetch failed"; the useful part (ECONNRESET, timeout) is in its cause. */
function describeUploadFailure(error: unknown): string {
  // Duck-typed: fetch's errors (DOMException, undici's) need not share this realm's Error class.
  if (!isErrorLike(error)) return String(error);
  if (error.name === 'TimeoutError') return 'the request timed out';
  const cause = error.cause;
  if (isErrorLike(cause)) {
    const code = (cause as { code?: unknown }).code;
    return `${error.message} (${typeof code === 'string' ? `${code}: ` : ''}${cause.message})`;
  }
  return error.message;
}

function isErrorLike(value: unknown): value is { name: string; message: string; cause?: unknown } {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { name?: unknown }).name === 'string' &&
    typeof (value as { message?: unknown }).message === 'string'
  );
}

/** The form URL without its query: a presigned URL's query would carry a signature. */
function safeOrigin(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.origin}${parsed.pathname}`;
  } catch {
    return 'the upload URL';
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
