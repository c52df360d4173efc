/**
 * The ports: what the services (src/controller) need from the outside world, as interfaces the
 * adapters implement (store/ on DynamoDB and S3, github/ on the GitHub API, aws/ on Lambda and
 * STS, and the local stack's stand-ins). Pure: types only, and one error the deploy-role port throws.
 */
import type { CheckRunReport } from './check-run.js';
import type { BuildKey, BuildRecord, BuildRequest, RemoteRunRecord, RepoName, StepResult } from './build.js';
import { LambkinError } from './errors.js';
import type { JobRecord } from './job-record.js';
import type { JobPlan } from './jobs.js';
import type {
  CacheAccess,
  DeployCredentialGrant,
  NodeCacheAccess,
  PresignedPost,
  RunnerInput,
  RunnerJobNode,
  RunnerOutcome,
} from './protocol.js';
import type { RunsOn } from './repo-config/schema.js';
import type { EffectiveSettings, SettingsDocument } from './settings.js';
import type { BuildState, CommitState } from './state-machine.js';

/**
 * An S3 client whose credentials reach only one build's keys (BuildSigner makes it, the log and
 * cache stores sign with it). Opaque here: only the adapters use it.
 */
export type BuildScopedClient = unknown;

/** What a transition may record besides the state. */
export interface TransitionDetails {
  /** One line: why (kept in the event and as the build's description). */
  reason?: string;
  /** Epoch ms; defaults to now. */
  at?: number;
  /** New deadline (e.g. when the builder claims the build and knows its timeout). */
  deadline?: number;
  steps?: StepResult[];
  /** Log location, once known. */
  logPrefix?: string;
}

export interface TransitionRequest extends TransitionDetails {
  /** The state(s) the build must be in now. */
  from: BuildState | readonly BuildState[];
  to: BuildState;
}

export interface QueuedBuildOptions {
  deadline: number;
  at?: number;
  /** The link given to GitHub (made from the number, so known only now). */
  pageUrl?: (number: number) => string;
  logToken?: string;
}

/** The guard item of one signed body: the delivery that first brought it. */
export interface BodyGuardRecord {
  event: string;
  bodySha256: string;
  deliveryId: string;
}

/** The guard item of one webhook delivery. */
export interface DeliveryRecord {
  deliveryId: string;
  build: BuildKey;
  /** Set once the builder was invoked for it. */
  invokedAt?: number;
}

