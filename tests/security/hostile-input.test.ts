/**
 * The hostile-input corpus, end to end: bad webhook deliveries through the real webhook handler,
 * and hostile builds through the real controller and a runner in its own process (as an unused
 * unprivileged uid when the tests run as root), with a 20 MiB disk quota. After every hostile build
 * a normal build on the same controller and runner still passes.
 *
 * Bounded: every hostile build has a timeout of a few seconds, writes only under its own work root
 * (a fresh folder) at a limited rate, and the fork bomb runs under prlimit as a uid nothing else uses.
 */
import { tarball, type TarEntry } from '../support/tarballs.js';
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { jest } from '@jest/globals';
import { createLambdaClient } from '../../src/aws/clients.js';
import { LambdaControllerInvoker } from '../../src/aws/controller-invoker.js';
import { runControllerBuild, type ControllerDependencies } from '../../src/controller/controller.js';
import { LOG_KEYS, REPO_KEYS } from '../../src/core/protocol.js';
import { stripTerminalControls } from '../../src/core/terminal-text.js';
import { ProcessRunnerInvoker } from '../../src/controller/runner-invoker.js';
import type { BuildRequest } from '../../src/core/build.js';
import type { IntakeDependencies } from '../../src/controller/intake.js';
import { resolveArchiveUrl } from '../../src/github/archive.js';
import { createGitHubClient } from '../../src/github/client.js';
import { GitHubStatusReporter } from '../../src/github/statuses.js';
import { MAX_WEBHOOK_BODY_BYTES, WebhookVerifier } from '../../src/github/webhook.js';
import { createWebhookHandler } from '../../src/handlers/webhook.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import { DynamoBuildStore } from '../../src/store/builds.js';
import { S3LogStore } from '../../src/store/logs.js';
import { DynamoSettingsStore, repoScope } from '../../src/store/settings.js';
import { serveBytes, startArchiveServer, type ArchiveServer } from '../support/archive-server.js';
import {
  commitFiles,
  createGitRepo,
  startGitHubServer,
  type GitFiles,
  type GitHubStandIn,
} from '../support/github-server.js';
import { startLambdaServer, type LambdaServer } from '../support/lambda-server.js';
import { npmProject } from '../support/npm-projects.js';
import { pullRequestPayload, pushPayload, signedDelivery } from '../support/payloads.js';
import { untrustedBuildRefusal } from '../../src/local/stack.js';
import { testBuildRequest } from '../support/builds.js';
import { itAsRoot, requireTool } from '../support/tools.js';
import { createTestStorage, type TestStorage } from '../support/storage.js';

const TOKEN = 'hostile-test-token';
const SECRET = 'hostile-test-secret';
const PUBLIC_URL = 'https://ci.example.test';
const QUOTA_BYTES = 20 * 1024 * 1024;
/** The runner's default RLIMIT_NPROC (DEFAULT_MAX_PROCESSES). */
const MAX_PROCESSES = 256;
/**
 * Processes of the build's uid outside the step's limit: the runner, the step sandbox's unshare and
 * pid 1, slirp4netns (the limit counts the step's own user namespace: src/runner/step-sandbox.ts).
 */
const SANDBOX_PROCESSES = 6;
const asRoot = process.getuid?.() === 0;
/** A uid and gid no account uses, so "its processes" are exactly the hostile build's. */
const BUILD_UID = 48151;
const WORK_ROOT = `/tmp/lambkin-hostile-${randomBytes(4).toString('hex')}`;

let storage: TestStorage;
let github: GitHubStandIn;
let lambda: LambdaServer;
let archives: ArchiveServer;
let builds: DynamoBuildStore;
let logs: S3LogStore;
let settings: DynamoSettingsStore;
let deps: ControllerDependencies;
let intake: IntakeDependencies;
let handler: ReturnType<typeof createWebhookHandler>;
const folders: string[] = [];

