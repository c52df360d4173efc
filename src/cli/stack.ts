/**
 * How a command finds the stack it talks to:
 *
 * - `--local [dataDir]`: the embedded stack `lambkin dev` runs, found through the `stack.json` it
 *   writes into its data directory (default `.lambkin/`), signing with the stack's key it holds;
 * - `--stack NAME`: a deployed stack by its CloudFormation name: its outputs name the resources;
 * - neither: the LAMBKIN_* variables, with the AWS SDK's own credential chain and endpoint
 *   variables (AWS_ENDPOINT_URL_*), as the functions themselves read them.
 *
 * Both AWS ways need a region, found before any request (`resolveRegion`): a missing one is a
 * MissingRegionError that says how to set it.
 *
 * GITHUB_TOKEN and GITHUB_API_URL always come from the environment: the stack file holds no secret
 * but the local stack's own key (mode 0600).
 *
 * `secretEnv` values are sealed with the stack's cipher: the local key in the data dir (`--local`),
 * or KMS with LAMBKIN_SETTINGS_KMS_KEY (src/store/secret-cipher.ts).
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { LambdaControllerInvoker } from '../aws/controller-invoker.js';
import { createAwsClients, type AwsClients } from '../aws/clients.js';
import { loadConfig, type LambkinConfig } from '../config.js';
import { githubAccessFor, statusReporterFor } from '../wiring.js';
import type { Logger } from '../core/logger.js';
import { DynamoBuildStore } from '../store/builds.js';
import { S3LogStore } from '../store/logs.js';
import { DynamoSettingsStore } from '../store/settings.js';
import { KmsSecretCipher, LocalSecretCipher, type SecretCipher } from '../store/secret-cipher.js';
import { LocalStackFileError, MissingRegionError, NoLocalStackError } from './cli-errors.js';
import { readStackOutputs } from './stack-outputs.js';
import {
  type ControllerInvoker,
  type StatusReporter,
  type BuildStore,
  type LogStore,
  type SettingsStore,
} from '../core/ports.js';
import { isPlainObject } from '../core/values.js';
import { STACK_FILE_NAME, STACK_FILE_VERSION, type StackFile } from '../local/stack-file.js';

export const DEFAULT_DATA_DIR = '.lambkin';

export function localStackFilePath(dataDir: string): string {
  return join(dataDir, STACK_FILE_NAME);
}

/** Validates a stack file's text; every problem is a LocalStackFileError naming the file. */
export function parseLocalStackFile(text: string, path: string): StackFile {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw new LocalStackFileError(path, 'is not valid JSON');
  }
  if (!isPlainObject(data)) throw new LocalStackFileError(path, 'is not a JSON object');
  if (data.version !== STACK_FILE_VERSION) {
    throw new LocalStackFileError(
      path,
      `has version ${JSON.stringify(data.version)}, but this lambkin reads version ${STACK_FILE_VERSION}`,
    );
  }
  if (typeof data.pid !== 'number' || !Number.isSafeInteger(data.pid) || data.pid <= 0) {
    throw new LocalStackFileError(path, 'has no valid "pid"');
  }
  const requiredText = (value: unknown, field: string): string => {
    if (typeof value !== 'string' || value === '') {
      throw new LocalStackFileError(path, `has no "${field}"`);
    }
    return value;
  };
  const url = (value: unknown, field: string): string => {
    const raw = requiredText(value, field);
    if (!/^https?:\/\/\S+$/.test(raw))
      throw new LocalStackFileError(path, `has no http(s) URL in "${field}"`);
    return raw;
  };
  const endpoints = isPlainObject(data.endpoints) ? data.endpoints : {};
  const tables = isPlainObject(data.tables) ? data.tables : {};
  const credentials = isPlainObject(data.credentials) ? data.credentials : {};
  return {
    version: STACK_FILE_VERSION,
    pid: data.pid,
    endpoints: {
      webhook: url(endpoints.webhook, 'endpoints.webhook'),
      dynamodb: url(endpoints.dynamodb, 'endpoints.dynamodb'),
      s3: url(endpoints.s3, 'endpoints.s3'),
      lambda: url(endpoints.lambda, 'endpoints.lambda'),
      logs: url(endpoints.logs, 'endpoints.logs'),
    },
    tables: {
      builds: requiredText(tables.builds, 'tables.builds'),
      settings: requiredText(tables.settings, 'tables.settings'),
    },
    bucket: requiredText(data.bucket, 'bucket'),
    builderFunction: requiredText(data.builderFunction, 'builderFunction'),
    publicUrl: url(data.publicUrl, 'publicUrl'),
    region: requiredText(data.region, 'region'),
    // An older lambkin dev wrote no key (its servers took any): restarting it writes one.
    credentials: {
      accessKeyId: requiredText(credentials.accessKeyId, 'credentials.accessKeyId'),
      secretAccessKey: requiredText(credentials.secretAccessKey, 'credentials.secretAccessKey'),
    },
  };
}

