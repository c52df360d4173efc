/**
 * The runner's log pipeline: build output → UTF-8 decoding → secret masking → bounded log →
 * uploads to S3 while the build runs.
 *
 * The head of the log (first half of the limit) goes up as numbered chunks (`chunks/000001.txt`, …),
 * each uploaded once; what follows the head (truncation marker + tail) is rewritten as `tail.txt`,
 * bounded by half the limit. The controller joins them into `log.txt` at the end (store/logs.ts).
 *
 * `write` never waits: uploads run in the background, one at a time, so chunk numbers stay in order.
 * When they fall behind, text waits in the bounded log, so memory stays bounded however much a
 * build prints. Upload failures go to `onError`, never into the build.
 */
import { StringDecoder } from 'node:string_decoder';
import { LambkinError } from '../../core/errors.js';
import { LOG_KEYS, type LogSummary } from '../../core/protocol.js';
import { BoundedLog } from './bounded-log.js';
import { createSecretMasker } from '../../core/log-mask.js';
import { isContinuationByte } from '../../core/log-format.js';

export const DEFAULT_FLUSH_INTERVAL_MS = 2000;
export const DEFAULT_MAX_CHUNK_BYTES = 1024 * 1024;
/** The live page shows at most this much of the end of the log: re-rendering it all each tick would not scale. */
export const PAGE_LOG_BYTES = 256 * 1024;
export const LOG_TEXT_CONTENT_TYPE = 'text/plain; charset=utf-8';
export const LOG_PAGE_CONTENT_TYPE = 'text/html; charset=utf-8';

/** Every UTF-8 character fits in a chunk of this size. */
const MIN_CHUNK_BYTES = 4;

export interface LogStreamOptions {
  uploader: { put(key: string, body: string | Uint8Array | Blob, contentType: string): Promise<void> };
  /** From the upload form's keyPrefix. */
  logPrefix: string;
  /** BoundedLog limit. */
  limitBytes: number;
  /** Masked wherever they appear (createSecretMasker). */
  secrets: string[];
  /** Default 2000. */
  flushIntervalMs?: number;
  /**
   * Largest chunk, and how much pending head triggers an upload before the next tick; default 1 MiB.
   * Must not exceed the upload form's maxObjectBytes.
   */
  maxChunkBytes?: number;
  /** When given, index.html is re-uploaded on each flush that changed something, with the last 256 KiB of the log. */
  renderPage?: (logText: string) => string;
  /** Upload failures are reported here, never thrown into the build; default: a line on stderr. */
  onError?: (error: Error) => void;
}

export interface LogStream {
  /** Bytes (or text) of build output. Never blocks and never throws. */
  write(data: Uint8Array | string): void;
  /** Uploads the pending head as the next chunk(s), then tail.txt and the page when they changed. */
  flush(): Promise<void>;
  /** Final flush (held-back text included), stops the timer; resolves with what was uploaded. */
  close(): Promise<LogSummary>;
  /** The log so far as it would read (head + marker + tail). */
  text(): string;
  /** Masks these too in everything written from now on. */
  addSecrets(secrets: readonly string[]): void;
}

/** The log stream was misused (bad options, output after close). */
export class LogStreamError extends LambkinError {
  constructor(message: string) {
    super('LOG_STREAM', message);
  }
}