beforeAll(async () => {
  storage = await createTestStorage();
  github = await startGitHubServer({ token: TOKEN });
  lambda = await startLambdaServer();
  archives = await startArchiveServer();
  builds = new DynamoBuildStore(storage.clients.documents, storage.buildsTable);
  settings = new DynamoSettingsStore(storage.clients.documents, storage.settingsTable);
  logs = new S3LogStore(storage.clients.s3, storage.bucket);
  const octokit = createGitHubClient({ baseUrl: github.url, token: TOKEN });
  const statuses = new GitHubStatusReporter(octokit);
  deps = {
    builds,
    settings,
    statuses,
    logs,
    archives: { resolveArchiveUrl: (repo, sha) => resolveArchiveUrl(octokit, repo, sha) },
    runner: new ProcessRunnerInvoker({
      workRoot: WORK_ROOT,
      // As root a build sandbox with one slot: every build of this suite runs as BUILD_UID.
      ...(asRoot
        ? { sandbox: { firstUid: BUILD_UID, slots: 1, stateDir: '/run/lambkin-hostile-test' } }
        : {}),
    }),
    logger: createMemoryLogger(),
    publicUrl: PUBLIC_URL,
    runnerTimeoutMs: 60_000,
    logLimitBytes: 1024 * 1024,
    diskQuotaBytes: QUOTA_BYTES,
  };
  intake = {
    verifier: new WebhookVerifier([SECRET]),
    builds,
    settings,
    statuses,
    controller: new LambdaControllerInvoker(
      createLambdaClient({ endpoints: { lambda: lambda.endpoint } }),
      'lambkin-builder',
    ),
    logger: createMemoryLogger(),
    publicUrl: PUBLIC_URL,
    queueTimeoutMs: 20 * 60_000,
  };
  handler = createWebhookHandler(() => intake);
}, 60_000);

afterAll(async () => {
  await Promise.all([github.close(), lambda.close(), archives.close()]);
  for (const folder of [...folders, WORK_ROOT]) await rm(folder, { recursive: true, force: true });
});

async function repository(name: string, files: GitFiles) {
  const repo = await createGitRepo(files, { message: 'Initial commit' });
  folders.push(repo.dir);
  github.addRepository({ owner: 'octo', name, gitDir: repo.dir });
  return { repo: `octo/${name}`, sha: repo.sha, dir: repo.dir };
}

async function build(
  request: Partial<BuildRequest> & Pick<BuildRequest, 'repo' | 'sha'>,
  overrides: Partial<ControllerDependencies> = {},
) {
  const full = testBuildRequest({ ...request });
  const number = await builds.allocateNumber(full.repo);
  const queued = await builds.putQueuedBuild(full, number, { deadline: Date.now() + 120_000 });
  const started = Date.now();
  const result = await runControllerBuild(
    { ...deps, ...overrides },
    { kind: 'build', repo: queued.repo, number },
  );
  if (!result.ran) throw new Error(`build did not run: ${result.reason}`);
  const log = (await logs.readLog(result.build.logPrefix)) ?? '';
  return { build: result.build, log, ms: Date.now() - started };
}

let healthy: { repo: string; sha: string } | undefined;
/** The service stays up: a normal build on the same controller and runner passes. */
async function expectStillBuilds(): Promise<void> {
  healthy ??= await repository('healthy', npmProject({ test: 'echo HEALTHY-$((20+22))' }));
  const { build: done, log } = await build(healthy);
  expect(done.state).toBe('success');
  expect(log).toContain('HEALTHY-42');
}

/** The work root holds the class folders and their npm caches, and no build's folder is left. */
async function expectWorkRootClean(): Promise<void> {
  const left: string[] = [];
  for (const trustClass of await readdir(WORK_ROOT)) {
    for (const entry of await readdir(join(WORK_ROOT, trustClass))) left.push(`${trustClass}/${entry}`);
  }
  expect(left.filter((entry) => !entry.endsWith('/npm-cache'))).toEqual([]);
}

