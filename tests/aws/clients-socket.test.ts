/**
 * createDynamoClients over a Unix socket: the local stack's own clients reach dynalite directly
 * (src/local/storage-proxy.ts), while the endpoint still names the host requests are signed for.
 */
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ListTablesCommand } from '@aws-sdk/client-dynamodb';
import { createDynamoClients } from '../../src/aws/clients.js';
import { startDynamoServer, type RunningServer } from '../../src/local/storage-servers.js';

let folder: string;
let server: RunningServer;

beforeAll(async () => {
  folder = await mkdtemp(join(tmpdir(), 'lambkin-socket-'));
  server = await startDynamoServer({ socketPath: join(folder, 'dynamodb.sock') });
});

afterAll(async () => {
  await server.stop();
  await rm(folder, { recursive: true, force: true });
});

const credentials = { accessKeyId: 'local', secretAccessKey: 'local' };

describe('DynamoDB over a Unix socket', () => {
  it('sends every request to the socket, whatever host the endpoint names', async () => {
    expect((await stat(join(folder, 'dynamodb.sock'))).isSocket()).toBe(true);
    // Nothing listens on port 9 here: a request that went by TCP would fail.
    const { dynamodb } = createDynamoClients({
      region: 'us-east-1',
      credentials,
      endpoints: { dynamodb: 'http://127.0.0.1:9' },
      dynamodbSocketPath: join(folder, 'dynamodb.sock'),
      maxAttempts: 1,
    });
    const answers = await Promise.all(
      Array.from({ length: 5 }, () => dynamodb.send(new ListTablesCommand({}))),
    );
    expect(answers.map((answer) => answer.TableNames)).toEqual(Array.from({ length: 5 }, () => []));

    const overTcp = createDynamoClients({
      region: 'us-east-1',
      credentials,
      endpoints: { dynamodb: 'http://127.0.0.1:9' },
      maxAttempts: 1,
    });
    await expect(overTcp.dynamodb.send(new ListTablesCommand({}))).rejects.toThrow(/ECONNREFUSED/);
  });
});
