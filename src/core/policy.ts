/** Whether a build candidate builds at all, under the operator's build policy. */
import picomatch from 'picomatch';
import type { BuildRequest } from './build.js';
import type { BuildPolicy } from './settings.js';

export type PolicyDecision = { build: true } | { build: false; reason: string };

export function matchesAny(name: string, patterns: readonly string[]): boolean {
  return patterns.some((pattern) => picomatch.isMatch(name, pattern, { dot: true }));
}

export function decideBuild(
  candidate: Pick<BuildRequest, 'event' | 'branch' | 'tag' | 'fork'>,
  policy: BuildPolicy,
): PolicyDecision {
  if (candidate.event === 'pull_request') {
    if (candidate.fork && !policy.pullRequests.forks) {
      return {
        build: false,
        reason: 'pull requests from forks are not built (settings: build.pullRequests.forks)',
      };
    }
    if (!candidate.fork && !policy.pullRequests.sameRepo) {
      return {
        build: false,
        reason:
          'pull requests from branches of this repository are not built (settings: build.pullRequests.sameRepo)',
      };
    }
    return { build: true };
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
