/**
 * The local stack authenticates its callers: its storage servers and its Invoke API answer only
 * requests signed with the stack's key (or, for presigned URLs and upload forms, a per-build key it
 * issued), no endpoint speaks CORS, and a hostile build step that finds the stack's ports in
 * /proc/net reads, writes and invokes nothing. Real servers on loopback, no mocks.
 */
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ScanCommand } from '@aws-sdk/client-dynamodb';
import { PutCommand } from '@aws-sdk/lib-dynamodb';
import { InvokeCommand } from '@aws-sdk/client-lambda';
import {
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { createPresignedPost } from '@aws-sdk/s3-presigned-post';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { createAwsClients, createS3Client, type AwsClients } from '../../src/aws/clients.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import { startLocalStack, type LocalStack } from '../../src/local/stack.js';
import { STACK_FILE_NAME } from '../../src/local/stack-file.js';
import { createGitRepo, startGitHubServer, type GitHubStandIn } from '../support/github-server.js';
import { npmProject } from '../support/npm-projects.js';
import { postWebhook, pushPayload } from '../support/payloads.js';

const SECRET = 'stack-access-secret';
const TOKEN = 'stack-access-token';
const PROBE = readFileSync(fileURLToPath(new URL('./stack-probe.mjs', import.meta.url)), 'utf8');

let github: GitHubStandIn;
let dataDir: string;
let stack: LocalStack;
const cleanups: string[] = [];

beforeAll(async () => {
  github = await startGitHubServer({ token: TOKEN });
  dataDir = mkdtempSync(join(tmpdir(), 'lambkin-stack-access-'));
  stack = await startLocalStack({
    dataDir,
    port: 0,
    githubApiUrl: github.url,
    githubToken: TOKEN,
    webhookSecret: SECRET,
    retryDelaysMs: [50, 50],
    logger: createMemoryLogger(),
  });
}, 60_000);

afterAll(async () => {
  await stack?.stop();
  await github.close();
  rmSync(dataDir, { recursive: true, force: true });
  for (const dir of cleanups) rmSync(dir, { recursive: true, force: true });
});

/** The stack's clients, but signing with another key. */
function clientsWith(credentials: { accessKeyId: string; secretAccessKey: string }): AwsClients {
  return createAwsClients({
    region: stack.file.region,
    credentials,
    maxAttempts: 1,
    endpoints: {
      dynamodb: stack.file.endpoints.dynamodb,
      s3: stack.file.endpoints.s3,
      lambda: stack.file.endpoints.lambda,
    },
  });
}

async function statusOf(call: () => Promise<unknown>): Promise<number | 'accepted'> {
  try {
    await call();
    return 'accepted';
  } catch (error) {
    return (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode ?? -1;
  }
}

/** The settings table as stored (every scope). */
async function globalSettingsText(): Promise<string> {
  const scan = await stack.clients.dynamodb.send(new ScanCommand({ TableName: stack.config.settingsTable }));
  return JSON.stringify(scan.Items);
}

async function objectExists(key: string): Promise<boolean> {
  return stack.clients.s3
    .send(new HeadObjectCommand({ Bucket: stack.config.bucket, Key: key }))
    .then(() => true)
    .catch(() => false);
}

function corsHeaders(response: Response): string[] {
  return [...response.headers.keys()].filter((name) => name.startsWith('access-control-'));
}

describe('the local stack authenticates its callers', () => {
  it('keeps its key in stack.json, readable by its owner only', () => {
    expect(statSync(join(dataDir, STACK_FILE_NAME)).mode & 0o777).toBe(0o600);
    expect(statSync(dataDir).mode & 0o077).toBe(0);
    expect(stack.file.credentials.secretAccessKey).toMatch(/^[0-9a-f]{64}$/);
  });

  it('refuses storage and Invoke API calls signed with any other key, and they change nothing', async () => {
    const settingsBefore = await globalSettingsText();
    for (const credentials of [
      { accessKeyId: stack.file.credentials.accessKeyId, secretAccessKey: 'lambkin-local' },
      { accessKeyId: 'AKIAEXAMPLE', secretAccessKey: stack.file.credentials.secretAccessKey },
    ]) {
      const other = clientsWith(credentials);
      expect(
        await statusOf(() => other.dynamodb.send(new ScanCommand({ TableName: stack.config.buildsTable }))),
      ).toBe(403);
      expect(
        await statusOf(() =>
          other.documents.send(
            new PutCommand({
              TableName: stack.config.settingsTable,
              Item: {
                scope: 'global',
                build: { pullRequests: { fromForkPublicRepo: { inheritSecrets: true } } },
              },
            }),
          ),
        ),
      ).toBe(403);
      expect(
        await statusOf(() => other.s3.send(new ListObjectsV2Command({ Bucket: stack.config.bucket }))),
      ).toBe(403);
      expect(
        await statusOf(() =>
          other.s3.send(new PutObjectCommand({ Bucket: stack.config.bucket, Key: 'planted.txt', Body: 'x' })),
        ),
      ).toBe(403);
      expect(
        await statusOf(() =>
          other.lambda.send(
            new InvokeCommand({
              FunctionName: stack.config.builderFunction,
              InvocationType: 'Event',
              Payload: Buffer.from(JSON.stringify({ kind: 'build', repo: 'octo/none', number: 1 })),
            }),
          ),
        ),
      ).toBe(403);
      other.dynamodb.destroy();
      other.s3.destroy();
      other.lambda.destroy();
    }
    // Unsigned: refused too, with the reason.
    const unsigned = await fetch(stack.file.endpoints.dynamodb, {
      method: 'POST',
      headers: { 'x-amz-target': 'DynamoDB_20120810.Scan', 'content-type': 'application/x-amz-json-1.0' },
      body: JSON.stringify({ TableName: stack.config.buildsTable }),
    });
    expect(unsigned.status).toBe(403);
    expect(await unsigned.text()).toMatch(/not signed with a key of this stack/);
    expect((await fetch(`${stack.file.endpoints.s3}/${stack.config.bucket}?list-type=2`)).status).toBe(403);
    const invoke = await fetch(
      `${stack.file.endpoints.lambda}/2015-03-31/functions/lambkin-builder/invocations`,
      {
        method: 'POST',
        body: '{}',
      },
    );
    expect(invoke.status).toBe(403);

    expect(await globalSettingsText()).toBe(settingsBefore);
    expect(await objectExists('planted.txt')).toBe(false);
    await stack.idle(10_000);
    expect(await stack.controller.builds.getBuild({ repo: 'octo/none', number: 1 })).toBeUndefined();
    // The stack's own clients still work.
    expect(
      (await stack.clients.dynamodb.send(new ScanCommand({ TableName: stack.config.settingsTable }))).Count,
    ).toBeGreaterThan(0);
  });

  it('takes the presigned URLs and upload forms of the keys it issued per build, and no others', async () => {
    const signer = stack.controller.signer;
    if (!signer) throw new Error('the local stack has no per-build signer');
    const grants = { write: ['logs/octo/forms/'], read: ['logs/octo/forms/'] };
    const buildClient = (await signer.forBuild({ repo: 'octo/forms', number: 1 }, grants, 300)) as S3Client;
    const bucket = stack.config.bucket;
    const key = 'logs/octo/forms/builds/1/chunk.txt';

    const put = await getSignedUrl(buildClient, new PutObjectCommand({ Bucket: bucket, Key: key }), {
      expiresIn: 60,
    });
    expect((await fetch(put, { method: 'PUT', body: 'from the build' })).status).toBe(200);
    const get = await getSignedUrl(buildClient, new GetObjectCommand({ Bucket: bucket, Key: key }), {
      expiresIn: 60,
    });
    const got = await fetch(get, { headers: { origin: 'http://evil.example' } });
    expect(await got.text()).toBe('from the build');
    expect(corsHeaders(got)).toEqual([]);
    // Another object under the same signature, or a key the stack never issued: refused.
    expect((await fetch(get.replace('chunk.txt', 'other.txt'))).status).toBe(403);
    const stranger = createS3Client({
      region: stack.file.region,
      credentials: { accessKeyId: 'LKBUILDFFFFFFFFFFFFFF', secretAccessKey: 'made-up' },
      endpoints: { s3: stack.file.endpoints.s3 },
    });
    const forgedPut = await getSignedUrl(
      stranger,
      new PutObjectCommand({ Bucket: bucket, Key: 'logs/planted.txt' }),
      {
        expiresIn: 60,
      },
    );
    expect((await fetch(forgedPut, { method: 'PUT', body: 'x' })).status).toBe(403);
    // Its URLs and forms reach only the keys the build was granted, as the cloud's session policy.
    const outside = await getSignedUrl(
      buildClient,
      new PutObjectCommand({ Bucket: bucket, Key: 'logs/octo/other/x' }),
      {
        expiresIn: 60,
      },
    );
    expect((await fetch(outside, { method: 'PUT', body: 'x' })).status).toBe(403);
    expect(await objectExists('logs/octo/other/x')).toBe(false);
    // A per-build key signs URLs and forms only, never an API call.
    expect(await statusOf(() => buildClient.send(new ListObjectsV2Command({ Bucket: bucket })))).toBe(403);

    const post = async (client: S3Client, objectKey: string): Promise<number> => {
      const form = await createPresignedPost(client, {
        Bucket: bucket,
        Key: objectKey,
        Conditions: [['content-length-range', 0, 1024]],
        Expires: 60,
      });
      const body = new FormData();
      for (const [name, value] of Object.entries(form.fields)) body.append(name, value);
      body.append('file', new Blob(['posted']), 'file.txt');
      return (await fetch(form.url, { method: 'POST', body })).status;
    };
    expect(await post(buildClient, 'logs/octo/forms/builds/1/posted.txt')).toBe(204);
    expect(await objectExists('logs/octo/forms/builds/1/posted.txt')).toBe(true);
    expect(await post(buildClient, 'logs/octo/other/posted.txt')).toBe(403);
    expect(await objectExists('logs/octo/other/posted.txt')).toBe(false);
    expect(await post(stranger, 'logs/planted-form.txt')).toBe(403);
    expect(await objectExists('logs/planted-form.txt')).toBe(false);
    stranger.destroy();
  });

  it('answers no CORS preflight, on any endpoint', async () => {
    const endpoints = [
      stack.file.endpoints.dynamodb,
      `${stack.file.endpoints.s3}/${stack.config.bucket}`,
      `${stack.file.endpoints.lambda}/2015-03-31/functions/lambkin-builder/invocations`,
      stack.file.endpoints.webhook,
      stack.file.endpoints.logs,
      `${stack.file.publicUrl}/badges/octo/none.svg`,
    ];
    for (const url of endpoints) {
      const preflight = await fetch(url, {
        method: 'OPTIONS',
        headers: { origin: 'http://evil.example', 'access-control-request-method': 'POST' },
      });
      expect({ url, cors: corsHeaders(preflight) }).toEqual({ url, cors: [] });
      expect(preflight.status).toBeGreaterThanOrEqual(400);
      const simple = await fetch(url, {
        method: 'POST',
        headers: { origin: 'http://evil.example', 'content-type': 'text/plain' },
        body: '{}',
      });
      expect({ url, cors: corsHeaders(simple) }).toEqual({ url, cors: [] });
    }
  });

  it('keeps a hostile build step that finds its ports in /proc/net from reading, writing or invoking anything', async () => {
    const repo = await createGitRepo(
      npmProject({ test: 'node stack-probe.mjs' }, { 'stack-probe.mjs': PROBE }),
    );
    cleanups.push(repo.dir);
    github.addRepository({ owner: 'octo', name: 'hostile', gitDir: repo.dir });
    const settingsBefore = await globalSettingsText();
    const queued = await postWebhook(
      stack.file.endpoints.webhook,
      SECRET,
      'push',
      pushPayload({ repo: 'octo/hostile', branch: 'main', sha: repo.sha }),
    );
    expect(queued.status).toBe(202);
    await stack.idle(120_000);
    expect(await stack.controller.builds.getBuild({ repo: 'octo/hostile', number: 1 })).toMatchObject({
      state: 'success',
    });
    const log = await stack.clients.s3.send(
      new GetObjectCommand({ Bucket: stack.config.bucket, Key: 'logs/octo/hostile/builds/1/log.txt' }),
    );
    const text = (await log.Body?.transformToString()) ?? '';
    expect(text).toContain(`STACKPROBE-DONE-${6 * 7}`);
    const probes = [...text.matchAll(/STACKPROBE (\{.*\})/g)].map(
      (match) =>
        JSON.parse(match[1] ?? '{}') as {
          port?: number;
          socketPath?: string;
          kind: string;
          status?: number;
          error?: string;
          body?: string;
        },
    );
    const stackPorts = new Set(
      [stack.file.endpoints.dynamodb, stack.file.endpoints.s3, stack.file.endpoints.lambda].map((url) =>
        Number(new URL(url).port),
      ),
    );
    const atStack = probes.filter((probe) => probe.port !== undefined && stackPorts.has(probe.port));
    // In a network namespace of its own (the step sandbox, src/runner/step-sandbox.ts) the step finds
    // none of the host's sockets at all; without it (the log says so) it finds every port of the
    // stack, and every try there is refused.
    const ownNetwork = !text.includes('steps reach the host’s loopback services');
    if (ownNetwork) expect(atStack).toEqual([]);
    else expect(new Set(atStack.map((probe) => probe.port))).toEqual(stackPorts);
    // (The public port also serves the webhook and the log viewer: what is not an invoke gets their 4xx.)
    const httpPort = Number(new URL(stack.file.endpoints.lambda).port);
    for (const probe of atStack) {
      if (probe.port !== httpPort || probe.kind === 'invoke') expect(probe).toMatchObject({ status: 403 });
      else expect(probe.status).toBeGreaterThanOrEqual(400);
    }
    // Nowhere did it get a build record or the log listing.
    for (const probe of probes) {
      expect(probe.body ?? '').not.toMatch(/octo\/hostile|lambkin-logs<\/Name>|"Items"/);
    }
    // The storage servers' own sockets are in a folder the build's user (nobody) cannot enter.
    // (In a network namespace of its own the step does not even see them in /proc/net/unix.)
    if (process.getuid?.() === 0) {
      const socketProbes = probes.filter((p) => p.socketPath !== undefined);
      if (ownNetwork) expect(socketProbes).toEqual([]);
      else expect(socketProbes.length).toBeGreaterThan(0);
      for (const probe of socketProbes) {
        expect(probe.error).toBe('EACCES');
      }
    }
    expect(await globalSettingsText()).toBe(settingsBefore);
    expect(await stack.controller.builds.getBuild({ repo: 'octo/x', number: 1 })).toBeUndefined();
  }, 180_000);
});
