/**
 * End to end in App mode (issue 15): `lambkin dev` as its own process signs in as a GitHub App (a
 * real RSA key in a 0600 file) to the GitHub stand-in, which checks its JWTs and the repositories
 * and permissions of the installation tokens it mints. Real signed webhooks: a pull request whose
 * mocha test fails becomes a failed check run annotated on the test's file and line, "Re-run" (a
 * `check_run` `rerequested` webhook) builds the commit again with its own check run, and a passing
 * push becomes a successful check run. The mocha projects carry mocha in their own node_modules
 * (tests/support/mocha-project.ts), so the builds need no package registry.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, GetCommand } from '@aws-sdk/lib-dynamodb';
import { isTerminal, type BuildState } from '../../src/core/state-machine.js';
import type { StackFile } from '../../src/local/stack-file.js';
import {
  createGitRepo,
  startGitHubServer,
  type GitFiles,
  type GitHubStandIn,
  type GitRepo,
  type RecordedRequest,
} from '../support/github-server.js';
import type { StoredCheckRun } from '../../src/local/github/index.js';
import { failingAssertionLine, MOCHA_TEST_FILE, mochaProject } from '../support/mocha-project.js';
import { checkEventPayload, pullRequestPayload, pushPayload, signedDelivery } from '../support/payloads.js';
import { LAMBKIN_BIN, OUTSIDE_CHECKOUT, startDevProcess, type DevProcess } from '../support/dev-process.js';
import { appKeyPair } from '../support/app-keys.js';
import { waitFor } from '../support/wait.js';

const SECRET = 'app-mode-e2e-secret';
const APP_ID = 4242;
const INSTALLATION_ID = 9001;
/** The stand-in accepts this personal token only; Lambkin is never given it. */
const PERSONAL_TOKEN = 'ghp_appModeE2eNotGivenToLambkin000000000';
/** What the App asks for (issue 15's manifest); installed with all of it. */
const APP_PERMISSIONS = {
  checks: 'write',
  statuses: 'write',
  contents: 'read',
  pull_requests: 'read',
  metadata: 'read',
} as const;
/** The most any one token may carry: what setting statuses and check runs and reading code need. */
const TOKEN_PERMISSIONS_ALLOWED: Record<string, readonly string[]> = {
  statuses: ['write', 'read'],
  checks: ['write', 'read'],
  contents: ['read'],
  metadata: ['read'],
};
const OWNER = 'octo';
const FAILING_REPO = `${OWNER}/mocha-pr`;
const PASSING_REPO = `${OWNER}/mocha-push`;
/** How long after a build ends its check run and status may take to show on GitHub. */
const REPORTED_WITHIN_MS = 15_000;
/** Installed too, never built: no token may reach it. */
const BYSTANDER_REPO = `${OWNER}/bystander`;

/** A GitHub App's key pair; the private key as GitHub hands it out (PKCS#1 PEM). */
const key = appKeyPair();

const folders: string[] = [];
const temporaryFolder = (prefix: string): string => {
  const folder = mkdtempSync(join(tmpdir(), prefix));
  folders.push(folder);
  return folder;
};

afterAll(() => {
  for (const folder of folders) rmSync(folder, { recursive: true, force: true });
});

async function startStandIn(): Promise<GitHubStandIn> {
  return startGitHubServer({
    token: PERSONAL_TOKEN,
    apps: [
      {
        id: APP_ID,
        slug: 'lambkin-e2e',
        name: 'Lambkin e2e',
        publicKey: key.publicKey,
        permissions: { ...APP_PERMISSIONS },
      },
    ],
    installations: [
      {
        id: INSTALLATION_ID,
        account: OWNER,
        repositories: [FAILING_REPO, PASSING_REPO, BYSTANDER_REPO],
      },
    ],
  });
}

/** The App's private key in a file only its owner may read, as a user keeps it. */
function privateKeyFile(): string {
  const file = join(temporaryFolder('lambkin-app-key-'), 'lambkin.private-key.pem');
  writeFileSync(file, key.privateKey, { mode: 0o600 });
  return file;
}

