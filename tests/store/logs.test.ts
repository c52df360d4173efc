/**
 * The controller's log store on real S3-compatible servers: the upload form's policy, assembling the
 * log from whatever chunks exist, pages, badges, latest pointers and download URLs.
 */
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { LOG_KEYS, REPO_KEYS } from '../../src/core/protocol.js';
import { LogStoreError, S3LogStore } from '../../src/store/logs.js';
import { createS3Client } from '../../src/aws/clients.js';
import { createTestStorage, storageBackends, uniqueName, type TestStorage } from '../support/storage.js';

describe.each(storageBackends())('S3LogStore on $name', (backend) => {
  let storage: TestStorage;
  let store: S3LogStore;
  let builds = 0;

  beforeAll(async () => {
    storage = await createTestStorage(backend);
    store = new S3LogStore(storage.clients.s3, storage.bucket);
  });

  /** A fresh build prefix per test, so tests share the bucket without seeing each other's objects. */
  function nextPrefix(repo = 'octo/app'): string {
    builds++;
    return `logs/${repo}/builds/${builds}/`;
  }

  async function put(key: string, body: string): Promise<void> {
    await storage.clients.s3.send(
      new PutObjectCommand({ Bucket: storage.bucket, Key: key, Body: body, ContentType: 'text/plain' }),
    );
  }

  async function head(key: string): Promise<{ body: string; contentType?: string; cacheControl?: string }> {
    const response = await storage.clients.s3.send(
      new GetObjectCommand({ Bucket: storage.bucket, Key: key }),
    );
    return {
      body: (await response.Body?.transformToString('utf-8')) ?? '',
      ...(response.ContentType ? { contentType: response.ContentType } : {}),
      ...(response.CacheControl ? { cacheControl: response.CacheControl } : {}),
    };
  }

  describe('presignLogUpload', () => {
    it('limits the form to the build prefix, the size and text types, with no fixed key', async () => {
      const logPrefix = nextPrefix();
      const before = Date.now();
      const post = await store.presignLogUpload(
        { repo: 'octo/app', number: builds, logPrefix },
        { expiresInSeconds: 900, maxObjectBytes: 5 * 1024 * 1024 },
      );
      expect(post.keyPrefix).toBe(logPrefix);
      expect(post.maxObjectBytes).toBe(5 * 1024 * 1024);
      expect(post.expiresAt).toBeGreaterThanOrEqual(before + 900_000);
      expect(post.expiresAt).toBeLessThanOrEqual(Date.now() + 900_000);
      expect(new URL(post.url).pathname).toContain(storage.bucket);
      expect(Object.keys(post.fields).map((name) => name.toLowerCase())).not.toContain('key');
      expect(JSON.stringify(post.fields)).not.toContain('${filename}');
      const policy = JSON.parse(Buffer.from(post.fields.Policy!, 'base64').toString('utf8')) as {
        expiration: string;
        conditions: unknown[];
      };
      // The policy's expiration is whole seconds (and the signer's clock may round once more).
      expect(Date.parse(policy.expiration)).toBeGreaterThan(before + 898_000);
      expect(policy.conditions).toEqual(
        expect.arrayContaining([
          ['starts-with', '$key', logPrefix],
          ['content-length-range', 0, 5 * 1024 * 1024],
          ['starts-with', '$Content-Type', 'text/'],
          { bucket: storage.bucket },
          { 'Cache-Control': 'no-cache' },
        ]),
      );
      // No exact-key condition: the runner names each object itself.
      expect(policy.conditions.some((entry) => !Array.isArray(entry) && 'key' in (entry as object))).toBe(
        false,
      );
      // Every field the runner sends besides key, Content-Type, file and the signature is in the policy.
      for (const [name, value] of Object.entries(post.fields)) {
        if (['Policy', 'X-Amz-Signature'].includes(name)) continue;
        expect(policy.conditions).toContainEqual({ [name]: value });
      }
    });

    it('refuses a prefix that is not the build folder', async () => {
      for (const logPrefix of [
        'logs/octo/app/builds/1',
        'logs/octo/app/builds/12/',
        'logs/octo/app/',
        'logs/other/repo/builds/1/',
        '',
      ]) {
        await expect(
          store.presignLogUpload(
            { repo: 'octo/app', number: 1, logPrefix },
            { expiresInSeconds: 60, maxObjectBytes: 10 },
          ),
        ).rejects.toThrow(LogStoreError);
      }
      await expect(
        store.presignLogUpload(
          { repo: 'octo/app', number: 1, logPrefix: 'logs/octo/app/builds/1/' },
          { expiresInSeconds: 0, maxObjectBytes: 10 },
        ),
      ).rejects.toThrow(/1 s to 7 days/);
    });
  });

  describe('readLog and finalizeLog', () => {
    it('has nothing for a build that uploaded nothing, and finalizes it as an empty log', async () => {
      const logPrefix = nextPrefix();
      expect(await store.readLog(logPrefix)).toBeUndefined();
      expect(await store.finalizeLog(logPrefix)).toBe('');
      expect((await head(LOG_KEYS.log(logPrefix))).body).toBe('');
      expect(await store.readLog(logPrefix)).toBe('');
    });

    it('reads the chunks so far while running, then assembles log.txt = chunks + tail', async () => {
      const logPrefix = nextPrefix();
      await put(LOG_KEYS.chunk(logPrefix, 1), 'one\n');
      await put(LOG_KEYS.chunk(logPrefix, 2), 'two\n');
      expect(await store.readLog(logPrefix)).toBe('one\ntwo\n');
      await put(LOG_KEYS.tail(logPrefix), '… 1 KiB of log truncated here …\nlast\n');
      expect(await store.readLog(logPrefix)).toBe('one\ntwo\n… 1 KiB of log truncated here …\nlast\n');

      const text = await store.finalizeLog(logPrefix);
      expect(text).toBe('one\ntwo\n… 1 KiB of log truncated here …\nlast\n');
      const object = await head(LOG_KEYS.log(logPrefix));
      expect(object.body).toBe(text);
      expect(object.contentType).toBe('text/plain; charset=utf-8');
      expect(object.cacheControl).toBe('no-cache');
      // Once finalized, log.txt is what is read.
      await put(LOG_KEYS.chunk(logPrefix, 3), 'late\n');
      expect(await store.readLog(logPrefix)).toBe(text);
    });

    it('is idempotent', async () => {
      const logPrefix = nextPrefix();
      await put(LOG_KEYS.chunk(logPrefix, 1), 'héllo ✓\n');
      const first = await store.finalizeLog(logPrefix);
      const second = await store.finalizeLog(logPrefix);
      expect(second).toBe(first);
      expect((await head(LOG_KEYS.log(logPrefix))).body).toBe('héllo ✓\n');
    });

    it('assembles whatever a runner that died mid-build uploaded, and says where parts are missing', async () => {
      const logPrefix = nextPrefix();
      await put(LOG_KEYS.chunk(logPrefix, 1), 'started\n');
      await put(LOG_KEYS.chunk(logPrefix, 2), 'compiling');
      await put(LOG_KEYS.chunk(logPrefix, 4), 'linking\n');
      expect(await store.finalizeLog(logPrefix)).toBe(
        'started\ncompiling\n… part 3 of the log could not be found …\nlinking\n',
      );
    });

    it('orders chunks by number across list pages and ignores foreign objects under chunks/', async () => {
      const paging = new S3LogStore(storage.clients.s3, storage.bucket, { listPageSize: 2 });
      const logPrefix = nextPrefix();
      // Uploaded out of order, so listing order and upload order differ.
      for (const index of [5, 3, 1, 4, 2]) await put(LOG_KEYS.chunk(logPrefix, index), `${index}\n`);
      await put(`${LOG_KEYS.chunksPrefix(logPrefix)}evil.html`, '<script>alert(1)</script>');
      await put(`${LOG_KEYS.chunksPrefix(logPrefix)}000006.txt.bak`, 'not a chunk');
      expect(await paging.finalizeLog(logPrefix)).toBe('1\n2\n3\n4\n5\n');
    });

    it('stops reading parts past its memory bound', async () => {
      const bounded = new S3LogStore(storage.clients.s3, storage.bucket, { maxAssembledBytes: 10 });
      const logPrefix = nextPrefix();
      await put(LOG_KEYS.chunk(logPrefix, 1), 'aaaaaaaaaaaa');
      await put(LOG_KEYS.chunk(logPrefix, 2), 'never read\n');
      await put(LOG_KEYS.tail(logPrefix), 'the end\n');
      const text = await bounded.finalizeLog(logPrefix);
      expect(text).toBe(
        'aaaaaaaaaaaa\n… the rest of the log was not read: its parts exceed 10 bytes …\nthe end\n',
      );
    });
  });

  describe('pages, badges and pointers', () => {
    it('writes the page as no-cache HTML', async () => {
      const logPrefix = nextPrefix();
      await store.putPage(logPrefix, '<!doctype html><p>hi</p>');
      expect(await head(LOG_KEYS.page(logPrefix))).toEqual({
        body: '<!doctype html><p>hi</p>',
        contentType: 'text/html; charset=utf-8',
        cacheControl: 'no-cache',
      });
      expect(await store.getObjectText(LOG_KEYS.page(logPrefix))).toBe('<!doctype html><p>hi</p>');
    });

    it('writes badges per branch as no-cache SVG', async () => {
      await store.putBadge('octo/app', 'feature/x', '<svg/>');
      const object = await head(REPO_KEYS.badge('octo/app', 'feature/x'));
      expect(object).toEqual({ body: '<svg/>', contentType: 'image/svg+xml', cacheControl: 'no-cache' });
      expect(REPO_KEYS.badge('octo/app', 'feature/x')).toBe('logs/octo/app/branches/feature%2Fx/badge.svg');
    });

    it('writes the latest pointer for the repo and, with a branch, for the branch', async () => {
      const pointer = {
        number: 7,
        state: 'success',
        url: 'https://ci.example/7',
        sha: 'a'.repeat(40),
        at: 1,
      };
      await store.putLatest('octo/latest', 'main', pointer);
      expect(JSON.parse(await readText(REPO_KEYS.latest('octo/latest')))).toEqual(pointer);
      expect(JSON.parse(await readText(REPO_KEYS.branchLatest('octo/latest', 'main')))).toEqual(pointer);

      const tagBuild = { ...pointer, number: 8 };
      await store.putLatest('octo/latest', undefined, tagBuild);
      expect(JSON.parse(await readText(REPO_KEYS.latest('octo/latest')))).toEqual(tagBuild);
      expect(JSON.parse(await readText(REPO_KEYS.branchLatest('octo/latest', 'main')))).toEqual(pointer);
    });

    async function readText(key: string): Promise<string> {
      const text = await store.getObjectText(key);
      if (text === undefined) throw new Error(`${key} is missing`);
      return text;
    }
  });

  describe('getObjectText and presignGet', () => {
    it('answers undefined for a missing object, and a typed error for a missing bucket', async () => {
      expect(await store.getObjectText('logs/nothing/here.txt')).toBeUndefined();
      const s3 = createS3Client({ endpoints: { s3: backend.s3Endpoint } });
      const bucket = uniqueName('gone').toLowerCase();
      const missing = new S3LogStore(s3, bucket);
      await expect(missing.getObjectText('logs/x.txt')).rejects.toThrow(LogStoreError);
      await expect(missing.getObjectText('logs/x.txt')).rejects.toThrow(/NoSuchBucket.*LAMBKIN_BUCKET/s);
      await expect(missing.putPage('logs/octo/app/builds/1/', 'x')).rejects.toThrow(LogStoreError);
    });

    it('presigns a GET that serves the object without credentials', async () => {
      const logPrefix = nextPrefix();
      await put(LOG_KEYS.log(logPrefix), 'the log ✓\n');
      const url = await store.presignGet(LOG_KEYS.log(logPrefix), 60);
      expect(url).toContain('X-Amz-Signature=');
      const response = await fetch(url);
      expect(response.status).toBe(200);
      expect(await response.text()).toBe('the log ✓\n');
    });
  });

  it('reports S3 failures as LogStoreError saying what to check', async () => {
    const s3 = createS3Client({ endpoints: { s3: backend.s3Endpoint } });
    const bucket = uniqueName('deleted').toLowerCase();
    const gone = new S3LogStore(s3, bucket);
    await expect(gone.finalizeLog('logs/octo/app/builds/1/')).rejects.toThrow(
      /Could not list the log chunks under s3:\/\/.*LAMBKIN_BUCKET/s,
    );
  });
});
