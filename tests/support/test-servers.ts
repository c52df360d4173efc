/**
 * Starts the shared loopback storage servers once for the whole jest run. Each suite then makes
 * its own tables and bucket (tests/support/storage.ts), so suites run in parallel.
 * Workers are started after this and inherit the endpoints through the environment.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDynamoServer, startS3Server, type RunningServer } from '../../src/local/storage-servers.js';
import { startMotoServer } from './moto.js';
import { findOnPath } from './tools.js';

declare global {
  var __lambkinTestServers: RunningServer[] | undefined;
  var __lambkinTestS3Directory: string | undefined;
}

export async function startTestServers(): Promise<void> {
  const servers: RunningServer[] = [];
  globalThis.__lambkinTestServers = servers;
  // Every SDK command the tests send, for `npm run check:iam` after the run (scripts/check-iam.ts).
  process.env.LAMBKIN_SDK_COMMAND_LOG ||= join(tmpdir(), 'lambkin-sdk-commands.log');
  writeFileSync(process.env.LAMBKIN_SDK_COMMAND_LOG, '');
  const dynamo = await startDynamoServer();
  servers.push(dynamo);
  globalThis.__lambkinTestS3Directory = mkdtempSync(join(tmpdir(), 'lambkin-test-s3-'));
  const s3 = await startS3Server({ directory: globalThis.__lambkinTestS3Directory });
  servers.push(s3);
  process.env.LAMBKIN_TEST_DYNAMODB_ENDPOINT = dynamo.endpoint;
  process.env.LAMBKIN_TEST_S3_ENDPOINT = s3.endpoint;
  const moto = findOnPath('moto_server');
  if (moto) {
    const motoServer = await startMotoServer(moto);
    servers.push(motoServer);
    process.env.LAMBKIN_TEST_MOTO_ENDPOINT = motoServer.endpoint;
  }
  // Fake credentials: the emulators accept any, and no test may ever reach real AWS.
  process.env.AWS_ACCESS_KEY_ID = 'test-access-key';
  process.env.AWS_SECRET_ACCESS_KEY = 'test-secret-key';
  process.env.AWS_REGION = 'us-east-1';
  delete process.env.AWS_SESSION_TOKEN;
  delete process.env.AWS_PROFILE;
}

export async function stopTestServers(): Promise<void> {
  await Promise.all((globalThis.__lambkinTestServers ?? []).map((server) => server.stop()));
  // The S3-compatible server's objects: every suite's logs and caches (megabytes a run).
  const s3Directory = globalThis.__lambkinTestS3Directory;
  if (s3Directory) rmSync(s3Directory, { recursive: true, force: true });
}
