/**
 * The builds table's stream to notifications: stream records shaped as DynamoDB Streams sends them
 * (NEW_AND_OLD_IMAGES, images marshalled from the items really written by the build store on the
 * DynamoDB emulator), handed to the real BuildNotifier with the S3 emulator and the Slack stand-in.
 * Only a change of state notifies; the notifier's own writes never notify again.
 */
import { GetCommand } from '@aws-sdk/lib-dynamodb';
import { REPO_KEYS } from '../../src/core/protocol.js';
import type { BuildKey, BuildRecord } from '../../src/core/build.js';
import type { NotifiedBuild } from '../../src/core/notifications.js';
import { createMemoryLogger, type MemoryLogger } from '../../src/core/logger.js';
import { BuildNotifier } from '../../src/notify/observer.js';
import { SlackClient } from '../../src/notify/slack.js';
import {
  BuildStreamRecordError,
  decideStreamRecord,
  notifyBuildStream,
  type BuildStreamDependencies,
} from '../../src/notify/stream.js';
import { DynamoBuildStore } from '../../src/store/builds.js';
import { S3LogStore } from '../../src/store/logs.js';
import { DynamoSettingsStore, repoScope } from '../../src/store/settings.js';
import { testBuildRequest } from '../support/builds.js';
import { startSlackServer, type SlackStandIn } from '../support/slack-server.js';
import { streamRecordOf, type AwsStreamRecord } from '../support/stream-records.js';
import { createTestStorage, type TestStorage } from '../support/storage.js';

const PUBLIC_URL = 'https://ci.example.test';

type Item = Record<string, unknown>;

let storage: TestStorage;
let slack: SlackStandIn;
let store: DynamoBuildStore;
let settings: DynamoSettingsStore;
let logs: S3LogStore;
let logger: MemoryLogger;

beforeAll(async () => {
  storage = await createTestStorage();
  slack = await startSlackServer();
  store = new DynamoBuildStore(storage.clients.documents, storage.buildsTable);
  settings = new DynamoSettingsStore(storage.clients.documents, storage.settingsTable);
  logs = new S3LogStore(storage.clients.s3, storage.bucket);
  logger = createMemoryLogger();
});

afterAll(async () => {
  await slack.close();
});

beforeEach(() => {
  slack.reset();
  logger.entries.length = 0;
});

function streamDeps(): BuildStreamDependencies {
  return {
    notifier: new BuildNotifier({
      settings,
      builds: store,
      logs,
      slack: new SlackClient({ apiUrl: slack.apiUrl, baseDelayMs: 50 }),
      logger,
      publicUrl: PUBLIC_URL,
      timeoutMs: 2500,
    }),
    builds: store,
    logger,
  };
}

/** The item as stored, index attributes and all: what a stream image holds. */
async function rawItem(key: { repo: string; number: number }): Promise<Item> {
  const result = await storage.clients.documents.send(
    new GetCommand({ TableName: storage.buildsTable, Key: { repo: key.repo, number: key.number } }),
  );
  if (!result.Item) throw new Error(`no item ${key.repo} ${key.number}`);
  return result.Item;
}

/** Writes a queued build as the webhook does; returns it with its INSERT record. */
async function queue(repo: string): Promise<{ build: BuildRecord; item: Item; record: AwsStreamRecord }> {
  const request = testBuildRequest({ repo, sha: 'c0ffee'.repeat(6) + 'c0ff', commitTitle: 'Change things' });
  const build = await store.putQueuedBuild(request, await store.allocateNumber(repo), {
    deadline: Date.now() + 60_000,
    pageUrl: (number) => `${PUBLIC_URL}/builds/${repo}/${number}`,
  });
  const item = await rawItem(build);
  return { build, item, record: streamRecordOf('INSERT', item) };
}

/** Runs a write on a build and returns the MODIFY record it makes, with the item after it. */
async function modify(key: BuildKey, before: Item, write: () => Promise<unknown>) {
  await write();
  const item = await rawItem(key);
  return { item, record: streamRecordOf('MODIFY', item, before) };
}

