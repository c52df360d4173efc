/**
 * The local CodeBuild endpoint through the real AWS SDK client: signed requests, the buildspec's
 * three steps (download, sha256 check, `node <bundle> --input-url`) run as real processes in the
 * build sandbox (as root), the bundle and the input served by the real storage servers, and the
 * completion event. The moto_server check sends the same calls to moto's CodeBuild and compares
 * the response shapes.
 */
import { createHash } from 'node:crypto';
import { jest } from '@jest/globals';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import {
  BatchGetBuildsCommand,
  CodeBuildClient,
  CreateProjectCommand,
  StartBuildCommand,
  StopBuildCommand,
  type Build,
  type StartBuildCommandInput,
} from '@aws-sdk/client-codebuild';
import { readFile } from 'node:fs/promises';
import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { processesOfUid } from '../../src/controller/build-sandbox.js';
import { runnerProgram } from '../../src/controller/runner-program.js';
import { parseRemoteRunnerResult } from '../../src/core/protocol.js';
import { S3LogStore } from '../../src/store/logs.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import { LocalCodeBuildService, type CodeBuildStateChangeEvent } from '../../src/local/codebuild-service.js';
import { verifyHeaderSignature } from '../../src/local/request-signatures.js';
import { StackCredentials } from '../../src/local/stack-credentials.js';
import { createTestStorage, uniqueName, type TestStorage } from '../support/storage.js';
import { requireTool } from '../support/tools.js';
import { waitFor } from '../support/wait.js';

const PROJECT = 'lambkin-codebuild';
const asRoot = process.getuid?.() === 0;
/** A CodeBuild minute is 600 ms here: the least timeout (5 minutes) is 3 s, the default (60) 36 s. */
const TIME_SCALE = 0.01;

jest.setTimeout(60_000);

/**
 * Stands in for the runner bundle: reads its input from `--input-url` as the runner does, PUTs a
 * report of what it saw (its uid, its environment's names) to the input's `outcomeUpload`, then
 * sleeps and exits as the input says.
 */
const PROGRAM = `
const url = process.argv[process.argv.indexOf('--input-url') + 1];
const input = await (await fetch(url)).json();
await fetch(input.outcomeUpload, {
  method: 'PUT',
  body: JSON.stringify({ uid: process.getuid(), env: Object.keys(process.env).sort(), argv: process.argv.slice(2), cwd: process.cwd() }),
});
if (input.sleepMs) await new Promise((resolve) => setTimeout(resolve, input.sleepMs));
process.exit(input.exitCode ?? 0);
`;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

let storage: TestStorage;
let credentials: StackCredentials;
let service: LocalCodeBuildService;
let server: Server;
let endpoint: string;
let client: CodeBuildClient;
const events: CodeBuildStateChangeEvent[] = [];
const logger = createMemoryLogger();
let bundleUrl: string;
let bundleSha256: string;

