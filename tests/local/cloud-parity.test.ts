/**
 * One path: the local stack answers with the cloud's handlers. The same signed webhooks and the same
 * page, log, repository-page and badge requests go to the local server over HTTP and, as the API
 * Gateway events the cloud sends, to the handlers: the webhook handler made from the stack's intake,
 * and the log function's exported Lambda handler configured from the environment as in the cloud.
 * The answers are the same. A private repository needs its token locally too, and a webhook body
 * past GitHub's 25 MB cap is refused without being read.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createWebhookHandler } from '../../src/handlers/webhook.js';
import { handler as cloudLogsHandler } from '../../src/handlers/logs.js';
import type { HttpApiEvent, LambdaHttpResult } from '../../src/handlers/http-event.js';
import { startLocalStack, type LocalStack } from '../../src/local/stack.js';
import { createMemoryLogger, type MemoryLogger } from '../../src/core/logger.js';
import { createGitRepo, startGitHubServer, type GitHubStandIn } from '../support/github-server.js';
import { passingProject } from '../support/npm-projects.js';
import { examplePayload, pushPayload, signedDelivery, type SignedDelivery } from '../support/payloads.js';
import { postChunked } from '../support/chunked-post.js';

const SECRET = 'parity-secret';
const TOKEN = 'parity-token';
const ENVIRONMENT = [
  'LAMBKIN_BUILDS_TABLE',
  'LAMBKIN_BUCKET',
  'AWS_ENDPOINT_URL_DYNAMODB',
  'AWS_ENDPOINT_URL_S3',
  'AWS_ACCESS_KEY_ID',
  'AWS_SECRET_ACCESS_KEY',
  'AWS_SESSION_TOKEN',
] as const;

let github: GitHubStandIn;
let dataDir: string;
let gitDir: string;
let sha: string;
let stack: LocalStack;
let logger: MemoryLogger;
let cloudWebhook: ReturnType<typeof createWebhookHandler>;
const saved: Record<string, string | undefined> = {};

beforeAll(async () => {
  github = await startGitHubServer({ token: TOKEN });
  dataDir = mkdtempSync(join(tmpdir(), 'lambkin-parity-test-'));
  ({ dir: gitDir, sha } = await createGitRepo(passingProject()));
  github.addRepository({ owner: 'octo', name: 'parity', gitDir });
  github.addRepository({ owner: 'octo', name: 'hidden', gitDir, private: true });
  logger = createMemoryLogger();
  stack = await startLocalStack({
    dataDir,
    port: 0,
    githubApiUrl: github.url,
    githubToken: TOKEN,
    webhookSecret: SECRET,
    retryDelaysMs: [50, 50],
    logger,
  });
  cloudWebhook = createWebhookHandler(() => stack.intake);
  // The log function as deployed: configured from its environment, here the stack's storage.
  for (const name of ENVIRONMENT) saved[name] = process.env[name];
  process.env.LAMBKIN_BUILDS_TABLE = stack.config.buildsTable;
  process.env.LAMBKIN_BUCKET = stack.config.bucket;
  process.env.AWS_ENDPOINT_URL_DYNAMODB = stack.file.endpoints.dynamodb;
  process.env.AWS_ENDPOINT_URL_S3 = stack.file.endpoints.s3;
  // The stack's storage answers only its own key, which a deployed function would not hold locally.
  process.env.AWS_ACCESS_KEY_ID = stack.file.credentials.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = stack.file.credentials.secretAccessKey;
  delete process.env.AWS_SESSION_TOKEN;
}, 60_000);

afterAll(async () => {
  for (const name of ENVIRONMENT) {
    if (saved[name] === undefined) delete process.env[name];
    else process.env[name] = saved[name];
  }
  await stack?.stop();
  await github.close();
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(gitDir, { recursive: true, force: true });
});

interface Answer {
  status: number;
  headers: Headers;
  body: string;
}

/** The request to the local server, redirects not followed. */
async function local(
  method: string,
  target: string,
  init: { headers?: Record<string, string>; body?: string } = {},
): Promise<Answer> {
  const response = await fetch(`${stack.file.publicUrl}${target}`, { method, redirect: 'manual', ...init });
  return { status: response.status, headers: response.headers, body: await response.text() };
}

