/**
 * Superseded builds at the webhook: a newer push to a branch, or a newer commit on a PR, cancels the
 * older builds of that branch or PR still queued or running — and no other — and their statuses
 * say so. Real storage servers, the GitHub API stand-in and the Lambda Invoke stand-in.
 */
import { rmSync } from 'node:fs';
import { createLambdaClient } from '../../src/aws/clients.js';
import { LambdaControllerInvoker } from '../../src/aws/controller-invoker.js';
import { createGitHubClient } from '../../src/github/client.js';
import { GitHubStatusReporter } from '../../src/github/statuses.js';
import { WebhookVerifier } from '../../src/github/webhook.js';
import { createWebhookHandler } from '../../src/handlers/webhook.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import { DynamoBuildStore } from '../../src/store/builds.js';
import type { BuildRecord } from '../../src/core/build.js';
import { DynamoSettingsStore, repoScope } from '../../src/store/settings.js';
import {
  commitFiles,
  createGitRepo,
  startGitHubServer,
  type GitHubStandIn,
} from '../support/github-server.js';
import { startLambdaServer, type LambdaServer } from '../support/lambda-server.js';
import { pullRequestPayload, pushPayload, signedDelivery } from '../support/payloads.js';
import { createTestStorage } from '../support/storage.js';

const SECRET = 'supersede-secret';
let github: GitHubStandIn;
let lambda: LambdaServer;
let builds: DynamoBuildStore;
let settings: DynamoSettingsStore;
let handler: ReturnType<typeof createWebhookHandler>;
let gitDir: string;
/** Builds the webhook asked to stop on CodeBuild. */
const stopped: BuildRecord[] = [];

beforeAll(async () => {
  const storage = await createTestStorage();
  github = await startGitHubServer({ token: 'supersede-token' });
  lambda = await startLambdaServer();
  gitDir = (await createGitRepo({ 'README.md': 'hello\n' })).dir;
  for (const name of ['app', 'off', 'broken', 'remote'])
    github.addRepository({ owner: 'octo', name, gitDir });
  builds = new DynamoBuildStore(storage.clients.documents, storage.buildsTable);
  settings = new DynamoSettingsStore(storage.clients.documents, storage.settingsTable);
  const deps = {
    verifier: new WebhookVerifier([SECRET]),
    builds,
    settings,
    statuses: new GitHubStatusReporter(createGitHubClient({ baseUrl: github.url, token: 'supersede-token' })),
    controller: new LambdaControllerInvoker(
      createLambdaClient({ endpoints: { lambda: lambda.endpoint } }),
      'builder',
    ),
    logger: createMemoryLogger(),
    publicUrl: 'https://ci.example.test',
    queueTimeoutMs: 20 * 60_000,
    stopRemote: (build: BuildRecord) => {
      stopped.push(build);
      return Promise.resolve();
    },
  };
  handler = createWebhookHandler(() => deps);
});

afterAll(async () => {
  await Promise.all([github.close(), lambda.close()]);
  rmSync(gitDir, { recursive: true, force: true });
});

let commits = 0;
async function realSha(): Promise<string> {
  commits += 1;
  return commitFiles(gitDir, { [`c/${commits}.txt`]: `${commits}\n` }, `commit ${commits}`);
}

async function deliver(event: string, payload: unknown): Promise<Record<string, unknown>> {
  const delivery = await signedDelivery(SECRET, event, payload);
  const result = await handler({
    rawPath: '/webhook',
    headers: delivery.headers,
    body: delivery.body,
    isBase64Encoded: false,
    requestContext: { http: { method: 'POST', path: '/webhook' } },
  });
  expect(result.statusCode).toBe(202);
  return JSON.parse(result.body) as Record<string, unknown>;
}

const push = async (repo: string, branch: string) => {
  const sha = await realSha();
  return { sha, json: await deliver('push', pushPayload({ repo, branch, sha })) };
};
const pr = async (number: number, headRef: string) => {
  const headSha = await realSha();
  const payload = pullRequestPayload({ repo: 'octo/app', number, headRef, headSha, action: 'synchronize' });
  return { sha: headSha, json: await deliver('pull_request', payload) };
};
const stateOf = async (repo: string, number: number) => (await builds.getBuild({ repo, number }))?.state;

