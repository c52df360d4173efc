/**
 * Approval of fork pull requests (`requireApproval`), through the webhook function made by the
 * composition root: real DynamoDB-compatible storage, the GitHub stand-in as GitHub for a GitHub
 * App (collaborators' permissions, check runs with their buttons), signed webhooks and the Lambda
 * Invoke stand-in. In token mode such pull requests are skipped, saying why.
 */
import { rmSync } from 'node:fs';
import { createLambdaClient } from '../../src/aws/clients.js';
import { loadConfig } from '../../src/config.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import { createWebhookHandler } from '../../src/handlers/webhook.js';
import { DynamoBuildStore } from '../../src/store/builds.js';
import { DynamoSettingsStore, repoScope } from '../../src/store/settings.js';
import { createIntakeDependencies } from '../../src/wiring.js';
import {
  commitFiles,
  createGitRepo,
  startGitHubServer,
  type GitHubStandIn,
} from '../support/github-server.js';
import { startLambdaServer, type LambdaServer } from '../support/lambda-server.js';
import { checkEventPayload, pullRequestPayload, deliverToHandler } from '../support/payloads.js';
import { createTestStorage, type TestStorage } from '../support/storage.js';
import { appKeyPair } from '../support/app-keys.js';

const SECRET = 'approval-intake-secret';
const APP_ID = 9191;
const INSTALLATION = 41;
const { publicKey, privateKey } = appKeyPair();

let storage: TestStorage;
let github: GitHubStandIn;
let lambda: LambdaServer;
let appHandler: ReturnType<typeof createWebhookHandler>;
let tokenHandler: ReturnType<typeof createWebhookHandler>;
let builds: DynamoBuildStore;
let gitDir: string;
let sha: string;

function config(mode: 'app' | 'token') {
  return loadConfig(
    {
      LAMBKIN_BUILDS_TABLE: storage.buildsTable,
      LAMBKIN_SETTINGS_TABLE: storage.settingsTable,
      LAMBKIN_BUILDER_FUNCTION: 'lambkin-builder',
      LAMBKIN_PUBLIC_URL: 'https://ci.example.test',
      GITHUB_API_URL: github.url,
      LAMBKIN_WEBHOOK_SECRET: SECRET,
      ...(mode === 'app'
        ? { LAMBKIN_GITHUB_APP_ID: String(APP_ID), LAMBKIN_GITHUB_APP_PRIVATE_KEY: privateKey }
        : { GITHUB_TOKEN: 'ghp_approvalTokenMode000000000000000000000' }),
    },
    ['webhookSecrets'],
  );
}

beforeAll(async () => {
  storage = await createTestStorage();
  github = await startGitHubServer({
    apps: [{ id: APP_ID, publicKey }],
    installations: [{ id: INSTALLATION, account: 'acme', repositories: ['acme/app', 'acme/open'] }],
  });
  lambda = await startLambdaServer();
  const repo = await createGitRepo({ 'README.md': 'hello\n' });
  gitDir = repo.dir;
  sha = repo.sha;
  const collaborators = { writer: 'write', maintainer: 'maintain' } as const;
  github.addRepository({ owner: 'acme', name: 'app', gitDir, collaborators });
  github.addRepository({ owner: 'acme', name: 'open', gitDir });
  github.addRepository({ owner: 'acme', name: 'tokens', gitDir });
  const settings = new DynamoSettingsStore(storage.clients.documents, storage.settingsTable);
  for (const repo of ['acme/app', 'acme/tokens']) {
    await settings.update(repoScope(repo), () => ({
      build: { pullRequests: { fromForkPublicRepo: { requireApproval: true } } },
    }));
  }
  const clients = {
    documents: storage.clients.documents,
    lambda: createLambdaClient({ endpoints: { lambda: lambda.endpoint } }),
  };
  appHandler = createWebhookHandler(() =>
    createIntakeDependencies(config('app'), createMemoryLogger(), clients),
  );
  tokenHandler = createWebhookHandler(() =>
    createIntakeDependencies(config('token'), createMemoryLogger(), clients),
  );
  builds = new DynamoBuildStore(storage.clients.documents, storage.buildsTable);
});

