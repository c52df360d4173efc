/**
 * Running the runner for a build, or for one job of a build of several: what the runner needs
 * (settings, the archive URL resolved with the token, a POST form for the log prefix, the cache,
 * the deploy decision), then the run itself, watched so that a build or job ended elsewhere stops
 * it. What it returns is how the run ended; recording it is the caller's.
 */
import type { BuildRecord, StepResult } from '../core/build.js';
import { buildLabel } from '../core/build.js';
import { pullRequestSourceOf, type DeploySettings } from '../core/settings.js';
import { readBaseConfig } from './base-config.js';
import { decideDeploy, deployPrecheck, deployRulesOf } from '../core/deploy-policy.js';
import type { DeployDecision, PhaseTiming, RunnerInput, RunnerJob, RunnerOutcome } from '../core/protocol.js';
import { RunnerAbortedError, RunnerFailedError } from './runner-invoker.js';
import {
  DeployRoleError,
  type BuildGrants,
  type CacheLocation,
  type NodeCacheLocation,
  type StartedRunner,
} from '../core/ports.js';
import type { ControllerDependencies } from './controller-dependencies.js';
import { messageOf } from '../core/errors.js';

/** The longest session of a role assumed with another role's credentials (AWS's role chaining limit). */
export const CHAINED_ROLE_MAX_SECONDS = 3600;

/** Time after the runner's deadline for the controller to finish the log and report. */
export const FINISHING_MARGIN_MS = 60_000;
/** The runner answers this much before its hard limit, so its outcome is never lost to the limit. */
const RUNNER_ANSWER_MARGIN_MS = 15_000;
const DEFAULT_WATCH_INTERVAL_MS = 3000;

export type Ending = {
  /** The run was stopped because its record was ended elsewhere (that state stands). */
  stopped?: boolean;
  state: RunnerOutcome['state'] | 'cancelled';
  description: string;
  steps: StepResult[];
  /** Set when the runner did not finish: the controller's note at the end of the log. */
  logNote?: string;
  /** Where the runner unpacked the source: the log's failures are annotated relative to it. */
  checkoutRoot?: string;
  /** Where the time went until the verdict: the controller's preparation, then the runner's phases. */
  timings: PhaseTiming[];
  /**
   * What the runner does after its verdict (the cache save, its cleanup): resolves once the
   * runner has ended, never rejects. The final status does not wait for it; the controller then
   * appends its notes and the time breakdown to the log.
   */
  rest: Promise<RunnerRest>;
};

/** The runner's phases after its verdict and its lines for the end of the log. */
export interface RunnerRest {
  timings: PhaseTiming[];
  notes: string[];
}

const NOTHING_MORE: Promise<RunnerRest> = Promise.resolve({ timings: [], notes: [] });

/**
 * The ending a runner's outcome gives: its verdict, with `lead` (what came before the runner's own
 * phases: the preparation, starting the runner) ahead of its timings.
 */
export function endingOfOutcome(
  outcome: RunnerOutcome,
  lead: PhaseTiming[],
  rest: Promise<RunnerRest>,
): Ending {
  return {
    state: outcome.state,
    description: outcome.description,
    steps: outcome.steps,
    ...(outcome.checkoutRoot !== undefined ? { checkoutRoot: outcome.checkoutRoot } : {}),
    timings: [...lead, ...(outcome.timings ?? [])],
    rest,
  };
}

/** An ending without a runner (refused before one started, or the runner failed). */
export function endingWithout(ending: Omit<Ending, 'timings' | 'rest'>, timings: PhaseTiming[] = []): Ending {
  return { ...ending, timings, rest: NOTHING_MORE };
}

export async function runRunner(
  deps: ControllerDependencies,
  build: BuildRecord,
  url: string,
  clock: () => number,
  target: RunTarget = buildTarget(deps, build),
): Promise<Ending> {
  const label = target.label;
  const preparing = clock();
  // The runner boots while its input is prepared; discarded should the preparation fail.
  const started = deps.runner.start?.(build.trusted === true);
  let handedOver = false;
  try {
    const input = await prepareInput(deps, build, url, clock, target, deps.runnerTimeoutMs);
    const invoked = clock();
    const prepare: PhaseTiming = { name: 'prepare', ms: invoked - preparing };
    handedOver = true;
    const run = await runWatched(deps, target, input, started ?? deps.runner);
    const outcome = run.verdict;
    const runnerTimings = outcome.timings ?? [];
    const runnerOwn = runnerTimings.reduce((sum, timing) => sum + timing.ms, 0);
    const lead = [
      prepare,
      // Starting the runner (sandbox, process) and what it did between its timed phases.
      { name: 'runner start', ms: Math.max(clock() - invoked - runnerOwn, 0) },
    ];
    return endingOfOutcome(
      outcome,
      lead,
      run.rest.then(
        (whole) => ({
          timings: (whole.timings ?? []).slice(runnerTimings.length),
          notes: whole.notes ?? [],
        }),
        (error: unknown) => ({
          timings: [],
          notes: [`The runner failed after its verdict: ${messageOf(error)}`],
        }),
      ),
    );
  } catch (error) {
    if (!handedOver) await started?.discard();
    if (error instanceof RunnerAbortedError) {
      // Cancelled (superseded) while it ran: finishBuild keeps the state set elsewhere.
      deps.logger.info(`the runner was stopped: the ${target.job ? 'job' : 'build'} ended elsewhere`, {
        build: label,
        reason: error.reason,
      });
      return endingWithout({
        state: target.job ? 'cancelled' : 'error',
        stopped: true,
        description: error.reason,
        steps: [],
        logNote: `\n[lambkin] The build was stopped: ${error.reason}`,
      });
    }
    const timedOut = error instanceof RunnerFailedError && error.timedOut;
    const message = messageOf(error);
    deps.logger.error('the build did not complete normally', { build: label, error });
    return endingWithout({
      state: timedOut ? 'timed_out' : 'error',
      description: timedOut
        ? `timed out after ${Math.round(deps.runnerTimeoutMs / 1000)} s (the runner's limit)`
        : `build error: ${message}`,
      steps: [],
      logNote: `\n[lambkin] The build did not complete: ${message}`,
    });
  }
}

