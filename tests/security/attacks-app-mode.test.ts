/**
 * A hostile contributor against App mode (issue 15), with real parts: the reporter made as the
 * composition root makes it, against the GitHub stand-in acting as GitHub for a GitHub App (it
 * checks GitHub's limits on a check run's output), and the configuration as the functions and
 * `lambkin dev` load it. The build's log is the attacker's: a fork's test output.
 */
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rm } from 'node:fs/promises';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { pushPayload, signedDelivery } from '../support/payloads.js';
import type { BuildRecord } from '../../src/core/build.js';
import { CHECK_SUMMARY_MAX, checkReportOf } from '../../src/core/check-run.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import type { DeliveryPolicy } from '../../src/core/ports.js';
import { loadConfig } from '../../src/config.js';
import { ConfigurationError } from '../../src/core/errors.js';
import { createGitHubAccess } from '../../src/github/access.js';
import { GitHubCheckRuns } from '../../src/github/checks.js';
import { statusReporterFor } from '../../src/wiring.js';
import { startDevProcess, type DevProcess } from '../support/dev-process.js';
import { fakeSecrets, hostileProject, leaksIn, probesMissing } from './hostile.js';
import {
  createGitRepo,
  startGitHubServer,
  type GitHubStandIn,
  type GitRepo,
} from '../support/github-server.js';
import { appKeyPair } from '../support/app-keys.js';

const APP_ID = 7301;
const CLIENT_ID = 'Iv1.attackappmode0001';
const { publicKey, privateKey } = appKeyPair();
/** No retries: GitHub's 422 is final, and the test should see the first answer. */
const POLICY: DeliveryPolicy = {
  deadlineMs: 10_000,
  maxAttempts: 1,
  attemptTimeoutMs: 5000,
  initialBackoffMs: 20,
};
const ROOT = '/tmp/lambkin-work/build-7/src';
/** Another App on the same repository (a third-party App, or a collaborator's): not Lambkin. */
const OTHER_APP_ID = 7302;
const other = appKeyPair();

let server: GitHubStandIn;
let repo: GitRepo;

beforeAll(async () => {
  repo = await createGitRepo({ 'test/a.test.js': 'x\n' });
  server = await startGitHubServer({
    apps: [
      { id: APP_ID, publicKey, clientId: CLIENT_ID },
      { id: OTHER_APP_ID, publicKey: other.publicKey },
    ],
    installations: [
      { id: 31, appId: APP_ID, account: 'acme', repositories: ['acme/widget'] },
      { id: 32, appId: OTHER_APP_ID, account: 'acme', repositories: ['acme/widget'] },
    ],
  });
  server.addRepository({ owner: 'acme', name: 'widget', gitDir: repo.dir });
});

afterAll(async () => {
  await server.close();
  await rm(repo.dir, { recursive: true, force: true });
});

let nextNumber = 1;

/** A reporter as a new process of the composition root makes it (nothing remembered). */
function newReporter(appId = String(APP_ID)) {
  return statusReporterFor(
    createGitHubAccess({
      baseUrl: server.url,
      logger: createMemoryLogger(),
      app: { appId, privateKey },
    }),
  );
}

/** Sends the report of `build` in `state`, as the webhook, controller or sweeper does. */
async function send(
  build: BuildRecord,
  state: 'pending' | 'failure',
  extra: { log?: string; checkoutRoot?: string } = {},
  reporter = newReporter(),
): Promise<void> {
  const description = `Build #${build.number} ${state === 'pending' ? 'queued' : 'failed: test exited 1'}`;
  await reporter.setStatus(
    {
      repo: build.repo,
      sha: build.sha,
      state,
      description,
      targetUrl: `https://ci.example.test/acme/widget/${build.number}`,
      check: checkReportOf({ build, state: build.state, description, ...extra }),
    },
    POLICY,
  );
}

function failedBuild(number = nextNumber++): BuildRecord {
  return {
    repo: 'acme/widget',
    number,
    sha: repo.sha,
    state: 'failure',
    startedAt: Date.now() - 1000,
    endedAt: Date.now(),
    steps: [{ name: 'test', exitCode: 1, durationMs: 900 }],
  } as BuildRecord;
}

