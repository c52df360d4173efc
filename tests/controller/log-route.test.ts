/**
 * The cloud log route on real DynamoDB- and S3-compatible servers: pages are answered at their
 * stable link (their links are relative to it), every redirect is followed and must really download
 * the log; private builds answer exactly like unknown ones without the right token.
 */
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { LOG_KEYS, REPO_KEYS } from '../../src/core/protocol.js';
import type { BuildRecord, BuildRequest } from '../../src/core/build.js';
import {
  handleLogRequest,
  lastBytes,
  LINK_LIFETIME_SECONDS,
  MAX_INLINE_LOG_BYTES,
  MAX_INLINE_PAGE_BYTES,
  MAX_LINK_LIFETIME_SECONDS,
  WAITING_REFRESH_SECONDS,
  type LogRouteDependencies,
  type LogRouteRequest,
} from '../../src/controller/log-route.js';
import { s3ObjectExists } from '../../src/handlers/logs.js';
import type { HttpResponse } from '../../src/core/http.js';
import { createMemoryLogger, type MemoryLogger } from '../../src/core/logger.js';
import { DynamoBuildStore } from '../../src/store/builds.js';
import { S3LogStore } from '../../src/store/logs.js';
import { createTestStorage, storageBackends, uniqueName, type TestStorage } from '../support/storage.js';

const TOKEN = 'q7B3xY_s0m3-Unguessable_t0k3n';

function request(overrides: Partial<BuildRequest> = {}): BuildRequest {
  return {
    repo: 'octo/app',
    event: 'push',
    ref: 'refs/heads/main',
    sha: 'b'.repeat(40),
    branch: 'main',
    fork: false,
    privateRepo: false,
    trusted: true,
    author: 'octocat',
    deliveryId: 'delivery-logs',
    ...overrides,
  };
}

describe('lastBytes', () => {
  it('keeps short text as it is', () => {
    expect(lastBytes('one\ntwo\n', 100)).toBe('one\ntwo\n');
  });

  it('keeps the end from a whole line, behind a note of how much was left out', () => {
    const text = `${'a'.repeat(50)}\n${'b'.repeat(20)}\nlast line\n`;
    const kept = lastBytes(text, 25);
    expect(kept).toBe(
      '… the first 72 bytes of the log are left out while the build runs; ' +
        'this link serves the whole log once the build ends …\nlast line\n',
    );
  });

  it('never starts inside a multi-byte character', () => {
    const text = '✓'.repeat(100); // 3 bytes each, no line breaks
    const kept = lastBytes(text, 32);
    const body = kept.slice(kept.indexOf('…\n') + 2);
    expect(body).toBe('✓'.repeat(10));
    expect(kept).toContain('the first 270 bytes');
  });
});

