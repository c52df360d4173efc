/**
 * Build logs, pages, badges and latest pointers on S3: the controller's side. The runner never gets
 * credentials; it gets a presigned POST form limited to its build's log prefix (`presignLogUpload`)
 * and uploads chunks, the tail and the live page through it. At the end the controller assembles
 * `log.txt` from what the runner uploaded (`finalizeLog`), even when the runner died mid-build.
 */
import {
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type ListObjectsV2CommandOutput,
  type S3Client,
} from '@aws-sdk/client-s3';
import { createPresignedPost } from '@aws-sdk/s3-presigned-post';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { RepoName } from '../core/build.js';
import { LambkinError } from '../core/errors.js';
import { LOG_KEYS, REPO_KEYS, type PresignedPost } from '../core/protocol.js';
import type { LatestPointer, LogStore } from '../core/ports.js';

export const TEXT_CONTENT_TYPE = 'text/plain; charset=utf-8';
export const HTML_CONTENT_TYPE = 'text/html; charset=utf-8';
export const SVG_CONTENT_TYPE = 'image/svg+xml';
export const JSON_CONTENT_TYPE = 'application/json; charset=utf-8';
/** Logs, pages and badges change while a build runs: browsers and CDNs must revalidate. */
export const NO_CACHE = 'no-cache';

/**
 * Everything the runner uploads is text (chunks, tail, page). Limiting the form to `text/` keeps a
 * leaked form from serving, say, an SVG or a script type from the bucket.
 */
export const LOG_UPLOAD_CONTENT_TYPE_PREFIX = 'text/';

/**
 * Upper bound of the chunk bytes `finalizeLog`/`readLog` read. An honest runner uploads at most half
 * the log limit in chunks; the bound only stops a runner that uploads far more (a build that got
 * hold of the form) from exhausting the controller's memory.
 */
export const DEFAULT_MAX_ASSEMBLED_BYTES = 32 * 1024 * 1024;

const CHUNK_NAME = /^(\d{6,})\.txt$/;
/** Runs of one build or job: the first, and `auto`'s one rebuild. */
const MAX_ATTEMPTS = 2;

/** An S3 call of the log store failed, or it was asked for something it cannot do. */
export class LogStoreError extends LambkinError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('LOG_STORE', message, options);
  }
}

export interface S3LogStoreOptions {
  /** Keys per ListObjectsV2 page (S3's maximum is 1000; tests use less to exercise paging). */
  listPageSize?: number;
  /** See DEFAULT_MAX_ASSEMBLED_BYTES. */
  maxAssembledBytes?: number;
}

export class S3LogStore implements LogStore {
  private readonly listPageSize: number | undefined;
  private readonly maxAssembledBytes: number;

  constructor(
    private readonly s3: S3Client,
    private readonly bucket: string,
    options: S3LogStoreOptions = {},
  ) {
    this.listPageSize = options.listPageSize;
    this.maxAssembledBytes = options.maxAssembledBytes ?? DEFAULT_MAX_ASSEMBLED_BYTES;
  }