export function createLogStream(options: LogStreamOptions): LogStream {
  const { uploader, logPrefix, renderPage } = options;
  const flushIntervalMs = options.flushIntervalMs ?? DEFAULT_FLUSH_INTERVAL_MS;
  const maxChunkBytes = options.maxChunkBytes ?? DEFAULT_MAX_CHUNK_BYTES;
  if (!Number.isSafeInteger(maxChunkBytes) || maxChunkBytes < MIN_CHUNK_BYTES) {
    throw new LogStreamError(
      `maxChunkBytes must be a whole number ≥ ${MIN_CHUNK_BYTES}; got ${maxChunkBytes}.`,
    );
  }
  if (!(flushIntervalMs > 0)) {
    throw new LogStreamError(
      `flushIntervalMs must be a positive number of milliseconds; got ${flushIntervalMs}.`,
    );
  }
  const onError =
    options.onError ??
    // Not stdout: locally the runner's stdout carries the protocol.
    ((error: Error) => process.stderr.write(`lambkin: log upload: ${error.message}\n`));
  const report = (error: unknown): void => {
    try {
      onError(error instanceof Error ? error : new Error(String(error)));
    } catch {
      // A failing error handler must not break the build either.
    }
  };

  const decoder = new StringDecoder('utf8');
  const masker = createSecretMasker(options.secrets);
  const log = new BoundedLog({ limitBytes: options.limitBytes });

  /** Head text taken from the log, not yet cut into chunks. */
  let pendingHead: string[] = [];
  let pendingHeadBytes = 0;
  /** Chunks cut but not uploaded (a failed upload is retried with the same number). */
  const unsentChunks: string[] = [];
  let uploadedChunks = 0;
  /** `log.totalBytes` when tail.txt and the page were last uploaded: unchanged means nothing to do. */
  let tailUploadedAt = 0;
  let pageUploadedAt = 0;
  let tailUploaded = false;
  let closed = false;
  let closing: Promise<LogSummary> | undefined;
  let reportedWriteAfterClose = false;

  function appendMasked(text: string): void {
    if (text.length === 0) return;
    log.append(text);
    const head = log.takeNewHead();
    if (head.length > 0) {
      pendingHead.push(head);
      pendingHeadBytes += Buffer.byteLength(head);
    }
    if (pendingHeadBytes >= maxChunkBytes) void requestFlush();
  }

  /** Uploads in order; resolves when done, never rejects (failures go to `report`). */
  async function uploadPending(): Promise<void> {
    if (pendingHead.length > 0) {
      unsentChunks.push(...splitIntoChunks(pendingHead.join(''), maxChunkBytes));
      pendingHead = [];
      pendingHeadBytes = 0;
    }
    while (unsentChunks.length > 0) {
      try {
        await uploader.put(
          LOG_KEYS.chunk(logPrefix, uploadedChunks + 1),
          unsentChunks[0]!,
          LOG_TEXT_CONTENT_TYPE,
        );
      } catch (error) {
        // Kept for the next flush: the chunk numbers must stay contiguous.
        report(error);
        return;
      }
      unsentChunks.shift();
      uploadedChunks++;
    }
    const version = log.totalBytes;
    if (version !== tailUploadedAt) {
      // The bytes as the ring keeps them, copied once (into the Blob): a tail of megabytes is not
      // joined, made a string and encoded again on every tick.
      const afterHead = new Blob(log.partsAfterHead());
      if (afterHead.size === 0) {
        tailUploadedAt = version; // the head is still growing: no tail yet
      } else {
        try {
          await uploader.put(LOG_KEYS.tail(logPrefix), afterHead, LOG_TEXT_CONTENT_TYPE);
          tailUploadedAt = version;
          tailUploaded = true;
        } catch (error) {
          report(error);
          return;
        }
      }
    }
    if (renderPage && version !== pageUploadedAt) {
      try {
        const html = renderPage(log.lastText(PAGE_LOG_BYTES));
        await uploader.put(LOG_KEYS.page(logPrefix), html, LOG_PAGE_CONTENT_TYPE);
        pageUploadedAt = version;
      } catch (error) {
        report(error);
      }
    }
  }

  // One upload run at a time; at most one more queued behind it (it takes whatever is pending when
  // it starts), so any number of flush requests costs nothing while uploads are slow.
  let activeRun: Promise<void> | undefined;
  let queuedRun: Promise<void> | undefined;

  function startRun(): Promise<void> {
    const run = uploadPending().finally(() => {
      if (activeRun === run) activeRun = undefined;
    });
    activeRun = run;
    return run;
  }

  function requestFlush(): Promise<void> {
    if (queuedRun) return queuedRun;
    if (!activeRun) return startRun();
    const queued = activeRun.then(() => {
      queuedRun = undefined;
      return startRun();
    });
    queuedRun = queued;
    return queued;
  }

  const timer = setInterval(() => void requestFlush(), flushIntervalMs);
  // The build's own work keeps the process alive; the log timer must not.
  timer.unref();

  return {
    write(data) {
      if (closed) {
        if (!reportedWriteAfterClose) {
          reportedWriteAfterClose = true;
          report(new LogStreamError('Build output arrived after the log was closed; it was not recorded.'));
        }
        return;
      }
      // A string after bytes: whatever partial character the decoder holds comes first (as U+FFFD).
      const text = typeof data === 'string' ? decoder.end() + data : decoder.write(data);
      if (text.length > 0) appendMasked(masker.write(text));
    },

    flush: requestFlush,

    close() {
      if (closing) return closing;
      closed = true;
      clearInterval(timer);
      const rest = decoder.end();
      appendMasked((rest.length > 0 ? masker.write(rest) : '') + masker.flush());
      closing = requestFlush().then(() => ({
        chunks: uploadedChunks,
        totalBytes: log.totalBytes,
        truncatedBytes: log.truncatedBytes,
        tail: tailUploaded,
      }));
      return closing;
    },

    text: () => log.finalText(),

    addSecrets: (secrets) => masker.add(secrets),
  };
}

/** Cuts text into pieces of at most `maxBytes` UTF-8 bytes, never inside a character. */
function splitIntoChunks(text: string, maxBytes: number): string[] {
  if (text.length === 0) return [];
  // Each UTF-16 unit is at most 3 bytes (a surrogate pair is 4 for 2 units).
  if (text.length * 3 <= maxBytes) return [text];
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= maxBytes) return [text];
  const chunks: string[] = [];
  let start = 0;
  while (start < bytes.length) {
    let end = Math.min(start + maxBytes, bytes.length);
    while (end < bytes.length && isContinuationByte(bytes[end])) end--;
    chunks.push(bytes.toString('utf8', start, end));
    start = end;
  }
  return chunks;
}
