/**
 * Reading a download's body as fast as the network gives it, whatever its consumer's pace.
 *
 * An HTTP server counts a keep-alive connection idle once it has written the whole response, and
 * closes it after its idle timeout (Node's default: 5 s) even while the response's last megabytes
 * still sit in the sockets' buffers, unread. A consumer slower than that (an unpacker creating
 * thousands of files) then lost the end of the body: "other side closed". So the body is read
 * ahead of its consumer, and a body that breaks off anyway is resumed with a Range request where
 * the server offers ranges of the same object (an ETag, `If-Range`, a matching `Content-Range`).
 */
import { Readable } from 'node:stream';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';

/** Bytes read ahead of the consumer: the compressed archives this reads are mostly smaller. */
export const DEFAULT_READ_AHEAD_BYTES = 32 * 1024 * 1024;
/** Range requests after breaks, per download. */
export const DEFAULT_RESUMES = 3;

export interface BodyReadOptions {
  signal: AbortSignal;
  readAheadBytes?: number;
  /** Range requests after a break; 0 never resumes. */
  resumes?: number;
}

/**
 * The body of `response` (a 200 to a GET), read ahead and resumed after a break. Throws the
 * break's own error when the server offers no way to resume or the resumes run out.
 */
export async function* readBody(response: Response, options: BodyReadOptions): AsyncGenerator<Uint8Array> {
  const readAheadBytes = options.readAheadBytes ?? DEFAULT_READ_AHEAD_BYTES;
  const total = Number(response.headers.get('content-length') ?? NaN);
  const etag = response.headers.get('etag');
  const resumable =
    response.status === 200 &&
    Number.isSafeInteger(total) &&
    etag !== null &&
    !etag.startsWith('W/') &&
    response.headers.get('accept-ranges') === 'bytes';
  let resumesLeft = resumable ? (options.resumes ?? DEFAULT_RESUMES) : 0;
  let received = 0;
  let current = response;
  for (;;) {
    try {
      if (!current.body) return;
      for await (const chunk of readAhead(current.body, readAheadBytes)) {
        received += chunk.length;
        yield chunk;
      }
      return;
    } catch (error) {
      if (options.signal.aborted || resumesLeft === 0 || received >= total || etag === null) throw error;
      resumesLeft--;
      current = await rangeFrom(response.url, received, total, etag, options.signal, error);
    }
  }
}

function readAhead(body: ReadableStream<Uint8Array>, highWaterMark: number): AsyncIterable<Uint8Array> {
  // fetch's body is the web stream Node implements; the DOM typings name another class.
  return Readable.fromWeb(body as unknown as NodeReadableStream<Uint8Array>, { highWaterMark });
}

/** The rest of the object from `offset`, or `broke` (the break's error) when the server gives no such part. */
async function rangeFrom(
  url: string,
  offset: number,
  total: number,
  etag: string,
  signal: AbortSignal,
  broke: unknown,
): Promise<Response> {
  const rest = await fetch(url, {
    signal,
    headers: { range: `bytes=${offset}-`, 'if-range': etag },
  }).catch(() => {
    throw broke;
  });
  const expected = `bytes ${offset}-${total - 1}/${total}`;
  if (rest.status !== 206 || rest.headers.get('content-range') !== expected || !rest.body) {
    await rest.body?.cancel().catch(() => undefined);
    throw broke;
  }
  return rest;
}
