/**
 * The contract between the builder's controller (trusted) and its runner (holds nothing of value).
 * Everything here is JSON: in the cloud it travels as a Lambda invocation payload and result,
 * locally over a child process's stdin and stdout.
 */
import type { BuildRequest, RepoName, StepResult } from './build.js';
import type { RepoConfigFile } from './repo-config/files.js';
import type { BuildKey } from './build.js';
import { LambkinError } from './errors.js';
import { isJobId } from './job-id.js';

/**
 * An S3 presigned POST (browser-form upload) limited to one key prefix: the runner can upload any
 * number of objects under its build's prefix, and nothing else, without holding credentials.
 */
export interface PresignedPost {
  /** Form action URL. */
  url: string;
  /** Form fields to send before the file (policy, signature, …), except `key`. */
  fields: Record<string, string>;
  /** Every uploaded key must start with this. */
  keyPrefix: string;
  /** Largest object the policy accepts, in bytes. */
  maxObjectBytes: number;
  /** Epoch ms after which S3 refuses the form. */
  expiresAt: number;
}

/**
 * Node.js options of every runner process: a Lambda's NODE_OPTIONS, the buildspec's `node`, the
 * local runner process. A young generation of 2 MiB semi-spaces instead of 16: a build printing
 * 100 MiB peaked at 109 MiB instead of 122-126 MiB (one printing 1 MiB: 95-105), with the cache's
 * pack and restore as fast (template.yaml repeats it; tests/template checks it does).
 */
export const RUNNER_NODE_OPTIONS = '--max-semi-space-size=2';

/** The build as the runner sees it: what it needs to run steps and set build variables. */
export type RunnerBuild = Pick<
  BuildRequest,
  | 'repo'
  | 'event'
  | 'ref'
  | 'sha'
  | 'branch'
  | 'tag'
  | 'pr'
  | 'baseBranch'
  | 'headRepo'
  | 'fork'
  | 'privateRepo'
  | 'trusted'
  | 'defaultBranch'
  | 'author'
  | 'commitTitle'
  | 'htmlUrl'
  | 'deliveryId'
> & { number: number; queuedAt: number; startedAt: number };

export interface RunnerInput {
  kind: 'run';
  build: RunnerBuild;
  source: {
    /** Short-lived archive URL resolved by the controller (no token needed). */
    archiveUrl: string;
    /** Clone URL for `git: {depth}` builds (public repositories). */
    cloneUrl?: string;
  };
  /** Operator settings' config defaults (global merged with repo), below the repo's own files. */
  settingsConfig: Record<string, unknown>;
  /** Secret variables: empty for untrusted builds. */
  secretEnv: Record<string, string>;
  /** Where the log (chunks, tail, page) goes. */
  logUpload: PresignedPost;
  /** Log size limit in bytes (truncated in the middle past it). */
  logLimitBytes: number;
  /** Epoch ms by which the runner must have returned (its Lambda timeout minus a margin). */
  deadlineAt: number;
  /** The build's stable page (for LAMBKIN_LOG_URL and the page's links). */
  buildUrl: string;
  /**
   * Bytes the build may write under its work area (checkout, HOME, TMPDIR); past it the step is
   * killed and the build ends `error`. Also bounds the unpacked archive. Default 8 GiB.
   */
  diskQuotaBytes?: number;
  /** RLIMIT_NPROC of the steps (`prlimit --nproc`): processes of the build user. Default 256. */
  maxProcesses?: number;
  /**
   * Pull requests only: the config of the branch the pull request merges into, read by the
   * controller through the contents API. It is the trusted layer; the checkout's own files (the
   * pull request's) then change only the keys `pullRequestOverrides` allows.
   */
  baseConfig?: BaseConfig;
  /**
   * Pull requests only: the keys the pull request's own config files may change (the policy's
   * `allowConfigOverrides` for its source; `true` every key, `false` none).
   */
  pullRequestOverrides?: boolean | string[];
  /**
   * Whether this build may deploy: the controller's decision, from the operator's settings and the
   * default branch's config (never the pushed commit's). Absent: the build does not deploy.
   */
  deploy?: DeployDecision;
  /** The dependency cache: where to restore from and (trusted builds) save to. Absent: no cache. */
  cache?: CacheAccess;
  /**
   * The one job of the build this runner runs (src/core/jobs.ts plans them). Absent: the build is a
   * single job and runs as it always did (no job line in the log, no job variables).
   */
  job?: RunnerJob;
  /**
   * Runs on CodeBuild only (`--input-url`): where the runner PUTs its RemoteRunnerResult, since no
   * caller waits for its answer. Absent for Lambda and local runners, which answer their caller.
   */
  outcomeUpload?: OutcomeUpload;
}