describe('superseded builds', () => {
  it('cancels only the older unfinished builds of the same branch or PR, with a status saying so', async () => {
    const main1 = await push('octo/app', 'main'); // #1
    await push('octo/app', 'feature'); // #2
    await pr(7, 'feature'); // #3
    await pr(8, 'feature'); // #4
    const finished = await push('octo/app', 'main'); // #5, cancels #1
    expect(finished.json).toMatchObject({ number: 5, cancelled: [1] });
    // #5 ends before the next push: a finished build is never cancelled.
    await builds.transition({ repo: 'octo/app', number: 5 }, { from: 'queued', to: 'running' });
    await builds.transition({ repo: 'octo/app', number: 5 }, { from: 'running', to: 'success' });

    expect(await builds.getBuild({ repo: 'octo/app', number: 1 })).toMatchObject({
      state: 'cancelled',
      description: 'superseded by #5',
      reportedState: 'cancelled',
    });
    expect(github.statusesFor('octo/app', main1.sha)[0]).toMatchObject({
      state: 'error',
      description: 'Build #1 cancelled: superseded by #5',
      target_url: 'https://ci.example.test/builds/octo/app/1',
    });
    for (const number of [2, 3, 4]) expect(await stateOf('octo/app', number)).toBe('queued');

    // A PR's newer commit cancels that PR's running build only.
    await builds.transition({ repo: 'octo/app', number: 3 }, { from: 'queued', to: 'running' });
    expect((await pr(7, 'feature')).json).toMatchObject({ number: 6, cancelled: [3] });
    expect(await stateOf('octo/app', 3)).toBe('cancelled');
    expect(await stateOf('octo/app', 4)).toBe('queued');
    expect(await stateOf('octo/app', 2)).toBe('queued');

    const again = await push('octo/app', 'main'); // #7: #5 finished, #1 already cancelled
    expect(again.json).toMatchObject({ number: 7 });
    expect(again.json).not.toHaveProperty('cancelled');
    expect(await stateOf('octo/app', 5)).toBe('success');
  });

  it('cancels nothing for a newer build whose builder could not be invoked', async () => {
    const first = await push('octo/broken', 'main'); // #1
    expect(first.json).toMatchObject({ queued: true, number: 1 });
    // The superseded builds are looked for while the status is set and the invoke tried: the
    // invoke fails (every attempt), so the older build runs on and tells its own result.
    lambda.failNext({ kind: 'notFound404' }, 3);
    const delivery = await signedDelivery(
      SECRET,
      'push',
      pushPayload({ repo: 'octo/broken', branch: 'main', sha: await realSha() }),
    );
    const result = await handler({
      rawPath: '/webhook',
      headers: delivery.headers,
      body: delivery.body,
      isBase64Encoded: false,
      requestContext: { http: { method: 'POST', path: '/webhook' } },
    });
    lambda.clearFaults();
    expect(result.statusCode).toBe(502);
    expect(JSON.parse(result.body)).toMatchObject({ number: 2, state: 'error' });
    expect(await stateOf('octo/broken', 1)).toBe('queued');
    expect(await stateOf('octo/broken', 2)).toBe('error');
    expect(github.statusesFor('octo/broken', first.sha).map((status) => status.state)).toEqual(['pending']);
  });

  it('leaves older builds alone when build.cancelSuperseded is off', async () => {
    await settings.update(repoScope('octo/off'), () => ({ build: { cancelSuperseded: false } }));
    await push('octo/off', 'main');
    const second = await push('octo/off', 'main');
    expect(second.json).not.toHaveProperty('cancelled');
    expect(await stateOf('octo/off', 1)).toBe('queued');
  });
});

describe('superseded builds on CodeBuild', () => {
  it('are stopped there: no controller watches them', async () => {
    const first = await push('octo/remote', 'main');
    const number = first.json['number'] as number;
    await builds.transition({ repo: 'octo/remote', number }, { from: 'queued', to: 'running' });
    await builds.recordRemoteRun(
      { repo: 'octo/remote', number },
      {
        kind: 'codebuild',
        buildId: 'lambkin-builds:1234',
        arn: 'arn:aws:codebuild:us-east-1:123456789012:build/lambkin-builds:1234',
        project: 'lambkin-builds',
        attempt: 1,
        inputKey: 'runner-input/octo/remote/1/x.json',
        outcomeKey: 'runner-input/octo/remote/1/x.outcome.json',
        logPrefix: `logs/octo/remote/builds/${number}/`,
        startedAt: Date.now(),
        timeoutMinutes: 60,
        compute: 'small',
        docker: false,
        prepareMs: 10,
      },
      Date.now() + 3_600_000,
    );
    const second = await push('octo/remote', 'main');
    expect(second.json).toMatchObject({ cancelled: [number] });
    const ofRepo = stopped.filter((build) => build.repo === 'octo/remote');
    expect(ofRepo.map((build) => [build.number, build.state, build.remote?.buildId])).toEqual([
      [number, 'cancelled', 'lambkin-builds:1234'],
    ]);
  });
});
