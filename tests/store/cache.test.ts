/**
 * The cache planner on real S3-compatible servers, with the lockfile read from the GitHub stand-in
 * serving a real git repository: keys, the existence check, and presigned URLs that really work
 * (a GET that 404s before the upload, a PUT the runner can use, no PUT for read-only builds).
 */
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createS3Client } from '../../src/aws/clients.js';
import { cacheKeyOf, currentRuntime, runtimeId } from '../../src/core/cache-key.js';
import { createGitHubClient } from '../../src/github/client.js';
import { readLockfileBlob } from '../../src/github/trees.js';
import { CacheStoreError, DEFAULT_CACHE_MAX_BYTES, S3CachePlanner } from '../../src/store/cache.js';
import {
  createGitRepo,
  startGitHubServer,
  type GitHubStandIn,
  type GitRepo,
} from '../support/github-server.js';
import { npmProject } from '../support/npm-projects.js';
import { createTestStorage, storageBackends, type TestStorage } from '../support/storage.js';

const TOKEN = 'ghp_cachePlanner000000000000000000000000';
let github: GitHubStandIn;
let withLockfile: GitRepo;
let withoutLockfile: GitRepo;

beforeAll(async () => {
  github = await startGitHubServer({ token: TOKEN });
  withLockfile = await createGitRepo(npmProject({ test: 'true' }));
  withoutLockfile = await createGitRepo(npmProject({ test: 'true' }, {}, { lockfile: false }));
  github.addRepository({ owner: 'octo', name: 'locked', gitDir: withLockfile.dir });
  github.addRepository({ owner: 'octo', name: 'loose', gitDir: withoutLockfile.dir });
});

afterAll(async () => {
  await github.close();
  await rm(withLockfile.dir, { recursive: true, force: true });
  await rm(withoutLockfile.dir, { recursive: true, force: true });
});

const lockfiles = () => {
  const octokit = createGitHubClient({ baseUrl: github.url, token: TOKEN });
  return { readLockfileBlob: (repo: string, sha: string) => readLockfileBlob(octokit, repo, sha) };
};

describe('cache keys', () => {
  it('name the repository, the runtime (Node major, platform, arch) and the lockfile blob', () => {
    const runtime = { nodeVersion: '20.11.1', platform: 'linux', arch: 'arm64' };
    expect(runtimeId(runtime)).toBe('node20-linux-arm64');
    expect(cacheKeyOf('octo/app', runtime, 'ab'.repeat(20), undefined, 'gzip')).toBe(
      `cache/octo/app/node20-linux-arm64/${'ab'.repeat(20)}.tar.gz`,
    );
    expect(runtimeId(currentRuntime())).toBe(
      `node${process.versions.node.split('.')[0]}-${process.platform}-${process.arch}`,
    );
  });
});

