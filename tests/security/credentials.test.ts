/**
 * No build step can read the GitHub token, the webhook secret or the AWS credentials of the process
 * that runs it: a hostile build (tests/security/hostile-build.sh) tries its environment, every
 * ancestor's /proc environ, command line and memory, every process's environ, files in /tmp, HOME,
 * /root, the data dir and the checkout, the metadata endpoints and `ps`, and prints all it finds,
 * raw and hex. The secrets must appear in no form in the log or anything else the build produced,
 * and every probe's marker must be there. Runs as root on CI, where the runner drops to nobody.
 */
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, GetCommand } from '@aws-sdk/lib-dynamodb';
import { runControllerBuild, type ControllerDependencies } from '../../src/controller/controller.js';
import { ProcessRunnerInvoker } from '../../src/controller/runner-invoker.js';
import { DEFAULT_FIRST_SANDBOX_UID } from '../../src/controller/build-sandbox.js';
import type { BuildRequest } from '../../src/core/build.js';
import { resolveArchiveUrl } from '../../src/github/archive.js';
import { createGitHubClient } from '../../src/github/client.js';
import { GitHubStatusReporter } from '../../src/github/statuses.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import type { StackFile } from '../../src/local/stack-file.js';
import { DynamoBuildStore } from '../../src/store/builds.js';
import { S3LogStore } from '../../src/store/logs.js';
import { DynamoSettingsStore, repoScope } from '../../src/store/settings.js';
import { createGitRepo, startGitHubServer, type GitHubStandIn } from '../support/github-server.js';
import { pushPayload, signedDelivery } from '../support/payloads.js';
import { testBuildRequest } from '../support/builds.js';
import { createTestStorage } from '../support/storage.js';
import { LAMBKIN_BIN, OUTSIDE_CHECKOUT, startDevProcess, type DevProcess } from '../support/dev-process.js';
import { fakeSecrets, hostileProject, leaksIn, probesMissing } from './hostile.js';
import { StsBuildSigner, createStsClient, grantsPolicy } from '../../src/aws/sts.js';
import { createS3Client } from '../../src/aws/clients.js';
import { requireTool } from '../support/tools.js';

/** The uid the hostile build reports: as root, a build sandbox's own (src/controller/build-sandbox.ts). */
const buildUid = (): RegExp =>
  new RegExp(
    `hostile build: uid=${asRoot ? String(DEFAULT_FIRST_SANDBOX_UID).slice(0, 4) + '\\d+' : String(process.getuid?.())}\\b`,
  );
const asRoot = process.getuid?.() === 0;
const folders: string[] = [];

afterAll(() => {
  for (const folder of folders) rmSync(folder, { recursive: true, force: true });
});

/** Every probe ran, and none of the secrets is in the text in any form. */
function expectNothingFound(text: string, secrets: Record<string, string>): void {
  expect(probesMissing(text)).toEqual([]);
  expect(leaksIn(text, secrets)).toEqual([]);
}

/** A folder others may enter (mkdtemp's 0700 would hide it from nobody for us). */
function openFolder(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o755);
  folders.push(dir);
  return dir;
}

