/**
 * The cache planner's Node.js tarballs (`locateNode`, `presignNode`) on real S3-compatible servers:
 * the key, the existence check, presigned URLs that really work, no PUT for a read-only build or a
 * key stored already, and the per-build signers: a grant of the node key lets the local stack's
 * per-build key (behind its storage proxy) read and write that key and nothing else, and the STS
 * session policy names exactly that key.
 */
import { HeadObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import { createS3Client } from '../../src/aws/clients.js';
import { grantsPolicy } from '../../src/aws/sts.js';
import { NODE_CACHE_PREFIX, NODE_TARBALL_MAX_BYTES, nodeCacheKey } from '../../src/core/node-version.js';
import type { NodeCacheLocation } from '../../src/core/ports.js';
import { EphemeralBuildSigner } from '../../src/local/ephemeral-signer.js';
import { StackCredentials } from '../../src/local/stack-credentials.js';
import { startStorageProxy } from '../../src/local/storage-proxy.js';
import type { RunningServer } from '../../src/local/storage-servers.js';
import { CacheStoreError, S3CachePlanner } from '../../src/store/cache.js';
import { sri } from '../support/fake-node.js';
import { createTestStorage, npmEmulators, storageBackends, type TestStorage } from '../support/storage.js';

/** Never asked: the Node.js methods need no lockfile. */
const lockfiles = {
  readLockfileBlob: () => Promise.reject(new Error('locateNode must not read a lockfile')),
};

/** A job's Node.js as the controller has it, with a tarball of its own. */
let nextPatch = 1;
function jobNode(arch: 'x64' | 'arm64' = 'x64') {
  const tarball = randomBytes(64);
  return { version: `22.11.${nextPatch++}`, arch, integrity: sri(tarball), tarball };
}

describe.each(storageBackends())('S3CachePlanner Node.js tarballs on $name', (backend) => {
  let storage: TestStorage;
  let planner: S3CachePlanner;

  beforeAll(async () => {
    storage = await createTestStorage(backend);
    planner = new S3CachePlanner(storage.clients.s3, storage.bucket, { lockfiles });
  });

  const store = (key: string, body: Buffer | string) =>
    storage.clients.s3.send(new PutObjectCommand({ Bucket: storage.bucket, Key: key, Body: body }));

  it('locates the tarball by version, arch and digest, stored or not', async () => {
    const node = jobNode('arm64');
    const location = await planner.locateNode(node);
    expect(location).toEqual({ key: nodeCacheKey(node.version, 'arm64', node.integrity), exists: false });
    expect(location.key).toMatch(/^cache\/_node\/node-22\.11\.\d+-linux-arm64-[0-9a-f]{128}\.tgz$/);
    await store(location.key, node.tarball);
    expect(await planner.locateNode(node)).toEqual({ key: location.key, exists: true });
    // Another digest of the same version is another key: a different tarball never meets this one.
    const other = { ...node, integrity: sri(Buffer.from('another tarball')) };
    expect(await planner.locateNode(other)).toMatchObject({ exists: false });
  });

  it('refuses to name a tarball without a sha512 integrity, an exact version or a known arch', async () => {
    const node = jobNode();
    for (const wrong of [
      { ...node, integrity: 'sha1-AAAA' },
      { ...node, version: '22' },
      { ...node, version: '../../octo/app' },
      { ...node, arch: 's390x' as 'x64' },
    ]) {
      await expect(planner.locateNode(wrong)).rejects.toBeInstanceOf(CacheStoreError);
    }
  });

  it('presigns a GET (404 until stored) and, to write, a PUT that stores the tarball', async () => {
    const node = jobNode();
    const location = await planner.locateNode(node);
    const access = await planner.presignNode(location, undefined, { write: true, expiresInSeconds: 600 });
    expect(access).toMatchObject({
      key: location.key,
      stored: false,
      maxBytes: NODE_TARBALL_MAX_BYTES,
      putHeaders: { 'if-none-match': '*' },
    });
    expect(new URL(access.putUrl ?? '').searchParams.get('X-Amz-SignedHeaders')).toContain('if-none-match');
    expect((await fetch(access.getUrl)).status).toBe(404);
    const put = await fetch(access.putUrl ?? '', {
      method: 'PUT',
      body: node.tarball,
      headers: access.putHeaders,
    });
    expect(put.status).toBe(200);
    const got = await fetch(access.getUrl);
    expect(got.status).toBe(200);
    expect(Buffer.from(await got.arrayBuffer())).toEqual(node.tarball);
    expect(await planner.locateNode(node)).toMatchObject({ exists: true });
  });

  it('gives no PUT to a read-only build, nor to any build once the tarball is stored', async () => {
    const node = jobNode();
    const missing = await planner.locateNode(node);
    const readOnly = await planner.presignNode(missing, undefined, { write: false, expiresInSeconds: 600 });
    expect(readOnly.putUrl).toBeUndefined();
    expect(readOnly.putHeaders).toBeUndefined();
    expect(readOnly.stored).toBe(false);

    await store(missing.key, node.tarball);
    const stored = await planner.locateNode(node);
    const trusted = await planner.presignNode(stored, undefined, { write: true, expiresInSeconds: 600 });
    expect(trusted.putUrl).toBeUndefined();
    expect(trusted.putHeaders).toBeUndefined();
    expect(trusted.stored).toBe(true);
    expect(Buffer.from(await (await fetch(trusted.getUrl)).arrayBuffer())).toEqual(node.tarball);
  });

  // s3rver ignores If-None-Match on a PUT; S3 (and moto) honour it.
  (backend.name === 'moto' ? it : it.skip)(
    'refuses the PUT when another build stored the tarball after the URL was signed (412)',
    async () => {
      const node = jobNode();
      const location = await planner.locateNode(node);
      const access = await planner.presignNode(location, undefined, { write: true, expiresInSeconds: 600 });
      await store(location.key, node.tarball);
      const put = await fetch(access.putUrl ?? '', {
        method: 'PUT',
        body: Buffer.from('a hostile replacement'),
        headers: access.putHeaders,
      });
      expect(put.status).toBe(412);
      expect(Buffer.from(await (await fetch(access.getUrl)).arrayBuffer())).toEqual(node.tarball);
    },
  );

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
    const location = await planner.locateNode(jobNode());
    const access = await planner.presignNode(location, signer, { write: true, expiresInSeconds: 60 });
    for (const url of [access.getUrl, access.putUrl ?? '']) {
      const query = new URL(url).searchParams;
      expect(query.get('X-Amz-Credential')).toMatch(/^ASIABUILDSCOPED\//);
      expect(query.get('X-Amz-Expires')).toBe('60');
    }
  });

  it('refuses to presign a key outside cache/_node/', async () => {
    const node = nodeCacheKey('22.11.0', 'x64', sri(Buffer.from('x')));
    for (const key of [
      'cache/octo/app/node22-linux-x64/1111.tar.gz',
      'logs/octo/app/builds/1/log.txt',
      `${NODE_CACHE_PREFIX}../octo/app/node22-linux-x64/1111.tar.gz`,
      node.replace(NODE_CACHE_PREFIX, 'cache/_nodes/'),
    ]) {
      await expect(
        planner.presignNode({ key, exists: false }, undefined, { write: true, expiresInSeconds: 60 }),
      ).rejects.toBeInstanceOf(CacheStoreError);
    }
  });
});