/** Where a runner started with `--input-url` delivers its result (presigned by the controller). */
export interface OutcomeUpload {
  /** Presigned PUT of the outcome object (`runner-input/…/<random>.outcome.json`). */
  url: string;
  /** Headers signed with it (`if-none-match: *`: the first result stands, no second one replaces it). */
  headers: Record<string, string>;
  /**
   * Presigned DELETE of the input object itself: the runner spends its input as soon as it has read
   * it, before any step runs, so the input URL (on its command line, in CodeBuild's environment) is
   * worth nothing to a build step that finds it.
   */
  inputDeleteUrl?: string;
}

/** What a runner started with `--input-url` PUTs to `outcomeUpload`: its outcome, and its afterword. */
export interface RemoteRunnerResult {
  outcome: RunnerOutcome;
  afterword?: RunnerAfterword;
}

const RUNNER_STATES: readonly string[] = ['success', 'failure', 'error', 'timed_out'];

/**
 * The outcome object read back by the controller, checked: it was written by whatever ran on
 * CodeBuild, so it is data to validate, never to trust. Undefined when it is not a result.
 */
export function parseRemoteRunnerResult(text: string): RemoteRunnerResult | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const { outcome, afterword } = value as Record<string, unknown>;
  if (typeof outcome !== 'object' || outcome === null) return undefined;
  const o = outcome as Record<string, unknown>;
  const log = o['log'] as Record<string, unknown> | undefined;
  if (
    o['kind'] !== 'outcome' ||
    !RUNNER_STATES.includes(o['state'] as string) ||
    typeof o['description'] !== 'string' ||
    !Array.isArray(o['steps']) ||
    typeof log !== 'object' ||
    log === null ||
    typeof log['chunks'] !== 'number'
  ) {
    return undefined;
  }
  const result: RemoteRunnerResult = { outcome: outcome as RunnerOutcome };
  if (typeof afterword === 'object' && afterword !== null) {
    const a = afterword as Record<string, unknown>;
    if (a['kind'] === 'afterword' && Array.isArray(a['timings']) && Array.isArray(a['notes'])) {
      result.afterword = afterword as RunnerAfterword;
    }
  }
  return result;
}

/** One job of a build, as the runner gets it: what its steps see besides the build itself. */
export interface RunnerJob {
  /** The job's id within its build (`node-22-2`), for the log. */
  id: string;
  /** For the log's first lines: `node-22 (2/4)`. */
  title: string;
  /**
   * The job's own variables (matrix values, LAMBKIN_MATRIX_*, LAMBKIN_SHARD_*): over the config's
   * `env`, never over the build variables (a reserved name other than LAMBKIN_MATRIX_* and
   * LAMBKIN_SHARD_* is dropped).
   */
  env: Record<string, string>;
  /**
   * The Node.js that runs the job's steps, resolved by the controller (src/runner/node-runtime.ts
   * `resolveNodeVersion`): installed (integrity checked) before the first step and first on PATH.
   * Absent: the runner's own Node.js.
   */
  node?: RunnerJobNode;
}

export interface RunnerJobNode {
  /** Exact version, `22.11.0`. */
  version: string;
  arch: 'x64' | 'arm64';
  tarballUrl: string;
  /** The tarball's `dist.integrity` (sha512 SRI). */
  integrity: string;
  /**
   * The package tarball in the dependency cache's storage (`nodeCacheKey`), so a builder without it
   * in its local node cache fetches nothing from the registry. Absent: the registry only.
   */
  cache?: NodeCacheAccess;
}

/**
 * A Node.js package tarball in the dependency cache's storage, prepared by the controller (which
 * can sign; the runner cannot). Whatever the GET returns is checked against the job's `integrity`
 * exactly like a registry download: an object that does not match is refused and the registry used.
 */
export interface NodeCacheAccess {
  /** Object key, `cache/_node/node-<version>-linux-<arch>-<sha512 hex>.tgz`. */
  key: string;
  /** Presigned GET of the key (404 or 403: a miss). */
  getUrl: string;
  /** Whether an object was stored at the key when the controller looked; false: skip the GET. */
  stored?: boolean;
  /**
   * Presigned PUT of the key: trusted builds only, and only when nothing is stored there yet. The
   * runner uploads the registry's tarball with it once the tarball is verified and installed.
   */
  putUrl?: string;
  /** Headers the PUT must carry because they are signed with it (`if-none-match: *`). */
  putHeaders?: Record<string, string>;
  /** Largest tarball the runner may upload, in bytes. */
  maxBytes: number;
}

