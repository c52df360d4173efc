/**
 * A job's runner writes only its own log. The controller, through the local stack's per-build
 * signer (src/local/ephemeral-signer.ts) and its storage proxy (src/local/storage-proxy.ts, which
 * checks every presigned form's key against the key's grants) in front of the S3 emulator, runs a
 * build of two jobs with real runner processes; then each job's form, as a hostile build holding
 * it would, tries to write the other job's log and the build's own page.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runControllerBuild, type ControllerDependencies } from '../../src/controller/controller.js';
import { endCrashedJob } from '../../src/controller/job-controller.js';
import { ProcessRunnerInvoker } from '../../src/controller/runner-invoker.js';
import { createS3Client } from '../../src/aws/clients.js';
import { grantsPolicy } from '../../src/aws/sts.js';
import type { BuildRecord } from '../../src/core/build.js';
import type { JobRecord } from '../../src/core/job-record.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import type { BuildGrants, RunnerInvoker } from '../../src/core/ports.js';
import { builderInvocationFor, type PresignedPost, type RunnerInput } from '../../src/core/protocol.js';
import { resolveArchiveUrl } from '../../src/github/archive.js';
import { createGitHubClient } from '../../src/github/client.js';
import { readRepoFile } from '../../src/github/contents.js';
import { GitHubStatusReporter } from '../../src/github/statuses.js';
import { EphemeralBuildSigner } from '../../src/local/ephemeral-signer.js';
import { LocalJobPool } from '../../src/local/job-pool.js';
import { StackCredentials } from '../../src/local/stack-credentials.js';
import { startStorageProxy } from '../../src/local/storage-proxy.js';
import type { RunningServer } from '../../src/local/storage-servers.js';
import { DynamoBuildStore } from '../../src/store/builds.js';
import { DynamoJobStore } from '../../src/store/jobs.js';
import { S3LogStore } from '../../src/store/logs.js';
import { DynamoSettingsStore } from '../../src/store/settings.js';
import { testBuildRequest } from '../support/builds.js';
import {
  createGitRepoFromDirectory,
  startGitHubServer,
  type GitHubStandIn,
} from '../support/github-server.js';
import { createTestStorage, npmEmulators, type TestStorage } from '../support/storage.js';

const TOKEN = 'job-grants-token';
let storage: TestStorage;
let github: GitHubStandIn;
let proxy: RunningServer;
let scratch: string;

beforeAll(async () => {
  storage = await createTestStorage();
  github = await startGitHubServer({ token: TOKEN });
  scratch = await mkdtemp(join(tmpdir(), 'lambkin-job-grants-'));
});

afterAll(async () => {
  await proxy?.stop();
  await github.close();
  await rm(scratch, { recursive: true, force: true });
});

/** Posts `body` to `key` with the form, as the runner's uploader does (but without its key check). */
async function postWith(form: PresignedPost, key: string, body: string): Promise<number> {
  const data = new FormData();
  for (const [name, value] of Object.entries(form.fields)) data.append(name, value);
  data.append('key', key);
  data.append('Content-Type', 'text/html; charset=utf-8');
  data.append('file', new Blob([body], { type: 'text/html' }), 'index.html');
  const response = await fetch(form.url, { method: 'POST', body: data });
  await response.arrayBuffer();
  return response.status;
}

