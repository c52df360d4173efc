/**
 * The builder's on-failure destination function: Lambda's destination record, as the service sends
 * it, ends the build it names; anything else is refused with a typed error.
 */
import { rm } from 'node:fs/promises';
import type { BuildRecord } from '../../src/core/build.js';
import {
  InvalidDestinationRecordError,
  createFailureHandler,
  failedInvocationOf,
  handler,
  parseDestinationRecord,
} from '../../src/handlers/failure.js';
import { DynamoBuildStore } from '../../src/store/builds.js';
import { pushRequest } from '../cli/helpers.js';
import {
  createGitRepo,
  startGitHubServer,
  type GitHubStandIn,
  type GitRepo,
} from '../support/github-server.js';
import { createTestStorage, type TestStorage } from '../support/storage.js';

const TOKEN = 'ghp_failureHandler00000000000000000000';
const REPO = 'acme/gizmo';
const PUBLIC_URL = 'https://ci.example.test';
const BUILDER_ARN = 'arn:aws:lambda:us-east-1:123456789012:function:lambkin-BuilderFunction-AbC123:$LATEST';

/** A destination record as Lambda sends it when every attempt failed (RetriesExhausted). */
function retriesExhausted(payload: unknown): Record<string, unknown> {
  return {
    version: '1.0',
    timestamp: '2025-01-01T00:00:00.000Z',
    requestContext: {
      requestId: 'e4b46cbf-b738-4a1b-8880-a18cdf61200e',
      functionArn: BUILDER_ARN,
      condition: 'RetriesExhausted',
      approximateInvokeCount: 3,
    },
    requestPayload: payload,
    responseContext: { statusCode: 200, executedVersion: '$LATEST', functionError: 'Unhandled' },
    responsePayload: {
      errorType: 'ResourceNotFoundException',
      errorMessage: 'Requested resource not found',
      trace: ['ResourceNotFoundException: Requested resource not found', '    at throwDefaultError (…)'],
    },
  };
}

let storage: TestStorage;
let github: GitHubStandIn;
let git: GitRepo;
let builds: DynamoBuildStore;
const savedEnv = { ...process.env };

beforeAll(async () => {
  storage = await createTestStorage();
  builds = new DynamoBuildStore(storage.clients.documents, storage.buildsTable);
  git = await createGitRepo({ 'README.md': '# gizmo\n' });
  github = await startGitHubServer({ token: TOKEN });
  github.addRepository({ owner: 'acme', name: 'gizmo', gitDir: git.dir });
  process.env = {
    PATH: savedEnv.PATH,
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    AWS_REGION: 'us-east-1',
    AWS_ENDPOINT_URL_DYNAMODB: storage.backend.dynamodbEndpoint,
    GITHUB_API_URL: github.url,
    GITHUB_TOKEN: TOKEN,
    LAMBKIN_PUBLIC_URL: PUBLIC_URL,
    LAMBKIN_BUILDS_TABLE: storage.buildsTable,
  };
});

afterAll(async () => {
  process.env = savedEnv;
  await github.close();
  await rm(git.dir, { recursive: true, force: true });
});

async function queued(): Promise<BuildRecord> {
  const number = await builds.allocateNumber(REPO);
  return builds.putQueuedBuild(pushRequest({ repo: REPO, sha: git.sha, deliveryId: `d-${number}` }), number, {
    deadline: Date.now() + 60_000,
  });
}

describe('parseDestinationRecord', () => {
  it('reads the failed invocation out of a record', () => {
    const record = parseDestinationRecord(retriesExhausted({ kind: 'build', repo: REPO, number: 7 }));
    expect(failedInvocationOf(record)).toEqual({
      payload: { kind: 'build', repo: REPO, number: 7 },
      attempts: 3,
      error: { errorType: 'ResourceNotFoundException', errorMessage: 'Requested resource not found' },
      functionName: 'lambkin-BuilderFunction-AbC123',
      requestId: 'e4b46cbf-b738-4a1b-8880-a18cdf61200e',
    });
    // A crash leaves only the runtime's message; the function error names the kind.
    const crashed = retriesExhausted({});
    crashed.responsePayload = {
      errorMessage: 'RequestId: e4b46cbf Error: Runtime exited with error: signal: killed',
    };
    expect(failedInvocationOf(parseDestinationRecord(crashed)).error).toEqual({
      errorType: 'Unhandled',
      errorMessage: 'RequestId: e4b46cbf Error: Runtime exited with error: signal: killed',
    });
  });

  it('refuses anything else with every problem named', () => {
    expect(() => parseDestinationRecord('hello')).toThrow(InvalidDestinationRecordError);
    expect(() => parseDestinationRecord({ kind: 'build', repo: REPO, number: 1 })).toThrow(
      /"version" is missing, not text.*"requestContext" is missing or not an object.*"requestPayload" is missing/,
    );
    const success = retriesExhausted({});
    (success.requestContext as Record<string, unknown>).condition = 'Success';
    expect(() => parseDestinationRecord(success)).toThrow(/"Success", not a failure/);
    const badCount = retriesExhausted({});
    (badCount.requestContext as Record<string, unknown>).approximateInvokeCount = '3';
    expect(() => parseDestinationRecord(badCount)).toThrow(/approximateInvokeCount/);
  });
});

describe('the failure handler', () => {
  it('ends the build a destination record names, configured from the environment', async () => {
    const build = await queued();
    const result = await handler(retriesExhausted({ kind: 'build', repo: REPO, number: build.number }));
    const reason = 'the builder failed after 3 attempts: Requested resource not found';
    expect(result).toMatchObject({ ended: true, statusSet: true });
    expect(await builds.getBuild(build)).toMatchObject({ state: 'error', description: reason });
    expect(github.statusesFor(REPO, git.sha)[0]).toMatchObject({
      state: 'error',
      description: `Build #${build.number} error: ${reason}`,
      target_url: `${PUBLIC_URL}/builds/${REPO}/${build.number}`,
    });
    // Lambda may deliver the record again: the build stays as it ended.
    expect(
      await handler(retriesExhausted({ kind: 'build', repo: REPO, number: build.number })),
    ).toMatchObject({
      ended: false,
      reason: 'already ended',
    });
  });

  it('ends a build whose invocation expired before it ever ran (EventAgeExceeded)', async () => {
    const build = await queued();
    const result = await handler({
      version: '1.0',
      timestamp: '2025-01-01T06:00:00.000Z',
      requestContext: {
        requestId: '0b9c1f4e-5d3a-4c2b-9e8f-7a6b5c4d3e2f',
        functionArn: BUILDER_ARN,
        condition: 'EventAgeExceeded',
        approximateInvokeCount: 0,
      },
      requestPayload: { kind: 'build', repo: REPO, number: build.number },
    });
    expect(result).toMatchObject({ ended: true });
    expect((await builds.getBuild(build))?.description).toBe(
      'the builder never ran: the invocation waited in the queue past its maximum age (EventAgeExceeded)',
    );
  });

  it('refuses an event that is not a destination record before building anything', async () => {
    let built = 0;
    const failure = createFailureHandler(() => {
      built += 1;
      throw new Error('not reached');
    });
    await expect(failure({ kind: 'build', repo: REPO, number: 1 })).rejects.toThrow(
      InvalidDestinationRecordError,
    );
    expect(built).toBe(0);
  });
});