/**
 * Everything the runner needs for one run (settings, archive URL, log form, cache, deploy decision),
 * prepared the same way wherever it runs; `runnerTimeoutMs` is the runner's limit there (Lambda's, or
 * the CodeBuild build's), which sets its deadline and how long what it is given stays valid.
 */
export async function prepareInput(
  deps: ControllerDependencies,
  build: BuildRecord,
  url: string,
  clock: () => number,
  target: RunTarget,
  runnerTimeoutMs: number,
): Promise<RunnerInput> {
  // Per-build upload credentials come from a role assumed with the builder's own role: AWS caps
  // such chained sessions at an hour, and what they sign expires with them. (A CodeBuild run longer
  // than that loses its log uploads past the hour: docs/codebuild.md.)
  const expiresInSeconds = Math.min(
    Math.ceil((runnerTimeoutMs + FINISHING_MARGIN_MS) / 1000),
    deps.signer ? CHAINED_ROLE_MAX_SECONDS : Number.MAX_SAFE_INTEGER,
  );
  const reading = readSettings(deps, build);
  // Independent look-ups (GitHub, the stores), side by side; the deploy decision needs the settings.
  const repoFiles = deps.repoFiles;
  const [{ policy, settings }, baseConfig, archiveUrl, deploy, cacheLocation, nodeLocation] =
    await Promise.all([
      reading,
      build.pr !== undefined && build.baseBranch !== undefined && repoFiles
        ? readBaseConfig(repoFiles, build.repo, build.baseBranch)
        : undefined,
      deps.archives.resolveArchiveUrl(build.repo, build.sha),
      reading.then(({ settings }) => deployDecisionFor(deps, build, settings, expiresInSeconds)),
      locateCache(deps, build, target.job?.node?.version),
      // The job's Node.js tarball, kept beside the dependency caches.
      locateNodeCache(deps, target),
    ]);
  const secretEnv = settings.secretEnv;
  const startedAt = clock();
  const deadlineAt = startedAt + runnerTimeoutMs - RUNNER_ANSWER_MARGIN_MS;

  // Only trusted code may write what later builds restore, and only a key not stored yet.
  const cacheWrite = cacheLocation !== undefined && build.trusted && !cacheLocation.exists;
  const grants: BuildGrants = { write: [target.logPrefix], read: [] };
  if (cacheLocation) grants.read.push(cacheLocation.key);
  if (cacheLocation && cacheWrite) grants.write.push(cacheLocation.key);
  // The job's Node.js tarball: read by every build, written (once, after the runner verified it
  // against the registry's integrity) by trusted ones only.
  const nodeWrite = nodeLocation !== undefined && build.trusted && !nodeLocation.exists;
  if (nodeLocation) grants.read.push(nodeLocation.key);
  if (nodeLocation && nodeWrite) grants.write.push(nodeLocation.key);
  const signer = deps.signer ? await deps.signer.forBuild(build, grants, expiresInSeconds) : undefined;
  const cacheStore = deps.cache;
  const [logUpload, cache, nodeCache] = await Promise.all([
    deps.logs.presignLogUpload(
      { ...build, logPrefix: target.logPrefix },
      {
        expiresInSeconds,
        maxObjectBytes: Math.max(deps.logLimitBytes, 1024 * 1024) + 64 * 1024,
        ...(signer ? { signer } : {}),
      },
    ),
    cacheLocation && cacheStore
      ? cacheStore.presign(cacheLocation, signer, { write: cacheWrite, expiresInSeconds })
      : undefined,
    nodeLocation && cacheStore?.presignNode
      ? cacheStore
          .presignNode(nodeLocation, signer, { write: nodeWrite, expiresInSeconds })
          .catch((error: unknown) => {
            deps.logger.warn('could not presign the Node.js cache; the job downloads it', {
              build: target.label,
              error,
            });
            return undefined;
          })
      : undefined,
  ]);
  const job =
    target.job?.node && nodeCache
      ? { ...target.job, node: { ...target.job.node, cache: nodeCache } }
      : target.job;
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
    ...(job ? { job } : {}),
  };
  return input;
}