export interface BuildStore {
  /** Next build number of a repo: unique, increasing, never reused (gaps are possible). */
  allocateNumber(repo: RepoName): Promise<number>;
  /** Writes a queued build with a number from allocateNumber; refuses to overwrite. */
  putQueuedBuild(request: BuildRequest, number: number, options: QueuedBuildOptions): Promise<BuildRecord>;
  getBuild(key: BuildKey): Promise<BuildRecord | undefined>;
  /** Conditional state change; throws TransitionRefusedError when illegal or lost to another writer. */
  transition(key: BuildKey, request: TransitionRequest): Promise<BuildRecord>;
  /** Latest first. */
  listBuilds(repo: RepoName, options?: { limit?: number }): Promise<BuildRecord[]>;
  /** Builds of one commit, latest first. */
  buildsOfCommit(repo: RepoName, sha: string): Promise<BuildRecord[]>;
  /** Latest build of a branch (`{ branch }`), PR (`{ pr }`) or tag. */
  latestBuildOf(
    repo: RepoName,
    target: Pick<BuildRequest, 'branch' | 'pr' | 'tag'>,
  ): Promise<BuildRecord | undefined>;
  /**
   * The latest build of a branch, PR or tag numbered below `below` that ended with a verdict
   * (success, failure, error, timed_out: not cancelled), among its latest 20; undefined when there
   * is none.
   */
  previousFinishedBuildOf(
    repo: RepoName,
    target: Pick<BuildRequest, 'branch' | 'pr' | 'tag'>,
    below: number,
  ): Promise<BuildRecord | undefined>;
  /** The repository's badge token (the `token` of a private repository's badge link), if it has one. */
  badgeTokenOf(repo: RepoName): Promise<string | undefined>;
  /** The repository's badge token, made (newLinkToken) and kept when it has none yet. */
  ensureBadgeToken(repo: RepoName): Promise<string>;
  /** A new badge token for the repository: links with the old one show `unknown` from now on. */
  replaceBadgeToken(repo: RepoName): Promise<string>;
  /** Queued or running builds whose deadline is before `now`, across all repos, oldest first. */
  overdueBuilds(now: number, options?: { limit?: number }): Promise<BuildRecord[]>;
  /**
   * Records that GitHub acknowledged the commit status of `state` (a plain update, no state
   * check). Once the acknowledged state is the build's terminal state, the build leaves the
   * sweeper's index.
   */
  markReported(key: BuildKey, state: BuildState, at?: number): Promise<void>;
  /**
   * Terminal builds whose final status GitHub never acknowledged, ended before `endedBefore`
   * (epoch ms), across all repos.
   */
  unreportedBuilds(endedBefore: number, options?: { limit?: number }): Promise<BuildRecord[]>;
  /** Queued or running builds of the same branch, PR or tag numbered below `below`, latest first. */
  unfinishedBuildsOf(
    repo: RepoName,
    target: Pick<BuildRequest, 'branch' | 'pr' | 'tag'>,
    below: number,
  ): Promise<BuildRecord[]>;
  /**
   * Records the build's CodeBuild run and its new deadline, only while the build is `running` and
   * holds no run of this attempt or a later one; throws TransitionRefusedError otherwise.
   */
  recordRemoteRun?(key: BuildKey, run: RemoteRunRecord, deadline: number): Promise<BuildRecord>;
  /**
   * Claims the completion of the recorded run `buildId`: true once (the first event or sweep),
   * false for a duplicate or a run that is not the recorded one.
   */
  claimRemoteFinish?(key: BuildKey, buildId: string, at: number): Promise<boolean>;
  /** Moves a running build's deadline later (never earlier): its job runs on CodeBuild, longer than Lambda. */
  extendDeadline?(key: BuildKey, deadline: number): Promise<void>;
  /** The guard of a delivery, if any (strongly consistent). */
  getDelivery(deliveryId: string): Promise<DeliveryRecord | undefined>;
  /** Records a delivery's build; returns the existing record instead when the delivery is known. */
  claimDelivery(
    deliveryId: string,
    build: BuildKey,
    expiresAt: number,
  ): Promise<{ claimed: boolean; record: DeliveryRecord }>;
  markDeliveryInvoked(deliveryId: string, at?: number): Promise<void>;
  /**
   * Records which delivery first brought a signed body (conditional: the first claim wins);
   * returns the existing record instead when the body was seen before.
   */
  claimBody(
    body: { event: string; bodySha256: string },
    deliveryId: string,
    expiresAt: number,
  ): Promise<{ claimed: boolean; record: BodyGuardRecord }>;
}

/** The exact Node.js a matrix's `node` value (`22`, `22.11.0`) stands for, asked of the registry. */
export interface NodeVersionResolver {
  resolve(spec: string): Promise<RunnerJobNode>;
}

/** A job as the controller plans it, before it is recorded. */
export interface NewJob {
  plan: JobPlan;
  /** The exact Node.js its `node` value resolved to (absent: the runner's own). */
  resolvedNode?: RunnerJobNode;
  failFast: boolean;
  /** Where it runs: the build config's `runsOn` (absent: Lambda). */
  runsOn?: RunsOn;
}

/**
 * The jobs of builds of several jobs: one record per job under its build, each changed only by
 * conditional transitions (the build state machine's rules), as builds are.
 */
export interface JobStore {
  /**
   * Records the build's jobs as `queued` (index = position in `jobs`, from 1), with `deadline`.
   * Idempotent: a job already recorded is kept as it is. Returns the records, in order.
   */
  putJobs(
    build: Pick<BuildRecord, 'repo' | 'number' | 'logPrefix'>,
    jobs: readonly NewJob[],
    options: { deadline: number; at?: number },
  ): Promise<JobRecord[]>;
  /** Every job of the build, in order (strongly consistent); empty for a build of one job. */
  listJobs(build: BuildKey): Promise<JobRecord[]>;
  /** Conditional state change of one job; throws TransitionRefusedError when illegal or lost. */
  transitionJob(job: JobRecord, request: TransitionRequest): Promise<JobRecord>;
  /** As BuildStore.recordRemoteRun, for one job. */
  recordJobRemoteRun?(job: JobRecord, run: RemoteRunRecord, deadline: number): Promise<JobRecord>;
  /** As BuildStore.claimRemoteFinish, for one job. */
  claimJobRemoteFinish?(job: JobRecord, buildId: string, at: number): Promise<boolean>;
}

