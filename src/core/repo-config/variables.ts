/**
 * The build variables every step gets: `CI`, Lambkin's `LAMBKIN_*`, and LambCI's `LAMBCI_*` so
 * scripts written for LambCI keep working. They are computed from the build, never copied from the
 * runner's own environment.
 */
import type { BuildRequest } from '../build.js';

/** A LambCI build variable and what Lambkin sets instead (null: nothing, and why). */
export interface LambciVariable {
  name: string;
  lambkin: string | null;
  note: string;
}

/** Every variable LambCI gave its build commands, with its Lambkin equivalent. */
export const LAMBCI_VARIABLES: readonly LambciVariable[] = [
  { name: 'LAMBCI', lambkin: 'LAMBKIN', note: '"true" in every build' },
  { name: 'LAMBCI_BUILD_NUM', lambkin: 'LAMBKIN_BUILD_NUMBER', note: 'build number, counted per repository' },
  { name: 'LAMBCI_REPO', lambkin: 'LAMBKIN_REPO', note: 'owner/name' },
  {
    name: 'LAMBCI_BRANCH',
    lambkin: 'LAMBKIN_BRANCH',
    note: 'the branch pushed; for a pull request LambCI gave the base branch, which is LAMBKIN_BASE_BRANCH',
  },
  {
    name: 'LAMBCI_CHECKOUT_BRANCH',
    lambkin: 'LAMBKIN_BRANCH',
    note: "the branch checked out: the one pushed, or the pull request's head branch",
  },
  {
    name: 'LAMBCI_CLONE_REPO',
    lambkin: 'LAMBKIN_HEAD_REPO',
    note: 'the repository the code comes from (a fork for pull requests from forks)',
  },
  { name: 'LAMBCI_COMMIT', lambkin: 'LAMBKIN_SHA', note: 'the commit built' },
  { name: 'LAMBCI_PULL_REQUEST', lambkin: 'LAMBKIN_PR', note: 'pull request number, empty for pushes' },
  {
    name: 'AWS_REQUEST_ID',
    lambkin: null,
    note: 'not set: builds run apart from the function invocation; use LAMBKIN_BUILD_NUMBER to identify a build',
  },
  ...['CMD', 'FILE', 'TAG', 'BUILD_ARGS', 'RUN_ARGS'].map((suffix) => ({
    name: `LAMBCI_DOCKER_${suffix}`,
    lambkin: null,
    note: 'not set: Lambkin has no ECS/Docker builds',
  })),
];

export interface BuildVariableOptions {
  /** Link to the build's log page, as LAMBKIN_BUILD_URL. */
  logUrl?: string;
}

/**
 * `CI=true`, the `LAMBKIN_*` variables and LambCI's `LAMBCI_*` equivalents for one build. Values
 * absent for this kind of build (the PR number of a push, say) are empty strings, so scripts can
 * test them with `[ -n "$LAMBKIN_PR" ]`.
 */
export function buildVariables(
  request: BuildRequest & { number: number },
  options: BuildVariableOptions = {},
): Record<string, string> {
  const pullRequest = request.pr !== undefined ? String(request.pr) : '';
  const headRepo = request.headRepo ?? request.repo;
  const branch = request.branch ?? '';
  return {
    CI: 'true',
    LAMBKIN: 'true',
    LAMBKIN_BUILD_NUMBER: String(request.number),
    LAMBKIN_REPO: request.repo,
    LAMBKIN_EVENT: request.event,
    LAMBKIN_REF: request.ref,
    LAMBKIN_SHA: request.sha,
    LAMBKIN_BRANCH: branch,
    LAMBKIN_TAG: request.tag ?? '',
    LAMBKIN_PR: pullRequest,
    LAMBKIN_BASE_BRANCH: request.baseBranch ?? '',
    LAMBKIN_HEAD_REPO: headRepo,
    LAMBKIN_DEFAULT_BRANCH: request.defaultBranch ?? '',
    LAMBKIN_TRUSTED: String(request.trusted),
    ...(options.logUrl !== undefined ? { LAMBKIN_BUILD_URL: options.logUrl } : {}),
    LAMBCI: 'true',
    LAMBCI_BUILD_NUM: String(request.number),
    LAMBCI_REPO: request.repo,
    // LambCI's "branch" of a pull request was the branch it merges into.
    LAMBCI_BRANCH: request.event === 'pull_request' ? (request.baseBranch ?? branch) : branch,
    LAMBCI_CHECKOUT_BRANCH: branch,
    LAMBCI_CLONE_REPO: headRepo,
    LAMBCI_COMMIT: request.sha,
    LAMBCI_PULL_REQUEST: pullRequest,
  };
}
