/**
 * What a verified GitHub event asks for: a build candidate, a ping, a change of the App's
 * installations, or nothing (with the reason).
 * Reads only the payload fields it needs, each checked, so a payload of the wrong shape is a clear
 * 400 rather than a crash.
 */
import { isJobId } from '../core/job-id.js';
import type { BuildRequest } from '../core/build.js';
import type { InstallationChange } from '../core/ports.js';
import { WebhookRejectedError } from './webhook.js';

/** A build request before the intake decides trust and records the delivery. */
export type BuildCandidate = Omit<BuildRequest, 'deliveryId' | 'trusted'>;

export type EventInterpretation =
  | { kind: 'ping' }
  | { kind: 'ignore'; reason: string; repo?: string }
  | { kind: 'skip'; reason: string; candidate: BuildCandidate }
  | {
      kind: 'build';
      candidate: BuildCandidate;
      /**
       * Events that come with a push (a check suite GitHub made for it, a merge group's branch):
       * built only when that commit of that branch has no build yet.
       */
      unlessBuilt?: true;
      /**
       * The event does not prove the commit is the branch's own (a check suite can be made for a
       * commit that came from a fork): built as untrusted code, no secrets, cache writes or deploy.
       */
      untrusted?: true;
    }
  | { kind: 'rerun'; request: RerunRequest }
  /** "Approve and run" on a held pull request's check run: build that commit, if its sender may approve. */
  | { kind: 'approve'; request: ApprovalRequest }
  /** The App was installed, uninstalled, suspended or given or denied repositories (App mode). */
  | { kind: 'installation'; change: Omit<InstallationChange, 'at'> };

/**
 * "Re-run" on GitHub (a check run's or a whole check suite's): build that commit again, as the
 * build it names (a check run's `external_id` is `owner/repo#number`) or the commit's latest build.
 */
export interface RerunRequest {
  repo: string;
  sha: string;
  /** The build the check run reported, when it says. */
  number?: number;
  /** The job of that build the check run reported (a job's run): only that job runs again. */
  job?: string;
  /** Who asked, for the log. */
  sender: string;
}

/** Someone asked to build a commit held for approval (App mode, `requireApproval`). */
export interface ApprovalRequest {
  repo: string;
  sha: string;
  /** Who clicked: checked for write access before anything is built. */
  sender: string;
}

/** The identifier of the "Approve and run" button (src/core/check-run.ts APPROVE_ACTION). */
export const APPROVE_IDENTIFIER = 'approve';
/** The external id suffix of a held commit's check run (`owner/repo#approval`). */
const APPROVAL_EXTERNAL_ID_SUFFIX = '#approval';

const BUILD_PR_ACTIONS = ['opened', 'synchronize', 'reopened'];
const SKIP_CI_MARKERS = ['[skip ci]', '[ci skip]'];
const SHA = /^[0-9a-f]{40}$/;
const ZERO_SHA = '0'.repeat(40);

/** GitHub owner and repository names: letters, digits, '.', '_', '-'; never only dots. */
const NAME_PART = /^[A-Za-z0-9._-]+$/;
export const MAX_OWNER_LENGTH = 39;
export const MAX_REPO_NAME_LENGTH = 100;
/** Longest branch or tag name accepted, in UTF-8 bytes (git and GitHub stop well before 1 KiB). */
export const MAX_REF_NAME_BYTES = 255;

/**
 * Checks `owner/name` as GitHub spells repository names; anything else (traversal, slashes, unicode,
 * control characters) is refused with a 400 before anything is written.
 */
export function assertRepoName(value: string, path = 'repository.full_name'): string {
  const problem = repoNameProblem(value);
  if (problem) {
    throw new WebhookRejectedError(400, `Refused: "${path}" ${quoted(value)} ${problem}.`);
  }
  return value;
}

function repoNameProblem(value: string): string | undefined {
  const parts = value.split('/');
  if (parts.length !== 2) return 'is not "owner/name"';
  const [owner = '', name = ''] = parts;
  for (const [part, what, max] of [
    [owner, 'owner', MAX_OWNER_LENGTH],
    [name, 'name', MAX_REPO_NAME_LENGTH],
  ] as const) {
    if (part.length === 0 || part.length > max)
      return `has an ${what} of ${part.length} characters (1 to ${max})`;
    if (!NAME_PART.test(part))
      return `has an ${what} with characters other than letters, digits, '.', '_' and '-'`;
    if (/^\.+$/.test(part)) return `has an ${what} made only of dots`;
  }
  return undefined;
}

