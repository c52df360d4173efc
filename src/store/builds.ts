/**
 * Builds on DynamoDB. One item per build (`repo`, `number`), a counter item per repo (`number` 0)
 * for build numbers, one item per webhook delivery (`repo` = `delivery#<id>`) that guards
 * against queueing a delivery twice, one per signed body (`repo` = `body#<event>#<sha256>`) that
 * guards against the same body replayed under a new delivery id, and one per private repository
 * that has a badge link
 * (`repo` = `badge#<owner>/<name>`, `number` 0: its badge token). Every state change is one
 * conditional UpdateItem.
 */
import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import {
  GetCommand,
  PutCommand,
  QueryCommand,
  UpdateCommand,
  type DynamoDBDocumentClient,
} from '@aws-sdk/lib-dynamodb';
import {
  buildTarget,
  logPrefixFor,
  type BuildKey,
  type BuildRecord,
  type BuildRequest,
  type RemoteRunRecord,
  type RepoName,
  type TransitionEvent,
} from '../core/build.js';
import { newLinkToken } from '../core/links.js';
import type { SlackMessageRef } from '../core/notifications.js';
import { canTransition, isTerminal, type BuildState } from '../core/state-machine.js';
import { TransitionRefusedError } from '../core/errors.js';
import { BUILD_INDEXES } from './tables.js';
import type {
  BodyGuardRecord,
  BuildStore,
  DeliveryRecord,
  QueuedBuildOptions,
  TransitionDetails,
  TransitionRequest,
} from '../core/ports.js';

/**
 * The sparse deadline index's partition values: `unfinished` while a build is queued or running,
 * `unreported` once it is terminal until GitHub acknowledged its final status (then removed).
 */
const UNFINISHED = 'unfinished';
const UNREPORTED = 'unreported';
const COUNTER_NUMBER = 0;
const DELIVERY_PREFIX = 'delivery#';
const BODY_PREFIX = 'body#';
const BADGE_PREFIX = 'badge#';
/** Job items (src/store/jobs.ts): `repo` = `job#<owner>/<name>#<number>`, `number` = the job's index. */
export const JOB_PREFIX = 'job#';

/** Attributes that exist on the item for indexing only. */
interface BuildItem extends BuildRecord {
  repoSha: string;
  repoTarget: string;
  unfinished?: string;
}

/**
 * Whether an item's key is a build's, not a repo's counter (`number` 0) or a delivery or body
 * guard (`repo` = `delivery#…`, `body#…`): readers of the raw table (its stream) skip the other kinds.
 */
export function isBuildItemKey(key: { repo?: unknown; number?: unknown }): boolean {
  return (
    typeof key.repo === 'string' &&
    !key.repo.startsWith(DELIVERY_PREFIX) &&
    !key.repo.startsWith(BODY_PREFIX) &&
    !key.repo.startsWith(JOB_PREFIX) &&
    typeof key.number === 'number' &&
    key.number > COUNTER_NUMBER
  );
}

/** A build item as the record it stores, without its index-only attributes. */
export function buildRecordOfItem(item: Record<string, unknown>): BuildRecord {
  return toRecord(item);
}

function toRecord(item: Record<string, unknown>): BuildRecord {
  const {
    repoSha: _sha,
    repoTarget: _target,
    unfinished: _unfinished,
    ...record
  } = item as unknown as BuildItem;
  return record;
}

export function isConditionFailure(error: unknown): boolean {
  return (
    error instanceof ConditionalCheckFailedException ||
    (error instanceof Error && error.name === 'ConditionalCheckFailedException')
  );
}

export class DynamoBuildStore implements BuildStore {
  constructor(
    private readonly documents: DynamoDBDocumentClient,
    private readonly tableName: string,
    private readonly clock: () => number = Date.now,
  ) {}

  async allocateNumber(repo: RepoName): Promise<number> {
    const result = await this.documents.send(
      new UpdateCommand({
        TableName: this.tableName,
        Key: { repo, number: COUNTER_NUMBER },
        UpdateExpression: 'ADD lastNumber :one',
        ExpressionAttributeValues: { ':one': 1 },
        ReturnValues: 'UPDATED_NEW',
      }),
    );
    const value = result.Attributes?.lastNumber;
    if (typeof value !== 'number') throw new Error(`build counter of ${repo} returned no number`);
    return value;
  }