export interface BaseConfig {
  /** The branch (and commit) the files were read at, for the build log. */
  ref: string;
  files: RepoConfigFile[];
  /** Files found there and deliberately not used. */
  notes: string[];
}

/**
 * The controller's deploy decision. The checkout supplies only the deploy *commands*; whether they
 * run is decided here, and the deploy role's credentials exist only once the runner redeems
 * `grant`, after install and test passed.
 */
export interface DeployDecision {
  allowed: boolean;
  /** One line for the build log: why the build deploys or does not, and where that was decided. */
  reason: string;
  /**
   * The deploy rules that decided (for the log, when the commit's own config names others);
   * absent when no rules were read (pull requests, untrusted builds, an unreadable config).
   */
  rules?: { deployBranches: string[]; deployTags: string[]; source: string };
  /** Allowed builds whose settings name a deploy role: how the deploy step gets its credentials. */
  grant?: DeployCredentialGrant;
}

/**
 * A presigned STS AssumeRole request (SigV4 in the query), signed by the controller: the runner
 * sends it (a plain GET) only after install and test passed, immediately before the deploy step,
 * and gives the credentials STS answers with to the deploy step alone.
 */
export interface DeployCredentialGrant {
  /** The role to be assumed, for the log and error messages. */
  roleArn: string;
  /** The deploy step's AWS_REGION. */
  region: string;
  /** GET this: STS answers an AssumeResponse XML document. */
  url: string;
  /** Epoch ms after which STS refuses the URL. */
  expiresAt: number;
}

/** What STS answered the runner's redeemed grant: the deploy step's credentials. */
export interface DeployCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken: string;
  /** Epoch ms. */
  expiresAt: number;
  region: string;
  /** For the build log: which role the deploy step runs as. */
  roleArn: string;
}

/**
 * The dependency cache of one build, prepared by the controller (which can sign; the runner
 * cannot). The key is derived from the lockfile at the build's commit, so both sides agree.
 */
export interface CacheAccess {
  /** Object key, `cache/<owner>/<repo>/…`. */
  key: string;
  /** Git blob SHA of the lockfile the key was derived from; the runner checks its checkout's. */
  lockfileSha: string;
  /** Presigned GET of the key (404: a miss). */
  getUrl: string;
  /** Whether an object was stored at the key when the controller looked; false: skip the GET. */
  stored?: boolean;
  /** Presigned PUT of the key: trusted builds only, and only when nothing is stored there yet. */
  putUrl?: string;
  /** Headers the PUT must carry because they are signed with it (`if-none-match: *`). */
  putHeaders?: Record<string, string>;
  /** Largest archive the runner may upload, in bytes. */
  maxBytes: number;
  /**
   * A sandboxed trusted build on a machine whose controller keeps dependency trees
   * (src/controller/dependency-handover.ts): the runner takes the tree the controller may have lent
   * (`<work root>/trusted/kept-dependencies`, this key's) instead of unpacking the archive, and a
   * passed build leaves its unchanged `node_modules` there for the controller to keep. Never set
   * in the cloud, where nothing outlives the build but what the archive holds.
   */
  keepTree?: boolean;
}

/** The runner's end states; `cancelled` is only ever set by the controller. */
export type RunnerState = 'success' | 'failure' | 'error' | 'timed_out';

export interface RunnerOutcome {
  kind: 'outcome';
  state: RunnerState;
  /** One line for the commit status: which step failed, what timed out, what was wrong. */
  description: string;
  steps: StepResult[];
  log: LogSummary;
  /**
   * Where the source was unpacked (an absolute path): the log's failures name files under it, and
   * the controller's annotations are relative to it.
   */
  checkoutRoot?: string;
  /** Where the runner's time went so far, in order (the controller prints the whole breakdown). */
  timings?: PhaseTiming[];
  /**
   * Lines for the end of the log written after the log was closed (the cache save's), which the
   * controller appends once the runner has finished.
   */
  notes?: string[];
}

/** One phase of a build and how long it took. */
export interface PhaseTiming {
  /** `fetch`, `config`, `cache restore`, `step test`, … */
  name: string;
  ms: number;
}

/**
 * The runner process's answer is one JSON line per phase: first its verdict (a RunnerOutcome, sent
 * as soon as the steps ended and the log was closed, so the controller sets the final status at
 * once), then this, once the work after the verdict (the cache save, the work area's removal) is
 * done. A runner that sends only one line sent its whole outcome.
 */
export interface RunnerAfterword {
  kind: 'afterword';
  /** The phases after the verdict (`cache save`, `cleanup`). */
  timings: PhaseTiming[];
  notes: string[];
}

