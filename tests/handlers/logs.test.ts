/**
 * The log function end to end: HTTP API (payload 2.0) events in, the exported handler configured
 * from the environment exactly as in the cloud, real DynamoDB/S3-compatible servers behind it.
 */
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { createS3Client } from '../../src/aws/clients.js';
import { LOG_KEYS, REPO_KEYS } from '../../src/core/protocol.js';
import type { BuildRecord } from '../../src/core/build.js';
import { ConfigurationError } from '../../src/core/errors.js';
import {
  createLogRouteDependencies,
  handler,
  s3ObjectExists,
  toLogRouteRequest,
  type LogsHttpEvent,
} from '../../src/handlers/logs.js';
import { DynamoBuildStore } from '../../src/store/builds.js';
import { LogStoreError } from '../../src/store/logs.js';
import { testBuildRequest } from '../support/builds.js';
import { createTestStorage, type TestStorage } from '../support/storage.js';

const TOKEN = 'handler-t0ken_abcdefghijklmnop';
const VARIABLES = [
  'LAMBKIN_BUILDS_TABLE',
  'LAMBKIN_BUCKET',
  'AWS_ENDPOINT_URL_DYNAMODB',
  'AWS_ENDPOINT_URL_S3',
] as const;

let storage: TestStorage;
let secret: BuildRecord;
let queued: BuildRecord;
const saved: Record<string, string | undefined> = {};