  async putQueuedBuild(
    request: BuildRequest,
    number: number,
    options: QueuedBuildOptions,
  ): Promise<BuildRecord> {
    const at = options.at ?? this.clock();
    const key = { repo: request.repo, number };
    const record: BuildRecord = {
      ...request,
      ...key,
      state: 'queued',
      queuedAt: at,
      deadline: options.deadline,
      logPrefix: logPrefixFor(key),
      events: [{ from: null, to: 'queued', at }],
      ...(options.logToken ? { logToken: options.logToken } : {}),
      ...(options.pageUrl ? { pageUrl: options.pageUrl(number) } : {}),
    };
    const item: BuildItem = {
      ...record,
      repoSha: `${request.repo}#${request.sha}`,
      repoTarget: `${request.repo}#${buildTarget(request)}`,
      unfinished: UNFINISHED,
    };
    await this.documents.send(
      new PutCommand({
        TableName: this.tableName,
        Item: item,
        ConditionExpression: 'attribute_not_exists(#repo)',
        ExpressionAttributeNames: { '#repo': 'repo' },
      }),
    );
    return record;
  }

  async getBuild(key: BuildKey): Promise<BuildRecord | undefined> {
    const result = await this.documents.send(
      new GetCommand({
        TableName: this.tableName,
        Key: { repo: key.repo, number: key.number },
        ConsistentRead: true,
      }),
    );
    return result.Item && key.number !== COUNTER_NUMBER ? toRecord(result.Item) : undefined;
  }

  async transition(key: BuildKey, request: TransitionRequest): Promise<BuildRecord> {
    const item = await transitionItem(this.documents, this.tableName, {
      key: { repo: key.repo, number: key.number },
      label: key,
      request,
      at: request.at ?? this.clock(),
      // Out of the overdue query, into the unreported one until GitHub has the final status.
      ...(isTerminal(request.to) ? { terminalSet: { attribute: 'unfinished', value: UNREPORTED } } : {}),
      current: async () => (await this.getBuild(key))?.state,
    });
    return toRecord(item);
  }

  async recordRemoteRun(key: BuildKey, run: RemoteRunRecord, deadline: number): Promise<BuildRecord> {
    const item = await recordRemoteRunItem(this.documents, this.tableName, {
      key: { repo: key.repo, number: key.number },
      label: key,
      run,
      deadline,
      current: async () => (await this.getBuild(key))?.state,
    });
    return toRecord(item);
  }