/** What StartBuild is given (src/aws/codebuild.ts turns it into CodeBuild's request). */
export interface RemoteStartRequest {
  project: string;
  /** The same token twice starts one build, not two (derived from the build, job and attempt). */
  idempotencyToken: string;
  /** `BUILD_GENERAL1_…`. */
  computeType: string;
  /** An allowed image URI; absent: the project's own. */
  image?: string;
  timeoutMinutes: number;
  /** Plain (never secret) variables: LAMBKIN_RUNNER_URL, LAMBKIN_RUNNER_SHA256, LAMBKIN_RUNNER_INPUT_URL, LAMBKIN_BUILD. */
  environment: Record<string, string>;
}

/** CodeBuild's build states. */
export type RemoteBuildStatus = 'IN_PROGRESS' | 'SUCCEEDED' | 'FAILED' | 'FAULT' | 'STOPPED' | 'TIMED_OUT';

/** One build as CodeBuild reports it (BatchGetBuilds, or the completion event). */
export interface RemoteBuildReport {
  buildId: string;
  arn: string;
  project: string;
  status: RemoteBuildStatus;
  complete: boolean;
  /** Epoch ms. */
  startTime?: number;
  endTime?: number;
  /** The build's environment variables (the overrides): LAMBKIN_BUILD names what it runs. */
  environment: Record<string, string>;
}

/** Runs on CodeBuild: StartBuild, StopBuild, BatchGetBuilds. */
export interface RemoteRunner {
  start(request: RemoteStartRequest): Promise<{ buildId: string; arn: string }>;
  /** Stops a build; one already ended (or unknown) is no error. */
  stop(buildId: string): Promise<void>;
  /** The builds CodeBuild knows of these ids (unknown ids are left out). */
  describe(buildIds: readonly string[]): Promise<RemoteBuildReport[]>;
}

/** The bucket's side of CodeBuild runs: the input and outcome objects and the runner bundle. */
export interface RemoteRunObjects {
  putInput(key: string, body: string): Promise<void>;
  /** Presigned GET and DELETE of the input object. */
  presignInput(key: string, expiresInSeconds: number): Promise<{ getUrl: string; deleteUrl: string }>;
  /** Presigned PUT of the outcome object, signed with If-None-Match: * (the first result stands). */
  presignOutcome(
    key: string,
    expiresInSeconds: number,
  ): Promise<{ url: string; headers: Record<string, string> }>;
  /** The outcome object's text; undefined when the runner delivered none. */
  readOutcome(key: string): Promise<string | undefined>;
  /** Deletes the objects; missing ones are no error. */
  remove(keys: readonly string[]): Promise<void>;
  /**
   * The runner bundle in the bucket (`runner/<sha256>.mjs`, uploaded from the controller's own
   * package when absent) and a presigned GET of it.
   */
  runnerBundle(expiresInSeconds: number): Promise<{ key: string; sha256: string; url: string }>;
}

/** CodeBuild minutes per calendar month (UTC), for the operator's cap. */
export interface RemoteUsage {
  minutesOf(month: string): Promise<number>;
  /** An atomic ADD: concurrent completions never lose minutes. */
  addMinutes(month: string, minutes: number): Promise<void>;
}

export interface LatestPointer {
  number: number;
  state: string;
  url: string;
  sha: string;
  /** Epoch ms. */
  at: number;
}

export interface LogStore {
  /** A POST form for everything under the build's log prefix (LOG_KEYS), valid until expiresAt. */
  presignLogUpload(
    build: { repo: RepoName; number: number; logPrefix: string },
    options: { expiresInSeconds: number; maxObjectBytes: number; signer?: BuildScopedClient },
  ): Promise<PresignedPost>;
  /** The log as far as it is known: log.txt when finalized, else chunks so far (+ tail.txt). undefined when nothing exists. */
  readLog(logPrefix: string): Promise<string | undefined>;
  /**
   * Assembles log.txt = chunks in order + tail.txt (which already holds the truncation marker).
   * Idempotent; works when the runner died mid-build (whatever chunks exist). Returns the text.
   */
  finalizeLog(logPrefix: string, note?: string): Promise<string>;
  /**
   * Opens a rebuild's part of the log (LOG_KEYS.attempt): from now on the log is the first run's,
   * then `head`, then what the rebuild's runner uploads under that folder. Returns the folder.
   */
  beginAttempt?(logPrefix: string, attempt: number, head: string): Promise<string>;
  /** index.html, text/html; charset=utf-8, no-cache. */
  putPage(logPrefix: string, html: string): Promise<void>;
  getObjectText(key: string): Promise<string | undefined>;
  /** REPO_KEYS.badge, image/svg+xml, no-cache. */
  putBadge(repo: RepoName, branch: string, svg: string): Promise<void>;
  /** REPO_KEYS.latest and, with a branch, REPO_KEYS.branchLatest (JSON). */
  putLatest(repo: RepoName, branch: string | undefined, pointer: LatestPointer): Promise<void>;
  /** A short-lived GET URL (the cloud log route redirects to it). */
  presignGet(key: string, expiresInSeconds: number): Promise<string>;
}