/**
 * Processes whose real uid is `uid`; zombies only with `zombies` (they still count against
 * RLIMIT_NPROC until reaped).
 */
async function processesOf(uid: number, { zombies = false } = {}): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry)) continue;
    const status = await readFile(`/proc/${entry}/status`, 'utf8').catch(() => '');
    const realUid = /^Uid:\s+(\d+)/m.exec(status)?.[1];
    const state = /^State:\s+(\S)/m.exec(status)?.[1];
    if (realUid === String(uid) && (zombies || (state !== 'Z' && state !== 'X'))) pids.push(Number(entry));
  }
  return pids;
}

/** Runs `during` while counting the build user's processes; returns the most seen at once. */
async function peakProcesses<T>(during: Promise<T>): Promise<{ result: T; peak: number }> {
  let done = false;
  let peak = 0;
  const sampling = (async () => {
    while (!done) {
      peak = Math.max(peak, (await processesOf(BUILD_UID)).length);
      await sleep(50);
    }
  })();
  try {
    return { result: await during, peak };
  } finally {
    done = true;
    await sampling;
  }
}

/** Nothing of the build user is left, not even a zombie, within a few seconds. */
async function expectNoProcessesLeft(): Promise<void> {
  let left = await processesOf(BUILD_UID, { zombies: true });
  for (let i = 0; i < 100 && left.length > 0; i++) {
    await sleep(100);
    left = await processesOf(BUILD_UID, { zombies: true });
  }
  expect(left).toEqual([]);
}

// ---------------------------------------------------------------------------------------------
// Webhook deliveries

async function post(headers: Record<string, string>, body: string) {
  const result = await handler({
    rawPath: '/webhook',
    headers,
    body,
    isBase64Encoded: false,
    requestContext: { http: { method: 'POST', path: '/webhook' } },
  });
  return { ...result, json: JSON.parse(result.body) as Record<string, unknown> };
}

async function deliver(
  payload: unknown,
  options: Parameters<typeof signedDelivery>[3] = {},
  event: 'push' | 'pull_request' = 'push',
) {
  const delivery = await signedDelivery(SECRET, event, payload, options);
  return { ...(await post(delivery.headers, delivery.body)), deliveryId: delivery.deliveryId };
}

/** Signs any body, also ones JSON.stringify could not produce. */
function signedRaw(body: string, deliveryId = randomUUID()): Record<string, string> {
  return {
    'Content-Type': 'application/json',
    'X-GitHub-Event': 'push',
    'X-GitHub-Delivery': deliveryId,
    'X-Hub-Signature-256': `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`,
  };
}

let webhookRepo: { repo: string; sha: string; dir: string } | undefined;
async function webhookCommit(label: string): Promise<string> {
  webhookRepo ??= await repository('hooked', { 'README.md': 'hi\n' });
  return commitFiles(webhookRepo.dir, { [`${label}.txt`]: `${label}\n` }, label);
}

const buildsFor = (repo: string) =>
  lambda.invocations.filter((invocation) => (invocation.payload as { repo?: string }).repo === repo);

