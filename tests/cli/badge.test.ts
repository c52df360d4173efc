/** `lambkin badge` against the real DynamoDB-compatible server: the Markdown it prints, and the token. */
import { rmSync } from 'node:fs';
import type { BuildRequest } from '../../src/core/build.js';
import { DynamoBuildStore } from '../../src/store/builds.js';
import { createTestStorage, type TestStorage } from '../support/storage.js';
import {
  expectOneLine,
  pushRequest,
  runInProcess,
  stackEnvironment,
  writeLocalStack,
  type CliRun,
} from './helpers.js';

const PUBLIC_URL = 'https://ci.example.com';
let storage: TestStorage;
let dataDir: string;
let builds: DynamoBuildStore;

beforeAll(async () => {
  storage = await createTestStorage();
  dataDir = writeLocalStack(storage, { publicUrl: `${PUBLIC_URL}/` });
  builds = new DynamoBuildStore(storage.clients.documents, storage.buildsTable);
});

afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

function lambkin(args: string[]): Promise<CliRun> {
  return runInProcess(['badge', ...args, `--local=${dataDir}`]);
}

async function finished(repo: string, state: 'success' | 'failure', overrides: Partial<BuildRequest> = {}) {
  const number = await builds.allocateNumber(repo);
  const queued = await builds.putQueuedBuild(
    pushRequest({ repo, deliveryId: `d-${repo}-${number}`, ...overrides }),
    number,
    { deadline: Date.now() + 60_000, ...(overrides.privateRepo ? { logToken: 'a-build-log-token' } : {}) },
  );
  const running = await builds.transition(queued, { from: 'queued', to: 'running' });
  return builds.transition(running, { from: 'running', to: state });
}

describe('lambkin badge', () => {
  it("prints a public repository's badge linked to its page of recent builds", async () => {
    await finished('octo/open', 'success');
    const run = await lambkin(['octo/open']);
    expect(run.code).toBe(0);
    expect(run.stdout).toBe(
      `[![build](${PUBLIC_URL}/badges/octo/open.svg)](${PUBLIC_URL}/builds/octo/open)\n`,
    );
    expect(run.stderr).toBe('the badge shows passing: build #1 of main\n');
  });

  it('prints the badge of a branch, or only its URL', async () => {
    await finished('octo/open', 'failure', { branch: 'feature/x', ref: 'refs/heads/feature/x' });
    const branch = await lambkin(['octo/open', '--branch', 'feature/x']);
    expect(branch.stdout).toBe(
      `[![build](${PUBLIC_URL}/badges/octo/open.svg?branch=feature%2Fx)](${PUBLIC_URL}/builds/octo/open)\n`,
    );
    expect(branch.stderr).toBe('the badge shows failing: build #2 of feature/x\n');
    const url = await lambkin(['octo/open', '--url']);
    expect(url.stdout).toBe(`${PUBLIC_URL}/badges/octo/open.svg\n`);
  });

  it("gives a private repository's badge its badge token, the same every time", async () => {
    await finished('octo/closed', 'success', { privateRepo: true });
    const first = await lambkin(['octo/closed']);
    expect(first.code).toBe(0);
    const token = await builds.badgeTokenOf('octo/closed');
    expect(token).toBeDefined();
    // No link to a page: a private repository's page of recent builds is never served.
    expect(first.stdout).toBe(`![build](${PUBLIC_URL}/badges/octo/closed.svg?token=${token})\n`);
    expect(first.stderr).toContain('octo/closed is private: the link carries its badge token');
    expect((await lambkin(['octo/closed'])).stdout).toBe(first.stdout);
    expect(first.stdout).not.toContain('a-build-log-token');
  });

  it("replaces a private repository's badge token with --new-token, and refuses it for a public one", async () => {
    const before = await builds.ensureBadgeToken('octo/closed');
    const replaced = await lambkin(['octo/closed', '--new-token', '--url']);
    expect(replaced.code).toBe(0);
    const after = await builds.badgeTokenOf('octo/closed');
    expect(after).not.toBe(before);
    expect(replaced.stdout).toBe(`${PUBLIC_URL}/badges/octo/closed.svg?token=${after}\n`);
    const open = await lambkin(['octo/open', '--new-token']);
    expect(open.code).toBe(1);
    expectOneLine(open.stderr);
    expect(open.stderr).toMatch(/octo\/open is not private/);
  });

  it('says why the badge is unknown for a repository without builds', async () => {
    const run = await lambkin(['octo/new']);
    expect(run.code).toBe(0);
    expect(run.stdout).toBe(`[![build](${PUBLIC_URL}/badges/octo/new.svg)](${PUBLIC_URL}/builds/octo/new)\n`);
    expect(run.stderr).toBe(
      'the badge shows unknown until a build of its default branch ends ' +
        '(no build of the repository has recorded its default branch yet)\n',
    );
    expect(await builds.badgeTokenOf('octo/new')).toBeUndefined();
  });

  it('fails in one line without a public URL, and on bad arguments', async () => {
    const env = stackEnvironment(storage);
    const noUrl = await runInProcess(['badge', 'octo/open'], { env });
    expect(noUrl.code).toBe(1);
    expectOneLine(noUrl.stderr);
    expect(noUrl.stderr).toMatch(/LAMBKIN_PUBLIC_URL/);
    const withUrl = await runInProcess(['badge', 'octo/open', '--url'], {
      env: { ...env, LAMBKIN_PUBLIC_URL: 'https://other.example' },
    });
    expect(withUrl.stdout).toBe('https://other.example/badges/octo/open.svg\n');
    expect((await lambkin(['not-a-repo'])).code).toBe(2);
    expect((await lambkin(['octo/open', '--branch', ''])).code).toBe(2);
  });
});