beforeAll(async () => {
  storage = await createTestStorage();
  credentials = new StackCredentials();
  service = new LocalCodeBuildService({
    projects: [{ name: PROJECT }, { name: `${PROJECT}-docker`, privilegedMode: true }],
    authenticate: (request, body) =>
      verifyHeaderSignature(
        { method: request.method ?? 'POST', url: request.url ?? '/', headers: request.headers },
        body,
        { credentials, service: 'codebuild' },
      ),
    onEvent: async (event) => void events.push(event),
    sandbox: asRoot,
    workRoot: asRoot ? '/tmp/lambkin-builds' : '/tmp/lambkin-codebuild-test',
    timeScale: TIME_SCALE,
    logger,
  });
  server = createServer((request, response) => {
    if (service.handle(request, response)) return;
    response.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  client = new CodeBuildClient({ endpoint, region: 'us-east-1', credentials: credentials.stack });
  const bundle = await put('runner/bundle.mjs', PROGRAM);
  bundleUrl = bundle.url;
  bundleSha256 = createHash('sha256').update(PROGRAM).digest('hex');
});

afterAll(async () => {
  await service.close();
  client.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

/** A presigned GET of an object already in the test bucket. */
async function presignedBundle(key: string): Promise<{ url: string }> {
  return { url: await presign(new GetObjectCommand({ Bucket: storage.bucket, Key: key })) };
}

/** Puts an object in the test bucket; its presigned GET URL. */
async function put(key: string, body: string): Promise<{ url: string }> {
  await storage.clients.s3.send(new PutObjectCommand({ Bucket: storage.bucket, Key: key, Body: body }));
  return { url: await presign(new GetObjectCommand({ Bucket: storage.bucket, Key: key })) };
}

function presign(command: GetObjectCommand | PutObjectCommand | DeleteObjectCommand): Promise<string> {
  return getSignedUrl(storage.clients.s3, command, { expiresIn: 900 });
}

interface Report {
  uid: number;
  env: string[];
  argv: string[];
  cwd: string;
}

/** A fresh input (and the place its report goes): what the controller would write. */
async function input(options: { sleepMs?: number; exitCode?: number } = {}): Promise<{
  inputUrl: string;
  report: () => Promise<Report | undefined>;
}> {
  const reportKey = `reports/${uniqueName('report')}.json`;
  const outcomeUpload = await presign(new PutObjectCommand({ Bucket: storage.bucket, Key: reportKey }));
  const { url } = await put(
    `runner-input/${uniqueName('input')}.json`,
    JSON.stringify({ ...options, outcomeUpload }),
  );
  return {
    inputUrl: url,
    report: async () => {
      try {
        const object = await storage.clients.s3.send(
          new GetObjectCommand({ Bucket: storage.bucket, Key: reportKey }),
        );
        return JSON.parse(await object.Body!.transformToString()) as Report;
      } catch (error) {
        if ((error as Error).name === 'NoSuchKey') return undefined;
        throw error;
      }
    },
  };
}

function variables(inputUrl: string, sha256 = bundleSha256, url = bundleUrl) {
  return [
    { name: 'LAMBKIN_RUNNER_URL', value: url, type: 'PLAINTEXT' as const },
    { name: 'LAMBKIN_RUNNER_SHA256', value: sha256, type: 'PLAINTEXT' as const },
    { name: 'LAMBKIN_RUNNER_INPUT_URL', value: inputUrl, type: 'PLAINTEXT' as const },
    { name: 'LAMBKIN_BUILD', value: 'octo/app#1', type: 'PLAINTEXT' as const },
  ];
}

async function start(extra: Partial<StartBuildCommandInput> & { inputUrl: string }): Promise<Build> {
  const { inputUrl, ...rest } = extra;
  const answer = await client.send(
    new StartBuildCommand({
      projectName: PROJECT,
      environmentVariablesOverride: variables(inputUrl),
      computeTypeOverride: 'BUILD_GENERAL1_SMALL',
      ...rest,
    }),
  );
  expect(answer.build).toBeDefined();
  return answer.build!;
}

async function describe1(id: string): Promise<Build> {
  const answer = await client.send(new BatchGetBuildsCommand({ ids: [id] }));
  expect(answer.buildsNotFound ?? []).toEqual([]);
  return answer.builds![0]!;
}

async function completed(id: string, timeoutMs = 30_000): Promise<Build> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const build = await describe1(id);
    if (build.buildComplete) return build;
    if (Date.now() > deadline) throw new Error(`build ${id} did not complete within ${timeoutMs} ms`);
    await sleep(100);
  }
}

const finalEvent = (arn: string): CodeBuildStateChangeEvent | undefined =>
  events.find((event) => event.detail['build-id'] === arn && event.detail['build-status'] !== 'IN_PROGRESS');

test('StartBuild runs the buildspec in a sandbox and answers with AWS shapes; the completion event follows', async () => {
  const { inputUrl, report } = await input();
  const started = await start({ inputUrl, timeoutInMinutesOverride: 20 });
  expect(started.id).toMatch(new RegExp(`^${PROJECT}:[0-9a-f-]{36}$`));
  expect(started.arn).toBe(`arn:aws:codebuild:us-east-1:123456789012:build/${started.id}`);
  expect(started.buildStatus).toBe('IN_PROGRESS');
  expect(started.buildComplete).toBe(false);
  expect(started.projectName).toBe(PROJECT);
  expect(started.timeoutInMinutes).toBe(20);
  expect(started.startTime).toBeInstanceOf(Date);
  expect(Math.abs(started.startTime!.getTime() - Date.now())).toBeLessThan(10_000);
  expect(started.endTime).toBeUndefined();
  expect(started.environment?.computeType).toBe('BUILD_GENERAL1_SMALL');
  expect(started.environment?.environmentVariables).toEqual(variables(inputUrl));

  const done = await completed(started.id!);
  expect(done.buildStatus).toBe('SUCCEEDED');
  expect(done.currentPhase).toBe('COMPLETED');
  expect(done.endTime).toBeInstanceOf(Date);
  expect(done.endTime!.getTime()).toBeGreaterThanOrEqual(done.startTime!.getTime());
  expect(done.phases?.find((phase) => phase.phaseType === 'BUILD')?.phaseStatus).toBe('SUCCEEDED');

  // The program got its input from the URL, ran as the build's own user with the runner's clean
  // environment: nothing of the endpoint's, not even the build's variables (the input URL is an argument).
  const seen = await report();
  expect(seen?.argv).toEqual(['--input-url', inputUrl]);
  for (const name of seen?.env ?? [])
    expect([
      'LAMBKIN_BUILD_SANDBOX',
      'LAMBKIN_WORK_ROOT',
      'LANG',
      'NODE_EXTRA_CA_CERTS',
      'PATH',
      'PWD',
    ]).toContain(name);
  if (asRoot) {
    expect(seen?.uid).toBeGreaterThanOrEqual(0x70000000);
    expect(await processesOfUid(seen!.uid)).toEqual([]);
  }

  const event = await waitFor('the completion event', async () => finalEvent(started.arn!), 20_000);
  expect(event).toMatchObject({
    source: 'aws.codebuild',
    'detail-type': 'CodeBuild Build State Change',
    resources: [started.arn],
    detail: {
      'build-status': 'SUCCEEDED',
      'project-name': PROJECT,
      'build-id': started.arn,
      'current-phase': 'COMPLETED',
      'additional-information': {
        'build-complete': true,
        'timeout-in-minutes': 20,
        environment: { 'environment-variables': variables(inputUrl), 'compute-type': 'BUILD_GENERAL1_SMALL' },
      },
    },
  });
  expect(event.detail['additional-information']['build-start-time']).toMatch(
    /^[A-Z][a-z]{2} \d{1,2}, \d{4} \d{1,2}:\d{2}:\d{2} [AP]M$/,
  );
  // The IN_PROGRESS event came first (the events handler ignores it).
  const first = events.find((candidate) => candidate.detail['build-id'] === started.arn);
  expect(first?.detail['build-status']).toBe('IN_PROGRESS');
});

test('a program that exits non-zero ends FAILED', async () => {
  const { inputUrl, report } = await input({ exitCode: 3 });
  const started = await start({ inputUrl });
  const done = await completed(started.id!);
  expect(done.buildStatus).toBe('FAILED');
  expect(await report()).toBeDefined();
  const build = done.phases?.find((phase) => phase.phaseType === 'BUILD');
  expect(build?.phaseStatus).toBe('FAILED');
  expect(build?.contexts?.[0]?.message).toContain('exit status 3');
  expect((await waitFor('event', async () => finalEvent(started.arn!), 20_000)).detail['build-status']).toBe(
    'FAILED',
  );
});

test('a bundle whose sha256 does not match fails the build without running it', async () => {
  const { inputUrl, report } = await input();
  const started = await start({
    inputUrl,
    environmentVariablesOverride: variables(
      inputUrl,
      createHash('sha256').update('another bundle').digest('hex'),
    ),
  });
  const done = await completed(started.id!);
  expect(done.buildStatus).toBe('FAILED');
  expect(done.phases?.find((phase) => phase.phaseType === 'BUILD')?.contexts?.[0]?.message).toContain(
    'sha256sum -c',
  );
  expect(await report()).toBeUndefined();
});

test('a bundle that cannot be downloaded fails the build', async () => {
  const { inputUrl, report } = await input();
  const missing = await presign(new GetObjectCommand({ Bucket: storage.bucket, Key: 'runner/missing.mjs' }));
  const started = await start({
    inputUrl,
    environmentVariablesOverride: variables(inputUrl, bundleSha256, missing),
  });
  const done = await completed(started.id!);
  expect(done.buildStatus).toBe('FAILED');
  expect(done.phases?.find((phase) => phase.phaseType === 'BUILD')?.contexts?.[0]?.message).toContain(
    'HTTP 404',
  );
  expect(await report()).toBeUndefined();
});

test('the real runner program reads a real input from storage, spends it, and delivers its outcome', async () => {
  const program = await runnerProgram();
  const code = await readFile(program.file);
  const s3 = storage.clients.s3;
  const bucket = storage.bucket;
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'runner/real.mjs', Body: code }));
  const base = `runner-input/octo/real/1/${uniqueName('run')}`;
  const inputKey = `${base}.json`;
  const outcomeKey = `${base}.outcome.json`;
  const input = {
    kind: 'run',
    build: {
      repo: 'octo/real',
      event: 'push',
      ref: 'refs/heads/main',
      sha: 'a'.repeat(40),
      branch: 'main',
      fork: false,
      privateRepo: false,
      trusted: true,
      author: 'octocat',
      deliveryId: 'real',
      number: 1,
      queuedAt: Date.now(),
      startedAt: Date.now(),
    },
    // No such archive: the runner ends the build `error` at its fetch, and says so in its outcome.
    source: {
      archiveUrl: await presign(new GetObjectCommand({ Bucket: bucket, Key: 'archives/none.tar.gz' })),
    },
    settingsConfig: {},
    secretEnv: {},
    logUpload: await new S3LogStore(s3, bucket).presignLogUpload(
      { repo: 'octo/real', number: 1, logPrefix: 'logs/octo/real/builds/1/' },
      { expiresInSeconds: 900, maxObjectBytes: 1 << 20 },
    ),
    logLimitBytes: 1 << 20,
    deadlineAt: Date.now() + 120_000,
    buildUrl: 'https://ci.example.test/builds/octo/real/1',
    outcomeUpload: {
      url: await getSignedUrl(
        s3,
        new PutObjectCommand({ Bucket: bucket, Key: outcomeKey, IfNoneMatch: '*' }),
        {
          expiresIn: 900,
          signableHeaders: new Set(['if-none-match']),
        },
      ),
      headers: { 'if-none-match': '*' },
      inputDeleteUrl: await getSignedUrl(s3, new DeleteObjectCommand({ Bucket: bucket, Key: inputKey })),
    },
  };
  const { url: inputUrl } = await put(inputKey, JSON.stringify(input));
  const { url: runnerUrl } = await presignedBundle('runner/real.mjs');
  const started = await start({
    inputUrl,
    environmentVariablesOverride: variables(
      inputUrl,
      createHash('sha256').update(code).digest('hex'),
      runnerUrl,
    ),
  });
  const done = await completed(started.id!, 60_000);
  // The build errored, so the runner exits 1: CodeBuild says FAILED.
  expect(done.buildStatus).toBe('FAILED');
  const outcome = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: outcomeKey }));
  const result = parseRemoteRunnerResult(await outcome.Body!.transformToString());
  expect(result?.outcome).toMatchObject({ kind: 'outcome', state: 'error' });
  expect(result?.outcome.description).toMatch(/could not fetch the source/);
  // The input was spent before anything ran: its URL reads nothing now.
  expect((await fetch(inputUrl)).status).toBe(404);
});