const botSettings = () => ({ notifications: { slack: { token: slack.token, channel: '#builds' } } });
const page = (repo: string) => logs.getObjectText(REPO_KEYS.page(repo));
const titleOf = (index = 0) =>
  String(
    ((slack.messages[index]?.body.attachments as Record<string, unknown>[] | undefined) ?? [])[0]?.title,
  );

describe('which stream records notify', () => {
  it('an INSERT of a build and a MODIFY that changes its state, and nothing else', async () => {
    const repo = 'octo/decide';
    const queued = await queue(repo);
    expect(decideStreamRecord(queued.record)).toEqual({
      notify: true,
      build: expect.objectContaining({ repo, number: queued.build.number, state: 'queued' }),
    });
    const running = await modify(queued.build, queued.item, () =>
      store.transition(queued.build, { from: 'queued', to: 'running' }),
    );
    const decided = decideStreamRecord(running.record);
    expect(decided).toEqual({ notify: true, build: expect.objectContaining({ state: 'running' }) });
    // The record handed on is the build as the store reads it: no index-only attributes.
    expect(decided.notify && decided.build).toEqual(await store.getBuild(queued.build));
    expect(Object.keys(running.item)).toEqual(
      expect.arrayContaining(['repoSha', 'repoTarget', 'unfinished']),
    );

    const slackTs = await modify(queued.build, running.item, () =>
      store.recordSlackMessage(queued.build, { channel: 'C1', ts: '1.2' }),
    );
    const reported = await modify(queued.build, slackTs.item, () =>
      store.markReported(queued.build, 'running'),
    );
    expect(decideStreamRecord(slackTs.record)).toEqual({ notify: false, reason: 'state unchanged' });
    expect(decideStreamRecord(reported.record)).toEqual({ notify: false, reason: 'state unchanged' });
  });

  it('skips the counter and delivery-guard items and every removal', async () => {
    const repo = 'octo/other-items';
    await store.allocateNumber(repo);
    const counterBefore = await rawItem({ repo, number: 0 });
    await store.allocateNumber(repo);
    const counterAfter = await rawItem({ repo, number: 0 });
    await store.claimDelivery('guard-1', { repo, number: 1 }, Date.now() + 60_000);
    const guard = await rawItem({ repo: 'delivery#guard-1', number: 0 });
    const records = [
      streamRecordOf('INSERT', counterBefore),
      streamRecordOf('MODIFY', counterAfter, counterBefore),
      streamRecordOf('INSERT', guard),
      streamRecordOf('REMOVE', undefined, guard),
    ];
    expect(records.map((record) => decideStreamRecord(record))).toEqual([
      { notify: false, reason: 'not a build' },
      { notify: false, reason: 'not a build' },
      { notify: false, reason: 'not a build' },
      { notify: false, reason: 'removed' },
    ]);
  });

  it('refuses records a NEW_AND_OLD_IMAGES stream would not send', async () => {
    const { item } = await queue('octo/malformed');
    const withoutOld = streamRecordOf('MODIFY', item);
    expect(() => decideStreamRecord(withoutOld)).toThrow(BuildStreamRecordError);
    expect(() => decideStreamRecord(withoutOld)).toThrow(/NEW_AND_OLD_IMAGES/);
    expect(() => decideStreamRecord({ ...streamRecordOf('INSERT', item), dynamodb: {} })).toThrow(
      /no new image/,
    );
    expect(() => decideStreamRecord({ ...streamRecordOf('INSERT', item), eventName: 'UPDATE' })).toThrow(
      /not INSERT, MODIFY or REMOVE/,
    );
  });
});