/**
 * Checks a branch or tag name by git's ref rules (git check-ref-format, plus git branch's "no
 * leading -"), bounded in length. Unicode is allowed, as git and GitHub allow it.
 */
export function assertRefName(value: string, path: string): string {
  const problem = refNameProblem(value);
  if (problem) {
    throw new WebhookRejectedError(
      400,
      `Refused: "${path}" ${quoted(value)} is not a valid git ref name: ${problem}.`,
    );
  }
  return value;
}

function refNameProblem(value: string): string | undefined {
  if (value.length === 0) return 'it is empty';
  if (Buffer.byteLength(value) > MAX_REF_NAME_BYTES) return `it is longer than ${MAX_REF_NAME_BYTES} bytes`;
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(value)) return 'it contains a control character';
  if (/[ ~^:?*[\\]/.test(value)) return 'it contains one of space ~ ^ : ? * [ \\';
  if (value.includes('..')) return 'it contains ".."';
  if (value.includes('//')) return 'it contains "//"';
  if (value.includes('@{')) return 'it contains "@{"';
  if (value === '@') return 'it is "@"';
  if (value.startsWith('-')) return 'it starts with "-"';
  if (value.startsWith('/') || value.endsWith('/')) return 'it starts or ends with "/"';
  if (value.endsWith('.')) return 'it ends with "."';
  for (const component of value.split('/')) {
    if (component.startsWith('.')) return 'a component starts with "."';
    if (component.endsWith('.lock')) return 'a component ends with ".lock"';
  }
  if (!isWellFormed(value)) return 'it is not well-formed unicode';
  return undefined;
}

function isWellFormed(value: string): boolean {
  // Lone surrogates cannot be encoded as UTF-8 (they would become U+FFFD in keys and statuses).
  return !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(value);
}

/** The value in a message: JSON-quoted (control characters escaped) and cut short. */
function quoted(value: string): string {
  return JSON.stringify(value.length > 120 ? `${value.slice(0, 120)}…` : value);
}

export function interpretEvent(event: string, payload: Record<string, unknown>): EventInterpretation {
  switch (event) {
    case 'ping':
      return { kind: 'ping' };
    case 'push':
      return interpretPush(payload);
    case 'pull_request':
      return interpretPullRequest(payload);
    case 'merge_group':
      return interpretMergeGroup(payload);
    case 'check_suite':
      return interpretCheckSuite(payload);
    case 'check_run':
      return interpretCheckRun(payload);
    case 'installation':
      return interpretInstallation(payload);
    case 'installation_repositories':
      return interpretInstallationRepositories(payload);
    default:
      return { kind: 'ignore', reason: `"${event}" events do not start builds` };
  }
}