/** The final report of a failed build whose log is `log`, as the controller sends it. */
async function reportFailure(log: string): Promise<BuildRecord> {
  const build = failedBuild();
  await send(build, 'failure', { log, checkoutRoot: ROOT });
  return build;
}

function runOf(build: BuildRecord) {
  return server
    .checkRunsFor('acme/widget', build.sha)
    .find((run) => run.external_id === `acme/widget#${build.number}` && run.appId === APP_ID);
}

describe("a fork's log against its check run's final report", () => {
  it("cannot push the text past GitHub's 65 535 characters with backticks (the fence escape lengthens it)", async () => {
    // 48 KiB of backticks: each ``` gets a zero-width space, a third longer than the log's end.
    const log = `not ok 1 - hostile\n${'`'.repeat(60 * 1024)}\n`;
    const report = checkReportOf({
      build: { repo: 'acme/widget', number: 1, steps: [] },
      state: 'failure',
      description: 'Build #1 failed',
      log,
      checkoutRoot: ROOT,
    });
    expect(report.output.text?.length ?? 0).toBeLessThanOrEqual(CHECK_SUMMARY_MAX);
    // Still one code block: no line of the log closes the fence.
    const inner = (report.output.text ?? '').split('\n').slice(1, -1);
    expect(inner.some((line) => /^ {0,3}```/.test(line))).toBe(false);

    const build = await reportFailure(log);
    expect(runOf(build)).toMatchObject({ status: 'completed', conclusion: 'failure' });
  });

  it('cannot make an annotation GitHub refuses with a line or column number no integer holds', async () => {
    const huge = '9'.repeat(400); // Number(…) is Infinity: JSON null
    const log =
      `not ok 1 - first\n  ---\n  location: '${ROOT}/test/a.test.js:${huge}:5'\n  ...\n` +
      `not ok 2 - second\n  ---\n  location: '${ROOT}/test/a.test.js:3:${huge}'\n  ...\n` +
      `not ok 3 - third\n  ---\n  location: '${ROOT}/test/a.test.js:99999999999999999999:1'\n  ...\n` +
      `not ok 4 - fourth\n  ---\n  location: '${ROOT}/test/a.test.js:4:2'\n  ...\n1..4\n`;
    const build = await reportFailure(log);
    const run = runOf(build);
    expect(run).toMatchObject({ status: 'completed', conclusion: 'failure' });
    for (const annotation of run?.annotations ?? []) {
      expect(Number.isSafeInteger(annotation.start_line)).toBe(true);
      expect(annotation.start_line).toBeLessThanOrEqual(2 ** 31 - 1);
      if (annotation.start_column !== undefined) {
        expect(annotation.start_column).toBeLessThanOrEqual(2 ** 31 - 1);
      }
    }
    expect(run?.annotations).toContainEqual(
      expect.objectContaining({ path: 'test/a.test.js', start_line: 4, start_column: 2 }),
    );
  });
});

describe('a log of very many failures (within the 4 MiB log limit)', () => {
  const many = (count: number, line: (index: number) => string): string =>
    Array.from({ length: count }, (_, index) => line(index + 1)).join('');

  it.each([
    ['500 000 failing TAP points', many(500_000, () => 'not ok\n')],
    [
      'one TAP failure with a stack of 400 000 frames',
      `not ok 1 - deep\n  ---\n  stack: |-\n${many(400_000, () => '    a:1:1\n')}  ...\n`,
    ],
  ])('still gets its final report: %s', async (_name, log) => {
    expect(Buffer.byteLength(log)).toBeLessThan(4 * 1024 * 1024);
    const build = await reportFailure(log);
    expect(runOf(build)).toMatchObject({ status: 'completed', conclusion: 'failure' });
    expect(server.statusesFor('acme/widget', build.sha)[0]).toMatchObject({
      state: 'failure',
      description: `Build #${build.number} failed: test exited 1`,
    });
  });
});

