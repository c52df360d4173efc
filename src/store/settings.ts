/**
 * Operator settings on DynamoDB: one item per scope (`global`, `repo#owner/name`) holding a
 * SettingsDocument. Writes are optimistic (a version attribute), so two concurrent
 * `lambkin config set` calls never lose each other's change.
 */
import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { BatchGetCommand, PutCommand, GetCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { RepoName } from '../core/build.js';
import { mergeSettings, type EffectiveSettings, type SettingsDocument } from '../core/settings.js';
import { LambkinError } from '../errors.js';

export type SettingsScope = { kind: 'global' } | { kind: 'repo'; repo: RepoName };

export const GLOBAL_SCOPE: SettingsScope = { kind: 'global' };
export const repoScope = (repo: RepoName): SettingsScope => ({ kind: 'repo', repo });

export function scopeKey(scope: SettingsScope): string {
  return scope.kind === 'global' ? 'global' : `repo#${scope.repo}`;
}

export interface SettingsStore {
  get(scope: SettingsScope): Promise<SettingsDocument | undefined>;
  /** Applies `change` to the current document and writes it, retrying when another writer raced. */
  update(
    scope: SettingsScope,
    change: (current: SettingsDocument) => SettingsDocument,
  ): Promise<SettingsDocument>;
  /** Global and repo documents merged over the built-in defaults. */
  effective(repo: RepoName): Promise<EffectiveSettings>;
}

const MAX_UPDATE_ATTEMPTS = 5;

export class SettingsConflictError extends LambkinError {
  constructor(scope: SettingsScope) {
    super(
      'SETTINGS_CONFLICT',
      `Settings of ${scopeKey(scope)} kept changing while being updated; try again.`,
    );
  }
}

export class DynamoSettingsStore implements SettingsStore {
  constructor(
    private readonly documents: DynamoDBDocumentClient,
    private readonly tableName: string,
  ) {}

  async get(scope: SettingsScope): Promise<SettingsDocument | undefined> {
    const result = await this.documents.send(
      new GetCommand({ TableName: this.tableName, Key: { scope: scopeKey(scope) }, ConsistentRead: true }),
    );
    return result.Item?.settings as SettingsDocument | undefined;
  }

  async update(
    scope: SettingsScope,
    change: (current: SettingsDocument) => SettingsDocument,
  ): Promise<SettingsDocument> {
    for (let attempt = 0; attempt < MAX_UPDATE_ATTEMPTS; attempt++) {
      const current = await this.documents.send(
        new GetCommand({ TableName: this.tableName, Key: { scope: scopeKey(scope) }, ConsistentRead: true }),
      );
      const version = typeof current.Item?.version === 'number' ? current.Item.version : 0;
      const next = change(structuredClone((current.Item?.settings as SettingsDocument | undefined) ?? {}));
      try {
        await this.documents.send(
          new PutCommand({
            TableName: this.tableName,
            Item: { scope: scopeKey(scope), settings: next, version: version + 1, updatedAt: Date.now() },
            ConditionExpression: version === 0 ? 'attribute_not_exists(#scope)' : '#version = :version',
            ExpressionAttributeNames: version === 0 ? { '#scope': 'scope' } : { '#version': 'version' },
            ...(version === 0 ? {} : { ExpressionAttributeValues: { ':version': version } }),
          }),
        );
        return next;
      } catch (error) {
        const conflict =
          error instanceof ConditionalCheckFailedException ||
          (error instanceof Error && error.name === 'ConditionalCheckFailedException');
        if (!conflict) throw error;
      }
    }
    throw new SettingsConflictError(scope);
  }

  async effective(repo: RepoName): Promise<EffectiveSettings> {
    const keys = [scopeKey(GLOBAL_SCOPE), scopeKey(repoScope(repo))];
    const result = await this.documents.send(
      new BatchGetCommand({
        RequestItems: { [this.tableName]: { Keys: keys.map((scope) => ({ scope })), ConsistentRead: true } },
      }),
    );
    if (Object.keys(result.UnprocessedKeys ?? {}).length > 0) {
      // Rare (throttling); read one by one rather than build with half the settings.
      const [global, perRepo] = await Promise.all([this.get(GLOBAL_SCOPE), this.get(repoScope(repo))]);
      return mergeSettings(global, perRepo);
    }
    const byScope = new Map(
      (result.Responses?.[this.tableName] ?? []).map((item) => [
        item.scope as string,
        item.settings as SettingsDocument,
      ]),
    );
    return mergeSettings(byScope.get(keys[0] ?? ''), byScope.get(keys[1] ?? ''));
  }
}
