/**
 * The cloud path, end to end: the webhook handler invokes the builder function asynchronously,
 * the builder (controller) handler invokes the runner function synchronously, all through the real
 * Lambda SDK against the Invoke API stand-in, as the functions are wired in the cloud.
 */
import { rmSync } from 'node:fs';
import { createLambdaClient } from '../../src/aws/clients.js';
import { LambdaControllerInvoker } from '../../src/aws/controller-invoker.js';
import type { ControllerDependencies } from '../../src/controller/controller.js';
import { LambdaRunnerInvoker, TrustRoutedRunnerInvoker } from '../../src/controller/runner-invoker.js';
import { resolveArchiveUrl } from '../../src/github/archive.js';
import { createGitHubClient } from '../../src/github/client.js';
import { GitHubStatusReporter } from '../../src/github/statuses.js';
import { WebhookVerifier } from '../../src/github/webhook.js';
import { createBuilderHandler } from '../../src/handlers/controller.js';
import { createRunnerHandler } from '../../src/handlers/runner.js';
import { createWebhookHandler } from '../../src/handlers/webhook.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import { DynamoBuildStore } from '../../src/store/builds.js';
import { S3LogStore } from '../../src/store/logs.js';
import { DynamoSettingsStore } from '../../src/store/settings.js';
import type { RunnerInput } from '../../src/core/protocol.js';
import { createGitRepo, startGitHubServer, type GitHubStandIn } from '../support/github-server.js';
import { startLambdaServer, type LambdaServer } from '../support/lambda-server.js';
import { passingProject } from '../support/npm-projects.js';
import { pushPayload, signedDelivery } from '../support/payloads.js';
import { createTestStorage, type TestStorage } from '../support/storage.js';

const SECRET = 'cloud-path-secret';
const TOKEN = 'cloud-path-token';
const PUBLIC_URL = 'https://ci.example.test';

let storage: TestStorage;
let github: GitHubStandIn;
let lambda: LambdaServer;
let builds: DynamoBuildStore;
let webhook: ReturnType<typeof createWebhookHandler>;
let runnerBehaviour: 'run' | 'time out' = 'run';
const folders: string[] = [];

beforeAll(async () => {
  storage = await createTestStorage();
  github = await startGitHubServer({ token: TOKEN });
  lambda = await startLambdaServer();
  const lambdaClient = createLambdaClient({ endpoints: { lambda: lambda.endpoint } });
  const octokit = createGitHubClient({ baseUrl: github.url, token: TOKEN });
  builds = new DynamoBuildStore(storage.clients.documents, storage.buildsTable);
  const settings = new DynamoSettingsStore(storage.clients.documents, storage.settingsTable);
  const statuses = new GitHubStatusReporter(octokit);
  const logger = createMemoryLogger();
  const controller: ControllerDependencies = {
    builds,
    settings,
    statuses,
    logs: new S3LogStore(storage.clients.s3, storage.bucket),
    archives: { resolveArchiveUrl: (repo, sha) => resolveArchiveUrl(octokit, repo, sha) },
    // As src/wiring.ts: trusted builds to the trusted runner function, the others to the untrusted one.
    runner: new TrustRoutedRunnerInvoker(
      new LambdaRunnerInvoker(lambdaClient, 'lambkin-runner'),
      new LambdaRunnerInvoker(lambdaClient, 'lambkin-untrusted-runner'),
    ),
    logger,
    publicUrl: PUBLIC_URL,
    runnerTimeoutMs: 60_000,
    logLimitBytes: 1024 * 1024,
  };
  lambda.setHandler(
    'lambkin-builder',
    createBuilderHandler(() => controller),
  );
  // The runner functions' handler as deployed, with its container hygiene off (not a container).
  const runnerHandler = createRunnerHandler({ trust: 'trusted', hygiene: { kind: 'off' } });
  lambda.setHandler('lambkin-runner', async (payload) => {
    if (runnerBehaviour === 'time out') throw new Error('Task timed out after 840.00 seconds');
    return runnerHandler(payload as RunnerInput);
  });
  const untrustedRunnerHandler = createRunnerHandler({ trust: 'untrusted', hygiene: { kind: 'off' } });
  lambda.setHandler('lambkin-untrusted-runner', async (payload) =>
    untrustedRunnerHandler(payload as RunnerInput),
  );
  webhook = createWebhookHandler(() => ({
    verifier: new WebhookVerifier([SECRET]),
    builds,
    settings,
    statuses,
    controller: new LambdaControllerInvoker(lambdaClient, 'lambkin-builder'),
    logger,
    publicUrl: PUBLIC_URL,
    queueTimeoutMs: 60_000,
  }));
});

afterAll(async () => {
  await Promise.all([github.close(), lambda.close()]);
  for (const folder of folders) rmSync(folder, { recursive: true, force: true });
});

async function push(name: string) {
  const repo = await createGitRepo(passingProject());
  folders.push(repo.dir);
  github.addRepository({ owner: 'octo', name, gitDir: repo.dir });
  const delivery = await signedDelivery(
    SECRET,
    'push',
    pushPayload({ repo: `octo/${name}`, branch: 'main', sha: repo.sha }),
  );
  const response = await webhook({
    rawPath: '/webhook',
    headers: delivery.headers,
    body: delivery.body,
    requestContext: { http: { method: 'POST' } },
  });
  expect(response.statusCode).toBe(202);
  await lambda.waitForIdle(60_000);
  return {
    repo: `octo/${name}`,
    sha: repo.sha,
    number: (JSON.parse(response.body) as { number: number }).number,
  };
}

describe('webhook → builder function → runner function', () => {
  it('builds a push through both functions and reports success', async () => {
    const { repo, sha, number } = await push('cloud');
    expect(await builds.getBuild({ repo, number })).toMatchObject({ state: 'success' });
    expect(github.statusesFor(repo, sha).map((status) => status.state)).toEqual([
      'success',
      'pending',
      'pending',
    ]);
    const calls = lambda.invocations.filter(
      (invocation) => (invocation.payload as { build?: { repo?: string } }).build?.repo === repo,
    );
    expect(calls.map((call) => [call.functionName, call.invocationType])).toEqual([
      ['lambkin-runner', 'RequestResponse'],
    ]);
    // The runner's payload carries no credential of the controller's.
    expect(JSON.stringify(calls[0]?.payload)).not.toContain(TOKEN);
  });

  it('ends the build as timed_out when the runner function hits its limit', async () => {
    runnerBehaviour = 'time out';
    try {
      const { repo, sha, number } = await push('cloud-timeout');
      expect(await builds.getBuild({ repo, number })).toMatchObject({
        state: 'timed_out',
        description: "timed out after 60 s (the runner's limit)",
      });
      expect(github.statusesFor(repo, sha)[0]).toMatchObject({
        state: 'error',
        description: "Build #1 timed out after 60 s (the runner's limit)",
      });
    } finally {
      runnerBehaviour = 'run';
    }
  });
});