describe('a build grant of the Node.js key', () => {
  it('is exactly that key in the STS session policy, to read and to write', () => {
    const key = nodeCacheKey('22.11.0', 'x64', sri(Buffer.from('package')));
    const policy = JSON.parse(grantsPolicy('lambkin-bucket', { write: [key], read: [key] })) as {
      Statement: { Action: string[]; Resource: string[] }[];
    };
    expect(policy.Statement).toEqual([
      { Effect: 'Allow', Action: ['s3:PutObject'], Resource: [`arn:aws:s3:::lambkin-bucket/${key}`] },
      { Effect: 'Allow', Action: ['s3:GetObject'], Resource: [`arn:aws:s3:::lambkin-bucket/${key}`] },
    ]);
    // No wildcard: the grant reaches no other version, arch or digest.
    expect(JSON.stringify(policy)).not.toContain('*');
  });

  describe("with the local stack's per-build key, behind its storage proxy", () => {
    let storage: TestStorage;
    let proxy: RunningServer;
    let credentials: StackCredentials;
    let planner: S3CachePlanner;

    beforeAll(async () => {
      storage = await createTestStorage(npmEmulators());
      credentials = new StackCredentials();
      const target = { endpoint: npmEmulators().s3Endpoint, stop: () => Promise.resolve() };
      proxy = await startStorageProxy({ service: 's3', target, credentials });
      // The controller's own client: the stack's key, through the proxy.
      const own = createS3Client({
        endpoints: { s3: proxy.endpoint },
        credentials: credentials.stack,
        region: 'us-east-1',
      });
      planner = new S3CachePlanner(own, storage.bucket, { lockfiles });
    });

    afterAll(async () => {
      await proxy.stop();
    });

    const signerFor = (grants: { read: string[]; write: string[] }) =>
      new EphemeralBuildSigner(credentials, (key) =>
        createS3Client({ endpoints: { s3: proxy.endpoint }, credentials: key, region: 'us-east-1' }),
      ).forBuild({ repo: 'octo/app', number: 1 }, grants, 600);

    it('lets the build read and write that key, and no other', async () => {
      const node = jobNode();
      const location: NodeCacheLocation = await planner.locateNode(node);
      const signer = await signerFor({ read: [location.key], write: [location.key] });
      const access = await planner.presignNode(location, signer, { write: true, expiresInSeconds: 600 });
      expect(new URL(access.getUrl).searchParams.get('X-Amz-Credential')).toMatch(/^LKBUILD/);
      expect((await fetch(access.getUrl)).status).toBe(404);
      const put = await fetch(access.putUrl ?? '', {
        method: 'PUT',
        body: node.tarball,
        headers: access.putHeaders,
      });
      expect(put.status).toBe(200);
      expect(Buffer.from(await (await fetch(access.getUrl)).arrayBuffer())).toEqual(node.tarball);

      // The same key signs another version's tarball: the proxy refuses both ways.
      const other = await planner.locateNode(jobNode());
      const elsewhere = await planner.presignNode(other, signer, { write: true, expiresInSeconds: 600 });
      expect((await fetch(elsewhere.getUrl)).status).toBe(403);
      const refused = await fetch(elsewhere.putUrl ?? '', {
        method: 'PUT',
        body: Buffer.from('x'),
        headers: elsewhere.putHeaders,
      });
      expect(refused.status).toBe(403);
      await expect(
        storage.clients.s3.send(new HeadObjectCommand({ Bucket: storage.bucket, Key: other.key })),
      ).rejects.toMatchObject({ $metadata: { httpStatusCode: 404 } });
    });

    it('lets a build granted only the read of it read, never write', async () => {
      const node = jobNode();
      const location = await planner.locateNode(node);
      await storage.clients.s3.send(
        new PutObjectCommand({ Bucket: storage.bucket, Key: location.key, Body: node.tarball }),
      );
      const signer = await signerFor({ read: [location.key], write: [] });
      // A planner bug (a PUT for a read-only build) is still caught by the grant.
      const access = await planner.presignNode({ key: location.key, exists: false }, signer, {
        write: true,
        expiresInSeconds: 600,
      });
      expect(Buffer.from(await (await fetch(access.getUrl)).arrayBuffer())).toEqual(node.tarball);
      const put = await fetch(access.putUrl ?? '', {
        method: 'PUT',
        body: Buffer.from('a hostile replacement'),
        headers: access.putHeaders,
      });
      expect(put.status).toBe(403);
      expect(Buffer.from(await (await fetch(access.getUrl)).arrayBuffer())).toEqual(node.tarball);
    });
  });
});
