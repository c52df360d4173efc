/**
 * The embedded stack in-process: its own Lambda Invoke API, storage under the data dir, the log
 * viewer, and the on-failure hook. (tests/cli/dev.test.ts drives `lambkin dev` as a process.)
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { BatchGetBuildsCommand, CodeBuildClient, StartBuildCommand } from '@aws-sdk/client-codebuild';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { endFailedBuild } from '../../src/controller/on-failure.js';
import { createServer, type Server } from 'node:net';
import { LOCAL_NAMES, PortInUseError, startLocalStack, type LocalStack } from '../../src/local/stack.js';
import { STACK_FILE_NAME, type StackFile } from '../../src/local/stack-file.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import { createGitRepo, startGitHubServer, type GitHubStandIn } from '../support/github-server.js';
import { passingProject } from '../support/npm-projects.js';
import { postWebhook, pushPayload } from '../support/payloads.js';
import { runProcess } from '../cli/helpers.js';
import { processesRunning } from '../support/processes.js';
import { waitFor } from '../support/wait.js';

const SECRET = 'stack-test-secret';
const TOKEN = 'stack-test-token';

let github: GitHubStandIn;
let dataDir: string;
let gitDir: string;
let sha: string;

beforeAll(async () => {
  github = await startGitHubServer({ token: TOKEN });
  dataDir = mkdtempSync(join(tmpdir(), 'lambkin-stack-test-'));
  const repo = await createGitRepo(passingProject());
  gitDir = repo.dir;
  sha = repo.sha;
  github.addRepository({ owner: 'octo', name: 'local', gitDir });
});

afterAll(async () => {
  await github.close();
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(gitDir, { recursive: true, force: true });
});

function start(): Promise<LocalStack> {
  return startLocalStack({
    dataDir,
    port: 0,
    githubApiUrl: github.url,
    githubToken: TOKEN,
    webhookSecret: SECRET,
    retryDelaysMs: [50, 50],
    logger: createMemoryLogger(),
  });
}

describe('the embedded local stack', () => {
  it('builds a webhook through its own Lambda API, serves the log, and keeps its data across restarts', async () => {
    let stack = await start();
    try {
      const file = JSON.parse(readFileSync(join(dataDir, STACK_FILE_NAME), 'utf8')) as StackFile;
      expect(file).toMatchObject({
        version: 1,
        pid: process.pid,
        bucket: 'lambkin-logs',
        builderFunction: 'lambkin-builder',
      });
      expect(Object.keys(file.endpoints).sort()).toEqual(['dynamodb', 'lambda', 'logs', 's3', 'webhook']);
      // Pull requests from forks would run strangers' code on this machine: off by default.
      expect(
        (await stack.controller.settings.effective('octo/local')).build.pullRequests.fromForkPublicRepo.build,
      ).toBe(false);

      const response = await postWebhook(
        file.endpoints.webhook,
        SECRET,
        'push',
        pushPayload({ repo: 'octo/local', branch: 'main', sha }),
      );
      expect(response.status).toBe(202);
      const { url } = (await response.json()) as { url: string };
      expect(url).toBe(`${file.publicUrl}/builds/octo/local/1`);
      await stack.idle(60_000);
      expect(await stack.controller.builds.getBuild({ repo: 'octo/local', number: 1 })).toMatchObject({
        state: 'success',
      });
      expect(github.statusesFor('octo/local', sha)[0]).toMatchObject({ state: 'success', target_url: url });

      const page = await fetch(url);
      expect(page.status).toBe(200);
      expect(page.headers.get('content-type')).toMatch(/text\/html/);
      expect(await page.text()).toContain('octo/local');
      const raw = await fetch(`${url}/log.txt`);
      expect(await raw.text()).toMatch(/# pass 1/);
      const list = await fetch(`${file.publicUrl}/builds/octo/local`);
      expect(await list.text()).toContain('#1');
      expect((await fetch(`${file.publicUrl}/builds/octo/local/99`)).status).toBe(404);
      expect((await fetch(`${file.publicUrl}/builds/..%2F..%2Fetc/passwd/1`)).status).toBe(404);
    } finally {
      await stack.stop();
    }
    stack = await start();
    try {
      expect(await stack.controller.builds.getBuild({ repo: 'octo/local', number: 1 })).toMatchObject({
        state: 'success',
      });
      expect((await fetch(`${stack.file.publicUrl}/builds/octo/local/1/log.txt`)).status).toBe(200);
    } finally {
      await stack.stop();
    }
  });

  it('stops a running build when it stops (`lambkin dev` interrupted): its step ends, the build is recorded as ended', async () => {
    const marker = `sleep ${39_400 + (process.pid % 100)}`;
    const hanging = await createGitRepo({
      ...passingProject(),
      '.lambkin.json': JSON.stringify({ test: `echo started; ${marker}` }),
    });
    github.addRepository({ owner: 'octo', name: 'hanging', gitDir: hanging.dir });
    try {
      let stack = await start();
      try {
        const response = await postWebhook(
          stack.file.endpoints.webhook,
          SECRET,
          'push',
          pushPayload({ repo: 'octo/hanging', branch: 'main', sha: hanging.sha }),
        );
        expect(response.status).toBe(202);
        await waitFor('the step to run', async () =>
          (await processesRunning(marker)).length > 0 ? true : undefined,
        );
      } finally {
        await stack.stop();
      }
      // The step did not outlive the stack (before, the runner went on until the build's timeout).
      expect(await processesRunning(marker)).toEqual([]);
      stack = await start();
      try {
        expect(await stack.controller.builds.getBuild({ repo: 'octo/hanging', number: 1 })).toMatchObject({
          state: 'error',
          description: expect.stringContaining('the local stack stopped while the build ran'),
        });
      } finally {
        await stack.stop();
      }
    } finally {
      rmSync(hanging.dir, { recursive: true, force: true });
    }
  });

  it('ends a build as error when the builder function fails every attempt (the on-failure hook)', async () => {
    const stack = await start();
    try {
      const builds = stack.controller.builds;
      const number = await builds.allocateNumber('octo/local');
      await builds.putQueuedBuild(
        {
          repo: 'octo/local',
          event: 'push',
          ref: 'refs/heads/main',
          branch: 'main',
          sha,
          fork: false,
          privateRepo: false,
          trusted: true,
          author: 'octocat',
          deliveryId: 'd-fail',
        },
        number,
        { deadline: Date.now() + 60_000 },
      );
      await endFailedBuild(stack.controller, {
        functionName: 'lambkin-builder',
        requestId: 'r-1',
        payload: { kind: 'build', repo: 'octo/local', number },
        attempts: 3,
        error: { errorType: 'Error', errorMessage: 'DynamoDB was unreachable' },
      });
      expect(await builds.getBuild({ repo: 'octo/local', number })).toMatchObject({
        state: 'error',
        description: 'the builder failed after 3 attempts: DynamoDB was unreachable',
      });
      expect(github.statusesFor('octo/local', sha)[0]).toMatchObject({
        state: 'error',
        description: `Build #${number} error: the builder failed after 3 attempts: DynamoDB was unreachable`,
      });
    } finally {
      await stack.stop();
    }
  });
});

describe("the stack's CodeBuild endpoint", () => {
  it('runs a build of its CodeBuild project for a caller with the stack key, and refuses any other', async () => {
    const stack = await start();
    const client = new CodeBuildClient({
      endpoint: stack.file.publicUrl,
      region: stack.file.region,
      credentials: stack.file.credentials,
    });
    const stranger = new CodeBuildClient({
      endpoint: stack.file.publicUrl,
      region: stack.file.region,
      credentials: { accessKeyId: stack.file.credentials.accessKeyId, secretAccessKey: 'guessed' },
    });
    try {
      // A bundle that only reads its input, served by the stack's own storage through presigned URLs.
      const program = `const u = process.argv[process.argv.indexOf('--input-url') + 1];
const input = await (await fetch(u)).json();
process.exit(input.exitCode);`;
      const put = async (key: string, body: string): Promise<string> => {
        await stack.clients.s3.send(
          new PutObjectCommand({ Bucket: stack.file.bucket, Key: key, Body: body }),
        );
        return getSignedUrl(stack.clients.s3, new GetObjectCommand({ Bucket: stack.file.bucket, Key: key }), {
          expiresIn: 900,
        });
      };
      const run = async (exitCode: number): Promise<string | undefined> => {
        const started = await client.send(
          new StartBuildCommand({
            projectName: LOCAL_NAMES.codebuildProject,
            environmentVariablesOverride: [
              { name: 'LAMBKIN_RUNNER_URL', value: await put('runner/test.mjs', program), type: 'PLAINTEXT' },
              {
                name: 'LAMBKIN_RUNNER_SHA256',
                value: createHash('sha256').update(program).digest('hex'),
                type: 'PLAINTEXT',
              },
              {
                name: 'LAMBKIN_RUNNER_INPUT_URL',
                value: await put(`runner-input/test-${exitCode}.json`, JSON.stringify({ exitCode })),
                type: 'PLAINTEXT',
              },
            ],
          }),
        );
        await stack.idle(30_000);
        const answer = await client.send(new BatchGetBuildsCommand({ ids: [started.build!.id!] }));
        return answer.builds?.[0]?.buildStatus;
      };
      expect(await run(0)).toBe('SUCCEEDED');
      expect(await run(1)).toBe('FAILED');
      await expect(
        stranger.send(new StartBuildCommand({ projectName: LOCAL_NAMES.codebuildProject })),
      ).rejects.toMatchObject({ name: 'InvalidSignatureException' });
      // The webhook and the log viewer still answer as before.
      expect((await fetch(`${stack.file.publicUrl}/builds/octo/local/99`)).status).toBe(404);
    } finally {
      client.destroy();
      stranger.destroy();
      await stack.stop();
    }
  });
});

describe('a stack without the build sandbox', () => {
  it('refuses to start an untrusted build on CodeBuild, as its runner processes refuse it', async () => {
    const unsandboxedDir = mkdtempSync(join(tmpdir(), 'lambkin-stack-unsandboxed-'));
    const stack = await startLocalStack({
      dataDir: unsandboxedDir,
      port: 0,
      githubApiUrl: github.url,
      githubToken: TOKEN,
      webhookSecret: SECRET,
      buildSandbox: false,
      logger: createMemoryLogger(),
    });
    try {
      const objects = stack.controller.codebuild?.objects;
      expect(objects).toBeDefined();
      const input = (trusted: boolean) => JSON.stringify({ kind: 'run', build: { trusted } });
      await expect(objects!.putInput('runner-input/octo/local/1/a.json', input(false))).rejects.toThrow(
        /^untrusted build refused: pull requests from forks are not built by a stack that is not run as root/,
      );
      await expect(
        objects!.putInput('runner-input/octo/local/1/b.json', input(true)),
      ).resolves.toBeUndefined();
    } finally {
      await stack.stop();
    }
  });
});

describe('a port already in use', () => {
  let occupier: Server;
  let port: number;

  beforeAll(async () => {
    occupier = createServer();
    await new Promise<void>((resolve) => occupier.listen(0, '127.0.0.1', resolve));
    port = (occupier.address() as { port: number }).port;
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => occupier.close(() => resolve()));
  });

  it('is a typed error naming the port and the flag that changes it', async () => {
    const failed = startLocalStack({
      dataDir: mkdtempSync(join(tmpdir(), 'lambkin-port-')),
      port,
      githubApiUrl: github.url,
      webhookSecret: SECRET,
      logger: createMemoryLogger(),
    });
    await expect(failed).rejects.toBeInstanceOf(PortInUseError);
    await expect(failed).rejects.toMatchObject({ code: 'PORT_IN_USE', port });
  });

  it('makes `lambkin dev` print one plain line, not "unexpected error"', async () => {
    const folder = mkdtempSync(join(tmpdir(), 'lambkin-port-cli-'));
    try {
      const run = await runProcess(
        ['dev', '--port', String(port), '--data-dir', folder, '--github-api', github.url],
        { LAMBKIN_WEBHOOK_SECRET: SECRET },
      );
      expect(run.code).toBe(1);
      expect(run.stdout).toBe('');
      expect(run.stderr).toBe(
        `lambkin: port ${port} on 127.0.0.1 is in use (another \`lambkin dev\`?): stop that or pick a free port with --port, e.g. --port ${port === 65535 ? port - 1 : port + 1}\n`,
      );
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  }, 30_000);
});
