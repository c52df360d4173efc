/**
 * The builder's controller (trusted): claims a queued build, prepares what the runner needs
 * (settings, the archive URL resolved with the token, a POST form for the build's log prefix),
 * runs the runner, then records the result, writes the final log, page, badge and latest
 * pointers, and sets the final commit status. It never runs build code.
 */
import type { BuildKey, BuildRecord, StepResult } from '../core/build.js';
import { buildLabel } from '../core/build.js';
import { pageUrlOf } from '../core/links.js';
import { commitStateFor, type BuildState } from '../core/state-machine.js';
import { FINAL_DELIVERY, INTAKE_DELIVERY } from '../github/statuses.js';
import type { Logger } from '../core/logger.js';
import { TransitionRefusedError } from '../core/errors.js';
import { renderBadge } from '../pages/badge.js';
import { logPageLinksFor, renderLogPage } from '../pages/build-page.js';
import { pullRequestSourceOf, type DeploySettings } from '../core/settings.js';
import { readBaseConfig, type RepoFileReader } from './base-config.js';
import { decideDeploy, deployPrecheck, deployRulesOf } from '../core/deploy-policy.js';
import {
  type CacheAccess,
  type DeployDecision,
  type RunnerInput,
  type RunnerOutcome,
  type BuilderInvocation,
} from '../core/protocol.js';
import { RunnerAbortedError, RunnerFailedError } from './runner-invoker.js';
import {
  type CommitStatusUpdate,
  type DeliveryPolicy,
  type StatusReporter,
  type BuildStore,
  type LogStore,
  type SettingsStore,
  DeployRoleError,
  type DeployRoleGrants,
  type RunnerInvoker,
} from '../core/ports.js';
import type { BuildGrants, BuildSigner, CacheLocation, CachePlanner } from '../core/ports.js';
import { reportBuildStatus, type BuildStatusReport } from './status-reporting.js';
import { finalPageLog } from '../core/log-format.js';

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
}

/** Time after the runner's deadline for the controller to finish the log and report. */
const FINISHING_MARGIN_MS = 60_000;
/** The runner answers this much before its hard limit, so its outcome is never lost to the limit. */
const RUNNER_ANSWER_MARGIN_MS = 15_000;
const DEFAULT_WATCH_INTERVAL_MS = 3000;

export type ControllerResult =
  | { ran: true; build: BuildRecord }
  | { ran: false; reason: 'not found' | 'already claimed'; state?: BuildState };

export async function runControllerBuild(
  deps: ControllerDependencies,
  invocation: BuilderInvocation,
): Promise<ControllerResult> {
  const clock = deps.clock ?? Date.now;
  const key: BuildKey = { repo: invocation.repo, number: invocation.number };
  const label = buildLabel(key);
  const queued = await deps.builds.getBuild(key);
  if (!queued) {
    deps.logger.error('builder invoked for a build that does not exist', { build: label });
    return { ran: false, reason: 'not found' };
  }
  let build: BuildRecord;
  try {
    build = await deps.builds.transition(key, {
      from: 'queued',
      to: 'running',
      deadline: clock() + deps.runnerTimeoutMs + FINISHING_MARGIN_MS,
    });
  } catch (error) {
    if (!(error instanceof TransitionRefusedError)) throw error;
    // A retried or duplicate invocation: the build is someone else's (or already over).
    deps.logger.info('build already claimed; nothing to do', { build: label, state: error.actual });
    return { ran: false, reason: 'already claimed', ...(queued ? { state: queued.state } : {}) };
  }
  const url = pageUrlOf(build, deps.publicUrl);
  deps.logger.info('build started', { build: label, sha: build.sha });
  await reportStatus(deps, build, 'pending', `Build #${build.number} running`, url, 'running');
  await deps.logs
    .putPage(build.logPrefix, pageFor(build, '', true, url))
    .catch((error: unknown) =>
      deps.logger.warn('could not write the first log page', { build: label, error }),
    );

  const outcome = await runRunner(deps, build, url, clock);
  return { ran: true, build: await finishBuild(deps, build, outcome, url) };
}

type Ending = {
  state: RunnerOutcome['state'];
  description: string;
  steps: StepResult[];
  /** Set when the runner did not finish: the controller's note at the end of the log. */
  logNote?: string;
  /** Where the runner unpacked the source: the log's failures are annotated relative to it. */
  checkoutRoot?: string;
};