  async extendDeadline(key: BuildKey, deadline: number): Promise<void> {
    try {
      await this.documents.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: { repo: key.repo, number: key.number },
          UpdateExpression: 'SET #deadline = :deadline',
          ConditionExpression: '#state = :running AND #deadline < :deadline',
          ExpressionAttributeNames: { '#deadline': 'deadline', '#state': 'state' },
          ExpressionAttributeValues: { ':deadline': deadline, ':running': 'running' },
        }),
      );
    } catch (error) {
      // Later already, or no longer running: nothing to extend.
      if (!isConditionFailure(error)) throw error;
    }
  }

  async claimRemoteFinish(key: BuildKey, buildId: string, at: number): Promise<boolean> {
    return claimRemoteFinishItem(
      this.documents,
      this.tableName,
      { repo: key.repo, number: key.number },
      buildId,
      at,
    );
  }

  async listBuilds(repo: RepoName, options: { limit?: number } = {}): Promise<BuildRecord[]> {
    const limit = options.limit ?? 25;
    const builds: BuildRecord[] = [];
    let startKey: Record<string, unknown> | undefined;
    // A query page stops at 1 MB whatever the Limit: follow the pages until the limit is reached.
    do {
      const page = await this.documents.send(
        new QueryCommand({
          TableName: this.tableName,
          KeyConditionExpression: '#repo = :repo AND #number > :counter',
          ExpressionAttributeNames: { '#repo': 'repo', '#number': 'number' },
          ExpressionAttributeValues: { ':repo': repo, ':counter': COUNTER_NUMBER },
          ScanIndexForward: false,
          Limit: limit - builds.length,
          ...(startKey ? { ExclusiveStartKey: startKey } : {}),
        }),
      );
      builds.push(...(page.Items ?? []).map(toRecord));
      startKey = page.LastEvaluatedKey;
    } while (startKey && builds.length < limit);
    return builds;
  }

  async buildsOfCommit(repo: RepoName, sha: string): Promise<BuildRecord[]> {
    return this.queryIndex(BUILD_INDEXES.bySha, 'repoSha', `${repo}#${sha}`, 25);
  }

  async latestBuildOf(
    repo: RepoName,
    target: Pick<BuildRequest, 'branch' | 'pr' | 'tag'>,
  ): Promise<BuildRecord | undefined> {
    const [latest] = await this.queryIndex(
      BUILD_INDEXES.byTarget,
      'repoTarget',
      `${repo}#${buildTarget(target)}`,
      1,
    );
    return latest;
  }

  async overdueBuilds(now: number, options: { limit?: number } = {}): Promise<BuildRecord[]> {
    const result = await this.documents.send(
      new QueryCommand({
        TableName: this.tableName,
        IndexName: BUILD_INDEXES.byDeadline,
        KeyConditionExpression: '#unfinished = :unfinished AND #deadline < :now',
        ExpressionAttributeNames: { '#unfinished': 'unfinished', '#deadline': 'deadline' },
        ExpressionAttributeValues: { ':unfinished': UNFINISHED, ':now': now },
        Limit: options.limit ?? 100,
      }),
    );
    return (result.Items ?? []).map(toRecord);
  }

  async markReported(key: BuildKey, state: BuildState, at: number = this.clock()): Promise<void> {
    const reported = { '#reportedState': 'reportedState', '#reportedAt': 'reportedAt' };
    const set = 'SET #reportedState = :reported, #reportedAt = :at';
    const keyItem = { repo: key.repo, number: key.number };
    try {
      // The usual case: GitHub got the status of the state the build is in. Once that is the
      // build's terminal state, the build leaves the sweeper's index.
      const terminal = isTerminal(state);
      await this.documents.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: keyItem,
          UpdateExpression: terminal ? `${set} REMOVE #unfinished` : set,
          ConditionExpression: '#state = :reported',
          ExpressionAttributeNames: {
            ...reported,
            '#state': 'state',
            ...(terminal ? { '#unfinished': 'unfinished' } : {}),
          },
          ExpressionAttributeValues: { ':reported': state, ':at': at },
        }),
      );
      return;
    } catch (error) {
      if (!isConditionFailure(error)) throw error;
    }
    // The build moved on (or a late status landed after a newer one): record what GitHub shows and,
    // when the build is over, keep it where the sweeper re-sends its final status.
    const current = await this.getBuild(key);
    if (!current) return;
    const over = isTerminal(current.state);
    await this.documents.send(
      new UpdateCommand({
        TableName: this.tableName,
        Key: keyItem,
        UpdateExpression: over ? `${set}, #unfinished = :unreported` : set,
        ConditionExpression: 'attribute_exists(#repo)',
        ExpressionAttributeNames: {
          ...reported,
          '#repo': 'repo',
          ...(over ? { '#unfinished': 'unfinished' } : {}),
        },
        ExpressionAttributeValues: {
          ':reported': state,
          ':at': at,
          ...(over ? { ':unreported': UNREPORTED } : {}),
        },
      }),
    );
  }

  async unreportedBuilds(endedBefore: number, options: { limit?: number } = {}): Promise<BuildRecord[]> {
    const limit = options.limit ?? 100;
    const found: BuildRecord[] = [];
    let start: Record<string, unknown> | undefined;
    do {
      const result = await this.documents.send(
        new QueryCommand({
          TableName: this.tableName,
          IndexName: BUILD_INDEXES.byDeadline,
          KeyConditionExpression: '#unfinished = :unreported',
          FilterExpression: '#endedAt < :before',
          ExpressionAttributeNames: { '#unfinished': 'unfinished', '#endedAt': 'endedAt' },
          ExpressionAttributeValues: { ':unreported': UNREPORTED, ':before': endedBefore },
          ...(start ? { ExclusiveStartKey: start } : {}),
        }),
      );
      found.push(...(result.Items ?? []).map(toRecord));
      start = result.LastEvaluatedKey;
    } while (start && found.length < limit);
    return found.slice(0, limit);
  }

  async unfinishedBuildsOf(
    repo: RepoName,
    target: Pick<BuildRequest, 'branch' | 'pr' | 'tag'>,
    below: number,
  ): Promise<BuildRecord[]> {
    const result = await this.documents.send(
      new QueryCommand({
        TableName: this.tableName,
        IndexName: BUILD_INDEXES.byTarget,
        KeyConditionExpression: '#key = :value AND #number < :below',
        FilterExpression: '#state IN (:queued, :running)',
        ExpressionAttributeNames: { '#key': 'repoTarget', '#number': 'number', '#state': 'state' },
        ExpressionAttributeValues: {
          ':value': `${repo}#${buildTarget(target)}`,
          ':below': below,
          ':queued': 'queued',
          ':running': 'running',
        },
        ScanIndexForward: false,
        // Older builds of a target are nearly all finished: look at the latest few dozen only.
        Limit: 50,
      }),
    );
    return (result.Items ?? []).map(toRecord);
  }

  /**
   * The latest finished (not cancelled) build of the same branch, PR or tag numbered below `below`:
   * whether a passing build fixed it (notifications), what a badge shows. Undefined when there is none.
   */
  async previousFinishedBuildOf(
    repo: RepoName,
    target: Pick<BuildRequest, 'branch' | 'pr' | 'tag'>,
    below: number,
  ): Promise<BuildRecord | undefined> {
    const result = await this.documents.send(
      new QueryCommand({
        TableName: this.tableName,
        IndexName: BUILD_INDEXES.byTarget,
        KeyConditionExpression: '#key = :value AND #number < :below',
        ExpressionAttributeNames: { '#key': 'repoTarget', '#number': 'number' },
        ExpressionAttributeValues: { ':value': `${repo}#${buildTarget(target)}`, ':below': below },
        ScanIndexForward: false,
        // The previous build is nearly always among the last few; older history does not matter.
        Limit: 20,
      }),
    );
    return (result.Items ?? [])
      .map(toRecord)
      .find((build) => isTerminal(build.state) && build.state !== 'cancelled');
  }

  async badgeTokenOf(repo: RepoName): Promise<string | undefined> {
    const result = await this.documents.send(
      new GetCommand({
        TableName: this.tableName,
        Key: { repo: BADGE_PREFIX + repo, number: COUNTER_NUMBER },
      }),
    );
    const token: unknown = result.Item?.token;
    return typeof token === 'string' && token !== '' ? token : undefined;
  }

  async ensureBadgeToken(repo: RepoName): Promise<string> {
    const existing = await this.badgeTokenOf(repo);
    if (existing) return existing;
    const token = newLinkToken();
    try {
      await this.documents.send(
        new PutCommand({
          TableName: this.tableName,
          Item: { repo: BADGE_PREFIX + repo, number: COUNTER_NUMBER, token, createdAt: this.clock() },
          ConditionExpression: 'attribute_not_exists(#repo)',
          ExpressionAttributeNames: { '#repo': 'repo' },
        }),
      );
      return token;
    } catch (error) {
      if (!isConditionFailure(error)) throw error;
      // Made at the same moment by someone else: theirs is the one.
      const winner = await this.badgeTokenOf(repo);
      if (!winner)
        throw new Error(`the badge token of ${repo} was made but cannot be read back`, { cause: error });
      return winner;
    }
  }

  async replaceBadgeToken(repo: RepoName): Promise<string> {
    const token = newLinkToken();
    await this.documents.send(
      new PutCommand({
        TableName: this.tableName,
        Item: { repo: BADGE_PREFIX + repo, number: COUNTER_NUMBER, token, createdAt: this.clock() },
      }),
    );
    return token;
  }

  /** Remembers where a build's Slack message is, so that its end updates it in place. */
  async recordSlackMessage(key: BuildKey, message: SlackMessageRef): Promise<void> {
    await this.documents.send(
      new UpdateCommand({
        TableName: this.tableName,
        Key: { repo: key.repo, number: key.number },
        UpdateExpression: 'SET #slackMessage = :message',
        ConditionExpression: 'attribute_exists(#repo)',
        ExpressionAttributeNames: { '#slackMessage': 'slackMessage', '#repo': 'repo' },
        ExpressionAttributeValues: { ':message': { channel: message.channel, ts: message.ts } },
      }),
    );
  }

  async getDelivery(deliveryId: string): Promise<DeliveryRecord | undefined> {
    const result = await this.documents.send(
      new GetCommand({
        TableName: this.tableName,
        Key: { repo: DELIVERY_PREFIX + deliveryId, number: 0 },
        ConsistentRead: true,
      }),
    );
    return result.Item ? toDelivery(deliveryId, result.Item) : undefined;
  }

  async claimDelivery(
    deliveryId: string,
    build: BuildKey,
    expiresAt: number,
  ): Promise<{ claimed: boolean; record: DeliveryRecord }> {
    try {
      await this.documents.send(
        new PutCommand({
          TableName: this.tableName,
          Item: {
            repo: DELIVERY_PREFIX + deliveryId,
            number: 0,
            buildRepo: build.repo,
            buildNumber: build.number,
            // Epoch seconds: the table's TTL attribute, so old guards expire in the cloud.
            expiresAt: Math.floor(expiresAt / 1000),
          },
          ConditionExpression: 'attribute_not_exists(#repo)',
          ExpressionAttributeNames: { '#repo': 'repo' },
        }),
      );
      return { claimed: true, record: { deliveryId, build } };
    } catch (error) {
      if (!isConditionFailure(error)) throw error;
      const existing = await this.getDelivery(deliveryId);
      if (!existing)
        throw new Error(`delivery ${deliveryId} was claimed but cannot be read back`, { cause: error });
      return { claimed: false, record: existing };
    }
  }

  async markDeliveryInvoked(deliveryId: string, at: number = this.clock()): Promise<void> {
    await this.documents.send(
      new UpdateCommand({
        TableName: this.tableName,
        Key: { repo: DELIVERY_PREFIX + deliveryId, number: 0 },
        UpdateExpression: 'SET invokedAt = :at',
        ConditionExpression: 'attribute_exists(#repo)',
        ExpressionAttributeNames: { '#repo': 'repo' },
        ExpressionAttributeValues: { ':at': at },
      }),
    );
  }

  async claimBody(
    body: { event: string; bodySha256: string },
    deliveryId: string,
    expiresAt: number,
  ): Promise<{ claimed: boolean; record: BodyGuardRecord }> {
    const key = { repo: `${BODY_PREFIX}${body.event}#${body.bodySha256}`, number: 0 };
    try {
      await this.documents.send(
        new PutCommand({
          TableName: this.tableName,
          Item: { ...key, deliveryId, expiresAt: Math.floor(expiresAt / 1000) },
          ConditionExpression: 'attribute_not_exists(#repo)',
          ExpressionAttributeNames: { '#repo': 'repo' },
        }),
      );
      return { claimed: true, record: { ...body, deliveryId } };
    } catch (error) {
      if (!isConditionFailure(error)) throw error;
      const existing = await this.documents.send(
        new GetCommand({ TableName: this.tableName, Key: key, ConsistentRead: true }),
      );
      if (typeof existing.Item?.deliveryId !== 'string') {
        throw new Error(`body ${key.repo} was claimed but cannot be read back`, { cause: error });
      }
      return { claimed: false, record: { ...body, deliveryId: existing.Item.deliveryId } };
    }
  }

  private async queryIndex(
    index: string,
    attribute: string,
    value: string,
    limit: number,
  ): Promise<BuildRecord[]> {
    const result = await this.documents.send(
      new QueryCommand({
        TableName: this.tableName,
        IndexName: index,
        KeyConditionExpression: '#key = :value',
        ExpressionAttributeNames: { '#key': attribute },
        ExpressionAttributeValues: { ':value': value },
        ScanIndexForward: false,
        Limit: limit,
      }),
    );
    return (result.Items ?? []).map(toRecord);
  }
}

