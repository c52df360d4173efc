/**
 * The webhook function end to end: Lambda HTTP events in, real DynamoDB/S3-compatible servers,
 * the GitHub API stand-in and the Lambda Invoke stand-in behind it.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createLambdaClient } from '../../src/aws/clients.js';
import { LambdaControllerInvoker } from '../../src/aws/controller-invoker.js';
import type { IntakeDependencies } from '../../src/controller/intake.js';
import { createGitHubClient } from '../../src/github/client.js';
import { GitHubStatusReporter } from '../../src/github/statuses.js';
import { WebhookVerifier } from '../../src/github/webhook.js';
import { createWebhookHandler } from '../../src/handlers/webhook.js';
import { createMemoryLogger, type MemoryLogger } from '../../src/core/logger.js';
import { DynamoBuildStore } from '../../src/store/builds.js';
import { DynamoSettingsStore, repoScope } from '../../src/store/settings.js';
import {
  commitFiles,
  createGitRepo,
  startGitHubServer,
  type GitHubStandIn,
} from '../support/github-server.js';
import { startLambdaServer, type LambdaServer } from '../support/lambda-server.js';
import {
  checkEventPayload,
  fakeSha,
  pullRequestPayload,
  pushPayload,
  signedDelivery,
  examplePayload,
} from '../support/payloads.js';
import { createTestStorage, type TestStorage } from '../support/storage.js';

const SECRET = 'intake-test-secret';
const BUILDER = 'lambkin-builder';
const PUBLIC_URL = 'https://ci.example.test';
const REPOS = [
  'octo/app',
  'octo/other',
  'octo/forks-off',
  'octo/busy',
  'octo/down',
  'octo/slow',
  'octo/crash',
  'octo/replay',
  'octo/checks',
];

let storage: TestStorage;
let github: GitHubStandIn;
let lambda: LambdaServer;
let logger: MemoryLogger;
let builds: DynamoBuildStore;
let settings: DynamoSettingsStore;
let deps: IntakeDependencies;
let handler: ReturnType<typeof createWebhookHandler>;
let gitDir: string;

beforeAll(async () => {
  storage = await createTestStorage();
  github = await startGitHubServer({ token: 'intake-token' });
  lambda = await startLambdaServer();
  gitDir = (await createGitRepo({ 'README.md': 'hello\n' })).dir;
  for (const full of REPOS) {
    const [owner = '', name = ''] = full.split('/');
    github.addRepository({ owner, name, gitDir });
  }
  builds = new DynamoBuildStore(storage.clients.documents, storage.buildsTable);
  settings = new DynamoSettingsStore(storage.clients.documents, storage.settingsTable);
  logger = createMemoryLogger();
  deps = {
    verifier: new WebhookVerifier([SECRET]),
    builds,
    settings,
    statuses: new GitHubStatusReporter(createGitHubClient({ baseUrl: github.url, token: 'intake-token' })),
    controller: new LambdaControllerInvoker(
      createLambdaClient({ endpoints: { lambda: lambda.endpoint } }),
      BUILDER,
    ),
    logger,
    publicUrl: PUBLIC_URL,
    queueTimeoutMs: 20 * 60_000,
  };
  handler = createWebhookHandler(() => deps);
});

afterEach(() => {
  github.clearFaults();
  lambda.clearFaults();
});

afterAll(async () => {
  await Promise.all([github.close(), lambda.close()]);
  rmSync(gitDir, { recursive: true, force: true });
});

async function deliver(event: string, payload: unknown, options: Parameters<typeof signedDelivery>[3] = {}) {
  return post(await signedDelivery(SECRET, event, payload, options));
}

/** Posts a delivery as captured: its body and headers, byte for byte. */
async function post(delivery: Awaited<ReturnType<typeof signedDelivery>>) {
  const result = await handler({
    rawPath: '/webhook',
    headers: delivery.headers,
    body: delivery.body,
    isBase64Encoded: false,
    requestContext: { http: { method: 'POST', path: '/webhook' } },
  });
  return {
    ...result,
    json: JSON.parse(result.body) as Record<string, unknown>,
    deliveryId: delivery.deliveryId,
  };
}

