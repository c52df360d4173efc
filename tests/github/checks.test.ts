/**
 * Check runs through GitHubCheckRuns (src/github/checks.ts), as a GitHub App installation, against
 * the GitHub stand-in: annotations go 50 a request and all of them arrive.
 */
import { rm } from 'node:fs/promises';
import { createGitHubApp } from '../../src/github/app-auth.js';
import type { CheckAnnotation } from '../../src/core/annotations/index.js';
import { GitHubCheckRuns } from '../../src/github/checks.js';
import type { GitHubClient } from '../../src/github/client.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import {
  createGitRepo,
  startGitHubServer,
  type GitHubStandIn,
  type GitRepo,
} from '../support/github-server.js';
import { appKeyPair } from '../support/app-keys.js';

const APP_ID = 5150;
const { publicKey, privateKey } = appKeyPair('pkcs8');

let server: GitHubStandIn;
let repo: GitRepo;
let client: GitHubClient;

beforeAll(async () => {
  repo = await createGitRepo({ 'src/index.js': 'export {};\n' });
  server = await startGitHubServer({
    apps: [{ id: APP_ID, publicKey }],
    installations: [{ id: 1, account: 'acme', repositories: ['acme/widget'] }],
  });
  server.addRepository({ owner: 'acme', name: 'widget', gitDir: repo.dir });
  const app = createGitHubApp(
    { appId: APP_ID, privateKey },
    { baseUrl: server.url, logger: createMemoryLogger() },
  );
  client = app.installationClient('acme/widget', { checks: 'write' });
});

afterAll(async () => {
  await server?.close();
  if (repo) await rm(repo.dir, { recursive: true, force: true });
});

const annotations = (count: number, from = 1): CheckAnnotation[] =>
  Array.from({ length: count }, (_, index) => ({
    path: 'src/index.js',
    start_line: from + index,
    end_line: from + index,
    annotation_level: 'failure' as const,
    message: `Problem ${from + index}`,
    title: 'lint',
  }));

/** The check-run requests the stand-in received since `before` (method and path). */
const checkRequests = (before: number): string[] =>
  server.requests
    .slice(before)
    .filter((request) => request.path.includes('/check-runs'))
    .map((request) => `${request.method} ${request.path.replace(/\d+$/, 'ID')}`);

describe('GitHubCheckRuns', () => {
  it('sends 120 annotations as 3 requests, and all of them are listed', async () => {
    const before = server.requests.length;
    const checks = new GitHubCheckRuns(client);
    const run = await checks.create('acme/widget', {
      name: 'lambkin',
      headSha: repo.sha,
      conclusion: 'failure',
      detailsUrl: 'http://127.0.0.1:1/builds/7',
      externalId: 'build-7',
      output: {
        title: 'Lint failed',
        summary: '120 problems',
        text: 'See below',
        annotations: annotations(120),
      },
    });
    expect(checkRequests(before)).toEqual([
      'POST /repos/acme/widget/check-runs',
      'PATCH /repos/acme/widget/check-runs/ID',
      'PATCH /repos/acme/widget/check-runs/ID',
    ]);
    const [stored] = server.checkRunsFor('acme/widget', repo.sha).filter((each) => each.id === run.id);
    expect(stored).toMatchObject({
      status: 'completed',
      conclusion: 'failure',
      external_id: 'build-7',
      details_url: 'http://127.0.0.1:1/builds/7',
      output: { title: 'Lint failed', summary: '120 problems', text: 'See below' },
      annotationBatches: [50, 50, 20],
    });
    const listed = await client.paginate(client.rest.checks.listAnnotations, {
      owner: 'acme',
      repo: 'widget',
      check_run_id: run.id,
      per_page: 100,
    });
    expect(listed.map((annotation) => annotation.start_line)).toEqual(
      Array.from({ length: 120 }, (_, index) => index + 1),
    );
    expect(listed[0]).toMatchObject({
      path: 'src/index.js',
      annotation_level: 'failure',
      message: 'Problem 1',
      title: 'lint',
    });
  });

  it('creates, then updates as the build goes, annotations added to those the run has', async () => {
    const checks = new GitHubCheckRuns(client);
    const run = await checks.create('acme/widget', { name: 'build', headSha: repo.sha, status: 'queued' });
    expect(run.htmlUrl).toContain(`/acme/widget/runs/${run.id}`);
    const before = server.requests.length;
    await checks.update('acme/widget', run.id, {
      status: 'in_progress',
      startedAt: new Date('2026-01-02T03:04:05Z'),
    });
    await checks.update('acme/widget', run.id, {
      conclusion: 'success',
      output: { title: 'Passed', summary: 'All good', annotations: annotations(60) },
    });
    expect(checkRequests(before)).toHaveLength(3);
    const [stored] = server.checkRunsFor('acme/widget', repo.sha).filter((each) => each.id === run.id);
    expect(stored).toMatchObject({
      status: 'completed',
      conclusion: 'success',
      started_at: '2026-01-02T03:04:05Z',
      annotationBatches: [50, 10],
    });
    expect(stored?.annotations).toHaveLength(60);
  });
});
