/**
 * The GitHub App's installations on DynamoDB, kept in the settings table (settings use the `scope`
 * keys `global` and `repo#…`, so these prefixes cannot collide):
 *
 * - one item per repository, `installation#owner/name` (lowercased: GitHub names are
 *   case-insensitive), holding one entry per installation that ever reached it, under the attribute
 *   `installation#<id>`: `{ installationId, account, repo (display case), at, removed? }`;
 * - one item per installation, `installation-id#<id>`, once it was suspended, unsuspended or deleted
 *   (suspend events list no repositories, so the state cannot live on the repositories' items).
 *
 * Deliveries arrive in any order, so every write is conditional on the `at` it would replace: an
 * older event never overwrites a newer one. A removal keeps its entry as a tombstone (`removed`), so
 * a late "added" cannot bring it back. Entries are per installation because a repository moved to
 * another account is removed from one installation and added to another, in either order.
 */
import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { GetCommand, UpdateCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { LambkinError } from '../core/errors.js';
import type { InstallationChange, InstallationRegistry } from '../core/ports.js';

const REPO_PREFIX = 'installation#';
const INSTALLATION_PREFIX = 'installation-id#';
/** Repository items' entries: one attribute per installation. */
const ENTRY_PREFIX = 'installation#';
/** Writes in flight at once for one event (an installation on "all repositories" lists many). */
const WRITE_CONCURRENCY = 8;

/** One installation's record on a repository's item. */
export interface InstallationEntry {
  installationId: number;
  account: string;
  /** `owner/name` as GitHub last spelled it. */
  repo: string;
  /** Epoch ms of the event that wrote the entry. */
  at: number;
  /** Tombstone: the installation no longer reaches the repository (as of `at`). */
  removed?: true;
}

/** A DynamoDB call of the installation registry failed; says which table to check. */
export class InstallationRegistryError extends LambkinError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('INSTALLATION_REGISTRY', message, options);
  }
}

/** The item key of a repository (lowercased). */
export function installationRepoKey(repo: string): string {
  return `${REPO_PREFIX}${repo.toLowerCase()}`;
}

function installationKey(installationId: number): string {
  return `${INSTALLATION_PREFIX}${installationId}`;
}

function isConditionFailure(error: unknown): boolean {
  return (
    error instanceof ConditionalCheckFailedException ||
    (error instanceof Error && error.name === 'ConditionalCheckFailedException')
  );
}

function isEntry(value: unknown): value is InstallationEntry {
  const entry = value as Partial<InstallationEntry> | undefined;
  return typeof entry?.installationId === 'number' && typeof entry.at === 'number';
}

export class DynamoInstallationRegistry implements InstallationRegistry {
  constructor(
    private readonly documents: DynamoDBDocumentClient,
    private readonly tableName: string,
  ) {}

  async apply(change: InstallationChange): Promise<void> {
    const { installationId, account, at } = change;
    if (!Number.isSafeInteger(installationId) || installationId <= 0) {
      throw new InstallationRegistryError(`Installation id ${installationId} is not a positive integer.`);
    }
    if (!Number.isFinite(at))
      throw new InstallationRegistryError(`Installation event time ${at} is not a time.`);
    // The installation's own state first: once a deletion or suspension is recorded, its
    // repositories are refused even if writing their entries fails halfway.
    if (change.deleted) await this.markDeleted(change);
    if (change.suspended !== undefined) await this.setSuspended(change, change.suspended);
    // One write per repository, the last word for a name winning (removal after addition).
    const writes = new Map<string, InstallationEntry>();
    for (const repo of change.added) writes.set(repo.toLowerCase(), { installationId, account, repo, at });
    for (const repo of change.removed) {
      writes.set(repo.toLowerCase(), { installationId, account, repo, at, removed: true });
    }
    const entries = [...writes.values()];
    for (let start = 0; start < entries.length; start += WRITE_CONCURRENCY) {
      await Promise.all(
        entries.slice(start, start + WRITE_CONCURRENCY).map((entry) => this.writeEntry(entry)),
      );
    }
  }