function toDelivery(deliveryId: string, item: Record<string, unknown>): DeliveryRecord {
  return {
    deliveryId,
    build: { repo: String(item.buildRepo), number: Number(item.buildNumber) },
    ...(typeof item.invokedAt === 'number' ? { invokedAt: item.invokedAt } : {}),
  };
}

/** The attribute holding the time a build entered a state. */
/**
 * One conditional state change of an item that carries the state machine (a build, a job): the
 * state, its timestamp, the event and the details, only if the item is in one of the states it may
 * leave for `request.to`. Returns the item as written; throws TransitionRefusedError otherwise.
 */
export async function transitionItem(
  documents: DynamoDBDocumentClient,
  tableName: string,
  change: {
    key: Record<string, string | number>;
    /** Names the item in the refusal. */
    label: BuildKey;
    request: TransitionRequest;
    at: number;
    /** An attribute set when the new state is terminal (the builds' index attribute). */
    terminalSet?: { attribute: string; value: string };
    /** The item's state now, for the refusal's message. */
    current: () => Promise<BuildState | undefined>;
  },
): Promise<Record<string, unknown>> {
  const { request, at, label } = change;
  const allowedFrom = (typeof request.from === 'string' ? [request.from] : [...request.from]).filter((from) =>
    canTransition(from, request.to),
  );
  if (allowedFrom.length === 0) {
    throw new TransitionRefusedError(label.repo, label.number, String(request.from), request.to);
  }
  const event: TransitionEvent = {
    from: allowedFrom.length === 1 ? (allowedFrom[0] ?? null) : null,
    to: request.to,
    at,
    ...(request.reason ? { reason: request.reason } : {}),
  };
  const names: Record<string, string> = {
    '#state': 'state',
    '#events': 'events',
    '#at': timestampAttribute(request.to),
  };
  const values: Record<string, unknown> = { ':to': request.to, ':now': at, ':event': [event], ':none': [] };
  const sets = ['#state = :to', '#at = :now', '#events = list_append(if_not_exists(#events, :none), :event)'];
  const optional: [keyof TransitionDetails, string][] = [
    ['reason', 'description'],
    ['deadline', 'deadline'],
    ['steps', 'steps'],
    ['logPrefix', 'logPrefix'],
  ];
  for (const [field, attribute] of optional) {
    if (request[field] === undefined) continue;
    names[`#${attribute}`] = attribute;
    values[`:${attribute}`] = request[field];
    sets.push(`#${attribute} = :${attribute}`);
  }
  const fromPlaceholders = allowedFrom.map((from, index) => {
    values[`:from${index}`] = from;
    return `:from${index}`;
  });
  if (change.terminalSet && isTerminal(request.to)) {
    names['#terminalSet'] = change.terminalSet.attribute;
    values[':terminalSet'] = change.terminalSet.value;
    sets.push('#terminalSet = :terminalSet');
  }
  try {
    const result = await documents.send(
      new UpdateCommand({
        TableName: tableName,
        Key: change.key,
        UpdateExpression: `SET ${sets.join(', ')}`,
        ConditionExpression: `#state IN (${fromPlaceholders.join(', ')})`,
        ExpressionAttributeNames: names,
        ExpressionAttributeValues: values,
        ReturnValues: 'ALL_NEW',
      }),
    );
    return result.Attributes ?? {};
  } catch (error) {
    if (!isConditionFailure(error)) throw error;
    throw new TransitionRefusedError(
      label.repo,
      label.number,
      allowedFrom.join('|'),
      request.to,
      (await change.current()) ?? 'not recorded',
    );
  }
}