  async presignLogUpload(
    build: { repo: RepoName; number: number; logPrefix: string },
    options: { expiresInSeconds: number; maxObjectBytes: number; signer?: S3Client },
  ): Promise<PresignedPost> {
    const prefix = build.logPrefix;
    const buildFolder = `logs/${build.repo}/builds/${build.number}/`;
    // The form lets whoever holds it write anything under the prefix: never more than this build's
    // folder (a prefix without the final `/` would also cover build 123 when presigning build 12).
    if (!prefix.startsWith(buildFolder)) {
      throw new LogStoreError(
        `Refused to presign log uploads for ${build.repo}#${build.number}: the log prefix ` +
          `${JSON.stringify(prefix)} is not inside the build's folder ${JSON.stringify(buildFolder)}. ` +
          'Use the logPrefix stored on the build record.',
      );
    }
    if (!prefix.endsWith('/')) {
      throw new LogStoreError(
        `Refused to presign log uploads for ${build.repo}#${build.number}: the log prefix ` +
          `${JSON.stringify(prefix)} must end with "/".`,
      );
    }
    const { expiresInSeconds, maxObjectBytes } = options;
    if (!Number.isSafeInteger(expiresInSeconds) || expiresInSeconds < 1 || expiresInSeconds > 7 * 24 * 3600) {
      throw new LogStoreError(
        `A log upload form must be valid for 1 s to 7 days (S3's limit); got ${expiresInSeconds} s.`,
      );
    }
    if (!Number.isSafeInteger(maxObjectBytes) || maxObjectBytes < 1) {
      throw new LogStoreError(
        `maxObjectBytes must be a positive whole number of bytes; got ${maxObjectBytes}.`,
      );
    }
    const issuedAt = Date.now();
    // With a key ending in `${filename}` the SDK adds `starts-with $key <prefix>` instead of an exact
    // key condition; the runner then sends its own `key` field, so that placeholder is dropped below.
    const presigned = await this.call('presign a log upload form for', prefix, () =>
      createPresignedPost(options.signer ?? this.s3, {
        Bucket: this.bucket,
        Key: `${prefix}\${filename}`,
        Conditions: [
          ['starts-with', '$key', prefix],
          ['content-length-range', 0, maxObjectBytes],
          ['starts-with', '$Content-Type', LOG_UPLOAD_CONTENT_TYPE_PREFIX],
        ],
        // Every form field must be allowed by the policy: Cache-Control is fixed here.
        Fields: { 'Cache-Control': NO_CACHE },
        Expires: expiresInSeconds,
      }),
    );
    const fields = Object.fromEntries(Object.entries(presigned.fields).filter(([name]) => name !== 'key'));
    return {
      url: presigned.url,
      fields,
      keyPrefix: prefix,
      maxObjectBytes,
      expiresAt: issuedAt + expiresInSeconds * 1000,
    };
  }

  async readLog(logPrefix: string): Promise<string | undefined> {
    const finalized = await this.getObjectText(LOG_KEYS.log(logPrefix));
    if (finalized !== undefined) return finalized;
    return this.assemble(logPrefix);
  }

  async finalizeLog(logPrefix: string, note?: string): Promise<string> {
    const assembled = await this.assemble(logPrefix);
    if (assembled === undefined && note === undefined) {
      // Nothing uploaded (runner never started, or the parts were cleaned up): keep what exists.
      const existing = await this.getObjectText(LOG_KEYS.log(logPrefix));
      if (existing !== undefined) return existing;
    }
    // The controller's closing words (why the runner did not finish) go after the runner's log.
    const base = assembled ?? '';
    const text =
      note === undefined ? base : `${base}${base === '' || base.endsWith('\n') ? '' : '\n'}${note}\n`;
    await this.put(LOG_KEYS.log(logPrefix), text, TEXT_CONTENT_TYPE);
    return text;
  }

  async beginAttempt(logPrefix: string, attempt: number, head: string): Promise<string> {
    if (!Number.isSafeInteger(attempt) || attempt < 2 || attempt > MAX_ATTEMPTS) {
      throw new LogStoreError(`A rebuild is attempt 2 to ${MAX_ATTEMPTS}; got ${attempt}.`);
    }
    await this.put(
      LOG_KEYS.attemptHead(logPrefix, attempt),
      head.endsWith('\n') ? head : `${head}\n`,
      TEXT_CONTENT_TYPE,
    );
    return LOG_KEYS.attempt(logPrefix, attempt);
  }

  async putPage(logPrefix: string, html: string): Promise<void> {
    await this.put(LOG_KEYS.page(logPrefix), html, HTML_CONTENT_TYPE);
  }

  async getObjectText(key: string): Promise<string | undefined> {
    try {
      const response = await this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      return (await response.Body?.transformToString('utf-8')) ?? '';
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw this.failure('read', key, error);
    }
  }

  async putBadge(repo: RepoName, branch: string, svg: string): Promise<void> {
    await this.put(REPO_KEYS.badge(repo, branch), svg, SVG_CONTENT_TYPE);
  }

  async putLatest(repo: RepoName, branch: string | undefined, pointer: LatestPointer): Promise<void> {
    const body = `${JSON.stringify(pointer)}\n`;
    const keys = [
      REPO_KEYS.latest(repo),
      ...(branch === undefined ? [] : [REPO_KEYS.branchLatest(repo, branch)]),
    ];
    await Promise.all(keys.map((key) => this.put(key, body, JSON_CONTENT_TYPE)));
  }