describe.each(storageBackends())('S3CachePlanner on $name', (backend) => {
  let storage: TestStorage;
  let planner: S3CachePlanner;

  beforeAll(async () => {
    storage = await createTestStorage(backend);
    planner = new S3CachePlanner(storage.clients.s3, storage.bucket, { lockfiles: lockfiles() });
  });

  it('has no cache for a commit without a lockfile', async () => {
    expect(await planner.locate({ repo: 'octo/loose', sha: withoutLockfile.sha })).toBeUndefined();
  });

  it('locates the key from the lockfile at the commit, stored or not', async () => {
    const location = await planner.locate({ repo: 'octo/locked', sha: withLockfile.sha });
    const lockfile = await lockfiles().readLockfileBlob('octo/locked', withLockfile.sha);
    expect(location).toEqual({
      key: cacheKeyOf('octo/locked', currentRuntime(), lockfile?.sha ?? ''),
      lockfileSha: lockfile?.sha,
      exists: false,
    });
    await storage.clients.s3.send(
      new PutObjectCommand({ Bucket: storage.bucket, Key: location?.key, Body: 'archive' }),
    );
    expect(await planner.locate({ repo: 'octo/locked', sha: withLockfile.sha })).toMatchObject({
      exists: true,
    });
  });

  it('presigns a GET (404 until stored) and, to write, a PUT that stores the archive', async () => {
    const location = {
      key: 'cache/octo/app/node20-linux-x64/1111.tar.gz',
      lockfileSha: '1111',
      exists: false,
    };
    const access = await planner.presign(location, undefined, { write: true, expiresInSeconds: 600 });
    expect(access).toMatchObject({
      key: location.key,
      lockfileSha: '1111',
      stored: false,
      maxBytes: DEFAULT_CACHE_MAX_BYTES,
      putHeaders: { 'if-none-match': '*' },
    });
    expect((await fetch(access.getUrl)).status).toBe(404);
    const body = Buffer.from('a cache archive');
    const put = await fetch(access.putUrl ?? '', { method: 'PUT', body, headers: access.putHeaders });
    expect(put.status).toBe(200);
    const got = await fetch(access.getUrl);
    expect(got.status).toBe(200);
    expect(Buffer.from(await got.arrayBuffer())).toEqual(body);
  });

  it('gives a read-only build (untrusted, or the key stored already) no PUT', async () => {
    const location = {
      key: 'cache/octo/app/node20-linux-x64/2222.tar.gz',
      lockfileSha: '2222',
      exists: true,
    };
    const access = await planner.presign(location, undefined, { write: false, expiresInSeconds: 600 });
    expect(access.putUrl).toBeUndefined();
    expect(access.putHeaders).toBeUndefined();
    expect(access.stored).toBe(true);
  });

  it('signs with the build’s own client when the controller passes one', async () => {
    const signer = new S3Client({
      region: 'us-east-1',
      endpoint: backend.s3Endpoint,
      forcePathStyle: true,
      credentials: {
        accessKeyId: 'ASIABUILDSCOPED',
        secretAccessKey: 'scoped-secret',
        sessionToken: 'token',
      },
    });
    const location = {
      key: 'cache/octo/app/node20-linux-x64/3333.tar.gz',
      lockfileSha: '3333',
      exists: false,
    };
    const access = await planner.presign(location, signer, { write: true, expiresInSeconds: 60 });
    for (const url of [access.getUrl, access.putUrl ?? '']) {
      const query = new URL(url).searchParams;
      expect(query.get('X-Amz-Credential')).toMatch(/^ASIABUILDSCOPED\//);
      expect(query.get('X-Amz-Expires')).toBe('60');
    }
  });

  it('refuses to presign a key outside cache/', async () => {
    await expect(
      planner.presign({ key: 'logs/octo/app/x', lockfileSha: 'x', exists: false }, undefined, {
        write: true,
        expiresInSeconds: 60,
      }),
    ).rejects.toBeInstanceOf(CacheStoreError);
  });
});

describe('S3CachePlanner faults', () => {
  let broken: Server;
  let endpoint: string;

  beforeAll(async () => {
    // A real server that answers every S3 call with 500.
    broken = createServer((_request, response) => {
      response.writeHead(500, { 'content-type': 'application/xml' });
      response.end(
        '<Error><Code>InternalError</Code><Message>We encountered an internal error.</Message></Error>',
      );
    });
    await new Promise<void>((resolve) => broken.listen(0, '127.0.0.1', resolve));
    endpoint = `http://127.0.0.1:${(broken.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise((resolve) => broken.close(resolve));
  });

  it('reports an S3 failure of the existence check as a CacheStoreError saying what to check', async () => {
    const s3 = createS3Client({ endpoints: { s3: endpoint } });
    const planner = new S3CachePlanner(s3, 'bucket', { lockfiles: lockfiles() });
    const error = await planner
      .locate({ repo: 'octo/locked', sha: withLockfile.sha })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(CacheStoreError);
    expect((error as Error).message).toMatch(
      /Could not look up the dependency cache s3:\/\/bucket\/cache\/octo\/locked\/.*LAMBKIN_BUCKET/,
    );
  });
});
