/**
 * The local stack has no DynamoDB stream: its webhook intake and its builder tell the notifier
 * themselves, queued as the stream's records would be. A build queued and then cancelled by a newer
 * push shows as cancelled on the local repository page (the intake's own change, with no build
 * running since), and the whole history is right once the stack is idle.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLocalStack, type LocalStack } from '../../src/local/stack.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import {
  commitFiles,
  createGitRepo,
  startGitHubServer,
  type GitHubStandIn,
} from '../support/github-server.js';
import { npmProject, passingProject } from '../support/npm-projects.js';
import { pushPayload, signedDelivery } from '../support/payloads.js';

const SECRET = 'repo-page-secret';
const TOKEN = 'repo-page-token';
const REPO = 'octo/pushes';

let github: GitHubStandIn;
let dataDir: string;
let gitDir: string;
let slowSha: string;
let stack: LocalStack;

beforeAll(async () => {
  github = await startGitHubServer({ token: TOKEN });
  dataDir = mkdtempSync(join(tmpdir(), 'lambkin-repo-page-test-'));
  // The first commit's build runs until it is cancelled: it keeps the stack's one builder busy.
  ({ dir: gitDir, sha: slowSha } = await createGitRepo(npmProject({ test: 'sleep 60' })));
  github.addRepository({ owner: 'octo', name: 'pushes', gitDir });
  stack = await startLocalStack({
    dataDir,
    port: 0,
    githubApiUrl: github.url,
    githubToken: TOKEN,
    webhookSecret: SECRET,
    concurrency: 1,
    logger: createMemoryLogger(),
  });
});

afterAll(async () => {
  await stack?.stop();
  await github.close();
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(gitDir, { recursive: true, force: true });
});

async function push(sha: string): Promise<number> {
  const delivery = await signedDelivery(SECRET, 'push', pushPayload({ repo: REPO, branch: 'main', sha }));
  const response = await fetch(stack.file.endpoints.webhook, {
    method: 'POST',
    headers: delivery.headers,
    body: delivery.body,
  });
  expect(response.status).toBe(202);
  return ((await response.json()) as { number: number }).number;
}

async function until(condition: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The rows of the repository page the local log viewer serves, by build number. */
async function pageRows(): Promise<Map<number, string>> {
  const response = await fetch(`${stack.file.publicUrl}/builds/${REPO}`);
  expect(response.status).toBe(200);
  const html = await response.text();
  const rows = new Map<number, string>();
  for (const row of html.match(/<tr class="state-[^"]*">.*?<\/tr>/g) ?? []) {
    const number = /#(\d+)<\/a>/.exec(row)?.[1];
    if (number) rows.set(Number(number), row);
  }
  return rows;
}

describe('the local repository page', () => {
  it('shows a queued build cancelled by a newer push as cancelled', async () => {
    const first = await push(slowSha);
    await until(
      async () =>
        (await stack.controller.builds.getBuild({ repo: REPO, number: first }))?.state === 'running',
      30_000,
    );

    // Two quick pushes of a fast project: the second finds the first still queued (the one
    // builder is busy) and cancels it; the first of them already cancelled the running build.
    const second = await push(await commitFiles(gitDir, passingProject(), 'fast build'));
    const third = await push(await commitFiles(gitDir, { 'third.txt': '3\n' }, 'fast build again'));

    // The page is written after the webhook's answer, as the cloud's stream would write it: soon,
    // with no build having run since.
    let rows = await pageRows();
    await until(async () => {
      rows = await pageRows();
      return (
        /state-cancelled/.test(rows.get(second) ?? '') &&
        rows.has(third) &&
        /state-cancelled/.test(rows.get(first) ?? '')
      );
    }, 10_000);
    expect(rows.get(second)).toMatch(
      new RegExp(
        `class="state-cancelled".*<span class="pill" title="superseded by #${third}">cancelled</span>`,
      ),
    );
    expect(rows.get(third)).toMatch(/<span class="pill"[^>]*>queued<\/span>/);
    expect(rows.get(first)).toMatch(
      new RegExp(`<span class="pill" title="superseded by #${second}">cancelled</span>`),
    );

    await stack.idle(120_000);
    const after = await pageRows();
    expect(after.get(third)).toMatch(/<span class="pill"[^>]*>passed<\/span>/);
    expect(after.get(second)).toMatch(/>cancelled<\/span>/);
    expect(after.get(first)).toMatch(/>cancelled<\/span>/);
  }, 180_000);
});
