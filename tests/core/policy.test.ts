import { decideBuild } from '../../src/core/policy.js';
import { DEFAULT_BUILD_POLICY, mergeSettings } from '../../src/core/settings.js';

const push = (branch: string) => ({ event: 'push' as const, branch, fork: false, privateRepo: false });

describe('build policy', () => {
  it('builds every branch push and every PR by default, but no tags', () => {
    expect(decideBuild(push('main'), DEFAULT_BUILD_POLICY)).toEqual({ build: true });
    expect(decideBuild(push('feature/deep/name'), DEFAULT_BUILD_POLICY)).toEqual({ build: true });
    expect(
      decideBuild(
        { event: 'pull_request', branch: 'x', fork: true, privateRepo: false },
        DEFAULT_BUILD_POLICY,
      ),
    ).toEqual({
      build: true,
    });
    expect(
      decideBuild({ event: 'push', tag: 'v1.0.0', fork: false, privateRepo: false }, DEFAULT_BUILD_POLICY),
    ).toMatchObject({
      build: false,
      reason: expect.stringContaining('build.tags'),
    });
  });

  it('limits branches with globs and ignore globs', () => {
    const { build } = mergeSettings({
      build: { branches: ['main', 'release/*'], ignoreBranches: ['release/old-*'] },
    });
    expect(decideBuild(push('main'), build)).toEqual({ build: true });
    expect(decideBuild(push('release/1.2'), build)).toEqual({ build: true });
    expect(decideBuild(push('release/old-1'), build)).toMatchObject({
      build: false,
      reason: /ignoreBranches/,
    });
    expect(decideBuild(push('feature'), build)).toMatchObject({
      build: false,
      reason: /not in build.branches/,
    });
  });

  it('turns PRs from forks and from the same repo on and off separately', () => {
    const { build } = mergeSettings({ build: { pullRequests: { forks: false } } });
    expect(
      decideBuild({ event: 'pull_request', branch: 'x', fork: true, privateRepo: false }, build),
    ).toMatchObject({
      build: false,
      reason: /forks/,
    });
    expect(
      decideBuild({ event: 'pull_request', branch: 'x', fork: false, privateRepo: false }, build),
    ).toEqual({ build: true });
    const sameOff = mergeSettings({ build: { pullRequests: { sameRepo: false } } }).build;
    expect(
      decideBuild({ event: 'pull_request', branch: 'x', fork: false, privateRepo: false }, sameOff),
    ).toMatchObject({
      build: false,
    });
  });

  it("follows LambCI's defaults per source: forks of private repositories do not build", () => {
    const fork = (privateRepo: boolean) => ({
      event: 'pull_request' as const,
      branch: 'x',
      fork: true,
      privateRepo,
    });
    expect(decideBuild(fork(false), DEFAULT_BUILD_POLICY)).toEqual({ build: true });
    expect(decideBuild(fork(true), DEFAULT_BUILD_POLICY)).toEqual({
      build: false,
      reason:
        'pull requests from forks of this private repository are not built (settings: build.pullRequests.fromForkPrivateRepo.build)',
    });
    const opened = mergeSettings({ build: { pullRequests: { fromForkPrivateRepo: { build: true } } } }).build;
    expect(decideBuild(fork(true), opened)).toEqual({ build: true });
    // A source's own key ranks above the shorthand, and later documents above earlier ones.
    const mixed = mergeSettings(
      { build: { pullRequests: { forks: false } } },
      { build: { pullRequests: { fromForkPublicRepo: true } } },
    ).build;
    expect(decideBuild(fork(false), mixed)).toEqual({ build: true });
    expect(decideBuild(fork(true), mixed)).toMatchObject({ build: false });
  });

  it('merges inheritSecrets, allowConfigOverrides and requireApproval per source, keeping the defaults apart', () => {
    const merged = mergeSettings(
      { build: { pullRequests: { fromForkPublicRepo: { inheritSecrets: true, requireApproval: true } } } },
      { build: { pullRequests: { fromForkPrivateRepo: { requireApproval: true } } } },
    );
    expect(merged.build.pullRequests.fromForkPublicRepo).toEqual({
      build: true,
      inheritSecrets: true,
      allowConfigOverrides: ['install', 'test', 'env'],
      requireApproval: true,
    });
    expect(merged.build.pullRequests.fromForkPrivateRepo.requireApproval).toBe(true);
    expect(merged.build.pullRequests.fromSelfPublicRepo.requireApproval).toBe(false);
    (merged.build.pullRequests.fromForkPublicRepo.allowConfigOverrides as string[]).push('timeout');
    expect(DEFAULT_BUILD_POLICY.pullRequests.fromForkPublicRepo).toEqual({
      build: true,
      inheritSecrets: false,
      allowConfigOverrides: ['install', 'test', 'env'],
      requireApproval: false,
    });
    // Off everywhere unless an operator turns it on.
    for (const policy of Object.values(DEFAULT_BUILD_POLICY.pullRequests))
      expect(policy.requireApproval).toBe(false);
  });

  it('builds tags when configured', () => {
    const { build } = mergeSettings({ build: { tags: true } });
    expect(decideBuild({ event: 'push', tag: 'v2', fork: false, privateRepo: false }, build)).toEqual({
      build: true,
    });
  });
});
