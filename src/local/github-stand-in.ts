/**
 * A loopback stand-in for the GitHub REST API: the few endpoints Lambkin calls, answered the way
 * GitHub answers them (status codes, headers, error bodies, the tarball redirect to a short-lived
 * download URL). Used by the local demo and by the tests. Shapes follow @octokit/fixtures and are
 * checked against GitHub's OpenAPI description in tests/support/github-server.test.ts.
 * Repositories are real git repositories (createGitRepo, createGitRepoFromDirectory). Repository
 * webhooks (`/repos/{owner}/{repo}/hooks`) are kept in memory, as GitHub.com validates them.
 *
 * Authentication, as GitHub does it:
 * - a wrong token (or a malformed Authorization header) is answered 401 `Bad credentials`;
 * - no Authorization header is an anonymous caller: it reads public repositories, sees private
 *   ones as 404, and is refused writes with 401 `Requires authentication`;
 * - when the stand-in has no `token` configured, any token is accepted.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  chmod,
  lstat,
  mkdir,
  mkdtemp,
  readFile,
  readdir,
  readlink,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, posix } from 'node:path';

// ---------------------------------------------------------------------------------------------
// Git repositories
// ---------------------------------------------------------------------------------------------

/** A file to commit: its text or bytes, an executable file, or a symbolic link. */
export type GitFile =
  string | Uint8Array | { content: string | Uint8Array; executable: true } | { symlink: string };
/** Files to write (path → content) or delete (path → null) before committing. */
export type GitFiles = Record<string, GitFile | null>;

export interface GitRepo {
  dir: string;
  sha: string;
  branch: string;
}

/** This git must not read the developer's config, hooks or signing keys. */
const GIT_ENV = {
  ...process.env,
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_CONFIG_GLOBAL: '/dev/null',
  GIT_AUTHOR_NAME: 'Lambkin Test',
  GIT_AUTHOR_EMAIL: 'test@lambkin.invalid',
  GIT_COMMITTER_NAME: 'Lambkin Test',
  GIT_COMMITTER_EMAIL: 'test@lambkin.invalid',
  GIT_TERMINAL_PROMPT: '0',
};

function runGit(dir: string, args: string[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    execFile(
      'git',
      ['-C', dir, ...args],
      { env: GIT_ENV, encoding: 'buffer', maxBuffer: 512 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error) {
          reject(
            new Error(`git ${args.join(' ')} failed in ${dir}: ${stderr.toString().trim() || error.message}`),
          );
        } else {
          resolve(stdout);
        }
      },
    );
  });
}

async function gitText(dir: string, args: string[]): Promise<string> {
  return (await runGit(dir, args)).toString('utf8').trim();
}

/** Writes `files` into the work tree of `dir`, commits everything and returns the new commit's sha. */
export async function commitFiles(dir: string, files: GitFiles, message = 'Update files'): Promise<string> {
  for (const [path, file] of Object.entries(files)) {
    const target = join(dir, path);
    await rm(target, { force: true, recursive: true });
    if (file === null) continue;
    await mkdir(dirname(target), { recursive: true });
    if (typeof file === 'string' || file instanceof Uint8Array) {
      await writeFile(target, file);
    } else if ('symlink' in file) {
      await symlink(file.symlink, target);
    } else {
      await writeFile(target, file.content);
      await chmod(target, 0o755);
    }
  }
  await runGit(dir, ['add', '--all']);
  await runGit(dir, ['commit', '--quiet', '--allow-empty', '--no-gpg-sign', '-m', message]);
  return gitText(dir, ['rev-parse', 'HEAD']);
}

/** Makes a git repository in a new temporary folder with one commit of `files`. */
export async function createGitRepo(
  files: GitFiles,
  options: { message?: string; branch?: string } = {},
): Promise<GitRepo> {
  const branch = options.branch ?? 'main';
  const dir = await mkdtemp(join(tmpdir(), 'lambkin-git-'));
  await runGit(dir, ['init', '--quiet', `--initial-branch=${branch}`]);
  const sha = await commitFiles(dir, files, options.message ?? 'Initial commit');
  return { dir, sha, branch };
}

/** Never copied into a repository made from a folder: installed packages and another repository. */
const SKIPPED_FOLDER_NAMES = new Set(['node_modules', '.git']);

/** Reads the files under `root` as GitFiles (keeping executable bits and symbolic links). */
async function readDirectoryFiles(root: string, under = ''): Promise<GitFiles> {
  const files: GitFiles = {};
  const entries = await readdir(join(root, under), { withFileTypes: true });
  for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    // Git paths use `/` whatever the platform.
    const path = under === '' ? entry.name : posix.join(under, entry.name);
    const source = join(root, path);
    if (entry.isDirectory()) {
      if (!SKIPPED_FOLDER_NAMES.has(entry.name)) Object.assign(files, await readDirectoryFiles(root, path));
    } else if (entry.isSymbolicLink()) {
      files[path] = { symlink: await readlink(source) };
    } else if (entry.isFile()) {
      const content = await readFile(source);
      files[path] = ((await lstat(source)).mode & 0o111) !== 0 ? { content, executable: true } : content;
    }
  }
  return files;
}

/**
 * Makes a git repository in a new temporary folder with one commit of the files under `dir`
 * (without `node_modules` and `.git` folders); `dir` itself is left as it is.
 */
export async function createGitRepoFromDirectory(
  dir: string,
  options: { message?: string; branch?: string } = {},
): Promise<GitRepo> {
  const files = await readDirectoryFiles(dir);
  if (Object.keys(files).length === 0) throw new Error(`${dir} has no files to commit.`);
  return createGitRepo(files, options);
}

// ---------------------------------------------------------------------------------------------
// The stand-in
// ---------------------------------------------------------------------------------------------

export interface RecordedRequest {
  method: string;
  /** Path without the query string, as sent (still percent-encoded). */
  path: string;
  query: Record<string, string>;
  headers: IncomingHttpHeaders;
  /** The parsed JSON body; undefined when there was none or it was not JSON. */
  body: unknown;
  rawBody: string;
  /** Epoch ms when the request arrived. */
  time: number;
  /** The status answered; undefined while pending or when the connection was reset. */
  status?: number;
}

export interface RepositoryDefinition {
  owner: string;
  name: string;
  private?: boolean;
  /** Defaults to `main`. */
  defaultBranch?: string;
  /** A git repository (see createGitRepo) whose commits the stand-in serves. */
  gitDir: string;
  description?: string;
}

/** A commit status as the API returns it. */
export interface CommitStatusRecord {
  url: string;
  avatar_url: string | null;
  id: number;
  node_id: string;
  state: 'error' | 'failure' | 'pending' | 'success';
  description: string | null;
  target_url: string | null;
  context: string;
  created_at: string;
  updated_at: string;
  creator: SimpleUser;
}

