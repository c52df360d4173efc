/**
 * The storage proxy's presigned DELETE and conditional PUT, which a CodeBuild runner uses: it spends
 * its input with a presigned DELETE and writes its outcome once (If-None-Match: *). A build's key
 * deletes only what it was granted, and a second outcome is refused with S3's 412.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { createS3Client } from '../../src/aws/clients.js';
import { StackCredentials } from '../../src/local/stack-credentials.js';
import { startGuardedStorage } from '../../src/local/storage-proxy.js';

const BUCKET = 'proxy-test';
let storage: Awaited<ReturnType<typeof startGuardedStorage>>;
let directory: string;
let stackS3: S3Client;
let buildS3: S3Client;

beforeAll(async () => {
  directory = mkdtempSync(join(tmpdir(), 'lambkin-proxy-test-'));
  const credentials = new StackCredentials();
  storage = await startGuardedStorage({ credentials, s3Directory: directory });
  const endpoints = { s3: storage.s3.endpoint };
  stackS3 = createS3Client({ region: 'us-east-1', credentials: credentials.stack, endpoints });
  buildS3 = createS3Client({
    region: 'us-east-1',
    credentials: credentials.issueBuildKey(60_000, {
      read: ['runner-input/a/'],
      write: ['runner-input/a/', 'outcome/a/'],
    }),
    endpoints,
  });
  await stackS3.send(new CreateBucketCommand({ Bucket: BUCKET }));
});

afterAll(async () => {
  stackS3.destroy();
  buildS3.destroy();
  await storage.stop();
  rmSync(directory, { recursive: true, force: true });
});

async function exists(key: string): Promise<boolean> {
  try {
    await stackS3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
    return true;
  } catch (error) {
    if ((error as Error).name === 'NoSuchKey') return false;
    throw error;
  }
}

test("a build's presigned DELETE removes a granted object and nothing else", async () => {
  for (const key of ['runner-input/a/input.json', 'runner-input/b/input.json'])
    await stackS3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: '{}' }));
  const granted = await getSignedUrl(
    buildS3,
    new DeleteObjectCommand({ Bucket: BUCKET, Key: 'runner-input/a/input.json' }),
  );
  expect((await fetch(granted, { method: 'DELETE' })).status).toBe(204);
  expect(await exists('runner-input/a/input.json')).toBe(false);

  const other = await getSignedUrl(
    buildS3,
    new DeleteObjectCommand({ Bucket: BUCKET, Key: 'runner-input/b/input.json' }),
  );
  expect((await fetch(other, { method: 'DELETE' })).status).toBe(403);
  expect(await exists('runner-input/b/input.json')).toBe(true);
  // A URL signed for DELETE does not do anything else, nor another method with it.
  expect((await fetch(granted, { method: 'POST', body: 'x' })).status).toBe(403);
});

test('a conditional PUT (If-None-Match: *) writes once; the second hears 412', async () => {
  const url = await getSignedUrl(
    buildS3,
    new PutObjectCommand({ Bucket: BUCKET, Key: 'outcome/a/result.json', IfNoneMatch: '*' }),
    { signableHeaders: new Set(['if-none-match']) },
  );
  const put = (body: string) => fetch(url, { method: 'PUT', headers: { 'if-none-match': '*' }, body });
  expect((await put('{"first":true}')).status).toBe(200);
  const second = await put('{"second":true}');
  expect(second.status).toBe(412);
  expect(await second.text()).toContain('PreconditionFailed');
  const object = await stackS3.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'outcome/a/result.json' }));
  expect(await object.Body!.transformToString()).toBe('{"first":true}');
  // Without the header, the URL no longer matches its signature: refused, the object kept.
  expect((await fetch(url, { method: 'PUT', body: '{"third":true}' })).status).toBe(403);
});
