/**
 * Notifications end to end: real builds through the controller (runner process, S3 and DynamoDB
 * emulators, GitHub stand-in) with the build store observed by a BuildNotifier that talks to the
 * loopback Slack stand-in; filters driven through the real store's transitions; SNS on moto_server.
 */
import { rmSync } from 'node:fs';
import { CreateTopicCommand, SNSClient } from '@aws-sdk/client-sns';
import { runControllerBuild, type ControllerDependencies } from '../../src/controller/controller.js';
import { ProcessRunnerInvoker } from '../../src/controller/runner-invoker.js';
import type { BuildRecord, BuildRequest } from '../../src/core/build.js';
import type { NotifiedBuild } from '../../src/core/notifications.js';
import type { SettingsDocument } from '../../src/core/settings.js';
import { resolveArchiveUrl } from '../../src/github/archive.js';
import { createGitHubClient } from '../../src/github/client.js';
import { GitHubStatusReporter } from '../../src/github/statuses.js';
import { createMemoryLogger, type MemoryLogger } from '../../src/core/logger.js';
import { BuildNotifier, observeBuildStore, type NotifierDependencies } from '../../src/notify/observer.js';
import { SlackClient } from '../../src/notify/slack.js';
import { AwsSnsPublisher } from '../../src/notify/sns.js';
import { DynamoBuildStore } from '../../src/store/builds.js';
import { S3LogStore } from '../../src/store/logs.js';
import { DynamoSettingsStore, GLOBAL_SCOPE, repoScope } from '../../src/store/settings.js';
import { testBuildRequest } from '../support/builds.js';
import {
  createGitRepo,
  startGitHubServer,
  type GitFiles,
  type GitHubStandIn,
} from '../support/github-server.js';
import { npmProject, passingProject } from '../support/npm-projects.js';
import { startSlackServer, type SlackStandIn } from '../support/slack-server.js';
import { createTestStorage, type TestStorage } from '../support/storage.js';
import { requireTool } from '../support/tools.js';

const TOKEN = 'notify-test-token';
const PUBLIC_URL = 'https://ci.example.test';
/** The bound on one state change's notification work in these tests. */
const NOTIFY_TIMEOUT_MS = 2500;

let storage: TestStorage;
let github: GitHubStandIn;
let slack: SlackStandIn;
let store: DynamoBuildStore;
let settings: DynamoSettingsStore;
let logs: S3LogStore;
let logger: MemoryLogger;
const folders: string[] = [];

beforeAll(async () => {
  storage = await createTestStorage();
  github = await startGitHubServer({ token: TOKEN });
  slack = await startSlackServer();
  store = new DynamoBuildStore(storage.clients.documents, storage.buildsTable);
  settings = new DynamoSettingsStore(storage.clients.documents, storage.settingsTable);
  logs = new S3LogStore(storage.clients.s3, storage.bucket);
  logger = createMemoryLogger();
});

afterAll(async () => {
  await github.close();
  await slack.close();
  for (const folder of folders) rmSync(folder, { recursive: true, force: true });
});

beforeEach(() => {
  slack.reset();
  logger.entries.length = 0;
});

function notifierDeps(overrides: Partial<NotifierDependencies> = {}): NotifierDependencies {
  return {
    settings,
    builds: store,
    logs,
    slack: new SlackClient({ apiUrl: slack.apiUrl, baseDelayMs: 50 }),
    logger,
    publicUrl: PUBLIC_URL,
    timeoutMs: NOTIFY_TIMEOUT_MS,
    ...overrides,
  };
}

function controllerDeps(overrides: Partial<NotifierDependencies> = {}): ControllerDependencies {
  const octokit = createGitHubClient({ baseUrl: github.url, token: TOKEN });
  return {
    builds: observeBuildStore(store, new BuildNotifier(notifierDeps(overrides))),
    settings,
    statuses: new GitHubStatusReporter(octokit),
    logs,
    archives: { resolveArchiveUrl: (repo, sha) => resolveArchiveUrl(octokit, repo, sha) },
    runner: new ProcessRunnerInvoker(),
    logger,
    publicUrl: PUBLIC_URL,
    runnerTimeoutMs: 90_000,
    logLimitBytes: 1024 * 1024,
  };
}