/**
 * - `500`, `502`: a server error (502 with GitHub's HTML body, not JSON).
 * - `rate-limit`: 403 with the primary rate limit spent (`x-ratelimit-remaining: 0`, reset soon).
 * - `429`: the secondary rate limit, with `retry-after`.
 * - `slow`: answers normally after `delayMs`.
 * - `reset`: reads the request, then destroys the connection without answering.
 */
export type FaultMode = '500' | '502' | 'rate-limit' | '429' | 'slow' | 'reset';

export interface Fault {
  mode: FaultMode;
  /** How many matching requests fail; default 1. */
  times?: number;
  /** Only requests with this method (any when omitted). */
  method?: string;
  /** Only requests whose path matches. */
  path?: RegExp;
  /** `slow`: delay before answering; default 5000, at most 60000. */
  delayMs?: number;
  /** `429`: the `retry-after` seconds; default 1. */
  retryAfterSeconds?: number;
  /** `rate-limit`: seconds until `x-ratelimit-reset`; default 1. */
  resetInSeconds?: number;
}

/** A commit status the stand-in has just created, as told to `onStatus`. */
export interface CreatedStatus {
  /** `owner/name`, as the repository was added. */
  repo: string;
  /** The full sha of the commit. */
  sha: string;
  state: CommitStatusRecord['state'];
  description: string | null;
  target_url: string | null;
  context: string;
}

/** A repository webhook as the stand-in keeps it (`secret` in clear, unlike the API's answers). */
export interface StoredHook {
  id: number;
  active: boolean;
  events: string[];
  config: { url: string; content_type: 'json' | 'form'; insecure_ssl: '0' | '1'; secret?: string };
  created_at: string;
  updated_at: string;
}

export interface GitHubServerOptions {
  /** The only token accepted. Without one, any token is. */
  token?: string;
  /** How long a private repository's archive download URL works; default 5 minutes, as GitHub. */
  archiveUrlTtlMs?: number;
  /** Login of the token's user (the creator of statuses). */
  login?: string;
  /**
   * Called for each commit status created, before the answer is sent (the demo shows progress
   * with it). An error it throws is reported on the console and does not change the answer.
   */
  onStatus?: (status: CreatedStatus) => void;
}

export interface GitHubStandIn {
  /** Base URL to use as the API URL (`GITHUB_API_URL`). */
  url: string;
  requests: RecordedRequest[];
  addRepository(definition: RepositoryDefinition): void;
  /** Statuses of a commit, newest first (`repo` is `owner/name`). */
  statusesFor(repo: string, sha: string): CommitStatusRecord[];
  /** Webhooks of a repository, oldest first, secrets included (`repo` is `owner/name`). */
  hooksOf(repo: string): StoredHook[];
  /** Makes the next matching requests fail; faults are used in the order they were added. */
  failNext(fault: Fault): void;
  /** How many injected failures are still waiting for a request. */
  pendingFaults(): number;
  /** Drops the injected failures no request has used yet. */
  clearFaults(): void;
  close(): Promise<void>;
}

interface SimpleUser {
  login: string;
  id: number;
  node_id: string;
  avatar_url: string;
  gravatar_id: string;
  url: string;
  html_url: string;
  followers_url: string;
  following_url: string;
  gists_url: string;
  starred_url: string;
  subscriptions_url: string;
  organizations_url: string;
  repos_url: string;
  events_url: string;
  received_events_url: string;
  type: 'User' | 'Organization';
  site_admin: boolean;
}

interface Repository extends Required<Omit<RepositoryDefinition, 'description'>> {
  id: number;
  description: string | null;
  createdAt: string;
  statuses: Map<string, CommitStatusRecord[]>;
  hooks: Map<number, StoredHook>;
}

interface Caller {
  authenticated: boolean;
  /** Rate limit bucket. */
  identity: string;
}

interface RateWindow {
  limit: number;
  used: number;
  /** Epoch seconds. */
  reset: number;
}

type ActiveFault = Required<Pick<Fault, 'mode' | 'times'>> & Fault;

const DOCS = 'https://docs.github.com/rest';
const STATUS_DOCS = 'https://docs.github.com/rest/commits/statuses#create-a-commit-status';
const HOOKS_DOCS = 'https://docs.github.com/rest/repos/webhooks';
/** A sample of GitHub's webhook events (and `*`, all of them): others are refused as unknown. */
const HOOK_EVENTS = new Set([
  '*',
  'check_run',
  'check_suite',
  'create',
  'delete',
  'deployment',
  'deployment_status',
  'issue_comment',
  'issues',
  'label',
  'member',
  'meta',
  'ping',
  'public',
  'pull_request',
  'pull_request_review',
  'pull_request_review_comment',
  'push',
  'release',
  'repository',
  'status',
  'workflow_dispatch',
  'workflow_run',
]);
/** GitHub.com delivers webhooks over the public Internet only. */
const PRIVATE_HOSTS =
  /^(?:localhost|.*\.localhost|127(?:\.\d{1,3}){3}|10(?:\.\d{1,3}){3}|192\.168(?:\.\d{1,3}){2}|172\.(?:1[6-9]|2\d|3[01])(?:\.\d{1,3}){2}|0\.0\.0\.0|\[::1?\])$/i;
const RATE_LIMIT_DOCS = 'https://docs.github.com/rest/overview/rate-limits-for-the-rest-api';
const SECONDARY_RATE_LIMIT_DOCS =
  'https://docs.github.com/free-pro-team@latest/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits';
const STATUS_STATES = ['error', 'failure', 'pending', 'success'] as const;
/** GitHub refuses longer descriptions with 422. */
const MAX_DESCRIPTION_LENGTH = 140;
/** Files above this size come without content in the JSON answer (`encoding: none`). */
const MAX_INLINE_CONTENT_BYTES = 1024 * 1024;
const MAX_FAULT_DELAY_MS = 60_000;
const CODELOAD_PREFIX = '/_codeload';

const EXPOSED_HEADERS =
  'ETag, Link, Location, Retry-After, X-GitHub-OTP, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Used, X-RateLimit-Resource, X-RateLimit-Reset, X-OAuth-Scopes, X-Accepted-OAuth-Scopes, X-Poll-Interval, X-GitHub-Media-Type, X-GitHub-SSO, X-GitHub-Request-Id, Deprecation, Sunset';

