/**
 * Lambda entry point of the log route (`LogsFunction`, on the same HTTP API as the webhook, payload
 * format 2.0). Adapts the event to the core route; dependencies are built once per container. The
 * local stack calls a handler made here from its own stores (createLogsHandler with
 * logRouteDependenciesOf), with the events the cloud sends.
 */
import { HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { createAwsClients } from '../aws/clients.js';
import { FUNCTION_CONFIG, loadConfig } from '../config.js';
import {
  handleLogRequest,
  type LogRouteDependencies,
  type LogRouteRequest,
} from '../controller/log-route.js';
import { createJsonLogger } from '../core/logger.js';
import { DynamoBuildStore } from '../store/builds.js';
import { LogStoreError, S3LogStore } from '../store/logs.js';
import { toLambdaResult, type LambdaHttpEvent, type LambdaHttpResult } from './http-event.js';

/** The fields of an HTTP API (2.0) event the log route reads besides the common ones. */
export interface LogsHttpEvent extends LambdaHttpEvent {
  rawQueryString?: string;
  queryStringParameters?: Record<string, string | undefined>;
  requestContext?: { stage?: string; http?: { method?: string; path?: string } };
}

export function toLogRouteRequest(event: LogsHttpEvent): LogRouteRequest {
  const stage = event.requestContext?.stage;
  let path = event.rawPath ?? event.requestContext?.http?.path ?? '/';
  // A named stage (not `$default`) is the first segment of rawPath; links never carry it.
  if (stage && stage !== '$default' && path.startsWith(`/${stage}/`)) path = path.slice(stage.length + 1);
  const parameters = Object.entries(event.queryStringParameters ?? {}).filter(
    (entry): entry is [string, string] => entry[1] !== undefined,
  );
  return {
    method: (event.requestContext?.http?.method ?? 'GET').toUpperCase(),
    path,
    query: event.rawQueryString ?? new URLSearchParams(parameters).toString(),
  };
}

/** HEAD on the bucket: whether a page or log object exists, without reading it. */
export function s3ObjectExists(s3: S3Client, bucket: string): (key: string) => Promise<boolean> {
  return async (key) => {
    try {
      await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      return true;
    } catch (error) {
      const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      if (status === 404) return false;
      const detail = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      throw new LogStoreError(
        `Could not look for s3://${bucket}/${key} (${detail}). Check that the bucket exists and that ` +
          'the log function may read and list it (LAMBKIN_BUCKET).',
        { cause: error },
      );
    }
  };
}

export function createLogsHandler(
  dependencies: () => LogRouteDependencies,
): (event: LogsHttpEvent) => Promise<LambdaHttpResult> {
  let deps: LogRouteDependencies | undefined;
  return async (event) => {
    deps ??= dependencies();
    return toLambdaResult(await handleLogRequest(deps, toLogRouteRequest(event)));
  };
}

/** What the log route is made of: the build records, the log bucket and a logger. */
export interface LogRouteParts {
  builds: LogRouteDependencies['builds'];
  logs: LogRouteDependencies['logs'];
  /** The log bucket, for whether an object exists (HEAD). */
  s3: S3Client;
  bucket: string;
  logger: LogRouteDependencies['logger'];
}

export function logRouteDependenciesOf(parts: LogRouteParts): LogRouteDependencies {
  return {
    builds: parts.builds,
    logs: parts.logs,
    objectExists: s3ObjectExists(parts.s3, parts.bucket),
    logger: parts.logger,
  };
}

export function createLogRouteDependencies(
  env: Record<string, string | undefined> = process.env,
): LogRouteDependencies {
  const config = loadConfig(env, FUNCTION_CONFIG.logs.required);
  const clients = createAwsClients();
  return logRouteDependenciesOf({
    builds: new DynamoBuildStore(clients.documents, config.buildsTable),
    logs: new S3LogStore(clients.s3, config.bucket),
    s3: clients.s3,
    bucket: config.bucket,
    logger: createJsonLogger(),
  });
}

export const handler = createLogsHandler(() => createLogRouteDependencies());