  async installationOf(repo: string): Promise<number | undefined> {
    const item = await this.call(`read the installations of ${repo}`, () =>
      this.documents.send(
        new GetCommand({
          TableName: this.tableName,
          Key: { scope: installationRepoKey(repo) },
          ConsistentRead: true,
        }),
      ),
    );
    const reaching = Object.entries(item.Item ?? {})
      .filter(([name]) => name.startsWith(ENTRY_PREFIX))
      .map(([, value]) => value)
      .filter((value): value is InstallationEntry => isEntry(value) && value.removed !== true)
      .sort((a, b) => b.at - a.at);
    // Normally one; after a move between accounts, the newest installation still in force.
    for (const entry of reaching) {
      if (await this.inForce(entry.installationId)) return entry.installationId;
    }
    return undefined;
  }

  /** Neither suspended nor deleted (an installation never suspended or deleted has no item). */
  private async inForce(installationId: number): Promise<boolean> {
    const result = await this.call(`read installation ${installationId}`, () =>
      this.documents.send(
        new GetCommand({
          TableName: this.tableName,
          Key: { scope: installationKey(installationId) },
          ConsistentRead: true,
        }),
      ),
    );
    return result.Item?.deleted !== true && result.Item?.suspended !== true;
  }

  private async writeEntry(entry: InstallationEntry): Promise<void> {
    await this.conditional(`record installation ${entry.installationId} for ${entry.repo}`, () =>
      this.documents.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: { scope: installationRepoKey(entry.repo) },
          UpdateExpression: 'SET #entry = :entry',
          ConditionExpression: 'attribute_not_exists(#entry) OR #entry.#at < :at',
          ExpressionAttributeNames: { '#entry': `${ENTRY_PREFIX}${entry.installationId}`, '#at': 'at' },
          ExpressionAttributeValues: { ':entry': entry, ':at': entry.at },
        }),
      ),
    );
  }

  private async setSuspended(change: InstallationChange, suspended: boolean): Promise<void> {
    await this.conditional(`record installation ${change.installationId} as suspended: ${suspended}`, () =>
      this.documents.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: { scope: installationKey(change.installationId) },
          UpdateExpression:
            'SET #id = :id, #account = :account, #suspended = :suspended, #suspensionAt = :at',
          ConditionExpression: 'attribute_not_exists(#suspensionAt) OR #suspensionAt < :at',
          ExpressionAttributeNames: {
            '#id': 'installationId',
            '#account': 'account',
            '#suspended': 'suspended',
            '#suspensionAt': 'suspensionAt',
          },
          ExpressionAttributeValues: {
            ':id': change.installationId,
            ':account': change.account,
            ':suspended': suspended,
            ':at': change.at,
          },
        }),
      ),
    );
  }

  /** Unconditional: GitHub never reuses an installation id, so a deletion is final whatever its time. */
  private async markDeleted(change: InstallationChange): Promise<void> {
    await this.call(`record installation ${change.installationId} as deleted`, () =>
      this.documents.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: { scope: installationKey(change.installationId) },
          UpdateExpression:
            'SET #id = :id, #account = :account, #deleted = :deleted, #deletedAt = if_not_exists(#deletedAt, :at)',
          ExpressionAttributeNames: {
            '#id': 'installationId',
            '#account': 'account',
            '#deleted': 'deleted',
            '#deletedAt': 'deletedAt',
          },
          ExpressionAttributeValues: {
            ':id': change.installationId,
            ':account': change.account,
            ':deleted': true,
            ':at': change.at,
          },
        }),
      ),
    );
  }

  /** A conditional write whose refusal means a newer (or the same) event is recorded: nothing to do. */
  private async conditional(action: string, run: () => Promise<unknown>): Promise<void> {
    try {
      await run();
    } catch (error) {
      if (isConditionFailure(error)) return;
      throw this.failure(action, error);
    }
  }

  private async call<T>(action: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (error) {
      throw this.failure(action, error);
    }
  }

  private failure(action: string, error: unknown): InstallationRegistryError {
    const detail = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    return new InstallationRegistryError(
      `Could not ${action} in the DynamoDB table ${this.tableName} (${detail}). Check that the table ` +
        'exists and that this function may read and update it (LAMBKIN_SETTINGS_TABLE).',
      { cause: error },
    );
  }
}
