/**
 * The runner's log pipeline end to end: build output → decoding → masking → bounded log → uploads
 * through a real presigned POST form to real S3-compatible servers, assembled by the controller's
 * log store. Failure handling runs against a loopback HTTP server.
 */
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { LOG_KEYS, type PresignedPost } from '../../../src/core/protocol.js';
import {
  createLogStream,
  LogStreamError,
  PAGE_LOG_BYTES,
  type LogStream,
} from '../../../src/runner/log/stream.js';
import { PresignedUploader, UploadFailedError } from '../../../src/runner/log/uploader.js';
import { S3LogStore } from '../../../src/store/logs.js';
import { startArchiveServer, type ArchiveServer } from '../../support/archive-server.js';
import {
  createTestStorage,
  npmEmulators,
  storageBackends,
  type StorageBackend,
  type TestStorage,
} from '../../support/storage.js';
import { finalPageLog } from '../../../src/core/log-format.js';
import { waitFor } from '../../support/wait.js';

const TEXT = 'text/plain; charset=utf-8';

interface Put {
  key: string;
  bytes: number;
  contentType: string;
}

/** The real uploader, with a record of what went through it. */
function recording(inner: PresignedUploader): {
  puts: Put[];
  put(key: string, body: string | Uint8Array | Blob, type: string): Promise<void>;
} {
  const puts: Put[] = [];
  return {
    puts,
    async put(key, body, contentType) {
      await inner.put(key, body, contentType);
      puts.push({ key, bytes: body instanceof Blob ? body.size : Buffer.byteLength(body), contentType });
    },
  };
}

/** Polls until `read` gives `expected` (uploads in the background take a moment). */
async function eventually<T>(read: () => Promise<T>, expected: T, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: T = await read();
  while (!Object.is(last, expected) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    last = await read();
  }
  expect(last).toBe(expected);
}

class S3Fixture {
  private builds = 0;

  private constructor(
    readonly storage: TestStorage,
    readonly store: S3LogStore,
  ) {}

  static async create(backend: StorageBackend): Promise<S3Fixture> {
    const storage = await createTestStorage(backend);
    return new S3Fixture(storage, new S3LogStore(storage.clients.s3, storage.bucket));
  }

  /** A presigned form for a fresh build, as the controller hands it to the runner. */
  async form(maxObjectBytes = 4 * 1024 * 1024): Promise<PresignedPost> {
    this.builds++;
    const logPrefix = `logs/octo/app/builds/${this.builds}/`;
    return this.store.presignLogUpload(
      { repo: 'octo/app', number: this.builds, logPrefix },
      { expiresInSeconds: 600, maxObjectBytes },
    );
  }