/** The event API Gateway (HTTP API, payload 2.0) sends for the same request. */
function apiGatewayEvent(
  method: string,
  target: string,
  init: { headers?: Record<string, string>; body?: string } = {},
): HttpApiEvent {
  const [rawPath = '/', rawQueryString = ''] = target.split('?');
  const host = new URL(stack.file.publicUrl).host;
  const headers = {
    host,
    'user-agent': 'jest',
    'x-forwarded-proto': 'https',
    ...Object.fromEntries(
      Object.entries(init.headers ?? {}).map(([name, value]) => [name.toLowerCase(), value]),
    ),
  };
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath,
    rawQueryString,
    headers,
    ...(rawQueryString
      ? { queryStringParameters: Object.fromEntries(new URLSearchParams(rawQueryString)) }
      : {}),
    requestContext: {
      accountId: '123456789012',
      apiId: 'abc123',
      domainName: host,
      domainPrefix: 'abc123',
      http: { method, path: rawPath, protocol: 'HTTP/1.1', sourceIp: '192.0.2.1', userAgent: 'jest' },
      requestId: 'request-1',
      routeKey: '$default',
      stage: '$default',
      time: '01/Jan/2030:00:00:00 +0000',
      timeEpoch: 1_893_456_000_000,
    },
    ...(init.body !== undefined ? { body: init.body } : {}),
    isBase64Encoded: false,
  };
}

/** Redirects point at short-lived signed URLs: the same object, signed at its own moment. */
function withoutSignature(location: string): string {
  const url = new URL(location);
  return `${url.origin}${url.pathname}`;
}

async function download(location: string): Promise<string> {
  const response = await fetch(location);
  expect(response.status).toBe(200);
  return response.text();
}

/** The same status, every header the handler set, and the same body (or the same redirected object). */
async function expectSameAnswer(localAnswer: Answer, cloud: LambdaHttpResult): Promise<void> {
  expect(localAnswer.status).toBe(cloud.statusCode);
  for (const [name, value] of Object.entries(cloud.headers)) {
    if (name === 'location') {
      const location = localAnswer.headers.get('location') ?? '';
      expect(withoutSignature(location)).toBe(withoutSignature(value));
      expect(await download(location)).toBe(await download(value));
    } else {
      expect({ name, value: localAnswer.headers.get(name) }).toEqual({ name, value });
    }
  }
  expect(localAnswer.body).toBe(cloud.body);
}

async function sameWebhookAnswer(delivery: SignedDelivery, method = 'POST'): Promise<Answer> {
  const init =
    method === 'POST' ? { headers: delivery.headers, body: delivery.body } : { headers: delivery.headers };
  const localAnswer = await local(method, '/webhook', init);
  await expectSameAnswer(localAnswer, await cloudWebhook(apiGatewayEvent(method, '/webhook', init)));
  return localAnswer;
}

async function sameLogAnswer(method: string, target: string): Promise<Answer> {
  const localAnswer = await local(method, target);
  await expectSameAnswer(localAnswer, await cloudLogsHandler(apiGatewayEvent(method, target)));
  return localAnswer;
}