function interpretPush(payload: Record<string, unknown>): EventInterpretation {
  const repository = objectAt(payload, 'repository');
  const repo = assertRepoName(stringAt(repository, 'full_name', 'repository.full_name'));
  const ref = stringAt(payload, 'ref');
  const after = stringAt(payload, 'after');
  if (payload.deleted === true || after === ZERO_SHA) {
    return { kind: 'ignore', reason: `${ref} was deleted: nothing to build`, repo };
  }
  if (!SHA.test(after))
    throw new WebhookRejectedError(400, 'Malformed push payload: "after" is not a commit SHA.');
  const branch = ref.startsWith('refs/heads/') ? ref.slice('refs/heads/'.length) : undefined;
  const tag = ref.startsWith('refs/tags/') ? ref.slice('refs/tags/'.length) : undefined;
  if (branch === undefined && tag === undefined) {
    return { kind: 'ignore', reason: `${quoted(ref)} is neither a branch nor a tag`, repo };
  }
  if (branch !== undefined) assertRefName(branch, 'ref (branch)');
  if (tag !== undefined) assertRefName(tag, 'ref (tag)');
  const headCommit = optionalObjectAt(payload, 'head_commit');
  const message = headCommit ? optionalStringAt(headCommit, 'message', 'head_commit.message') : undefined;
  const sender = optionalObjectAt(payload, 'sender');
  const pusher = optionalObjectAt(payload, 'pusher');
  const candidate: BuildCandidate = {
    repo,
    event: 'push',
    ref,
    sha: after,
    ...(branch !== undefined ? { branch } : {}),
    ...(tag !== undefined ? { tag } : {}),
    fork: false,
    privateRepo: repository.private === true,
    ...defaultBranchOf(repository),
    author:
      (sender && optionalStringAt(sender, 'login', 'sender.login')) ??
      (pusher && optionalStringAt(pusher, 'name', 'pusher.name')) ??
      'unknown',
    ...(message ? { commitTitle: firstLine(message) } : {}),
    ...optionalUrl(headCommit ? optionalStringAt(headCommit, 'url', 'head_commit.url') : undefined),
  };
  const marker = message ? SKIP_CI_MARKERS.find((skip) => message.toLowerCase().includes(skip)) : undefined;
  if (marker) return { kind: 'skip', reason: `the commit message asks to skip CI (${marker})`, candidate };
  return { kind: 'build', candidate };
}

function interpretPullRequest(payload: Record<string, unknown>): EventInterpretation {
  const repository = objectAt(payload, 'repository');
  const repo = assertRepoName(stringAt(repository, 'full_name', 'repository.full_name'));
  const action = stringAt(payload, 'action');
  if (!BUILD_PR_ACTIONS.includes(action)) {
    return { kind: 'ignore', reason: `pull_request "${action}" does not start builds`, repo };
  }
  const pullRequest = objectAt(payload, 'pull_request');
  const number = pullRequest.number;
  if (typeof number !== 'number' || !Number.isInteger(number) || number <= 0) {
    throw new WebhookRejectedError(
      400,
      'Malformed pull_request payload: "pull_request.number" is not a number.',
    );
  }
  const head = objectAt(pullRequest, 'head', 'pull_request.head');
  const base = objectAt(pullRequest, 'base', 'pull_request.base');
  const sha = stringAt(head, 'sha', 'pull_request.head.sha');
  if (!SHA.test(sha))
    throw new WebhookRejectedError(400, 'Malformed pull_request payload: head.sha is not a SHA.');
  // A fork that was deleted leaves head.repo null: treat it as a fork (untrusted).
  const headRepository = optionalObjectAt(head, 'repo', 'pull_request.head.repo');
  const headRepoName = headRepository
    ? optionalStringAt(headRepository, 'full_name', 'head.repo.full_name')
    : undefined;
  const headRepo = headRepoName
    ? assertRepoName(headRepoName, 'pull_request.head.repo.full_name')
    : undefined;
  const baseRepository = objectAt(base, 'repo', 'pull_request.base.repo');
  const baseRepo = assertRepoName(
    stringAt(baseRepository, 'full_name', 'pull_request.base.repo.full_name'),
    'pull_request.base.repo.full_name',
  );
  const user = optionalObjectAt(pullRequest, 'user', 'pull_request.user');
  const title = optionalStringAt(pullRequest, 'title', 'pull_request.title');
  return {
    kind: 'build',
    candidate: {
      repo,
      event: 'pull_request',
      ref: `refs/pull/${number}/head`,
      sha,
      branch: assertRefName(stringAt(head, 'ref', 'pull_request.head.ref'), 'pull_request.head.ref'),
      pr: number,
      baseBranch: assertRefName(stringAt(base, 'ref', 'pull_request.base.ref'), 'pull_request.base.ref'),
      ...(headRepo ? { headRepo } : {}),
      // A fork unless head, base and the repository built are one and the same.
      fork: headRepo !== baseRepo || baseRepo !== repo,
      privateRepo: repository.private === true,
      ...defaultBranchOf(repository),
      author: (user && optionalStringAt(user, 'login', 'pull_request.user.login')) ?? 'unknown',
      ...(title ? { commitTitle: firstLine(title) } : {}),
      ...optionalUrl(optionalStringAt(pullRequest, 'html_url', 'pull_request.html_url')),
    },
  };
}