describe('hostile webhook deliveries', () => {
  it('refuses a body larger than 25 MB with 413, writing nothing', async () => {
    const deliveryId = randomUUID();
    const body = JSON.stringify({ padding: 'x'.repeat(MAX_WEBHOOK_BODY_BYTES) });
    const response = await post(signedRaw(body, deliveryId), body);
    expect(response.statusCode).toBe(413);
    expect(response.json.error).toMatch(/25 MB/);
    expect(await builds.getDelivery(deliveryId)).toBeUndefined();
  });

  it('refuses 100 000 levels of nesting with 400 and keeps answering', async () => {
    const deliveryId = randomUUID();
    const depth = 100_000;
    for (const body of [
      '{"a":'.repeat(depth) + '1' + '}'.repeat(depth),
      '['.repeat(depth) + ']'.repeat(depth),
    ]) {
      const response = await post(signedRaw(body, deliveryId), body);
      expect(response.statusCode).toBe(400);
      expect(response.json.error).toMatch(/Malformed/);
    }
    expect(await builds.getDelivery(deliveryId)).toBeUndefined();
    const sha = await webhookCommit('after-nesting');
    expect((await deliver(pushPayload({ repo: 'octo/hooked', sha }))).statusCode).toBe(202);
  });

  it('refuses wrong and missing signatures with 401, writing nothing', async () => {
    const sha = await webhookCommit('unsigned');
    for (const signature of ['wrong', 'missing'] as const) {
      const response = await deliver(pushPayload({ repo: 'octo/hooked', sha }), { signature });
      expect(response.statusCode).toBe(401);
      expect(response.json.error).toMatch(/X-Hub-Signature-256/);
      expect(await builds.getDelivery(response.deliveryId)).toBeUndefined();
    }
    expect(github.statusesFor('octo/hooked', sha)).toEqual([]);
  });

  it('queues a replayed delivery once', async () => {
    const sha = await webhookCommit('replayed');
    const deliveryId = randomUUID();
    const before = buildsFor('octo/hooked').length;
    const payload = pushPayload({ repo: 'octo/hooked', sha });
    const first = await deliver(payload, { deliveryId });
    const replays = await Promise.all([1, 2, 3].map(() => deliver(payload, { deliveryId })));
    expect(first.statusCode).toBe(202);
    for (const replay of replays) expect(replay.json.queued).not.toBe(true);
    expect(buildsFor('octo/hooked').length - before).toBe(1);
    const queued = (await builds.listBuilds('octo/hooked')).filter((record) => record.sha === sha);
    expect(queued).toHaveLength(1);
  });

  it('ignores a captured body replayed under a new X-GitHub-Delivery: no build, nothing cancelled', async () => {
    const branch = 'replayed-body';
    const oldPush = pushPayload({ repo: 'octo/hooked', branch, sha: await webhookCommit('replayed-old') });
    const newPush = pushPayload({ repo: 'octo/hooked', branch, sha: await webhookCommit('replayed-new') });
    const captured = await signedDelivery(SECRET, 'push', oldPush);
    const first = await post(captured.headers, captured.body);
    const current = await deliver(newPush);
    expect(current.json).toMatchObject({ queued: true, cancelled: [first.json.number] });
    const before = buildsFor('octo/hooked').length;
    // The attacker's copy: the same signed bytes, a fresh delivery id (the signature does not cover it).
    const replays = await Promise.all(
      [1, 2, 3].map(() => post({ ...captured.headers, 'X-GitHub-Delivery': randomUUID() }, captured.body)),
    );
    for (const replay of replays) {
      expect([replay.statusCode, replay.json]).toEqual([
        202,
        { ignored: true, reason: `replay of delivery ${captured.deliveryId}` },
      ]);
    }
    expect(buildsFor('octo/hooked').length).toBe(before);
    const record = await builds.getBuild({ repo: 'octo/hooked', number: Number(current.json.number) });
    expect(record?.state).toBe('queued');
  });

  it('refuses pull requests from forks where the sandbox is weak, saying why, unless the operator opts in', async () => {
    // A stack not run as root runs every build as the operator's user (src/local/stack.ts).
    const refusal = untrustedBuildRefusal(false);
    expect(refusal).toMatch(/not run as root.*--allow-unsandboxed-forks/);
    expect(untrustedBuildRefusal(true)).toBeUndefined();
    const fork = (number: number, label: string) =>
      webhookCommit(label).then((headSha) =>
        pullRequestPayload({ repo: 'octo/hooked', number, fork: true, headSha, headRef: label }),
      );
    const before = lambda.invocations.length;
    // The handler made its intake once: change that one.
    intake.refuseUntrustedBuilds = refusal;
    try {
      const refused = await deliver(await fork(71, 'fork-refused'), {}, 'pull_request');
      expect([refused.statusCode, refused.json]).toEqual([202, { ignored: true, reason: refusal }]);
      expect(await builds.getDelivery(refused.deliveryId)).toBeUndefined();
      expect(lambda.invocations.length).toBe(before);
      // The operator's own pull requests still build.
      const own = pullRequestPayload({
        repo: 'octo/hooked',
        number: 72,
        headSha: await webhookCommit('own-pr'),
      });
      expect((await deliver(own, {}, 'pull_request')).json.queued).toBe(true);
    } finally {
      delete intake.refuseUntrustedBuilds;
    }
    // Opted in (`lambkin dev --allow-unsandboxed-forks` leaves the refusal unset): the fork builds.
    const opted = await deliver(await fork(73, 'fork-opted-in'), {}, 'pull_request');
    expect(opted.json.queued).toBe(true);
    expect(lambda.invocations.length).toBe(before + 2);
  });

  it('queues a unicode branch name as it is', async () => {
    const sha = await webhookCommit('unicode');
    const response = await deliver(pushPayload({ repo: 'octo/hooked', branch: 'feature/ünïcødé', sha }));
    expect(response.statusCode).toBe(202);
    const record = (await builds.listBuilds('octo/hooked')).find((candidate) => candidate.sha === sha);
    expect(record).toMatchObject({ branch: 'feature/ünïcødé', ref: 'refs/heads/feature/ünïcødé' });
  });

  it.each([
    ['repository', '../../etc', 'main'],
    ['repository', 'octo/..', 'main'],
    ['repository', 'octo/ev\u0000il', 'main'],
    ['repository', 'octo/ünï', 'main'],
    ['branch', 'octo/hooked', '../../../etc/passwd'],
    ['branch', 'octo/hooked', 'a//b'],
    ['branch', 'octo/hooked', '-rf'],
    ['branch', 'octo/hooked', 'x\u001b]0;pwned\u0007'],
  ])('refuses a traversal or control %s name (%j, %j) with 400, writing nothing', async (_, repo, branch) => {
    const sha = await webhookCommit(`bad-${randomBytes(3).toString('hex')}`);
    const payload = pushPayload({ repo: 'octo/hooked', branch: 'main', sha }) as unknown as Record<
      string,
      unknown
    >;
    (payload.repository as Record<string, unknown>).full_name = repo;
    payload.ref = `refs/heads/${branch}`;
    const before = lambda.invocations.length;
    const response = await deliver(payload);
    expect(response.statusCode).toBe(400);
    expect(response.json.error).toMatch(/^Refused: "(repository\.full_name|ref \(branch\))"/);
    expect(await builds.getDelivery(response.deliveryId)).toBeUndefined();
    expect(lambda.invocations.length).toBe(before);
    expect(github.statusesFor('octo/hooked', sha)).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// Hostile builds

describe('hostile builds', () => {
  jest.setTimeout(60_000);

  afterEach(async () => {
    // Orphans of a killed build are reaped by PID 1; until then they count against RLIMIT_NPROC.
    if (asRoot) await expectNoProcessesLeft();
    await expectWorkRootClean();
    await expectStillBuilds();
  });

  it('builds a unicode branch: log, status text and badge key are safe', async () => {
    const branch = 'feature/ünïcødé';
    const { repo, sha } = await repository('unicode', npmProject({ test: 'echo "on $LAMBKIN_BRANCH"' }));
    const { build: done, log } = await build({ repo, sha, branch, ref: `refs/heads/${branch}` });
    expect(done.state).toBe('success');
    expect(log).toContain(`on ${branch}`);
    expect(log).toContain(`on ${branch}\n`);
    expect(REPO_KEYS.badge(repo, branch)).toBe(
      'logs/octo/unicode/branches/feature%2F%C3%BCn%C3%AFc%C3%B8d%C3%A9/badge.svg',
    );
    expect(await logs.getObjectText(REPO_KEYS.badge(repo, branch))).toMatch(/passing/);
    expect(github.statusesFor(repo, sha)[0]?.description).toMatch(/^Build #1 passed in/);
  });

  it('masks a secret printed with terminal escapes in its middle, in the stored log and on the page', async () => {
    const secret = 'hostile-3scape-Secret-0042';
    // Cut after three characters by a reset, a colour, an OSC title and a NUL; the last one also
    // across the runner's upload chunks (it uploads at least every two seconds).
    const print =
      's=$HOSTILE_SECRET; a=${s:0:3}; b=${s:3};' +
      ' printf \'reset %s\\033[0m%s\\n\' "$a" "$b";' +
      ' printf \'colour %s\\033[1;31m%s\\033[0m\\n\' "$a" "$b";' +
      ' printf \'title %s\\033]0;x\\007%s\\n\' "$a" "$b";' +
      ' printf \'nul %s\\000%s\\n\' "$a" "$b";' +
      ' printf \'chunks %s\' "$a"; sleep 2.5; printf \'\\033[0m%s\\n\' "$b"';
    const { repo, sha } = await repository(
      'escaped-secret',
      npmProject({}, { '.lambkin.json': JSON.stringify({ test: print }) }),
    );
    await settings.update(repoScope(repo), () => ({ secretEnv: { HOSTILE_SECRET: secret } }));
    const { build: done, log } = await build({ repo, sha });
    expect(done.state).toBe('success');
    for (const label of ['reset', 'colour', 'title', 'nul', 'chunks']) expect(log).toContain(`${label} ***`);
    expect(log).not.toContain(secret);
    expect(stripTerminalControls(log)).not.toContain(secret);
    const page = (await logs.getObjectText(LOG_KEYS.page(done.logPrefix))) ?? '';
    expect(page).toContain('chunks ***');
    // The page's text as shown: colour spans removed.
    expect(page.replace(/<[^>]*>/g, '')).not.toContain(secret);
  });

  it('stops a build that fills its TMPDIR and checkout: error "disk quota exceeded" within seconds', async () => {
    // About 40 MiB a second, half in $TMPDIR and half in the checkout; without the quota the build
    // would only end at its 10 s timeout, with some 400 MiB written.
    const fill =
      'i=0; while true; do head -c 1048576 /dev/zero > "$TMPDIR/fill$i"; head -c 1048576 /dev/zero > "fill$i";' +
      ' i=$((i+1)); sleep 0.05; done';
    const { repo, sha } = await repository(
      'fills-tmp',
      npmProject({}, { '.lambkin.json': JSON.stringify({ test: fill, timeout: 10 }) }),
    );
    const { build: done, log, ms } = await build({ repo, sha });
    expect(done).toMatchObject({
      state: 'error',
      description: 'disk quota exceeded: the build wrote more than 20 MiB under its work area (in test)',
    });
    expect(log).toContain('disk quota exceeded');
    // The quota, not the 10 s timeout, ended it: the build is an error, not timed out, and its step
    // was stopped before that timeout. The whole build's time only means "did not hang".
    expect(done.state).not.toBe('timed_out');
    expect(done.steps?.find((step) => step.name === 'test')?.durationMs).toBeLessThan(10_000);
    expect(ms).toBeLessThan(45_000);
    expect(existsSync(join('/tmp', 'fill0'))).toBe(false);
  });

  it('stops a build whose install fills the disk in its last moment, before the next step gets anywhere', async () => {
    // 24 MiB in two files (no one file may pass the quota) just before the install exits: the
    // watcher (every second) never sees them during the step; the check after it does, while the
    // test step has already started.
    const install = 'head -c 12582912 /dev/zero > filled-1; head -c 12582912 /dev/zero > filled-2';
    // Its output, unlike its command line in the log, says "step 2 finished".
    const test = 'sleep 30; echo "step $((1 + 1)) finished"';
    const { repo, sha } = await repository(
      'fills-at-install-end',
      npmProject({}, { '.lambkin.json': JSON.stringify({ install, test, timeout: 50 }) }),
    );
    const { build: done, log } = await build({ repo, sha });
    expect(done).toMatchObject({
      state: 'error',
      description: 'disk quota exceeded: the build wrote more than 20 MiB under its work area (in install)',
    });
    expect(log).toMatch(/disk quota exceeded: .*; found after install(, test was stopped)?\./);
    expect(log).not.toContain('step 2 finished');
    // The test step, if it started, was stopped by the check, not by its 30 s sleep.
    const testStep = done.steps?.find((step) => step.name === 'test');
    if (testStep) expect(testStep.durationMs).toBeLessThan(10_000);
  });

  if (requireTool('prlimit', 'the process bound of a build (RLIMIT_NPROC)')) {
    itAsRoot('bounds the processes of a build with prlimit: no more than the limit at once', async () => {
      // Linear, so harmless even without the bound: 400 sleeps at most.
      const spawn = 'for i in $(seq 400); do sleep 20 & done; wait';
      const { repo, sha } = await repository(
        'many-processes',
        npmProject({}, { '.lambkin.json': JSON.stringify({ test: spawn, timeout: 5 }) }),
      );
      const { result, peak } = await peakProcesses(build({ repo, sha }));
      expect(result.build.state).toBe('timed_out');
      expect(peak).toBeGreaterThan(MAX_PROCESSES / 2);
      expect(peak).toBeLessThanOrEqual(MAX_PROCESSES + SANDBOX_PROCESSES);
      expect(result.log).toMatch(/fork: (retry: )?Resource temporarily unavailable/);
    });

    itAsRoot('ends a fork bomb with the build, leaving no process behind', async () => {
      const bomb = ':(){ :|:& };:; sleep 30';
      const { repo, sha } = await repository(
        'fork-bomb',
        npmProject({}, { '.lambkin.json': JSON.stringify({ test: bomb, timeout: 4 }) }),
      );
      const { result, peak } = await peakProcesses(build({ repo, sha }));
      expect(['timed_out', 'failure']).toContain(result.build.state);
      // Ended by its 4 s timeout or by the bomb failing, never by the 30 s sleep: no step ran that long.
      for (const step of result.build.steps ?? []) expect(step.durationMs).toBeLessThan(30_000);
      expect(result.ms).toBeLessThan(45_000);
      expect(peak).toBeLessThanOrEqual(MAX_PROCESSES + SANDBOX_PROCESSES);
      await expectNoProcessesLeft();
    });
  }

  it('stores binary garbage and a line that never ends', async () => {
    const garbage =
      'head -c 200000 /dev/urandom; printf "\\nGARBAGE-DONE\\n"; head -c 3000000 /dev/zero | tr "\\0" a';
    const { repo, sha } = await repository(
      'garbage',
      npmProject({}, { '.lambkin.json': JSON.stringify({ test: garbage, timeout: 20 }) }),
    );
    const { build: done, log } = await build({ repo, sha });
    expect(done.state).toBe('success');
    expect(Buffer.byteLength(log)).toBeLessThan(1.2 * 1024 * 1024);
    expect(log).toMatch(/truncated/);
    expect(log).toMatch(/a{10000}\n/);
    // Lambkin's own lines start on a line of their own after the endless line.
    expect(log).toMatch(/a{100}\n[^\n]*✔ step test: passed/);
    expect(log.indexOf('■ build passed')).toBeGreaterThan(log.lastIndexOf('aaaa'));
  });

  it('truncates a 100 MiB log, keeping the tail, and finishes', async () => {
    const big = "yes 'a hostile log line, printed again and again' | head -c 104857600; echo THE-END";
    const { repo, sha } = await repository(
      'huge-log',
      npmProject({}, { '.lambkin.json': JSON.stringify({ test: big, timeout: 40 }) }),
    );
    const { build: done, log } = await build({ repo, sha });
    expect(done.state).toBe('success');
    expect(Buffer.byteLength(log)).toBeLessThan(1.2 * 1024 * 1024);
    expect(log).toMatch(/truncated/);
    expect(log).toContain('a hostile log line');
    expect(log).toContain('THE-END');
    expect(log.indexOf('■ build passed')).toBeGreaterThan(log.indexOf('THE-END'));
  });

  it.each([
    ['larger than 1 MiB', JSON.stringify({ env: { PAD: 'x'.repeat(1024 * 1024 + 10) } })],
    ['not JSON', '{ "test": "echo hi", oops'],
    ['binary', '\u0000\u0001\u00ff{'],
  ])('ends a build whose config is %s as error, naming the file', async (_, config) => {
    const { repo, sha } = await repository(
      `config-${randomBytes(3).toString('hex')}`,
      npmProject({ test: 'echo NEVER-RUN' }, { '.lambkin.json': config }),
    );
    const { build: done, log } = await build({ repo, sha });
    expect(done.state).toBe('error');
    expect(done.description).toMatch(/\.lambkin\.json/);
    expect(done.steps).toEqual([]);
    expect(log).not.toContain('NEVER-RUN');
  });

  describe('hostile tarballs', () => {
    const marker = `lambkin-escaped-${randomBytes(4).toString('hex')}`;
    const outside = [`/tmp/${marker}`, `/tmp/${marker}-abs`, `/tmp/${marker}-dir`, `/${marker}`];
    const top = 'octo-tar-1234567/';
    const packageJson = { path: `${top}package.json`, body: '{"name":"x","version":"1.0.0"}' };
    const cases: [string, TarEntry[], RegExp][] = [
      [
        '".." entries',
        [
          { path: top, type: 'Directory' },
          packageJson,
          { path: `${top}../../../../../../../../tmp/${marker}`, body: 'x' },
        ],
        /\.\./,
      ],
      [
        'absolute paths',
        [{ path: top, type: 'Directory' }, packageJson, { path: `/tmp/${marker}-abs`, body: 'x' }],
        /absolute|outside|top folder/i,
      ],
      [
        'a symlink escaping the work area',
        [
          { path: top, type: 'Directory' },
          packageJson,
          { path: `${top}esc`, type: 'SymbolicLink', linkpath: `/tmp/${marker}-dir` },
          { path: `${top}esc/pwned`, body: 'x' },
        ],
        /link|outside/i,
      ],
      [
        'a tar bomb (64 MiB of zeros, 64 KiB compressed)',
        [
          { path: top, type: 'Directory' },
          packageJson,
          { path: `${top}bomb`, body: Buffer.alloc(64 * 1024 * 1024) },
        ],
        /maxBytes|larger|limit/i,
      ],
    ];

    it.each(cases)('refuses %s: error, nothing written outside the work area', async (_, entries, why) => {
      const { repo, sha } = await repository(
        `tar-${randomBytes(3).toString('hex')}`,
        npmProject({ test: 'echo NEVER' }),
      );
      const path = `/hostile/${randomBytes(6).toString('hex')}.tar.gz`;
      archives.route(path, serveBytes(tarball(entries)));
      const { build: done, log } = await build(
        { repo, sha },
        { archives: { resolveArchiveUrl: () => Promise.resolve(archives.url(path)) } },
      );
      expect(done.state).toBe('error');
      expect(done.description).toMatch(/^could not fetch the source: /);
      expect(done.description).toMatch(why);
      expect(log).not.toContain('NEVER');
      for (const file of outside) expect(existsSync(file)).toBe(false);
    });
  });
});