test('timeoutInMinutesOverride ends a longer build TIMED_OUT and tears its sandbox down', async () => {
  const { inputUrl, report } = await input({ sleepMs: 120_000 });
  const begun = Date.now();
  const started = await start({ inputUrl, timeoutInMinutesOverride: 5 });
  const seen = await waitFor('the program to start', report, 20_000);
  const done = await completed(started.id!);
  expect(done.buildStatus).toBe('TIMED_OUT');
  expect(done.currentPhase).toBe('COMPLETED');
  // 5 minutes at this scale: 3 s, not the program's 120 s.
  expect(Date.now() - begun).toBeGreaterThanOrEqual(5 * 60_000 * TIME_SCALE - 100);
  expect(Date.now() - begun).toBeLessThan(20_000);
  if (asRoot) expect(await processesOfUid(seen.uid)).toEqual([]);
  expect((await waitFor('event', async () => finalEvent(started.arn!), 20_000)).detail['build-status']).toBe(
    'TIMED_OUT',
  );
});

test('StopBuild ends the build STOPPED, its processes gone when it answers', async () => {
  const { inputUrl, report } = await input({ sleepMs: 120_000 });
  const started = await start({ inputUrl });
  const seen = await waitFor('the program to start', report, 20_000);
  const stopped = await client.send(new StopBuildCommand({ id: started.id! }));
  expect(stopped.build?.buildStatus).toBe('STOPPED');
  expect(stopped.build?.buildComplete).toBe(true);
  if (asRoot) expect(await processesOfUid(seen.uid)).toEqual([]);
  expect((await describe1(started.arn!)).buildStatus).toBe('STOPPED'); // found by ARN too
  expect((await waitFor('event', async () => finalEvent(started.arn!), 20_000)).detail['build-status']).toBe(
    'STOPPED',
  );
  // Stopping a finished build changes nothing.
  const again = await client.send(new StopBuildCommand({ id: started.id! }));
  expect(again.build?.buildStatus).toBe('STOPPED');
});