/**
 * A merge queue's group: GitHub made a commit (the base plus the queued pull requests) on a
 * `gh-readonly-queue/<base>/…` branch and waits for its checks. Built as a push of that branch:
 * the code was approved into the queue, and the branch belongs to the repository.
 */
function interpretMergeGroup(payload: Record<string, unknown>): EventInterpretation {
  const repository = objectAt(payload, 'repository');
  const repo = assertRepoName(stringAt(repository, 'full_name', 'repository.full_name'));
  const action = stringAt(payload, 'action');
  if (action !== 'checks_requested') {
    return { kind: 'ignore', reason: `merge_group "${action}" does not start builds`, repo };
  }
  const group = objectAt(payload, 'merge_group');
  const sha = stringAt(group, 'head_sha', 'merge_group.head_sha');
  if (!SHA.test(sha)) throw malformed('merge_group.head_sha', 'a commit SHA');
  const ref = stringAt(group, 'head_ref', 'merge_group.head_ref');
  if (!ref.startsWith('refs/heads/')) throw malformed('merge_group.head_ref', 'a refs/heads/ ref');
  const branch = assertRefName(ref.slice('refs/heads/'.length), 'merge_group.head_ref');
  const headCommit = optionalObjectAt(group, 'head_commit', 'merge_group.head_commit');
  const message = headCommit
    ? optionalStringAt(headCommit, 'message', 'merge_group.head_commit.message')
    : undefined;
  const sender = optionalObjectAt(payload, 'sender');
  return {
    kind: 'build',
    unlessBuilt: true,
    candidate: {
      repo,
      event: 'push',
      ref,
      sha,
      branch,
      fork: false,
      privateRepo: repository.private === true,
      ...defaultBranchOf(repository),
      author: (sender && optionalStringAt(sender, 'login', 'sender.login')) ?? 'unknown',
      ...(message ? { commitTitle: firstLine(message) } : {}),
    },
  };
}

/**
 * `requested`: GitHub made a check suite for a commit (an App gets it beside the push): built once,
 * only when that commit of that branch has no build yet, and as untrusted code, since nothing in
 * the event proves the commit is the branch's own rather than a fork's (its push, when it comes,
 * builds it trusted and supersedes this build). `rerequested`: "Re-run all checks".
 */
function interpretCheckSuite(payload: Record<string, unknown>): EventInterpretation {
  const repository = objectAt(payload, 'repository');
  const repo = assertRepoName(stringAt(repository, 'full_name', 'repository.full_name'));
  const action = stringAt(payload, 'action');
  const suite = objectAt(payload, 'check_suite');
  const sha = stringAt(suite, 'head_sha', 'check_suite.head_sha');
  if (!SHA.test(sha)) throw malformed('check_suite.head_sha', 'a commit SHA');
  const sender = optionalObjectAt(payload, 'sender');
  const login = (sender && optionalStringAt(sender, 'login', 'sender.login')) ?? 'unknown';
  if (action === 'rerequested') return { kind: 'rerun', request: { repo, sha, sender: login } };
  if (action !== 'requested') {
    return { kind: 'ignore', reason: `check_suite "${action}" does not start builds`, repo };
  }
  const headBranch = optionalStringAt(suite, 'head_branch', 'check_suite.head_branch');
  if (!headBranch) {
    return {
      kind: 'ignore',
      reason:
        'the check suite names no branch (a pull request from a fork builds from its pull_request event)',
      repo,
    };
  }
  const branch = assertRefName(headBranch, 'check_suite.head_branch');
  const headCommit = optionalObjectAt(suite, 'head_commit', 'check_suite.head_commit');
  const message = headCommit
    ? optionalStringAt(headCommit, 'message', 'check_suite.head_commit.message')
    : undefined;
  const candidate: BuildCandidate = {
    repo,
    event: 'push',
    ref: `refs/heads/${branch}`,
    sha,
    branch,
    fork: false,
    privateRepo: repository.private === true,
    ...defaultBranchOf(repository),
    author: login,
    ...(message ? { commitTitle: firstLine(message) } : {}),
  };
  const marker = message ? SKIP_CI_MARKERS.find((skip) => message.toLowerCase().includes(skip)) : undefined;
  if (marker) return { kind: 'skip', reason: `the commit message asks to skip CI (${marker})`, candidate };
  return { kind: 'build', candidate, unlessBuilt: true, untrusted: true };
}

