/**
 * The local log viewer's badges over real HTTP, on the DynamoDB-compatible loopback server: the
 * same answers as the cloud route (it serves them through the route's own code).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { BuildRequest } from '../../src/core/build.js';
import { createLogViewer } from '../../src/local/log-viewer.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import { DynamoBuildStore } from '../../src/store/builds.js';
import { S3LogStore } from '../../src/store/logs.js';
import { testBuildRequest } from '../support/builds.js';
import { createTestStorage, type TestStorage } from '../support/storage.js';

let storage: TestStorage;
let builds: DynamoBuildStore;
let server: Server;
let base: string;
let badgeToken: string;

async function finished(
  repo: string,
  state: 'success' | 'failure',
  overrides: Partial<BuildRequest> = {},
): Promise<void> {
  const number = await builds.allocateNumber(repo);
  const queued = await builds.putQueuedBuild(
    testBuildRequest({ repo, sha: String(number).padStart(40, '0'), ...overrides }),
    number,
    { deadline: Date.now() + 60_000, ...(overrides.privateRepo ? { logToken: 'log-token-of-a-build' } : {}) },
  );
  const running = await builds.transition(queued, { from: 'queued', to: 'running' });
  await builds.transition(running, { from: 'running', to: state });
}

beforeAll(async () => {
  storage = await createTestStorage();
  builds = new DynamoBuildStore(storage.clients.documents, storage.buildsTable);
  const logs = new S3LogStore(storage.clients.s3, storage.bucket);
  server = createServer(
    createLogViewer({
      builds,
      logs,
      s3: storage.clients.s3,
      bucket: storage.bucket,
      logger: createMemoryLogger(),
    }),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  await finished('octo/local', 'success');
  await finished('octo/local', 'failure', { branch: 'wip', ref: 'refs/heads/wip' });
  await finished('octo/local-private', 'success', { privateRepo: true });
  badgeToken = await builds.ensureBadgeToken('octo/local-private');
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

async function wordAt(path: string): Promise<string | undefined> {
  const response = await fetch(`${base}${path}`);
  expect(response.status).toBe(200);
  return /<title>build: ([a-z]+)<\/title>/.exec(await response.text())?.[1];
}

describe('badges of the local log viewer', () => {
  it('answers 200 image/svg+xml with a short cache lifetime', async () => {
    const response = await fetch(`${base}/badges/octo/local.svg`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('image/svg+xml');
    expect(response.headers.get('cache-control')).toBe('max-age=0, no-cache');
    expect(await response.text()).toContain('<title>build: passing</title>');
  });

  it('shows a branch, and unknown for repositories and branches it does not know', async () => {
    expect(await wordAt('/badges/octo/local.svg?branch=wip')).toBe('failing');
    expect(await wordAt('/badges/octo/local.svg?branch=gone')).toBe('unknown');
    expect(await wordAt('/badges/nobody/nothing.svg')).toBe('unknown');
  });

  it("shows a private repository's badge only with its badge token", async () => {
    expect(await wordAt('/badges/octo/local-private.svg')).toBe('unknown');
    expect(await wordAt('/badges/octo/local-private.svg?token=log-token-of-a-build')).toBe('unknown');
    expect(await wordAt(`/badges/octo/local-private.svg?token=${encodeURIComponent(badgeToken)}`)).toBe(
      'passing',
    );
  });

  it('answers HEAD with the headers only, other methods with 405, other paths with 404', async () => {
    const head = await fetch(`${base}/badges/octo/local.svg`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-type')).toBe('image/svg+xml');
    expect(await head.text()).toBe('');
    const post = await fetch(`${base}/badges/octo/local.svg`, { method: 'POST' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
    expect((await fetch(`${base}/badges/octo/local`)).status).toBe(404);
  });
});