describe.each(storageBackends())('log route on $name', (backend) => {
  let storage: TestStorage;
  let builds: DynamoBuildStore;
  let logger: MemoryLogger;
  let deps: LogRouteDependencies;
  const now = Date.now();

  beforeAll(async () => {
    storage = await createTestStorage(backend);
    builds = new DynamoBuildStore(storage.clients.documents, storage.buildsTable);
    logger = createMemoryLogger();
    deps = {
      builds,
      logs: new S3LogStore(storage.clients.s3, storage.bucket),
      objectExists: s3ObjectExists(storage.clients.s3, storage.bucket),
      logger,
      now: () => now,
    };
  });

  async function put(key: string, body: string, contentType = 'text/plain; charset=utf-8'): Promise<void> {
    await storage.clients.s3.send(
      new PutObjectCommand({
        Bucket: storage.bucket,
        Key: key,
        Body: Buffer.from(body),
        ContentType: contentType,
      }),
    );
  }

  /** A build of `repo` in `state`, private (with the test token) when asked. */
  async function build(
    repo: string,
    state: 'queued' | 'running' | 'success' | 'cancelled',
    options: { private?: boolean; logToken?: string | null; deadline?: number } = {},
  ): Promise<BuildRecord> {
    const number = await builds.allocateNumber(repo);
    const logToken =
      options.logToken === null ? undefined : (options.logToken ?? (options.private ? TOKEN : undefined));
    let record = await builds.putQueuedBuild(
      request({ repo, privateRepo: options.private ?? false }),
      number,
      {
        deadline: options.deadline ?? now + 20 * 60_000,
        ...(logToken ? { logToken } : {}),
      },
    );
    if (state === 'cancelled')
      return builds.transition(record, { from: 'queued', to: 'cancelled', reason: 'superseded' });
    if (state === 'queued') return record;
    record = await builds.transition(record, { from: 'queued', to: 'running' });
    if (state === 'running') return record;
    return builds.transition(record, { from: 'running', to: 'success', reason: 'passed' });
  }

  const pathOf = (record: BuildRecord, log = false) =>
    `/builds/${record.repo}/${record.number}${log ? '/log.txt' : ''}`;

  function get(path: string, query = '', method = 'GET'): Promise<HttpResponse> {
    return handleLogRequest(deps, { method, path, query } satisfies LogRouteRequest);
  }

  /** Follows a redirect the way a browser would, without credentials. */
  async function follow(
    response: HttpResponse,
  ): Promise<{ status: number; body: string; type: string | null }> {
    expect(response.statusCode).toBe(302);
    const location = response.headers['location'];
    expect(location).toMatch(/X-Amz-Signature=/);
    const downloaded = await fetch(location!);
    return {
      status: downloaded.status,
      body: await downloaded.text(),
      type: downloaded.headers.get('content-type'),
    };
  }

  /** A stored page answered at its stable link, as it is in the bucket. */
  function expectStoredPage(response: HttpResponse, body: string): void {
    expect(response).toEqual({
      statusCode: 200,
      headers: {
        'cache-control': 'no-store',
        'referrer-policy': 'no-referrer',
        'x-content-type-options': 'nosniff',
        'content-type': 'text/html; charset=utf-8',
        'content-security-policy':
          "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'",
      },
      body,
    });
  }

  const expiresOf = (response: HttpResponse) =>
    Number(new URL(response.headers['location'] ?? '').searchParams.get('X-Amz-Expires'));

  describe('a finished public build', () => {
    let done: BuildRecord;
    beforeAll(async () => {
      done = await build('octo/public', 'success');
      await put(
        LOG_KEYS.page(done.logPrefix),
        '<!DOCTYPE html><title>the page</title>',
        'text/html; charset=utf-8',
      );
      await put(LOG_KEYS.log(done.logPrefix), 'the whole log ✓\n');
    });

    it('answers the page itself at its stable link, without a token', async () => {
      expectStoredPage(await get(pathOf(done)), '<!DOCTYPE html><title>the page</title>');
    });

    it('redirects log.txt to the assembled log', async () => {
      const response = await get(pathOf(done, true));
      expect(expiresOf(response)).toBe(LINK_LIFETIME_SECONDS);
      expect(await follow(response)).toMatchObject({ status: 200, body: 'the whole log ✓\n' });
    });

    it('redirects the page link with a trailing slash to the one without, where its relative links resolve', async () => {
      const response = await get(`${pathOf(done)}/`, 'utm_source=x');
      expect(response.statusCode).toBe(302);
      const location = response.headers['location'] ?? '';
      const base = `https://ci.example.test${pathOf(done)}/`;
      expect(new URL(location, base).href).toBe(`https://ci.example.test${pathOf(done)}?utm_source=x`);
      expectStoredPage(await get(pathOf(done), 'utm_source=x'), '<!DOCTYPE html><title>the page</title>');
    });

    it('answers HEAD like GET, without a body', async () => {
      const head = await get(pathOf(done), '', 'HEAD');
      expect(head.statusCode).toBe(200);
      expect(head.body).toBe('');
      expect(head.headers['content-type']).toBe('text/html; charset=utf-8');
      const missing = await get('/builds/octo/public/999', '', 'HEAD');
      expect(missing.statusCode).toBe(404);
      expect(missing.body).toBe('');
      expect(missing.headers).toEqual((await get('/builds/octo/public/999')).headers);
    });

    it('refuses other methods', async () => {
      const response = await get(pathOf(done), '', 'POST');
      expect(response.statusCode).toBe(405);
      expect(response.headers['allow']).toBe('GET, HEAD');
    });
  });

  describe('a private build', () => {
    let secret: BuildRecord;
    let unknown: HttpResponse;
    beforeAll(async () => {
      secret = await build('octo/private', 'success', { private: true });
      await put(LOG_KEYS.page(secret.logPrefix), '<p>private page</p>', 'text/html; charset=utf-8');
      await put(LOG_KEYS.log(secret.logPrefix), 'private log\n');
      unknown = await get(`/builds/octo/private/${secret.number + 100}`, `token=${TOKEN}`);
    });

    it('serves the page and the log with the right token', async () => {
      const query = `token=${encodeURIComponent(TOKEN)}`;
      expectStoredPage(await get(pathOf(secret), query), '<p>private page</p>');
      expect(await follow(await get(pathOf(secret, true), query))).toMatchObject({
        status: 200,
        body: 'private log\n',
      });
    });

    it('answers a wrong, missing or repeated token exactly as an unknown build', async () => {
      expect(unknown.statusCode).toBe(404);
      expect(unknown.headers['content-type']).toBe('text/html; charset=utf-8');
      expect(unknown.headers['location']).toBeUndefined();
      for (const query of [
        '',
        'token=',
        `token=${TOKEN}x`,
        `token=${TOKEN.slice(0, -1)}`,
        `token=${TOKEN.toLowerCase()}`,
        `token=${TOKEN}&token=${TOKEN}`,
        `Token=${TOKEN}`,
      ]) {
        expect(await get(pathOf(secret), query)).toEqual(unknown);
        expect(await get(pathOf(secret, true), query)).toEqual(unknown);
      }
      expect(await get('/builds/nobody/nothing/1')).toEqual(unknown);
    });

    it('fails closed for a private build recorded without a token', async () => {
      const tokenless = await build('octo/private', 'success', { private: true, logToken: null });
      await put(LOG_KEYS.page(tokenless.logPrefix), '<p>x</p>', 'text/html');
      expect(await get(pathOf(tokenless))).toEqual(unknown);
      expect(await get(pathOf(tokenless), 'token=')).toEqual(unknown);
      expect(logger.entries).toContainEqual(
        expect.objectContaining({ level: 'warn', fields: { build: `octo/private#${tokenless.number}` } }),
      );
    });
  });

  it('answers junk and traversal paths with the same 404', async () => {
    const known = await build('octo/paths', 'success');
    await put(LOG_KEYS.page(known.logPrefix), 'page', 'text/html');
    await put(LOG_KEYS.tail(known.logPrefix), 'tail');
    // Records under dot names cannot come from GitHub; the route must not reach them either.
    const dotted = await build('../paths', 'queued');
    const notFound = await get('/builds/nobody/nothing/1');
    const n = known.number;
    for (const path of [
      '/',
      '/webhook',
      '/builds',
      '/builds/octo',
      '/builds/octo/paths/0',
      `/builds/octo/paths/0${n}`,
      `/builds/octo/paths/${n}x`,
      `/builds/octo/paths/-${n}`,
      '/builds/octo/paths/1234567890',
      `/builds/octo/paths/${n}/index.html`,
      `/builds/octo/paths/${n}/tail.txt`,
      `/builds/octo/paths/${n}/chunks/000001.txt`,
      `/builds/octo/paths/${n}/log.txt/`,
      `/builds/octo/paths/${n}/log.txt/x`,
      `/builds/octo/paths/${n}//`,
      `/builds/octo/paths/${n}/../${n}`,
      `/builds/../paths/${dotted.number}`,
      `/builds/../paths/${dotted.number}/log.txt`,
      `/builds/octo/../${n}`,
      `/builds/./paths/${n}`,
      `/builds/octo/../../logs/${n}`,
      `/builds/octo%2Fpaths/${n}`,
      `/builds/octo/paths%2F${n}`,
      `/builds/octo/pa ths/${n}`,
      `/builds/octo/paths/${n}\n`,
      `//builds/octo/paths/${n}`,
      `/builds/octo/paths/${n}?x`,
      `/BUILDS/octo/paths/${n}`,
      `/builds/octo/${'a'.repeat(101)}/${n}`,
    ]) {
      expect({ path, response: await get(path) }).toEqual({ path, response: notFound });
    }
    // The build itself is there: the 404s come from the paths.
    expect((await get(pathOf(known))).statusCode).toBe(200);
  });

  describe('a build that has not finished', () => {
    it('answers a queued build with a waiting page that refreshes itself', async () => {
      const queued = await build('octo/waiting', 'queued');
      for (const path of [pathOf(queued), pathOf(queued, true)]) {
        const response = await get(path);
        expect(response.statusCode).toBe(200);
        expect(response.headers).toMatchObject({
          'content-type': 'text/html; charset=utf-8',
          'cache-control': 'no-store',
          'referrer-policy': 'no-referrer',
        });
        expect(response.body).toContain(`<meta http-equiv="refresh" content="${WAITING_REFRESH_SECONDS}">`);
        expect(response.body).toContain('<strong>queued</strong>');
        expect(response.body).toContain(`octo/waiting #${queued.number}`);
      }
    });

    it('answers a build that ended without a log with a page that does not refresh', async () => {
      const cancelled = await build('octo/waiting', 'cancelled');
      const response = await get(pathOf(cancelled));
      expect(response.statusCode).toBe(200);
      expect(response.body).toContain('<strong>cancelled</strong>: superseded');
      expect(response.body).not.toContain('http-equiv="refresh"');
    });

    it('answers the running page at its stable link, which it reloads', async () => {
      const running = await build('octo/running', 'running', { deadline: now + 15 * 60_000 });
      await put(LOG_KEYS.page(running.logPrefix), '<p>running page</p>', 'text/html');
      expectStoredPage(await get(pathOf(running)), '<p>running page</p>');
    });

    it('redirects a page too large to answer to S3, valid until the build deadline, within bounds', async () => {
      const huge = `<p>${'x'.repeat(MAX_INLINE_PAGE_BYTES)}</p>`;
      const running = await build('octo/running', 'running', { deadline: now + 15 * 60_000 });
      await put(LOG_KEYS.page(running.logPrefix), huge, 'text/html');
      const response = await get(pathOf(running));
      expect(expiresOf(response)).toBe(15 * 60 + LINK_LIFETIME_SECONDS);
      expect((await follow(response)).body).toHaveLength(huge.length);

      const long = await build('octo/running', 'running', { deadline: now + 5 * 3600_000 });
      await put(LOG_KEYS.page(long.logPrefix), huge, 'text/html');
      expect(expiresOf(await get(pathOf(long)))).toBe(MAX_LINK_LIFETIME_SECONDS);
    }, 30_000);

    it('serves the log so far as text while log.txt does not exist yet', async () => {
      const running = await build('octo/running', 'running', { private: true });
      await put(LOG_KEYS.chunk(running.logPrefix, 1), 'step one ✓\n');
      await put(LOG_KEYS.chunk(running.logPrefix, 2), 'step two\n');
      const response = await get(pathOf(running, true), `token=${TOKEN}`);
      expect(response).toEqual({
        statusCode: 200,
        headers: {
          'content-type': 'text/plain; charset=utf-8',
          'cache-control': 'no-store',
          'referrer-policy': 'no-referrer',
          'x-content-type-options': 'nosniff',
        },
        body: 'step one ✓\nstep two\n',
      });
      const head = await get(pathOf(running, true), `token=${TOKEN}`, 'HEAD');
      expect(head).toEqual({ ...response, body: '' });
      expect((await get(pathOf(running, true), 'token=nope')).statusCode).toBe(404);
    });

    it('bounds the log it serves directly to its end', async () => {
      const running = await build('octo/running', 'running');
      const line = `${'x'.repeat(99)}\n`;
      const lines = Math.ceil((MAX_INLINE_LOG_BYTES * 1.5) / line.length);
      await put(LOG_KEYS.chunk(running.logPrefix, 1), line.repeat(lines - 1));
      await put(LOG_KEYS.chunk(running.logPrefix, 2), 'the very end\n');
      const response = await get(pathOf(running, true));
      expect(response.statusCode).toBe(200);
      expect(response.body).toMatch(/^… the first \d+ bytes of the log are left out while the build runs/);
      expect(response.body.endsWith(`${line}the very end\n`)).toBe(true);
      expect(Buffer.byteLength(response.body)).toBeLessThanOrEqual(MAX_INLINE_LOG_BYTES + 200);
      expect(Buffer.byteLength(response.body)).toBeGreaterThan(MAX_INLINE_LOG_BYTES - line.length);
    });
  });

  it('never presigns outside the build folder, even when the record says so', async () => {
    const running = await build('octo/odd', 'running');
    const moved = await builds.transition(running, {
      from: 'running',
      to: 'success',
      logPrefix: 'logs/octo/odd/caches/',
    });
    await put(LOG_KEYS.page(moved.logPrefix), 'not a page', 'text/html');
    const response = await get(pathOf(moved));
    expect(response.statusCode).toBe(500);
    expect(response.headers['location']).toBeUndefined();
    expect(response.body).not.toContain('caches');
    expect(logger.entries).toContainEqual(
      expect.objectContaining({ level: 'error', fields: { build: `octo/odd#${moved.number}` } }),
    );
  });

  describe("a repository's page of recent builds", () => {
    const repoPage = '<!DOCTYPE html><title>recent builds</title>';
    let noPage: HttpResponse;
    beforeAll(async () => {
      await build('octo/listed', 'success');
      await build('octo/listed', 'cancelled');
      await put(REPO_KEYS.page('octo/listed'), repoPage, 'text/html; charset=utf-8');
      noPage = await get('/builds/nobody/nothing');
    });

    it("answers a public repository's page at its link; with a trailing slash, redirects to that", async () => {
      expectStoredPage(await get('/builds/octo/listed'), repoPage);
      const slash = await get('/builds/octo/listed/');
      expect(slash.statusCode).toBe(302);
      expect(
        new URL(slash.headers['location'] ?? '', 'https://ci.example.test/builds/octo/listed/').href,
      ).toBe('https://ci.example.test/builds/octo/listed');
      const head = await get('/builds/octo/listed', '', 'HEAD');
      expect([head.statusCode, head.body]).toEqual([200, '']);
    });

    it('answers a private repository like one that has no page: 404, saying why', async () => {
      expect(noPage.statusCode).toBe(404);
      expect(noPage.headers['location']).toBeUndefined();
      expect(noPage.body).toContain('public repositories only');
      expect(noPage.body).toContain("open a build's own link instead");
      const secret = await build('octo/hidden', 'success', { private: true });
      await put(REPO_KEYS.page(secret.repo), '<p>links with tokens</p>', 'text/html; charset=utf-8');
      expect(await get('/builds/octo/hidden')).toEqual(noPage);
      expect(await get('/builds/octo/hidden', `token=${TOKEN}`)).toEqual(noPage);
    });

    it('stays closed once any listed build is private, even when the latest is public', async () => {
      await build('octo/turned', 'success', { private: true });
      await build('octo/turned', 'success');
      await put(REPO_KEYS.page('octo/turned'), '<p>an older private link</p>', 'text/html; charset=utf-8');
      expect(await get('/builds/octo/turned')).toEqual(noPage);
      // A build recorded with a token is private whatever its flag says.
      await build('octo/tokened', 'success', { logToken: TOKEN });
      await put(REPO_KEYS.page('octo/tokened'), '<p>x</p>', 'text/html; charset=utf-8');
      expect(await get('/builds/octo/tokened')).toEqual(noPage);
    });

    it('answers a public repository whose page is not written yet the same way', async () => {
      await build('octo/unpaged', 'queued');
      expect(await get('/builds/octo/unpaged')).toEqual(noPage);
    });

    it('refuses dot names and other methods', async () => {
      expect(await get('/builds/../listed')).toEqual(await get('/builds/nobody/nothing/1'));
      expect(await get('/builds/octo/..')).toEqual(await get('/builds/nobody/nothing/1'));
      expect((await get('/builds/octo/listed', '', 'POST')).statusCode).toBe(405);
    });
  });

  it('answers 500 and logs the cause when a store fails', async () => {
    const broken: LogRouteDependencies = {
      ...deps,
      builds: new DynamoBuildStore(storage.clients.documents, uniqueName('missing-table')),
    };
    const response = await handleLogRequest(broken, { method: 'GET', path: '/builds/octo/app/1', query: '' });
    expect(response.statusCode).toBe(500);
    expect(response.headers['cache-control']).toBe('no-store');
    expect(logger.entries.at(-1)).toMatchObject({
      level: 'error',
      message: 'log route: could not look up the build',
      fields: { build: 'octo/app#1', error: { name: 'ResourceNotFoundException' } },
    });
    const listing = await handleLogRequest(broken, { method: 'GET', path: '/builds/octo/app', query: '' });
    expect(listing.statusCode).toBe(500);
    expect(logger.entries.at(-1)).toMatchObject({
      level: 'error',
      message: "log route: could not serve the repository's page of recent builds",
      fields: { repo: 'octo/app', error: { name: 'ResourceNotFoundException' } },
    });
  });
});
