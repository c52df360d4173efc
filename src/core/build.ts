/** The build model shared by intake, builder, stores and CLI. No AWS, no HTTP. */
import type { BuildState } from './state-machine.js';

/** `owner/name`, as GitHub's `repository.full_name`. */
export type RepoName = string;

export interface BuildKey {
  repo: RepoName;
  number: number;
}

/** What a webhook asks to build; decided by the intake, stored on the build record. */
export interface BuildRequest {
  repo: RepoName;
  event: 'push' | 'pull_request';
  /** Full ref that was pushed (`refs/heads/main`), or the PR's head ref. */
  ref: string;
  /** The exact commit to build. */
  sha: string;
  /** Branch pushed, or the PR's head branch. */
  branch?: string;
  /** Tag pushed (tag builds only). */
  tag?: string;
  /** Pull request number. */
  pr?: number;
  /** PR: the branch it merges into. */
  baseBranch?: string;
  /** PR: the repository its head lives in (differs from `repo` for forks). */
  headRepo?: RepoName;
  /** PR from a fork: untrusted code. */
  fork: boolean;
  /** Whether the repository is private (its archive needs the token). */
  privateRepo: boolean;
  /** Whether the build may see secrets, write caches and deploy. */
  trusted: boolean;
  /** The repository's default branch (deploys go there by default). */
  defaultBranch?: string;
  /** Login of whoever pushed or opened the PR. */
  author: string;
  /** Head commit message's first line, when the event carries it. */
  commitTitle?: string;
  /** Link to the commit or PR on GitHub. */
  htmlUrl?: string;
  /** The repository's clone URL (for `git: {depth}` builds). */
  cloneUrl?: string;
  /** `X-GitHub-Delivery` of the webhook that asked for this build. */
  deliveryId: string;
  /** Only these jobs (JobPlan ids) of the build's plan run: a rebuild of one job. Absent: all. */
  jobs?: string[];
}

/** One state change, as recorded on the build. */
export interface TransitionEvent {
  from: BuildState | null;
  to: BuildState;
  /** Epoch ms. */
  at: number;
  /** Why, in one line (shown in the commit status description for terminal states). */
  reason?: string;
}

export interface StepResult {
  name: string;
  /** Exit code; null when killed or never started. */
  exitCode: number | null;
  durationMs: number;
}

/**
 * What the state machine records of whatever it runs, a build or one of its jobs: each changed only
 * by conditional transitions.
 */
export interface RunLifecycle {
  state: BuildState;
  /** Epoch ms per transition. */
  queuedAt: number;
  startedAt?: number;
  endedAt?: number;
  /** Epoch ms after which it is stuck, unfinished (the sweeper ends it). */
  deadline: number;
  /** S3 key prefix of its log. */
  logPrefix: string;
  /** One-line summary of the current state (also the commit status description). */
  description?: string;
  events: TransitionEvent[];
  steps?: StepResult[];
  /** Set while it runs (and after) on CodeBuild: which run, so its completion can be matched and finished. */
  remote?: RemoteRunRecord;
}

/**
 * A run on CodeBuild, recorded by the controller that started it (a conditional write on a running
 * record). The completion event names the build it claims to be (`LAMBKIN_BUILD`, not secret);
 * only an event whose CodeBuild id matches `buildId` or `arn` here may finish it.
 */
export interface RemoteRunRecord {
  kind: 'codebuild';
  /** CodeBuild's id, `<project>:<uuid>`. */
  buildId: string;
  /** CodeBuild's ARN of the build (what the completion event names). */
  arn: string;
  project: string;
  /** 1: placed on CodeBuild from the start; 2: `auto`'s rebuild after Lambda. Never more. */
  attempt: number;
  /** The RunnerInput object (deleted when the run completes or is swept). */
  inputKey: string;
  /** Where the runner PUTs `{ outcome, afterword }`. */
  outcomeKey: string;
  /** Where this attempt's runner writes its log: the record's own prefix, or `attempt-2/` under it. */
  logPrefix: string;
  /** Epoch ms when StartBuild answered. */
  startedAt: number;
  timeoutMinutes: number;
  compute: string;
  docker: boolean;
  image?: string;
  /** The controller's preparation before StartBuild, for the time breakdown. */
  prepareMs: number;
  /** Epoch ms when a completion (event or sweep) claimed it: later ones are duplicates. */
  finishedAt?: number;
}

export interface BuildRecord extends BuildRequest, BuildKey, RunLifecycle {
  /** The build's stable link (the commit status's target URL), fixed at intake. */
  pageUrl?: string;
  /** Private repositories: the secret part of the link, checked by the log route. */
  logToken?: string;
  /**
   * The state whose commit status GitHub last acknowledged (`queued`/`running` for `pending`).
   * A terminal build whose `reportedState` differs from `state` still shows the wrong status on
   * GitHub: the sweeper sends it again.
   */
  reportedState?: BuildState;
  /** Epoch ms when GitHub acknowledged `reportedState`. */
  reportedAt?: number;
}

export function buildLabel(key: BuildKey): string {
  return `${key.repo}#${key.number}`;
}

/** `branch:main`, `pr:12` or `tag:v1`: what "the latest build of" groups by. */
export function buildTarget(request: Pick<BuildRequest, 'branch' | 'pr' | 'tag'>): string {
  if (request.pr !== undefined) return `pr:${request.pr}`;
  if (request.tag !== undefined) return `tag:${request.tag}`;
  return `branch:${request.branch ?? ''}`;
}

/** S3 prefix of a build's log files: `logs/<owner>/<repo>/builds/<number>/`. */
export function logPrefixFor(key: BuildKey): string {
  return `logs/${key.repo}/builds/${key.number}/`;
}

/** Every field of the request a build was made from; the compiler keeps this list complete. */
const REQUEST_FIELDS = {
  repo: true,
  event: true,
  ref: true,
  sha: true,
  branch: true,
  tag: true,
  pr: true,
  baseBranch: true,
  headRepo: true,
  fork: true,
  privateRepo: true,
  trusted: true,
  defaultBranch: true,
  author: true,
  commitTitle: true,
  htmlUrl: true,
  cloneUrl: true,
  deliveryId: true,
  jobs: true,
} as const satisfies Record<keyof BuildRequest, true>;

/** The request of `build` with a new delivery id: the same commit, trust and target. */
export function rebuildRequest(build: BuildRecord, deliveryId: string): BuildRequest {
  const request: Record<string, unknown> = {};
  for (const field of Object.keys(REQUEST_FIELDS) as (keyof BuildRequest)[]) {
    if (build[field] !== undefined) request[field] = build[field];
  }
  return { ...(request as unknown as BuildRequest), deliveryId };
}