/** A real commit in the repository the GitHub stand-in serves (it refuses statuses for unknown SHAs). */
let commits = 0;
async function realSha(label: string): Promise<string> {
  commits += 1;
  return commitFiles(gitDir, { [`commits/${commits}.txt`]: `${label}\n` }, label);
}

const invocationsFor = (repo: string) =>
  lambda.invocations.filter((invocation) => (invocation.payload as { repo?: string }).repo === repo);

describe('webhook handler', () => {
  it('queues a push: build record, pending status, then the builder invoked asynchronously', async () => {
    const sha = await realSha('queue-push');
    const response = await deliver(
      'push',
      pushPayload({ repo: 'octo/app', branch: 'main', sha, message: 'Add x' }),
    );
    expect(response.statusCode).toBe(202);
    expect(response.json).toEqual({
      queued: true,
      repo: 'octo/app',
      number: 1,
      url: `${PUBLIC_URL}/builds/octo/app/1`,
    });

    const build = await builds.getBuild({ repo: 'octo/app', number: 1 });
    expect(build).toMatchObject({
      state: 'queued',
      event: 'push',
      ref: 'refs/heads/main',
      branch: 'main',
      sha,
      trusted: true,
      fork: false,
      commitTitle: 'Add x',
      deliveryId: response.deliveryId,
      logPrefix: 'logs/octo/app/builds/1/',
    });
    expect(build?.deadline).toBeGreaterThan(Date.now() + 19 * 60_000);

    const [status] = github.statusesFor('octo/app', sha);
    expect(status).toMatchObject({
      state: 'pending',
      context: 'lambkin',
      description: 'Build #1 queued',
      target_url: `${PUBLIC_URL}/builds/octo/app/1`,
    });

    const [invocation] = invocationsFor('octo/app');
    expect(invocation).toMatchObject({
      functionName: BUILDER,
      invocationType: 'Event',
      payload: { kind: 'build', repo: 'octo/app', number: 1 },
    });
    const statusRequest = github.requests.find(
      (request) => request.path === `/repos/octo/app/statuses/${sha}`,
    );
    expect(statusRequest?.time).toBeLessThanOrEqual(invocation?.receivedAt ?? 0);
    expect((await builds.getDelivery(response.deliveryId))?.invokedAt).toEqual(expect.any(Number));
  });

  it('queues pull requests; a fork is untrusted', async () => {
    const same = await deliver(
      'pull_request',
      pullRequestPayload({
        repo: 'octo/other',
        number: 9,
        action: 'opened',
        headSha: await realSha('pr-same'),
      }),
    );
    const fork = await deliver(
      'pull_request',
      pullRequestPayload({
        repo: 'octo/other',
        number: 10,
        action: 'synchronize',
        headSha: await realSha('pr-fork'),
        fork: true,
      }),
    );
    expect([same.statusCode, fork.statusCode]).toEqual([202, 202]);
    expect(await builds.getBuild({ repo: 'octo/other', number: 1 })).toMatchObject({ pr: 9, trusted: true });
    expect(await builds.getBuild({ repo: 'octo/other', number: 2 })).toMatchObject({
      pr: 10,
      trusted: false,
      fork: true,
    });
    expect((await builds.latestBuildOf('octo/other', { pr: 10 }))?.number).toBe(2);
  });

  it('answers ping with 200 and ignores other events and actions with the reason, writing nothing', async () => {
    const before = lambda.invocations.length;
    const ping = await deliver('ping', examplePayload('ping'));
    expect(ping.statusCode).toBe(200);
    const issues = await deliver('issues', examplePayload('issues'));
    expect(issues).toMatchObject({
      statusCode: 202,
      json: { ignored: true, reason: '"issues" events do not start builds' },
    });
    const closed = await deliver(
      'pull_request',
      pullRequestPayload({ repo: 'octo/app', number: 3, action: 'closed' }),
    );
    expect(closed.json).toEqual({ ignored: true, reason: 'pull_request "closed" does not start builds' });
    const skipped = await deliver(
      'push',
      pushPayload({ repo: 'octo/app', branch: 'main', message: 'Typo [skip ci]', sha: fakeSha('skip') }),
    );
    expect(skipped.json).toEqual({ ignored: true, reason: 'the commit message asks to skip CI ([skip ci])' });
    expect(github.statusesFor('octo/app', fakeSha('skip'))).toEqual([]);
    expect(lambda.invocations.length).toBe(before);
    expect(await builds.getDelivery(skipped.deliveryId)).toBeUndefined();
  });

  it('refuses a bad signature with 401 and writes, calls and invokes nothing', async () => {
    const requestsBefore = github.requests.length;
    const invocationsBefore = lambda.invocations.length;
    const sha = await realSha('bad-signature');
    const response = await deliver('push', pushPayload({ repo: 'octo/app', branch: 'main', sha }), {
      signature: 'wrong',
    });
    expect(response.statusCode).toBe(401);
    expect(response.json.error).toMatch(/does not match/);
    expect(await builds.buildsOfCommit('octo/app', sha)).toEqual([]);
    expect(github.requests.length).toBe(requestsBefore);
    expect(lambda.invocations.length).toBe(invocationsBefore);
    expect(
      logger.entries.some((entry) => entry.message === 'webhook rejected' && entry.fields.status === 401),
    ).toBe(true);
  });

  it('answers 400 for a malformed body and 405 for other methods', async () => {
    const malformed = await handler({
      rawPath: '/webhook',
      headers: { 'content-type': 'application/json', 'x-hub-signature-256': 'sha256=00' },
      body: '{',
      requestContext: { http: { method: 'POST' } },
    });
    expect(malformed.statusCode).toBe(401); // unsigned garbage is refused before it is parsed
    const get = await handler({ rawPath: '/webhook', requestContext: { http: { method: 'GET' } } });
    expect(get.statusCode).toBe(405);
  });

  it('queues a redelivered webhook once', async () => {
    const payload = pushPayload({ repo: 'octo/app', branch: 'redeliver', sha: fakeSha('redeliver') });
    const first = await deliver('push', payload, { deliveryId: 'redelivery-1' });
    const again = await deliver('push', payload, { deliveryId: 'redelivery-1' });
    expect(first.json).toMatchObject({ queued: true });
    expect(again.statusCode).toBe(202);
    expect(again.json).toMatchObject({ duplicate: true, number: first.json.number, state: 'queued' });
    expect(await builds.buildsOfCommit('octo/app', fakeSha('redeliver'))).toHaveLength(1);
    expect(
      lambda.invocations.filter(
        (i) =>
          (i.payload as { number: number }).number === first.json.number &&
          (i.payload as { repo: string }).repo === 'octo/app',
      ),
    ).toHaveLength(1);
  });

  it('queues concurrent copies of one delivery once', async () => {
    const payload = pushPayload({ repo: 'octo/app', branch: 'race', sha: fakeSha('race') });
    const delivery = await signedDelivery(SECRET, 'push', payload, { deliveryId: 'race-delivery' });
    const event = {
      rawPath: '/webhook',
      headers: delivery.headers,
      body: delivery.body,
      requestContext: { http: { method: 'POST' } },
    };
    const results = await Promise.all(Array.from({ length: 8 }, () => handler(event)));
    expect(results.every((result) => result.statusCode === 202)).toBe(true);
    expect(await builds.buildsOfCommit('octo/app', fakeSha('race'))).toHaveLength(1);
  });

  it('finishes a delivery whose earlier attempt crashed after the guard, on redelivery', async () => {
    const sha = await realSha('crash-after-guard');
    // The earlier attempt allocated a number and wrote the guard, then died.
    const number = await builds.allocateNumber('octo/crash');
    await builds.claimDelivery('crashed-1', { repo: 'octo/crash', number }, Date.now() + 60_000);
    const response = await deliver('push', pushPayload({ repo: 'octo/crash', branch: 'main', sha }), {
      deliveryId: 'crashed-1',
    });
    expect(response.json).toMatchObject({ queued: true, number });
    expect(await builds.getBuild({ repo: 'octo/crash', number })).toMatchObject({ state: 'queued', sha });
    expect(invocationsFor('octo/crash').map((i) => i.payload)).toEqual([
      { kind: 'build', repo: 'octo/crash', number },
    ]);
    expect(logger.entries.some((entry) => entry.message.startsWith('resuming a delivery'))).toBe(true);
  });

  it('invokes the builder on redelivery when the earlier attempt died before invoking', async () => {
    const sha = await realSha('crash-before-invoke');
    const payload = pushPayload({ repo: 'octo/crash', branch: 'second', sha });
    const number = await builds.allocateNumber('octo/crash');
    await builds.claimDelivery('crashed-2', { repo: 'octo/crash', number }, Date.now() + 60_000);
    const built = (await signedDelivery(SECRET, 'push', payload)).body;
    expect(built).toContain(sha);
    const response = await deliver('push', payload, { deliveryId: 'crashed-2' });
    expect(response.json).toMatchObject({ queued: true, number });
    const again = await deliver('push', payload, { deliveryId: 'crashed-2' });
    expect(again.json).toMatchObject({ duplicate: true, number });
    expect(
      invocationsFor('octo/crash').filter((i) => (i.payload as { number: number }).number === number),
    ).toHaveLength(1);
  });

  it('ignores a signed body replayed under a new delivery id: no build, nothing cancelled', async () => {
    const repo = 'octo/replay';
    const oldPush = pushPayload({ repo, branch: 'main', sha: await realSha('replay-old') });
    const newPush = pushPayload({ repo, branch: 'main', sha: await realSha('replay-new') });
    const first = await deliver('push', oldPush);
    const second = await deliver('push', newPush);
    // Two different pushes: two builds, the newer cancelling the older.
    expect([first.json, second.json]).toEqual([
      expect.objectContaining({ queued: true, number: 1 }),
      expect.objectContaining({ queued: true, number: 2, cancelled: [1] }),
    ]);

    // The first push's signed body, captured and posted again under a fresh X-GitHub-Delivery.
    const captured = await signedDelivery(SECRET, 'push', oldPush);
    expect(captured.deliveryId).not.toBe(first.deliveryId);
    const replay = await post(captured);
    expect([replay.statusCode, replay.json]).toEqual([
      202,
      { ignored: true, reason: `replay of delivery ${first.deliveryId}` },
    ]);
    expect((await builds.listBuilds(repo)).map((build) => [build.number, build.state])).toEqual([
      [2, 'queued'],
      [1, 'cancelled'],
    ]);
    expect(invocationsFor(repo)).toHaveLength(2);
    expect(await builds.getDelivery(captured.deliveryId)).toBeUndefined();

    // GitHub's own redeliveries keep their id: answered as before, idempotently.
    const redelivered = await deliver('push', oldPush, { deliveryId: first.deliveryId });
    expect(redelivered.json).toEqual({ duplicate: true, repo, number: 1, state: 'cancelled' });
    const redeliveredNewer = await deliver('push', newPush, { deliveryId: second.deliveryId });
    expect(redeliveredNewer.json).toEqual({ duplicate: true, repo, number: 2, state: 'queued' });
    expect((await builds.getBuild({ repo, number: 2 }))?.state).toBe('queued');
    expect(invocationsFor(repo)).toHaveLength(2);
  });

  it('queues a delivery whose earlier attempt died between the body guard and its delivery guard', async () => {
    const sha = await realSha('crash-after-body-guard');
    const delivery = await signedDelivery(
      SECRET,
      'push',
      pushPayload({ repo: 'octo/crash', branch: 'body', sha }),
      {
        deliveryId: 'crashed-3',
      },
    );
    // The earlier attempt claimed the body for this delivery, then died before the delivery guard.
    const bodySha256 = createHash('sha256').update(delivery.body).digest('hex');
    await builds.claimBody({ event: 'push', bodySha256 }, 'crashed-3', Date.now() + 60_000);
    const response = await post(delivery);
    expect(response.json).toMatchObject({ queued: true, repo: 'octo/crash' });
    expect(await builds.buildsOfCommit('octo/crash', sha)).toHaveLength(1);
    const again = await post(delivery);
    expect(again.json).toMatchObject({ duplicate: true, number: response.json.number });
  });

  it('takes the build policy from the settings store', async () => {
    await settings.update(repoScope('octo/forks-off'), () => ({ build: { pullRequests: { forks: false } } }));
    const response = await deliver(
      'pull_request',
      pullRequestPayload({ repo: 'octo/forks-off', number: 1, action: 'opened', fork: true }),
    );
    expect(response.json).toEqual({
      ignored: true,
      reason:
        'pull requests from forks are not built (settings: build.pullRequests.fromForkPublicRepo.build)',
    });
    expect(await builds.listBuilds('octo/forks-off')).toEqual([]);
  });

  it('still queues and invokes when GitHub answers 500, and logs why', async () => {
    const sha = await realSha('github-down');
    github.failNext({ mode: '500', times: 10, path: /\/statuses\// });
    const response = await deliver('push', pushPayload({ repo: 'octo/down', branch: 'main', sha }));
    expect(response.json).toMatchObject({ queued: true, number: 1 });
    expect(invocationsFor('octo/down')).toHaveLength(1);
    expect(github.statusesFor('octo/down', sha)).toEqual([]);
    const warning = logger.entries.find(
      (entry) =>
        entry.message.startsWith('could not set the pending status') && entry.fields.build === 'octo/down#1',
    );
    expect(warning?.level).toBe('warn');
    expect(JSON.stringify(warning?.fields.error)).toMatch(/Could not set the pending status of octo\/down/);
  });

  it('answers within the intake budget when GitHub is slow', async () => {
    const sha = await realSha('github-slow');
    github.failNext({ mode: 'slow', delayMs: 8000, times: 5, path: /\/statuses\// });
    const started = Date.now();
    const response = await deliver('push', pushPayload({ repo: 'octo/slow', branch: 'main', sha }));
    const elapsed = Date.now() - started;
    expect(response.json).toMatchObject({ queued: true });
    expect(invocationsFor('octo/slow')).toHaveLength(1);
    // The intake's own deadline ended the status call: it did not wait for GitHub's slow answer.
    const warning = logger.entries.find(
      (entry) =>
        entry.message.startsWith('could not set the pending status') && entry.fields.build === 'octo/slow#1',
    );
    expect(warning?.level).toBe('warn');
    expect(JSON.stringify(warning?.fields.error)).toMatch(/GitHub did not answer within \d+ ms/);
    // GitHub gives up on a delivery after 10 s: that, not a margin over the intake's budget, is the bound.
    expect(elapsed).toBeLessThan(10_000);
  });

  it('ends the build as error, with that status on GitHub, when the builder cannot be invoked', async () => {
    const sha = await realSha('invoke-fails');
    lambda.failNext({ kind: 'notFound404' }, 3);
    const response = await deliver('push', pushPayload({ repo: 'octo/app', branch: 'broken', sha }));
    expect(response.statusCode).toBe(502);
    expect(response.json).toMatchObject({
      state: 'error',
      error: expect.stringMatching(/could not start the builder/),
    });
    const [build] = await builds.buildsOfCommit('octo/app', sha);
    expect(build).toMatchObject({
      state: 'error',
      description: expect.stringMatching(/could not start the builder/),
    });
    expect(build?.events.map((event) => event.to)).toEqual(['queued', 'error']);
    expect(github.statusesFor('octo/app', sha).map((status) => status.state)).toEqual(['error', 'pending']);
    expect(github.statusesFor('octo/app', sha)[0]?.description).toMatch(
      /^Build #\d+ could not start the builder/,
    );
  });
});

describe("a GitHub App's check and merge-queue events", () => {
  it('builds a merge group once, and a check suite only when its push was not built', async () => {
    const sha = await realSha('merge-group');
    const group = await deliver(
      'merge_group',
      checkEventPayload('merge_group', 'checks_requested', { repo: 'octo/checks', sha, pr: 4 }),
    );
    expect(group.json).toMatchObject({ queued: true });
    const built = await builds.getBuild({ repo: 'octo/checks', number: Number(group.json.number) });
    expect(built).toMatchObject({
      sha,
      trusted: true,
      branch: expect.stringMatching(/^gh-readonly-queue\/main\/pr-4-/),
    });
    // The same group delivered again under another id (GitHub sends one per queue entry).
    const again = await deliver(
      'merge_group',
      checkEventPayload('merge_group', 'checks_requested', {
        repo: 'octo/checks',
        sha,
        pr: 4,
        sender: 'someone-else',
      }),
    );
    expect(again.json).toEqual({ ignored: true, reason: `already built as #${built!.number} (queued)` });

    const pushed = await realSha('pushed-then-suite');
    const push = await deliver('push', pushPayload({ repo: 'octo/checks', branch: 'topic', sha: pushed }));
    const suite = await deliver(
      'check_suite',
      checkEventPayload('check_suite', 'requested', { repo: 'octo/checks', sha: pushed, branch: 'topic' }),
    );
    expect(suite.json).toEqual({
      ignored: true,
      reason: `already built as #${String(push.json.number)} (queued)`,
    });
    // A suite GitHub made for a commit nothing built yet (no push delivered to this stack): built.
    const unpushed = await realSha('suite-only');
    const alone = await deliver(
      'check_suite',
      checkEventPayload('check_suite', 'requested', { repo: 'octo/checks', sha: unpushed, branch: 'topic' }),
    );
    expect(alone.json).toMatchObject({ queued: true });
    // Nothing in a check suite proves the commit is the branch's own (it may be a fork's): untrusted,
    // and so is its re-run.
    const suiteBuild = { repo: 'octo/checks', number: Number(alone.json.number) };
    expect(await builds.getBuild(suiteBuild)).toMatchObject({ trusted: false, branch: 'topic' });
    const rerun = await deliver(
      'check_run',
      checkEventPayload('check_run', 'rerequested', {
        repo: 'octo/checks',
        sha: unpushed,
        externalId: `octo/checks#${suiteBuild.number}`,
      }),
    );
    expect(await builds.getBuild({ repo: 'octo/checks', number: Number(rerun.json.number) })).toMatchObject({
      trusted: false,
    });
    expect((await builds.buildsOfCommit('octo/checks', unpushed)).map((build) => build.branch)).toEqual([
      'topic',
      'topic',
    ]);
  });

  it('re-runs the build a check run names as a new build of the same request, cancelling nothing newer', async () => {
    const old = await realSha('rerun-old');
    const first = await deliver(
      'pull_request',
      pullRequestPayload({ repo: 'octo/checks', number: 21, headSha: old, fork: true }),
    );
    const newer = await deliver(
      'pull_request',
      pullRequestPayload({
        repo: 'octo/checks',
        number: 21,
        action: 'synchronize',
        headSha: await realSha('rerun-new'),
        fork: true,
      }),
    );
    expect(newer.json).toMatchObject({ queued: true, cancelled: [first.json.number] });
    const before = invocationsFor('octo/checks').length;
    const rerun = await deliver(
      'check_run',
      checkEventPayload('check_run', 'rerequested', {
        repo: 'octo/checks',
        sha: old,
        externalId: `octo/checks#${String(first.json.number)}`,
        sender: 'maintainer',
      }),
    );
    expect(rerun.json).toMatchObject({ queued: true });
    expect(rerun.json).not.toHaveProperty('cancelled');
    const again = await builds.getBuild({ repo: 'octo/checks', number: Number(rerun.json.number) });
    // The fork's pull request stays untrusted when run again.
    expect(again).toMatchObject({
      sha: old,
      pr: 21,
      fork: true,
      trusted: false,
      deliveryId: rerun.deliveryId,
    });
    expect((await builds.getBuild({ repo: 'octo/checks', number: Number(newer.json.number) }))?.state).toBe(
      'queued',
    );
    expect(invocationsFor('octo/checks').length).toBe(before + 1);

    // "Re-run all checks": the commit's latest build.
    const suite = await deliver(
      'check_suite',
      checkEventPayload('check_suite', 'rerequested', { repo: 'octo/checks', sha: old }),
    );
    expect(await builds.getBuild({ repo: 'octo/checks', number: Number(suite.json.number) })).toMatchObject({
      sha: old,
      pr: 21,
    });
  });

  it("never lets an untrusted check suite's build cancel a trusted build of its branch", async () => {
    // A commit that may be a fork's, its check suite naming the branch "release": it must not stop
    // the branch's own (trusted) build, e.g. one that is deploying.
    const pushed = await realSha('trusted-release');
    const push = await deliver('push', pushPayload({ repo: 'octo/checks', branch: 'release', sha: pushed }));
    const stranger = await realSha('stranger-release');
    const suite = await deliver(
      'check_suite',
      checkEventPayload('check_suite', 'requested', {
        repo: 'octo/checks',
        sha: stranger,
        branch: 'release',
      }),
    );
    expect(suite.json).toMatchObject({ queued: true });
    expect(suite.json).not.toHaveProperty('cancelled');
    expect(await builds.getBuild({ repo: 'octo/checks', number: Number(push.json.number) })).toMatchObject({
      trusted: true,
      state: 'queued',
    });
    // The branch's next push supersedes both, as any push does.
    const next = await deliver(
      'push',
      pushPayload({ repo: 'octo/checks', branch: 'release', sha: await realSha('release-next') }),
    );
    expect(next.json).toMatchObject({
      queued: true,
      cancelled: expect.arrayContaining([push.json.number, suite.json.number]),
    });
  });

  it("builds a merge group trusted even when its commit's check suite came first (built untrusted)", async () => {
    const sha = await realSha('queue-after-suite');
    const branch = `gh-readonly-queue/main/pr-7-${fakeSha(`base of ${sha}`)}`;
    const suite = await deliver(
      'check_suite',
      checkEventPayload('check_suite', 'requested', { repo: 'octo/checks', sha, branch }),
    );
    expect(suite.json).toMatchObject({ queued: true });
    const group = await deliver(
      'merge_group',
      checkEventPayload('merge_group', 'checks_requested', { repo: 'octo/checks', sha, pr: 7 }),
    );
    expect(group.json).toMatchObject({ queued: true, cancelled: [suite.json.number] });
    expect(await builds.getBuild({ repo: 'octo/checks', number: Number(group.json.number) })).toMatchObject({
      branch,
      trusted: true,
    });
  });

  it('answers a re-run of a commit it never built, queueing nothing', async () => {
    const sha = await realSha('never-built');
    const before = lambda.invocations.length;
    const rerun = await deliver(
      'check_run',
      checkEventPayload('check_run', 'rerequested', {
        repo: 'octo/checks',
        sha,
        externalId: 'octo/checks#9999',
      }),
    );
    expect(rerun.json).toEqual({ ignored: true, reason: `no build of ${sha.slice(0, 7)} to run again` });
    expect(lambda.invocations.length).toBe(before);
  });
});

describe('build links', () => {
  it('are made from the Host the request came in on when no public URL is configured', async () => {
    const hostHandler = createWebhookHandler(() => ({ ...deps, publicUrl: '' }));
    const sha = await realSha('host-link');
    const delivery = await signedDelivery(
      SECRET,
      'push',
      pushPayload({ repo: 'octo/other', branch: 'host', sha }),
    );
    const result = await hostHandler({
      rawPath: '/webhook',
      headers: {
        ...delivery.headers,
        host: 'abc123.execute-api.eu-west-1.amazonaws.com',
        'x-forwarded-proto': 'https',
      },
      body: delivery.body,
      requestContext: { http: { method: 'POST' } },
    });
    const { number, url } = JSON.parse(result.body) as { number: number; url: string };
    expect(url).toBe(`https://abc123.execute-api.eu-west-1.amazonaws.com/builds/octo/other/${number}`);
    expect((await builds.getBuild({ repo: 'octo/other', number }))?.pageUrl).toBe(url);
    expect(github.statusesFor('octo/other', sha)[0]?.target_url).toBe(url);
  });

  it('carry an unguessable token for private repositories', async () => {
    const sha = await realSha('private-link');
    const response = await deliver(
      'push',
      pushPayload({ repo: 'octo/other', branch: 'secret', sha, private: true }),
    );
    const { number, url } = response.json as { number: number; url: string };
    const build = await builds.getBuild({ repo: 'octo/other', number });
    expect(build?.logToken).toMatch(/^[A-Za-z0-9_-]{24}$/);
    expect(url).toBe(`${PUBLIC_URL}/builds/octo/other/${number}?token=${build?.logToken}`);
    expect(github.statusesFor('octo/other', sha)[0]?.target_url).toBe(url);
  });
});

describe('webhook handler in several processes', () => {
  it('gives 50 concurrent webhooks for one repo 50 distinct build numbers', async () => {
    const folder = mkdtempSync(join(tmpdir(), 'lambkin-webhooks-'));
    const processes = 5;
    const perProcess = 10;
    const files: string[] = [];
    for (let p = 0; p < processes; p++) {
      const deliveries = [];
      for (let i = 0; i < perProcess; i++) {
        const sha = await realSha(`busy-${p}-${i}`);
        deliveries.push(
          await signedDelivery(SECRET, 'push', pushPayload({ repo: 'octo/busy', branch: `b${p}-${i}`, sha })),
        );
      }
      const file = join(folder, `deliveries-${p}.json`);
      writeFileSync(file, JSON.stringify(deliveries));
      files.push(file);
    }
    const env = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
      AWS_REGION: 'us-east-1',
      AWS_ENDPOINT_URL_DYNAMODB: storage.backend.dynamodbEndpoint,
      AWS_ENDPOINT_URL_LAMBDA: lambda.endpoint,
      GITHUB_API_URL: github.url,
      GITHUB_TOKEN: 'intake-token',
      LAMBKIN_WEBHOOK_SECRET: SECRET,
      LAMBKIN_BUILDS_TABLE: storage.buildsTable,
      LAMBKIN_SETTINGS_TABLE: storage.settingsTable,
      LAMBKIN_BUILDER_FUNCTION: BUILDER,
      LAMBKIN_PUBLIC_URL: PUBLIC_URL,
    };
    const run = promisify(execFile);
    const outputs = await Promise.all(
      files.map((file) =>
        run(process.execPath, ['--import', 'tsx', 'tests/support/webhook-worker.ts', file], {
          env,
          maxBuffer: 1 << 24,
        }),
      ),
    );
    rmSync(folder, { recursive: true, force: true });
    const responses = outputs.flatMap(
      (output) =>
        JSON.parse(output.stdout.trim().split('\n').pop() ?? '[]') as { statusCode: number; body: string }[],
    );
    expect(responses).toHaveLength(50);
    expect(responses.filter((response) => response.statusCode !== 202)).toEqual([]);
    const numbers = responses.map((response) => (JSON.parse(response.body) as { number: number }).number);
    expect(new Set(numbers).size).toBe(50);
    expect([...numbers].sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    expect((await builds.listBuilds('octo/busy', { limit: 100 })).length).toBe(50);
    // Every build invoked. Under load the SDK may retry an invoke whose answer came after its
    // timeout: Lambda then holds two async events of one build, which the builder's conditional
    // claim makes one run (tests/controller), so a repeat is allowed here and a miss is not.
    const invoked = invocationsFor('octo/busy').map(
      (invocation) => (invocation.payload as { number: number }).number,
    );
    expect([...new Set(invoked)].sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    expect(invoked.length).toBeLessThanOrEqual(50 * 3);
  }, 120_000);
});