describe('the stream through the real notifier', () => {
  it('a running build cancelled by a newer push: its Slack message is updated in place, the page refreshed', async () => {
    const repo = 'octo/superseded';
    await settings.update(repoScope(repo), botSettings);
    const deps = streamDeps();
    const queued = await queue(repo);
    const running = await modify(queued.build, queued.item, () =>
      store.transition(queued.build, { from: 'queued', to: 'running' }),
    );

    expect(await notifyBuildStream(deps, [queued.record, running.record])).toEqual({
      notified: 2,
      skipped: 0,
      unhandled: [],
    });
    expect(slack.requests.map((request) => request.kind)).toEqual(['chat.postMessage']);
    expect(titleOf()).toBe(`${repo} #1 started`);
    expect(await page(repo)).toMatch(/<span class="pill"[^>]*>running<\/span>/);

    // The notifier's own write (the message's ts) and the status report come back on the stream.
    const recorded = await rawItem(queued.build);
    expect(recorded.slackMessage).toEqual({ channel: '#builds', ts: slack.messages[0]?.ts });
    const slackTs = streamRecordOf('MODIFY', recorded, running.item);
    const reported = await modify(queued.build, recorded, () => store.markReported(queued.build, 'running'));
    expect(await notifyBuildStream(deps, [slackTs, reported.record])).toEqual({
      notified: 0,
      skipped: 2,
      unhandled: [],
    });
    expect(slack.requests).toHaveLength(1);

    const cancelled = await modify(queued.build, reported.item, () =>
      store.transition(queued.build, {
        from: ['queued', 'running'],
        to: 'cancelled',
        reason: 'superseded by #2',
      }),
    );
    expect(await notifyBuildStream(deps, [cancelled.record])).toMatchObject({ notified: 1, unhandled: [] });
    // Cancelled builds do not notify by default, but a "started" message is never left as it is.
    expect(slack.requests.map((request) => [request.kind, request.answer])).toEqual([
      ['chat.postMessage', 'ok'],
      ['chat.update', 'ok'],
    ]);
    expect(slack.messages).toHaveLength(1);
    expect(slack.messages[0]?.updates).toBe(1);
    expect(titleOf()).toBe(`${repo} #1 was cancelled`);
    const html = (await page(repo)) ?? '';
    expect(html).toMatch(/<span class="pill" title="superseded by #2">cancelled<\/span>/);
    expect(html).toContain(`<a href="${repo.split('/')[1]}/1">#1</a>`);
    expect(logger.entries.filter((entry) => entry.level === 'warn' || entry.level === 'error')).toEqual([]);
  });

  it("updates the start message even when the build ended before the message's ts was recorded", async () => {
    const repo = 'octo/fast';
    await settings.update(repoScope(repo), botSettings);
    const queued = await queue(repo);
    const running = await modify(queued.build, queued.item, () =>
      store.transition(queued.build, { from: 'queued', to: 'running' }),
    );
    // The build ends before the notifier handled its start: the end's image has no message yet.
    const passed = await modify(queued.build, running.item, () =>
      store.transition(queued.build, { from: 'running', to: 'success', reason: 'passed' }),
    );
    expect(passed.item.slackMessage).toBeUndefined();

    const result = await notifyBuildStream(streamDeps(), [queued.record, running.record, passed.record]);
    expect(result).toEqual({ notified: 3, skipped: 0, unhandled: [] });
    expect(slack.requests.map((request) => request.kind)).toEqual(['chat.postMessage', 'chat.update']);
    expect(slack.messages).toHaveLength(1);
    expect(titleOf()).toBe(`${repo} #1 passed`);
    expect(((await store.getBuild(queued.build)) as NotifiedBuild).slackMessage?.ts).toBe(
      slack.messages[0]?.ts,
    );
  });

  it('reports the record it could not handle and every later one, to be delivered again', async () => {
    const repo = 'octo/partial';
    const first = await queue(repo);
    const second = await queue(repo);
    const third = await queue(repo);
    const broken = { ...second.record, dynamodb: { ...second.record.dynamodb, NewImage: undefined } };
    const result = await notifyBuildStream(streamDeps(), [first.record, broken, third.record]);
    expect(result).toEqual({
      notified: 1,
      skipped: 0,
      unhandled: [broken.dynamodb.SequenceNumber, third.record.dynamodb?.SequenceNumber],
    });
    expect(logger.entries).toContainEqual(
      expect.objectContaining({
        level: 'error',
        message: 'could not handle a builds table stream record; it will be delivered again',
        fields: expect.objectContaining({ sequenceNumber: broken.dynamodb.SequenceNumber, unhandled: 2 }),
      }),
    );
    // The first build was handled: the page lists it.
    expect(await page(repo)).toContain('#1');
  });
});