describe("another App's check run named like Lambkin's", () => {
  it("is never taken for the build's own: the build's run is completed, the impostor left alone", async () => {
    const build = failedBuild();
    await send({ ...build, state: 'queued' }, 'pending');
    // Another App on the repository makes a run with Lambkin's name and the build's external id
    // (newer than Lambkin's own, so first in the list).
    const otherApp = createGitHubAccess({
      baseUrl: server.url,
      logger: createMemoryLogger(),
      app: { appId: String(OTHER_APP_ID), privateKey: other.privateKey },
    });
    await new GitHubCheckRuns(otherApp.forRepo('acme/widget', { checks: 'write' })).create('acme/widget', {
      name: 'Lambkin',
      headSha: build.sha,
      status: 'queued',
      externalId: `acme/widget#${build.number}`,
    });
    const impostor = server
      .checkRunsFor('acme/widget', build.sha)
      .find((run) => run.appId === OTHER_APP_ID && run.external_id === `acme/widget#${build.number}`);
    expect(impostor).toMatchObject({ name: 'Lambkin', status: 'queued' });

    // The builder, another process, completes the build's run: found among Lambkin's own only,
    // also when it knows the App by its client id (it asks GitHub for the App's id).
    await send(build, 'failure', {}, newReporter(CLIENT_ID));
    expect(server.requests.some((request) => request.method === 'GET' && request.path === '/app')).toBe(true);
    expect(runOf(build)).toMatchObject({ status: 'completed', conclusion: 'failure' });
    const ours = server
      .checkRunsFor('acme/widget', build.sha)
      .filter((run) => run.appId === APP_ID && run.external_id === `acme/widget#${build.number}`);
    expect(ours).toHaveLength(1);
    expect(
      server.checkRunsFor('acme/widget', build.sha).find((run) => run.id === impostor?.id),
    ).toMatchObject({
      status: 'queued',
    });
  });
});

describe("the App's private key in a file", () => {
  const pem = privateKey;
  let folder: string;
  beforeEach(() => {
    folder = mkdtempSync(join(tmpdir(), 'lambkin-attack-key-'));
  });
  afterEach(() => rmSync(folder, { recursive: true, force: true }));

  const env = (file: string) => ({
    LAMBKIN_WEBHOOK_SECRET: 'webhook-secret',
    LAMBKIN_GITHUB_APP_ID: '42',
    LAMBKIN_GITHUB_APP_PRIVATE_KEY_FILE: file,
  });

  it('is refused when other users may read it (a build step as its own uid could), naming the fix, never the key', () => {
    const file = join(folder, 'app.pem');
    writeFileSync(file, pem);
    chmodSync(file, 0o644);
    let error: unknown;
    try {
      loadConfig(env(file), []);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigurationError);
    const message = (error as ConfigurationError).problems.join('\n');
    expect(message).toContain(file);
    expect(message).toContain('chmod 600');
    expect(message).not.toContain('PRIVATE KEY-----');

    chmodSync(file, 0o600);
    expect(loadConfig(env(file), []).githubAppPrivateKey).toBe(pem.trim());
  });

  it('is refused by `lambkin dev` in <data-dir>/github-app.json when others may read it, before anything starts', async () => {
    const file = join(folder, 'github-app.json');
    writeFileSync(file, JSON.stringify({ appId: 42, privateKey: pem, webhookSecret: 'the-app-secret' }));
    chmodSync(file, 0o644);
    const outcome = await startDevProcess({ dataDir: folder, githubApi: server.url, env: {} }).then(
      async (dev) => {
        await dev.stop();
        return 'started';
      },
      (error: unknown) => (error instanceof Error ? error.message : String(error)),
    );
    expect(outcome).toContain(`chmod 600 ${file}`);
    expect(outcome).not.toContain('PRIVATE KEY-----');
  }, 60_000);
});

