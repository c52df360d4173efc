/**
 * The sweeper's Lambda handler, configured only through the environment as in the cloud, against
 * the real storage servers and the GitHub API stand-in.
 */
import { rm } from 'node:fs/promises';
import { SweepIncompleteError } from '../../src/controller/sweeper.js';
import type { BuildRecord } from '../../src/core/build.js';
import { ConfigurationError } from '../../src/core/errors.js';
import { createGitHubClient } from '../../src/github/client.js';
import { GitHubStatusReporter } from '../../src/github/statuses.js';
import { createSweeperHandler, handler } from '../../src/handlers/sweeper.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import { DynamoBuildStore } from '../../src/store/builds.js';
import { pushRequest } from '../cli/helpers.js';
import {
  createGitRepo,
  startGitHubServer,
  type GitHubStandIn,
  type GitRepo,
} from '../support/github-server.js';
import { createTestStorage, type TestStorage } from '../support/storage.js';

const TOKEN = 'ghp_sweeperHandler00000000000000000000';
const REPO = 'acme/sprocket';
const PUBLIC_URL = 'https://ci.example.test';

/** What EventBridge Scheduler / a schedule rule sends. */
const SCHEDULED_EVENT = {
  version: '0',
  id: '53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa',
  'detail-type': 'Scheduled Event',
  source: 'aws.events',
  account: '123456789012',
  time: '2025-01-01T00:05:00Z',
  region: 'us-east-1',
  resources: ['arn:aws:events:us-east-1:123456789012:rule/lambkin-sweeper'],
  detail: {},
};

let storage: TestStorage;
let github: GitHubStandIn;
let git: GitRepo;
let builds: DynamoBuildStore;
const savedEnv = { ...process.env };

beforeAll(async () => {
  storage = await createTestStorage();
  builds = new DynamoBuildStore(storage.clients.documents, storage.buildsTable);
  git = await createGitRepo({ 'README.md': '# sprocket\n' });
  github = await startGitHubServer({ token: TOKEN });
  github.addRepository({ owner: 'acme', name: 'sprocket', gitDir: git.dir });
});

afterAll(async () => {
  process.env = savedEnv;
  await github.close();
  await rm(git.dir, { recursive: true, force: true });
});

afterEach(() => github.clearFaults());

async function stuck(): Promise<BuildRecord> {
  const number = await builds.allocateNumber(REPO);
  return builds.putQueuedBuild(pushRequest({ repo: REPO, sha: git.sha, deliveryId: `d-${number}` }), number, {
    deadline: Date.now() - 60_000,
  });
}

describe('the sweeper handler', () => {
  it('reads its configuration from the environment on the first event, and retries it after a failure', async () => {
    const build = await stuck();
    process.env = {
      PATH: savedEnv.PATH,
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
      AWS_REGION: 'us-east-1',
      AWS_ENDPOINT_URL_DYNAMODB: storage.backend.dynamodbEndpoint,
      GITHUB_API_URL: github.url,
      GITHUB_TOKEN: TOKEN,
      LAMBKIN_PUBLIC_URL: PUBLIC_URL,
    };
    // Without its table the function cannot start; that failure is not kept for the next event.
    await expect(handler(SCHEDULED_EVENT)).rejects.toThrow(ConfigurationError);
    await expect(handler(SCHEDULED_EVENT)).rejects.toThrow(/LAMBKIN_BUILDS_TABLE is not set/);
    expect((await builds.getBuild(build))?.state).toBe('queued');

    process.env.LAMBKIN_BUILDS_TABLE = storage.buildsTable;
    const result = await handler(SCHEDULED_EVENT);
    expect(result.ended).toEqual([
      expect.objectContaining({ repo: REPO, number: build.number, to: 'error', statusSet: true }),
    ]);
    expect((await builds.getBuild(build))?.state).toBe('error');
    expect(github.statusesFor(REPO, git.sha)[0]).toMatchObject({
      state: 'error',
      description: `Build #${build.number} error: never started: the builder did not pick it up in time`,
      target_url: `${PUBLIC_URL}/builds/${REPO}/${build.number}`,
    });
    // The next scheduled run finds nothing left to do.
    expect(await handler(SCHEDULED_EVENT)).toMatchObject({ found: 0, ended: [] });
  });

  it('fails the invocation when a swept build’s status could not be set, after ending it', async () => {
    const build = await stuck();
    let built = 0;
    const sweep = createSweeperHandler(() => {
      built += 1;
      return {
        builds,
        statuses: new GitHubStatusReporter(createGitHubClient({ baseUrl: github.url, token: TOKEN })),
        logger: createMemoryLogger(),
        publicUrl: PUBLIC_URL,
        statusDelivery: { deadlineMs: 2000, maxAttempts: 2, initialBackoffMs: 20 },
      };
    });
    github.failNext({ mode: '502', method: 'POST', times: 5 });
    const failure = await sweep(SCHEDULED_EVENT).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(SweepIncompleteError);
    expect((failure as SweepIncompleteError).result.ended).toEqual([
      expect.objectContaining({ number: build.number, statusSet: false }),
    ]);
    expect((failure as Error).message).toContain(`${REPO}#${build.number}`);
    expect((await builds.getBuild(build))?.state).toBe('error');

    github.clearFaults();
    expect(await sweep(SCHEDULED_EVENT)).toMatchObject({ found: 0 });
    expect(built).toBe(1);
  });
});