async function runRunner(
  deps: ControllerDependencies,
  build: BuildRecord,
  url: string,
  clock: () => number,
): Promise<Ending> {
  const label = buildLabel(build);
  try {
    const policy =
      build.pr !== undefined
        ? (await deps.settings.effective(build.repo)).build.pullRequests[pullRequestSourceOf(build)]
        : undefined;
    // Trusted pushes are the repository's own code; a pull request gets secrets only when its
    // source's policy says so (never, by default, for forks); an untrusted build that is no pull
    // request (a check suite's, which may be a fork's commit) never. Only then are they opened.
    const withSecrets = policy !== undefined ? policy.inheritSecrets : build.trusted;
    const settings = await deps.settings.effective(build.repo, { decryptSecrets: withSecrets });
    const secretEnv = withSecrets ? settings.secretEnv : {};
    const baseConfig =
      build.pr !== undefined && build.baseBranch !== undefined && deps.repoFiles
        ? await readBaseConfig(deps.repoFiles, build.repo, build.baseBranch)
        : undefined;
    const archiveUrl = await deps.archives.resolveArchiveUrl(build.repo, build.sha);
    const expiresInSeconds = Math.ceil((deps.runnerTimeoutMs + FINISHING_MARGIN_MS) / 1000);
    const deploy = await deployDecisionFor(deps, build, settings, expiresInSeconds);
    const startedAt = clock();
    const deadlineAt = startedAt + deps.runnerTimeoutMs - RUNNER_ANSWER_MARGIN_MS;

    const cacheLocation = await locateCache(deps, build);
    // Only trusted code may write what later builds restore, and only a key not stored yet.
    const cacheWrite = cacheLocation !== undefined && build.trusted && !cacheLocation.exists;
    const grants: BuildGrants = { write: [build.logPrefix], read: [] };
    if (cacheLocation) grants.read.push(cacheLocation.key);
    if (cacheLocation && cacheWrite) grants.write.push(cacheLocation.key);
    const signer = deps.signer ? await deps.signer.forBuild(build, grants, expiresInSeconds) : undefined;
    const logUpload = await deps.logs.presignLogUpload(build, {
      expiresInSeconds,
      maxObjectBytes: Math.max(deps.logLimitBytes, 1024 * 1024) + 64 * 1024,
      ...(signer ? { signer } : {}),
    });
    const cache: CacheAccess | undefined =
      cacheLocation && deps.cache
        ? await deps.cache.presign(cacheLocation, signer, { write: cacheWrite, expiresInSeconds })
        : undefined;
    const input: RunnerInput = {
      kind: 'run',
      build: {
        repo: build.repo,
        number: build.number,
        event: build.event,
        ref: build.ref,
        sha: build.sha,
        ...(build.branch !== undefined ? { branch: build.branch } : {}),
        ...(build.tag !== undefined ? { tag: build.tag } : {}),
        ...(build.pr !== undefined ? { pr: build.pr } : {}),
        ...(build.baseBranch !== undefined ? { baseBranch: build.baseBranch } : {}),
        ...(build.headRepo !== undefined ? { headRepo: build.headRepo } : {}),
        ...(build.defaultBranch !== undefined ? { defaultBranch: build.defaultBranch } : {}),
        ...(build.commitTitle !== undefined ? { commitTitle: build.commitTitle } : {}),
        ...(build.htmlUrl !== undefined ? { htmlUrl: build.htmlUrl } : {}),
        fork: build.fork,
        privateRepo: build.privateRepo,
        trusted: build.trusted,
        author: build.author,
        deliveryId: build.deliveryId,
        queuedAt: build.queuedAt,
        startedAt: build.startedAt ?? startedAt,
      },
      source: { archiveUrl, ...(build.cloneUrl ? { cloneUrl: build.cloneUrl } : {}) },
      settingsConfig: settings.config,
      secretEnv,
      logUpload,
      logLimitBytes: deps.logLimitBytes,
      deadlineAt,
      buildUrl: url,
      ...(deps.diskQuotaBytes !== undefined ? { diskQuotaBytes: deps.diskQuotaBytes } : {}),
      ...(baseConfig ? { baseConfig } : {}),
      ...(policy ? { pullRequestOverrides: policy.allowConfigOverrides } : {}),
      deploy,
      ...(cache ? { cache } : {}),
    };
    const outcome = await runWatched(deps, build, input);
    return {
      state: outcome.state,
      description: outcome.description,
      steps: outcome.steps,
      ...(outcome.checkoutRoot !== undefined ? { checkoutRoot: outcome.checkoutRoot } : {}),
    };
  } catch (error) {
    if (error instanceof RunnerAbortedError) {
      // Cancelled (superseded) while it ran: finishBuild keeps the state set elsewhere.
      deps.logger.info('the runner was stopped: the build ended elsewhere', {
        build: label,
        reason: error.reason,
      });
      return {
        state: 'error',
        description: error.reason,
        steps: [],
        logNote: `\n[lambkin] The build was stopped: ${error.reason}`,
      };
    }
    const timedOut = error instanceof RunnerFailedError && error.timedOut;
    const message = error instanceof Error ? error.message : String(error);
    deps.logger.error('the build did not complete normally', { build: label, error });
    return {
      state: timedOut ? 'timed_out' : 'error',
      description: timedOut
        ? `timed out after ${Math.round(deps.runnerTimeoutMs / 1000)} s (the runner's limit)`
        : `build error: ${message}`,
      steps: [],
      logNote: `\n[lambkin] The build did not complete: ${message}`,
    };
  }
}

