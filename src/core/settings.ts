/**
 * Settings kept by the operator (not the repo) in the settings store: one document for `global`
 * and one per repository, merged repo-over-global. The repo's own config file is separate
 * (src/core/repo-config.ts) and ranks above these for the keys it may set.
 */

/** Which pushes and pull requests build at all (decided at intake, before anything is queued). */
export interface BuildPolicy {
  /** Branch name globs whose pushes build. Default: every branch. */
  branches: string[];
  /** Branch name globs whose pushes never build (checked after `branches`). */
  ignoreBranches: string[];
  /** Build tag pushes. Default off. */
  tags: boolean;
  pullRequests: {
    /** PRs whose head branch lives in the same repository. Default on. */
    sameRepo: boolean;
    /** PRs from forks (untrusted code: no secrets, no cache writes, no deploy). Default on. */
    forks: boolean;
  };
  /**
   * A newer build of the same branch or pull request cancels the older ones still queued or
   * running ("superseded by #N"). Default on.
   */
  cancelSuperseded: boolean;
}

/** One scope's stored settings; every key optional (absent = inherit). */
export interface SettingsDocument {
  build?: {
    branches?: string[];
    ignoreBranches?: string[];
    tags?: boolean;
    pullRequests?: { sameRepo?: boolean; forks?: boolean };
    cancelSuperseded?: boolean;
  };
  /** Defaults for repo-config keys (install, test, env, timeout, …), below the repo's own file. */
  config?: Record<string, unknown>;
  /** Secret variables for trusted builds and deploy steps; masked in logs. */
  secretEnv?: Record<string, string>;
}

export const DEFAULT_BUILD_POLICY: BuildPolicy = {
  branches: ['**'],
  ignoreBranches: [],
  tags: false,
  pullRequests: { sameRepo: true, forks: true },
  cancelSuperseded: true,
};

/** Settings of a repository after merging built-in defaults, global and per-repo documents. */
export interface EffectiveSettings {
  build: BuildPolicy;
  config: Record<string, unknown>;
  secretEnv: Record<string, string>;
}

export function mergeSettings(...documents: (SettingsDocument | undefined)[]): EffectiveSettings {
  const result: EffectiveSettings = {
    build: { ...DEFAULT_BUILD_POLICY, pullRequests: { ...DEFAULT_BUILD_POLICY.pullRequests } },
    config: {},
    secretEnv: {},
  };
  for (const document of documents) {
    if (!document) continue;
    const build = document.build ?? {};
    if (build.branches) result.build.branches = [...build.branches];
    if (build.ignoreBranches) result.build.ignoreBranches = [...build.ignoreBranches];
    if (build.tags !== undefined) result.build.tags = build.tags;
    if (build.cancelSuperseded !== undefined) result.build.cancelSuperseded = build.cancelSuperseded;
    if (build.pullRequests)
      result.build.pullRequests = { ...result.build.pullRequests, ...build.pullRequests };
    Object.assign(result.config, document.config ?? {});
    Object.assign(result.secretEnv, document.secretEnv ?? {});
  }
  return result;
}