/**
 * "Re-run" on one check run: the build its `external_id` names (`owner/repo#number`), or one job
 * of it (`owner/repo#number/<job id>`, a job's run: only that job runs again).
 */
function interpretCheckRun(payload: Record<string, unknown>): EventInterpretation {
  const repository = objectAt(payload, 'repository');
  const repo = assertRepoName(stringAt(repository, 'full_name', 'repository.full_name'));
  const action = stringAt(payload, 'action');
  if (action !== 'rerequested' && action !== 'requested_action') {
    return { kind: 'ignore', reason: `check_run "${action}" does not start builds`, repo };
  }
  const run = objectAt(payload, 'check_run');
  const sha = stringAt(run, 'head_sha', 'check_run.head_sha');
  if (!SHA.test(sha)) throw malformed('check_run.head_sha', 'a commit SHA');
  const externalId = optionalStringAt(run, 'external_id', 'check_run.external_id') ?? '';
  const approval = interpretApproval(payload, action, repo, sha, externalId);
  if (approval) return approval;
  const named = /^(.+)#([1-9][0-9]{0,15})(?:\/(.+))?$/.exec(externalId);
  const sender = optionalObjectAt(payload, 'sender');
  const job = named?.[3];
  const ours = named !== null && named[1] === repo && (job === undefined || isJobId(job));
  return {
    kind: 'rerun',
    request: {
      repo,
      sha,
      ...(ours ? { number: Number(named[2]) } : {}),
      ...(ours && job !== undefined ? { job } : {}),
      sender: (sender && optionalStringAt(sender, 'login', 'sender.login')) ?? 'unknown',
    },
  };
}

/**
 * A click on a held commit's check run: its "Approve and run" button (`requested_action` with the
 * `approve` identifier), or "Re-run" of that run (`rerequested` of the run whose external id is
 * `owner/repo#approval`). Undefined when the event is about something else (a build's re-run).
 */
function interpretApproval(
  payload: Record<string, unknown>,
  action: string,
  repo: string,
  sha: string,
  externalId: string,
): EventInterpretation | undefined {
  if (action === 'requested_action') {
    const requested = objectAt(payload, 'requested_action');
    const identifier = stringAt(requested, 'identifier', 'requested_action.identifier');
    if (identifier !== APPROVE_IDENTIFIER) {
      return { kind: 'ignore', reason: `check run action ${quoted(identifier)} is not Lambkin's`, repo };
    }
  } else if (externalId.toLowerCase() !== `${repo}${APPROVAL_EXTERNAL_ID_SUFFIX}`.toLowerCase()) {
    return undefined;
  }
  const sender = objectAt(payload, 'sender');
  return { kind: 'approve', request: { repo, sha, sender: stringAt(sender, 'login', 'sender.login') } };
}

/**
 * The App's installation: `created` (with the repositories it reaches), `deleted`, `suspend`,
 * `unsuspend`. `new_permissions_accepted` changes no repository.
 */
function interpretInstallation(payload: Record<string, unknown>): EventInterpretation {
  const action = stringAt(payload, 'action');
  const { installationId, account } = installationOf(payload);
  const base = { installationId, account, added: [], removed: [] };
  switch (action) {
    case 'created':
      return { kind: 'installation', change: { ...base, added: repositoriesAt(payload, 'repositories') } };
    case 'deleted':
      return {
        kind: 'installation',
        change: { ...base, removed: repositoriesAt(payload, 'repositories'), deleted: true },
      };
    case 'suspend':
      return { kind: 'installation', change: { ...base, suspended: true } };
    case 'unsuspend':
      return { kind: 'installation', change: { ...base, suspended: false } };
    default:
      return { kind: 'ignore', reason: `installation "${action}" changes no repository` };
  }
}