/** GitHub's timestamps: ISO 8601 in UTC, whole seconds. */
function timestamp(at = Date.now()): string {
  return new Date(at).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** Like GitHub's `x-github-request-id`: five colon-separated upper-case hex groups. */
function newRequestId(): string {
  return [2, 3, 4, 4, 4].map((bytes) => randomBytes(bytes).toString('hex').toUpperCase()).join(':');
}

function nodeId(kind: string, id: number): string {
  return Buffer.from(`0:${kind}${id}`).toString('base64');
}

function parseAuthorization(header: string | undefined): string | undefined | null {
  if (header === undefined) return undefined;
  const match = /^(?:token|bearer)\s+(\S+)\s*$/i.exec(header);
  return match?.[1] ?? null; // null: present but malformed
}

class RouteError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly documentationUrl = DOCS,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

const notFound = (): RouteError => new RouteError(404, 'Not Found');

export async function startGitHubServer(options: GitHubServerOptions = {}): Promise<GitHubStandIn> {
  const archiveUrlTtlMs = options.archiveUrlTtlMs ?? 5 * 60_000;
  const login = options.login ?? 'lambkin-test-bot';
  const repositories = new Map<string, Repository>();
  const requests: RecordedRequest[] = [];
  const faults: ActiveFault[] = [];
  const rateWindows = new Map<string, RateWindow>();
  const archiveTokens = new Map<string, { repoKey: string; expiresAt: number }>();
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const startedAt = timestamp();
  let nextRepositoryId = 1000;
  let nextStatusId = 1;
  let nextHookId = 1;
  let baseUrl = '';

  const user = (name: string, id: number, type: SimpleUser['type']): SimpleUser => ({
    login: name,
    id,
    node_id: nodeId('User', id),
    avatar_url: `${baseUrl}/_avatars/u/${id}`,
    gravatar_id: '',
    url: `${baseUrl}/users/${name}`,
    html_url: `${baseUrl}/${name}`,
    followers_url: `${baseUrl}/users/${name}/followers`,
    following_url: `${baseUrl}/users/${name}/following{/other_user}`,
    gists_url: `${baseUrl}/users/${name}/gists{/gist_id}`,
    starred_url: `${baseUrl}/users/${name}/starred{/owner}{/repo}`,
    subscriptions_url: `${baseUrl}/users/${name}/subscriptions`,
    organizations_url: `${baseUrl}/users/${name}/orgs`,
    repos_url: `${baseUrl}/users/${name}/repos`,
    events_url: `${baseUrl}/users/${name}/events{/privacy}`,
    received_events_url: `${baseUrl}/users/${name}/received_events`,
    type,
    site_admin: false,
  });

  // --- callers and rate limits ----------------------------------------------------------------

  function identify(request: IncomingMessage): Caller {
    const presented = parseAuthorization(request.headers.authorization);
    if (presented === undefined)
      return { authenticated: false, identity: `anonymous:${request.socket.remoteAddress}` };
    if (presented === null || (options.token !== undefined && presented !== options.token)) {
      throw new RouteError(401, 'Bad credentials');
    }
    return { authenticated: true, identity: `token:${presented}` };
  }

  function rateWindow(caller: Caller): RateWindow {
    const now = Math.floor(Date.now() / 1000);
    let window = rateWindows.get(caller.identity);
    if (!window || window.reset <= now) {
      window = { limit: caller.authenticated ? 5000 : 60, used: 0, reset: now + 3600 };
      rateWindows.set(caller.identity, window);
    }
    return window;
  }

  function rateLimitHeaders(window: RateWindow): Record<string, string> {
    return {
      'x-ratelimit-limit': String(window.limit),
      'x-ratelimit-remaining': String(Math.max(window.limit - window.used, 0)),
      'x-ratelimit-reset': String(window.reset),
      'x-ratelimit-used': String(window.used),
      'x-ratelimit-resource': 'core',
    };
  }

  // --- answers --------------------------------------------------------------------------------

  function baseHeaders(requestId: string): Record<string, string> {
    return {
      'access-control-allow-origin': '*',
      'access-control-expose-headers': EXPOSED_HEADERS,
      'content-security-policy': "default-src 'none'",
      'referrer-policy': 'origin-when-cross-origin, strict-origin-when-cross-origin',
      'strict-transport-security': 'max-age=31536000; includeSubdomains; preload',
      'x-content-type-options': 'nosniff',
      'x-frame-options': 'deny',
      'x-xss-protection': '0',
      'x-github-api-version-selected': '2022-11-28',
      'x-github-request-id': requestId,
    };
  }

  function send(
    response: ServerResponse,
    status: number,
    headers: Record<string, string>,
    body: string | Buffer = '',
  ): void {
    if (response.destroyed || response.headersSent) return;
    const payload = typeof body === 'string' ? Buffer.from(body) : body;
    response.writeHead(status, { ...headers, 'content-length': String(payload.length) });
    response.end(payload);
  }

  function sendJson(
    response: ServerResponse,
    status: number,
    headers: Record<string, string>,
    body: unknown,
  ): void {
    const text = JSON.stringify(body);
    const etag: Record<string, string> =
      status < 300 ? { etag: `W/"${createHash('sha256').update(text).digest('hex').slice(0, 32)}"` } : {};
    send(
      response,
      status,
      {
        ...headers,
        ...etag,
        'content-type': 'application/json; charset=utf-8',
        'x-github-media-type': 'github.v3; format=json',
      },
      text,
    );
  }

  function errorBody(status: number, message: string, documentationUrl: string, extra = {}): unknown {
    return { message, ...extra, documentation_url: documentationUrl, status: String(status) };
  }

  // --- repositories ---------------------------------------------------------------------------

  const repoKey = (owner: string, name: string): string => `${owner}/${name}`.toLowerCase();

  function visibleRepository(owner: string, name: string, caller: Caller): Repository {
    const repository = repositories.get(repoKey(owner, name));
    // GitHub hides private repositories from callers without access: 404, not 403.
    if (!repository || (repository.private && !caller.authenticated)) throw notFound();
    return repository;
  }

  async function resolveCommit(repository: Repository, ref: string): Promise<string | undefined> {
    if (ref === '' || ref.startsWith('-')) return undefined; // never an option to git
    try {
      return await gitText(repository.gitDir, ['rev-parse', '--verify', '--quiet', `${ref}^{commit}`]);
    } catch {
      return undefined;
    }
  }

  function repositoryJson(repository: Repository, caller: Caller): Record<string, unknown> {
    const fullName = `${repository.owner}/${repository.name}`;
    const api = `${baseUrl}/repos/${fullName}`;
    const html = `${baseUrl}/${fullName}`;
    const owner = user(repository.owner, repository.id + 100_000, 'User');
    return {
      id: repository.id,
      node_id: nodeId('Repository', repository.id),
      name: repository.name,
      full_name: fullName,
      private: repository.private,
      owner,
      html_url: html,
      description: repository.description,
      fork: false,
      url: api,
      forks_url: `${api}/forks`,
      keys_url: `${api}/keys{/key_id}`,
      collaborators_url: `${api}/collaborators{/collaborator}`,
      teams_url: `${api}/teams`,
      hooks_url: `${api}/hooks`,
      issue_events_url: `${api}/issues/events{/number}`,
      events_url: `${api}/events`,
      assignees_url: `${api}/assignees{/user}`,
      branches_url: `${api}/branches{/branch}`,
      tags_url: `${api}/tags`,
      blobs_url: `${api}/git/blobs{/sha}`,
      git_tags_url: `${api}/git/tags{/sha}`,
      git_refs_url: `${api}/git/refs{/sha}`,
      trees_url: `${api}/git/trees{/sha}`,
      statuses_url: `${api}/statuses/{sha}`,
      languages_url: `${api}/languages`,
      stargazers_url: `${api}/stargazers`,
      contributors_url: `${api}/contributors`,
      subscribers_url: `${api}/subscribers`,
      subscription_url: `${api}/subscription`,
      commits_url: `${api}/commits{/sha}`,
      git_commits_url: `${api}/git/commits{/sha}`,
      comments_url: `${api}/comments{/number}`,
      issue_comment_url: `${api}/issues/comments{/number}`,
      contents_url: `${api}/contents/{+path}`,
      compare_url: `${api}/compare/{base}...{head}`,
      merges_url: `${api}/merges`,
      archive_url: `${api}/{archive_format}{/ref}`,
      downloads_url: `${api}/downloads`,
      issues_url: `${api}/issues{/number}`,
      pulls_url: `${api}/pulls{/number}`,
      milestones_url: `${api}/milestones{/number}`,
      notifications_url: `${api}/notifications{?since,all,participating}`,
      labels_url: `${api}/labels{/name}`,
      releases_url: `${api}/releases{/id}`,
      deployments_url: `${api}/deployments`,
      created_at: repository.createdAt,
      updated_at: repository.createdAt,
      pushed_at: repository.createdAt,
      git_url: `${html}.git`.replace(/^https?:/, 'git:'),
      ssh_url: `git@127.0.0.1:${fullName}.git`,
      clone_url: `${html}.git`,
      svn_url: html,
      homepage: null,
      size: 0,
      stargazers_count: 0,
      watchers_count: 0,
      language: null,
      has_issues: true,
      has_projects: true,
      has_downloads: true,
      has_wiki: true,
      has_pages: false,
      has_discussions: false,
      forks_count: 0,
      mirror_url: null,
      archived: false,
      disabled: false,
      open_issues_count: 0,
      license: null,
      allow_forking: true,
      is_template: false,
      web_commit_signoff_required: false,
      topics: [],
      visibility: repository.private ? 'private' : 'public',
      forks: 0,
      open_issues: 0,
      watchers: 0,
      default_branch: repository.defaultBranch,
      // GitHub tells only authenticated callers what they may do.
      ...(caller.authenticated
        ? { permissions: { admin: true, maintain: true, push: true, triage: true, pull: true } }
        : {}),
      network_count: 0,
      subscribers_count: 0,
    };
  }

  // --- routes ---------------------------------------------------------------------------------

  interface Context {
    request: IncomingMessage;
    response: ServerResponse;
    recorded: RecordedRequest;
    caller: Caller;
    headers: Record<string, string>;
    segments: string[];
    query: URLSearchParams;
  }

  async function getRepository(context: Context, owner: string, name: string): Promise<void> {
    const repository = visibleRepository(owner, name, context.caller);
    sendJson(
      context.response,
      200,
      { ...context.headers, 'cache-control': 'private, max-age=60, s-maxage=60' },
      repositoryJson(repository, context.caller),
    );
  }

  async function createStatus(context: Context, owner: string, name: string, sha: string): Promise<void> {
    if (!context.caller.authenticated) throw new RouteError(401, 'Requires authentication', STATUS_DOCS);
    const repository = visibleRepository(owner, name, context.caller);
    const body = context.recorded.body;
    if (context.recorded.rawBody !== '' && body === undefined) {
      throw new RouteError(400, 'Problems parsing JSON', STATUS_DOCS);
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw new RouteError(422, 'Invalid request.\n\n"state" wasn\'t supplied.', STATUS_DOCS);
    }
    const fields = body as Record<string, unknown>;
    const invalid = (field: string, message: string, code = 'custom'): RouteError =>
      new RouteError(422, 'Validation Failed', STATUS_DOCS, {
        errors: [{ resource: 'Status', code, field, message }],
      });
    if (!(STATUS_STATES as readonly unknown[]).includes(fields.state)) {
      throw invalid('state', 'state is not included in the list');
    }
    for (const field of ['description', 'target_url', 'context']) {
      const value = fields[field];
      if (value !== undefined && value !== null && typeof value !== 'string') {
        throw invalid(field, `${field} must be a string`, 'invalid');
      }
    }
    const description = (fields.description as string | null | undefined) ?? null;
    if (description !== null && [...description].length > MAX_DESCRIPTION_LENGTH) {
      throw invalid(
        'description',
        `description is too long (maximum is ${MAX_DESCRIPTION_LENGTH} characters)`,
      );
    }
    const commit = /^[0-9a-f]{40}$/i.test(sha) ? await resolveCommit(repository, sha) : undefined;
    if (commit === undefined) throw new RouteError(422, `No commit found for SHA: ${sha}`, STATUS_DOCS);
    const id = nextStatusId++;
    const now = timestamp();
    const status: CommitStatusRecord = {
      url: `${baseUrl}/repos/${repository.owner}/${repository.name}/statuses/${commit}`,
      avatar_url: `${baseUrl}/_avatars/u/1`,
      id,
      node_id: nodeId('StatusContext', id),
      state: fields.state as CommitStatusRecord['state'],
      description,
      target_url: (fields.target_url as string | null | undefined) ?? null,
      context: (fields.context as string | undefined) ?? 'default',
      created_at: now,
      updated_at: now,
      creator: user(login, 1, 'User'),
    };
    const list = repository.statuses.get(commit) ?? [];
    list.unshift(status);
    repository.statuses.set(commit, list);
    notifyStatus(repository, commit, status);
    sendJson(context.response, 201, { ...context.headers, location: status.url }, status);
  }

  function notifyStatus(repository: Repository, sha: string, status: CommitStatusRecord): void {
    if (!options.onStatus) return;
    try {
      options.onStatus({
        repo: `${repository.owner}/${repository.name}`,
        sha,
        state: status.state,
        description: status.description,
        target_url: status.target_url,
        context: status.context,
      });
    } catch (error) {
      // The status exists now: a listener's bug must not turn into GitHub's answer.
      console.error("The GitHub stand-in's onStatus listener failed:", error);
    }
  }

  async function listStatuses(context: Context, owner: string, name: string, ref: string): Promise<void> {
    const repository = visibleRepository(owner, name, context.caller);
    const commit = await resolveCommit(repository, ref);
    if (commit === undefined) throw notFound();
    const all = repository.statuses.get(commit) ?? [];
    const perPage = Math.min(Math.max(Number(context.query.get('per_page') ?? 30) || 30, 1), 100);
    const page = Math.max(Number(context.query.get('page') ?? 1) || 1, 1);
    const lastPage = Math.max(Math.ceil(all.length / perPage), 1);
    const headers: Record<string, string> = {
      ...context.headers,
      'cache-control': 'private, max-age=60, s-maxage=60',
    };
    if (page < lastPage) {
      const pageUrl = (n: number): string =>
        `${baseUrl}/repos/${repository.owner}/${repository.name}/commits/${encodeURIComponent(ref)}/statuses?per_page=${perPage}&page=${n}`;
      headers.link = `<${pageUrl(page + 1)}>; rel="next", <${pageUrl(lastPage)}>; rel="last"`;
    }
    sendJson(context.response, 200, headers, all.slice((page - 1) * perPage, page * perPage));
  }

  async function tarballRedirect(context: Context, owner: string, name: string, ref: string): Promise<void> {
    const repository = visibleRepository(owner, name, context.caller);
    const wanted = ref === '' ? repository.defaultBranch : ref;
    if ((await resolveCommit(repository, wanted)) === undefined) throw notFound();
    let location = `${baseUrl}${CODELOAD_PREFIX}/${repository.owner}/${repository.name}/legacy.tar.gz/${encodeURIComponent(wanted)}`;
    if (repository.private) {
      // Like codeload: a private archive URL carries its own short-lived token.
      const token = randomBytes(20).toString('hex').toUpperCase();
      archiveTokens.set(token, {
        repoKey: repoKey(repository.owner, repository.name),
        expiresAt: Date.now() + archiveUrlTtlMs,
      });
      location += `?token=${token}`;
    }
    send(context.response, 302, {
      ...context.headers,
      'cache-control': 'public, must-revalidate, max-age=0',
      'content-type': 'text/html;charset=utf-8',
      expires: new Date().toUTCString(),
      location,
    });
  }

  async function codeload(
    request: IncomingMessage,
    response: ServerResponse,
    requestId: string,
    segments: string[],
    query: URLSearchParams,
  ): Promise<void> {
    const plainNotFound = (): void =>
      send(
        response,
        404,
        { ...baseHeaders(requestId), 'content-type': 'text/plain; charset=utf-8' },
        '404: Not Found',
      );
    const [owner, name, format, ...refParts] = segments;
    const repository = owner && name ? repositories.get(repoKey(owner, name)) : undefined;
    if (!repository || format !== 'legacy.tar.gz' || refParts.length === 0 || request.method !== 'GET') {
      return plainNotFound();
    }
    if (repository.private) {
      const grant = archiveTokens.get(query.get('token') ?? '');
      if (
        !grant ||
        grant.repoKey !== repoKey(repository.owner, repository.name) ||
        grant.expiresAt < Date.now()
      ) {
        return plainNotFound();
      }
    }
    const sha = await resolveCommit(repository, refParts.join('/'));
    if (sha === undefined) return plainNotFound();
    const prefix = `${repository.owner}-${repository.name}-${sha.slice(0, 7)}`;
    const archive = await runGit(repository.gitDir, [
      'archive',
      '--format=tar.gz',
      `--prefix=${prefix}/`,
      sha,
    ]);
    send(
      response,
      200,
      {
        ...baseHeaders(requestId),
        'access-control-allow-origin': 'https://render.githubusercontent.com',
        'content-disposition': `attachment; filename=${prefix}.tar.gz`,
        'content-type': 'application/x-gzip',
        etag: `"${sha}"`,
      },
      archive,
    );
  }

  function contentLinks(
    repository: Repository,
    path: string,
    ref: string,
    objectSha: string,
    kind: 'blob' | 'tree',
  ) {
    const api = `${baseUrl}/repos/${repository.owner}/${repository.name}`;
    const self = `${api}/contents/${path}?ref=${encodeURIComponent(ref)}`;
    const git = `${api}/git/${kind === 'blob' ? 'blobs' : 'trees'}/${objectSha}`;
    const html = `${baseUrl}/${repository.owner}/${repository.name}/${kind}/${ref}/${path}`;
    return { url: self, git_url: git, html_url: html, _links: { self, git, html } };
  }

  interface TreeEntry {
    mode: string;
    type: string;
    sha: string;
    size: number;
    path: string;
  }

  async function listTree(repository: Repository, args: string[]): Promise<TreeEntry[]> {
    const output = await runGit(repository.gitDir, [
      '--literal-pathspecs',
      'ls-tree',
      '-z',
      '--long',
      ...args,
    ]);
    return output
      .toString('utf8')
      .split('\0')
      .filter((line) => line !== '')
      .map((line) => {
        const tab = line.indexOf('\t');
        const [mode = '', type = '', sha = '', size = '0'] = line.slice(0, tab).trim().split(/\s+/);
        return { mode, type, sha, size: Number(size) || 0, path: line.slice(tab + 1) };
      });
  }

  async function getContent(context: Context, owner: string, name: string, path: string): Promise<void> {
    const repository = visibleRepository(owner, name, context.caller);
    const ref = context.query.get('ref') || repository.defaultBranch;
    const commit = await resolveCommit(repository, ref);
    if (commit === undefined) {
      throw new RouteError(
        404,
        `No commit found for the ref ${ref}`,
        `${DOCS}/repos/contents#get-repository-content`,
      );
    }
    const cleanPath = path.replace(/^\/+|\/+$/g, '');
    const headers = {
      ...context.headers,
      'cache-control': 'private, max-age=60, s-maxage=60',
      'last-modified': new Date().toUTCString(),
    };
    const raw = /application\/vnd\.github(?:\.v3)?\.raw/.test(context.request.headers.accept ?? '');
    const describe = (entry: TreeEntry) => {
      const type =
        entry.type === 'tree'
          ? 'dir'
          : entry.type === 'commit'
            ? 'submodule'
            : entry.mode === '120000'
              ? 'symlink'
              : 'file';
      const links = contentLinks(
        repository,
        entry.path,
        ref,
        entry.sha,
        entry.type === 'tree' ? 'tree' : 'blob',
      );
      return {
        type,
        size: entry.type === 'blob' ? entry.size : 0,
        name: entry.path.split('/').pop() ?? entry.path,
        path: entry.path,
        sha: entry.sha,
        ...links,
        download_url:
          type === 'file'
            ? `${baseUrl}/_raw/${repository.owner}/${repository.name}/${ref}/${entry.path}`
            : null,
      };
    };
    // `ls-tree <commit> -- dir/` lists the folder's entries with their full paths, as GitHub gives them.
    const listing = async (folder: string) =>
      (await listTree(repository, folder === '' ? [commit] : [commit, '--', `${folder}/`])).map(describe);
    if (cleanPath === '') return sendJson(context.response, 200, headers, await listing(''));
    const [entry] = await listTree(repository, [commit, '--', cleanPath]);
    if (!entry || entry.path !== cleanPath) {
      throw new RouteError(404, 'Not Found', `${DOCS}/repos/contents#get-repository-content`);
    }
    if (entry.type === 'tree') return sendJson(context.response, 200, headers, await listing(cleanPath));
    const item = describe(entry);
    if (item.type === 'submodule') {
      return sendJson(context.response, 200, headers, { ...item, submodule_git_url: '' });
    }
    const blob = await runGit(repository.gitDir, ['cat-file', 'blob', entry.sha]);
    if (item.type === 'symlink') {
      return sendJson(context.response, 200, headers, { ...item, target: blob.toString('utf8') });
    }
    if (raw) {
      return send(
        context.response,
        200,
        {
          ...headers,
          'content-type': 'application/vnd.github.raw; charset=utf-8',
          'x-github-media-type': 'github.v3; param=raw',
        },
        blob,
      );
    }
    const inline = blob.length <= MAX_INLINE_CONTENT_BYTES;
    sendJson(context.response, 200, headers, {
      ...item,
      // GitHub wraps the base64 at 60 characters per line.
      content: inline
        ? (blob.toString('base64').match(/.{1,60}/g) ?? []).map((line) => `${line}\n`).join('')
        : '',
      encoding: inline ? 'base64' : 'none',
    });
  }

  /**
   * GET /repos/{owner}/{repo}/git/trees/{tree_sha}: a tree by its sha, or the root tree of a
   * commit or ref, as GitHub accepts both; `recursive` lists every entry below it.
   */
  async function getTree(context: Context, owner: string, name: string, treeish: string): Promise<void> {
    const repository = visibleRepository(owner, name, context.caller);
    const docs = `${DOCS}/git/trees#get-a-tree`;
    if (treeish === '' || treeish.startsWith('-')) throw new RouteError(404, 'Not Found', docs);
    let treeSha: string;
    try {
      treeSha = await gitText(repository.gitDir, ['rev-parse', '--verify', '--quiet', `${treeish}^{tree}`]);
    } catch {
      throw new RouteError(404, 'Not Found', docs);
    }
    // GitHub reads any present value of `recursive` (even "false") as recursive; so does this.
    const recursive = context.query.has('recursive');
    const entries = await listTree(repository, recursive ? ['-r', '-t', treeSha] : [treeSha]);
    const api = `${baseUrl}/repos/${repository.owner}/${repository.name}/git`;
    const tree = entries.map((entry) => ({
      path: entry.path,
      mode: entry.mode,
      type: entry.type,
      sha: entry.sha,
      // Blobs carry their size; submodules (type commit) have no object here, so no url.
      ...(entry.type === 'blob' ? { size: entry.size, url: `${api}/blobs/${entry.sha}` } : {}),
      ...(entry.type === 'tree' ? { url: `${api}/trees/${entry.sha}` } : {}),
    }));
    sendJson(
      context.response,
      200,
      { ...context.headers, 'cache-control': 'private, max-age=60, s-maxage=60' },
      { sha: treeSha, url: `${api}/trees/${treeSha}`, tree, truncated: false },
    );
  }

  async function route(context: Context): Promise<void> {
    const { segments } = context;
    const method = context.request.method;
    if (segments[0] !== 'repos' || segments.length < 3) throw notFound();
    const [, owner = '', name = '', resource, ...rest] = segments;
    if (resource === undefined && method === 'GET') return getRepository(context, owner, name);
    if (resource === 'statuses' && rest.length === 1 && method === 'POST') {
      return createStatus(context, owner, name, rest[0] ?? '');
    }
    if (resource === 'commits' && rest.length >= 2 && rest.at(-1) === 'statuses' && method === 'GET') {
      return listStatuses(context, owner, name, rest.slice(0, -1).join('/'));
    }
    if (resource === 'tarball' && method === 'GET')
      return tarballRedirect(context, owner, name, rest.join('/'));
    if (resource === 'contents' && method === 'GET') return getContent(context, owner, name, rest.join('/'));
    if (resource === 'git' && rest[0] === 'trees' && rest.length >= 2 && method === 'GET') {
      return getTree(context, owner, name, rest.slice(1).join('/'));
    }
    if (resource === 'hooks' && rest.length === 0 && method === 'GET') return listHooks(context, owner, name);
    if (resource === 'hooks' && rest.length === 0 && method === 'POST')
      return createHook(context, owner, name);
    if (resource === 'hooks' && rest.length === 1 && method === 'PATCH') {
      return updateHook(context, owner, name, rest[0] ?? '');
    }
    throw notFound();
  }

  // --- repository webhooks --------------------------------------------------------------------

  /** Webhooks are the repository's administrators' business: GitHub answers 404 to anyone else. */
  function administeredRepository(context: Context, owner: string, name: string, docs: string): Repository {
    const repository = repositories.get(repoKey(owner, name));
    if (!repository || !context.caller.authenticated) throw new RouteError(404, 'Not Found', docs);
    return repository;
  }

  function hookJson(repository: Repository, hook: StoredHook): Record<string, unknown> {
    const url = `${baseUrl}/repos/${repository.owner}/${repository.name}/hooks/${hook.id}`;
    return {
      type: 'Repository',
      id: hook.id,
      name: 'web',
      active: hook.active,
      events: [...hook.events],
      config: {
        content_type: hook.config.content_type,
        insecure_ssl: hook.config.insecure_ssl,
        // GitHub never shows a secret again: only that there is one.
        ...(hook.config.secret === undefined ? {} : { secret: '********' }),
        url: hook.config.url,
      },
      updated_at: hook.updated_at,
      created_at: hook.created_at,
      url,
      test_url: `${url}/test`,
      ping_url: `${url}/pings`,
      deliveries_url: `${url}/deliveries`,
      last_response: { code: null, status: 'unused', message: null },
    };
  }

  function hookBody(context: Context, docs: string): Record<string, unknown> {
    const body = context.recorded.body;
    if (context.recorded.rawBody !== '' && body === undefined) {
      throw new RouteError(400, 'Problems parsing JSON', docs);
    }
    if (body === undefined) return {};
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw new RouteError(400, 'Problems parsing JSON', docs);
    }
    return body as Record<string, unknown>;
  }

  function hookInvalid(docs: string, message: string, field?: string, code = 'custom'): RouteError {
    return new RouteError(422, 'Validation Failed', docs, {
      errors: [{ resource: 'Hook', code, ...(field ? { field } : {}), message }],
    });
  }

  /** Validates a `config` object as GitHub.com does; the config a hook then has. */
  function hookConfig(value: unknown, docs: string): StoredHook['config'] {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw hookInvalid(docs, 'Config must contain a url', 'config');
    }
    const config = value as Record<string, unknown>;
    if (typeof config.url !== 'string' || config.url.trim() === '') {
      throw hookInvalid(docs, 'Config must contain a url', 'config');
    }
    let url: URL;
    try {
      url = new URL(config.url);
    } catch {
      throw hookInvalid(docs, 'url is not a valid URL', 'url');
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      throw hookInvalid(docs, 'url must use http or https', 'url');
    }
    if (PRIVATE_HOSTS.test(url.hostname)) {
      throw hookInvalid(
        docs,
        `url is not supported because it isn't reachable over the public Internet (${url.hostname})`,
        'url',
      );
    }
    const contentType = config.content_type ?? 'form';
    if (contentType !== 'json' && contentType !== 'form') {
      throw hookInvalid(docs, 'content_type is not included in the list', 'content_type');
    }
    const insecure = config.insecure_ssl ?? '0';
    if (!['0', '1', 0, 1].includes(insecure as string | number)) {
      throw hookInvalid(docs, 'insecure_ssl is not included in the list', 'insecure_ssl');
    }
    if (config.secret !== undefined && config.secret !== null && typeof config.secret !== 'string') {
      throw hookInvalid(docs, 'secret must be a string', 'secret', 'invalid');
    }
    const secret = typeof config.secret === 'string' && config.secret !== '' ? config.secret : undefined;
    return {
      url: config.url,
      content_type: contentType,
      insecure_ssl: String(insecure) as '0' | '1',
      ...(secret === undefined ? {} : { secret }),
    };
  }

  function hookEvents(value: unknown, field: string, docs: string): string[] {
    if (!Array.isArray(value) || value.some((event) => typeof event !== 'string')) {
      throw hookInvalid(docs, `${field} must be an array of strings`, field, 'invalid');
    }
    const unknown = (value as string[]).find((event) => !HOOK_EVENTS.has(event));
    if (unknown !== undefined) throw hookInvalid(docs, `"${unknown}" is not a valid event name`, field);
    return [...new Set(value as string[])];
  }

  function refuseDuplicateUrl(repository: Repository, url: string, docs: string, except?: number): void {
    for (const hook of repository.hooks.values()) {
      if (hook.id !== except && hook.config.url === url) {
        throw hookInvalid(docs, 'Hook already exists on this repository');
      }
    }
  }

  async function listHooks(context: Context, owner: string, name: string): Promise<void> {
    const docs = `${HOOKS_DOCS}#list-repository-webhooks`;
    const repository = administeredRepository(context, owner, name, docs);
    const all = [...repository.hooks.values()];
    const perPage = Math.min(Math.max(Number(context.query.get('per_page') ?? 30) || 30, 1), 100);
    const page = Math.max(Number(context.query.get('page') ?? 1) || 1, 1);
    const lastPage = Math.max(Math.ceil(all.length / perPage), 1);
    const headers: Record<string, string> = {
      ...context.headers,
      'cache-control': 'private, max-age=60, s-maxage=60',
    };
    if (page < lastPage) {
      const pageUrl = (n: number): string =>
        `${baseUrl}/repos/${repository.owner}/${repository.name}/hooks?per_page=${perPage}&page=${n}`;
      headers.link = `<${pageUrl(page + 1)}>; rel="next", <${pageUrl(lastPage)}>; rel="last"`;
    }
    const shown = all.slice((page - 1) * perPage, page * perPage);
    sendJson(
      context.response,
      200,
      headers,
      shown.map((hook) => hookJson(repository, hook)),
    );
  }

  async function createHook(context: Context, owner: string, name: string): Promise<void> {
    const docs = `${HOOKS_DOCS}#create-a-repository-webhook`;
    const repository = administeredRepository(context, owner, name, docs);
    const body = hookBody(context, docs);
    if (body.name !== undefined && body.name !== 'web') {
      throw hookInvalid(docs, 'name must be "web"', 'name');
    }
    const config = hookConfig(body.config, docs);
    const events = body.events === undefined ? ['push'] : hookEvents(body.events, 'events', docs);
    if (body.active !== undefined && typeof body.active !== 'boolean') {
      throw hookInvalid(docs, 'active must be a boolean', 'active', 'invalid');
    }
    refuseDuplicateUrl(repository, config.url, docs);
    const now = timestamp();
    const hook: StoredHook = {
      id: nextHookId++,
      active: body.active ?? true,
      events,
      config,
      created_at: now,
      updated_at: now,
    };
    repository.hooks.set(hook.id, hook);
    const json = hookJson(repository, hook);
    sendJson(context.response, 201, { ...context.headers, location: String(json.url) }, json);
  }

  async function updateHook(context: Context, owner: string, name: string, id: string): Promise<void> {
    const docs = `${HOOKS_DOCS}#update-a-repository-webhook`;
    const repository = administeredRepository(context, owner, name, docs);
    const hook = /^\d+$/.test(id) ? repository.hooks.get(Number(id)) : undefined;
    if (!hook) throw new RouteError(404, 'Not Found', docs);
    const body = hookBody(context, docs);
    // Everything is checked before anything changes: a refused update changes nothing.
    // A new config replaces the old one whole: a secret not sent again is removed, as on GitHub.
    const config = body.config === undefined ? hook.config : hookConfig(body.config, docs);
    let events = body.events === undefined ? hook.events : hookEvents(body.events, 'events', docs);
    if (body.add_events !== undefined) {
      events = [...new Set([...events, ...hookEvents(body.add_events, 'add_events', docs)])];
    }
    if (body.remove_events !== undefined) {
      const removed = new Set(hookEvents(body.remove_events, 'remove_events', docs));
      events = events.filter((event) => !removed.has(event));
    }
    if (body.active !== undefined && typeof body.active !== 'boolean') {
      throw hookInvalid(docs, 'active must be a boolean', 'active', 'invalid');
    }
    refuseDuplicateUrl(repository, config.url, docs, hook.id);
    hook.config = config;
    hook.events = events;
    if (body.active !== undefined) hook.active = body.active;
    hook.updated_at = timestamp();
    sendJson(context.response, 200, context.headers, hookJson(repository, hook));
  }

  // --- faults ---------------------------------------------------------------------------------

  function takeFault(recorded: RecordedRequest): ActiveFault | undefined {
    const index = faults.findIndex(
      (fault) =>
        (fault.method === undefined || fault.method.toUpperCase() === recorded.method) &&
        (fault.path === undefined || fault.path.test(recorded.path)),
    );
    if (index < 0) return undefined;
    const fault = faults[index] as ActiveFault;
    fault.times -= 1;
    if (fault.times <= 0) faults.splice(index, 1);
    return fault;
  }

  /** Answers the fault; returns false when the request should then be served normally (`slow`). */
  async function applyFault(
    fault: ActiveFault,
    request: IncomingMessage,
    response: ServerResponse,
    requestId: string,
    caller: Caller | undefined,
  ): Promise<boolean> {
    const window = caller ? rateWindow(caller) : undefined;
    const limits = window ? rateLimitHeaders(window) : {};
    switch (fault.mode) {
      case 'reset':
        request.socket.destroy();
        return true;
      case 'slow': {
        const delay = Math.min(Math.max(fault.delayMs ?? 5000, 0), MAX_FAULT_DELAY_MS);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            timers.delete(timer);
            resolve();
          }, delay);
          timers.add(timer);
        });
        return false;
      }
      case '500':
        sendJson(
          response,
          500,
          { ...baseHeaders(requestId), ...limits },
          errorBody(500, 'Server Error', DOCS),
        );
        return true;
      case '502':
        send(
          response,
          502,
          { ...baseHeaders(requestId), 'content-type': 'text/html; charset=utf-8' },
          '<html><body><h1>502 Bad Gateway</h1><p>We couldn\u2019t respond to your request in time. Sorry about that. Please try resubmitting your request and contact us if the problem persists.</p></body></html>',
        );
        return true;
      case 'rate-limit': {
        const reset = Math.ceil(Date.now() / 1000) + (fault.resetInSeconds ?? 1);
        const who = caller?.authenticated ? 'user ID 1' : (request.socket.remoteAddress ?? 'your IP');
        sendJson(
          response,
          403,
          {
            ...baseHeaders(requestId),
            'x-ratelimit-limit': String(window?.limit ?? 5000),
            'x-ratelimit-remaining': '0',
            'x-ratelimit-reset': String(reset),
            'x-ratelimit-used': String(window?.limit ?? 5000),
            'x-ratelimit-resource': 'core',
          },
          errorBody(
            403,
            `API rate limit exceeded for ${who}. If you reach out to GitHub Support for help, please include the request ID ${requestId}.`,
            RATE_LIMIT_DOCS,
          ),
        );
        return true;
      }
      case '429':
        sendJson(
          response,
          429,
          { ...baseHeaders(requestId), ...limits, 'retry-after': String(fault.retryAfterSeconds ?? 1) },
          errorBody(
            429,
            `You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID ${requestId}.`,
            SECONDARY_RATE_LIMIT_DOCS,
          ),
        );
        return true;
    }
  }

  // --- the server -----------------------------------------------------------------------------

  async function readBody(request: IncomingMessage): Promise<string> {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks).toString('utf8');
  }

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const time = Date.now();
    const requestId = newRequestId();
    const target = new URL(request.url ?? '/', 'http://stand-in.invalid');
    const rawBody = await readBody(request);
    let body: unknown;
    try {
      body = rawBody === '' ? undefined : JSON.parse(rawBody);
    } catch {
      body = undefined;
    }
    const recorded: RecordedRequest = {
      method: request.method ?? 'GET',
      path: target.pathname,
      query: Object.fromEntries(target.searchParams),
      headers: request.headers,
      body,
      rawBody,
      time,
    };
    requests.push(recorded);
    response.on('finish', () => {
      recorded.status = response.statusCode;
    });
    const segments = target.pathname
      .split('/')
      .filter((segment) => segment !== '')
      .map((segment) => decodeURIComponent(segment));
    const isCodeload = target.pathname.startsWith(`${CODELOAD_PREFIX}/`);

    let caller: Caller | undefined;
    try {
      if (!isCodeload) caller = identify(request);
    } catch {
      caller = undefined; // bad credentials: answered below, after any fault
    }
    const fault = takeFault(recorded);
    if (fault && (await applyFault(fault, request, response, requestId, caller))) return;

    if (isCodeload) return codeload(request, response, requestId, segments.slice(1), target.searchParams);
    try {
      const who = caller ?? identify(request); // throws the 401
      const window = rateWindow(who);
      window.used += 1;
      const headers = { ...baseHeaders(requestId), ...rateLimitHeaders(window) };
      if (who.authenticated) {
        headers['x-oauth-scopes'] = 'repo';
        headers['x-accepted-oauth-scopes'] = '';
      }
      if (window.used > window.limit) {
        throw new RouteError(403, `API rate limit exceeded for ${who.identity}.`, RATE_LIMIT_DOCS);
      }
      await route({
        request,
        response,
        recorded,
        caller: who,
        headers,
        segments,
        query: target.searchParams,
      });
    } catch (error) {
      if (!(error instanceof RouteError)) throw error;
      const window = caller ? rateLimitHeaders(rateWindow(caller)) : {};
      sendJson(
        response,
        error.status,
        { ...baseHeaders(requestId), ...window },
        errorBody(error.status, error.message, error.documentationUrl, error.extra),
      );
    }
  }

  const server = createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      // A bug in the stand-in: answer 500 with the reason so the failing test shows it.
      const message = error instanceof Error ? error.message : String(error);
      if (!response.headersSent && !response.destroyed) {
        sendJson(
          response,
          500,
          baseHeaders(newRequestId()),
          errorBody(500, `Stand-in error: ${message}`, DOCS),
        );
      }
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url: baseUrl,
    requests,
    addRepository(definition) {
      const key = repoKey(definition.owner, definition.name);
      if (repositories.has(key))
        throw new Error(`The stand-in already has ${definition.owner}/${definition.name}.`);
      repositories.set(key, {
        owner: definition.owner,
        name: definition.name,
        private: definition.private ?? false,
        defaultBranch: definition.defaultBranch ?? 'main',
        gitDir: definition.gitDir,
        id: nextRepositoryId++,
        description: definition.description ?? null,
        createdAt: startedAt,
        statuses: new Map(),
        hooks: new Map(),
      });
    },
    hooksOf(repo) {
      const repository = repositories.get(repo.toLowerCase());
      if (!repository) throw new Error(`The stand-in has no repository ${repo}: call addRepository first.`);
      return [...repository.hooks.values()].map((hook) => structuredClone(hook));
    },
    statusesFor(repo, sha) {
      const repository = repositories.get(repo.toLowerCase());
      if (!repository) throw new Error(`The stand-in has no repository ${repo}: call addRepository first.`);
      return [...(repository.statuses.get(sha) ?? [])];
    },
    failNext(fault) {
      faults.push({ ...fault, times: fault.times ?? 1 });
    },
    pendingFaults() {
      return faults.reduce((sum, fault) => sum + fault.times, 0);
    },
    clearFaults() {
      faults.length = 0;
    },
    async close() {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}