async function repository(name: string, files: GitFiles, document: SettingsDocument) {
  const repo = await createGitRepo(files, { message: 'Add the thing <!channel> & more' });
  folders.push(repo.dir);
  github.addRepository({ owner: 'octo', name, gitDir: repo.dir });
  await settings.update(repoScope(`octo/${name}`), () => document);
  return { repo: `octo/${name}`, sha: repo.sha };
}

async function build(
  deps: ControllerDependencies,
  request: Partial<BuildRequest> & Pick<BuildRequest, 'repo' | 'sha'>,
): Promise<{ build: BuildRecord; ms: number }> {
  const full = testBuildRequest({ commitTitle: 'Add the thing <!channel> & more', ...request });
  const queued = await store.putQueuedBuild(full, await store.allocateNumber(full.repo), {
    deadline: Date.now() + 60_000,
  });
  const started = Date.now();
  const result = await runControllerBuild(deps, { kind: 'build', repo: queued.repo, number: queued.number });
  if (!result.ran) throw new Error(`build did not run: ${result.reason}`);
  return { build: result.build, ms: Date.now() - started };
}

const botSettings = (extra: Partial<NonNullable<SettingsDocument['notifications']>['slack']> = {}) => ({
  notifications: { slack: { token: slack.token, channel: '#builds', ...extra } },
});

function attachmentOf(body: Record<string, unknown> | undefined): Record<string, unknown> {
  return ((body?.attachments as Record<string, unknown>[] | undefined) ?? [])[0] ?? {};
}