/** A cache that cannot be located is no reason to fail the build: it runs without one. */
async function locateCache(
  deps: ControllerDependencies,
  build: BuildRecord,
): Promise<CacheLocation | undefined> {
  if (!deps.cache) return undefined;
  try {
    return await deps.cache.locate(build);
  } catch (error) {
    deps.logger.warn('could not locate the dependency cache; building without it', {
      build: buildLabel(build),
      error,
    });
    return undefined;
  }
}

/**
 * Whether the build deploys: the operator's settings and the default branch's config decide
 * (read through the contents API at the default branch, never the pushed commit's), and only
 * pushes of trusted code ever do. A build that deploys with a deploy role gets a presigned
 * AssumeRole, which the runner redeems only once install and test passed: nothing is assumed here.
 * An unreadable default branch config costs the build its deploy, not the build.
 */
async function deployDecisionFor(
  deps: ControllerDependencies,
  build: BuildRecord,
  settings: { config: Record<string, unknown>; deploy: DeploySettings },
  expiresInSeconds: number,
): Promise<DeployDecision> {
  const early = deployPrecheck(build, settings.deploy);
  if (early) return early;
  const defaultBranch = build.defaultBranch ?? '';
  if (!deps.repoFiles) {
    return {
      allowed: false,
      reason: `this builder cannot read the default branch's config (${defaultBranch})`,
    };
  }
  let decision: DeployDecision;
  try {
    const base = await readBaseConfig(deps.repoFiles, build.repo, defaultBranch, {
      hint: `Deploys are decided by the config of ${defaultBranch}: fix it there.`,
    });
    const rules = deployRulesOf({
      settingsConfig: settings.config,
      files: base.files,
      defaultBranch,
      ref: defaultBranch,
    });
    decision = decideDeploy(build, settings.deploy, rules);
  } catch (error) {
    const message = errorMessage(error);
    deps.logger.warn("could not read the default branch's deploy rules; the build will not deploy", {
      build: buildLabel(build),
      error,
    });
    return {
      allowed: false,
      reason: `the default branch's config (${defaultBranch}) could not be read, so nothing may deploy: ${message}`,
    };
  }
  const roleArn = settings.deploy.roleArn;
  if (!decision.allowed || roleArn === undefined) return decision;
  if (!deps.deployRoles) {
    throw new DeployRoleError(
      `the settings name a deploy role (${roleArn}) but this builder cannot assume roles: ` +
        'deploy it with the template, which grants sts:AssumeRole, or unset deploy.roleArn',
    );
  }
  const grant = await deps.deployRoles.grant({
    roleArn,
    sessionName: `lambkin-${build.number}-${build.repo}`,
    durationSeconds: expiresInSeconds,
    expiresInSeconds,
    ...(settings.deploy.region !== undefined ? { region: settings.deploy.region } : {}),
  });
  return { ...decision, grant };
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Runs the runner while watching the build record: when the build is no longer `running`
 * (cancelled because a newer push superseded it, or ended by the sweeper) the runner is aborted.
 */
async function runWatched(
  deps: ControllerDependencies,
  build: BuildRecord,
  input: RunnerInput,
): Promise<RunnerOutcome> {
  const abort = new AbortController();
  const interval = deps.watchIntervalMs ?? DEFAULT_WATCH_INTERVAL_MS;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const watch = async (): Promise<void> => {
    try {
      const current = await deps.builds.getBuild(build);
      if (!stopped && current && current.state !== 'running') {
        const why = current.description ?? current.state;
        abort.abort(new Error(`${current.state}: ${why}`));
        return;
      }
    } catch (error) {
      deps.logger.warn('could not read the build while it runs', { build: buildLabel(build), error });
    }
    if (!stopped) timer = setTimeout(() => void watch(), interval);
  };
  timer = setTimeout(() => void watch(), interval);
  try {
    return await deps.runner.run(input, abort.signal);
  } finally {
    stopped = true;
    clearTimeout(timer);
  }
}

async function finishBuild(
  deps: ControllerDependencies,
  running: BuildRecord,
  ending: Ending,
  url: string,
): Promise<BuildRecord> {
  const label = buildLabel(running);
  let finalText = '';
  try {
    finalText = await deps.logs.finalizeLog(running.logPrefix, ending.logNote);
  } catch (error) {
    deps.logger.error('could not assemble the final log', { build: label, error });
  }
  let build: BuildRecord;
  try {
    build = await deps.builds.transition(running, {
      from: 'running',
      to: ending.state,
      reason: ending.description,
      steps: ending.steps,
    });
  } catch (error) {
    if (!(error instanceof TransitionRefusedError)) throw error;
    // Ended meanwhile (cancelled, or swept as stuck): that state stands and was reported.
    build = (await deps.builds.getBuild(running)) ?? running;
    deps.logger.warn('the build ended elsewhere while it ran; keeping that state', {
      build: label,
      state: build.state,
    });
    await writeArtifacts(deps, build, finalText, url);
    return build;
  }
  await writeArtifacts(deps, build, finalText, url);
  await reportStatus(deps, build, commitStateFor(build.state), statusDescription(build), url, 'final', {
    log: finalText,
    ...(ending.checkoutRoot !== undefined ? { checkoutRoot: ending.checkoutRoot } : {}),
  });
  deps.logger.info('build finished', { build: label, state: build.state, description: build.description });
  return build;
}

/** The commit status that tells GitHub how an ended build ended, linking to its page. */
export function finalStatusOf(build: BuildRecord, url: string | undefined): CommitStatusUpdate {
  return {
    repo: build.repo,
    sha: build.sha,
    state: commitStateFor(build.state),
    description: statusDescription(build),
    ...(url ? { targetUrl: url } : {}),
  };
}

/** GitHub has no timed_out or cancelled: those are `error` with a description that says which. */
export function statusDescription(build: BuildRecord): string {
  const what = build.description ?? build.state;
  switch (build.state) {
    case 'success':
      return `Build #${build.number} ${what}`;
    case 'failure':
      return `Build #${build.number} failed: ${what}`;
    case 'timed_out':
      return `Build #${build.number} ${what.startsWith('timed out') ? what : `timed out: ${what}`}`;
    case 'cancelled':
      return `Build #${build.number} ${what.startsWith('cancelled') ? what : `cancelled: ${what}`}`;
    default:
      return `Build #${build.number} error: ${what}`;
  }
}

async function writeArtifacts(
  deps: ControllerDependencies,
  build: BuildRecord,
  log: string,
  url: string,
): Promise<void> {
  const label = buildLabel(build);
  const writes: Promise<void>[] = [
    deps.logs.putPage(build.logPrefix, pageFor(build, finalPageLog(log), false, url)),
  ];
  const pointer = {
    number: build.number,
    state: build.state,
    url,
    sha: build.sha,
    at: build.endedAt ?? Date.now(),
  };
  // Only the branch's own code speaks for it: an untrusted build (a check suite's, which may be a
  // fork's commit named like the branch) is no branch's latest build and sets no badge.
  if (build.pr === undefined && build.trusted) {
    writes.push(deps.logs.putLatest(build.repo, build.branch ?? build.tag, pointer));
    if (build.branch) writes.push(deps.logs.putBadge(build.repo, build.branch, renderBadge(build.state)));
  }
  const results = await Promise.allSettled(writes);
  for (const result of results) {
    if (result.status === 'rejected') {
      deps.logger.error('could not write a log page, badge or pointer', {
        build: label,
        error: result.reason,
      });
    }
  }
}

function pageFor(build: BuildRecord, log: string, running: boolean, url: string): string {
  return renderLogPage({
    build,
    log,
    running,
    links: logPageLinksFor(url, build.htmlUrl),
  });
}

async function reportStatus(
  deps: ControllerDependencies,
  build: BuildRecord,
  state: 'pending' | 'success' | 'failure' | 'error',
  description: string,
  url: string,
  phase: 'running' | 'final',
  checkDetails?: BuildStatusReport['checkDetails'],
): Promise<void> {
  // Never silent: the final status is retried within FINAL_DELIVERY; past that it is logged as an
  // error naming the build, and the sweeper re-sends it (the build stays unreported).
  await reportBuildStatus(deps, {
    build,
    status: { repo: build.repo, sha: build.sha, state, description, targetUrl: url },
    ...(checkDetails ? { checkDetails } : {}),
    reports: build.state,
    policy: phase === 'final' ? (deps.finalDelivery ?? FINAL_DELIVERY) : INTAKE_DELIVERY,
    onFailure: {
      level: phase === 'final' ? 'error' : 'warn',
      message: `could not set the ${phase} commit status`,
    },
  });
}
