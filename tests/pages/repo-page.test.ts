/**
 * The page of a repository's recent builds: what it lists, how it escapes what builds carry, that
 * every state change refreshes it in the bucket, and that the local log viewer serves it.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { renderRepoPage } from '../../src/pages/repo-page.js';
import { REPO_KEYS } from '../../src/core/protocol.js';
import type { BuildRecord } from '../../src/core/build.js';
import { createLogViewer } from '../../src/local/log-viewer.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import { BuildNotifier, observeBuildStore } from '../../src/notify/observer.js';
import { DynamoBuildStore } from '../../src/store/builds.js';
import { S3LogStore } from '../../src/store/logs.js';
import { DynamoSettingsStore } from '../../src/store/settings.js';
import { testBuildRequest } from '../support/builds.js';
import { createTestStorage, type TestStorage } from '../support/storage.js';

const HOSTILE_BRANCH = `"><script>alert('branch')</script>`;
const HOSTILE_TITLE = `<img src=x onerror="alert(1)"> & <a href="javascript:alert(2)">click</a>`;

function record(overrides: Partial<BuildRecord> & Pick<BuildRecord, 'number' | 'state'>): BuildRecord {
  return {
    ...testBuildRequest({ repo: 'octo/page', sha: 'abcdef1234567890abcdef1234567890abcdef12' }),
    queuedAt: 1_700_000_000_000,
    deadline: 1_700_000_600_000,
    logPrefix: `logs/octo/page/builds/${overrides.number}/`,
    events: [],
    ...overrides,
  };
}

describe('renderRepoPage', () => {
  it('lists each build: number and link, state, branch or PR, commit, author, duration', () => {
    const html = renderRepoPage({
      repo: 'octo/page',
      builds: [
        record({ number: 3, state: 'running', startedAt: 1_700_000_001_000 }),
        record({
          number: 2,
          state: 'failure',
          pr: 7,
          branch: 'topic',
          commitTitle: 'Fix the adder',
          startedAt: 1_700_000_001_000,
          endedAt: 1_700_000_013_300,
        }),
        record({ number: 1, state: 'success', startedAt: 1_700_000_000_000, endedAt: 1_700_000_125_000 }),
      ],
      linkOf: (build) => `https://ci.example.test/builds/octo/page/${build.number}`,
      now: 1_700_000_011_000,
    });
    expect(html).toContain('<a href="https://ci.example.test/builds/octo/page/2">#2</a>');
    expect(html).toMatch(/<span class="pill"[^>]*>failed<\/span>/);
    expect(html).toContain('PR #7 <span class="muted">topic</span>');
    expect(html).toContain('<code>abcdef1</code> Fix the adder');
    expect(html).toContain('octocat');
    expect(html).toContain('12.3 s');
    expect(html).toContain('2 min 05 s');
    expect(html).toContain('10.0 s so far');
    expect(html).toContain("default-src 'none'");
  });

  it('escapes hostile branch names and commit titles, and links only to web URLs', () => {
    const html = renderRepoPage({
      repo: 'octo/page',
      builds: [
        record({
          number: 1,
          state: 'success',
          branch: HOSTILE_BRANCH,
          commitTitle: HOSTILE_TITLE,
          author: '<b>x</b>',
        }),
      ],
      linkOf: () => 'javascript:alert(3)',
    });
    expect(html).not.toContain('<script>');
    expect(html).not.toContain('<img');
    expect(html).not.toContain('<a href="javascript');
    expect(html).not.toContain('<b>x</b>');
    expect(html).toContain('&quot;&gt;&lt;script&gt;alert(&#39;branch&#39;)&lt;/script&gt;');
    expect(html).toContain('&lt;img src=x onerror=&quot;alert(1)&quot;&gt; &amp;');
    expect(html).toContain('<td>#1</td>');
  });

  it('says so when there are no builds', () => {
    expect(renderRepoPage({ repo: 'octo/none', builds: [], linkOf: () => undefined })).toContain(
      'No builds yet.',
    );
  });
});

describe('the page in the bucket', () => {
  let storage: TestStorage;
  let builds: DynamoBuildStore;
  let logs: S3LogStore;
  let server: Server;
  let base: string;

  beforeAll(async () => {
    storage = await createTestStorage();
    builds = new DynamoBuildStore(storage.clients.documents, storage.buildsTable);
    logs = new S3LogStore(storage.clients.s3, storage.bucket);
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
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('is refreshed on every state change, and served by the local log viewer', async () => {
    const observed = observeBuildStore(
      builds,
      new BuildNotifier({
        settings: new DynamoSettingsStore(storage.clients.documents, storage.settingsTable),
        builds,
        logs,
        logger: createMemoryLogger(),
        publicUrl: base,
      }),
    );
    const repo = 'octo/refreshed';
    const page = () => logs.getObjectText(REPO_KEYS.page(repo));
    const request = testBuildRequest({
      repo,
      sha: '1234567abcdef',
      branch: HOSTILE_BRANCH,
      commitTitle: HOSTILE_TITLE,
    });
    const queued = await observed.putQueuedBuild(request, await observed.allocateNumber(repo), {
      deadline: Date.now() + 60_000,
    });
    expect(await page()).toMatch(/<span class="pill"[^>]*>queued<\/span>/);
    await observed.transition(queued, { from: 'queued', to: 'running' });
    expect(await page()).toMatch(/<span class="pill"[^>]*>running<\/span>/);
    await observed.transition(queued, { from: 'running', to: 'failure', reason: 'test failed (exit 1)' });
    const html = (await page()) ?? '';
    expect(html).toMatch(/<span class="pill" title="test failed \(exit 1\)">failed<\/span>/);
    // Relative: from the page's link `…/builds/octo/refreshed`, `refreshed/1` is the build's page.
    expect(html).toContain('<a href="refreshed/1">#1</a>');
    expect(new URL('refreshed/1', `${base}/builds/octo/refreshed`).href).toBe(
      `${base}/builds/octo/refreshed/1`,
    );
    expect(html).not.toContain('<script>');

    const served = await fetch(`${base}/builds/octo/refreshed`);
    expect(served.status).toBe(200);
    expect(served.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(await served.text()).toBe(html);
  });
});