describe('Slack notifications of real builds', () => {
  it('posts when a build starts and updates that message in place when it ends (bot token)', async () => {
    const { repo, sha } = await repository('slack-bot', passingProject(), botSettings());
    const { build: done } = await build(controllerDeps(), { repo, sha });
    expect(done.state).toBe('success');
    expect(slack.requests.map((request) => [request.kind, request.answer])).toEqual([
      ['chat.postMessage', 'ok'],
      ['chat.update', 'ok'],
    ]);
    expect(slack.messages).toHaveLength(1);
    const [message] = slack.messages;
    expect(message?.updates).toBe(1);
    const attachment = attachmentOf(message?.body);
    expect(attachment).toMatchObject({ color: '#2eb886', title: 'octo/slack-bot #1 passed' });
    expect(attachment.title_link).toBe(`${PUBLIC_URL}/builds/octo/slack-bot/1`);
    const fields = JSON.stringify(attachment.fields);
    expect(fields).toContain('main');
    expect(fields).toContain('octocat');
    expect(fields).toContain('Duration');
    // The commit title is someone's text: it cannot mention @channel.
    expect(fields).toContain('&lt;!channel&gt; &amp; more');
    expect(fields).not.toContain('<!channel>');
    const stored = (await store.getBuild(done)) as NotifiedBuild;
    expect(stored.slackMessage).toEqual({ channel: '#builds', ts: message?.ts });
  });

  it('posts a follow-up through an incoming webhook, which cannot update', async () => {
    const { repo, sha } = await repository('slack-webhook', passingProject(), {
      notifications: { slack: { webhookUrl: slack.webhookUrl } },
    });
    await build(controllerDeps(), { repo, sha });
    expect(slack.requests.map((request) => request.kind)).toEqual(['webhook', 'webhook']);
    expect(slack.messages.map((message) => attachmentOf(message.body).title)).toEqual([
      'octo/slack-webhook #1 started',
      'octo/slack-webhook #1 passed',
    ]);
  });

  it('carries the masked last lines of the failing step', async () => {
    const secret = 'hunter2-very-secret-value';
    const project = npmProject({
      test: 'echo "first line"; echo "the token is $DEPLOY_TOKEN"; echo "assertion failed: 2 + 2 = 5"; exit 3',
    });
    const { repo, sha } = await repository('slack-failure', project, {
      ...botSettings(),
      secretEnv: { DEPLOY_TOKEN: secret },
    });
    const { build: done } = await build(controllerDeps(), { repo, sha });
    expect(done.state).toBe('failure');
    const attachment = attachmentOf(slack.messages[0]?.body);
    expect(attachment.color).toBe('#d00000');
    const text = String(attachment.text);
    expect(text).toContain('Last lines of test:');
    expect(text).toContain('the token is ***');
    expect(text).toContain('assertion failed: 2 + 2 = 5');
    expect(text).not.toContain(secret);
    expect(text).not.toContain('\u001b');
    expect(JSON.stringify(slack.requests)).not.toContain(secret);
  });

  it('honours 429 Retry-After, and the build is unaffected', async () => {
    const { repo, sha } = await repository('slack-429', passingProject(), botSettings());
    slack.failNext({ status: 429, retryAfterSeconds: 1 });
    const { build: done } = await build(controllerDeps(), { repo, sha });
    expect(done.state).toBe('success');
    expect(slack.requests.map((request) => [request.kind, request.answer])).toEqual([
      ['chat.postMessage', '429'],
      ['chat.postMessage', 'ok'],
      ['chat.update', 'ok'],
    ]);
    const [limited, retried] = slack.requests;
    expect((retried?.at ?? 0) - (limited?.at ?? 0)).toBeGreaterThanOrEqual(950);
    expect(github.statusesFor(repo, sha)[0]?.state).toBe('success');
  });

  it.each([
    ['answers 500', { status: 500 as const }],
    ['closes the socket', { close: true as const }],
  ])(
    'never fails the build when Slack %s, and holds it up no longer than the bound',
    async (_name, failure) => {
      const { repo, sha } = await repository(
        `slack-down-${'close' in failure ? 'closed' : '500'}`,
        passingProject(),
        botSettings(),
      );
      slack.failAlways(failure);
      const { build: done } = await build(controllerDeps(), { repo, sha });
      expect(done.state).toBe('success');
      expect(github.statusesFor(repo, sha)[0]?.state).toBe('success');
      expect(slack.messages).toHaveLength(0);
      expect(logger.entries.filter((entry) => entry.level === 'error')).toEqual([]);
      expect(logger.entries.map((entry) => entry.message)).toContain('could not notify Slack');

      // Each state change's notification work ends, whatever Slack does: by itself (Slack's failure
      // logged) or at the notifier's own timeout (the work left behind, logged). Either way it
      // does not hang: the time bound is four times that timeout, to mean only that.
      const running = { ...done, state: 'running' as const };
      const logged = logger.entries.length;
      const started = Date.now();
      await new BuildNotifier(notifierDeps()).buildChanged(running);
      const ms = Date.now() - started;
      const ended = logger.entries.slice(logged).map((entry) => entry.message);
      expect(ended).toEqual(
        expect.arrayContaining([
          expect.stringMatching(
            /^could not (send notifications|notify Slack)$|^notifications took too long and were left behind/,
          ),
        ]),
      );
      expect(ms).toBeLessThan(4 * NOTIFY_TIMEOUT_MS);
    },
  );
});

/** A build driven through the observed store (no runner): queued, running, then `to`. */
async function endBuild(
  observed: DynamoBuildStore,
  request: Partial<BuildRequest> & Pick<BuildRequest, 'repo'>,
  to: 'success' | 'failure' | 'error' | 'cancelled',
): Promise<BuildRecord> {
  const full = testBuildRequest({ sha: 'a'.repeat(40), ...request });
  const queued = await observed.putQueuedBuild(full, await observed.allocateNumber(full.repo), {
    deadline: Date.now() + 60_000,
  });
  await observed.transition(queued, { from: 'queued', to: 'running' });
  return observed.transition(queued, { from: 'running', to, reason: `ended ${to}` });
}

