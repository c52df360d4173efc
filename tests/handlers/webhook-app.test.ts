/**
 * The webhook function in App mode, made by the composition root from an App's config: real
 * DynamoDB- and S3-compatible servers, the GitHub stand-in as GitHub for a GitHub App, and the
 * Lambda Invoke stand-in. Installation events are recorded; a repository the App is not installed
 * on is refused clearly; a queued build gets its queued check run beside its pending status.
 */
import { rmSync } from 'node:fs';
import { createLambdaClient } from '../../src/aws/clients.js';
import { loadConfig } from '../../src/config.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import { createWebhookHandler } from '../../src/handlers/webhook.js';
import { DynamoInstallationRegistry } from '../../src/store/installations.js';
import { createIntakeDependencies } from '../../src/wiring.js';
import { createGitRepo, startGitHubServer, type GitHubStandIn } from '../support/github-server.js';
import { startLambdaServer, type LambdaServer } from '../support/lambda-server.js';
import { examplePayload, pushPayload, deliverToHandler } from '../support/payloads.js';
import { createTestStorage, type TestStorage } from '../support/storage.js';
import { appKeyPair } from '../support/app-keys.js';

const SECRET = 'app-intake-secret';
const APP_ID = 9090;
const { publicKey, privateKey } = appKeyPair();

let storage: TestStorage;
let github: GitHubStandIn;
let lambda: LambdaServer;
let handler: ReturnType<typeof createWebhookHandler>;
let gitDir: string;
let sha: string;

beforeAll(async () => {
  storage = await createTestStorage();
  github = await startGitHubServer({
    apps: [{ id: APP_ID, publicKey }],
    installations: [{ id: 31, account: 'acme', repositories: ['acme/app', 'acme/later'] }],
  });
  lambda = await startLambdaServer();
  const repo = await createGitRepo({ 'README.md': 'hello\n' });
  gitDir = repo.dir;
  sha = repo.sha;
  for (const name of ['app', 'later', 'stranger']) github.addRepository({ owner: 'acme', name, gitDir });
  const config = loadConfig(
    {
      LAMBKIN_BUILDS_TABLE: storage.buildsTable,
      LAMBKIN_SETTINGS_TABLE: storage.settingsTable,
      LAMBKIN_BUILDER_FUNCTION: 'lambkin-builder',
      LAMBKIN_PUBLIC_URL: 'https://ci.example.test',
      GITHUB_API_URL: github.url,
      LAMBKIN_WEBHOOK_SECRET: SECRET,
      LAMBKIN_GITHUB_APP_ID: String(APP_ID),
      LAMBKIN_GITHUB_APP_PRIVATE_KEY: privateKey,
    },
    ['webhookSecrets'],
  );
  const deps = createIntakeDependencies(config, createMemoryLogger(), {
    documents: storage.clients.documents,
    lambda: createLambdaClient({ endpoints: { lambda: lambda.endpoint } }),
  });
  handler = createWebhookHandler(() => deps);
});

afterAll(async () => {
  await Promise.all([github.close(), lambda.close()]);
  rmSync(gitDir, { recursive: true, force: true });
});

async function deliver(event: string, payload: unknown) {
  return deliverToHandler(handler, SECRET, event, payload);
}

/** A push as GitHub delivers it to an App: it names the installation. */
function appPush(repo: string, installation?: number) {
  const payload = pushPayload({ repo, sha }) as unknown as Record<string, unknown>;
  if (installation !== undefined)
    payload.installation = { id: installation, node_id: 'MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMzE=' };
  else delete payload.installation;
  return payload;
}

describe('the webhook in App mode', () => {
  it("queues a push the App's installation delivered, with a queued check run beside the pending status", async () => {
    const answer = await deliver('push', appPush('acme/app', 31));
    expect(answer.statusCode).toBe(202);
    expect(answer.json).toMatchObject({ queued: true, repo: 'acme/app', number: 1 });
    const runs = github.checkRunsFor('acme/app', sha);
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatchObject({ name: 'Lambkin', status: 'queued', external_id: 'acme/app#1' });
    expect(github.statusesFor('acme/app', sha)[0]).toMatchObject({ state: 'pending', context: 'lambkin' });
    expect(lambda.invocations.map((invocation) => invocation.functionName)).toContain('lambkin-builder');
  });

  it('refuses, saying what to do, a repository the App is not installed on', async () => {
    const answer = await deliver('push', appPush('acme/stranger'));
    expect(answer.statusCode).toBe(403);
    expect(String(answer.json.error)).toMatch(
      /GitHub App is not installed on acme\/stranger.*install the App/,
    );
    expect(github.statusesFor('acme/stranger', sha)).toHaveLength(0);
  });

  it('records installation events, and takes a repository the record names without asking GitHub', async () => {
    const event = examplePayload('installation_repositories', 'added') as unknown as Record<string, unknown>;
    const installation = event.installation as Record<string, unknown>;
    installation.id = 31;
    (installation.account as Record<string, unknown>).login = 'acme';
    event.repositories_added = [
      { id: 2, node_id: 'x', name: 'later', full_name: 'acme/later', private: false },
    ];
    event.repositories_removed = [];
    const recorded = await deliver('installation_repositories', event);
    expect(recorded.statusCode).toBe(200);
    expect(recorded.json).toMatchObject({ recorded: true, installation: 31, added: ['acme/later'] });
    const registry = new DynamoInstallationRegistry(storage.clients.documents, storage.settingsTable);
    expect(await registry.installationOf('ACME/Later')).toBe(31);

    const lookups = () =>
      github.requests.filter((request) => request.path === '/repos/acme/later/installation').length;
    const before = lookups();
    const answer = await deliver('push', appPush('acme/later'));
    expect(answer.statusCode).toBe(202);
    expect(answer.json).toMatchObject({ queued: true, repo: 'acme/later' });
    expect(lookups()).toBe(before);

    // Removed: the record no longer names it (a delivery without an installation then asks GitHub).
    event.action = 'removed';
    event.repositories_removed = event.repositories_added;
    event.repositories_added = [];
    expect((await deliver('installation_repositories', event)).statusCode).toBe(200);
    expect(await registry.installationOf('acme/later')).toBeUndefined();
  });
});
