/**
 * `lambkin setup owner/repo --url …` against the GitHub API stand-in: creates the repository's
 * webhook, updates it when run again, and says what went wrong in one line.
 */
import { rm } from 'node:fs/promises';
import { Octokit } from '@octokit/rest';
import {
  createGitRepo,
  startGitHubServer,
  type GitHubStandIn,
  type GitRepo,
} from '../support/github-server.js';
import { expectOneLine, runInProcess, type CliRun } from './helpers.js';

const TOKEN = 'ghp_cliSetup00000000000000000000000000';
const URL = 'https://abc123.lambda-url.us-east-1.on.aws/webhook';
const SECRET = 'the-stacks-webhook-secret';

let github: GitHubStandIn;
let git: GitRepo;
let repoCount = 0;

beforeAll(async () => {
  git = await createGitRepo({ 'README.md': '# hooks\n' });
  github = await startGitHubServer({ token: TOKEN });
});

afterAll(async () => {
  await github.close();
  await rm(git.dir, { recursive: true, force: true });
});

afterEach(() => github.clearFaults());

/** A repository of its own for each test. */
function newRepo(): string {
  repoCount += 1;
  github.addRepository({ owner: 'acme', name: `hooked-${repoCount}`, gitDir: git.dir });
  return `acme/hooked-${repoCount}`;
}

function lambkin(args: string[], env: Record<string, string> = {}): Promise<CliRun> {
  return runInProcess(args, { env: { GITHUB_TOKEN: TOKEN, GITHUB_API_URL: github.url, ...env } });
}

function hookRequests(repo: string): { method: string; status?: number }[] {
  return github.requests
    .filter((request) => request.path.startsWith(`/repos/${repo}/hooks`))
    .map((request) => ({ method: request.method, ...(request.status ? { status: request.status } : {}) }));
}