/** Repositories given to (`added`) or taken from (`removed`) an installation. */
function interpretInstallationRepositories(payload: Record<string, unknown>): EventInterpretation {
  const action = stringAt(payload, 'action');
  const { installationId, account } = installationOf(payload);
  if (action !== 'added' && action !== 'removed') {
    return { kind: 'ignore', reason: `installation_repositories "${action}" changes no repository` };
  }
  return {
    kind: 'installation',
    change: {
      installationId,
      account,
      added: repositoriesAt(payload, 'repositories_added'),
      removed: repositoriesAt(payload, 'repositories_removed'),
    },
  };
}

function installationOf(payload: Record<string, unknown>): { installationId: number; account: string } {
  const installation = objectAt(payload, 'installation');
  const installationId = installationIdAt(installation);
  const owner = objectAt(installation, 'account', 'installation.account');
  // An enterprise account has a slug rather than a login.
  const account =
    optionalStringAt(owner, 'login', 'installation.account.login') ??
    optionalStringAt(owner, 'slug', 'installation.account.slug');
  if (!account) throw malformed('installation.account.login', 'a non-empty string');
  return { installationId, account };
}

function installationIdAt(installation: Record<string, unknown>): number {
  const id = installation.id;
  if (typeof id !== 'number' || !Number.isSafeInteger(id) || id <= 0) {
    throw malformed('installation.id', 'a positive integer');
  }
  return id;
}

/** The `full_name` of each repository listed at `key` (absent: none), each checked. */
function repositoriesAt(payload: Record<string, unknown>, key: string): string[] {
  const list = payload[key];
  if (list === undefined || list === null) return [];
  if (!Array.isArray(list)) throw malformed(key, 'an array of repositories');
  return list.map((item: unknown, index) => {
    const path = `${key}[${index}]`;
    if (typeof item !== 'object' || item === null || Array.isArray(item)) throw malformed(path, 'an object');
    const name = stringAt(item as Record<string, unknown>, 'full_name', `${path}.full_name`);
    return assertRepoName(name, `${path}.full_name`);
  });
}

/**
 * The installation an App's delivery came through (`installation.id`, in every event GitHub
 * delivers to an App); undefined when the payload names none (a repository webhook). A present but
 * malformed one is refused with a 400.
 */
export function installationIdOf(payload: unknown): number | undefined {
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) return undefined;
  const installation = optionalObjectAt(payload as Record<string, unknown>, 'installation');
  return installation ? installationIdAt(installation) : undefined;
}

/** What every build takes from `repository`: its default branch and clone URL. */
function defaultBranchOf(repository: Record<string, unknown>): { defaultBranch?: string; cloneUrl?: string } {
  const value = optionalStringAt(repository, 'default_branch', 'repository.default_branch');
  if (value) assertRefName(value, 'repository.default_branch');
  const cloneUrl = optionalStringAt(repository, 'clone_url', 'repository.clone_url');
  return {
    ...(value ? { defaultBranch: value } : {}),
    ...(cloneUrl && /^https?:\/\//.test(cloneUrl) ? { cloneUrl } : {}),
  };
}

function optionalUrl(url: string | undefined): { htmlUrl?: string } {
  return url && /^https?:\/\//.test(url) ? { htmlUrl: url } : {};
}

function firstLine(text: string): string {
  return (text.split('\n')[0] ?? '').trim().slice(0, 200);
}

function malformed(path: string, expected: string): WebhookRejectedError {
  return new WebhookRejectedError(400, `Malformed payload: "${path}" should be ${expected}.`);
}

function objectAt(parent: Record<string, unknown>, key: string, path = key): Record<string, unknown> {
  const value = optionalObjectAt(parent, key, path);
  if (!value) throw malformed(path, 'an object');
  return value;
}

function optionalObjectAt(
  parent: Record<string, unknown>,
  key: string,
  path = key,
): Record<string, unknown> | undefined {
  const value = parent[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'object' || Array.isArray(value)) throw malformed(path, 'an object');
  return value as Record<string, unknown>;
}

function stringAt(parent: Record<string, unknown>, key: string, path = key): string {
  const value = optionalStringAt(parent, key, path);
  if (!value) throw malformed(path, 'a non-empty string');
  return value;
}

function optionalStringAt(parent: Record<string, unknown>, key: string, path = key): string | undefined {
  const value = parent[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw malformed(path, 'a string');
  return value;
}