afterAll(async () => {
  await Promise.all([github.close(), lambda.close()]);
  rmSync(gitDir, { recursive: true, force: true });
});

async function deliver(event: string, payload: unknown, handler = appHandler) {
  return deliverToHandler(handler, SECRET, event, payload);
}

/** As GitHub delivers it to the App: naming the installation (`undefined`: a repository webhook). */
function installed(
  payload: unknown,
  installation: number | undefined = INSTALLATION,
): Record<string, unknown> {
  const record = payload as Record<string, unknown>;
  if (installation === undefined) delete record.installation;
  else record.installation = { id: installation, node_id: 'MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uNDE=' };
  return record;
}

const forkPullRequest = (repo: string, number: number, headSha = sha) =>
  installed(pullRequestPayload({ repo, number, fork: true, headSha }));

const approveClick = (repo: string, sender: string, headSha = sha) =>
  installed(
    checkEventPayload('check_run', 'requested_action', {
      repo,
      sha: headSha,
      externalId: `${repo}#approval`,
      sender,
    }),
  );

const invocations = () => lambda.invocations.length;

describe('fork pull requests that require approval, in App mode', () => {
  it("do not build a check suite's untrusted commit on its own (it may be a fork's)", async () => {
    const before = invocations();
    const suiteSha = 'c'.repeat(40);
    const answer = await deliver(
      'check_suite',
      installed(checkEventPayload('check_suite', 'requested', { repo: 'acme/app', sha: suiteSha })),
    );
    expect(answer.statusCode).toBe(202);
    expect(answer.json).toMatchObject({ ignored: true });
    expect(String(answer.json.reason)).toMatch(/may be a fork's.*requireApproval/);
    expect(invocations()).toBe(before);
    expect(await builds.buildsOfCommit('acme/app', suiteSha)).toEqual([]);
  });

  it('are held: no build, a pending status and an action_required check run with the button', async () => {
    const before = invocations();
    const answer = await deliver('pull_request', forkPullRequest('acme/app', 5));
    expect(answer.statusCode).toBe(202);
    expect(answer.json).toMatchObject({ awaitingApproval: true, repo: 'acme/app', sha, pr: 5 });
    expect(invocations()).toBe(before);
    expect(await builds.buildsOfCommit('acme/app', sha)).toEqual([]);
    expect(github.statusesFor('acme/app', sha)[0]).toMatchObject({
      state: 'pending',
      context: 'lambkin',
      description: "Waiting for approval: a maintainer approves this pull request's code before it runs",
      target_url: 'https://ci.example.test/builds/acme/app',
    });
    const runs = github.checkRunsFor('acme/app', sha);
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatchObject({
      name: 'Lambkin',
      status: 'completed',
      conclusion: 'action_required',
      external_id: 'acme/app#approval',
      details_url: 'https://ci.example.test/builds/acme/app',
      output: { title: 'Waiting for approval', summary: expect.stringContaining('Approve and run') },
      actions: [
        {
          label: 'Approve and run',
          identifier: 'approve',
          description: 'Build this commit once, without secrets',
        },
      ],
    });
  });

  it('refuse an approval from someone with read access only (the author included): 403, nothing queued', async () => {
    const before = invocations();
    for (const sender of ['passer-by', 'outside-contributor']) {
      const answer = await deliver('check_run', approveClick('acme/app', sender));
      expect(answer.statusCode).toBe(403);
      expect(String(answer.json.error)).toMatch(
        new RegExp(
          `@${sender} may not approve builds of acme/app: .*admin, maintain or write.*\\(GitHub says: read\\)`,
        ),
      );
    }
    expect(invocations()).toBe(before);
    expect(await builds.buildsOfCommit('acme/app', sha)).toEqual([]);
    const permissionChecks = github.requests.filter((request) =>
      request.path.startsWith('/repos/acme/app/collaborators/'),
    );
    expect(permissionChecks.map((request) => request.status)).toEqual([200, 200]);
  });

  it('are built once, untrusted, when a writer approves; the approval run turns neutral; a second click queues nothing', async () => {
    const before = invocations();
    const answer = await deliver('check_run', approveClick('acme/app', 'writer'));
    expect(answer.statusCode).toBe(202);
    expect(answer.json).toMatchObject({ queued: true, repo: 'acme/app', approvedBy: 'writer' });
    const number = answer.json.number as number;
    expect(invocations()).toBe(before + 1);
    const queued = await builds.buildsOfCommit('acme/app', sha);
    expect(queued).toHaveLength(1);
    expect(queued[0]).toMatchObject({ number, sha, pr: 5, trusted: false, fork: true });

    const runs = github.checkRunsFor('acme/app', sha);
    const approval = runs.find((run) => run.external_id === 'acme/app#approval');
    expect(approval).toMatchObject({
      status: 'completed',
      conclusion: 'neutral',
      output: { title: `Approved by @writer: build #${number}` },
      actions: [],
    });
    expect(runs.find((run) => run.external_id === `acme/app#${number}`)).toMatchObject({ status: 'queued' });
    expect(github.statusesFor('acme/app', sha)[0]).toMatchObject({
      state: 'pending',
      description: `Build #${number} queued`,
    });

    const again = await deliver('check_run', approveClick('acme/app', 'maintainer'));
    expect(again.statusCode).toBe(202);
    expect(again.json).toMatchObject({
      ignored: true,
      reason: expect.stringMatching(/nothing held for approval/),
    });
    expect(invocations()).toBe(before + 1);
    expect(await builds.buildsOfCommit('acme/app', sha)).toHaveLength(1);
  });

  it('ask again for a newer push, which a maintainer approves (a Re-run of the approval run counts as a click)', async () => {
    const newer = await commitFiles(gitDir, { 'README.md': 'hello again\n' }, 'Newer');
    const pushed = installed(
      pullRequestPayload({ repo: 'acme/app', number: 5, fork: true, headSha: newer, action: 'synchronize' }),
    );
    const held = await deliver('pull_request', pushed);
    expect(held.json).toMatchObject({ awaitingApproval: true, sha: newer });
    expect(github.checkRunsFor('acme/app', newer)[0]).toMatchObject({ conclusion: 'action_required' });
    const before = invocations();
    const rerun = installed(
      checkEventPayload('check_run', 'rerequested', {
        repo: 'acme/app',
        sha: newer,
        externalId: 'acme/app#approval',
        sender: 'maintainer',
      }),
    );
    const answer = await deliver('check_run', rerun);
    expect(answer.json).toMatchObject({ queued: true, approvedBy: 'maintainer' });
    expect(invocations()).toBe(before + 1);
    expect(await builds.buildsOfCommit('acme/app', newer)).toEqual([
      expect.objectContaining({ trusted: false, pr: 5 }),
    ]);
  });

  it('leave sources without requireApproval as they were: built at once', async () => {
    const answer = await deliver('pull_request', forkPullRequest('acme/open', 9));
    expect(answer.statusCode).toBe(202);
    expect(answer.json).toMatchObject({ queued: true, repo: 'acme/open' });
  });
});

describe('fork pull requests that require approval, in token mode', () => {
  it('are skipped, saying that approving needs the GitHub App', async () => {
    const before = invocations();
    const answer = await deliver('pull_request', forkPullRequest('acme/tokens', 3), tokenHandler);
    expect(answer.statusCode).toBe(202);
    expect(answer.json).toMatchObject({ ignored: true });
    expect(String(answer.json.reason)).toMatch(
      /fromForkPublicRepo .*requireApproval.*needs Lambkin to run as a GitHub App \(docs\/github-app\.md\)/,
    );
    expect(invocations()).toBe(before);
    expect(github.statusesFor('acme/tokens', sha)).toEqual([]);
  });
});