/** What the runner uploaded, so the controller can assemble the final log. */
export interface LogSummary {
  /** Number of chunk objects (`chunks/000001.txt` …). */
  chunks: number;
  /** Bytes of log produced (before truncation). */
  totalBytes: number;
  /** Bytes dropped from the middle. */
  truncatedBytes: number;
  /** Whether `tail.txt` (marker + tail) was uploaded. */
  tail: boolean;
}

/** Key layout under a build's log prefix (`logs/<owner>/<repo>/builds/<number>/`). */
export const LOG_KEYS = {
  chunk: (prefix: string, index: number): string => `${prefix}chunks/${String(index).padStart(6, '0')}.txt`,
  chunksPrefix: (prefix: string): string => `${prefix}chunks/`,
  tail: (prefix: string): string => `${prefix}tail.txt`,
  log: (prefix: string): string => `${prefix}log.txt`,
  page: (prefix: string): string => `${prefix}index.html`,
  /** Where a rebuild's runner writes its log (`auto`'s second run): its own folder under the first's. */
  attempt: (prefix: string, attempt: number): string => `${prefix}attempt-${attempt}/`,
  /** The controller's line that opens a rebuild's part of the log (why it was rebuilt, and where). */
  attemptHead: (prefix: string, attempt: number): string => `${prefix}attempt-${attempt}/head.txt`,
} as const;

/** Per-repository objects: latest pointers, badges and the page of recent builds. */
export const REPO_KEYS = {
  /** The recent builds page (src/pages/repo-page.ts), refreshed when a build changes state. */
  page: (repo: RepoName): string => `logs/${repo}/index.html`,
  latest: (repo: RepoName): string => `logs/${repo}/latest.json`,
  branchLatest: (repo: RepoName, branch: string): string =>
    `logs/${repo}/branches/${encodeURIComponent(branch)}/latest.json`,
  badge: (repo: RepoName, branch: string): string =>
    `logs/${repo}/branches/${encodeURIComponent(branch)}/badge.svg`,
} as const;

// The builder function's event: the webhook (and `lambkin rebuild`) invoke it with one.

/** Payload the builder function receives. */
export interface BuilderInvocation {
  kind: 'build';
  repo: RepoName;
  number: number;
  /**
   * One job of a build of several (its JobPlan id): the controller runs that job only. Absent:
   * the build itself, which the controller plans and, with several jobs, fans out.
   */
  job?: string;
}

/** An event given to the builder function is not a `BuilderInvocation`. */
export class InvalidBuilderInvocationError extends LambkinError {
  constructor(readonly problems: string[]) {
    super(
      'INVALID_BUILDER_INVOCATION',
      `The builder function was invoked with an event it does not understand: ${problems.join('; ')}. ` +
        `It expects {"kind":"build","repo":"owner/name","number":<build number>}, as sent by the webhook; ` +
        'check what invoked it.',
    );
  }
}

export function builderInvocationFor(key: BuildKey, job?: string): BuilderInvocation {
  return { kind: 'build', repo: key.repo, number: key.number, ...(job !== undefined ? { job } : {}) };
}

/** GitHub's rules: owner is letters, digits and single hyphens; repository adds `.` and `_`. */
const REPO_NAME = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})\/[A-Za-z0-9._-]{1,100}$/;

/**
 * Validates an event the builder function received. Unknown extra fields are ignored so that a
 * newer webhook can add some while an older builder is still deployed.
 */
export function parseBuilderInvocation(event: unknown): BuilderInvocation {
  if (typeof event !== 'object' || event === null || Array.isArray(event)) {
    throw new InvalidBuilderInvocationError([
      `the event is ${event === null ? 'null' : Array.isArray(event) ? 'an array' : typeof event}, not an object`,
    ]);
  }
  const { kind, repo, number, job } = event as Record<string, unknown>;
  const problems: string[] = [];
  if (kind !== 'build') problems.push(`"kind" is ${JSON.stringify(kind) ?? 'missing'}, not "build"`);
  if (typeof repo !== 'string' || !REPO_NAME.test(repo)) {
    problems.push(`"repo" is ${JSON.stringify(repo) ?? 'missing'}, not an "owner/name" repository`);
  }
  if (typeof number !== 'number' || !Number.isSafeInteger(number) || number < 1) {
    problems.push(`"number" is ${JSON.stringify(number) ?? 'missing'}, not a positive whole build number`);
  }
  if (job !== undefined && !isJobId(job)) {
    problems.push(`"job" is ${JSON.stringify(job) ?? 'missing'}, not a job id such as "node-22.shard-2"`);
  }
  if (problems.length > 0) throw new InvalidBuilderInvocationError(problems);
  return builderInvocationFor(
    { repo: repo as RepoName, number: number as number },
    job as string | undefined,
  );
}