/** True while a process with this id exists (EPERM: it exists, but belongs to someone else). */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The stack file of a running local stack; NoLocalStackError when there is none. */
export function readLocalStack(dataDir: string, cwd: string): StackFile {
  const shown = dataDir.endsWith('/') ? dataDir : `${dataDir}/`;
  const path = localStackFilePath(resolve(cwd, dataDir));
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new NoLocalStackError(shown);
    throw new LocalStackFileError(path, `cannot be read (${(error as Error).message})`);
  }
  const stack = parseLocalStackFile(text, path);
  if (!isProcessAlive(stack.pid)) {
    throw new NoLocalStackError(shown, `its process ${stack.pid} is gone`);
  }
  return stack;
}

/** The command line's choice of stack (see `addStackOptions`). */
export interface StackOptions {
  /** `--local` alone is `true`; with a value, the data directory. */
  local?: string | boolean;
  stack?: string;
  /** `--region`: the deployed stack's region, before AWS_REGION and the AWS profile's. */
  region?: string;
}

/** What a command uses of the stack: only those settings must be present. */
export type StackNeed = 'builds' | 'settings' | 'logs' | 'builder';

const REQUIRED_SETTINGS: Record<StackNeed, keyof LambkinConfig> = {
  builds: 'buildsTable',
  settings: 'settingsTable',
  logs: 'bucket',
  builder: 'builderFunction',
};

/** The stores and services of one stack, made once per command. */
export interface Stack {
  readonly builds: BuildStore;
  readonly settings: SettingsStore;
  readonly logs: LogStore;
  readonly controller: ControllerInvoker;
  /** Present when GITHUB_TOKEN is set: the commit statuses the CLI changes go through it. */
  readonly statuses: StatusReporter | undefined;
  /** Base of build links; empty when unknown. */
  readonly publicUrl: string;
  readonly queueTimeoutMs: number;
  /**
   * Seals `secretEnv` values the settings store writes (and opens them for `--show-secrets`):
   * the local key with `--local`, KMS when LAMBKIN_SETTINGS_KMS_KEY is set, else none (values are
   * then stored as given).
   */
  readonly cipher: SecretCipher | undefined;
  /** Releases the clients' connections. */
  close(): void;
}

export interface StackEnvironment {
  env: Record<string, string | undefined>;
  cwd: string;
  /** Where the GitHub client's warnings go. */
  logger: Logger;
}

/** The invoke is interactive here: a little more patience than the webhook's 3 s. */
const CLI_CONTROLLER_INVOKE = { attemptTimeoutMs: 3000, deadlineMs: 10_000 };

