import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BuildRequest } from '../../src/core/build.js';
import {
  LAMBCI_VARIABLES,
  RepoConfigError,
  buildVariables,
  isReservedEnvName,
  readRepoConfig,
  resolveBuildConfig,
} from '../../src/core/repo-config.js';
import type { BuildContext, ResolvedBuildConfig } from '../../src/core/repo-config.js';

const roots: string[] = [];
afterAll(async () => {
  await Promise.all(roots.map((root) => rm(root, { recursive: true, force: true })));
});

async function checkout(files: Record<string, object>): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'lambkin-lambci-'));
  roots.push(root);
  for (const [name, content] of Object.entries(files)) {
    await writeFile(join(root, name), JSON.stringify(content));
  }
  return root;
}

const push = (branch: string): BuildContext => ({ event: 'push', branch, defaultBranch: 'master' });

async function resolveIn(
  files: Record<string, object>,
  build: BuildContext = push('master'),
): Promise<ResolvedBuildConfig> {
  const repo = await readRepoConfig(await checkout({ 'package.json': { name: 'app' }, ...files }));
  return resolveBuildConfig({ settingsConfig: {}, repo, build });
}

describe('LambCI config files', () => {
  it('maps cmd, env, git.depth and inheritSecrets from .lambci.json', async () => {
    const resolved = await resolveIn({
      '.lambci.json': {
        cmd: 'pip install --user tox && tox',
        env: { PYTHONUNBUFFERED: 1, STRICT: true, NAME: 'x' },
        git: { depth: 5 },
        inheritSecrets: false,
      },
    });
    expect(resolved).toMatchObject({
      install: [],
      test: ['pip install --user tox && tox'],
      env: { PYTHONUNBUFFERED: '1', STRICT: 'true', NAME: 'x' },
      git: { depth: 5 },
      secrets: false,
      source: ['defaults', '.lambci.json'],
      warnings: [],
    });
  });

  it('reads the "lambci" key of package.json', async () => {
    const resolved = await resolveIn({
      'package.json': { name: 'app', lambci: { cmd: 'npm ci && npm run lambci-build' } },
    });
    expect(resolved.test).toEqual(['npm ci && npm run lambci-build']);
    expect(resolved.source).toEqual(['defaults', 'package.json "lambci"']);
  });

  it('maps branches: true/false shorthands, plain names matched exactly, /regex/ and !/regex/', async () => {
    const files = {
      '.lambci.json': {
        build: false,
        branches: {
          master: true,
          'feature-*': { build: true, cmd: 'plain name, not a glob' },
          '/^dev/': { build: true, cmd: 'make dev' },
          '!/^test-/': true,
        },
      },
    };
    expect((await resolveIn(files, push('master'))).build).toBe(true);
    const dev = await resolveIn(files, push('develop'));
    expect(dev.build).toBe(true);
    expect(dev.test).toEqual(['make dev']);
    expect((await resolveIn(files, push('hotfix'))).build).toBe(true);
    const skipped = await resolveIn(files, push('test-1'));
    expect(skipped.build).toBe(false);
    expect(skipped.skipReason).toBe('"build" is false in .lambci.json');
    // LambCI never read its keys as globs: "feature-*" only matches a branch of that very name.
    expect((await resolveIn(files, push('feature-x'))).test).toEqual(['npm test']);
  });

  it('picks the pullRequests.from… entry that fits the pull request', async () => {
    const files = {
      '.lambci.json': {
        pullRequests: {
          fromSelfPublicRepo: { cmd: 'self public' },
          fromSelfPrivateRepo: { cmd: 'self private' },
          fromForkPublicRepo: { build: true, inheritSecrets: false, cmd: 'fork public' },
          fromForkPrivateRepo: false,
        },
      },
    };
    const pr = (fork: boolean, privateRepo: boolean): BuildContext => ({
      event: 'pull_request',
      branch: 'topic',
      pr: 3,
      fork,
      privateRepo,
    });
    expect((await resolveIn(files, pr(false, false))).test).toEqual(['self public']);
    expect((await resolveIn(files, pr(false, true))).test).toEqual(['self private']);
    const forked = await resolveIn(files, pr(true, false));
    expect(forked.test).toEqual(['fork public']);
    expect(forked.secrets).toBe(false);
    expect((await resolveIn(files, pr(true, true))).build).toBe(false);
    const off = await resolveIn({ '.lambci.json': { pullRequests: false } }, pr(false, false));
    expect(off.build).toBe(false);
  });

  it('lets Lambkin config win when both exist', async () => {
    const resolved = await resolveIn({
      '.lambci.json': { cmd: 'lambci command', env: { A: 'lambci', B: 'lambci' } },
      '.lambkin.json': { test: 'lambkin command', env: { A: 'lambkin' } },
    });
    expect(resolved.test).toEqual(['lambkin command']);
    expect(resolved.install).toEqual([]);
    expect(resolved.env).toEqual({ A: 'lambkin', B: 'lambci' });
    expect(resolved.source).toEqual(['defaults', '.lambci.json', '.lambkin.json']);
  });

  it('reads the LambCI keys Lambkin does not use, and says why in the warnings', async () => {
    const resolved = await resolveIn({
      '.lambci.json': {
        cmd: 'make',
        env: { PATH: '/opt/tools/bin', LAMBCI_X: '1', KEPT: 'yes' },
        allowConfigOverrides: ['cmd'],
        notifications: { slack: { channel: '#ci' } },
        branches: { master: { notifications: { slack: { channel: '#main' } } } },
        clearTmp: false,
      },
    });
    expect(resolved.env).toEqual({ KEPT: 'yes' });
    expect(resolved.warnings).toEqual([
      '.lambci.json: "env.PATH" was dropped: Lambkin sets it; extend it in a command instead: export PATH="…:$PATH"',
      '.lambci.json: "env.LAMBCI_X" was dropped: Lambkin sets it',
      '.lambci.json: "notifications" is not used: notifications are configured in the settings store',
      '.lambci.json: "clearTmp" is not used: the runner cleans up between builds itself',
      '.lambci.json: "allowConfigOverrides" is not used: it has no effect in a repository file (nor had it in LambCI); operators set it in the settings store',
      '.lambci.json: "branches.master.notifications" is not used: notifications are configured in the settings store',
    ]);
  });

  it('rejects a broken LambCI file with file, key and expectation', async () => {
    let thrown: unknown;
    try {
      await resolveIn({ 'package.json': { name: 'app', lambci: { cmd: 'x', branches: { master: 'yes' } } } });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(RepoConfigError);
    expect((thrown as RepoConfigError).message).toBe(
      'package.json: "lambci.branches.master" must be true, false or an object of overrides (got "yes")',
    );
  });
});

describe('build variables', () => {
  const base: BuildRequest = {
    repo: 'octo/app',
    event: 'push',
    ref: 'refs/heads/main',
    sha: 'a'.repeat(40),
    branch: 'main',
    defaultBranch: 'main',
    fork: false,
    privateRepo: false,
    trusted: true,
    author: 'octocat',
    deliveryId: 'delivery-1',
  };

  it('gives a push CI=true, LAMBKIN_* and the LAMBCI_* equivalents', () => {
    expect(buildVariables({ ...base, number: 12 }, { logUrl: 'https://ci.example/octo/app/12' })).toEqual({
      CI: 'true',
      LAMBKIN: 'true',
      LAMBKIN_BUILD_NUMBER: '12',
      LAMBKIN_REPO: 'octo/app',
      LAMBKIN_EVENT: 'push',
      LAMBKIN_REF: 'refs/heads/main',
      LAMBKIN_SHA: 'a'.repeat(40),
      LAMBKIN_BRANCH: 'main',
      LAMBKIN_TAG: '',
      LAMBKIN_PR: '',
      LAMBKIN_BASE_BRANCH: '',
      LAMBKIN_HEAD_REPO: 'octo/app',
      LAMBKIN_DEFAULT_BRANCH: 'main',
      LAMBKIN_TRUSTED: 'true',
      LAMBKIN_BUILD_URL: 'https://ci.example/octo/app/12',
      LAMBCI: 'true',
      LAMBCI_BUILD_NUM: '12',
      LAMBCI_REPO: 'octo/app',
      LAMBCI_BRANCH: 'main',
      LAMBCI_CHECKOUT_BRANCH: 'main',
      LAMBCI_CLONE_REPO: 'octo/app',
      LAMBCI_COMMIT: 'a'.repeat(40),
      LAMBCI_PULL_REQUEST: '',
    });
  });

  it('gives LAMBCI_BRANCH the base branch of a pull request, as LambCI did', () => {
    const variables = buildVariables({
      ...base,
      number: 13,
      event: 'pull_request',
      ref: 'refs/heads/topic',
      branch: 'topic',
      baseBranch: 'main',
      pr: 5,
      headRepo: 'fork/app',
      fork: true,
      trusted: false,
    });
    expect(variables).toMatchObject({
      LAMBKIN_BRANCH: 'topic',
      LAMBKIN_BASE_BRANCH: 'main',
      LAMBKIN_PR: '5',
      LAMBKIN_HEAD_REPO: 'fork/app',
      LAMBKIN_TRUSTED: 'false',
      LAMBCI_BRANCH: 'main',
      LAMBCI_CHECKOUT_BRANCH: 'topic',
      LAMBCI_CLONE_REPO: 'fork/app',
      LAMBCI_PULL_REQUEST: '5',
    });
    expect(variables).not.toHaveProperty('LAMBKIN_BUILD_URL');
  });

  it('sets every mapped LambCI variable, and a build config can override none of them', () => {
    const variables = buildVariables({ ...base, number: 1, tag: 'v1.0.0', branch: undefined });
    expect(variables['LAMBKIN_TAG']).toBe('v1.0.0');
    for (const { name, lambkin } of LAMBCI_VARIABLES) {
      if (lambkin === null) continue;
      expect(variables).toHaveProperty(name);
      expect(variables).toHaveProperty(lambkin);
    }
    for (const name of Object.keys(variables)) expect(isReservedEnvName(name)).toBe(true);
  });

  it('docs/migrating-from-lambci.md covers every LambCI variable', async () => {
    const docs = await readFile('docs/migrating-from-lambci.md', 'utf8');
    for (const { name } of LAMBCI_VARIABLES) expect(docs).toContain(`\`${name}\``);
  });
});
