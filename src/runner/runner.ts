/**
 * The runner: everything that touches the build's code. It holds no credential of value: it gets
 * a short-lived archive URL, a POST form for its own log prefix, (trusted builds only) the
 * repository's secret variables and, for a push the controller lets deploy with a role, a presigned
 * STS AssumeRole it sends only after install and test passed (a bearer grant until the build's
 * deadline: see the known gap in tests/security/deploy.test.ts), and returns the outcome. Steps get an environment built from
 * scratch, never a copy of the runner's own.
 */
import { mkdir, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { StepResult } from '../core/build.js';
import {
  LAMBKIN_FILE,
  RepoConfigError,
  buildVariables,
  checkNodeVersion,
  isReservedEnvName,
  readRepoConfig,
  resolveBuildConfig,
  validateRepoConfig,
  validateSettingsConfig,
  type ResolvedBuildConfig,
} from '../core/repo-config.js';
import { LambkinError, messageOf } from '../core/errors.js';
import { MATRIX_ENV_PREFIX, SHARD_INDEX_ENV, SHARD_TOTAL_ENV } from '../core/jobs.js';
import { DEFAULT_NODE_MAX_BYTES, installNodeWithCache, type InstalledNode } from './node-runtime.js';
import {
  INSTALLED_PACKAGES_PATH,
  cachedPaths,
  checkoutLockfile,
  restoreBuildCache,
  restoreCache,
  saveBuildCache,
  startBuildCacheSnapshot,
  type CacheSnapshot,
  type RestoreResult,
} from './cache.js';
import { handBackDependencies, markDependencies, takeKeptDependencies } from './kept-dependencies.js';
import { SourceFetchError } from './source-errors.js';
import {
  formatBuildSummary,
  formatDuration,
  formatStepFooter,
  formatStepHeader,
  formatMiB,
} from '../core/log-format.js';
import { logPageLinksFor, renderLogPage } from '../pages/build-page.js';
import { createLogStream } from './log/stream.js';
import { LineAwareWriter } from './log/line-writer.js';
import { PresignedUploader } from './log/uploader.js';
import type { PhaseTiming, RunnerInput, RunnerJob, RunnerOutcome, RunnerState } from '../core/protocol.js';
import { maskSecrets } from '../core/log-mask.js';
import { fetchArchive, cloneCommit } from './source.js';
import { layerEnvironment } from './runtime-layer.js';
import { findPrlimit, runStep } from './steps.js';
import { sandboxNotice, stepSandboxFor } from './step-sandbox.js';
import { planSteps } from '../core/step-plan.js';
import { ignoredDeployRules } from '../core/deploy-policy.js';
import { redeemDeployGrant } from './deploy-credentials.js';
import type { DeployCredentials } from '../core/protocol.js';
import {
  createWorkspace,
  ensureNodeCache,
  folderSize,
  removeFolder,
  sweepStaleWorkspaces,
  type Workspace,
} from './workspace.js';

export interface RunnerOptions {
  /** Parent of all work areas; `/tmp/lambkin` on Lambda. */
  workRoot?: string;
  /** PATH of the build steps (the runtime's, plus the layer's bin). */
  path?: string;
  /** Run steps as this user (the local stack, when started as root). */
  stepUser?: { uid: number; gid: number };
  /** How often the work area's size is measured while a step runs. Default 1000 ms. */
  quotaCheckIntervalMs?: number;
  /**
   * Aborted when the runner is told to stop (its process got SIGTERM: the build was cancelled):
   * the running step's process group is killed and no further step starts.
   */
  stop?: AbortSignal;
  clock?: () => number;
  /**
   * Told the verdict as soon as the steps ended and the log is closed, before the work the status
   * need not wait for (the cache save, the work area's removal); runBuild then returns the whole
   * outcome once that is done too. Without it the outcome is only returned, at the end.
   */
  onVerdict?: (verdict: RunnerOutcome) => void;
}

/** The work area's default quota (Lambda's /tmp can be up to 10 GiB). */
export const DEFAULT_DISK_QUOTA_BYTES = 8 * 1024 ** 3;
/** The steps' default RLIMIT_NPROC. */
export const DEFAULT_MAX_PROCESSES = 256;
const DEFAULT_QUOTA_CHECK_MS = 1000;
/** The pause between two measurements is at least this many times as long as one took. */
const QUOTA_CHECK_SPACING = 10;

/** The build wrote more than its quota under its work area. */
export class DiskQuotaExceededError extends LambkinError {
  constructor(readonly quotaBytes: number) {
    super(
      'DISK_QUOTA_EXCEEDED',
      `disk quota exceeded: the build wrote more than ${formatMiB(quotaBytes)} MiB under its work area`,
    );
  }
}

export const DEFAULT_WORK_ROOT = join(tmpdir(), 'lambkin');
const DEFAULT_PATH = '/usr/local/bin:/usr/bin:/bin';
/** The longest the runner waits for STS to answer the deploy role's grant. */
const REDEEM_TIMEOUT_MS = 30_000;
/** Kept free before the runner's deadline to close the log and answer. */
const CLOSING_MARGIN_MS = 5_000;

interface Verdict {
  state: RunnerState;
  description: string;
}

/** What runSteps leaves for after the verdict: the cache save of a build whose every step passed. */
type Afterwards = (notes: string[]) => Promise<void>;

/** Times the build's phases in order, for the breakdown at the end of the log. */
class PhaseTimer {
  readonly timings: PhaseTiming[] = [];
  constructor(private readonly clock: () => number) {}

  async time<T>(name: string, work: () => Promise<T>): Promise<T> {
    const started = this.clock();
    try {
      return await work();
    } finally {
      this.add(name, this.clock() - started);
    }
  }

  /** Adds to the phase of this name if it was timed before (a check after every step). */
  add(name: string, ms: number): void {
    const earlier = this.timings.find((timing) => timing.name === name);
    if (earlier) earlier.ms += ms;
    else this.timings.push({ name, ms });
  }

  total(): number {
    return this.timings.reduce((sum, timing) => sum + timing.ms, 0);
  }
}

export async function runBuild(input: RunnerInput, options: RunnerOptions = {}): Promise<RunnerOutcome> {
  const clock = options.clock ?? Date.now;
  const started = clock();
  const { build } = input;
  const log = createLogStream({
    uploader: new PresignedUploader(input.logUpload),
    logPrefix: input.logUpload.keyPrefix,
    limitBytes: input.logLimitBytes,
    secrets: Object.values(input.secretEnv),
    renderPage: (text) =>
      renderLogPage({
        build: { ...build, state: 'running' },
        log: text,
        running: true,
        links: logPageLinksFor(input.buildUrl, build.htmlUrl),
      }),
    onError: (error) => console.error(`log upload failed: ${error.message}`),
  });
  const writer = new LineAwareWriter(log);
  // What the log masks, for the lines written after it closed (the cache save's).
  const secrets = Object.values(input.secretEnv);
  const steps: StepResult[] = [];
  const phases = new PhaseTimer(clock);
  const workRoot = options.workRoot ?? DEFAULT_WORK_ROOT;
  let workspace: Workspace | undefined;
  let verdict: Verdict;
  let afterwards: Afterwards | undefined;
  let early: EarlyRestore | undefined;
  try {
    workspace = await phases.time('work area', async () => {
      // Stale work folders go before the build (they hold disk space it may need); the npm caches'
      // size is measured after the verdict, where it costs the build nothing.
      await sweepStaleWorkspaces(workRoot, { maxNpmCacheBytes: Infinity });
      return createWorkspace(workRoot, { trusted: build.trusted, label: `${build.number}` });
    });
    const checkout = workspace.checkout;
    writer.line(
      `Lambkin build #${build.number} of ${build.repo} at ${build.sha}` +
        (build.pr !== undefined ? ` (pull request #${build.pr}${build.fork ? ', from a fork' : ''})` : '') +
        (build.branch ? ` on ${build.branch}` : build.tag ? ` for tag ${build.tag}` : ''),
    );
    if (input.job) writer.line(`Job ${input.job.title}`);
    const deadline = input.deadlineAt - CLOSING_MARGIN_MS;
    early = startEarlyRestore(input, workspace, deadline, clock, options.stop);
    const fetchStarted = clock();
    const fetching = phases.time('fetch', () =>
      fetchArchive(input.source.archiveUrl, checkout, {
        timeoutMs: Math.max(deadline - clock(), 1),
        // The unpacked source counts against the work area's quota.
        limits: { maxBytes: diskQuotaOf(input) },
      }),
    );
    const fetched = await fetching;
    writer.line(`Fetched the source: ${fetched.files} files in ${formatDuration(clock() - fetchStarted)}`);

    const { repoConfig, config } = await phases.time('config', async () => {
      const repoConfig = await readRepoConfig(checkout);
      const config = resolveBuildConfig({
        settingsConfig: input.settingsConfig,
        repo: repoConfig,
        build,
        ...(input.baseConfig ? { base: input.baseConfig } : {}),
        ...(input.pullRequestOverrides !== undefined
          ? { pullRequestOverrides: input.pullRequestOverrides }
          : {}),
      });
      return { repoConfig, config };
    });
    writer.line(`Config: ${config.source.join(' < ')}`);
    for (const warning of config.warnings) writer.line(`Warning: ${warning}`);
    // The controller fans a matrix out into jobs; one that could not (it reads no config) runs it whole.
    if (!input.job && (config.matrix !== undefined || (config.parallel ?? 1) > 1)) {
      writer.line(
        'Warning: "matrix" and "parallel" are not run as jobs by this builder: the build runs as one job',
      );
    }
    if (build.event === 'push') {
      const ignored = ignoredDeployRules(repoConfig.files, input.deploy);
      if (ignored) writer.line(`Note: ${ignored}`);
    }
    if (!config.build) {
      verdict = {
        state: 'success',
        description: `Skipped: ${config.skipReason ?? 'build: false in the config'}`,
      };
      writer.line(verdict.description);
    } else {
      if (config.git.depth !== undefined) {
        const cloned = workspace;
        await phases.time('clone', () => replaceWithClone(input, cloned, config, deadline, clock, writer));
      }
      // A job with a Node.js of its own runs its steps with that one, not the runner's.
      checkNodeVersion(config.node, input.job?.node?.version);
      const buildDeadline = Math.min(deadline, started + config.timeoutSeconds * 1000);
      // A `timeout` past the runner's own limit (Lambda's 840 s) is cut there: its message says the real one.
      const cut = buildDeadline < started + config.timeoutSeconds * 1000;
      const ran = await runSteps(
        input,
        cut
          ? { ...config, timeoutSeconds: Math.max(1, Math.round((buildDeadline - started) / 1000)) }
          : config,
        workspace,
        buildDeadline,
        options,
        writer,
        { steps, phases, early },
        clock,
        (more) => {
          secrets.push(...more);
          log.addSecrets(more);
        },
      );
      verdict = ran.verdict;
      afterwards = ran.afterwards;
    }
  } catch (error) {
    verdict = verdictForError(error);
    writer.line(`\nError: ${error instanceof RepoConfigError ? error.detail : verdict.description}`);
  }
  writer.raw(
    formatBuildSummary({
      state: verdict.state,
      durationMs: clock() - started,
      steps,
      description: verdict.description,
    }),
  );
  // What the phases above leave out (the log's first lines, the steps' environment, the summary).
  phases.add('runner, other', clock() - started - phases.total());
  const summary = await phases.time('log upload', () => log.close());
  const outcome: RunnerOutcome = {
    kind: 'outcome',
    state: verdict.state,
    description: verdict.description,
    steps,
    log: summary,
    ...(workspace ? { checkoutRoot: workspace.checkout } : {}),
    timings: [...phases.timings],
  };
  options.onVerdict?.(outcome);

  // After the verdict: nothing here changes how the build ended.
  const notes: string[] = [];
  if (afterwards) {
    const save = afterwards;
    await phases
      .time('cache save', () => save(notes))
      .catch((error: unknown) => {
        notes.push(`Warning: cache: the save failed: ${messageOf(error)}. The build is not affected.`);
      });
  }
  await phases.time('cleanup', async () => {
    early?.abort.abort();
    await early?.result.catch(() => undefined);
    await workspace?.dispose();
    await sweepStaleWorkspaces(workRoot).catch((error: unknown) =>
      console.error(`could not sweep ${workRoot}: ${messageOf(error)}`),
    );
  });
  return { ...outcome, timings: phases.timings, notes: notes.map((note) => maskSecrets(note, secrets)) };
}

async function runSteps(
  input: RunnerInput,
  config: ResolvedBuildConfig,
  workspace: Workspace,
  deadline: number,
  options: RunnerOptions,
  writer: LineAwareWriter,
  { steps, phases, early }: { steps: StepResult[]; phases: PhaseTimer; early?: EarlyRestore | undefined },
  clock: () => number,
  mask: (secrets: string[]) => void,
): Promise<{ verdict: Verdict; afterwards?: Afterwards }> {
  const { build, job } = input;
  const node = job?.node
    ? await phases.time('node.js', () => installJobNode(job, workspace, deadline, options, writer, clock))
    : undefined;
  const basePath = options.path ?? process.env.PATH ?? DEFAULT_PATH;
  const jobEnv = job ? jobVariables(job.env) : { env: {}, dropped: [] };
  if (jobEnv.dropped.length > 0) {
    writer.line(
      `Warning: the job's variables ${jobEnv.dropped.join(', ')} are ignored: Lambkin sets them for every build.`,
    );
  }
  const env: Record<string, string> = {
    PATH: node ? `${node.binDir}:${basePath}` : basePath,
    LANG: 'C.UTF-8',
    HOME: workspace.home,
    TMPDIR: workspace.tmp,
    npm_config_cache: workspace.npmCache,
    npm_config_update_notifier: 'false',
    npm_config_fund: 'false',
    ...layerEnvironment(),
    ...config.env,
    // A matrix value replaces a config variable of the same name; build variables win over both.
    ...jobEnv.env,
    ...buildVariables(build, { logUrl: input.buildUrl }),
    // The controller gives secrets only to builds whose policy lets them have them.
    ...(config.secrets ? input.secretEnv : {}),
  };
  const quotaBytes = diskQuotaOf(input);
  const maxProcesses = input.maxProcesses ?? DEFAULT_MAX_PROCESSES;
  const canLimitProcesses = findPrlimit(env.PATH) !== undefined;
  if (!canLimitProcesses) {
    writer.line('Warning: prlimit (util-linux) was not found: steps run without a limit on processes.');
  }
  const sandbox = stepSandboxFor({
    tmp: workspace.tmp,
    keep: [workspace.root, workspace.npmCache, ...(node ? [workspace.nodeCache] : [])],
  });
  const notice = sandboxNotice();
  if (notice) writer.line(notice);
  // Restored before the install step; on an exact hit the default install has nothing to do.
  const cache = await phases.time('cache restore', async () =>
    restoreBuildCache(
      input.cache,
      config,
      workspace.checkout,
      {
        maxUnpackedBytes: quotaBytes,
        timeoutMs: deadline - clock(),
        ...(options.stop ? { signal: options.stop } : {}),
      },
      (line) => writer.line(line),
      node?.version,
      early ? await adoptEarlyRestore(early, input, config, workspace.checkout) : undefined,
    ),
  );
  // What a passed build may hand back is node_modules as the install (or this restore) left it.
  let installed = markDependencies(workspace.checkout, clock());
  const plan = planSteps(config, input.deploy, { skipInstall: cache.skipInstall });
  if (plan.deploySkipped) writer.line(`Deploy skipped: ${plan.deploySkipped}`);
  let deployEnv: Record<string, string> = {};

  let announcedDeploy = false;
  let carried: CarriedQuotaCheck | undefined;
  let snapshot: CacheSnapshot | undefined;
  let passed = false;
  try {
    for (const [index, { phase, name, command }] of plan.steps.entries()) {
      if (phase === 'deploy' && !announcedDeploy) {
        announcedDeploy = true;
        writer.line(`Deploy allowed: ${input.deploy?.reason ?? 'by the controller'}`);
        const grant = input.deploy?.grant;
        if (grant) {
          // Only now, with install and test passed: the role is assumed for the deploy step alone.
          try {
            const credentials = await redeemDeployGrant(grant, {
              timeoutMs: Math.min(REDEEM_TIMEOUT_MS, Math.max(deadline - clock(), 1)),
              ...(options.stop ? { signal: options.stop } : {}),
              clock,
            });
            mask([credentials.accessKeyId, credentials.secretAccessKey, credentials.sessionToken]);
            deployEnv = deployEnvironment(credentials);
          } catch (error) {
            const message = messageOf(error);
            writer.line(`Error: ${message}`);
            return { verdict: { state: 'error', description: message } };
          }
        }
        writer.line(
          grant
            ? `Deploy runs as the role ${grant.roleArn}`
            : 'Deploy runs without AWS credentials (no deploy.roleArn in the settings)',
        );
      }
      const remaining = deadline - clock();
      if (remaining <= 0) {
        if (carried && (await carried.exceeded())) return carried.verdict(undefined);
        return {
          verdict: {
            state: 'timed_out',
            description: `timed out after ${config.timeoutSeconds} s before ${name}`,
          },
        };
      }
      writer.raw(formatStepHeader({ name, command }));
      const quota = watchDiskQuota(workspace.root, quotaBytes, options.quotaCheckIntervalMs);
      // The last step's check, when it found the quota exceeded, stops this step too.
      const previous = carried;
      carried = undefined;
      const stops = [
        quota.signal,
        ...(previous ? [previous.signal] : []),
        ...(options.stop ? [options.stop] : []),
      ];
      let run: Awaited<ReturnType<typeof runStep>>;
      try {
        run = await runStep(
          {
            name,
            command,
            cwd: workspace.checkout,
            env: phase === 'deploy' ? { ...env, ...deployEnv } : env,
            timeoutMs: remaining,
          },
          {
            onOutput: (chunk) => writer.output(chunk),
            signal: stops.length === 1 ? quota.signal : AbortSignal.any(stops),
            ...(canLimitProcesses ? { maxProcesses, maxFileBytes: quotaBytes } : {}),
            ...(options.stepUser ?? {}),
            ...(sandbox ? { sandbox } : {}),
          },
        );
      } finally {
        await quota.stop();
      }
      phases.add(`step ${name}`, run.durationMs);
      const recordStep = () => {
        const { exitCode, durationMs, timedOut } = run;
        writer.raw(formatStepFooter({ name, exitCode, durationMs, timedOut }));
        steps.push({ name, exitCode, durationMs });
      };
      if (previous && (await previous.exceeded())) {
        recordStep();
        return previous.verdict(name);
      }
      // Once more after the step: what it wrote since the last look counts too. After a step that
      // passed with more steps to come, the next one starts while this is measured (a big
      // node_modules takes a few hundred ms to walk) and is stopped when it finds the quota
      // exceeded; never before a deploy step, which must not start for such a build.
      const next = plan.steps[index + 1];
      const overlap =
        next !== undefined &&
        next.phase !== 'deploy' &&
        run.exitCode === 0 &&
        !run.timedOut &&
        !quota.exceeded();
      if (overlap) carried = carryQuotaCheck(name, workspace.root, quotaBytes, writer);
      const exceeded =
        !overlap &&
        (quota.exceeded() ||
          (await phases.time('quota check', () => folderSize(workspace.root))) > quotaBytes);
      recordStep();
      // Told to stop (the build was cancelled): the step did not fail, it was stopped.
      if (options.stop?.aborted && run.exitCode !== 0) {
        return {
          verdict: { state: 'error', description: `${name} was stopped: ${messageOf(options.stop.reason)}` },
        };
      }
      if (exceeded) {
        const error = new DiskQuotaExceededError(quotaBytes);
        writer.line(`Error: ${error.message}; ${name} was stopped.`);
        return { verdict: { state: 'error', description: `${error.message} (in ${name})` } };
      }
      if (run.timedOut) {
        return {
          verdict: {
            state: 'timed_out',
            description: `timed out after ${config.timeoutSeconds} s in ${name}`,
          },
        };
      }
      if (run.exitCode !== 0) {
        const how = run.exitCode === null ? `killed by ${run.signal ?? 'a signal'}` : `exit ${run.exitCode}`;
        return { verdict: { state: 'failure', description: `${name} failed (${how}): ${command}` } };
      }
      if (phase === 'install') installed = markDependencies(workspace.checkout, clock());
      // The install is over and more steps follow: what a save would store is packed while they run.
      if (phase === 'install' && next && next.phase !== 'install') {
        snapshot = startBuildCacheSnapshot(
          input.cache,
          config,
          cache,
          { checkout: workspace.checkout, tmp: workspace.runnerTmp },
          {
            since: clock(),
            timeoutMs: Math.max(deadline - clock(), 1),
            ...(options.stop ? { signal: options.stop } : {}),
          },
          node?.version,
        );
      }
    }
    passed = true;
  } finally {
    // A build that did not pass saves nothing: its snapshot goes.
    if (!passed) await snapshot?.discard();
  }
  const total = steps.reduce((sum, step) => sum + step.durationMs, 0);
  return {
    verdict: { state: 'success', description: `passed in ${formatDuration(total)}` },
    // Only a build whose every step passed saves what a later build restores; after the verdict,
    // so the final status never waits for it. Within the build's time limit, like the steps: a
    // save that fails or hangs only costs the next build its cache.
    afterwards: async (notes) => {
      await saveBuildCache(
        input.cache,
        config,
        cache,
        { checkout: workspace.checkout, tmp: workspace.runnerTmp },
        {
          timeoutMs: Math.max(deadline - clock(), 1),
          ...(options.stop ? { signal: options.stop } : {}),
        },
        (line) => notes.push(line),
        node?.version,
        snapshot,
      );
      // Where the controller keeps trees, the next build of the key moves this one in whole.
      if (input.cache?.keepTree && workspace.trusted && config.cache.enabled && !node) {
        const notKept = await handBackDependencies(input.cache, {
          checkout: workspace.checkout,
          kept: workspace.keptDependencies,
          mark: installed,
          extraPaths: config.cache.paths,
        }).catch((error: unknown) => messageOf(error));
        notes.push(
          notKept === undefined
            ? 'Cache: node_modules handed back, kept on this machine for the next build of this key'
            : `Cache: node_modules not kept on this machine: ${notKept}`,
        );
      }
    },
  };
}

/** The lockfile a restore beside the fetch assumes (npm's usual one); with another it is a miss. */
const USUAL_LOCKFILE = 'package-lock.json';

interface EarlyRestore {
  /** A folder of the work area beside the checkout, which the fetch never writes. */
  staging: string;
  result: Promise<RestoreResult>;
  abort: AbortController;
}

/**
 * Starts restoring the dependency cache while the source is fetched: the controller derived its
 * key from the commit's lockfile, so nothing from the source is needed to start the download. For
 * the usual case only (`node_modules` of a package-lock.json, on the runner's own Node.js), into a
 * folder beside the checkout; adoptEarlyRestore moves it in once the config and the checkout say
 * it is this build's, and otherwise the cache is restored after the fetch as it always was.
 */
function startEarlyRestore(
  input: RunnerInput,
  workspace: Workspace,
  deadline: number,
  clock: () => number,
  stop: AbortSignal | undefined,
): EarlyRestore | undefined {
  const access = input.cache;
  if (!access || access.stored === false || input.job?.node) return undefined;
  const staging = join(workspace.root, 'cache-staging');
  const abort = new AbortController();
  const result = mkdir(staging, { mode: 0o700 }).then(
    async () =>
      // The tree this machine kept for the key, when the controller lent it: moved, not unpacked.
      (workspace.trusted
        ? await takeKeptDependencies(access, workspace.keptDependencies, staging)
        : undefined) ??
      restoreCache(
        access,
        { checkout: staging, extraPaths: [], lockfile: { path: USUAL_LOCKFILE, sha: access.lockfileSha } },
        {
          maxUnpackedBytes: diskQuotaOf(input),
          timeoutMs: Math.max(deadline - clock(), 1),
          signal: stop ? AbortSignal.any([abort.signal, stop]) : abort.signal,
        },
      ),
  );
  result.catch(() => undefined); // awaited by adoptEarlyRestore or at cleanup
  return { staging, result, abort };
}

/**
 * The early restore when its assumptions hold for this build (its config caches `node_modules`
 * only, its checkout's package-lock.json is the key's), a hit moved into the checkout; undefined
 * when they do not (or the move is refused), and the cache is restored after the fetch instead.
 */
async function adoptEarlyRestore(
  early: EarlyRestore,
  input: RunnerInput,
  config: ResolvedBuildConfig,
  checkout: string,
): Promise<RestoreResult | undefined> {
  const result = await early.result.catch(() => undefined);
  try {
    if (!result || !config.cache.enabled) return undefined;
    const paths = cachedPaths(config.cache.paths);
    if (paths.length !== 1 || paths[0] !== INSTALLED_PACKAGES_PATH) return undefined;
    const lockfile = await checkoutLockfile(checkout);
    if (lockfile?.path !== USUAL_LOCKFILE || lockfile.sha !== input.cache?.lockfileSha) return undefined;
    // Refused when the source holds a node_modules of its own: the usual restore then decides.
    if (result.hit)
      await rename(join(early.staging, INSTALLED_PACKAGES_PATH), join(checkout, INSTALLED_PACKAGES_PATH));
    return result;
  } catch {
    return undefined;
  } finally {
    // What was not adopted counts against the work area's quota: gone before the steps.
    await removeFolder(early.staging).catch(() => undefined);
  }
}

/** Job variables a job may set although their prefix is reserved: they describe the job itself. */
const JOB_OWN_PREFIXES = [MATRIX_ENV_PREFIX, SHARD_INDEX_ENV, SHARD_TOTAL_ENV];

/**
 * The job's variables its steps get: every one except the reserved build variables (CI, HOME,
 * PATH, LAMBKIN_*, …), which the runner sets and a job cannot replace; LAMBKIN_MATRIX_* and
 * LAMBKIN_SHARD_INDEX / LAMBKIN_SHARD_TOTAL come from the job and are kept. `dropped` names the rest.
 */
export function jobVariables(env: Record<string, string>): {
  env: Record<string, string>;
  dropped: string[];
} {
  const kept: Record<string, string> = {};
  const dropped: string[] = [];
  for (const [name, value] of Object.entries(env)) {
    const own = JOB_OWN_PREFIXES.some((prefix) =>
      prefix === MATRIX_ENV_PREFIX ? name.startsWith(prefix) && name.length > prefix.length : name === prefix,
    );
    if ((!own && isReservedEnvName(name)) || typeof value !== 'string' || name === '' || name.includes('=')) {
      dropped.push(name);
    } else {
      kept[name] = value;
    }
  }
  return { env: kept, dropped };
}

/**
 * Before the first step: the job's Node.js, from the shared node cache, the build cache's storage
 * (`job.node.cache`: presigned URLs only) or downloaded from the registry, always checked against
 * its integrity. A trusted build uploads a verified download to the build cache when the controller
 * gave it a PUT. Only a failed registry download (NodeRuntimeError) ends the build `error`
 * (verdictForError); the build cache never does.
 */
async function installJobNode(
  job: RunnerJob,
  workspace: Workspace,
  deadline: number,
  options: RunnerOptions,
  writer: LineAwareWriter,
  clock: () => number,
): Promise<InstalledNode | undefined> {
  const wanted = job.node;
  if (!wanted) return undefined;
  const { cache, ...resolved } = wanted;
  return installNodeWithCache(resolved, {
    cacheDir: await ensureNodeCache(workspace),
    timeoutMs: Math.max(deadline - clock(), 1),
    maxBytes: DEFAULT_NODE_MAX_BYTES,
    ...(cache ? { cache } : {}),
    log: (line) => writer.line(line),
    now: clock,
    ...(options.stop ? { signal: options.stop } : {}),
  });
}

function diskQuotaOf(input: RunnerInput): number {
  const quota = input.diskQuotaBytes;
  return quota !== undefined && Number.isFinite(quota) && quota > 0 ? quota : DEFAULT_DISK_QUOTA_BYTES;
}

/** A step's last disk quota check, measured while the next step runs (runSteps). */
interface CarriedQuotaCheck {
  /** Aborted when the check finds the quota exceeded: it stops the next step. */
  signal: AbortSignal;
  exceeded(): Promise<boolean>;
  /** The build's verdict, and its log line, once the check found the quota exceeded. */
  verdict(stopped: string | undefined): { verdict: Verdict };
}

function carryQuotaCheck(
  step: string,
  folder: string,
  quotaBytes: number,
  writer: LineAwareWriter,
): CarriedQuotaCheck {
  const controller = new AbortController();
  const error = new DiskQuotaExceededError(quotaBytes);
  const measured = folderSize(folder).then(
    (bytes) => bytes > quotaBytes,
    () => false, // as the watcher: a folder it cannot measure is not counted
  );
  void measured.then((exceeded) => exceeded && controller.abort(error));
  return {
    signal: controller.signal,
    exceeded: () => measured,
    verdict: (stopped) => {
      writer.line(
        `Error: ${error.message}; found after ${step}${stopped ? `, ${stopped} was stopped` : ''}.`,
      );
      return { verdict: { state: 'error', description: `${error.message} (in ${step})` } };
    },
  };
}

/**
 * Measures `folder` while a step runs; past `quotaBytes` it aborts the signal, which kills the
 * step's process group. The next measurement starts `intervalMs` after the last one ended, or
 * QUOTA_CHECK_SPACING times as long as it took if that is longer: walking a big node_modules
 * takes a while, and measuring back to back would take CPU from the build itself (a single file
 * cannot outgrow the quota in between: steps run under `prlimit --fsize`).
 */
function watchDiskQuota(
  folder: string,
  quotaBytes: number,
  intervalMs = DEFAULT_QUOTA_CHECK_MS,
): { signal: AbortSignal; exceeded(): boolean; stop(): Promise<void> } {
  const controller = new AbortController();
  let measuring: Promise<void> | undefined;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const schedule = (delayMs: number) => {
    if (stopped || controller.signal.aborted) return;
    timer = setTimeout(measure, delayMs);
  };
  const measure = () => {
    const started = performance.now();
    measuring = folderSize(folder)
      .then((bytes) => {
        if (bytes > quotaBytes) controller.abort(new DiskQuotaExceededError(quotaBytes));
      })
      .catch(() => undefined)
      .finally(() => {
        measuring = undefined;
        schedule(Math.max(intervalMs, (performance.now() - started) * QUOTA_CHECK_SPACING));
      });
  };
  schedule(intervalMs);
  return {
    signal: controller.signal,
    exceeded: () => controller.signal.aborted,
    stop: async () => {
      stopped = true;
      clearTimeout(timer);
      await measuring;
    },
  };
}

/** The deploy role's credentials as the AWS SDKs and CLI read them; for the deploy step only. */
function deployEnvironment(credentials: DeployCredentials): Record<string, string> {
  return {
    AWS_ACCESS_KEY_ID: credentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
    AWS_SESSION_TOKEN: credentials.sessionToken,
    AWS_REGION: credentials.region,
    AWS_DEFAULT_REGION: credentials.region,
  };
}

async function replaceWithClone(
  input: RunnerInput,
  workspace: Workspace,
  config: ResolvedBuildConfig,
  deadline: number,
  clock: () => number,
  writer: LineAwareWriter,
): Promise<void> {
  const url = input.source.cloneUrl;
  if (!url) {
    throw new SourceFetchError('git.depth needs the repository clone URL, which this build lacks.', {
      code: 'CLONE_URL_MISSING',
    });
  }
  await rm(workspace.checkout, { recursive: true, force: true });
  const depth = config.git.depth ?? 1;
  await cloneCommit({
    url,
    sha: input.build.sha,
    destination: workspace.checkout,
    depth,
    timeoutMs: deadline - clock(),
    allowedProtocols: cloneProtocolsFor(url),
  });
  writer.line(`Cloned ${input.build.sha} with history depth ${depth}`);
}

/** https everywhere; plain http only to this machine (the local stack's git server). */
function cloneProtocolsFor(url: string): string[] {
  try {
    const { protocol, hostname } = new URL(url);
    const loopback = hostname === 'localhost' || hostname === '[::1]' || hostname.startsWith('127.');
    return protocol === 'http:' && loopback ? ['http'] : ['https'];
  } catch {
    return ['https'];
  }
}

/**
 * What a runner process does once, before its first input arrives (it boots while the controller
 * prepares that input): load Node's HTTP client (fetch loads undici on its first call: 20–40 ms)
 * and run the config validators once (V8 compiles their code on first call). Otherwise a build
 * pays both inside its fetch and config phases. Never fails.
 */
export function prepareRunnerProcess(): void {
  try {
    validateSettingsConfig({});
    validateRepoConfig({}, LAMBKIN_FILE);
  } catch {
    // Only warming up: the config phase reports what is wrong with the real config.
  }
  fetch('data:,').catch(() => undefined);
}

function verdictForError(error: unknown): Verdict {
  if (error instanceof RepoConfigError) return { state: 'error', description: error.message };
  if (error instanceof SourceFetchError) {
    return { state: 'error', description: `could not fetch the source: ${error.message}` };
  }
  if (error instanceof LambkinError) return { state: 'error', description: error.message };
  const message = messageOf(error);
  return { state: 'error', description: `internal error in the runner: ${message}` };
}
