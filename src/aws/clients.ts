/**
 * AWS SDK clients, created once per process and injected. Endpoints come from the SDK's own
 * variables (AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL_LAMBDA,
 * AWS_ENDPOINT_URL_CODEBUILD) unless given.
 */
import { CodeBuildClient } from '@aws-sdk/client-codebuild';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { LambdaClient } from '@aws-sdk/client-lambda';
import { S3Client } from '@aws-sdk/client-s3';
import { recordCommands } from './command-log.js';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { Agent as HttpAgent } from 'node:http';
import { connect as connectSocket } from 'node:net';

export interface AwsClientOptions {
  region?: string;
  /** Explicit endpoints override the SDK's environment variables (tests use them). */
  endpoints?: { dynamodb?: string; s3?: string; lambda?: string; codebuild?: string };
  /**
   * DynamoDB over this Unix socket instead of TCP (the local stack's own clients reach its server
   * directly: src/local/storage-proxy.ts). The endpoint still names the host the requests are signed for.
   */
  dynamodbSocketPath?: string;
  /** Attempts per call, first try included (SDK default 3). */
  maxAttempts?: number;
  /** Fixed credentials (the local stack); otherwise the SDK's own credential chain. */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Time bounds of the Lambda client's HTTP requests. */
  lambdaHttp?: LambdaHttpOptions;
}

export interface LambdaHttpOptions {
  /** Milliseconds to establish a connection (default 2000). */
  connectTimeoutMs?: number;
  /**
   * Milliseconds a whole request may take, after which it fails (and the SDK may retry). Unset by
   * default: the controller's RequestResponse invoke of the runner legitimately lasts minutes. Callers
   * can also pass `requestTimeout` per `send`.
   */
  requestTimeoutMs?: number;
}

/** Connecting to the Lambda endpoint takes milliseconds; a long wait means it is unreachable. */
export const DEFAULT_LAMBDA_CONNECT_TIMEOUT_MS = 2000;

export interface AwsClients {
  dynamodb: DynamoDBClient;
  /** Marshals plain JS objects; what the stores use. */
  documents: DynamoDBDocumentClient;
  s3: S3Client;
  lambda: LambdaClient;
}

/** True when the S3 endpoint is an emulator rather than AWS itself. */
function isCustomS3Endpoint(options: AwsClientOptions): boolean {
  return Boolean(options.endpoints?.s3 ?? process.env.AWS_ENDPOINT_URL_S3);
}

export function createDynamoClients(
  options: AwsClientOptions = {},
): Pick<AwsClients, 'dynamodb' | 'documents'> {
  const dynamodb = recordCommands(
    new DynamoDBClient({
      ...(options.region ? { region: options.region } : {}),
      ...(options.credentials ? { credentials: options.credentials } : {}),
      ...(options.endpoints?.dynamodb ? { endpoint: options.endpoints.dynamodb } : {}),
      ...(options.maxAttempts ? { maxAttempts: options.maxAttempts } : {}),
      ...(options.dynamodbSocketPath
        ? { requestHandler: new NodeHttpHandler({ httpAgent: unixSocketAgent(options.dynamodbSocketPath) }) }
        : {}),
    }),
  );
  const documents = DynamoDBDocumentClient.from(dynamodb, {
    marshallOptions: { removeUndefinedValues: true },
  });
  return { dynamodb, documents };
}

/** An HTTP agent whose every connection goes to the Unix socket `path`, kept alive for reuse. */
function unixSocketAgent(path: string): HttpAgent {
  const agent = new HttpAgent({ keepAlive: true });
  agent.createConnection = () => connectSocket(path);
  return agent;
}

export function createS3Client(options: AwsClientOptions = {}): S3Client {
  const custom = isCustomS3Endpoint(options);
  return recordCommands(
    new S3Client({
      ...(options.region ? { region: options.region } : {}),
      ...(options.credentials ? { credentials: options.credentials } : {}),
      ...(options.endpoints?.s3 ? { endpoint: options.endpoints.s3 } : {}),
      ...(options.maxAttempts ? { maxAttempts: options.maxAttempts } : {}),
      // S3-compatible servers want path-style URLs and do not speak the newer default checksums.
      ...(custom
        ? {
            forcePathStyle: true,
            requestChecksumCalculation: 'WHEN_REQUIRED' as const,
            responseChecksumValidation: 'WHEN_REQUIRED' as const,
          }
        : {}),
    }),
  );
}

export function createLambdaClient(options: AwsClientOptions = {}): LambdaClient {
  const http = options.lambdaHttp ?? {};
  return recordCommands(
    new LambdaClient({
      ...(options.region ? { region: options.region } : {}),
      ...(options.credentials ? { credentials: options.credentials } : {}),
      ...(options.endpoints?.lambda ? { endpoint: options.endpoints.lambda } : {}),
      ...(options.maxAttempts ? { maxAttempts: options.maxAttempts } : {}),
      requestHandler: new NodeHttpHandler({
        connectionTimeout: http.connectTimeoutMs ?? DEFAULT_LAMBDA_CONNECT_TIMEOUT_MS,
        ...(http.requestTimeoutMs ? { requestTimeout: http.requestTimeoutMs } : {}),
        // Without this a request (or per-send) timeout only logs a warning and the call keeps waiting.
        throwOnRequestTimeout: true,
      }),
    }),
  );
}

/** CodeBuild (StartBuild, StopBuild, BatchGetBuilds): the local stack's endpoint, moto, or AWS. */
export function createCodeBuildClient(options: AwsClientOptions = {}): CodeBuildClient {
  return recordCommands(
    new CodeBuildClient({
      ...(options.region ? { region: options.region } : {}),
      ...(options.credentials ? { credentials: options.credentials } : {}),
      ...(options.endpoints?.codebuild ? { endpoint: options.endpoints.codebuild } : {}),
      ...(options.maxAttempts ? { maxAttempts: options.maxAttempts } : {}),
    }),
  );
}

export function createAwsClients(options: AwsClientOptions = {}): AwsClients {
  return {
    ...createDynamoClients(options),
    s3: createS3Client(options),
    lambda: createLambdaClient(options),
  };
}
