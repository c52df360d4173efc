/**
 * Whether a build deploys (src/core/deploy-policy.ts): the operator's settings and the default
 * branch's config decide, never the pushed commit; pull requests and untrusted builds never deploy.
 */
import {
  decideDeploy,
  deployPrecheck,
  deployRulesOf,
  ignoredDeployRules,
  type DeployCandidate,
  type DeployRules,
} from '../../src/core/deploy-policy.js';
import type { RepoConfigFile } from '../../src/core/repo-config.js';
import { RepoConfigError } from '../../src/core/repo-config.js';

const push = (branch: string): DeployCandidate => ({
  event: 'push',
  branch,
  defaultBranch: 'main',
  trusted: true,
});
const tagPush = (tag: string): DeployCandidate => ({
  event: 'push',
  tag,
  defaultBranch: 'main',
  trusted: true,
});
const lambkin = (config: Record<string, unknown>, source = '.lambkin.json'): RepoConfigFile => ({
  format: 'lambkin',
  source,
  config,
});
const rulesOf = (files: RepoConfigFile[], settingsConfig: Record<string, unknown> = {}): DeployRules =>
  deployRulesOf({ settingsConfig, files, defaultBranch: 'main', ref: 'main' });

describe('deployRulesOf (the default branch’s config)', () => {
  it('defaults to the default branch and no tags', () => {
    expect(rulesOf([])).toEqual({
      deployBranches: ['main'],
      deployTags: [],
      source: 'the config of the default branch main',
    });
  });

  it("reads the default branch's deployBranches and deployTags, and names the file", () => {
    const rules = rulesOf([lambkin({ deployBranches: ['main', 'release/*'], deployTags: 'v*' })]);
    expect(rules).toEqual({
      deployBranches: ['main', 'release/*'],
      deployTags: ['v*'],
      source: '.lambkin.json of the default branch main',
    });
  });

  it("takes the settings store's config defaults below the files", () => {
    expect(rulesOf([], { deployBranches: ['prod'] }).deployBranches).toEqual(['prod']);
    expect(
      rulesOf([lambkin({ deployBranches: 'main' })], { deployBranches: ['prod'] }).deployBranches,
    ).toEqual(['main']);
  });

  it('refuses an invalid settings config', () => {
    expect(() => rulesOf([], { deployBranches: 42 })).toThrow(RepoConfigError);
  });
});

describe('deployPrecheck (decided without reading anything)', () => {
  it('never deploys pull requests or untrusted builds', () => {
    expect(deployPrecheck({ ...push('main'), event: 'pull_request', pr: 3 }, {})).toEqual({
      allowed: false,
      reason: 'pull requests never deploy',
    });
    expect(deployPrecheck({ ...push('main'), trusted: false }, {})).toEqual({
      allowed: false,
      reason: 'untrusted builds never deploy',
    });
  });

  it('does not deploy when the default branch is unknown', () => {
    const { defaultBranch: _unknown, ...build } = push('main');
    expect(deployPrecheck(build, {})?.allowed).toBe(false);
  });

  it("stops at the operator's deploy.branches and deploy.tags before reading", () => {
    expect(deployPrecheck(push('feature/x'), { branches: ['main'] })).toEqual({
      allowed: false,
      reason: "feature/x is not in the settings' deploy.branches",
    });
    expect(deployPrecheck(tagPush('v1'), { tags: [] })?.allowed).toBe(false);
    expect(deployPrecheck(push('main'), { branches: ['main'] })).toBeUndefined();
    expect(deployPrecheck(tagPush('v1'), {})).toBeUndefined();
  });
});

