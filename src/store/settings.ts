/**
 * Operator settings on DynamoDB: one item per scope (`global`, `repo#owner/name`) holding a
 * SettingsDocument. Writes are optimistic (a version attribute), so two concurrent
 * `lambkin config set` calls never lose each other's change.
 *
 * `secretEnv` values and the Slack secrets of `notifications` (webhook URL, bot token) are sealed
 * (src/store/secret-cipher.ts) when written through a store that has
 * a cipher, and stay sealed when read unless the reader asks for `decryptSecrets`: only the builder's
 * controller does, for trusted builds. Plain values written before sealing existed still read as
 * they are (the CLI warns about them), and any write through a store with a cipher seals them.
 */
import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { BatchGetCommand, PutCommand, GetCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { RepoName } from '../core/build.js';
import { SLACK_SECRET_KEYS, type SlackSettings } from '../core/notifications.js';
import { mergeSettings, type EffectiveSettings, type SettingsDocument } from '../core/settings.js';
import { LambkinError } from '../core/errors.js';
// Types only: the webhook's bundle must not hold the KMS cipher (its role has no kms:Decrypt).
import { isSealed, type SecretCipher, type SecretContext } from './secret-cipher.js';
import type { ReadOptions, SettingsScope, SettingsStore } from '../core/ports.js';

export const GLOBAL_SCOPE: SettingsScope = { kind: 'global' };
export const repoScope = (repo: RepoName): SettingsScope => ({ kind: 'repo', repo });

export function scopeKey(scope: SettingsScope): string {
  return scope.kind === 'global' ? 'global' : `repo#${scope.repo}`;
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

/** A `secretEnv` value could not be sealed or opened. Names the variable and scope, never the value. */
export class SettingsSecretError extends LambkinError {
  constructor(
    readonly scope: SettingsScope,
    readonly variable: string,
    reason: string,
    options?: { cause?: unknown },
  ) {
    // A notification secret is named by its whole path (`notifications.slack.token`).
    const name = variable.includes('.') ? variable : `secretEnv.${variable}`;
    super('SETTINGS_SECRET', `${name} of ${scopeKey(scope)} ${reason}`, options);
  }
}

function secretContext(scope: SettingsScope): SecretContext {
  return scope.kind === 'global' ? {} : { repo: scope.repo };
}

/** A SecretCipherError's reason (src/store/secret-cipher.ts), or the error's message. */
function reasonOf(error: unknown): string {
  const reason = (error as { reason?: unknown } | undefined)?.reason;
  return typeof reason === 'string' ? reason : `failed (${(error as Error).message})`;
}

/** Names of the `secretEnv` values stored in plain text (written before values were sealed). */
export function plainSecretNames(document: SettingsDocument | undefined): string[] {
  return Object.entries(document?.secretEnv ?? {})
    .filter(([, value]) => typeof value === 'string' && !isSealed(value))
    .map(([name]) => name);
}

/**
 * A copy of the document with its sealed `secretEnv` values opened for `scope` (the scope it was
 * stored under: a value sealed for another scope does not open). Plain values stay as they are.
 */
export async function openSecrets(
  document: SettingsDocument | undefined,
  scope: SettingsScope,
  cipher: SecretCipher | undefined,
): Promise<SettingsDocument | undefined> {
  if (document?.notifications?.slack) {
    document = await openNotificationSecrets(document, scope, cipher);
  }
  if (!document?.secretEnv) return document;
  const entries = await Promise.all(
    Object.entries(document.secretEnv).map(async ([name, value]): Promise<[string, string]> => {
      if (typeof value !== 'string' || !isSealed(value)) return [name, value];
      if (!cipher) {
        throw new SettingsSecretError(
          scope,
          name,
          'is encrypted, and this settings store has no key to decrypt it (LAMBKIN_SETTINGS_KMS_KEY)',
        );
      }
      try {
        return [name, await cipher.decrypt(value, secretContext(scope))];
      } catch (error) {
        throw new SettingsSecretError(scope, name, reasonOf(error), { cause: error });
      }
    }),
  );
  return { ...document, secretEnv: Object.fromEntries(entries) };
}

/**
 * A copy of the document with each Slack secret (`notifications.slack.webhookUrl`, `.token`)
 * passed through `change` (sealing or opening), named by its path.
 */
async function mapNotificationSecrets(
  document: SettingsDocument,
  change: (path: string, value: string) => Promise<string>,
): Promise<SettingsDocument> {
  const slack = document.notifications?.slack;
  if (!slack) return document;
  const changed: SlackSettings = { ...slack };
  for (const key of SLACK_SECRET_KEYS) {
    const value = slack[key];
    if (typeof value === 'string') changed[key] = await change(`notifications.slack.${key}`, value);
  }
  return { ...document, notifications: { ...document.notifications, slack: changed } };
}

async function openNotificationSecrets(
  document: SettingsDocument,
  scope: SettingsScope,
  cipher: SecretCipher | undefined,
): Promise<SettingsDocument> {
  return mapNotificationSecrets(document, async (path, value) => {
    if (!isSealed(value)) return value;
    if (!cipher) {
      throw new SettingsSecretError(
        scope,
        path,
        'is encrypted, and this settings store has no key to decrypt it (LAMBKIN_SETTINGS_KMS_KEY)',
      );
    }
    try {
      return await cipher.decrypt(value, secretContext(scope));
    } catch (error) {
      throw new SettingsSecretError(scope, path, reasonOf(error), { cause: error });
    }
  });
}

/** A copy of the document with every plain `secretEnv` value and Slack secret sealed for `scope`. */
async function sealSecrets(
  document: SettingsDocument,
  scope: SettingsScope,
  cipher: SecretCipher,
  sealedBefore: Map<string, string>,
): Promise<SettingsDocument> {
  document = await mapNotificationSecrets(document, async (path, value) => {
    if (isSealed(value)) return value;
    const known = sealedBefore.get(JSON.stringify([path, value]));
    if (known !== undefined) return known;
    try {
      const sealed = await cipher.encrypt(value, secretContext(scope));
      sealedBefore.set(JSON.stringify([path, value]), sealed);
      return sealed;
    } catch (error) {
      throw new SettingsSecretError(scope, path, reasonOf(error), { cause: error });
    }
  });
  if (!document.secretEnv || plainSecretNames(document).length === 0) return document;
  const entries = await Promise.all(
    Object.entries(document.secretEnv).map(async ([name, value]): Promise<[string, string]> => {
      if (typeof value !== 'string' || isSealed(value)) return [name, value];
      // A retried write (another writer raced) reuses the value sealed on the first attempt.
      const known = sealedBefore.get(JSON.stringify([name, value]));
      if (known !== undefined) return [name, known];
      try {
        const sealed = await cipher.encrypt(value, secretContext(scope));
        sealedBefore.set(JSON.stringify([name, value]), sealed);
        return [name, sealed];
      } catch (error) {
        throw new SettingsSecretError(scope, name, reasonOf(error), { cause: error });
      }
    }),
  );
  return { ...document, secretEnv: Object.fromEntries(entries) };
}

export class DynamoSettingsStore implements SettingsStore {
  /**
   * `cipher`: seals `secretEnv` values on write and opens them for `decryptSecrets` reads. Without
   * one, values are written as given and sealed values cannot be opened.
   */
  constructor(
    private readonly documents: DynamoDBDocumentClient,
    private readonly tableName: string,
    readonly cipher?: SecretCipher,
  ) {}

  async get(scope: SettingsScope, options: ReadOptions = {}): Promise<SettingsDocument | undefined> {
    const result = await this.documents.send(
      new GetCommand({ TableName: this.tableName, Key: { scope: scopeKey(scope) }, ConsistentRead: true }),
    );
    const document = result.Item?.settings as SettingsDocument | undefined;
    return options.decryptSecrets ? openSecrets(document, scope, this.cipher) : document;
  }

  async update(
    scope: SettingsScope,
    change: (current: SettingsDocument) => SettingsDocument,
  ): Promise<SettingsDocument> {
    const sealedBefore = new Map<string, string>();
    for (let attempt = 0; attempt < MAX_UPDATE_ATTEMPTS; attempt++) {
      const current = await this.documents.send(
        new GetCommand({ TableName: this.tableName, Key: { scope: scopeKey(scope) }, ConsistentRead: true }),
      );
      const version = typeof current.Item?.version === 'number' ? current.Item.version : 0;
      const changed = change(structuredClone((current.Item?.settings as SettingsDocument | undefined) ?? {}));
      const next = this.cipher ? await sealSecrets(changed, scope, this.cipher, sealedBefore) : changed;
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

  async effective(repo: RepoName, options: ReadOptions = {}): Promise<EffectiveSettings> {
    const [global, perRepo] = await this.documentsOf(repo);
    if (!options.decryptSecrets) return mergeSettings(global, perRepo);
    // Only the values that apply are opened: a global one the repository overrides is not.
    const overridden = new Set(Object.keys(perRepo?.secretEnv ?? {}));
    const applying = global?.secretEnv
      ? {
          ...global,
          secretEnv: Object.fromEntries(
            Object.entries(global.secretEnv).filter(([name]) => !overridden.has(name)),
          ),
        }
      : global;
    // Notification secrets are opened as well: the notifier needs them (never the build).
    const opened = await Promise.all([
      openSecrets(applying, GLOBAL_SCOPE, this.cipher),
      openSecrets(perRepo, repoScope(repo), this.cipher),
    ]);
    return mergeSettings(...opened);
  }

  /** The global and the repository's documents, as stored. */
  private async documentsOf(
    repo: RepoName,
  ): Promise<[SettingsDocument | undefined, SettingsDocument | undefined]> {
    const keys = [scopeKey(GLOBAL_SCOPE), scopeKey(repoScope(repo))];
    const result = await this.documents.send(
      new BatchGetCommand({
        RequestItems: { [this.tableName]: { Keys: keys.map((scope) => ({ scope })), ConsistentRead: true } },
      }),
    );
    if (Object.keys(result.UnprocessedKeys ?? {}).length > 0) {
      // Rare (throttling); read one by one rather than build with half the settings.
      return Promise.all([this.get(GLOBAL_SCOPE), this.get(repoScope(repo))]);
    }
    const byScope = new Map(
      (result.Responses?.[this.tableName] ?? []).map((item) => [
        item.scope as string,
        item.settings as SettingsDocument,
      ]),
    );
    return [byScope.get(keys[0] ?? ''), byScope.get(keys[1] ?? '')];
  }
}
