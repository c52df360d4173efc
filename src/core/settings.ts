/**
 * Settings kept by the operator (not the repo) in the settings store: one document for `global`
 * and one per repository, merged repo-over-global. The repo's own config file is separate
 * (src/core/repo-config.ts) and ranks above these for the keys it may set.
 */
import { mergeNotifications, type NotificationSettings } from './notifications.js';
import type { CodeBuildCompute } from './repo-config/schema.js';

/**
 * Where a pull request comes from, in LambCI's words: a branch of the repository itself ("self")
 * or a fork, of a public or a private repository.
 */
export const PULL_REQUEST_SOURCES = [
  'fromSelfPublicRepo',
  'fromSelfPrivateRepo',
  'fromForkPublicRepo',
  'fromForkPrivateRepo',
] as const;
export type PullRequestSource = (typeof PULL_REQUEST_SOURCES)[number];

/** What pull requests of one source may do. */
export interface PullRequestPolicy {
  /** Build them at all. */
  build: boolean;
  /** Give their commands the settings store's `secretEnv`. */
  inheritSecrets: boolean;
  /**
   * Which repository-config keys the pull request's own files may change, over the base branch's
   * config: `true` every key, `false` none, or a list (`"cmd"` stands for `install` and `test`).
   */
  allowConfigOverrides: boolean | string[];
  /**
   * Hold them until someone with write access to the repository approves the commit (App mode
   * only: a check run's "Approve and run" button). Meant for forks; each new commit asks again.
   */
  requireApproval: boolean;
}

/** The keys a fork's own config may change by default: its commands and plain variables. */
export const FORK_CONFIG_OVERRIDES: readonly string[] = ['install', 'test', 'env'];

/** Which pushes and pull requests build at all (decided at intake, before anything is queued). */
export interface BuildPolicy {
  /** Branch name globs whose pushes build. Default: every branch. */
  branches: string[];
  /** Branch name globs whose pushes never build (checked after `branches`). */
  ignoreBranches: string[];
  /** Build tag pushes. Default off. */
  tags: boolean;
  /** Per pull-request source; see DEFAULT_BUILD_POLICY for the defaults (LambCI's). */
  pullRequests: Record<PullRequestSource, PullRequestPolicy>;
  /**
   * A newer build of the same branch or pull request cancels the older ones still queued or
   * running ("superseded by #N"). Default on.
   */
  cancelSuperseded: boolean;
  /** Jobs a build may make (matrix × parallel); default 16, at most 256. */
  maxJobs: number;
}

/** A pull-request source's stored settings: `true`/`false` is shorthand for `{ build }`. */
export type PullRequestPolicyInput = boolean | Partial<PullRequestPolicy>;

/** One scope's stored settings; every key optional (absent = inherit). */
export interface SettingsDocument {
  build?: {
    branches?: string[];
    ignoreBranches?: string[];
    tags?: boolean;
    pullRequests?: {
      /** Shorthand: `build` of both `fromSelf…` sources (the specific keys rank above it). */
      sameRepo?: boolean;
      /** Shorthand: `build` of both `fromFork…` sources. */
      forks?: boolean;
    } & Partial<Record<PullRequestSource, PullRequestPolicyInput>>;
    cancelSuperseded?: boolean;
    /** Jobs per build (matrix × shards), 1 to 256; a config that makes more is refused before anything runs. */
    maxJobs?: number;
  };
  /** Defaults for repo-config keys (install, test, env, timeout, …), below the repo's own file. */
  config?: Record<string, unknown>;
  /** Secret variables for trusted builds and deploy steps; masked in logs. */
  secretEnv?: Record<string, string>;
  /** How the deploy step reaches AWS: only through this role, never the builder's own. */
  deploy?: DeploySettings;
  /** Slack and SNS notifications (src/core/notifications.ts); Slack's secrets are sealed like secretEnv. */
  notifications?: NotificationSettings;
  /** Which builds may run on CodeBuild (`runsOn`), and on what (src/core/placement.ts). */
  codebuild?: CodeBuildSettings;
}

/**
 * The operator's consent to CodeBuild: without a `repos` pattern matching the repository, a build
 * set to run there ends `error` saying so. Each key replaces the one below (global, then repository).
 */
export interface CodeBuildSettings {
  /** `owner/name` globs (`acme/*`) of the repositories that may run on CodeBuild. Default: none. */
  repos?: string[];
  /** Image URIs builds may ask for besides `standard` (the project's own). Default: none. */
  images?: string[];
  /** Sizes builds may ask for. Default: small and medium. */
  computes?: CodeBuildCompute[];
  /** Builds may ask for Docker (the privileged project). Default: false. */
  docker?: boolean;
  /** CodeBuild minutes of all builds in a calendar month (UTC); at the cap, builds are refused. Default: no cap. */
  monthlyMinutes?: number;
}

export interface DeploySettings {
  /**
   * The IAM role the deploy step runs as (assumed for the build, short-lived). Without it the
   * deploy step gets no AWS credentials at all.
   */
  roleArn?: string;
  /** Region for the deploy step's AWS_REGION; default the stack's own. */
  region?: string;
  /**
   * Branch globs that may deploy at all: narrows the default branch's `deployBranches` (a push
   * deploys only when both allow its branch). Unset: the default branch's config decides alone.
   */
  branches?: string[];
  /** Tag globs that may deploy at all: narrows the default branch's `deployTags` likewise. */
  tags?: string[];
}