/** A payload as GitHub sends it to an App: it names the installation. */
function fromApp<P extends object>(payload: P): P & { installation: { id: number; node_id: string } } {
  return {
    ...payload,
    installation: {
      id: INSTALLATION_ID,
      node_id: Buffer.from(`023:IntegrationInstallation${INSTALLATION_ID}`).toString('base64'),
    },
  };
}

/** `Authorization` of a request: none, an App JWT, an installation token, or anything else. */
function credentialKind(request: RecordedRequest): 'none' | 'jwt' | 'installation' | 'other' {
  const header = request.headers.authorization;
  if (header === undefined) return 'none';
  const credential = /^(?:bearer|token)\s+(\S+)$/i.exec(header)?.[1] ?? '';
  if (/^[\w-]+\.[\w-]+\.[\w-]+$/.test(credential)) return 'jwt';
  if (credential.startsWith('ghs_')) return 'installation';
  return 'other';
}

/**
 * The statuses a check run went through, from the requests that wrote it: its creation's (GitHub's
 * default is `queued`), then each update's that set one (a conclusion completes it), repeats
 * dropped (annotations beyond 50 follow in updates that may repeat `completed`).
 */
function statusHistory(requests: RecordedRequest[], repo: string, run: StoredCheckRun): string[] {
  const runs = `/repos/${repo}/check-runs`;
  const history: string[] = [];
  for (const request of requests) {
    if (request.status === undefined || request.status >= 300) continue;
    const body = (request.body ?? {}) as { status?: string; conclusion?: string; external_id?: string };
    let status: string | undefined;
    if (request.method === 'POST' && request.path === runs && body.external_id === run.external_id) {
      status = body.status ?? 'queued';
    } else if (request.method === 'PATCH' && request.path === `${runs}/${run.id}`) {
      status = body.conclusion !== undefined ? 'completed' : body.status;
    }
    if (status !== undefined && history[history.length - 1] !== status) history.push(status);
  }
  return history;
}