describe('decideDeploy', () => {
  const mainOnly = rulesOf([lambkin({ deployBranches: ['main'], deployTags: ['v*'] })]);

  it("deploys a push to a branch of the default branch's deployBranches", () => {
    const decision = decideDeploy(push('main'), {}, mainOnly);
    expect(decision.allowed).toBe(true);
    expect(decision.reason).toBe('main matches deployBranches of .lambkin.json of the default branch main');
    expect(decision.rules).toEqual(mainOnly);
  });

  it('does not deploy other branches, whatever their own config says', () => {
    const decision = decideDeploy(push('feature/anything'), {}, mainOnly);
    expect(decision).toMatchObject({
      allowed: false,
      reason:
        'feature/anything is not a deploy branch (deployBranches of .lambkin.json of the default branch main: main)',
    });
  });

  it("deploys tags of the default branch's deployTags only", () => {
    expect(decideDeploy(tagPush('v1.2.0'), {}, mainOnly).allowed).toBe(true);
    expect(decideDeploy(tagPush('nightly'), {}, mainOnly)).toMatchObject({
      allowed: false,
      reason: expect.stringContaining('tag nightly is not a deploy tag') as unknown,
    });
    expect(decideDeploy(tagPush('v1.2.0'), {}, rulesOf([])).allowed).toBe(false);
  });

  it('matches globs and exact names', () => {
    const rules = rulesOf([lambkin({ deployBranches: ['release/*', 'hotfix(1)'] })]);
    expect(decideDeploy(push('release/2.0'), {}, rules).allowed).toBe(true);
    expect(decideDeploy(push('release/2.0/x'), {}, rules).allowed).toBe(false);
    expect(decideDeploy(push('hotfix(1)'), {}, rules).allowed).toBe(true);
  });

  it("is narrowed by the operator's settings, never widened", () => {
    const wide = rulesOf([lambkin({ deployBranches: ['**'], deployTags: ['**'] })]);
    expect(decideDeploy(push('staging'), { branches: ['main'] }, wide).allowed).toBe(false);
    expect(decideDeploy(push('main'), { branches: ['main'] }, wide)).toMatchObject({
      allowed: true,
      reason:
        "main matches deployBranches of .lambkin.json of the default branch main and the settings' deploy.branches",
    });
    expect(decideDeploy(tagPush('v1'), { tags: ['release-*'] }, wide).allowed).toBe(false);
    // The settings allow a branch the default branch's config does not: no deploy.
    expect(decideDeploy(push('staging'), { branches: ['**'] }, mainOnly).allowed).toBe(false);
  });

  it('never deploys pull requests or untrusted builds, whatever the rules', () => {
    const wide = rulesOf([lambkin({ deployBranches: ['**'] })]);
    expect(decideDeploy({ ...push('main'), event: 'pull_request', pr: 1 }, {}, wide).allowed).toBe(false);
    expect(decideDeploy({ ...push('main'), trusted: false }, {}, wide).allowed).toBe(false);
  });
});

describe('ignoredDeployRules (the pushed commit’s own rules, for the log)', () => {
  const mainOnly = rulesOf([lambkin({ deployBranches: ['main'] })]);
  const decision = decideDeploy(push('feature/x'), {}, mainOnly);

  it('says that different rules in the commit are ignored, and what decided', () => {
    expect(ignoredDeployRules([lambkin({ deployBranches: ['**'] })], decision)).toBe(
      `deployBranches ["**"] in this commit's .lambkin.json is ignored: whether a push deploys is decided by ` +
        ".lambkin.json of the default branch main and the operator's settings, never by the pushed commit",
    );
    expect(ignoredDeployRules([lambkin({ deployTags: 'v*' })], decision)).toContain('deployTags ["v*"]');
  });

  it('says nothing when the commit names no rules or the same ones', () => {
    expect(ignoredDeployRules([lambkin({ deploy: './ship' })], decision)).toBeUndefined();
    expect(ignoredDeployRules([lambkin({ deployBranches: 'main' })], decision)).toBeUndefined();
  });

  it('says so also when no rules were read', () => {
    expect(
      ignoredDeployRules([lambkin({ deployBranches: ['**'] })], { allowed: false, reason: 'x' }),
    ).toContain("decided by the controller, from the operator's settings and the default branch's config");
  });
});