export type SettingsScope = { kind: 'global' } | { kind: 'repo'; repo: RepoName };

export interface ReadOptions {
  /** Open sealed `secretEnv` values (needs the store's cipher); otherwise they stay sealed. */
  decryptSecrets?: boolean;
}

export interface SettingsStore {
  get(scope: SettingsScope, options?: ReadOptions): Promise<SettingsDocument | undefined>;
  /** Applies `change` to the current document and writes it, retrying when another writer raced. */
  update(
    scope: SettingsScope,
    change: (current: SettingsDocument) => SettingsDocument,
  ): Promise<SettingsDocument>;
  /** Global and repo documents merged over the built-in defaults. */
  effective(repo: RepoName, options?: ReadOptions): Promise<EffectiveSettings>;
}

export interface CommitStatusUpdate {
  repo: RepoName;
  sha: string;
  state: CommitState;
  /** Shortened to GitHub's limit (140 characters) when longer. */
  description: string;
  targetUrl?: string;
  /** Default `lambkin`. */
  context?: string;
  /** In App mode, the build's check run says the same (token mode: not sent). */
  check?: CheckRunReport;
}

export interface DeliveryPolicy {
  /** Everything (attempts and waits between them) ends this long after the call. */
  deadlineMs: number;
  maxAttempts: number;
  /** Longest one attempt waits for an answer; default what is left of the deadline. */
  attemptTimeoutMs?: number;
  /** Wait before the first retry, doubled after each (plus jitter); default 250 ms. */
  initialBackoffMs?: number;
  /** Longest wait between attempts, unless GitHub asks for longer (rate limits); default 8 s. */
  maxBackoffMs?: number;
}

export interface StatusReporter {
  setStatus(update: CommitStatusUpdate, policy: DeliveryPolicy): Promise<void>;
}

/** Where one build's dependency cache lives (see src/store/cache.ts). */
export interface CacheLocation {
  key: string;
  lockfileSha: string;
  /** Whether an object is stored at the key already (a trusted build then does not save). */
  exists: boolean;
}

export interface CachePlanner {
  /**
   * The build's cache entry, from the lockfile at its commit; undefined without a lockfile. A job
   * that runs on a Node.js of its own (`nodeVersion`) has its own entry.
   */
  locate(build: BuildRecord, options?: { nodeVersion?: string }): Promise<CacheLocation | undefined>;
  /** Presigned URLs for the runner, signed by `signer` (else the planner's own client); a PUT only with `write`. */
  presign(
    location: CacheLocation,
    signer: BuildScopedClient | undefined,
    options: { write: boolean; expiresInSeconds: number },
  ): Promise<CacheAccess>;
  /**
   * Where a job's Node.js package tarball is kept (`nodeCacheKey` of its version, arch and
   * integrity) and whether it is stored yet. Optional: a planner without it keeps no Node.js.
   * The controller adds the key to the build's `grants.read` (and `grants.write` when it writes).
   */
  locateNode?(node: NodeCacheSubject): Promise<NodeCacheLocation>;
  /**
   * Presigned URLs of that tarball for the runner, signed by `signer` (else the planner's own
   * client): a GET always; a PUT only with `write` and only when nothing is stored there yet.
   * Refuses keys outside the node cache's prefix.
   */
  presignNode?(
    location: NodeCacheLocation,
    signer: BuildScopedClient | undefined,
    options: { write: boolean; expiresInSeconds: number },
  ): Promise<NodeCacheAccess>;
}

/** What names a Node.js package tarball in the cache: a job's `RunnerJobNode` will do. */
export interface NodeCacheSubject {
  /** Exact version, `22.11.0`. */
  version: string;
  arch: 'x64' | 'arm64';
  /** The tarball's sha512 SRI: its digest is part of the key. */
  integrity: string;
}

export interface NodeCacheLocation {
  /** `cache/_node/node-<version>-linux-<arch>-<sha512 hex>.tgz`. */
  key: string;
  /** Whether an object is stored at the key already (nobody then uploads it again). */
  exists: boolean;
}

/** What the runner may touch in the bucket, as key prefixes (a full key is a prefix of itself). */
export interface BuildGrants {
  write: string[];
  read: string[];
}

export interface BuildSigner {
  /** An S3 client whose credentials allow only `grants`, valid for `expiresInSeconds`. */
  forBuild(build: BuildKey, grants: BuildGrants, expiresInSeconds: number): Promise<BuildScopedClient>;
}

