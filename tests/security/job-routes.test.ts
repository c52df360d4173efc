/**
 * Hostile job ids where they come in from outside: the builder's invocation (parseBuilderInvocation
 * refuses any `job` that is not a job id, before any record is read) and the log route (job pages
 * and logs under a build's link, on the storage emulators), where a private build's job needs the
 * build's token and answers exactly like an unknown build without it.
 */
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { handleLogRequest, type LogRouteDependencies } from '../../src/controller/log-route.js';
import type { BuildRecord } from '../../src/core/build.js';
import { jobLogPrefix } from '../../src/core/job-record.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import { InvalidBuilderInvocationError, LOG_KEYS, parseBuilderInvocation } from '../../src/core/protocol.js';
import type { HttpResponse } from '../../src/core/http.js';
import { s3ObjectExists } from '../../src/handlers/logs.js';
import { DynamoBuildStore } from '../../src/store/builds.js';
import { S3LogStore } from '../../src/store/logs.js';
import { testBuildRequest } from '../support/builds.js';
import { createTestStorage, type TestStorage } from '../support/storage.js';

const TOKEN = 'Zq8-private-build-t0ken_unguessable';

describe('parseBuilderInvocation', () => {
  const base = { kind: 'build', repo: 'octo/app', number: 3 };

  it.each([
    ['../../x'],
    ['..'],
    ['.'],
    ['node-22/../../../logs'],
    ['node-22..shard-1'],
    ['Node-22'],
    ['NODE'],
    ['x'.repeat(400)],
    ['a'.repeat(301)],
    [''],
    ['-leading-dash'],
    ['.hidden'],
    ['node 22'],
    ['node-22\n'],
    ['node%2f22'],
    ['node\u0000'],
    [22],
    [null],
    [['node-22']],
    [{ id: 'node-22' }],
  ])('refuses the job %j', (job) => {
    expect(() => parseBuilderInvocation({ ...base, job })).toThrow(InvalidBuilderInvocationError);
    expect(() => parseBuilderInvocation({ ...base, job })).toThrow(/"job" is .*not a job id/);
  });

  it('takes job ids as the plan makes them', () => {
    for (const job of [
      'default',
      'default.shard-2',
      'node-22.shard-2',
      'node-22.db-a.shard-10',
      'a'.repeat(300),
    ]) {
      expect(parseBuilderInvocation({ ...base, job })).toEqual({ ...base, job });
    }
    expect(parseBuilderInvocation(base)).toEqual(base);
  });
});

describe('the log route and job pages', () => {
  let storage: TestStorage;
  let builds: DynamoBuildStore;
  let deps: LogRouteDependencies;
  let secret: BuildRecord;
  let open: BuildRecord;

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

  async function endedBuild(repo: string, privateRepo: boolean): Promise<BuildRecord> {
    const number = await builds.allocateNumber(repo);
    const queued = await builds.putQueuedBuild(
      testBuildRequest({ repo, sha: 'c'.repeat(40), privateRepo }),
      number,
      {
        deadline: Date.now() + 60_000,
        ...(privateRepo ? { logToken: TOKEN } : {}),
      },
    );
    const running = await builds.transition(queued, { from: 'queued', to: 'running' });
    const done = await builds.transition(running, {
      from: 'running',
      to: 'success',
      reason: '2 jobs passed',
    });
    await put(LOG_KEYS.page(done.logPrefix), '<p>build page</p>', 'text/html; charset=utf-8');
    await put(LOG_KEYS.log(done.logPrefix), 'build log\n', 'text/plain; charset=utf-8');
    const job = jobLogPrefix(done.logPrefix, 'node-22.shard-1');
    await put(LOG_KEYS.page(job), '<p>job page</p>', 'text/html; charset=utf-8');
    await put(LOG_KEYS.log(job), 'job log\n', 'text/plain; charset=utf-8');
    return done;
  }

  beforeAll(async () => {
    storage = await createTestStorage();
    builds = new DynamoBuildStore(storage.clients.documents, storage.buildsTable);
    deps = {
      builds,
      logs: new S3LogStore(storage.clients.s3, storage.bucket),
      objectExists: s3ObjectExists(storage.clients.s3, storage.bucket),
      logger: createMemoryLogger(),
    };
    secret = await endedBuild('octo/private', true);
    open = await endedBuild('octo/public', false);
    // What a traversal would reach if it got through: another repository's and the cache's objects.
    await put(`logs/octo/public/builds/${open.number}/index.html`, '<p>build page</p>', 'text/html');
    await put('cache/octo/private/deps.tgz', 'cached', 'application/gzip');
  });

  const get = (path: string, query = ''): Promise<HttpResponse> =>
    handleLogRequest(deps, { method: 'GET', path, query });

  async function download(response: HttpResponse): Promise<string> {
    expect(response.statusCode).toBe(302);
    return (await fetch(response.headers['location'] ?? '')).text();
  }

  it("serves a public build's job page and log under the build's link", async () => {
    const page = await get(`/builds/octo/public/${open.number}/jobs/node-22.shard-1`);
    expect(page).toMatchObject({ statusCode: 200, body: '<p>job page</p>' });
    expect(await download(await get(`/builds/octo/public/${open.number}/jobs/node-22.shard-1/log.txt`))).toBe(
      'job log\n',
    );
  });

  it("needs the build's token for a private build's job, and answers like an unknown build without it", async () => {
    const path = `/builds/octo/private/${secret.number}/jobs/node-22.shard-1`;
    const unknown = await get(
      `/builds/octo/private/${secret.number + 100}/jobs/node-22.shard-1`,
      `token=${TOKEN}`,
    );
    expect(unknown.statusCode).toBe(404);
    for (const query of ['', 'token=', `token=${TOKEN}x`, `token=${TOKEN.toUpperCase()}`]) {
      expect(await get(path, query)).toEqual(unknown);
      expect(await get(`${path}/log.txt`, query)).toEqual(unknown);
    }
    expect(await get(path, `token=${TOKEN}`)).toMatchObject({ statusCode: 200, body: '<p>job page</p>' });
    expect(await download(await get(`${path}/log.txt`, `token=${TOKEN}`))).toBe('job log\n');
  });

  it.each([
    '/jobs/..%2f..',
    '/jobs/..%2F..%2Fcache',
    '/jobs/..',
    '/jobs/../..',
    '/jobs/../../../../cache/octo/private',
    '/jobs/.',
    '/jobs/node-22.shard-1/../../..',
    '/jobs/node-22..shard-1',
    '/jobs/%2e%2e',
    '/jobs/Node-22',
    `/jobs/${'a'.repeat(400)}`,
    '/jobs/',
    '/jobs',
    '/jobs/node-22.shard-1/log.txt/..',
    '/jobs/node-22.shard-1/index.html',
  ])('refuses /builds/octo/public/N%s', async (suffix) => {
    const response = await get(`/builds/octo/public/${open.number}${suffix}`, 'token=x');
    expect(response.statusCode).toBe(404);
    expect(response.headers['location']).toBeUndefined();
    expect(response.body).not.toContain('page</p>');
  });
});