describe("a job's runner and its grants", () => {
  let first: PresignedPost | undefined;
  let recorded: JobRecord[];
  let queued: BuildRecord;
  let logs: S3LogStore;
  let grants: BuildGrants[];

  it("grants each job's runner its own log prefix only, and the runner uploads there", async () => {
    const credentials = new StackCredentials();
    const target = { endpoint: npmEmulators().s3Endpoint, stop: () => Promise.resolve() };
    proxy = await startStorageProxy({ service: 's3', target, credentials });
    grants = [];
    const ephemeral = new EphemeralBuildSigner(credentials, (key) =>
      createS3Client({ endpoints: { s3: proxy.endpoint }, credentials: key, region: 'us-east-1' }),
    );
    const inputs: RunnerInput[] = [];
    const processRunner = new ProcessRunnerInvoker({ workRoot: join(scratch, 'work') });
    const runner: RunnerInvoker = {
      run(input, signal) {
        inputs.push(input);
        return processRunner.run(input, signal);
      },
    };

    const dir = join(scratch, 'project');
    await mkdir(dir, { recursive: true });
    await writeFile(
      join(dir, '.lambkin.json'),
      JSON.stringify({ install: [], test: 'echo "job shard $LAMBKIN_SHARD_INDEX wrote this"', parallel: 2 }),
    );
    const git = await createGitRepoFromDirectory(dir);
    github.addRepository({ owner: 'octo', name: 'grants', gitDir: git.dir });
    const octokit = createGitHubClient({ baseUrl: github.url, token: TOKEN });
    const builds = new DynamoBuildStore(storage.clients.documents, storage.buildsTable);
    const jobs = new DynamoJobStore(storage.clients.documents, storage.buildsTable);
    // The controller's own storage client: the emulator directly (it is trusted).
    logs = new S3LogStore(storage.clients.s3, storage.bucket);
    const logger = createMemoryLogger();
    const pool = new LocalJobPool(
      (build, job) => runControllerBuild(deps, builderInvocationFor(build, job)),
      (build, job, reason) => endCrashedJob(deps, { ...build, job }, reason),
      2,
      logger,
    );
    const deps: ControllerDependencies = {
      builds,
      settings: new DynamoSettingsStore(storage.clients.documents, storage.settingsTable),
      statuses: new GitHubStatusReporter(octokit),
      logs,
      archives: { resolveArchiveUrl: (repo, sha) => resolveArchiveUrl(octokit, repo, sha) },
      repoFiles: { readFile: (repo, path, ref) => readRepoFile(octokit, repo, path, ref) },
      runner,
      signer: {
        forBuild(build, granted, expiresInSeconds) {
          grants.push(granted);
          return ephemeral.forBuild(build, granted, expiresInSeconds);
        },
      },
      jobs,
      jobInvoker: pool,
      logger,
      publicUrl: 'https://ci.example.test',
      runnerTimeoutMs: 90_000,
      logLimitBytes: 1024 * 1024,
    };
    const number = await builds.allocateNumber('octo/grants');
    queued = await builds.putQueuedBuild(testBuildRequest({ repo: 'octo/grants', sha: git.sha }), number, {
      deadline: Date.now() + 60_000,
    });
    await runControllerBuild(deps, { kind: 'build', repo: 'octo/grants', number });
    await pool.idle();

    recorded = await jobs.listJobs(queued);
    expect(recorded.map((job) => job.state)).toEqual(['success', 'success']);
    // Each job's runner uploaded its log through the proxy with its own key.
    for (const [index, job] of recorded.entries()) {
      expect(await logs.readLog(job.logPrefix)).toContain(`job shard ${index + 1} wrote this`);
    }
    // Each runner's key was granted its job's log prefix, nothing else.
    const prefixes = recorded.map((job) => job.logPrefix).sort();
    expect(grants.map((granted) => granted.write).sort()).toEqual(prefixes.map((prefix) => [prefix]));
    for (const granted of grants) expect(granted.read).toEqual([]);
    expect(inputs.map((input) => input.logUpload.keyPrefix).sort()).toEqual(prefixes);
    for (const input of inputs) {
      expect(input.logUpload.url.startsWith(proxy.endpoint)).toBe(true);
      expect(JSON.stringify(input)).not.toContain(credentials.stack.secretAccessKey);
    }

    first = inputs.find((input) => input.job?.id === recorded[0]?.id)?.logUpload;
    expect(first).toBeDefined();
  });

  it("refuses job 1's form for job 2's log and the build's own files", async () => {
    const form = first as PresignedPost;
    const second = recorded[1];
    const buildPage = `${queued.logPrefix}index.html`;
    const pageBefore = await logs.getObjectText(buildPage);
    expect(pageBefore).toContain('octo/grants');
    expect(await postWith(form, `${second?.logPrefix ?? ''}index.html`, '<p>forged</p>')).toBe(403);
    expect(await postWith(form, `${second?.logPrefix ?? ''}000001.txt`, 'forged')).toBe(403);
    expect(await postWith(form, buildPage, '<p>forged</p>')).toBe(403);
    expect(await postWith(form, `${queued.logPrefix}log.txt`, 'forged')).toBe(403);
    expect(await postWith(form, `logs/octo/grants/latest.json`, '{}')).toBe(403);
    expect(await postWith(form, `cache/octo/grants/forged.tgz`, 'forged')).toBe(403);
    expect(await logs.getObjectText(buildPage)).toBe(pageBefore);
    expect(await logs.readLog(second?.logPrefix ?? '')).not.toContain('forged');
    // Its own prefix it may write.
    expect([200, 201, 204]).toContain(await postWith(form, `${form.keyPrefix}extra.txt`, 'mine'));
  });

  it("gives each job's runner, in the cloud, a session policy of its own log prefix only", () => {
    for (const job of recorded) {
      const granted = grants.find((each) => each.write.includes(job.logPrefix));
      expect(granted).toBeDefined();
      const policy = JSON.parse(grantsPolicy('lambkin-logs', granted as BuildGrants)) as {
        Statement: { Action: string[]; Resource: string[] }[];
      };
      expect(policy.Statement).toEqual([
        {
          Effect: 'Allow',
          Action: ['s3:PutObject'],
          Resource: [`arn:aws:s3:::lambkin-logs/${job.logPrefix}*`],
        },
      ]);
      // The wildcard is inside the job's own folder: never the build's files or a sibling job's.
      expect(job.logPrefix).toMatch(/\/builds\/1\/jobs\/default\.shard-[12]\/$/);
    }
  });

  // The local stack's proxy checks a form's key by its text (startsWith the granted prefix) and the
  // local S3 server resolves `..` in keys as file paths: `<own prefix>../../index.html` would
  // overwrite the build's page (and `../` far enough, any object). The proxy refuses `.`/`..`
  // segments. S3 itself takes keys literally, so the cloud was never affected.
  it("refuses a key that climbs out of job 1's prefix by `..` segments (local stack)", async () => {
    const form = first as PresignedPost;
    const buildPage = `${queued.logPrefix}index.html`;
    const pageBefore = await logs.getObjectText(buildPage);
    expect(await postWith(form, `${form.keyPrefix}../../index.html`, '<p>forged</p>')).toBe(403);
    expect(await logs.getObjectText(buildPage)).toBe(pageBefore);
  });
});