test('a repeated idempotencyToken answers the same build and starts no second one', async () => {
  const { inputUrl } = await input();
  const token = uniqueName('token');
  const first = await start({ inputUrl, idempotencyToken: token });
  const second = await start({ inputUrl, idempotencyToken: token });
  expect(second.id).toBe(first.id);
  await completed(first.id!);
  await waitFor('event', async () => finalEvent(first.arn!), 20_000);
  const ids = new Set(events.map((event) => event.detail['build-id']).filter((id) => id.includes(PROJECT)));
  expect([...ids].filter((id) => id === first.arn)).toHaveLength(1);
  // The same token with other parameters is refused.
  await expect(
    start({ inputUrl, idempotencyToken: token, timeoutInMinutesOverride: 9 }),
  ).rejects.toMatchObject({
    name: 'InvalidInputException',
  });
});

test('unsigned and wrongly signed requests are refused and start nothing', async () => {
  const before = events.length;
  const { inputUrl } = await input();
  const body = JSON.stringify({ projectName: PROJECT, environmentVariablesOverride: variables(inputUrl) });
  const unsigned = await fetch(endpoint, {
    method: 'POST',
    headers: {
      'X-Amz-Target': 'CodeBuild_20161006.StartBuild',
      'Content-Type': 'application/x-amz-json-1.1',
    },
    body,
  });
  expect(unsigned.status).toBe(400);
  expect(await unsigned.json()).toMatchObject({ __type: 'InvalidSignatureException' });

  const forger = new CodeBuildClient({
    endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: credentials.stack.accessKeyId, secretAccessKey: 'not-the-stack-secret' },
  });
  await expect(
    forger.send(
      new StartBuildCommand({ projectName: PROJECT, environmentVariablesOverride: variables(inputUrl) }),
    ),
  ).rejects.toMatchObject({ name: 'InvalidSignatureException' });
  // A build's own presigned-URL key is not accepted for SDK calls either.
  const buildKey = credentials.issueBuildKey(60_000, { read: [''], write: [''] });
  const build = new CodeBuildClient({ endpoint, region: 'us-east-1', credentials: buildKey });
  await expect(build.send(new BatchGetBuildsCommand({ ids: ['x:y'] }))).rejects.toMatchObject({
    name: 'InvalidSignatureException',
  });
  forger.destroy();
  build.destroy();
  await sleep(200);
  expect(events.length).toBe(before);
});