/**
 * The settings the build runs with, secrets opened only for builds that get them: trusted pushes
 * are the repository's own code; a pull request gets secrets only when its source's policy says so
 * (never, by default, for forks); an untrusted build that is no pull request (a check suite's,
 * which may be a fork's commit) never.
 */
async function readSettings(deps: ControllerDependencies, build: BuildRecord) {
  const policy =
    build.pr !== undefined
      ? (await deps.settings.effective(build.repo)).build.pullRequests[pullRequestSourceOf(build)]
      : undefined;
  const withSecrets = policy !== undefined ? policy.inheritSecrets : build.trusted;
  const settings = await deps.settings.effective(build.repo, { decryptSecrets: withSecrets });
  return { policy, settings: { ...settings, secretEnv: withSecrets ? settings.secretEnv : {} } };
}

/** A cache that cannot be located is no reason to fail the build: it runs without one. */
async function locateCache(
  deps: ControllerDependencies,
  build: BuildRecord,
  nodeVersion: string | undefined,
): Promise<CacheLocation | undefined> {
  if (!deps.cache) return undefined;
  try {
    return await deps.cache.locate(build, nodeVersion !== undefined ? { nodeVersion } : {});
  } catch (error) {
    deps.logger.warn('could not locate the dependency cache; building without it', {
      build: buildLabel(build),
      error,
    });
    return undefined;
  }
}

/** Where the job's Node.js tarball is kept; none without a job Node.js or when it cannot be located. */
async function locateNodeCache(
  deps: ControllerDependencies,
  target: RunTarget,
): Promise<NodeCacheLocation | undefined> {
  const node = target.job?.node;
  if (!node || !deps.cache?.locateNode) return undefined;
  try {
    return await deps.cache.locateNode(node);
  } catch (error) {
    deps.logger.warn('could not locate the Node.js cache; the job downloads it', {
      build: target.label,
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
    const message = messageOf(error);
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
    // A role's default longest session: a CodeBuild run's grant may be redeemed late, not held long.
    durationSeconds: Math.min(expiresInSeconds, 3600),
    expiresInSeconds,
    ...(settings.deploy.region !== undefined ? { region: settings.deploy.region } : {}),
  });
  return { ...decision, grant };
}

/**
 * Runs the runner while watching its build (or job) record: when it is no longer `running`
 * (cancelled because a newer push superseded it, a failed job's failFast, or ended by the
 * sweeper) the runner is aborted. Answers at the runner's verdict; `rest` is the whole run, which
 * is no longer watched then (the controller is about to end the record itself).
 */
async function runWatched(
  deps: ControllerDependencies,
  target: RunTarget,
  input: RunnerInput,
  runner: Pick<StartedRunner, 'run'>,
): Promise<{ verdict: RunnerOutcome; rest: Promise<RunnerOutcome> }> {
  const abort = new AbortController();
  const interval = deps.watchIntervalMs ?? DEFAULT_WATCH_INTERVAL_MS;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const stopWatching = (): void => {
    stopped = true;
    clearTimeout(timer);
  };
  const watch = async (): Promise<void> => {
    try {
      const reason = await target.stopReason();
      if (!stopped && reason !== undefined) {
        abort.abort(new Error(reason));
        return;
      }
    } catch (error) {
      deps.logger.warn('could not read the build while it runs', { build: target.label, error });
    }
    if (!stopped) timer = setTimeout(() => void watch(), interval);
  };
  timer = setTimeout(() => void watch(), interval);
  let announced: (verdict: RunnerOutcome) => void = () => undefined;
  const verdict = new Promise<RunnerOutcome>((resolve) => (announced = resolve));
  const rest = runner
    .run(input, abort.signal, (early) => {
      stopWatching();
      announced(early);
    })
    .finally(stopWatching);
  // A runner that announces nothing early (the Lambda runner) answers its verdict at its end.
  return { verdict: await Promise.race([verdict, rest]), rest };
}

/** What one run is for: the build itself, or one of its jobs. */
export interface RunTarget {
  /** For the controller's log: `owner/repo#7` or `owner/repo#7/node-22`. */
  label: string;
  /** Where the runner writes the log. */
  logPrefix: string;
  job?: RunnerJob;
  /** Why the run must stop now (its record is no longer running), or undefined to go on. */
  stopReason: () => Promise<string | undefined>;
}

/** A build of one job: its own log, stopped once the build is no longer running. */
export function buildTarget(deps: ControllerDependencies, build: BuildRecord): RunTarget {
  return {
    label: buildLabel(build),
    logPrefix: build.logPrefix,
    stopReason: async () => {
      const current = await deps.builds.getBuild(build);
      return current && current.state !== 'running'
        ? `${current.state}: ${current.description ?? current.state}`
        : undefined;
    },
  };
}