describe('the local stack (`lambkin dev` as a separate process)', () => {
  const secrets = fakeSecrets();
  let github: GitHubStandIn;
  let dev: DevProcess;
  let stack: StackFile;

  beforeAll(async () => {
    github = await startGitHubServer({ token: secrets.GITHUB_TOKEN });
    // Not created yet: `lambkin dev` makes it itself, with the permissions it chooses.
    const dataDir = join(openFolder('lambkin-security-dev-'), '.lambkin');
    dev = await startDevProcess({ dataDir, githubApi: github.url, env: { ...secrets } });
    stack = dev.stack;
  }, 40_000);

  afterAll(async () => {
    await dev.stop();
    await github.close();
  });

  it('keeps the token, the webhook secret and the AWS credentials from a hostile push build', async () => {
    const repo = await createGitRepo(hostileProject());
    folders.push(repo.dir);
    github.addRepository({ owner: 'octo', name: 'hostile', gitDir: repo.dir });
    const delivery = await signedDelivery(
      secrets.LAMBKIN_WEBHOOK_SECRET,
      'push',
      pushPayload({ repo: 'octo/hostile', branch: 'main', sha: repo.sha }),
    );
    const response = await fetch(stack.endpoints.webhook, {
      method: 'POST',
      headers: delivery.headers,
      body: delivery.body,
    });
    expect(response.status).toBe(202);
    let state: string | undefined;
    for (let i = 0; i < 240 && !['success', 'failure', 'error'].includes(state ?? ''); i++) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      state = github.statusesFor('octo/hostile', repo.sha)[0]?.state;
    }
    expect(state).toBe('success');

    // The stack's storage answers only its own key (stack.json, 0600), which no build may see either.
    const credentials = stack.credentials;
    const s3 = new S3Client({
      endpoint: stack.endpoints.s3,
      region: stack.region,
      credentials,
      forcePathStyle: true,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    const documents = DynamoDBDocumentClient.from(
      new DynamoDBClient({ endpoint: stack.endpoints.dynamodb, region: stack.region, credentials }),
    );
    const read = async (key: string) =>
      (await s3
        .send(new GetObjectCommand({ Bucket: stack.bucket, Key: key }))
        .then((object) => object.Body?.transformToString())) ?? '';
    const log = await read('logs/octo/hostile/builds/1/log.txt');
    const page = await read('logs/octo/hostile/builds/1/index.html');
    const record = await documents.send(
      new GetCommand({ TableName: stack.tables.builds, Key: { repo: 'octo/hostile', number: 1 } }),
    );
    s3.destroy();
    documents.destroy();

    expect(log).toMatch(buildUid());
    expectNothingFound(log, { ...secrets, STACK_KEY: stack.credentials.secretAccessKey });
    expect(leaksIn(page, secrets)).toEqual([]);
    expect(leaksIn(JSON.stringify(record.Item), secrets)).toEqual([]);
    expect(leaksIn(JSON.stringify(github.statusesFor('octo/hostile', repo.sha)), secrets)).toEqual([]);
  }, 60_000);
});

describe('lambkin run', () => {
  it('keeps the secrets in the CLI environment from a hostile local build', async () => {
    const secrets = fakeSecrets();
    const dir = openFolder('lambkin-security-run-');
    for (const [path, content] of Object.entries(hostileProject())) {
      mkdirSync(join(dir, path, '..'), { recursive: true });
      writeFileSync(join(dir, path), typeof content === 'string' ? content : '');
    }
    const run = await new Promise<{ code: number | null; stdout: string; stderr: string }>(
      (resolve, reject) => {
        const child = spawn(process.execPath, [LAMBKIN_BIN, 'run', dir, '--json'], {
          cwd: OUTSIDE_CHECKOUT,
          env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...secrets },
        });
        let stdout = '';
        let stderr = '';
        child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
        child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
        const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
        child.once('error', reject);
        child.once('close', (code) => {
          clearTimeout(timer);
          resolve({ code, stdout, stderr });
        });
      },
    );
    // --json: the summary alone on stdout, the streamed log on stderr.
    expect(JSON.parse(run.stdout)).toMatchObject({ state: 'success' });
    expect(run.code).toBe(0);
    expect(run.stderr).toMatch(buildUid());
    expectNothingFound(run.stdout + run.stderr, secrets);
  }, 70_000);
});