test('an unknown project, a bad timeout and a secret-store variable are refused as CodeBuild refuses them', async () => {
  const { inputUrl } = await input();
  await expect(start({ inputUrl, projectName: 'nope' })).rejects.toMatchObject({
    name: 'ResourceNotFoundException',
  });
  await expect(start({ inputUrl, timeoutInMinutesOverride: 4 })).rejects.toMatchObject({
    name: 'InvalidInputException',
  });
  await expect(
    start({
      inputUrl,
      environmentVariablesOverride: [{ name: 'X', value: '/ssm/name', type: 'PARAMETER_STORE' }],
    }),
  ).rejects.toMatchObject({ name: 'InvalidInputException' });
  const answer = await client.send(new BatchGetBuildsCommand({ ids: [`${PROJECT}:unknown`] }));
  expect(answer.builds).toEqual([]);
  expect(answer.buildsNotFound).toEqual([`${PROJECT}:unknown`]);
});

/**
 * Records the raw JSON body of every answer the client gets (moto's timestamps are not what the
 * SDK parses, so the parsed answers cannot be compared): a middleware inside the deserializer.
 */
function recordBodies(target: CodeBuildClient): unknown[] {
  const bodies: unknown[] = [];
  target.middlewareStack.add(
    (next) => async (args) => {
      const result = await next(args);
      const response = result.response as { body: AsyncIterable<Uint8Array> | Readable };
      const chunks: Buffer[] = [];
      for await (const chunk of response.body) chunks.push(Buffer.from(chunk));
      const text = Buffer.concat(chunks).toString('utf8');
      bodies.push(JSON.parse(text));
      response.body = Readable.from([Buffer.from(text)]);
      return result;
    },
    { step: 'deserialize', priority: 'low', name: 'recordRawBody' },
  );
  return bodies;
}

