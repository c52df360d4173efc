import { rm } from 'node:fs/promises';
import { createGitHubClient } from '../../src/github/client.js';
import { GitHubApiError } from '../../src/github/api-errors.js';
import {
  FINAL_DELIVERY,
  GitHubStatusReporter,
  INTAKE_DELIVERY,
  MAX_STATUS_DESCRIPTION_LENGTH,
  truncateDescription,
} from '../../src/github/statuses.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import {
  createGitRepo,
  startGitHubServer,
  type FaultMode,
  type GitHubStandIn,
  type GitRepo,
} from '../support/github-server.js';
import { type DeliveryPolicy } from '../../src/core/ports.js';

const TOKEN = 'ghp_statusesTest000000000000000000000000';
let server: GitHubStandIn;
let repo: GitRepo;

beforeAll(async () => {
  repo = await createGitRepo({ 'README.md': '# statuses\n' });
  server = await startGitHubServer({ token: TOKEN });
  server.addRepository({ owner: 'acme', name: 'widget', gitDir: repo.dir });
});

afterAll(async () => {
  await server.close();
  await rm(repo.dir, { recursive: true, force: true });
});

/** A fresh client per test: its write spacing and retry state do not leak between tests. */
function reporter(token = TOKEN): GitHubStatusReporter {
  return new GitHubStatusReporter(
    createGitHubClient({ baseUrl: server.url, token, logger: createMemoryLogger() }),
  );
}

function statusRequests(since: number) {
  return server.requests.slice(since).filter((request) => request.path.endsWith(`/statuses/${repo.sha}`));
}

async function rejection(promise: Promise<unknown>): Promise<GitHubApiError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(GitHubApiError);
    return error as GitHubApiError;
  }
  throw new Error('Expected setStatus to fail, but it succeeded.');
}