export interface DeployRoleRequest {
  roleArn: string;
  /** Becomes the session name (CloudTrail shows it); cut and cleaned to what STS accepts. */
  sessionName: string;
  /** How long the credentials last once the grant is redeemed. */
  durationSeconds: number;
  /** How long the grant itself may be redeemed: until the build's deadline. */
  expiresInSeconds: number;
  region?: string;
}

/**
 * Grants of the repository's deploy role: presigned STS AssumeRole requests, signed with the
 * builder's own credentials. Nothing is assumed when a grant is made; the runner redeems it only
 * after install and test passed.
 */
export interface DeployRoleGrants {
  grant(request: DeployRoleRequest): Promise<DeployCredentialGrant>;
}

/** A deploy role grant could not be made: the build ends `error` before any step runs. */
export class DeployRoleError extends LambkinError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('DEPLOY_ROLE', message, options);
  }
}

export interface RunnerInvoker {
  /**
   * Runs the build; throws RunnerFailedError when the runner died or ran out of time, and
   * RunnerAbortedError when `signal` aborted it (the build was cancelled meanwhile). A runner
   * that announces its verdict before its work after it (the cache save: src/core/protocol.ts
   * RunnerAfterword) is told to `onVerdict` at once; the promise resolves once the runner has ended,
   * with the whole outcome (or the verdict, should the runner fail after announcing it).
   */
  run(
    input: RunnerInput,
    signal?: AbortSignal,
    onVerdict?: (verdict: RunnerOutcome) => void,
  ): Promise<RunnerOutcome>;
  /**
   * Optional: starts a runner before its input is ready, so that it boots (its process, its code,
   * what it compiles) while the controller prepares the input. Trusted builds get a trusted runner.
   */
  start?(trusted: boolean): StartedRunner;
}

/** A runner started before its input: run it once, or discard it. */
export interface StartedRunner {
  run(
    input: RunnerInput,
    signal?: AbortSignal,
    onVerdict?: (verdict: RunnerOutcome) => void,
  ): Promise<RunnerOutcome>;
  /** Ends a runner that will get no input (its preparation failed). */
  discard(): Promise<void>;
}

/** How the intake (and `lambkin rebuild`) hand a queued build to the controller: asynchronously. */
export interface ControllerInvoker {
  /**
   * Starts the controller for the build (or, with `job`, for that one job of it); resolves once
   * the invoke is accepted, not when the build ends.
   */
  invoke(key: BuildKey, job?: string): Promise<void>;
}

/**
 * One installation event of the GitHub App, as the registry records it: which repositories an
 * installation reaches from now on, and which it no longer does.
 */
export interface InstallationChange {
  installationId: number;
  /** The account (user or organization login) the App is installed on. */
  account: string;
  /** Repositories (`owner/name`) the installation reaches from `at` on. */
  added: string[];
  /** Repositories it no longer reaches. */
  removed: string[];
  /** true: suspended, false: unsuspended; absent: the event does not say. */
  suspended?: boolean;
  /** Uninstalled: none of its repositories, listed or not, is installed any more (ids are never reused). */
  deleted?: boolean;
  /** Epoch ms of the event: a change older than the one recorded for a repository is ignored. */
  at: number;
}

export interface InstallationRegistry {
  /**
   * Applies an installation event: repositories added (or re-enabled) and removed, the
   * installation suspended, unsuspended or deleted. Idempotent; events may arrive in any order.
   */
  apply(change: InstallationChange): Promise<void>;
  /**
   * The installation id recorded for `repo` (`owner/name`, case-insensitive), or undefined when
   * no installation in force (not removed, suspended or deleted) reaches it.
   */
  installationOf(repo: string): Promise<number | undefined>;
}

/** A pull request's commit as the intake would build it, before trust is decided (held for approval). */
export type HeldBuild = Omit<BuildRequest, 'deliveryId' | 'trusted'>;

/**
 * Pull request commits held until someone with write access approves them (App mode,
 * `requireApproval`): one per repository and commit.
 */
export interface ApprovalStore {
  /** Holds `candidate` (replacing a hold of the same commit), from `at` (epoch ms) for a while. */
  hold(candidate: HeldBuild, at: number): Promise<void>;
  /**
   * Takes the hold of `repo`@`sha` away and returns it, atomically: of concurrent takes one gets
   * it, the others undefined. Undefined too when nothing is held or the hold expired before `now`.
   */
  take(repo: RepoName, sha: string, now: number): Promise<HeldBuild | undefined>;
}