export async function openStack(
  options: StackOptions,
  needs: readonly StackNeed[],
  environment: StackEnvironment,
): Promise<Stack> {
  if (options.local !== undefined && options.local !== false) {
    const dataDir =
      typeof options.local === 'string' && options.local !== '' ? options.local : DEFAULT_DATA_DIR;
    const local = readLocalStack(dataDir, environment.cwd);
    // GitHub settings and the queue timeout still come from the environment.
    const config = loadConfig(environment.env, []);
    return assemble(
      createAwsClients({
        region: local.region,
        credentials: local.credentials,
        endpoints: {
          dynamodb: local.endpoints.dynamodb,
          s3: local.endpoints.s3,
          lambda: local.endpoints.lambda,
        },
      }),
      {
        ...config,
        buildsTable: local.tables.builds,
        settingsTable: local.tables.settings,
        bucket: local.bucket,
        builderFunction: local.builderFunction,
        publicUrl: local.publicUrl.replace(/\/+$/, ''),
      },
      environment.logger,
      new LocalSecretCipher(resolve(environment.cwd, dataDir)),
    );
  }
  // What the environment lacks is said first; then the region, before any request is sent.
  const fromEnvironment = loadConfig(
    environment.env,
    options.stack ? [] : [...new Set(needs)].map((need) => REQUIRED_SETTINGS[need]),
  );
  const region = await resolveRegion(options.region, environment.env);
  // --stack NAME: the resource names come from the stack's outputs, the rest from the environment.
  const fromStack = options.stack
    ? await readStackOutputs(options.stack, {
        region,
        ...(endpointOf(environment.env, 'CLOUDFORMATION')
          ? { endpoint: endpointOf(environment.env, 'CLOUDFORMATION') }
          : {}),
      })
    : {};
  const config = { ...fromEnvironment, ...fromStack };
  const kmsEndpoint = endpointOf(environment.env, 'KMS');
  return assemble(
    createAwsClients({ region, endpoints: endpointsFrom(environment.env) }),
    config,
    environment.logger,
    config.settingsKmsKey
      ? new KmsSecretCipher(config.settingsKmsKey, {
          region,
          ...(kmsEndpoint ? { endpoint: kmsEndpoint } : {}),
        })
      : undefined,
  );
}

/**
 * The region a deployed stack's clients use: `--region`, else AWS_REGION, else AWS_DEFAULT_REGION
 * (the AWS CLI's variable, which the SDK does not read), else what the SDK finds itself (the
 * profile's `region` in the AWS config file). None: a MissingRegionError, before any request.
 */
export async function resolveRegion(flag: string | undefined, env: StackEnvironment['env']): Promise<string> {
  const named = [flag, env.AWS_REGION, env.AWS_DEFAULT_REGION].map((value) => value?.trim()).find(Boolean);
  if (named) return named;
  // The SDK's own lookup reads files, never the network; a client is the public way to ask it.
  const probe = new DynamoDBClient({});
  try {
    const found = await probe.config.region();
    if (found) return found;
  } catch {
    // "Region is missing": said better below.
  } finally {
    probe.destroy();
  }
  throw new MissingRegionError();
}

function assemble(
  clients: Pick<AwsClients, 'dynamodb' | 'documents' | 's3' | 'lambda'>,
  config: LambkinConfig,
  logger: Logger,
  cipher: SecretCipher | undefined,
): Stack {
  const statuses =
    config.githubToken || config.githubAppId ? statusReporterFor(githubAccessFor(config, logger)) : undefined;
  return {
    builds: new DynamoBuildStore(clients.documents, config.buildsTable),
    settings: new DynamoSettingsStore(clients.documents, config.settingsTable, cipher),
    logs: new S3LogStore(clients.s3, config.bucket),
    controller: new LambdaControllerInvoker(clients.lambda, config.builderFunction, CLI_CONTROLLER_INVOKE),
    statuses,
    publicUrl: config.publicUrl,
    queueTimeoutMs: config.queueTimeoutSeconds * 1000,
    cipher,
    close: () => {
      clients.documents.destroy();
      clients.dynamodb.destroy();
      clients.s3.destroy();
      clients.lambda.destroy();
      if (cipher instanceof KmsSecretCipher) cipher.destroy();
    },
  };
}

/**
 * The SDK's endpoint variables, read from the command's environment (the same as the process's in
 * `lambkin`) rather than left to the SDK, so the two never disagree.
 */
function endpointsFrom(env: StackEnvironment['env']): { dynamodb?: string; s3?: string; lambda?: string } {
  const pick = (service: string): string | undefined => endpointOf(env, service);
  const endpoints = { dynamodb: pick('DYNAMODB'), s3: pick('S3'), lambda: pick('LAMBDA') };
  return Object.fromEntries(Object.entries(endpoints).filter(([, url]) => url !== undefined));
}

/** A service's endpoint override: AWS_ENDPOINT_URL_<SERVICE>, else AWS_ENDPOINT_URL. */
export function endpointOf(env: StackEnvironment['env'], service: string): string | undefined {
  return env[`AWS_ENDPOINT_URL_${service}`]?.trim() || env.AWS_ENDPOINT_URL?.trim() || undefined;
}
