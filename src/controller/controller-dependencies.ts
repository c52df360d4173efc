/**
 * What the controller (src/controller/controller.ts, and job-controller.ts for builds of several
 * jobs) needs, as ports: made once in the composition root (src/wiring.ts) and injected.
 */
import type { RepoFileReader } from './base-config.js';
import type { CodeBuildPlatform } from '../core/placement.js';
import type { Logger } from '../core/logger.js';
import type {
  BuildSigner,
  BuildStore,
  CachePlanner,
  ControllerInvoker,
  DeliveryPolicy,
  DeployRoleGrants,
  JobStore,
  LogStore,
  NodeVersionResolver,
  RemoteRunObjects,
  RemoteRunner,
  RemoteUsage,
  RunnerInvoker,
  SettingsStore,
  StatusReporter,
} from '../core/ports.js';

export interface ControllerDependencies {
  builds: BuildStore;
  settings: Pick<SettingsStore, 'effective'>;
  statuses: StatusReporter;
  logs: LogStore;
  /** Resolves the commit's short-lived archive URL with the token (the runner never sees it). */
  archives: { resolveArchiveUrl(repo: string, sha: string): Promise<string> };
  runner: RunnerInvoker;
  logger: Logger;
  publicUrl: string;
  /** The runner's own time limit: its deadline, and the build's deadline while it runs. */
  runnerTimeoutMs: number;
  logLimitBytes: number;
  /** Bytes a build may write under its work area (the runner's default when unset). */
  diskQuotaBytes?: number;
  clock?: () => number;
  /** Retries of the final commit status; default FINAL_DELIVERY (past it, the sweeper re-sends). */
  finalDelivery?: DeliveryPolicy;
  /** How often the build record is read while the runner runs, to stop a cancelled build; default 3 s. */
  watchIntervalMs?: number;
  /** The dependency cache; builds run without one when unset. */
  cache?: CachePlanner;
  /**
   * Reads config files through the contents API: the base branch's of pull requests, and the
   * default branch's of pushes that may deploy (its deployBranches / deployTags decide).
   */
  repoFiles?: RepoFileReader;
  /** Presigns the deploy role's STS AssumeRole for the runner to redeem before the deploy step. */
  deployRoles?: DeployRoleGrants;
  /**
   * Signs what the runner may upload and download with credentials limited to the build's own
   * keys, so that nothing it holds is worth stealing; unset, the controller's own client signs.
   */
  signer?: BuildSigner;
  /** The jobs of builds of several jobs (matrix, parallel); without it every build runs as one job. */
  jobs?: JobStore;
  /** Starts the controller of one job of a build (the builder function invoking itself); with `jobs`. */
  jobInvoker?: ControllerInvoker;
  /** The exact Node.js of a matrix's `node` values, resolved once per build. */
  nodeVersions?: NodeVersionResolver;
  /**
   * How many jobs of a build run at once (the builder's concurrency: Lambda queues the rest);
   * default all. Only the build's deadline depends on it: queued jobs wait their turn.
   */
  jobConcurrency?: number;
  /** Runs on CodeBuild (`runsOn`); unset: a build set to CodeBuild ends `error` saying it is not enabled. */
  codebuild?: CodeBuildDependencies;
}

/** What CodeBuild runs need: the deployment's projects, the CodeBuild API, the bucket's objects, the minutes. */
export interface CodeBuildDependencies {
  platform: CodeBuildPlatform;
  runner: RemoteRunner;
  objects: RemoteRunObjects;
  usage: RemoteUsage;
}