  /** Every object under the prefix: key → size. */
  async objects(prefix: string): Promise<Map<string, number>> {
    const found = new Map<string, number>();
    let token: string | undefined;
    do {
      const page = await this.storage.clients.s3.send(
        new ListObjectsV2Command({ Bucket: this.storage.bucket, Prefix: prefix, ContinuationToken: token }),
      );
      for (const object of page.Contents ?? []) found.set(object.Key!, object.Size ?? 0);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return found;
  }

  /** The text of every object under the prefix, joined: what anyone with bucket access could read. */
  async everything(prefix: string): Promise<string> {
    const texts = await Promise.all(
      [...(await this.objects(prefix)).keys()].map(
        async (key) => (await this.store.getObjectText(key)) ?? '',
      ),
    );
    return texts.join('\n');
  }
}

describe.each(storageBackends())('log stream through a presigned form on $name', (backend) => {
  let s3: S3Fixture;
  const streams: LogStream[] = [];

  beforeAll(async () => {
    s3 = await S3Fixture.create(backend);
  });
  afterEach(async () => {
    await Promise.all(streams.splice(0).map((stream) => stream.close()));
  });

  function open(post: PresignedPost, options: Partial<Parameters<typeof createLogStream>[0]> = {}) {
    const uploader = recording(new PresignedUploader(post));
    const errors: Error[] = [];
    const stream = createLogStream({
      uploader,
      logPrefix: post.keyPrefix,
      limitBytes: 2048,
      secrets: [],
      flushIntervalMs: 60_000,
      onError: (error) => errors.push(error),
      ...options,
    });
    streams.push(stream);
    return { stream, uploader, errors };
  }

  it('streams while running; finalizeLog then gives exactly the masked, truncated text', async () => {
    const post = await s3.form();
    const secret = 'tok-8f3a9c2e71d0';
    const pages: string[] = [];
    const { stream, uploader, errors } = open(post, {
      secrets: [secret],
      maxChunkBytes: 256,
      renderPage: (text) => {
        pages.push(text);
        return `<!doctype html><pre>${text.length}</pre>`;
      },
    });
    stream.write('$ deploy --token ');
    stream.write(Buffer.from(`${secret.slice(0, 5)}`));
    stream.write(Buffer.from(`${secret.slice(5)} --verbose\n`));
    await stream.flush();
    // The controller can already read the first chunk while the build runs.
    expect(await s3.store.readLog(post.keyPrefix)).toBe('$ deploy --token *** --verbose\n');
    expect(await s3.store.getObjectText(LOG_KEYS.page(post.keyPrefix))).toContain('<pre>');

    for (let line = 1; line <= 120; line++) stream.write(`line ${line}: ${'.'.repeat(40)} ${secret}\n`);
    stream.write('the end, without a newline');
    const summary = await stream.close();

    const text = stream.text();
    expect(text.startsWith('$ deploy --token *** --verbose\nline 1: ')).toBe(true);
    expect(text).toMatch(
      /… [\d.]+ KiB of log truncated here \(limit 2 KiB\); the end of the log follows …\n/,
    );
    expect(
      text.endsWith('line 120: ........................................ ***\nthe end, without a newline'),
    ).toBe(true);
    expect(summary.truncatedBytes).toBeGreaterThan(0);
    const maskedOutput =
      '$ deploy --token *** --verbose\n' +
      Array.from({ length: 120 }, (_, index) => `line ${index + 1}: ${'.'.repeat(40)} ***\n`).join('') +
      'the end, without a newline';
    expect(summary.totalBytes).toBe(Buffer.byteLength(maskedOutput));
    expect(summary.tail).toBe(true);
    expect(errors).toEqual([]);

    // Chunks are numbered from 1 without gaps, each within the chunk size.
    const chunkKeys = uploader.puts.filter((put) => put.key.includes('/chunks/')).map((put) => put.key);
    expect(chunkKeys).toEqual(
      Array.from({ length: summary.chunks }, (_, index) => LOG_KEYS.chunk(post.keyPrefix, index + 1)),
    );
    const objects = await s3.objects(LOG_KEYS.chunksPrefix(post.keyPrefix));
    expect([...objects.keys()].sort()).toEqual(chunkKeys);
    expect(Math.max(...objects.values())).toBeLessThanOrEqual(256);
    expect(
      uploader.puts.every(
        (put) => put.contentType === (put.key.endsWith('.html') ? 'text/html; charset=utf-8' : TEXT),
      ),
    ).toBe(true);

    expect(await s3.store.readLog(post.keyPrefix)).toBe(text);
    expect(await s3.store.finalizeLog(post.keyPrefix)).toBe(text);
    expect(pages.at(-1)).toBe(text);
    const stored = await s3.everything(post.keyPrefix);
    expect(stored).not.toContain(secret);
    expect(stored).not.toContain(secret.slice(0, 8));
  });

  it('masks secrets split across writes, even inside a multi-byte character', async () => {
    const post = await s3.form();
    const secret = 'pässwörd-Ω-4e1b';
    const { stream } = open(post, { secrets: [secret], limitBytes: 64 * 1024 });
    const line = Buffer.from(`login ${secret} ok\nurl=https://u:${encodeURIComponent(secret)}@host\n`);
    // One byte at a time: every split point, including the middle of ä, ö and Ω.
    for (const byte of line) stream.write(Uint8Array.of(byte));
    await stream.flush();
    const partial = await s3.store.readLog(post.keyPrefix);
    expect(partial).toBe('login *** ok\nurl=https://u:***@host\n');
    await stream.close();
    expect(await s3.everything(post.keyPrefix)).not.toContain('pässw');
  });

  it('decodes UTF-8 split across writes and survives binary garbage', async () => {
    const post = await s3.form();
    const { stream } = open(post, { limitBytes: 64 * 1024 });
    const bytes = Buffer.from('héllo ✓ 😀\n');
    for (let at = 0; at < bytes.length; at += 3) stream.write(bytes.subarray(at, at + 3));
    stream.write(Uint8Array.of(0xff, 0xfe, 0x00, 0x1b, 0xc3));
    stream.write(' then text');
    await stream.close();
    const expected = 'héllo ✓ 😀\n\ufffd\ufffd\u0000\u001b\ufffd then text';
    expect(stream.text()).toBe(expected);
    expect(await s3.store.finalizeLog(post.keyPrefix)).toBe(expected);
  });

  it('uploads on its own timer, including a line that never ends', async () => {
    const post = await s3.form();
    const { stream } = open(post, { flushIntervalMs: 25 });
    stream.write('progress: 10%');
    await eventually(() => s3.store.readLog(post.keyPrefix), 'progress: 10%');
    stream.write(' 50%');
    await eventually(() => s3.store.readLog(post.keyPrefix), 'progress: 10% 50%');
  });

  it('uploads a chunk early when enough is pending, in pieces no larger than the chunk size', async () => {
    const post = await s3.form();
    const { stream } = open(post, { limitBytes: 64 * 1024, maxChunkBytes: 1024, flushIntervalMs: 3_600_000 });
    const output = Array.from(
      { length: 60 },
      (_, index) => `${String(index).padStart(4, '0')} ${'é'.repeat(27)}\n`,
    ).join('');
    expect(Buffer.byteLength(output)).toBeGreaterThan(3 * 1024);
    stream.write(output);
    // No flush, no timer: the pending size alone starts the upload.
    await eventually(() => s3.store.readLog(post.keyPrefix), output);
    const sizes = [...(await s3.objects(LOG_KEYS.chunksPrefix(post.keyPrefix))).values()];
    expect(sizes.length).toBeGreaterThanOrEqual(3);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(1024);
  });
});

describe('a huge log on the npm S3 emulator', () => {
  it('uploads about half the limit in chunks and keeps rewriting only a bounded tail', async () => {
    const s3 = await S3Fixture.create(npmEmulators());
    const post = await s3.form();
    const limitBytes = 4 * 1024 * 1024;
    const flushIntervalMs = 100;
    const uploader = recording(new PresignedUploader(post));
    const pageInputs: number[] = [];
    const errors: Error[] = [];
    const stream = createLogStream({
      uploader,
      logPrefix: post.keyPrefix,
      limitBytes,
      secrets: ['hunter2-secret-value'],
      flushIntervalMs,
      renderPage: (text) => {
        pageInputs.push(Buffer.byteLength(text));
        return `<pre>${text.slice(-100)}</pre>`;
      },
      onError: (error) => errors.push(error),
    });
    // 1023 lines of 64 bytes + one numbered line of 64 bytes = exactly 64 KiB per write.
    const filler = `${'x'.repeat(63)}\n`.repeat(1023);
    const writes = 1600;
    const started = Date.now();
    let lastLine = '';
    for (let index = 1; index <= writes; index++) {
      lastLine = `write ${String(index).padStart(6)} `.padEnd(63, '.') + '\n';
      stream.write(filler + lastLine);
      // Let the timer and the uploads run alongside, as they do alongside a real build.
      if (index % 32 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    const summary = await stream.close();
    const elapsedMs = Date.now() - started;

    expect(errors).toEqual([]);
    expect(summary.totalBytes).toBe(writes * 64 * 1024);
    expect(summary.truncatedBytes).toBeGreaterThanOrEqual(writes * 64 * 1024 - limitBytes);
    const chunkBytes = uploader.puts
      .filter((put) => put.key.includes('/chunks/'))
      .reduce((sum, put) => sum + put.bytes, 0);
    // Chunks carry the head only: half the limit, give or take the cut at a line.
    expect(chunkBytes).toBeLessThanOrEqual(limitBytes / 2);
    expect(chunkBytes).toBeGreaterThan(limitBytes / 2 - 16 * 1024);
    const tails = uploader.puts.filter((put) => put.key === LOG_KEYS.tail(post.keyPrefix));
    expect(tails.length).toBeGreaterThanOrEqual(1);
    // Each tail rewrite is bounded (half the limit + the marker line), at most one per upload run:
    // a run per timer tick, two early ones for the head and one at close.
    expect(Math.max(...tails.map((put) => put.bytes))).toBeLessThanOrEqual(limitBytes / 2 + 200);
    expect(tails.length).toBeLessThanOrEqual(Math.ceil(elapsedMs / flushIntervalMs) + 3);
    // The page shows only the end of the log.
    expect(pageInputs.length).toBeGreaterThanOrEqual(1);
    expect(Math.max(...pageInputs)).toBeLessThanOrEqual(PAGE_LOG_BYTES);
    expect(Math.max(...pageInputs)).toBeGreaterThan(PAGE_LOG_BYTES - 4 * 1024);

    const text = stream.text();
    expect(text.endsWith(lastLine)).toBe(true);
    expect(Buffer.byteLength(text)).toBeLessThanOrEqual(limitBytes + 200);
    expect(await s3.store.finalizeLog(post.keyPrefix)).toBe(text);
  }, 60_000);
});

describe('log stream upload failures', () => {
  let server: ArchiveServer;
  /** Objects the loopback server accepted: key → body. */
  let stored: [string, string][];

  beforeEach(async () => {
    server = await startArchiveServer();
    stored = [];
  });
  afterEach(() => server.close());

  function form(): PresignedPost {
    return {
      url: server.url('/bucket'),
      fields: { Policy: 'cG9saWN5', 'X-Amz-Signature': 'f'.repeat(64) },
      keyPrefix: 'logs/octo/app/builds/9/',
      maxObjectBytes: 1024 * 1024,
      expiresAt: Date.now() + 60_000,
    };
  }

  async function store(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const body: Buffer[] = [];
    for await (const chunk of request) body.push(chunk as Buffer);
    const fields = await new Response(Buffer.concat(body), {
      headers: { 'content-type': request.headers['content-type'] ?? '' },
    }).formData();
    const file = fields.get('file');
    stored.push([String(fields.get('key')), typeof file === 'string' ? file : await (file?.text() ?? '')]);
    response.writeHead(204).end();
  }

  function failing(request: IncomingMessage, response: ServerResponse): void {
    request.resume();
    request.on('end', () =>
      response.writeHead(403).end('<Error><Code>AccessDenied</Code><Message>Denied</Message></Error>'),
    );
  }

  it('reports a failed upload, keeps building, and retries the same chunk number later', async () => {
    let failNext = true;
    server.route('/bucket', (request, response) => {
      if (failNext) {
        failNext = false;
        failing(request, response);
      } else void store(request, response);
    });
    const errors: Error[] = [];
    const stream = createLogStream({
      uploader: new PresignedUploader(form(), { retries: 0 }),
      logPrefix: form().keyPrefix,
      limitBytes: 64 * 1024,
      secrets: [],
      flushIntervalMs: 60_000,
      onError: (error) => errors.push(error),
    });
    stream.write('first\n');
    await expect(stream.flush()).resolves.toBeUndefined();
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(UploadFailedError);
    expect(errors[0]!.message).toContain('AccessDenied');
    stream.write('second\n');
    const summary = await stream.close();
    expect(stored).toEqual([
      ['logs/octo/app/builds/9/chunks/000001.txt', 'first\n'],
      ['logs/octo/app/builds/9/chunks/000002.txt', 'second\n'],
    ]);
    expect(summary).toEqual({ chunks: 2, totalBytes: 13, truncatedBytes: 0, tail: false });
  });

  it('never throws into the build: not when uploads fail, not for output after close', async () => {
    server.route('/bucket', failing);
    const errors: Error[] = [];
    const stream = createLogStream({
      uploader: new PresignedUploader(form(), { retries: 0 }),
      logPrefix: form().keyPrefix,
      limitBytes: 4096,
      secrets: [],
      flushIntervalMs: 10,
      onError: (error) => errors.push(error),
    });
    for (let index = 0; index < 1000; index++) stream.write(`line ${index}\n`);
    // An upload before close failed (a fixed 50 ms was not always long enough for one).
    await waitFor('an upload to fail', () => (errors.length > 0 ? true : undefined), 20_000, 10);
    const summary = await stream.close();
    expect(summary.chunks).toBe(0);
    expect(summary.truncatedBytes).toBeGreaterThan(0);
    expect(errors.length).toBeGreaterThanOrEqual(2);
    expect(() => stream.write('late output\n')).not.toThrow();
    stream.write('more late output\n');
    expect(errors.filter((error) => error instanceof LogStreamError)).toHaveLength(1);
    expect(stream.text()).not.toContain('late output');
  });

  it('refuses options it cannot honour', () => {
    const uploader = new PresignedUploader(form());
    const base = { uploader, logPrefix: 'logs/o/r/builds/1/', limitBytes: 4096, secrets: [] };
    expect(() => createLogStream({ ...base, maxChunkBytes: 2 })).toThrow(LogStreamError);
    expect(() => createLogStream({ ...base, flushIntervalMs: 0 })).toThrow(LogStreamError);
  });
});

describe('finalPageLog', () => {
  it('keeps a log that fits as it is', () => {
    expect(finalPageLog('one\ntwo\n', 100)).toBe('one\ntwo\n');
  });

  it('keeps the end from a whole line, behind a line saying how much only the raw log has', () => {
    const log = `${'a'.repeat(50)}\n${'b'.repeat(20)}\nlast line ✓\n`;
    expect(finalPageLog(log, 20)).toBe(
      '… the first 72 bytes of the log are left out here: the raw log has all of it …\nlast line ✓\n',
    );
  });
});
