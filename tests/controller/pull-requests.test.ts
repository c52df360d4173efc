/**
 * Pull requests through the builder: the policy of their source (settings store) decides secrets,
 * the base branch's config comes through the contents API, and the pull request's own files
 * change only what `allowConfigOverrides` allows. Real git repositories, the GitHub stand-in,
 * the runner as a separate process, the S3 and DynamoDB emulators.
 */
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import type { BuildRequest } from '../../src/core/build.js';
import type { SettingsDocument } from '../../src/core/settings.js';
import { repoScope } from '../../src/store/settings.js';
import { startControllerFixture, type ControllerFixture } from '../support/controller.js';
import { commitFiles, createGitRepo } from '../support/github-server.js';

const SECRET = 'pr-secret-value-7c1f9a2b';
let fixture: ControllerFixture;
const folders: string[] = [];

beforeAll(async () => {
  fixture = await startControllerFixture('pr-test-token');
});

afterAll(async () => {
  await fixture.close();
  for (const folder of folders) rmSync(folder, { recursive: true, force: true });
});

const baseConfig = { install: [], test: 'echo base-test', timeout: 120 };
/** What a stranger's pull request tries: its own command, a tiny timeout, secrets and a deploy. */
const forkConfig = {
  install: [],
  test: 'echo "fork-test secret=[${PR_SECRET:-none}] timeout=$LAMBKIN_TIMEOUT"',
  timeout: 1,
  secrets: true,
  deploy: 'echo deploying',
  env: { FROM_FORK: 'yes' },
};

/** A repository whose main branch holds `base` and a pull request branch holds `head`. */
async function pullRequestRepository(name: string, base: string, head: string) {
  const repo = await createGitRepo({ '.lambkin.json': base });
  folders.push(repo.dir);
  execFileSync('git', ['-C', repo.dir, 'checkout', '--quiet', '-b', 'patch-1']);
  const headSha = await commitFiles(repo.dir, { '.lambkin.json': head }, 'Change the config');
  execFileSync('git', ['-C', repo.dir, 'checkout', '--quiet', 'main']);
  fixture.github.addRepository({ owner: 'octo', name, gitDir: repo.dir });
  return { repo: `octo/${name}`, sha: headSha };
}

async function buildPullRequest(
  target: { repo: string; sha: string },
  request: Partial<BuildRequest>,
  document: SettingsDocument = {},
) {
  await fixture.settings.update(repoScope(target.repo), () => ({
    secretEnv: { PR_SECRET: SECRET },
    ...document,
  }));
  return fixture.build({
    ...target,
    event: 'pull_request',
    ref: 'refs/pull/4/head',
    branch: 'patch-1',
    pr: 4,
    baseBranch: 'main',
    ...request,
  });
}

const fromFork = { fork: true, trusted: false, headRepo: 'stranger/fork' };

describe('pull requests in the builder', () => {
  it("runs a fork's command under the base branch's rules, without secrets or deploy", async () => {
    const target = await pullRequestRepository(
      'fork-rules',
      JSON.stringify(baseConfig),
      JSON.stringify(forkConfig),
    );
    const { done, log } = await buildPullRequest(target, fromFork);
    expect(done.state).toBe('success');
    expect(log).toContain('Config: defaults < .lambkin.json of main < .lambkin.json of the pull request');
    expect(log).toContain('fork-test secret=[none]');
    expect(log).toMatch(
      /"timeout", "secrets", "deploy" not used: the pull request policy's "allowConfigOverrides" permits only install, test, env/,
    );
    expect(log).not.toContain('deploying');
    expect(log).not.toContain(SECRET);
    // The base branch's config was read through the contents API, at the base branch.
    expect(
      fixture.github.requests.some(
        (request) =>
          request.path === '/repos/octo/fork-rules/contents/.lambkin.json' &&
          request.query.ref === 'refs/heads/main',
      ),
    ).toBe(true);
  }, 60_000);

  it('gives a fork the secrets only when the operator lets its source inherit them (masked)', async () => {
    const target = await pullRequestRepository(
      'fork-secrets',
      JSON.stringify(baseConfig),
      JSON.stringify(forkConfig),
    );
    const { done, log } = await buildPullRequest(target, fromFork, {
      build: { pullRequests: { fromForkPublicRepo: { inheritSecrets: true } } },
    });
    expect(done.state).toBe('success');
    expect(log).toContain('fork-test secret=[***]');
    expect(log).not.toContain(SECRET);
  }, 60_000);

  it('keeps secrets from a same-repository pull request whose source does not inherit them', async () => {
    // Its own files apply in full here: a 1 s timeout would count the fetch on a loaded machine.
    const target = await pullRequestRepository(
      'self-no-secrets',
      JSON.stringify(baseConfig),
      JSON.stringify({ ...forkConfig, timeout: 60 }),
    );
    const same = await buildPullRequest(
      target,
      {},
      {
        build: { pullRequests: { fromSelfPublicRepo: { inheritSecrets: false } } },
      },
    );
    expect(same.done.state).toBe('success');
    expect(same.log).toContain('fork-test secret=[none]');
    // The default same-repository policy lets its files change every key, and gives secrets.
    const trusted = await buildPullRequest(target, {});
    expect(trusted.log).toContain('fork-test secret=[***]');
    expect(trusted.log).not.toMatch(/not used: the pull request policy/);
  }, 60_000);

  it("ends the build `error` when the base branch's config is broken, naming the file and branch", async () => {
    const target = await pullRequestRepository('broken-base', '{ "test": ', JSON.stringify(forkConfig));
    const { done, log } = await buildPullRequest(target, fromFork);
    expect(done.state).toBe('error');
    expect(done.description).toMatch(/^build error: main: \.lambkin\.json is not valid JSON/);
    expect(log).not.toContain('fork-test');
  }, 60_000);

  it('ends the build `error` when GitHub fails while reading the base config (never runs unchecked)', async () => {
    const target = await pullRequestRepository(
      'base-outage',
      JSON.stringify(baseConfig),
      JSON.stringify(forkConfig),
    );
    fixture.github.failNext({ mode: '500', path: /\/contents\//, times: 10 });
    try {
      const { done, log } = await buildPullRequest(target, fromFork);
      expect(done.state).toBe('error');
      expect(done.description).toMatch(/Could not read .* in octo\/base-outage@refs\/heads\/main: 500/);
      expect(log).not.toContain('fork-test');
    } finally {
      fixture.github.clearFaults();
    }
  }, 60_000);
});