/** Where moto_server's CodeBuild is known to differ from CodeBuild itself (and from this endpoint). */
const MOTO_DEVIATIONS: Array<{ path: RegExp; why: string }> = [
  // JSON 1.1 timestamps are epoch seconds (the SDK parses nothing else); moto sends ISO text.
  { path: /\.(startTime|endTime)$/, why: 'moto writes timestamps as ISO text' },
  // moto answers with a fixed CodeCommit source whatever the project's (Lambkin's has none).
  { path: /\.source\.(location|gitCloneDepth|gitSubmodulesConfig)$/, why: "moto's source is a fixed one" },
  // A NO_SOURCE build has no source version; CloudWatch logs are off in Lambkin's projects.
  { path: /\.(sourceVersion|cloudWatchLogsArn)$/, why: 'not sent for a NO_SOURCE, logs-off project' },
];

/** Every field moto answers with must be in ours, with the same JSON type. */
function compareShapes(ours: unknown, moto: unknown, path: string, problems: string[]): void {
  if (moto === null || moto === undefined) return; // moto's null: no shape to compare
  const kind = (value: unknown): string =>
    Array.isArray(value) ? 'array' : value === null ? 'null' : typeof value;
  if (kind(ours) !== kind(moto)) {
    if (!MOTO_DEVIATIONS.some((deviation) => deviation.path.test(path)))
      problems.push(`${path}: ours is ${kind(ours)}, moto's ${kind(moto)}`);
    return;
  }
  if (Array.isArray(ours) && Array.isArray(moto)) {
    if (ours.length > 0 && moto.length > 0) compareShapes(ours[0], moto[0], `${path}[]`, problems);
    return;
  }
  if (kind(moto) !== 'object') return;
  const mine = ours as Record<string, unknown>;
  for (const [key, entry] of Object.entries(moto as Record<string, unknown>)) {
    if (key in mine) compareShapes(mine[key], entry, `${path}.${key}`, problems);
    else if (entry !== null && !MOTO_DEVIATIONS.some((deviation) => deviation.path.test(`${path}.${key}`)))
      problems.push(`${path}.${key}: moto answers with it, ours does not`);
  }
}

