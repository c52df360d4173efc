/** Whether a build candidate builds at all, under the operator's build policy. */
import picomatch from 'picomatch';
import type { BuildRequest } from './build.js';
import { pullRequestSourceOf, type BuildPolicy } from './settings.js';

export type PolicyDecision = { build: true } | { build: false; reason: string };

export function matchesAny(name: string, patterns: readonly string[]): boolean {
  return patterns.some((pattern) => picomatch.isMatch(name, pattern, { dot: true }));
}

const SOURCE_WORDS = {
  fromSelfPublicRepo: 'from branches of this repository',
  fromSelfPrivateRepo: 'from branches of this (private) repository',
  fromForkPublicRepo: 'from forks',
  fromForkPrivateRepo: 'from forks of this private repository',
} as const;

export function decideBuild(
  candidate: Pick<BuildRequest, 'event' | 'branch' | 'tag' | 'fork' | 'privateRepo'>,
  policy: BuildPolicy,
): PolicyDecision {
  if (candidate.event === 'pull_request') {
    const source = pullRequestSourceOf(candidate);
    if (policy.pullRequests[source].build) return { build: true };
    return {
      build: false,
      reason: `pull requests ${SOURCE_WORDS[source]} are not built (settings: build.pullRequests.${source}.build)`,
    };
  }
  if (candidate.tag !== undefined) {
    return policy.tags
      ? { build: true }
      : { build: false, reason: 'tag pushes are not built (settings: build.tags)' };
  }
  const branch = candidate.branch ?? '';
  if (!matchesAny(branch, policy.branches)) {
    return { build: false, reason: `branch "${branch}" is not in build.branches` };
  }
  if (matchesAny(branch, policy.ignoreBranches)) {
    return { build: false, reason: `branch "${branch}" is in build.ignoreBranches` };
  }
  return { build: true };
}