describe('the local stack and the cloud handlers', () => {
  let privateUrl: string;

  it('answer the same signed webhooks the same way', async () => {
    const push = await signedDelivery(SECRET, 'push', pushPayload({ repo: 'octo/parity', sha }));
    const queued = await local('POST', '/webhook', { headers: push.headers, body: push.body });
    expect(queued.status).toBe(202);
    expect(JSON.parse(queued.body)).toMatchObject({
      number: 1,
      url: `${stack.file.publicUrl}/builds/octo/parity/1`,
    });
    const hidden = await signedDelivery(
      SECRET,
      'push',
      pushPayload({ repo: 'octo/hidden', sha, private: true }),
    );
    const hiddenQueued = await local('POST', '/webhook', { headers: hidden.headers, body: hidden.body });
    privateUrl = (JSON.parse(hiddenQueued.body) as { url: string }).url;
    expect(privateUrl).toMatch(/\/builds\/octo\/hidden\/1\?token=[\w-]{20,}$/);
    await stack.idle(60_000);

    // A redelivery of each, once both builds ended: the same duplicate answer.
    expect(JSON.parse((await sameWebhookAnswer(push)).body)).toMatchObject({
      duplicate: true,
      state: 'success',
    });
    expect(JSON.parse((await sameWebhookAnswer(hidden)).body)).toMatchObject({ duplicate: true });
    expect(
      (await sameWebhookAnswer(await signedDelivery(SECRET, 'ping', examplePayload('ping')))).status,
    ).toBe(200);
    const forged = await signedDelivery(SECRET, 'push', pushPayload({ repo: 'octo/parity', sha }), {
      signature: 'wrong',
    });
    expect((await sameWebhookAnswer(forged)).status).toBe(401);
    const form = await signedDelivery(SECRET, 'ping', examplePayload('ping'), { contentType: 'form' });
    expect((await sameWebhookAnswer(form)).status).toBe(200);
    expect((await sameWebhookAnswer(push, 'GET')).status).toBe(405);
  }, 120_000);

  it('answer the same page, log, repository page and badge requests the same way', async () => {
    // Pages are answered at their stable link (their relative links resolve there); raw logs
    // redirect to a short-lived URL of the bucket.
    expect((await sameLogAnswer('GET', '/builds/octo/parity/1')).status).toBe(200);
    expect((await sameLogAnswer('GET', '/builds/octo/parity/1/log.txt')).status).toBe(302);
    expect((await sameLogAnswer('HEAD', '/builds/octo/parity/1')).status).toBe(200);
    expect((await sameLogAnswer('GET', '/builds/octo/parity')).status).toBe(200);
    expect((await sameLogAnswer('GET', '/builds/octo/parity/99')).status).toBe(404);
    expect((await sameLogAnswer('GET', '/builds/..%2F..%2Fetc/passwd/1')).status).toBe(404);
    expect((await sameLogAnswer('POST', '/builds/octo/parity/1')).status).toBe(405);
    expect((await sameLogAnswer('GET', '/badges/octo/parity.svg')).body).toContain(
      '<title>build: passing</title>',
    );
    expect((await sameLogAnswer('GET', '/badges/octo/parity.svg?branch=gone')).body).toContain(
      'build: unknown',
    );
    expect((await sameLogAnswer('HEAD', '/badges/octo/parity.svg')).body).toBe('');

    const { pathname, search } = new URL(privateUrl);
    expect((await sameLogAnswer('GET', `${pathname}${search}`)).status).toBe(200);
    expect((await sameLogAnswer('GET', `${pathname}/log.txt${search}`)).status).toBe(302);
    expect((await sameLogAnswer('GET', pathname)).status).toBe(404);
    expect((await sameLogAnswer('GET', '/builds/octo/hidden')).status).toBe(404);
    expect((await sameLogAnswer('GET', '/badges/octo/hidden.svg')).body).toContain('build: unknown');
  });

  it('differ in one page only: the local landing page at /builds, the link `lambkin dev` prints', async () => {
    const landing = await local('GET', '/builds');
    expect(landing.status).toBe(200);
    expect(landing.body).toContain('/builds/&lt;owner&gt;/&lt;repo&gt;/&lt;number&gt;');
    // The cloud's API has no route there, and the log route answers it as a junk path.
    expect((await cloudLogsHandler(apiGatewayEvent('GET', '/builds'))).statusCode).toBe(404);
  });

  it("serve a private repository's pages only with its token, and its link from the webhook works", async () => {
    const page = await fetch(privateUrl);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('octo/hidden');
    const { origin, pathname } = new URL(privateUrl);
    for (const url of [
      `${origin}${pathname}`,
      `${origin}${pathname}?token=guess`,
      `${origin}${pathname}/log.txt`,
    ]) {
      const refused = await fetch(url);
      expect({ url, status: refused.status }).toEqual({ url, status: 404 });
      expect(await refused.text()).not.toContain('octo/hidden');
    }
    expect((await fetch(`${origin}/builds/octo/hidden`)).status).toBe(404);
  });
});

describe('a webhook body past 25 MB', () => {
  it('is refused with 413 before the handler sees it, without holding the body in memory', async () => {
    const body = 30 * 1024 * 1024;
    const rejected = () => logger.entries.filter((entry) => entry.message === 'webhook rejected').length;
    const rejectedBefore = rejected();
    let peak = process.memoryUsage().rss;
    const before = peak;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 5);
    const answer = await postChunked(stack.file.endpoints.webhook, body);
    clearInterval(sampler);
    peak = Math.max(peak, process.memoryUsage().rss);

    expect(answer.status).toBe(413);
    // Generous: buffering the body whole (chunks, then one buffer, then a string) takes ~3 times it.
    // (How many bytes the client got to write is no measure here: past the 25 MB read, the loopback
    // socket's buffers can take the last 5 MB; tests/local/api-gateway-event.test.ts checks that.)
    expect(peak - before).toBeLessThan(body);
    expect(
      logger.entries.filter((entry) => entry.message === 'local server: request body too large'),
    ).toHaveLength(1);
    expect(rejected()).toBe(rejectedBefore);
  });
});