describe('a hostile build under `lambkin dev` in App mode', () => {
  const secrets = fakeSecrets();
  const { GITHUB_TOKEN: _token, ...environment } = secrets;
  let github: GitHubStandIn;
  let dev: DevProcess;
  let folder: string;

  beforeAll(async () => {
    github = await startGitHubServer({
      apps: [{ id: APP_ID, publicKey }],
      installations: [{ id: 41, account: 'octo', repositories: ['octo/hostile'] }],
    });
    folder = mkdtempSync(join(tmpdir(), 'lambkin-attack-dev-'));
    chmodSync(folder, 0o755); // others may enter: only the key file's own mode keeps it
    const keyFile = join(folder, 'app.pem');
    writeFileSync(keyFile, privateKey, { mode: 0o600 });
    const dataDir = join(folder, '.lambkin');
    mkdirSync(dataDir, { mode: 0o755 });
    dev = await startDevProcess({
      dataDir,
      githubApi: github.url,
      env: {
        ...environment,
        LAMBKIN_GITHUB_APP_ID: String(APP_ID),
        LAMBKIN_GITHUB_APP_PRIVATE_KEY_FILE: keyFile,
      },
    });
  }, 40_000);

  afterAll(async () => {
    await dev.stop();
    await github.close();
    rmSync(folder, { recursive: true, force: true });
  });

  it('finds neither the App key, an installation token nor the webhook secret, and its check run carries none', async () => {
    const git = await createGitRepo(hostileProject());
    github.addRepository({ owner: 'octo', name: 'hostile', gitDir: git.dir });
    try {
      const payload = pushPayload({
        repo: 'octo/hostile',
        branch: 'main',
        sha: git.sha,
      }) as unknown as Record<string, unknown>;
      payload.installation = { id: 41, node_id: 'MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uNDE=' };
      const delivery = await signedDelivery(secrets.LAMBKIN_WEBHOOK_SECRET, 'push', payload);
      const response = await fetch(dev.stack.endpoints.webhook, {
        method: 'POST',
        headers: delivery.headers,
        body: delivery.body,
      });
      expect(response.status).toBe(202);
      let run = github.checkRunsFor('octo/hostile', git.sha)[0];
      for (let i = 0; i < 240 && run?.status !== 'completed'; i++) {
        await new Promise((resolve) => setTimeout(resolve, 250));
        run = github.checkRunsFor('octo/hostile', git.sha)[0];
      }
      expect(run).toMatchObject({ status: 'completed', conclusion: 'success' });

      const { stack } = dev;
      const s3 = new S3Client({
        endpoint: stack.endpoints.s3,
        region: stack.region,
        credentials: stack.credentials,
        forcePathStyle: true,
        requestChecksumCalculation: 'WHEN_REQUIRED',
        responseChecksumValidation: 'WHEN_REQUIRED',
      });
      const log =
        (await s3
          .send(new GetObjectCommand({ Bucket: stack.bucket, Key: 'logs/octo/hostile/builds/1/log.txt' }))
          .then((object) => object.Body?.transformToString())) ?? '';
      s3.destroy();
      expect(probesMissing(log)).toEqual([]);
      const keyLines = privateKey.split('\n').filter((line) => /^[A-Za-z0-9+/=]{40,}$/.test(line));
      const tokens = github.mintedTokens().map((minted) => minted.token);
      expect(tokens.length).toBeGreaterThan(0);
      const wanted: Record<string, string> = {
        LAMBKIN_WEBHOOK_SECRET: secrets.LAMBKIN_WEBHOOK_SECRET,
        AWS_SECRET_ACCESS_KEY: secrets.AWS_SECRET_ACCESS_KEY,
        ...Object.fromEntries(keyLines.map((line, index) => [`key line ${index}`, line])),
        ...Object.fromEntries(tokens.map((token, index) => [`installation token ${index}`, token])),
      };
      expect(leaksIn(log, wanted)).toEqual([]);
      expect(leaksIn(JSON.stringify(github.checkRunsFor('octo/hostile', git.sha)), wanted)).toEqual([]);
      expect(leaksIn(JSON.stringify(github.statusesFor('octo/hostile', git.sha)), wanted)).toEqual([]);
    } finally {
      rmSync(git.dir, { recursive: true, force: true });
    }
  }, 90_000);
});