const SELF_POLICY: PullRequestPolicy = {
  build: true,
  inheritSecrets: true,
  allowConfigOverrides: true,
  requireApproval: false,
};

/** LambCI's defaults: forks of public repositories build without secrets; of private ones, not at all. */
export const DEFAULT_BUILD_POLICY: BuildPolicy = {
  branches: ['**'],
  ignoreBranches: [],
  tags: false,
  pullRequests: {
    fromSelfPublicRepo: SELF_POLICY,
    fromSelfPrivateRepo: SELF_POLICY,
    fromForkPublicRepo: {
      build: true,
      inheritSecrets: false,
      allowConfigOverrides: [...FORK_CONFIG_OVERRIDES],
      requireApproval: false,
    },
    fromForkPrivateRepo: {
      build: false,
      inheritSecrets: false,
      allowConfigOverrides: [...FORK_CONFIG_OVERRIDES],
      requireApproval: false,
    },
  },
  cancelSuperseded: true,
  maxJobs: 16,
};

/** Settings of a repository after merging built-in defaults, global and per-repo documents. */
export interface EffectiveSettings {
  build: BuildPolicy;
  config: Record<string, unknown>;
  secretEnv: Record<string, string>;
  deploy: DeploySettings;
  notifications: NotificationSettings;
  codebuild: CodeBuildSettings;
}

/** Which source a pull request is (`fork`: its head lives in another repository). */
export function pullRequestSourceOf(build: { fork?: boolean; privateRepo?: boolean }): PullRequestSource {
  return `from${build.fork ? 'Fork' : 'Self'}${build.privateRepo ? 'Private' : 'Public'}Repo`;
}

function clonePolicy(policy: PullRequestPolicy): PullRequestPolicy {
  const { allowConfigOverrides } = policy;
  return {
    ...policy,
    allowConfigOverrides: Array.isArray(allowConfigOverrides)
      ? [...allowConfigOverrides]
      : allowConfigOverrides,
  };
}

function mergePullRequests(
  current: Record<PullRequestSource, PullRequestPolicy>,
  stored: NonNullable<NonNullable<SettingsDocument['build']>['pullRequests']>,
): void {
  for (const source of PULL_REQUEST_SOURCES) {
    const shorthand = source.startsWith('fromSelf') ? stored.sameRepo : stored.forks;
    if (shorthand !== undefined) current[source].build = shorthand;
    const entry = stored[source];
    if (entry === undefined) continue;
    if (typeof entry === 'boolean') {
      current[source].build = entry;
      continue;
    }
    if (entry.build !== undefined) current[source].build = entry.build;
    if (entry.inheritSecrets !== undefined) current[source].inheritSecrets = entry.inheritSecrets;
    if (entry.requireApproval !== undefined) current[source].requireApproval = entry.requireApproval;
    if (entry.allowConfigOverrides !== undefined) {
      const allowed = entry.allowConfigOverrides;
      current[source].allowConfigOverrides = Array.isArray(allowed) ? [...allowed] : allowed;
    }
  }
}

export function mergeSettings(...documents: (SettingsDocument | undefined)[]): EffectiveSettings {
  const defaults = DEFAULT_BUILD_POLICY;
  const result: EffectiveSettings = {
    build: {
      ...defaults,
      branches: [...defaults.branches],
      ignoreBranches: [...defaults.ignoreBranches],
      pullRequests: {
        fromSelfPublicRepo: clonePolicy(defaults.pullRequests.fromSelfPublicRepo),
        fromSelfPrivateRepo: clonePolicy(defaults.pullRequests.fromSelfPrivateRepo),
        fromForkPublicRepo: clonePolicy(defaults.pullRequests.fromForkPublicRepo),
        fromForkPrivateRepo: clonePolicy(defaults.pullRequests.fromForkPrivateRepo),
      },
    },
    config: {},
    secretEnv: {},
    deploy: {},
    notifications: {},
    codebuild: {},
  };
  for (const document of documents) {
    if (!document) continue;
    const build = document.build ?? {};
    if (build.branches) result.build.branches = [...build.branches];
    if (build.ignoreBranches) result.build.ignoreBranches = [...build.ignoreBranches];
    if (build.tags !== undefined) result.build.tags = build.tags;
    if (build.cancelSuperseded !== undefined) result.build.cancelSuperseded = build.cancelSuperseded;
    if (build.maxJobs !== undefined) result.build.maxJobs = build.maxJobs;
    if (build.pullRequests) mergePullRequests(result.build.pullRequests, build.pullRequests);
    Object.assign(result.config, document.config ?? {});
    Object.assign(result.secretEnv, document.secretEnv ?? {});
    Object.assign(result.deploy, document.deploy ?? {});
    result.notifications = mergeNotifications(result.notifications, document.notifications);
    Object.assign(result.codebuild, document.codebuild ?? {});
  }
  return result;
}