describe('the controller and the runner (in-process controller, runner process)', () => {
  const secrets = fakeSecrets();
  const deployKey = `dk-${fakeSecrets().AWS_SECRET_ACCESS_KEY}`;
  const saved: Record<string, string | undefined> = {};
  let github: GitHubStandIn;
  let deps: ControllerDependencies;
  let builds: DynamoBuildStore;
  let settings: DynamoSettingsStore;
  let logs: S3LogStore;
  /**
   * A form signed by the controller's own client carries its access key id (X-Amz-Credential) and
   * session token (X-Amz-Security-Token), which a step could read from the runner's memory. So the
   * controller signs with per-build credentials of an upload role (STS, on moto here), and no
   * value of its own reaches the runner.
   */
  const moto = process.env.LAMBKIN_TEST_MOTO_ENDPOINT;
  const hasSts = requireTool(
    'moto_server',
    'STS (AssumeRole) for per-build upload credentials',
    moto !== undefined,
  );
  let signer: StsBuildSigner | undefined;

  beforeAll(async () => {
    // The controller's process holds the AWS credentials (as a Lambda does) and the GitHub token.
    for (const [name, value] of Object.entries(secrets)) {
      saved[name] = process.env[name];
      process.env[name] = value;
    }
    const storage = await createTestStorage();
    github = await startGitHubServer({ token: secrets.GITHUB_TOKEN });
    builds = new DynamoBuildStore(storage.clients.documents, storage.buildsTable);
    settings = new DynamoSettingsStore(storage.clients.documents, storage.settingsTable);
    logs = new S3LogStore(storage.clients.s3, storage.bucket);
    if (hasSts && moto) {
      signer = new StsBuildSigner(createStsClient({ endpoint: moto, region: 'us-east-1' }), {
        roleArn: 'arn:aws:iam::123456789012:role/lambkin-upload',
        bucket: storage.bucket,
        s3: (credentials) =>
          createS3Client({ credentials, region: 'us-east-1', endpoints: { s3: storage.backend.s3Endpoint } }),
      });
    }
    const octokit = createGitHubClient({ baseUrl: github.url, token: secrets.GITHUB_TOKEN });
    deps = {
      builds,
      settings,
      statuses: new GitHubStatusReporter(octokit),
      logs,
      archives: { resolveArchiveUrl: (repo, sha) => resolveArchiveUrl(octokit, repo, sha) },
      // As the local stack does: root never runs strangers' steps.
      runner: new ProcessRunnerInvoker(
        asRoot ? { sandbox: true, workRoot: join(tmpdir(), 'lambkin-security-sandbox') } : {},
      ),
      logger: createMemoryLogger(),
      publicUrl: 'https://ci.example.test',
      runnerTimeoutMs: 60_000,
      logLimitBytes: 4 * 1024 * 1024,
      ...(signer ? { signer } : {}),
    };
  });

  afterAll(async () => {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
    await github?.close();
  });

  async function build(repo: string, sha: string, request: Partial<BuildRequest> = {}) {
    const full = testBuildRequest({ repo, sha, ...request });
    const number = await builds.allocateNumber(repo);
    const queued = await builds.putQueuedBuild(full, number, { deadline: Date.now() + 60_000 });
    const result = await runControllerBuild(deps, { kind: 'build', repo, number: queued.number });
    if (!result.ran) throw new Error(`build did not run: ${result.reason}`);
    const log = (await logs.readLog(result.build.logPrefix)) ?? '';
    const page = (await logs.getObjectText(`${result.build.logPrefix}index.html`)) ?? '';
    return { done: result.build, log, page };
  }

  it('gives a trusted build its secretEnv (masked in the log) and nothing else', async () => {
    const repo = await createGitRepo(hostileProject());
    folders.push(repo.dir);
    github.addRepository({ owner: 'octo', name: 'hostile', gitDir: repo.dir });
    await settings.update(repoScope('octo/hostile'), () => ({ secretEnv: { DEPLOY_KEY: deployKey } }));

    const trusted = await build('octo/hostile', repo.sha);
    expect(trusted.done.state).toBe('success');
    expect(trusted.log).toMatch(buildUid());
    expectNothingFound(trusted.log + trusted.page + JSON.stringify(trusted.done), secrets);
    // By design the build sees its secret: the masker hides the raw and base64 forms...
    expect(trusted.log).toContain('FOUND env: DEPLOY_KEY=***');
    expect(leaksIn(trusted.log, { DEPLOY_KEY: deployKey }).filter((leak) => !/hex|HEX/.test(leak))).toEqual(
      [],
    );
    // ...but the hostile script's hex of its environment shows the probes do find what is there.
    expect(trusted.log).toContain(Buffer.from(`DEPLOY_KEY=${deployKey}`).toString('hex'));

    const fork = await build('octo/hostile', repo.sha, {
      event: 'pull_request',
      pr: 9,
      fork: true,
      trusted: false,
      headRepo: 'stranger/hostile',
      ref: 'refs/pull/9/head',
    });
    expect(fork.done.state).toBe('success');
    expectNothingFound(fork.log + fork.page + JSON.stringify(fork.done), {
      ...secrets,
      DEPLOY_KEY: deployKey,
    });
    expect(fork.log).not.toContain('DEPLOY_KEY');
  }, 80_000);

  const form = (build: { repo: string; number: number; logPrefix: string }, withSigner?: StsBuildSigner) =>
    (async () =>
      logs.presignLogUpload(build, {
        expiresInSeconds: 60,
        maxObjectBytes: 1024,
        ...(withSigner
          ? { signer: await withSigner.forBuild(build, { write: [build.logPrefix], read: [] }, 900) }
          : {}),
      }))();

  (hasSts ? it : it.skip)(
    "signs the runner's log form with per-build credentials: no credential of the controller in it",
    async () => {
      // Without moto_server requireTool above has already failed (CI) or skipped visibly (elsewhere).
      if (!signer) throw new Error('STS is there but no per-build signer was made: see beforeAll');
      const build = { repo: 'octo/hostile', number: 1, logPrefix: 'logs/octo/hostile/builds/1/' };
      const signed = await form(build, signer);
      expect(leaksIn(JSON.stringify(signed), secrets)).toEqual([]);
      expect(signed.fields['X-Amz-Credential']).toMatch(/^\S+\/\d{8}\/us-east-1\/s3\/aws4_request$/);
      // The protection switched off (the controller's own client signs): the probe finds its key.
      const unsigned = await form(build);
      expect(leaksIn(JSON.stringify(unsigned), { AWS_ACCESS_KEY_ID: secrets.AWS_ACCESS_KEY_ID })).not.toEqual(
        [],
      );
    },
  );

  it("limits the per-build credentials to the build's own keys with a session policy", () => {
    const policy = JSON.parse(
      grantsPolicy('lambkin-logs', {
        write: ['logs/octo/a/builds/7/', 'cache/octo/a/k.tar.gz'],
        read: ['cache/octo/a/k.tar.gz'],
      }),
    ) as { Statement: { Action: string[]; Resource: string[] }[] };
    expect(policy.Statement).toEqual([
      {
        Effect: 'Allow',
        Action: ['s3:PutObject'],
        Resource: [
          'arn:aws:s3:::lambkin-logs/logs/octo/a/builds/7/*',
          'arn:aws:s3:::lambkin-logs/cache/octo/a/k.tar.gz',
        ],
      },
      {
        Effect: 'Allow',
        Action: ['s3:GetObject'],
        Resource: ['arn:aws:s3:::lambkin-logs/cache/octo/a/k.tar.gz'],
      },
    ]);
  });
});