describe('GitHubStatusReporter', () => {
  it('delivers the status with the default context, description and target URL', async () => {
    await reporter().setStatus(
      {
        repo: 'acme/widget',
        sha: repo.sha,
        state: 'pending',
        description: 'Build #1 queued',
        targetUrl: 'https://ci.example/acme/widget/1',
      },
      INTAKE_DELIVERY,
    );
    await reporter().setStatus(
      {
        repo: 'acme/widget',
        sha: repo.sha,
        state: 'success',
        description: 'Deployed',
        context: 'lambkin/deploy',
      },
      INTAKE_DELIVERY,
    );
    const [deploy, build] = server.statusesFor('acme/widget', repo.sha);
    expect(build).toMatchObject({
      state: 'pending',
      context: 'lambkin',
      description: 'Build #1 queued',
      target_url: 'https://ci.example/acme/widget/1',
    });
    expect(deploy).toMatchObject({ state: 'success', context: 'lambkin/deploy', target_url: null });
  });

  it('shortens long descriptions to GitHub’s 140 characters instead of being refused', async () => {
    const long = `Build #7 failed in step "test": ${'🐑'.repeat(200)}`;
    const since = server.requests.length;
    await reporter().setStatus(
      { repo: 'acme/widget', sha: repo.sha, state: 'failure', description: long },
      INTAKE_DELIVERY,
    );
    const sent = statusRequests(since)[0]?.body as { description: string };
    expect([...sent.description]).toHaveLength(MAX_STATUS_DESCRIPTION_LENGTH);
    expect(sent.description.startsWith('Build #7 failed in step "test": 🐑')).toBe(true);
    expect(sent.description.endsWith('…')).toBe(true);
    expect(server.statusesFor('acme/widget', repo.sha)[0]?.description).toBe(sent.description);
    expect(truncateDescription('short')).toBe('short');
  });

  it.each<[FaultMode, string]>([
    ['500', 'a server error'],
    ['502', 'a bad gateway'],
    ['reset', 'a reset connection'],
    ['429', 'the secondary rate limit'],
    ['rate-limit', 'the primary rate limit'],
  ])('retries after %s (%s) and delivers', async (mode) => {
    server.failNext({ mode, method: 'POST', retryAfterSeconds: 1, resetInSeconds: 1 });
    const since = server.requests.length;
    const before = server.statusesFor('acme/widget', repo.sha).length;
    await reporter().setStatus(
      { repo: 'acme/widget', sha: repo.sha, state: 'success', description: `after ${mode}` },
      FINAL_DELIVERY,
    );
    const [failed, delivered] = statusRequests(since);
    expect(statusRequests(since)).toHaveLength(2);
    expect(failed?.status).toBe(mode === 'reset' ? undefined : mode === 'rate-limit' ? 403 : Number(mode));
    expect(delivered?.status).toBe(201);
    const statuses = server.statusesFor('acme/widget', repo.sha);
    expect(statuses).toHaveLength(before + 1);
    expect(statuses[0]?.description).toBe(`after ${mode}`);
    if (mode === '429' || mode === 'rate-limit') {
      // Waited as GitHub asked: retry-after 1 s, or until the reset (whole seconds, at most 2 s ahead).
      expect((delivered?.time ?? 0) - (failed?.time ?? 0)).toBeGreaterThanOrEqual(mode === '429' ? 1000 : 0);
    }
  });

  it('waits for the rate limit reset before retrying', async () => {
    server.failNext({ mode: 'rate-limit', method: 'POST', resetInSeconds: 2 });
    const since = server.requests.length;
    await reporter().setStatus(
      { repo: 'acme/widget', sha: repo.sha, state: 'success', description: 'reset' },
      FINAL_DELIVERY,
    );
    const [failed, delivered] = statusRequests(since);
    expect(failed?.status).toBe(403);
    // x-ratelimit-reset is in whole seconds: the retry comes after it, not before.
    const resetAtMs = (Math.ceil((failed?.time ?? 0) / 1000) + 2) * 1000;
    expect(delivered?.time).toBeGreaterThanOrEqual(resetAtMs - 5);
  });

  it('gives up within the intake deadline when GitHub answers too slowly', async () => {
    server.failNext({ mode: 'slow', method: 'POST', delayMs: 10_000, times: 10 });
    const started = Date.now();
    const error = await rejection(
      reporter().setStatus(
        { repo: 'acme/widget', sha: repo.sha, state: 'pending', description: 'slow' },
        INTAKE_DELIVERY,
      ),
    );
    const elapsed = Date.now() - started;
    // It waited for its attempts (the code's own waits), and the deadline is what ended them: the
    // second attempt only had what was left of it, less than a whole attempt's time.
    expect(elapsed).toBeGreaterThanOrEqual(INTAKE_DELIVERY.deadlineMs - 250);
    expect(error.status).toBeUndefined();
    expect(error.message).toContain(`acme/widget@${repo.sha.slice(0, 7)}`);
    const lastAttemptMs = Number(/did not answer within (\d+) ms/.exec(error.message)?.[1]);
    expect(lastAttemptMs).toBeGreaterThanOrEqual(1);
    expect(lastAttemptMs).toBeLessThanOrEqual(
      INTAKE_DELIVERY.deadlineMs - (INTAKE_DELIVERY.attemptTimeoutMs ?? INTAKE_DELIVERY.deadlineMs),
    );
    // Did not hang: well before the 10 s GitHub would have taken.
    expect(elapsed).toBeLessThan(3 * INTAKE_DELIVERY.deadlineMs);
    expect(error.message).toContain('GITHUB_API_URL');
    server.clearFaults(); // the unused slow answers must not hold up the next tests
  });

  it('does not retry a 422 (a commit GitHub does not have)', async () => {
    const unknownSha = 'e'.repeat(40);
    const since = server.requests.length;
    const error = await rejection(
      reporter().setStatus(
        { repo: 'acme/widget', sha: unknownSha, state: 'success', description: 'x' },
        FINAL_DELIVERY,
      ),
    );
    expect(server.requests.slice(since)).toHaveLength(1);
    expect(error).toMatchObject({
      status: 422,
      attempts: 1,
      repo: 'acme/widget',
      ref: unknownSha,
      code: 'GITHUB_API',
    });
    expect(error.requestId).toMatch(/^[0-9A-F:]+$/);
    expect(error.message).toContain('No commit found for SHA');
    expect(error.message).toContain('eeeeeee');
    expect(error.message).toMatch(/check .* the commit has been pushed/);
  });

  it('does not retry a 404 or a 401, and says what to do', async () => {
    const since = server.requests.length;
    const missing = await rejection(
      reporter().setStatus(
        { repo: 'acme/gone', sha: repo.sha, state: 'success', description: 'x' },
        FINAL_DELIVERY,
      ),
    );
    expect(missing.status).toBe(404);
    expect(missing.message).toContain('does not exist or the token cannot see it');
    const refused = await rejection(
      reporter('ghp_wrong').setStatus(
        { repo: 'acme/widget', sha: repo.sha, state: 'success', description: 'x' },
        FINAL_DELIVERY,
      ),
    );
    expect(refused.status).toBe(401);
    expect(refused.message).toContain('set GITHUB_TOKEN to a valid');
    expect(server.requests.slice(since)).toHaveLength(2);
  });

  it('stops after the policy’s attempts', async () => {
    const policy: DeliveryPolicy = { deadlineMs: 20_000, maxAttempts: 2, initialBackoffMs: 50 };
    server.failNext({ mode: '500', method: 'POST', times: 2 });
    const since = server.requests.length;
    const error = await rejection(
      reporter().setStatus({ repo: 'acme/widget', sha: repo.sha, state: 'error', description: 'x' }, policy),
    );
    expect(statusRequests(since)).toHaveLength(2);
    expect(server.pendingFaults()).toBe(0);
    expect(error).toMatchObject({ status: 500, attempts: 2 });
    expect(error.message).toMatch(/GitHub answered 500: Server Error; gave up after 2 attempt\(s\)/);
  });

  it('fails at once when the rate limit resets after the deadline', async () => {
    server.failNext({ mode: 'rate-limit', method: 'POST', resetInSeconds: 30 });
    const started = Date.now();
    const error = await rejection(
      reporter().setStatus(
        { repo: 'acme/widget', sha: repo.sha, state: 'pending', description: 'x' },
        INTAKE_DELIVERY,
      ),
    );
    expect(error.status).toBe(403);
    expect(error.message).toContain('no time left to retry');
    // At once: it waited neither for the reset (30 s) nor until its deadline.
    expect(error.attempts).toBe(1);
    expect(Date.now() - started).toBeLessThan(INTAKE_DELIVERY.deadlineMs);
    expect(error.message).toMatch(/rate limited until \d{4}-\d{2}-\d{2}T/);
  });
});