/** An HTTP API event as API Gateway sends it (payload format 2.0). */
function httpApiEvent(
  path: string,
  options: { query?: string; method?: string; stage?: string; rawQueryString?: boolean } = {},
): LogsHttpEvent {
  const method = options.method ?? 'GET';
  const stage = options.stage ?? '$default';
  const query = options.query ?? '';
  const fullPath = stage === '$default' ? path : `/${stage}${path}`;
  const parameters = Object.fromEntries(new URLSearchParams(query));
  // Every field API Gateway sends, not only the ones the handler reads.
  const event = {
    version: '2.0',
    routeKey: `${method} /builds/{proxy+}`,
    rawPath: fullPath,
    ...(options.rawQueryString === false ? {} : { rawQueryString: query }),
    headers: {
      accept: 'text/html',
      host: 'abc123.execute-api.eu-west-1.amazonaws.com',
      'user-agent': 'jest',
      'x-forwarded-proto': 'https',
    },
    ...(query ? { queryStringParameters: parameters } : {}),
    requestContext: {
      accountId: '123456789012',
      apiId: 'abc123',
      domainName: 'abc123.execute-api.eu-west-1.amazonaws.com',
      domainPrefix: 'abc123',
      http: { method, path: fullPath, protocol: 'HTTP/1.1', sourceIp: '192.0.2.1', userAgent: 'jest' },
      requestId: 'request-1',
      routeKey: `${method} /builds/{proxy+}`,
      stage,
      time: '01/Jan/2030:00:00:00 +0000',
      timeEpoch: 1_893_456_000_000,
    },
    pathParameters: { proxy: path.replace(/^\/builds\//, '') },
    isBase64Encoded: false,
  };
  return event;
}

async function put(key: string, body: string, contentType: string): Promise<void> {
  await storage.clients.s3.send(
    new PutObjectCommand({
      Bucket: storage.bucket,
      Key: key,
      Body: Buffer.from(body),
      ContentType: contentType,
    }),
  );
}

beforeAll(async () => {
  storage = await createTestStorage();
  for (const name of VARIABLES) saved[name] = process.env[name];
  // What the template sets, plus the SDK's own endpoint variables pointing at the emulators.
  process.env.LAMBKIN_BUILDS_TABLE = storage.buildsTable;
  process.env.LAMBKIN_BUCKET = storage.bucket;
  process.env.AWS_ENDPOINT_URL_DYNAMODB = storage.backend.dynamodbEndpoint;
  process.env.AWS_ENDPOINT_URL_S3 = storage.backend.s3Endpoint;

  const builds = new DynamoBuildStore(storage.clients.documents, storage.buildsTable);
  const request = {
    event: 'push' as const,
    ref: 'refs/heads/main',
    sha: 'c'.repeat(40),
    branch: 'main',
    fork: false,
    trusted: true,
    author: 'octocat',
    deliveryId: 'delivery-handler',
  };
  const number = await builds.allocateNumber('octo/secret');
  const created = await builds.putQueuedBuild(
    { ...request, repo: 'octo/secret', privateRepo: true },
    number,
    {
      deadline: Date.now() + 60_000,
      logToken: TOKEN,
    },
  );
  const running = await builds.transition(created, { from: 'queued', to: 'running' });
  secret = await builds.transition(running, { from: 'running', to: 'failure', reason: 'test failed' });
  await put(LOG_KEYS.page(secret.logPrefix), '<p>secret page</p>', 'text/html; charset=utf-8');
  await put(LOG_KEYS.log(secret.logPrefix), 'secret log\n', 'text/plain; charset=utf-8');
  queued = await builds.putQueuedBuild(
    { ...request, repo: 'octo/open', privateRepo: false },
    await builds.allocateNumber('octo/open'),
    { deadline: Date.now() + 60_000 },
  );
});

afterAll(() => {
  for (const name of VARIABLES) {
    if (saved[name] === undefined) delete process.env[name];
    else process.env[name] = saved[name];
  }
});

const secretPath = () => `/builds/octo/secret/${secret.number}`;

async function download(location: string | undefined): Promise<string> {
  expect(location).toMatch(/X-Amz-Signature=/);
  const response = await fetch(location!);
  expect(response.status).toBe(200);
  return response.text();
}

describe('log function handler', () => {
  it('answers a private build link with its token with the page, and redirects its log', async () => {
    const query = `token=${encodeURIComponent(TOKEN)}`;
    const page = await handler(httpApiEvent(secretPath(), { query }));
    expect(page.statusCode).toBe(200);
    expect(page.headers).toMatchObject({ 'cache-control': 'no-store', 'referrer-policy': 'no-referrer' });
    expect(page.body).toBe('<p>secret page</p>');
    const log = await handler(httpApiEvent(`${secretPath()}/log.txt`, { query }));
    expect(await download(log.headers['location'])).toBe('secret log\n');
  });

  it('answers a wrong token exactly like an unknown build', async () => {
    const wrong = await handler(httpApiEvent(secretPath(), { query: 'token=guess' }));
    const missing = await handler(httpApiEvent(secretPath()));
    const unknown = await handler(httpApiEvent('/builds/octo/secret/9999', { query: `token=${TOKEN}` }));
    expect(wrong.statusCode).toBe(404);
    expect(missing).toEqual(wrong);
    expect(unknown).toEqual(wrong);
  });

  it('reads the token from queryStringParameters when rawQueryString is absent', async () => {
    const result = await handler(
      httpApiEvent(secretPath(), { query: `token=${TOKEN}`, rawQueryString: false }),
    );
    expect(result.statusCode).toBe(200);
    const wrong = await handler(httpApiEvent(secretPath(), { query: 'token=nope', rawQueryString: false }));
    expect(wrong.statusCode).toBe(404);
  });

  it('serves links under a named stage, whose name prefixes rawPath', async () => {
    const result = await handler(httpApiEvent(secretPath(), { query: `token=${TOKEN}`, stage: 'prod' }));
    expect(result.body).toBe('<p>secret page</p>');
  });

  it('answers HEAD like GET and a queued build with the waiting page', async () => {
    const head = await handler(httpApiEvent(secretPath(), { query: `token=${TOKEN}`, method: 'HEAD' }));
    expect(head.statusCode).toBe(200);
    expect(head.body).toBe('');
    const waiting = await handler(httpApiEvent(`/builds/octo/open/${queued.number}`));
    expect(waiting.statusCode).toBe(200);
    expect(waiting.body).toContain('http-equiv="refresh"');
    expect((await handler(httpApiEvent(`/builds/octo/open/${queued.number}/../1`))).statusCode).toBe(404);
  });

  it("serves a public repository's page of recent builds, and never a private one's", async () => {
    await put(REPO_KEYS.page('octo/open'), '<p>recent builds</p>', 'text/html; charset=utf-8');
    await put(REPO_KEYS.page('octo/secret'), '<p>links with tokens</p>', 'text/html; charset=utf-8');
    const open = await handler(httpApiEvent('/builds/octo/open', { stage: 'prod' }));
    expect([open.statusCode, open.body]).toEqual([200, '<p>recent builds</p>']);
    const secret = await handler(httpApiEvent('/builds/octo/secret', { query: `token=${TOKEN}` }));
    expect(secret.statusCode).toBe(404);
    expect(secret.body).toContain('public repositories only');
    expect(await handler(httpApiEvent('/builds/octo/nothing'))).toEqual(secret);
  });

  it('turns events into route requests', () => {
    expect(
      toLogRouteRequest({
        rawPath: '/v1/builds/a/b/1',
        requestContext: { stage: 'v1', http: { method: 'head' } },
        queryStringParameters: { token: 'a b', other: undefined },
      }),
    ).toEqual({ method: 'HEAD', path: '/builds/a/b/1', query: 'token=a+b' });
    // Only a leading stage segment is removed.
    expect(toLogRouteRequest({ rawPath: '/builds/v1/b/1', requestContext: { stage: 'v1' } }).path).toBe(
      '/builds/v1/b/1',
    );
  });

  it('refuses to start without the configuration the log function needs', () => {
    expect(() => createLogRouteDependencies({})).toThrow(ConfigurationError);
    expect(() => createLogRouteDependencies({})).toThrow(/LAMBKIN_BUILDS_TABLE.*LAMBKIN_BUCKET/s);
  });

  it('tells a missing object from a bucket it cannot reach', async () => {
    const exists = s3ObjectExists(
      createS3Client({ endpoints: { s3: storage.backend.s3Endpoint } }),
      storage.bucket,
    );
    expect(await exists(LOG_KEYS.page(secret.logPrefix))).toBe(true);
    expect(await exists('logs/octo/secret/builds/0/index.html')).toBe(false);
    // Anything but "not found" (here: nothing listens) is an error, never "no such object".
    const unreachable = s3ObjectExists(
      createS3Client({ endpoints: { s3: 'http://127.0.0.1:1' }, maxAttempts: 1 }),
      storage.bucket,
    );
    await expect(unreachable('logs/x')).rejects.toThrow(LogStoreError);
    await expect(unreachable('logs/x')).rejects.toThrow(/Could not look for s3:\/\/.*LAMBKIN_BUCKET/s);
  });
});

/** A badge request as API Gateway sends it to the `GET /badges/{owner}/{badge}` route. */
function badgeEvent(owner: string, badge: string, query = '', method = 'GET'): LogsHttpEvent {
  const path = `/badges/${owner}/${badge}`;
  return {
    ...httpApiEvent(path, { query, method }),
    routeKey: `${method} /badges/{owner}/{badge}`,
    pathParameters: { owner, badge },
    headers: { accept: 'image/*', host: 'abc123.execute-api.eu-west-1.amazonaws.com', 'user-agent': 'camo' },
  } as LogsHttpEvent;
}

describe('badges through the log function handler', () => {
  let badgeToken: string;

  beforeAll(async () => {
    const builds = new DynamoBuildStore(storage.clients.documents, storage.buildsTable);
    const created = await builds.putQueuedBuild(
      testBuildRequest({ repo: 'octo/badge-open', sha: 'e'.repeat(40) }),
      await builds.allocateNumber('octo/badge-open'),
      { deadline: Date.now() + 60_000 },
    );
    const running = await builds.transition(created, { from: 'queued', to: 'running' });
    await builds.transition(running, { from: 'running', to: 'success' });
    badgeToken = await builds.ensureBadgeToken('octo/secret');
  });

  it('answers an SVG badge with the headers an image proxy needs', async () => {
    const result = await handler(badgeEvent('octo', 'badge-open.svg'));
    expect(result.statusCode).toBe(200);
    expect(result.headers['content-type']).toBe('image/svg+xml');
    expect(result.headers['cache-control']).toBe('max-age=0, no-cache');
    expect(result.body).toContain('<title>build: passing</title>');
    expect(result.body).toMatch(/^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  });

  it('reads ?branch= and a private repository’s token, and hides it without the token', async () => {
    const withToken = await handler(
      badgeEvent('octo', 'secret.svg', `branch=main&token=${encodeURIComponent(badgeToken)}`),
    );
    expect(withToken.body).toContain('<title>build: failing</title>');
    const unknown = await handler(badgeEvent('octo', 'nothing-here.svg'));
    expect(unknown.statusCode).toBe(200);
    expect(unknown.body).toContain('<title>build: unknown</title>');
    for (const query of ['branch=main', `branch=main&token=${TOKEN}`]) {
      expect(await handler(badgeEvent('octo', 'secret.svg', query))).toEqual(unknown);
    }
  });

  it('answers HEAD without a body, and 404 for what is not a badge', async () => {
    const head = await handler(badgeEvent('octo', 'badge-open.svg', '', 'HEAD'));
    expect(head.statusCode).toBe(200);
    expect(head.body).toBe('');
    expect(head.headers['content-type']).toBe('image/svg+xml');
    expect((await handler(badgeEvent('octo', 'badge-open.png'))).statusCode).toBe(404);
  });
});
