/** Repositories: finding them as a caller may see them, their commits, and GET /repos/{owner}/{repo}. */
import type { Caller } from './callers.js';
import type { RequestContext, Route, StandIn } from './context.js';
import { gitText } from './git.js';
import { nodeId, notFound, PRIVATE_CACHE, sendJson } from './http.js';
import { repoKey, type Repository, type SimpleUser } from './records.js';

/** The repository as `caller` may see it: GitHub hides private ones from anonymous callers (404, not 403). */
export function visibleRepository(standIn: StandIn, owner: string, name: string, caller: Caller): Repository {
  const repository = standIn.repositories.get(repoKey(owner, name));
  if (!repository || (repository.private && !caller.authenticated)) throw notFound();
  return repository;
}

/**
 * Full commit shas found in each repository's git folder. A commit, once there, names the same
 * commit for good: asking git again (a process per request, most of a status POST's time) is
 * skipped. Only hits are kept; a sha not found yet may be committed later.
 */
const knownCommits = new WeakMap<Repository, Set<string>>();
const FULL_SHA = /^[0-9a-f]{40}$/;

/** The full sha of the commit `ref` names in `repository`; undefined when there is none. */
export async function resolveCommit(repository: Repository, ref: string): Promise<string | undefined> {
  if (ref === '' || ref.startsWith('-')) return undefined; // never an option to git
  const known = knownCommits.get(repository);
  if (known?.has(ref)) return ref;
  let commit: string;
  try {
    commit = await gitText(repository.gitDir, ['rev-parse', '--verify', '--quiet', `${ref}^{commit}`]);
  } catch {
    return undefined;
  }
  if (commit === ref && FULL_SHA.test(ref)) {
    if (known) known.add(ref);
    else knownCommits.set(repository, new Set([ref]));
  }
  return commit;
}

/** A user as the API shows one (a status's creator, a repository's owner). */
export function userJson(baseUrl: string, name: string, id: number, type: SimpleUser['type']): SimpleUser {
  return {
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
  };
}

export function repositoryJson(
  baseUrl: string,
  repository: Repository,
  caller: Caller,
): Record<string, unknown> {
  const fullName = `${repository.owner}/${repository.name}`;
  const api = `${baseUrl}/repos/${fullName}`;
  const html = `${baseUrl}/${fullName}`;
  const owner = userJson(baseUrl, repository.owner, repository.id + 100_000, 'User');
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

async function getRepository(context: RequestContext, owner: string, name: string): Promise<void> {
  const repository = visibleRepository(context.standIn, owner, name, context.caller);
  sendJson(
    context.response,
    200,
    { ...context.headers, 'cache-control': PRIVATE_CACHE },
    repositoryJson(context.standIn.baseUrl, repository, context.caller),
  );
}

export const repositoryRoutes: Route[] = [{ method: 'GET', path: '', handle: getRepository }];
