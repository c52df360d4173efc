/**
 * What the stand-in keeps: repositories, each with its git repository, commit statuses and
 * webhooks. Shared by the resources that serve them.
 */

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

export interface Repository extends Required<Omit<RepositoryDefinition, 'description'>> {
  id: number;
  description: string | null;
  createdAt: string;
  /** Full commit sha → its statuses, newest first. */
  statuses: Map<string, CommitStatusRecord[]>;
  hooks: Map<number, StoredHook>;
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

export interface SimpleUser {
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

/** Repositories are found case-insensitively, as on GitHub. */
export const repoKey = (owner: string, name: string): string => `${owner}/${name}`.toLowerCase();