describe('lambkin dev as a GitHub App', () => {
  let github: GitHubStandIn;
  let dev: DevProcess;
  let stack: StackFile;
  let failing: GitRepo;
  let failingLine: number;
  /** The stack's builds table (with the stack's own credentials, from stack.json). */
  let builds: DynamoDBDocumentClient;

  beforeAll(async () => {
    github = await startStandIn();
    const files = mochaProject();
    failingLine = failingAssertionLine(files[MOCHA_TEST_FILE] as string);
    failing = await repository(FAILING_REPO, files);
    await repository(BYSTANDER_REPO, { 'README.md': '# never built\n' });
    dev = await startDevProcess({
      dataDir: temporaryFolder('lambkin-app-dev-'),
      githubApi: github.url,
      env: {
        LAMBKIN_WEBHOOK_SECRET: SECRET,
        LAMBKIN_GITHUB_APP_ID: String(APP_ID),
        LAMBKIN_GITHUB_APP_PRIVATE_KEY_FILE: privateKeyFile(),
      },
    });
    stack = dev.stack;
    builds = DynamoDBDocumentClient.from(
      new DynamoDBClient({
        endpoint: stack.endpoints.dynamodb,
        region: stack.region,
        credentials: stack.credentials,
      }),
    );
  }, 60_000);

  afterAll(async () => {
    builds?.destroy();
    await dev?.stop();
    await github?.close();
  });

  async function repository(repo: string, files: GitFiles): Promise<GitRepo> {
    const git = await createGitRepo(files);
    folders.push(git.dir);
    const [owner = '', name = ''] = repo.split('/');
    github.addRepository({ owner, name, gitDir: git.dir });
    return git;
  }

  /** Delivers `payload` as GitHub delivers an App's webhooks (signed; the App is the hook's target). */
  async function deliver(event: string, payload: unknown): Promise<Response> {
    const delivery = await signedDelivery(SECRET, event, payload);
    const headers = {
      ...delivery.headers,
      'X-GitHub-Hook-Installation-Target-Type': 'integration',
      'X-GitHub-Hook-Installation-Target-ID': String(APP_ID),
    };
    return fetch(stack.endpoints.webhook, { method: 'POST', headers, body: delivery.body });
  }

  /** Waits for the check run of build `number` of `repo`@`sha` to complete, and the build's last status. */
  async function finished(repo: string, sha: string, number: number): Promise<StoredCheckRun> {
    const externalId = `${repo}#${number}`;
    const explain = () =>
      [
        `build #${number} of ${repo}@${sha.slice(0, 7)}`,
        `check runs: ${JSON.stringify(github.checkRunsFor(repo, sha).map(({ annotations: _a, ...run }) => run))}`,
        `statuses: ${JSON.stringify(github.statusesFor(repo, sha).map((status) => [status.state, status.description]))}`,
        `requests refused: ${JSON.stringify(
          github.requests
            .filter((request) => request.status === undefined || request.status >= 400)
            .map((request) => `${request.method} ${request.path} → ${request.status}`),
        )}`,
        `--- lambkin dev logged:\n${dev.logs()}`,
      ].join('\n');
    // The build itself ends (its record in the stack's table), then GitHub hears of it.
    await waitFor(
      explain,
      async () => {
        const { Item } = await builds.send(
          new GetCommand({ TableName: stack.tables.builds, Key: { repo, number } }),
        );
        const state = Item?.state as BuildState | undefined;
        return state !== undefined && isTerminal(state) ? state : undefined;
      },
      90_000,
      200,
    );
    const run = await waitFor(
      explain,
      () =>
        github
          .checkRunsFor(repo, sha)
          .find((candidate) => candidate.external_id === externalId && candidate.status === 'completed'),
      REPORTED_WITHIN_MS,
      200,
    );
    await waitFor(
      explain,
      () => {
        const latest = github.statusesFor(repo, sha)[0];
        return latest?.state !== 'pending' && latest?.description?.startsWith(`Build #${number} `)
          ? latest
          : undefined;
      },
      REPORTED_WITHIN_MS,
      200,
    );
    return run;
  }

  /**
   * Every API request Lambkin made carried the App's JWT or an installation token (only archive
   * downloads, whose URL holds their own short-lived token, carry none), and none was refused.
   */
  function expectOnlyAppCredentials(): void {
    const refused = github.requests.filter((request) => request.status === 401 || request.status === 403);
    expect(refused.map((request) => `${request.method} ${request.path} → ${request.status}`)).toEqual([]);
    const api = github.requests.filter(
      (request) => request.path.startsWith('/repos/') || request.path.startsWith('/app'),
    );
    const otherwise = api.filter((request) => !['jwt', 'installation'].includes(credentialKind(request)));
    expect(
      otherwise.map((request) => `${request.method} ${request.path}: ${credentialKind(request)}`),
    ).toEqual([]);
    const kinds = new Set(api.map(credentialKind));
    expect(kinds).toEqual(new Set(['jwt', 'installation']));
  }

  /** Each token minted reaches one of `repos` alone, with no more than statuses, checks and contents. */
  function expectNarrowTokens(repos: string[]): void {
    const minted = github.mintedTokens();
    expect(minted.length).toBeGreaterThan(0);
    for (const token of minted) {
      const { repositories } = token;
      const oneOfThem =
        repositories !== 'all' && repositories.length === 1 && repos.includes(repositories[0] ?? '');
      expect({ installation: token.installationId, repositories, oneOfThem }).toEqual({
        installation: INSTALLATION_ID,
        repositories,
        oneOfThem: true,
      });
      for (const [permission, level] of Object.entries(token.permissions)) {
        expect({
          permission,
          level,
          allowed: TOKEN_PERMISSIONS_ALLOWED[permission]?.includes(level) ?? false,
        }).toEqual({ permission, level, allowed: true });
      }
    }
    expect(minted.map((token) => token.repositories).flat()).not.toContain(BYSTANDER_REPO);
    // Reused until near their expiry: one token per repository and set of permissions, whatever
    // the number of builds and reports (the intake and the builder of lambkin dev share them).
    const kinds = minted.map((token) => `${String(token.repositories)} ${JSON.stringify(token.permissions)}`);
    expect(kinds.length).toBe(new Set(kinds).size);
  }

  it('starts as the App', () => {
    expect(dev.startup).toMatch(new RegExp(`^GitHub: App ${APP_ID}\\b`, 'm'));
  });

  it('turns a pull request whose mocha test fails into a failed check run annotated on the test’s line', async () => {
    const response = await deliver(
      'pull_request',
      fromApp(pullRequestPayload({ repo: FAILING_REPO, number: 7, action: 'opened', headSha: failing.sha })),
    );
    expect(response.status).toBe(202);
    expect(await response.json()).not.toMatchObject({ ignored: true });

    const run = await finished(FAILING_REPO, failing.sha, 1);
    const runs = github.checkRunsFor(FAILING_REPO, failing.sha);
    expect(runs).toHaveLength(1);
    const pageUrl = `${stack.publicUrl}/builds/${FAILING_REPO}/1`;
    expect(run).toMatchObject({
      name: 'Lambkin',
      appId: APP_ID,
      head_sha: failing.sha,
      status: 'completed',
      conclusion: 'failure',
      details_url: pageUrl,
      external_id: `${FAILING_REPO}#1`,
    });
    expect(statusHistory(github.requests, FAILING_REPO, run)).toEqual(['queued', 'in_progress', 'completed']);

    // The output: the build, its steps with their results (the test step failed), the log's end.
    expect(run.output.title).toMatch(/^Build #1\b/);
    expect(run.output.summary).toMatch(/\|\s*test\s*\|\s*failed\s*\|/);
    expect(run.output.text).toContain('1 failing');
    expect(run.output.text).toContain(`${MOCHA_TEST_FILE}:${failingLine}:`);

    // One annotation: the failing assertion, on its file and line relative to the repository root.
    expect(run.annotations).toEqual([
      expect.objectContaining({
        path: MOCHA_TEST_FILE,
        start_line: failingLine,
        end_line: failingLine,
        annotation_level: 'failure',
        message: expect.stringContaining('strictly equal'),
      }),
    ]);
    expect(run.annotations[0]?.title).toMatch(/multiplies/);

    // The commit status says the same, linked to the same page.
    expect(github.statusesFor(FAILING_REPO, failing.sha)[0]).toMatchObject({
      context: 'lambkin',
      state: 'failure',
      target_url: pageUrl,
    });
    expect(github.statusesFor(FAILING_REPO, failing.sha).map((status) => status.state)).toContain('pending');

    expectOnlyAppCredentials();
    expectNarrowTokens([FAILING_REPO]);
    // The tokens stay with Lambkin: the build's log (what the runner printed) shows none.
    const log = await (await fetch(`${pageUrl}/log.txt`)).text();
    expect(log).toContain(`${MOCHA_TEST_FILE}:${failingLine}:`);
    for (const { token } of github.mintedTokens()) expect(log).not.toContain(token);
  }, 120_000);

  it('builds the commit again on "Re-run" (check_run rerequested), with a check run of its own', async () => {
    const [first] = github.checkRunsFor(FAILING_REPO, failing.sha);
    if (!first) throw new Error('the pull request’s build left no check run');
    const payload = checkEventPayload('check_run', 'rerequested', {
      repo: FAILING_REPO,
      sha: failing.sha,
      branch: 'feature',
      externalId: `${FAILING_REPO}#1`,
    });
    // The run GitHub re-requests is Lambkin's own: its id, name and App.
    const checkRun = payload.check_run as Record<string, unknown>;
    checkRun.id = first.id;
    checkRun.name = first.name;
    checkRun.app = { ...(checkRun.app as Record<string, unknown>), id: APP_ID };
    const response = await deliver('check_run', fromApp(payload));
    expect(response.status).toBe(202);
    expect(await response.json()).not.toMatchObject({ ignored: true });

    const second = await finished(FAILING_REPO, failing.sha, 2);
    expect(second.id).not.toBe(first.id);
    expect(second).toMatchObject({
      name: 'Lambkin',
      head_sha: failing.sha,
      conclusion: 'failure',
      details_url: `${stack.publicUrl}/builds/${FAILING_REPO}/2`,
      external_id: `${FAILING_REPO}#2`,
    });
    expect(statusHistory(github.requests, FAILING_REPO, second)).toEqual([
      'queued',
      'in_progress',
      'completed',
    ]);
    expect(second.output.title).toMatch(/^Build #2\b/);
    expect(second.annotations).toEqual([
      expect.objectContaining({
        path: MOCHA_TEST_FILE,
        start_line: failingLine,
        annotation_level: 'failure',
      }),
    ]);
    // Build #1's run is left as it ended; the commit has exactly the two.
    const runs = github.checkRunsFor(FAILING_REPO, failing.sha);
    expect(runs.map((run) => [run.external_id, run.status, run.conclusion])).toEqual([
      [`${FAILING_REPO}#2`, 'completed', 'failure'],
      [`${FAILING_REPO}#1`, 'completed', 'failure'],
    ]);
    expect(github.statusesFor(FAILING_REPO, failing.sha)[0]).toMatchObject({
      context: 'lambkin',
      state: 'failure',
      description: expect.stringMatching(/^Build #2 /),
    });
    expectOnlyAppCredentials();
    expectNarrowTokens([FAILING_REPO]);
  }, 120_000);

  it('turns a passing push into a successful check run without annotations', async () => {
    const passing = await repository(PASSING_REPO, mochaProject({ passing: true }));
    const response = await deliver(
      'push',
      fromApp(pushPayload({ repo: PASSING_REPO, branch: 'main', sha: passing.sha })),
    );
    expect(response.status).toBe(202);

    const run = await finished(PASSING_REPO, passing.sha, 1);
    expect(github.checkRunsFor(PASSING_REPO, passing.sha)).toHaveLength(1);
    expect(run).toMatchObject({
      name: 'Lambkin',
      conclusion: 'success',
      details_url: `${stack.publicUrl}/builds/${PASSING_REPO}/1`,
      external_id: `${PASSING_REPO}#1`,
      annotations: [],
    });
    expect(statusHistory(github.requests, PASSING_REPO, run)).toEqual(['queued', 'in_progress', 'completed']);
    expect(run.output.summary).toMatch(/\|\s*test\s*\|\s*passed\s*\|/);
    expect(github.statusesFor(PASSING_REPO, passing.sha)[0]).toMatchObject({
      context: 'lambkin',
      state: 'success',
    });
    expectOnlyAppCredentials();
    expectNarrowTokens([FAILING_REPO, PASSING_REPO]);
  }, 120_000);
});

/**
 * Starts `lambkin dev` with exactly `env` (plus PATH and HOME) and waits until it exits or says
 * `ready` (then stops it): its exit code (null when it started), stdout and stderr.
 */
function devUntilReadyOrExit(
  argv: string[],
  env: Record<string, string>,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [LAMBKIN_BIN, 'dev', ...argv], {
    cwd: OUTSIDE_CHECKOUT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let started = false;
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
    if (!started && stdout.includes('ready')) {
      started = true;
      child.kill('SIGTERM');
    }
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  // 'close': the process has exited and its output has been read to the end.
  return new Promise((resolve) =>
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code: started ? null : code, stdout, stderr });
    }),
  );
}