  async presignGet(key: string, expiresInSeconds: number): Promise<string> {
    return this.call('presign a download of', key, () =>
      getSignedUrl(this.s3, new GetObjectCommand({ Bucket: this.bucket, Key: key }), {
        expiresIn: expiresInSeconds,
      }),
    );
  }

  /**
   * The run's part, then each rebuild's (its head, its chunks and tail; beginAttempt); undefined
   * when nothing exists.
   */
  private async assemble(logPrefix: string): Promise<string | undefined> {
    let text = await this.assembleOne(logPrefix);
    for (let attempt = 2; attempt <= MAX_ATTEMPTS; attempt++) {
      const head = await this.getObjectText(LOG_KEYS.attemptHead(logPrefix, attempt));
      if (head === undefined) break;
      const part = (await this.assembleOne(LOG_KEYS.attempt(logPrefix, attempt))) ?? '';
      const before = text ?? '';
      text = `${before}${lineBreakBefore(before)}${head}${part}`;
    }
    return text;
  }

  /** Chunks in order (with a note where one is missing) + tail.txt; undefined when neither exists. */
  private async assembleOne(logPrefix: string): Promise<string | undefined> {
    const chunks = await this.listChunks(logPrefix);
    const tail = await this.getObjectText(LOG_KEYS.tail(logPrefix));
    if (chunks.length === 0 && tail === undefined) return undefined;
    let text = '';
    let bytes = 0;
    let expected = 1;
    for (const chunk of chunks) {
      if (bytes >= this.maxAssembledBytes) {
        text +=
          lineBreakBefore(text) +
          `… the rest of the log was not read: its parts exceed ${this.maxAssembledBytes} bytes …\n`;
        break;
      }
      if (chunk.index !== expected) {
        const missing =
          chunk.index - 1 === expected ? `part ${expected}` : `parts ${expected}–${chunk.index - 1}`;
        text += lineBreakBefore(text) + `… ${missing} of the log could not be found …\n`;
      }
      expected = chunk.index + 1;
      const part = (await this.getObjectText(chunk.key)) ?? '';
      bytes += Buffer.byteLength(part);
      text += part;
    }
    return text + (tail ?? '');
  }

  /** Chunk objects sorted by their number (not their name: a 7-digit number would sort wrong). */
  private async listChunks(logPrefix: string): Promise<{ key: string; index: number }[]> {
    const prefix = LOG_KEYS.chunksPrefix(logPrefix);
    const chunks: { key: string; index: number }[] = [];
    let continuationToken: string | undefined;
    do {
      const token = continuationToken;
      const page: ListObjectsV2CommandOutput = await this.call('list the log chunks under', prefix, () =>
        this.s3.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: prefix,
            ...(token ? { ContinuationToken: token } : {}),
            ...(this.listPageSize ? { MaxKeys: this.listPageSize } : {}),
          }),
        ),
      );
      for (const object of page.Contents ?? []) {
        const name = object.Key?.slice(prefix.length) ?? '';
        const match = CHUNK_NAME.exec(name);
        // Anything else under chunks/ is not the runner's: leave it out of the log.
        if (match && object.Key) chunks.push({ key: object.Key, index: Number(match[1]) });
      }
      continuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (continuationToken);
    return chunks.sort((a, b) => a.index - b.index);
  }

  private async put(key: string, body: string, contentType: string): Promise<void> {
    await this.call('write', key, () =>
      this.s3.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: key,
          // Bytes, not a string: the SDK cannot tell the length of an empty string body and warns.
          Body: Buffer.from(body, 'utf8'),
          ContentType: contentType,
          CacheControl: NO_CACHE,
        }),
      ),
    );
  }

  private async call<T>(action: string, key: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (error) {
      throw this.failure(action, key, error);
    }
  }

  private failure(action: string, key: string, error: unknown): LogStoreError {
    const detail = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    return new LogStoreError(
      `Could not ${action} s3://${this.bucket}/${key} (${detail}). Check that the bucket exists ` +
        'and that this function may read, write and list it (LAMBKIN_BUCKET).',
      { cause: error },
    );
  }
}

function lineBreakBefore(text: string): string {
  return text.length === 0 || text.endsWith('\n') ? '' : '\n';
}

function isNotFound(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  // A missing bucket is a 404 too, but a configuration problem rather than an absent object.
  return error.name === 'NoSuchKey' || (status === 404 && error.name !== 'NoSuchBucket');
}
