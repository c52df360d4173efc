/**
 * Uploads through a presigned POST form, as the runner does: against real S3-compatible servers with
 * forms made by the controller's log store, and against a loopback server for failures (resets,
 * S3 error documents, server errors).
 */
import { GetObjectCommand } from '@aws-sdk/client-s3';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { LOG_KEYS, type PresignedPost } from '../../../src/core/protocol.js';
import {
  PresignedUploader,
  UploadFailedError,
  UploadRefusedError,
} from '../../../src/runner/log/uploader.js';
import { S3LogStore } from '../../../src/store/logs.js';
import { resetAtOnce, startArchiveServer, type ArchiveServer } from '../../support/archive-server.js';
import { createTestStorage, storageBackends, type TestStorage } from '../../support/storage.js';

const PREFIX = 'logs/octo/app/builds/1/';

describe.each(storageBackends())('PresignedUploader on $name', (backend) => {
  let storage: TestStorage;
  let store: S3LogStore;

  beforeAll(async () => {
    storage = await createTestStorage(backend);
    store = new S3LogStore(storage.clients.s3, storage.bucket);
  });

  async function presign(logPrefix: string, maxObjectBytes = 1024 * 1024): Promise<PresignedPost> {
    const number = Number(/builds\/(\d+)\//.exec(logPrefix)?.[1]);
    return store.presignLogUpload(
      { repo: 'octo/app', number, logPrefix },
      { expiresInSeconds: 300, maxObjectBytes },
    );
  }

  async function read(key: string): Promise<{ body: Buffer; contentType?: string; cacheControl?: string }> {
    const response = await storage.clients.s3.send(
      new GetObjectCommand({ Bucket: storage.bucket, Key: key }),
    );
    return {
      body: Buffer.from((await response.Body?.transformToByteArray()) ?? []),
      ...(response.ContentType ? { contentType: response.ContentType } : {}),
      ...(response.CacheControl ? { cacheControl: response.CacheControl } : {}),
    };
  }

  it('uploads text and bytes under the prefix, with their content type', async () => {
    const post = await presign('logs/octo/app/builds/2/');
    const uploader = new PresignedUploader(post);
    const chunk = LOG_KEYS.chunk(post.keyPrefix, 1);
    await uploader.put(chunk, 'hello ✓\n\u001b[32mgreen\u001b[0m\n', 'text/plain; charset=utf-8');
    const text = await read(chunk);
    expect(text.body.toString('utf8')).toBe('hello ✓\n\u001b[32mgreen\u001b[0m\n');
    expect(text.contentType).toBe('text/plain; charset=utf-8');
    expect(text.cacheControl).toBe('no-cache');

    const bytes = new Uint8Array([0, 1, 2, 0xff, 0xfe, 0x0a]);
    await uploader.put(LOG_KEYS.tail(post.keyPrefix), bytes, 'text/plain; charset=utf-8');
    expect([...(await read(LOG_KEYS.tail(post.keyPrefix))).body]).toEqual([...bytes]);

    await uploader.put(LOG_KEYS.page(post.keyPrefix), '<!doctype html>', 'text/html; charset=utf-8');
    expect(await read(LOG_KEYS.page(post.keyPrefix))).toMatchObject({
      contentType: 'text/html; charset=utf-8',
    });
  });

  it('replaces an object uploaded again (the tail is rewritten as the build runs)', async () => {
    const post = await presign('logs/octo/app/builds/3/');
    const uploader = new PresignedUploader(post);
    await uploader.put(LOG_KEYS.tail(post.keyPrefix), 'first', 'text/plain; charset=utf-8');
    await uploader.put(LOG_KEYS.tail(post.keyPrefix), 'second', 'text/plain; charset=utf-8');
    expect((await read(LOG_KEYS.tail(post.keyPrefix))).body.toString()).toBe('second');
    expect(await store.readLog(post.keyPrefix)).toBe('second');
  });

  it("reports S3's error code for a refused upload", async () => {
    const post = await presign('logs/octo/app/builds/4/');
    const url = new URL(post.url);
    url.pathname = url.pathname.replace(storage.bucket, 'no-such-bucket-for-lambkin');
    const uploader = new PresignedUploader({ ...post, url: url.toString() });
    const failure = await uploader.put(LOG_KEYS.chunk(post.keyPrefix, 1), 'x', 'text/plain').catch((e) => e);
    expect(failure).toBeInstanceOf(UploadFailedError);
    expect((failure as UploadFailedError).details).toMatchObject({
      s3Code: 'NoSuchBucket',
      status: 404,
      attempts: 1,
    });
    expect((failure as Error).message).toContain('NoSuchBucket');
    expect((failure as Error).message).not.toContain(post.fields['X-Amz-Signature']!);
  });
});

describe('PresignedUploader against a loopback server', () => {
  let server: ArchiveServer;
  /** Forms the server received, parsed by the platform's own multipart parser. */
  let received: { path: string; fields: [string, string][]; file?: { name: string; text: string } }[];

  beforeEach(async () => {
    server = await startArchiveServer();
    received = [];
  });
  afterEach(() => server.close());

  function formFor(path: string, overrides: Partial<PresignedPost> = {}): PresignedPost {
    return {
      url: server.url(path),
      fields: {
        bucket: 'logs-bucket',
        'X-Amz-Algorithm': 'AWS4-HMAC-SHA256',
        'X-Amz-Credential': 'AKIDEXAMPLE/20250101/us-east-1/s3/aws4_request',
        'X-Amz-Date': '20250101T000000Z',
        Policy: 'eyJleHBpcmF0aW9uIjoiMjA5OS0wMS0wMVQwMDowMDowMFoifQ==',
        'X-Amz-Signature': 'a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90',
      },
      keyPrefix: PREFIX,
      maxObjectBytes: 64,
      expiresAt: Date.now() + 60_000,
      ...overrides,
    };
  }

  async function parseForm(request: IncomingMessage, path: string): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const form = await new Response(Buffer.concat(chunks), {
      headers: { 'content-type': request.headers['content-type'] ?? '' },
    }).formData();
    const fields: [string, string][] = [];
    let file: { name: string; text: string } | undefined;
    for (const [name, value] of form.entries()) {
      if (typeof value === 'string') fields.push([name, value]);
      else {
        fields.push([name, '(file)']);
        file = { name: value.name, text: await value.text() };
      }
    }
    received.push({ path, fields, ...(file ? { file } : {}) });
  }

  /** Stores the form and answers 204 as S3 does. */
  function accept(path: string) {
    return (request: IncomingMessage, response: ServerResponse) => {
      void parseForm(request, path).then(() => response.writeHead(204).end());
    };
  }

  function s3Error(status: number, code: string, message: string) {
    return (request: IncomingMessage, response: ServerResponse) => {
      request.resume();
      request.on('end', () =>
        response
          .writeHead(status, { 'content-type': 'application/xml' })
          .end(
            `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message>` +
              '<RequestId>R1</RequestId></Error>',
          ),
      );
    };
  }

  it('sends the policy fields, then key and Content-Type, and the file last', async () => {
    server.route('/bucket', accept('/bucket'));
    const post = formFor('/bucket');
    await new PresignedUploader(post).put(
      `${PREFIX}chunks/000001.txt`,
      'line\n',
      'text/plain; charset=utf-8',
    );
    expect(received).toHaveLength(1);
    expect(received[0]!.fields).toEqual([
      ...Object.entries(post.fields),
      ['key', `${PREFIX}chunks/000001.txt`],
      ['Content-Type', 'text/plain; charset=utf-8'],
      ['file', '(file)'],
    ]);
    expect(received[0]!.file).toEqual({ name: '000001.txt', text: 'line\n' });
  });

  it('never sends a key or Content-Type the form itself carries', async () => {
    server.route('/bucket', accept('/bucket'));
    const post = formFor('/bucket');
    const withExtras = {
      ...post,
      fields: { ...post.fields, key: `${PREFIX}\${filename}`, 'content-type': 'x/y' },
    };
    await new PresignedUploader(withExtras).put(`${PREFIX}tail.txt`, 't', 'text/plain');
    const names = received[0]!.fields.map(([name]) => name.toLowerCase());
    expect(names.filter((name) => name === 'key')).toHaveLength(1);
    expect(names.filter((name) => name === 'content-type')).toHaveLength(1);
    expect(received[0]!.fields).toContainEqual(['key', `${PREFIX}tail.txt`]);
  });

  it('refuses keys outside the prefix and oversized bodies without sending anything', async () => {
    server.route('/bucket', accept('/bucket'));
    const uploader = new PresignedUploader(formFor('/bucket'));
    for (const key of [
      'logs/octo/app/builds/2/log.txt',
      'logs/octo/app/builds/1',
      PREFIX,
      `other/${PREFIX}x`,
    ]) {
      await expect(uploader.put(key, 'x', 'text/plain')).rejects.toThrow(UploadRefusedError);
    }
    await expect(uploader.put(`${PREFIX}log.txt`, 'x'.repeat(65), 'text/plain')).rejects.toThrow(
      /65 bytes .* at most 64/,
    );
    // Bytes, not characters: 22 × 3 bytes is over the limit although it is 22 characters.
    await expect(uploader.put(`${PREFIX}log.txt`, '✓'.repeat(22), 'text/plain')).rejects.toThrow(
      UploadRefusedError,
    );
    expect(server.requests).toEqual([]);
    await uploader.put(`${PREFIX}log.txt`, 'x'.repeat(64), 'text/plain');
    expect(server.requests).toEqual(['/bucket']);
  });

  it('retries after a connection reset and succeeds', async () => {
    const reset = resetAtOnce();
    const store = accept('/bucket');
    server.route('/bucket', (request, response, count) =>
      (count === 1 ? reset : store)(request, response, count),
    );
    await new PresignedUploader(formFor('/bucket'), { retryDelayMs: 10 }).put(
      `${PREFIX}tail.txt`,
      'ok',
      'text/plain',
    );
    expect(server.requestCount('/bucket')).toBe(2);
    expect(received.map((form) => form.file?.text)).toEqual(['ok']);
  });

  it('retries 5xx answers with backoff, then gives up with a typed error', async () => {
    server.route('/bucket', s3Error(503, 'SlowDown', 'Please reduce your request rate.'));
    const started = Date.now();
    const failure = await new PresignedUploader(formFor('/bucket'), { retries: 2, retryDelayMs: 20 })
      .put(`${PREFIX}tail.txt`, 'x', 'text/plain')
      .catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(UploadFailedError);
    expect((failure as UploadFailedError).details).toMatchObject({
      status: 503,
      s3Code: 'SlowDown',
      attempts: 3,
    });
    expect((failure as Error).message).toMatch(/SlowDown.*after 3 attempts/);
    expect(server.requestCount('/bucket')).toBe(3);
    expect(Date.now() - started).toBeGreaterThanOrEqual(20 + 40);
  });

  it('does not retry a refusal, and never repeats the signature or policy S3 echoes back', async () => {
    const post = formFor('/bucket');
    const signature = post.fields['X-Amz-Signature']!;
    const policy = post.fields.Policy!;
    server.route(
      '/bucket',
      s3Error(403, 'SignatureDoesNotMatch', `Signature ${signature} does not match policy ${policy}`),
    );
    const failure = await new PresignedUploader(post, { retryDelayMs: 10 })
      .put(`${PREFIX}tail.txt`, 'x', 'text/plain')
      .catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(UploadFailedError);
    const message = (failure as Error).message;
    expect(message).toContain('SignatureDoesNotMatch');
    expect(message).toContain('HTTP 403');
    expect(message).not.toContain(signature);
    expect(message).not.toContain(policy);
    expect(server.requestCount('/bucket')).toBe(1);
  });

  it('gives up on a server that never answers, after the timeout and retries', async () => {
    server.route('/bucket', (request) => void request.resume());
    const failure = await new PresignedUploader(formFor('/bucket'), {
      // Long enough for each request to reach the server (counted below) on a busy machine.
      timeoutMs: 1000,
      retries: 1,
      retryDelayMs: 10,
    })
      .put(`${PREFIX}tail.txt`, 'x', 'text/plain')
      .catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(UploadFailedError);
    expect((failure as Error).message).toMatch(/after 2 attempts: the request timed out/);
    expect(server.requestCount('/bucket')).toBe(2);
  });

  it('says when the form has expired', async () => {
    server.route('/bucket', s3Error(403, 'AccessDenied', 'Invalid according to Policy: Policy expired.'));
    const failure = await new PresignedUploader(formFor('/bucket', { expiresAt: Date.now() - 1000 }))
      .put(`${PREFIX}tail.txt`, 'x', 'text/plain')
      .catch((error: unknown) => error);
    expect((failure as Error).message).toMatch(/AccessDenied.*Policy expired.*The upload form has expired/);
  });
});
