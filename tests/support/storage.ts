/**
 * Storage backends for tests: the npm emulators (always) and moto_server (where installed; required
 * on CI). Each suite makes its own uniquely named tables and bucket, so suites run in parallel.
 */
import { randomBytes } from 'node:crypto';
import { CreateTableCommand } from '@aws-sdk/client-dynamodb';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { createDynamoClients, createS3Client, type AwsClients } from '../../src/aws/clients.js';
import { buildsTableDefinition, settingsTableDefinition } from '../../src/store/tables.js';
import { requireTool } from './tools.js';

export interface StorageBackend {
  name: 'npm-emulators' | 'moto';
  dynamodbEndpoint: string;
  s3Endpoint: string;
}

function requiredEnv(name: string): string {
  const value = process.env[name];
  if (!value)
    throw new Error(`${name} is not set: run the tests through jest (tests/support/global-setup.ts).`);
  return value;
}

export function npmEmulators(): StorageBackend {
  return {
    name: 'npm-emulators',
    dynamodbEndpoint: requiredEnv('LAMBKIN_TEST_DYNAMODB_ENDPOINT'),
    s3Endpoint: requiredEnv('LAMBKIN_TEST_S3_ENDPOINT'),
  };
}

/**
 * The backends a storage suite runs against. Call at describe level: where moto_server is absent it
 * registers a visibly skipped test (or a failing one on CI).
 */
export function storageBackends(): StorageBackend[] {
  const backends = [npmEmulators()];
  const moto = process.env.LAMBKIN_TEST_MOTO_ENDPOINT;
  if (requireTool('moto_server', 'storage tests against moto_server', moto !== undefined) && moto) {
    backends.push({ name: 'moto', dynamodbEndpoint: moto, s3Endpoint: moto });
  }
  return backends;
}

export function uniqueName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
}

export interface TestStorage {
  backend: StorageBackend;
  clients: Pick<AwsClients, 'dynamodb' | 'documents' | 's3'>;
  buildsTable: string;
  settingsTable: string;
  bucket: string;
}

/** Fresh tables and a fresh bucket on the backend, with clients pointed at it. */
export async function createTestStorage(backend: StorageBackend = npmEmulators()): Promise<TestStorage> {
  const endpoints = { dynamodb: backend.dynamodbEndpoint, s3: backend.s3Endpoint };
  const clients = { ...createDynamoClients({ endpoints }), s3: createS3Client({ endpoints }) };
  const buildsTable = uniqueName('builds');
  const settingsTable = uniqueName('settings');
  const bucket = uniqueName('logs').toLowerCase();
  await clients.dynamodb.send(new CreateTableCommand(buildsTableDefinition(buildsTable)));
  await clients.dynamodb.send(new CreateTableCommand(settingsTableDefinition(settingsTable)));
  await clients.s3.send(new CreateBucketCommand({ Bucket: bucket }));
  return { backend, clients, buildsTable, settingsTable, bucket };
}
