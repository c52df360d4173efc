/**
 * App mode's reporter (src/github/build-reporter.ts), made as the composition root makes it, against
 * the GitHub stand-in acting as GitHub for a GitHub App: a build's statuses and its one check run
 * agree through queued, in progress and completed; another process finds the run by its external
 * id; faults are retried within the policy; a run it cannot write fails the report.
 */
import { rm } from 'node:fs/promises';
import type { BuildRecord } from '../../src/core/build.js';
import { checkReportOf } from '../../src/core/check-run.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import type { DeliveryPolicy } from '../../src/core/ports.js';
import { createGitHubAccess } from '../../src/github/access.js';
import { statusReporterFor } from '../../src/wiring.js';
import {
  createGitRepo,
  startGitHubServer,
  type GitHubStandIn,
  type GitRepo,
} from '../support/github-server.js';
import { appKeyPair } from '../support/app-keys.js';

const APP_ID = 7001;
const { publicKey, privateKey } = appKeyPair();
const POLICY: DeliveryPolicy = {
  deadlineMs: 10_000,
  maxAttempts: 4,
  attemptTimeoutMs: 5000,
  initialBackoffMs: 20,
};

let server: GitHubStandIn;
let repo: GitRepo;

beforeAll(async () => {
  repo = await createGitRepo({ 'src/index.js': 'export {};\n', 'test/a.test.js': 'x\n' });
  server = await startGitHubServer({
    apps: [{ id: APP_ID, publicKey }],
    installations: [
      { id: 11, account: 'acme', repositories: ['acme/widget', 'acme/other'] },
      // Statuses only: check runs are refused.
      {
        id: 12,
        account: 'nochecks',
        repositories: ['nochecks/repo'],
        permissions: { statuses: 'write', metadata: 'read' },
      },
    ],
  });
  for (const [owner, name] of [
    ['acme', 'widget'],
    ['acme', 'other'],
    ['nochecks', 'repo'],
  ] as const) {
    server.addRepository({ owner, name, gitDir: repo.dir });
  }
});

afterAll(async () => {
  await server.close();
  await rm(repo.dir, { recursive: true, force: true });
});

afterEach(() => server.clearFaults());

function reporter() {
  return statusReporterFor(
    createGitHubAccess({
      baseUrl: server.url,
      logger: createMemoryLogger(),
      app: { appId: String(APP_ID), privateKey },
    }),
  );
}

function build(repoName: string, number: number, fields: Partial<BuildRecord> = {}): BuildRecord {
  return {
    repo: repoName,
    number,
    sha: repo.sha,
    state: 'queued',
    ...fields,
  } as BuildRecord;
}

async function report(
  target: ReturnType<typeof reporter>,
  record: BuildRecord,
  state: 'pending' | 'success' | 'failure' | 'error',
  description: string,
  extra: { log?: string; checkoutRoot?: string } = {},
): Promise<void> {
  await target.setStatus(
    {
      repo: record.repo,
      sha: record.sha,
      state,
      description,
      targetUrl: `https://ci.example.test/${record.repo}/${record.number}`,
      check: checkReportOf({ build: record, state: record.state, description, ...extra }),
    },
    POLICY,
  );
}

describe('AppBuildReporter', () => {
  it('keeps one check run per build in step with its statuses, with annotations from the log', async () => {
    const first = reporter();
    const queued = build('acme/widget', 1);
    await report(first, queued, 'pending', 'Build #1 queued');
    let runs = server.checkRunsFor('acme/widget', repo.sha);
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatchObject({ name: 'Lambkin', status: 'queued', external_id: 'acme/widget#1' });

    // Another process (the builder) finds the webhook's run by its external id.
    const second = reporter();
    const running = { ...queued, state: 'running' as const, startedAt: Date.now() };
    await report(second, running, 'pending', 'Build #1 running');
    runs = server.checkRunsFor('acme/widget', repo.sha);
    expect(runs).toHaveLength(1);
    expect(runs[0]?.status).toBe('in_progress');

    const root = '/tmp/lambkin-work/build-1/src';
    const failures = Array.from(
      { length: 60 },
      (_, index) =>
        `not ok ${index + 1} - case ${index + 1}\n  ---\n  location: '${root}/test/a.test.js:${index + 2}:5'\n  error: 'Expected values to be strictly equal'\n  ...\n`,
    ).join('');
    const log = `TAP version 13\n${failures}1..60\n`;
    const failed = {
      ...running,
      state: 'failure' as const,
      endedAt: Date.now(),
      steps: [{ name: 'npm test', exitCode: 1, durationMs: 1234 }],
    } as BuildRecord;
    await report(second, failed, 'failure', 'Build #1 failed: npm test exited 1', {
      log,
      checkoutRoot: root,
    });

    runs = server.checkRunsFor('acme/widget', repo.sha);
    expect(runs).toHaveLength(1);
    const run = runs[0];
    expect(run).toMatchObject({
      status: 'completed',
      conclusion: 'failure',
      details_url: 'https://ci.example.test/acme/widget/1',
      external_id: 'acme/widget#1',
    });
    expect(run?.output.title).toBe('Build #1 failed: npm test exited 1');
    expect(run?.output.summary).toContain('npm test');
    expect(run?.output.text).toContain('not ok 60');
    expect(run?.annotations).toHaveLength(60);
    expect(run?.annotationBatches).toEqual([50, 10]);
    expect(run?.annotations[0]).toMatchObject({
      path: 'test/a.test.js',
      start_line: 2,
      annotation_level: 'failure',
    });
    // Statuses agree, through the same installation.
    expect(server.statusesFor('acme/widget', repo.sha).map((status) => status.state)).toEqual([
      'failure',
      'pending',
      'pending',
    ]);
    // Tokens for that repository alone, with the reporting permissions only.
    const minted = server.mintedTokens().filter((token) => token.installationId === 11);
    expect(minted.length).toBeGreaterThan(0);
    for (const token of minted) {
      expect(token.repositories).toEqual(['acme/widget']);
      // GitHub adds metadata: read to every installation token.
      expect(token.permissions).toEqual({ checks: 'write', statuses: 'write', metadata: 'read' });
    }
  });

  it('retries a check run that GitHub failed to take, within the policy, making no second run', async () => {
    const target = reporter();
    const record = build('acme/other', 5);
    server.failNext({ mode: '502', method: 'POST', path: /\/check-runs$/ });
    server.failNext({ mode: 'rate-limit', method: 'GET', path: /\/check-runs/, resetInSeconds: 1 });
    await report(target, record, 'pending', 'Build #5 queued');
    expect(server.pendingFaults()).toBe(0);
    const runs = server
      .checkRunsFor('acme/other', repo.sha)
      .filter((run) => run.external_id === 'acme/other#5');
    expect(runs).toHaveLength(1);
  });

  it('fails the report, saying why, when the installation may not write check runs', async () => {
    const target = reporter();
    const record = build('nochecks/repo', 1);
    await expect(report(target, record, 'pending', 'Build #1 queued')).rejects.toThrow(/nochecks\/repo/);
    expect(server.checkRunsFor('nochecks/repo', repo.sha)).toHaveLength(0);
  });
});
