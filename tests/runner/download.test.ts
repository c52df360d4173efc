/**
 * readBody against real loopback HTTP servers: a paused consumer does not hold the server's
 * response open (the body is read ahead), and a body that breaks off is resumed with Range
 * requests only where the server offers the same object's ranges.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from '@jest/globals';
import { readBody } from '../../src/runner/download.js';

const servers: { close(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

async function serve(answer: (request: IncomingMessage, response: ServerResponse) => void) {
  const server = createServer(answer);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const running = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/object`,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  servers.push(running);
  return running;
}

function patterned(bytes: number): Buffer {
  const body = Buffer.alloc(bytes);
  for (let offset = 0; offset < bytes; offset += 4) body.writeUInt32LE(offset >>> 2, offset);
  return body;
}

function sha(data: Buffer | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

async function collect(source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of source) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/**
 * Serves `body` with an ETag and byte ranges; the first `cuts` answers end the connection after
 * `cutAfter` bytes of their part. Records every Range asked for.
 */
async function rangeServer(body: Buffer, options: { cuts: number; cutAfter: number; etag?: () => string }) {
  const ranges: (string | undefined)[] = [];
  let cuts = options.cuts;
  const etag = options.etag ?? (() => '"v1"');
  const server = await serve((request, response) => {
    ranges.push(request.headers.range);
    const asked = /^bytes=(\d+)-$/.exec(request.headers.range ?? '');
    const current = etag();
    const partial = asked !== null && request.headers['if-range'] === current;
    const start = partial ? Number(asked[1]) : 0;
    const part = body.subarray(start);
    response.writeHead(partial ? 206 : 200, {
      'content-length': part.length,
      'accept-ranges': 'bytes',
      etag: current,
      ...(partial ? { 'content-range': `bytes ${start}-${body.length - 1}/${body.length}` } : {}),
    });
    if (cuts > 0) {
      cuts--;
      response.write(part.subarray(0, options.cutAfter), () =>
        setTimeout(() => request.socket.destroy(), 20),
      );
      return;
    }
    response.end(part);
  });
  return { ...server, ranges };
}

describe('readBody', () => {
  it('reads the body ahead of a paused consumer, so the server finishes its answer (fetch alone would hold it)', async () => {
    // Larger than the loopback sockets' buffers together: the server can finish only if the
    // client's process has taken most of it.
    const body = patterned(48 * 1024 * 1024);
    let finished: Promise<unknown> = Promise.resolve();
    const server = await serve((_request, response) => {
      response.writeHead(200, { 'content-length': body.length });
      finished = once(response, 'finish');
      response.end(body);
    });
    // `withinMs`: how long the server is given to finish. Proving it does not takes a wait (3 s);
    // proving it does must not lose to a busy machine, so that wait is long.
    const finishesWhilePaused = async (
      source: AsyncIterable<Uint8Array>,
      withinMs: number,
    ): Promise<boolean> => {
      const iterator = source[Symbol.asyncIterator]();
      await iterator.next(); // the first chunk, then the consumer pauses
      const timer = new AbortController();
      const outcome = await Promise.race([
        finished.then(() => true),
        sleep(withinMs, false, { signal: timer.signal }).catch(() => false),
      ]);
      timer.abort();
      await iterator.return?.();
      return outcome;
    };

    const plain = await fetch(server.url);
    expect(await finishesWhilePaused(plain.body as unknown as AsyncIterable<Uint8Array>, 3_000)).toBe(false);

    const ahead = await fetch(server.url);
    const signal = new AbortController().signal;
    expect(
      await finishesWhilePaused(readBody(ahead, { signal, readAheadBytes: 64 * 1024 * 1024 }), 30_000),
    ).toBe(true);

    const whole = await fetch(server.url);
    expect(sha(await collect(readBody(whole, { signal })))).toBe(sha(body));
  }, 90_000);

  it('resumes a body that breaks off with Range requests for the rest, byte for byte', async () => {
    const body = patterned(3 * 1024 * 1024);
    const server = await rangeServer(body, { cuts: 2, cutAfter: 600_000 });
    const response = await fetch(server.url);
    const read = await collect(readBody(response, { signal: new AbortController().signal }));
    expect(read.length).toBe(body.length);
    expect(sha(read)).toBe(sha(body));
    expect(server.ranges).toEqual([undefined, 'bytes=600000-', 'bytes=1200000-']);
  });

  it('gives up with the break’s own error once the resumes run out', async () => {
    const body = patterned(2 * 1024 * 1024);
    const server = await rangeServer(body, { cuts: 5, cutAfter: 100_000 });
    const response = await fetch(server.url);
    await expect(
      collect(readBody(response, { signal: new AbortController().signal, resumes: 2 })),
    ).rejects.toThrow(/terminated|other side closed|socket/i);
    expect(server.ranges).toHaveLength(3);
  });

  it('does not resume when the object changed (If-Range no longer matches) or the server offers no ranges', async () => {
    const body = patterned(2 * 1024 * 1024);
    let version = 1;
    const changing = await rangeServer(body, { cuts: 1, cutAfter: 100_000, etag: () => `"v${version++}"` });
    const response = await fetch(changing.url);
    await expect(collect(readBody(response, { signal: new AbortController().signal }))).rejects.toThrow();
    expect(changing.ranges).toEqual([undefined, 'bytes=100000-']);

    const requests: (string | undefined)[] = [];
    const plain = await serve((request, answer) => {
      requests.push(request.headers.range);
      answer.writeHead(200, { 'content-length': body.length, etag: '"v1"' });
      answer.write(body.subarray(0, 100_000), () => setTimeout(() => request.socket.destroy(), 20));
    });
    const noRanges = await fetch(plain.url);
    await expect(collect(readBody(noRanges, { signal: new AbortController().signal }))).rejects.toThrow();
    expect(requests).toEqual([undefined]);
  });
});