/**
 * Records a CodeBuild run on a running build or job item: refused (TransitionRefusedError) when the
 * item is no longer running (cancelled meanwhile) or already holds this attempt or a later one.
 */
export async function recordRemoteRunItem(
  documents: DynamoDBDocumentClient,
  tableName: string,
  change: {
    key: Record<string, string | number>;
    label: BuildKey;
    run: RemoteRunRecord;
    deadline: number;
    current: () => Promise<BuildState | undefined>;
  },
): Promise<Record<string, unknown>> {
  try {
    const result = await documents.send(
      new UpdateCommand({
        TableName: tableName,
        Key: change.key,
        UpdateExpression: 'SET #remote = :run, #deadline = :deadline',
        ConditionExpression:
          '#state = :running AND (attribute_not_exists(#remote) OR #remote.#attempt < :attempt)',
        ExpressionAttributeNames: {
          '#remote': 'remote',
          '#deadline': 'deadline',
          '#state': 'state',
          '#attempt': 'attempt',
        },
        ExpressionAttributeValues: {
          ':run': change.run,
          ':deadline': change.deadline,
          ':running': 'running',
          ':attempt': change.run.attempt,
        },
        ReturnValues: 'ALL_NEW',
      }),
    );
    return result.Attributes ?? {};
  } catch (error) {
    if (!isConditionFailure(error)) throw error;
    throw new TransitionRefusedError(
      change.label.repo,
      change.label.number,
      'running',
      'running',
      (await change.current()) ?? 'not recorded',
    );
  }
}

/** Sets `remote.finishedAt` once, for the recorded run only: the guard against duplicate completions. */
export async function claimRemoteFinishItem(
  documents: DynamoDBDocumentClient,
  tableName: string,
  key: Record<string, string | number>,
  buildId: string,
  at: number,
): Promise<boolean> {
  try {
    await documents.send(
      new UpdateCommand({
        TableName: tableName,
        Key: key,
        UpdateExpression: 'SET #remote.#finishedAt = :at',
        ConditionExpression: '#remote.#buildId = :id AND attribute_not_exists(#remote.#finishedAt)',
        ExpressionAttributeNames: { '#remote': 'remote', '#finishedAt': 'finishedAt', '#buildId': 'buildId' },
        ExpressionAttributeValues: { ':at': at, ':id': buildId },
      }),
    );
    return true;
  } catch (error) {
    if (!isConditionFailure(error)) throw error;
    return false;
  }
}

function timestampAttribute(state: BuildState): string {
  switch (state) {
    case 'queued':
      return 'queuedAt';
    case 'running':
      return 'startedAt';
    default:
      return 'endedAt';
  }
}
