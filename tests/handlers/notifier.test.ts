/**
 * The notifier function end to end: DynamoDB stream events in, the exported handler configured from
 * the environment exactly as the template sets it, the DynamoDB/S3 emulators and the Slack stand-in
 * behind it; partial batch failures out.
 */
import { GetCommand } from '@aws-sdk/lib-dynamodb';
import { loadFunctionConfig } from '../../src/aws/secrets.js';
import { REPO_KEYS } from '../../src/core/protocol.js';
import { ConfigurationError } from '../../src/core/errors.js';
import { handler, InvalidStreamEventError } from '../../src/handlers/notifier.js';
import { DynamoBuildStore } from '../../src/store/builds.js';
import { S3LogStore } from '../../src/store/logs.js';
import { DynamoSettingsStore, repoScope } from '../../src/store/settings.js';
import { testBuildRequest } from '../support/builds.js';
import { startSlackServer, type SlackStandIn } from '../support/slack-server.js';
import { createTestStorage, type TestStorage } from '../support/storage.js';
import { streamRecordOf, type AwsStreamRecord } from '../support/stream-records.js';

const VARIABLES = [
  'LAMBKIN_BUILDS_TABLE',
  'LAMBKIN_SETTINGS_TABLE',
  'LAMBKIN_BUCKET',
  'LAMBKIN_PUBLIC_URL',
  'LAMBKIN_SLACK_API_URL',
  'AWS_ENDPOINT_URL_DYNAMODB',
  'AWS_ENDPOINT_URL_S3',
] as const;

let storage: TestStorage;
let slack: SlackStandIn;
let builds: DynamoBuildStore;
const saved: Record<string, string | undefined> = {};

beforeAll(async () => {
  storage = await createTestStorage();
  slack = await startSlackServer();
  for (const name of VARIABLES) saved[name] = process.env[name];
  // What the template sets, plus the SDK's own endpoint variables pointing at the emulators.
  process.env.LAMBKIN_BUILDS_TABLE = storage.buildsTable;
  process.env.LAMBKIN_SETTINGS_TABLE = storage.settingsTable;
  process.env.LAMBKIN_BUCKET = storage.bucket;
  process.env.LAMBKIN_PUBLIC_URL = 'https://ci.example.test';
  process.env.LAMBKIN_SLACK_API_URL = slack.apiUrl;
  process.env.AWS_ENDPOINT_URL_DYNAMODB = storage.backend.dynamodbEndpoint;
  process.env.AWS_ENDPOINT_URL_S3 = storage.backend.s3Endpoint;
  builds = new DynamoBuildStore(storage.clients.documents, storage.buildsTable);
  const settings = new DynamoSettingsStore(storage.clients.documents, storage.settingsTable);
  await settings.update(repoScope('octo/hooked'), () => ({
    notifications: { slack: { webhookUrl: slack.webhookUrl } },
  }));
});

afterAll(async () => {
  await slack.close();
  for (const name of VARIABLES) {
    if (saved[name] === undefined) delete process.env[name];
    else process.env[name] = saved[name];
  }
});

beforeEach(() => slack.reset());

async function rawItem(repo: string, number: number): Promise<Record<string, unknown>> {
  const result = await storage.clients.documents.send(
    new GetCommand({ TableName: storage.buildsTable, Key: { repo, number } }),
  );
  return result.Item ?? {};
}

/** A build queued, started and failed through the store, as its three stream records. */
async function failedBuildRecords(repo: string): Promise<AwsStreamRecord[]> {
  const number = await builds.allocateNumber(repo);
  const queued = await builds.putQueuedBuild(testBuildRequest({ repo, sha: 'f'.repeat(40) }), number, {
    deadline: Date.now() + 60_000,
  });
  const afterQueue = await rawItem(repo, number);
  await builds.transition(queued, { from: 'queued', to: 'running' });
  const afterStart = await rawItem(repo, number);
  await builds.transition(queued, { from: 'running', to: 'failure', reason: 'test failed (exit 1)' });
  const afterEnd = await rawItem(repo, number);
  return [
    streamRecordOf('INSERT', afterQueue),
    streamRecordOf('MODIFY', afterStart, afterQueue),
    streamRecordOf('MODIFY', afterEnd, afterStart),
  ];
}

describe('notifier function handler', () => {
  it('notifies each state change of a batch and reports no failure', async () => {
    const records = await failedBuildRecords('octo/hooked');
    expect(await handler({ Records: records })).toEqual({ batchItemFailures: [] });
    // An incoming webhook: a start message, then the result as a follow-up.
    expect(slack.requests.map((request) => request.kind)).toEqual(['webhook', 'webhook']);
    const logs = new S3LogStore(storage.clients.s3, storage.bucket);
    expect(await logs.getObjectText(REPO_KEYS.page('octo/hooked'))).toMatch(
      /<span class="pill" title="test failed \(exit 1\)">failed<\/span>/,
    );
  });

  it('returns the record it could not handle and the later ones as batch item failures', async () => {
    const [queued, started, ended] = await failedBuildRecords('octo/hooked');
    const broken = { ...started!, dynamodb: { ...started!.dynamodb, OldImage: undefined } };
    expect(await handler({ Records: [queued, broken, ended] })).toEqual({
      batchItemFailures: [
        { itemIdentifier: broken.dynamodb.SequenceNumber },
        { itemIdentifier: ended!.dynamodb.SequenceNumber },
      ],
    });
    expect(slack.requests).toEqual([]);
  });

  it('fails the whole batch when a failed record has no sequence number', async () => {
    const [queued] = await failedBuildRecords('octo/hooked');
    const nameless = {
      ...queued!,
      dynamodb: { ...queued!.dynamodb, SequenceNumber: undefined, NewImage: undefined },
    };
    await expect(handler({ Records: [nameless] })).rejects.toThrow(InvalidStreamEventError);
  });

  it('refuses an event that is not a stream batch', async () => {
    for (const event of [undefined, null, {}, { Records: 'x' }, { rawPath: '/webhook' }]) {
      await expect(handler(event)).rejects.toThrow(InvalidStreamEventError);
    }
  });

  it('refuses to start without the tables and the bucket', async () => {
    await expect(loadFunctionConfig('notifier', {})).rejects.toThrow(ConfigurationError);
    await expect(loadFunctionConfig('notifier', {})).rejects.toThrow(
      /LAMBKIN_BUILDS_TABLE.*LAMBKIN_SETTINGS_TABLE.*LAMBKIN_BUCKET/s,
    );
  });
});
