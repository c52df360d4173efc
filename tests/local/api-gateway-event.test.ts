/**
 * The local server's one adapter: Node requests in, the API Gateway HTTP API event (payload 2.0) a
 * handler gets in the cloud out, the handler's result written back; bodies read within a limit.
 * Over real loopback HTTP.
 */
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createMemoryLogger } from '../../src/core/logger.js';
import type { HttpApiEvent, LambdaHttpResult } from '../../src/handlers/http-event.js';
import { answerWithHandler, MAX_REQUEST_BODY_BYTES } from '../../src/local/api-gateway-event.js';
import { postChunked } from '../support/chunked-post.js';

const LIMIT = 1024 * 1024;

let server: Server;
let base: string;
let events: HttpApiEvent[];
let result: LambdaHttpResult | Error;

beforeAll(async () => {
  server = createServer((request, response) => {
    void answerWithHandler(
      async (event) => {
        events.push(event);
        if (result instanceof Error) throw result;
        return result;
      },
      request,
      response,
      { logger: createMemoryLogger(), maxBodyBytes: LIMIT },
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

beforeEach(() => {
  events = [];
  result = { statusCode: 200, headers: { 'content-type': 'text/plain' }, body: 'ok' };
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

/** A request with the Node client, which keeps repeated headers apart. */
function send(
  path: string,
  options: { method?: string; headers?: Record<string, string | string[]>; body?: Buffer },
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(`${base}${path}`, {
      method: options.method ?? 'GET',
      headers: options.headers ?? {},
    });
    request.on('response', (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () =>
        resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks) }),
      );
    });
    request.on('error', reject);
    request.end(options.body);
  });
}

describe('the API Gateway event of a local request', () => {
  it('has the raw path and query, parsed parameters, headers in lower case, cookies apart', async () => {
    await send('/builds/a%2Fb/1?token=x%20y&branch=main&branch=dev', {
      headers: { 'X-Custom': ['one', 'two'], Cookie: 'a=1; b=2', 'User-Agent': 'parity' },
    });
    const [event] = events;
    expect(event).toMatchObject({
      version: '2.0',
      routeKey: '$default',
      rawPath: '/builds/a%2Fb/1',
      rawQueryString: 'token=x%20y&branch=main&branch=dev',
      queryStringParameters: { token: 'x y', branch: 'main,dev' },
      cookies: ['a=1', 'b=2'],
      isBase64Encoded: false,
      requestContext: {
        stage: '$default',
        http: { method: 'GET', path: '/builds/a%2Fb/1', protocol: 'HTTP/1.1', userAgent: 'parity' },
      },
    });
    expect(event?.headers).toMatchObject({ 'x-custom': 'one,two', 'user-agent': 'parity' });
    expect(event?.headers['cookie']).toBeUndefined();
    expect(event?.body).toBeUndefined();
    expect(event?.queryStringParameters).toBeDefined();
  });

  it('passes a text body as text and any other body as base64 of its exact bytes', async () => {
    const json = Buffer.from('{"zen":"Keep it logically awesome ✓"}');
    await send('/webhook', { method: 'POST', headers: { 'content-type': 'application/json' }, body: json });
    const binary = Buffer.from([0xff, 0xfe, 0x00, 0x41]);
    await send('/webhook', {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: binary,
    });
    // Declared JSON that is not UTF-8: base64 keeps the bytes a signature was computed over.
    await send('/webhook', { method: 'POST', headers: { 'content-type': 'application/json' }, body: binary });
    expect(events.map((event) => [event.body, event.isBase64Encoded])).toEqual([
      [json.toString('utf8'), false],
      [binary.toString('base64'), true],
      [binary.toString('base64'), true],
    ]);
  });

  it("writes the handler's status, headers, cookies and base64 body back", async () => {
    result = {
      statusCode: 201,
      headers: { 'content-type': 'image/png', 'x-answer': 'yes' },
      body: Buffer.from([0x89, 0x50, 0x4e, 0x47, 0xff]).toString('base64'),
      isBase64Encoded: true,
      cookies: ['seen=1; Path=/'],
    };
    const answer = await send('/anything', {});
    expect(answer.status).toBe(201);
    expect(answer.headers).toMatchObject({
      'content-type': 'image/png',
      'x-answer': 'yes',
      'set-cookie': ['seen=1; Path=/'],
    });
    expect([...answer.body]).toEqual([0x89, 0x50, 0x4e, 0x47, 0xff]);
  });

  it('answers 500 when the handler throws, as Lambda does', async () => {
    result = new Error('the handler broke');
    const answer = await send('/anything', {});
    expect(answer.status).toBe(500);
    expect(answer.body.toString()).not.toContain('the handler broke');
  });
});

describe('a body past the limit', () => {
  it('is GitHub’s 25 MB cap by default', () => {
    expect(MAX_REQUEST_BODY_BYTES).toBe(25 * 1024 * 1024);
  });

  it('is refused with 413 while it streams in: the server stops reading and the handler never runs', async () => {
    const total = 30 * 1024 * 1024;
    const answer = await postChunked(`${base}/webhook`, total);
    expect(answer.status).toBe(413);
    // 1 MiB read, and at most what the loopback socket's buffers hold (a few MiB): never all 30.
    expect(answer.written).toBeLessThan(total / 2);
    expect(events).toEqual([]);
  });

  it('is refused with 413 from its content-length alone, before any of it is sent', async () => {
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const request = httpRequest(`${base}/webhook`, {
        method: 'POST',
        headers: { 'content-length': String(LIMIT + 1), 'content-type': 'application/json' },
      });
      request.on('response', (response) => {
        let body = '';
        response.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
        response.on('end', () => {
          request.destroy();
          resolve({ status: response.statusCode ?? 0, body });
        });
      });
      request.on('error', reject);
      request.flushHeaders();
    });
    expect(answer.status).toBe(413);
    expect(JSON.parse(answer.body)).toEqual({ error: expect.stringMatching(/larger than 1048576 bytes/) });
    expect(events).toEqual([]);
  });

  it('is read in full up to the limit', async () => {
    const body = Buffer.alloc(LIMIT, 'y');
    const answer = await send('/webhook', {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body,
    });
    expect(answer.status).toBe(200);
    expect(events[0]?.body).toHaveLength(LIMIT);
  });
});