describe('which results notify', () => {
  it('failures and fixes only, on the branches named', async () => {
    const repo = 'octo/filtered';
    await settings.update(repoScope(repo), () => ({
      notifications: {
        slack: { webhookUrl: slack.webhookUrl, on: ['failure', 'fixed'], branches: ['main', 'release/*'] },
      },
    }));
    const observed = observeBuildStore(store, new BuildNotifier(notifierDeps()));
    const titles = () => slack.messages.map((message) => String(attachmentOf(message.body).title));

    await endBuild(observed, { repo }, 'success'); // #1 passes: nothing
    await endBuild(observed, { repo }, 'failure'); // #2 fails: told
    await endBuild(observed, { repo }, 'cancelled'); // #3 cancelled: nothing, and not "previous"
    await endBuild(observed, { repo }, 'success'); // #4 fixes #2: told
    await endBuild(observed, { repo }, 'success'); // #5 passes again: nothing
    await endBuild(observed, { repo, branch: 'feature/x', ref: 'refs/heads/feature/x' }, 'failure'); // #6: not a named branch
    await endBuild(observed, { repo, branch: 'release/1.x', ref: 'refs/heads/release/1.x' }, 'failure'); // #7
    // A pull request into main counts as main.
    await endBuild(
      observed,
      { repo, event: 'pull_request', pr: 9, branch: 'topic', baseBranch: 'main', ref: 'refs/heads/topic' },
      'failure',
    ); // #8
    // An untrusted build of main (a check suite's: its commit may be a fork's) tells nobody.
    await endBuild(observed, { repo, trusted: false }, 'failure'); // #9
    expect(titles()).toEqual([
      'octo/filtered #2 failed',
      'octo/filtered #4 fixed',
      'octo/filtered #7 failed',
      'octo/filtered #8 failed',
    ]);
  });

  it('a repository can turn off what the global settings turn on', async () => {
    const repo = 'octo/quiet';
    await settings.update(GLOBAL_SCOPE, () => ({
      notifications: { slack: { webhookUrl: slack.webhookUrl } },
    }));
    await settings.update(repoScope(repo), () => ({ notifications: { slack: { enabled: false } } }));
    try {
      const observed = observeBuildStore(store, new BuildNotifier(notifierDeps()));
      await endBuild(observed, { repo }, 'failure');
      expect(slack.requests).toEqual([]);
      await endBuild(observed, { repo: 'octo/loud' }, 'failure');
      expect(slack.requests.map((request) => request.kind)).toEqual(['webhook', 'webhook']);
    } finally {
      await settings.update(GLOBAL_SCOPE, () => ({}));
    }
  });
});

describe('SNS notifications', () => {
  const moto = process.env.LAMBKIN_TEST_MOTO_ENDPOINT;
  if (!requireTool('moto_server', 'SNS notifications against moto_server', moto !== undefined) || !moto)
    return;

  it('publishes one message per finished build, with subject and filterable attributes', async () => {
    const sns = new SNSClient({ endpoint: moto, region: 'us-east-1' });
    const topic = await sns.send(new CreateTopicCommand({ Name: `lambkin-builds-${Date.now()}` }));
    const topicArn = topic.TopicArn ?? '';
    const repo = 'octo/sns';
    await settings.update(repoScope(repo), () => ({ notifications: { sns: { topicArn } } }));
    const observed = observeBuildStore(
      store,
      new BuildNotifier(notifierDeps({ slack: undefined, sns: new AwsSnsPublisher({ endpoint: moto }) })),
    );
    await endBuild(observed, { repo }, 'failure');
    await endBuild(observed, { repo }, 'success');

    const data = (await (await fetch(`${moto}/moto-api/data.json`)).json()) as {
      sns: {
        Topic: {
          arn: string;
          sent_notifications: [string, string, string, Record<string, { Value: string }>][];
        }[];
      };
    };
    const sent = data.sns.Topic.find((candidate) => candidate.arn === topicArn)?.sent_notifications ?? [];
    expect(sent.map(([, , subject]) => subject)).toEqual([
      'Lambkin: octo/sns #1 failed',
      'Lambkin: octo/sns #2 fixed',
    ]);
    const [, message, , attributes] = sent[0] ?? [];
    expect(attributes).toMatchObject({
      state: { Value: 'failure' },
      result: { Value: 'failure' },
      repo: { Value: repo },
      branch: { Value: 'main' },
    });
    expect(JSON.parse(message ?? '{}')).toMatchObject({
      repo,
      number: 1,
      state: 'failure',
      url: `${PUBLIC_URL}/builds/octo/sns/1`,
    });
    expect(sent[1]?.[3]).toMatchObject({ state: { Value: 'success' }, result: { Value: 'fixed' } });
  });
});