describe('lambkin dev with two GitHub credentials', () => {
  it('refuses to start with both GITHUB_TOKEN and LAMBKIN_GITHUB_APP_ID, naming both', async () => {
    const github = await startStandIn();
    const dataDir = temporaryFolder('lambkin-app-dev-both-');
    try {
      const run = await devUntilReadyOrExit(
        ['--port', '0', '--data-dir', dataDir, '--github-api', github.url],
        {
          LAMBKIN_WEBHOOK_SECRET: SECRET,
          GITHUB_TOKEN: PERSONAL_TOKEN,
          LAMBKIN_GITHUB_APP_ID: String(APP_ID),
          LAMBKIN_GITHUB_APP_PRIVATE_KEY_FILE: privateKeyFile(),
        },
      );
      // It exits at start (code null: it said `ready`), with an error naming both variables.
      expect(run.code).toBeGreaterThan(0);
      expect(run.stdout).not.toContain('ready');
      expect(run.stderr).toContain('GITHUB_TOKEN');
      expect(run.stderr).toContain('LAMBKIN_GITHUB_APP_ID');
      expect(run.stderr).not.toContain(PERSONAL_TOKEN);
      expect(existsSync(join(dataDir, 'stack.json'))).toBe(false);
      expect(github.requests).toEqual([]);
    } finally {
      await github.close();
    }
  });
});