/** What the controller and the events handler read of a build (src/aws/codebuild.ts). */
const READ_FIELDS = [
  'id',
  'arn',
  'buildStatus',
  'currentPhase',
  'startTime',
  'buildComplete',
  'projectName',
  'environment',
];

describe('the same SDK calls against moto_server', () => {
  const moto = process.env.LAMBKIN_TEST_MOTO_ENDPOINT;
  if (!requireTool('moto_server', 'CodeBuild shape check against moto_server', moto !== undefined) || !moto)
    return;

  test('StartBuild, BatchGetBuilds and StopBuild answer with the same shapes', async () => {
    const motoClient = new CodeBuildClient({ endpoint: moto, region: 'us-east-1' });
    const ourClient = new CodeBuildClient({ endpoint, region: 'us-east-1', credentials: credentials.stack });
    const theirs = recordBodies(motoClient);
    const ours = recordBodies(ourClient);
    const project = uniqueName('lambkin-codebuild');
    await motoClient.send(
      new CreateProjectCommand({
        name: project,
        // moto wants a location even with no source.
        source: { type: 'NO_SOURCE', location: 'none', buildspec: 'version: 0.2' },
        artifacts: { type: 'NO_ARTIFACTS' },
        environment: {
          type: 'LINUX_CONTAINER',
          image: 'aws/codebuild/standard:7.0',
          computeType: 'BUILD_GENERAL1_SMALL',
        },
        serviceRole: 'arn:aws:iam::123456789012:role/lambkin-codebuild',
      }),
    );
    theirs.length = 0;
    const { inputUrl } = await input({ sleepMs: 60_000 });
    const request = (projectName: string): StartBuildCommandInput => ({
      projectName,
      idempotencyToken: uniqueName('token'),
      computeTypeOverride: 'BUILD_GENERAL1_MEDIUM',
      timeoutInMinutesOverride: 30,
      environmentVariablesOverride: variables(inputUrl),
    });
    // The SDK cannot parse moto's timestamps: its calls fail after the body was recorded.
    const tolerant = (sending: Promise<unknown>): Promise<unknown> =>
      sending.catch((error: unknown) => {
        if (!String((error as Error).message).includes('Expected real number')) throw error;
      });
    const ids: Record<'ours' | 'theirs', string> = { ours: '', theirs: '' };
    for (const [side, target, name, bodies] of [
      ['theirs', motoClient, project, theirs],
      ['ours', ourClient, PROJECT, ours],
    ] as const) {
      await tolerant(target.send(new StartBuildCommand(request(name))));
      ids[side] = (bodies[0] as { build: { id: string } }).build.id;
      await tolerant(target.send(new BatchGetBuildsCommand({ ids: [ids[side], 'nope:nope'] })));
      await tolerant(target.send(new StopBuildCommand({ id: ids[side] })));
    }
    motoClient.destroy();
    ourClient.destroy();

    expect(ours).toHaveLength(3);
    expect(theirs).toHaveLength(3);
    const problems: string[] = [];
    ['StartBuild', 'BatchGetBuilds', 'StopBuild'].forEach((call, index) =>
      compareShapes(ours[index], theirs[index], call, problems),
    );
    expect(problems).toEqual([]);
    for (const side of ['ours', 'theirs'] as const) {
      const build = ((side === 'ours' ? ours : theirs)[0] as { build: Record<string, unknown> }).build;
      for (const field of READ_FIELDS) expect(build).toHaveProperty(field);
      expect(build.id).toBe(ids[side]);
      expect(build.id).toMatch(/^[^:]+:[0-9a-f-]{36}$/);
      expect(build.arn).toMatch(/^arn:aws:codebuild:us-east-1:\d{12}:build\/[^:]+:[0-9a-f-]{36}$/);
      expect(
        ((side === 'ours' ? ours : theirs)[2] as { build: { buildStatus: string } }).build.buildStatus,
      ).toBe('STOPPED');
    }
  });
});