describe('lambkin setup', () => {
  it('creates the webhook with the secret from the environment, then updates it in place', async () => {
    const repo = newRepo();
    const first = await lambkin(['setup', repo, '--url', URL, '--secret-from-env'], {
      LAMBKIN_WEBHOOK_SECRET: `${SECRET},the-old-secret`,
    });
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toBe(`created webhook 1 of ${repo}: ${URL} (push, pull_request), secret set\n`);
    const [hook] = github.hooksOf(repo);
    expect(github.hooksOf(repo)).toHaveLength(1);
    expect(hook).toMatchObject({
      active: true,
      events: ['push', 'pull_request'],
      // The first of a rotating pair is the new one.
      config: { url: URL, content_type: 'json', insecure_ssl: '0', secret: SECRET },
    });
    expect(hookRequests(repo)).toEqual([
      { method: 'GET', status: 200 },
      { method: 'POST', status: 201 },
    ]);

    // Someone turned it off and dropped an event: running setup again puts it back, same hook.
    await new Octokit({ baseUrl: github.url, auth: TOKEN }).rest.repos.updateWebhook({
      owner: 'acme',
      repo: repo.split('/')[1] ?? '',
      hook_id: hook?.id ?? 0,
      active: false,
      remove_events: ['pull_request'],
    });
    const second = await lambkin(['setup', repo, '--url', URL, '--secret-from-env'], {
      LAMBKIN_WEBHOOK_SECRET: SECRET,
    });
    expect(second.code).toBe(0);
    expect(second.stdout).toBe(`updated webhook 1 of ${repo}: ${URL} (push, pull_request), secret set\n`);
    expect(github.hooksOf(repo)).toEqual([
      expect.objectContaining({
        id: hook?.id,
        active: true,
        events: ['push', 'pull_request'],
        config: { url: URL, content_type: 'json', insecure_ssl: '0', secret: SECRET },
      }),
    ]);
  });

  it('makes a secret for a new hook and prints it once; run again, the hook keeps it', async () => {
    const repo = newRepo();
    const first = await lambkin(['setup', repo, '--url', URL]);
    expect(first.code).toBe(0);
    const secret = /^webhook secret: ([0-9a-f]{64})$/m.exec(first.stdout)?.[1];
    expect(secret).toBeDefined();
    expect(first.stdout).toMatch(/^created webhook \d+ of acme\/hooked-\d+: .* secret set\n/);
    expect(first.stdout).toContain("store it as the stack's webhook secret");
    expect(github.hooksOf(repo)[0]?.config.secret).toBe(secret);

    const second = await lambkin(['setup', repo, '--url', URL]);
    expect(second.code).toBe(0);
    expect(second.stdout).toMatch(/^updated webhook \d+ of .*, its secret kept\n$/);
    expect(second.stdout).not.toContain('webhook secret:');
    expect(github.hooksOf(repo)).toEqual([
      expect.objectContaining({ active: true, config: expect.objectContaining({ secret }) }),
    ]);
    // The update sent no config: GitHub would have dropped the secret with it.
    const patch = github.requests.filter((request) => request.method === 'PATCH').at(-1);
    expect(patch?.body).toEqual({ events: ['push', 'pull_request'], active: true });
  });

  it('will not rewrite a hook it cannot keep the secret of, until given the secret', async () => {
    const repo = newRepo();
    // A hook made by hand: form payloads, no secret.
    await new Octokit({ baseUrl: github.url, auth: TOKEN }).rest.repos.createWebhook({
      owner: 'acme',
      repo: repo.split('/')[1] ?? '',
      config: { url: URL },
    });
    const refused = await lambkin(['setup', repo, '--url', URL]);
    expect(refused.code).toBe(1);
    expectOneLine(refused.stderr);
    expect(refused.stderr).toBe(
      `lambkin: The webhook of ${repo} for ${URL} has no secret (Lambkin refuses unsigned deliveries), ` +
        "sends form payloads, not json; fixing that means setting its secret again: re-run with the stack's " +
        'webhook secret in LAMBKIN_WEBHOOK_SECRET and --secret-from-env.\n',
    );
    expect(github.hooksOf(repo)[0]?.config).toEqual({ url: URL, content_type: 'form', insecure_ssl: '0' });

    const fixed = await lambkin(['setup', repo, '--url', URL, '--secret-from-env'], {
      LAMBKIN_WEBHOOK_SECRET: SECRET,
    });
    expect(fixed.code).toBe(0);
    expect(github.hooksOf(repo)[0]?.config).toEqual({
      url: URL,
      content_type: 'json',
      insecure_ssl: '0',
      secret: SECRET,
    });
  });

  it('rides out a GitHub 500 (the client retries)', async () => {
    const repo = newRepo();
    github.failNext({ mode: '500', method: 'GET', path: /\/hooks$/ });
    const result = await lambkin(['setup', repo, '--url', URL, '--secret-from-env'], {
      LAMBKIN_WEBHOOK_SECRET: SECRET,
    });
    expect(result.code).toBe(0);
    expect(hookRequests(repo).map((request) => request.status)).toEqual([500, 200, 201]);
  });

  it('says what is wrong in one line', async () => {
    const repo = newRepo();
    const cases: [string[], Record<string, string>, number, RegExp][] = [
      [
        ['setup', repo, '--url', URL],
        { GITHUB_TOKEN: '' },
        1,
        /^lambkin: GITHUB_TOKEN is not set: set it to a token with admin rights/,
      ],
      [
        ['setup', repo, '--url', URL, '--secret-from-env'],
        {},
        1,
        /^lambkin: LAMBKIN_WEBHOOK_SECRET is not set: --secret-from-env sets the stack's webhook secret from it/,
      ],
      [
        ['setup', 'acme/missing', '--url', URL, '--secret-from-env'],
        { LAMBKIN_WEBHOOK_SECRET: SECRET },
        1,
        /^lambkin: Could not list the webhooks of acme\/missing: GitHub answered 404 Not Found\. The repository does not exist, or GITHUB_TOKEN cannot administer its webhooks/,
      ],
      [
        ['setup', repo, '--url', 'http://127.0.0.1:3000/webhook', '--secret-from-env'],
        { LAMBKIN_WEBHOOK_SECRET: SECRET },
        1,
        /^lambkin: Could not create the webhook of acme\/hooked-\d+: GitHub answered 422 Validation Failed: url is not supported because it isn't reachable over the public Internet \(127\.0\.0\.1\)\. Check the webhook URL/,
      ],
      [
        ['setup', repo, '--url', URL, '--secret-from-env'],
        { GITHUB_TOKEN: 'ghp_wrong', LAMBKIN_WEBHOOK_SECRET: SECRET },
        1,
        /^lambkin: Could not list the webhooks of acme\/hooked-\d+: GitHub answered 401 Bad credentials\. GitHub refused the credentials/,
      ],
      [
        ['setup', repo, '--url', 'not a url'],
        {},
        2,
        /^lambkin: option '--url <url>' argument 'not a url' is invalid\. "not a url" is not a URL/,
      ],
      [['setup', repo], {}, 2, /^lambkin: required option '--url <url>' not specified/],
      [['setup', 'not-a-repo', '--url', URL], {}, 2, /is not a repository: write owner\/name/],
    ];
    for (const [args, env, code, pattern] of cases) {
      const result = await lambkin(args, env);
      expect({ args, code: result.code, stdout: result.stdout }).toEqual({ args, code, stdout: '' });
      expectOneLine(result.stderr);
      expect(result.stderr).toMatch(pattern);
    }
    expect(github.hooksOf(repo)).toEqual([]);
  });
});
