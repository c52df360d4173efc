/**
 * The cloud's secrets: one Secrets Manager secret (LAMBKIN_SECRET_ARN) holding the JSON
 * `{"githubToken": "...", "webhookSecret": "..."}` (token mode) or `{"githubAppId": "...",
 * "githubAppPrivateKey": "...", "webhookSecret": "..."}` (App mode), read once per container at cold start (on the
 * first event, never at module import). `webhookSecret` may hold two secrets, comma-separated, new
 * first, while it is being rotated. Locally there is no secret ARN and the variables GITHUB_TOKEN
 * and LAMBKIN_WEBHOOK_SECRET are used instead.
 *
 * Errors name the secret's ARN and what is wrong with it, never a value.
 */
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { FUNCTION_CONFIG, loadConfig, type FunctionName, type LambkinConfig } from '../config.js';
import { LambkinError } from '../core/errors.js';
import { recordCommands } from './command-log.js';

/** The secret named by LAMBKIN_SECRET_ARN cannot be read or does not have the expected shape. */
export class CloudSecretError extends LambkinError {
  constructor(
    readonly secretArn: string,
    readonly problems: string[],
    options?: { cause?: unknown },
  ) {
    super(
      'CLOUD_SECRET',
      `The secret ${secretArn} (LAMBKIN_SECRET_ARN) ${problems.join('; ')}. It must be a JSON string ` +
        '{"githubToken": "...", "webhookSecret": "..."} (token mode) or {"githubAppId": "...", ' +
        '"githubAppPrivateKey": "<PEM>", "webhookSecret": "..."} (App mode; `lambkin setup app` writes it); ' +
        'webhookSecret: "new,old" while rotating.',
      options,
    );
  }
}

/** What the secret holds, validated: a token (token mode) or an App's id and key (App mode). */
export type CloudSecrets = { webhookSecrets: string[] } & (
  { mode: 'token'; githubToken: string } | { mode: 'app'; githubAppId: string; githubAppPrivateKey: string }
);

/** A Secrets Manager client recorded for the IAM check (src/aws/command-log.ts). */
export function createSecretsManagerClient(): SecretsManagerClient {
  return recordCommands(new SecretsManagerClient({}));
}

/**
 * The config with the GitHub credentials (token or App) and `webhookSecrets` from the secret when
 * `config.secretArn` is set; the config unchanged otherwise (locally: the variables). A client is
 * made only when the secret is read, unless one is given.
 */
export async function withCloudSecrets(
  config: LambkinConfig,
  client?: SecretsManagerClient,
): Promise<LambkinConfig> {
  if (!config.secretArn) return config;
  const secrets = await readCloudSecrets(config.secretArn, client);
  return secrets.mode === 'app'
    ? {
        ...config,
        githubToken: undefined,
        githubAppId: secrets.githubAppId,
        githubAppPrivateKey: secrets.githubAppPrivateKey,
        webhookSecrets: secrets.webhookSecrets,
      }
    : {
        ...config,
        githubToken: secrets.githubToken,
        githubAppId: '',
        githubAppPrivateKey: '',
        webhookSecrets: secrets.webhookSecrets,
      };
}

export async function readCloudSecrets(
  secretArn: string,
  client?: SecretsManagerClient,
): Promise<CloudSecrets> {
  const secretsManager = client ?? createSecretsManagerClient();
  let result;
  try {
    result = await secretsManager.send(new GetSecretValueCommand({ SecretId: secretArn }));
  } catch (error) {
    const reason = error instanceof Error ? `${error.name}: ${error.message}` : 'unknown error';
    throw new CloudSecretError(secretArn, [`could not be read (${reason})`], { cause: error });
  } finally {
    if (!client) secretsManager.destroy();
  }
  if (result.SecretString === undefined) {
    const binary = result.SecretBinary !== undefined;
    throw new CloudSecretError(secretArn, [binary ? 'is binary, not a JSON string' : 'has no value']);
  }
  return parseCloudSecret(secretArn, result.SecretString);
}

/** Validates the secret's text. Never quotes it: a parse error would show part of it. */
export function parseCloudSecret(secretArn: string, text: string): CloudSecrets {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw new CloudSecretError(secretArn, ['is not valid JSON']);
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new CloudSecretError(secretArn, [`is JSON but not an object (it is ${describeType(data)})`]);
  }
  const fields = data as Record<string, unknown>;
  const problems: string[] = [];
  const requiredText = (name: string): string => {
    const value = fields[name];
    if (value === undefined) problems.push(`has no "${name}"`);
    else if (typeof value !== 'string')
      problems.push(`has a "${name}" that is ${describeType(value)}, not text`);
    else if (value.trim() === '') problems.push(`has an empty "${name}"`);
    else return value.trim();
    return '';
  };
  const appMode = fields.githubAppId !== undefined || fields.githubAppPrivateKey !== undefined;
  if (appMode && fields.githubToken !== undefined) {
    problems.push(
      'has both "githubToken" and the App\'s keys: keep one (a deployment is in one mode or the other)',
    );
  }
  const githubToken = appMode ? '' : requiredText('githubToken');
  const githubAppId = appMode ? requiredText('githubAppId') : '';
  const githubAppPrivateKey = appMode ? requiredText('githubAppPrivateKey') : '';
  if (githubAppPrivateKey && !/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(githubAppPrivateKey)) {
    problems.push('has a "githubAppPrivateKey" that is not a PEM private key');
  }
  const webhookSecret = requiredText('webhookSecret');
  const webhookSecrets = webhookSecret
    .split(',')
    .map((secret) => secret.trim())
    .filter(Boolean);
  if (webhookSecret && webhookSecrets.length === 0) problems.push('has no secret in "webhookSecret"');
  if (problems.length > 0) {
    const unknown = Object.keys(fields).filter((key) => !SECRET_FIELDS.includes(key));
    if (unknown.length > 0)
      problems.push(`has unexpected keys ${unknown.map((key) => `"${key}"`).join(', ')}`);
    throw new CloudSecretError(secretArn, problems);
  }
  return appMode
    ? { mode: 'app', githubAppId, githubAppPrivateKey, webhookSecrets }
    : { mode: 'token', githubToken, webhookSecrets };
}

const SECRET_FIELDS = ['githubToken', 'githubAppId', 'githubAppPrivateKey', 'webhookSecret'];

function describeType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

/**
 * The one call a function's cold start makes: its configuration from the environment
 * (FUNCTION_CONFIG), then the cloud secret when LAMBKIN_SECRET_ARN is set.
 */
export async function loadFunctionConfig(
  name: FunctionName,
  env: Record<string, string | undefined> = process.env,
  client?: SecretsManagerClient,
): Promise<LambkinConfig> {
  return withCloudSecrets(loadConfig(env, FUNCTION_CONFIG[name].required), client);
}

/**
 * A handler's dependencies, built once per container on the first invocation. Concurrent first
 * invocations share one build; a build that fails is not kept, so the next invocation tries again
 * (a throttled Secrets Manager call must not break the container for good).
 */
export function onColdStart<T>(build: () => T | Promise<T>): () => Promise<T> {
  let pending: Promise<T> | undefined;
  return () => {
    if (pending) return pending;
    const attempt = (async () => build())();
    pending = attempt;
    attempt.catch(() => {
      if (pending === attempt) pending = undefined;
    });
    return attempt;
  };
}
