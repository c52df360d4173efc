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
  /**
   * Roles of users in the repository, by login (case-insensitive). Unlisted: the owner is `admin`,
   * everyone else `read` on a public repository and `none` on a private one.
   */
  collaborators?: Record<string, CollaboratorRole>;
}

/** GitHub's repository roles (`role_name`). */
export type CollaboratorRole = 'admin' | 'maintain' | 'write' | 'triage' | 'read';

export interface Repository extends Required<Omit<RepositoryDefinition, 'description'>> {
  id: number;
  description: string | null;
  createdAt: string;
  /** Full commit sha → its statuses, newest first. */
  statuses: Map<string, CommitStatusRecord[]>;
  hooks: Map<number, StoredHook>;
  /** Check runs by id. */
  checkRuns: Map<number, StoredCheckRun>;
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

export type PermissionLevel = 'read' | 'write';
/** A GitHub App's permissions, as the API names them (`checks`, `contents`, `statuses`, …). */
export type AppPermissions = Record<string, PermissionLevel>;

/** A GitHub App the stand-in knows: its JWTs are checked with `publicKey`. */
export interface AppDefinition {
  id: number;
  /** The public half of the App's key (PEM, SPKI or PKCS#1), as node:crypto makes one. */
  publicKey: string;
  /** Defaults to `lambkin-test-app-{id}`. */
  slug?: string;
  name?: string;
  /** Login of the account that owns the App; default `lambkin`. */
  owner?: string;
  clientId?: string;
  /** Default: metadata read, checks write, statuses write, contents read. */
  permissions?: AppPermissions;
  events?: string[];
}

/** An installation of an App on an account. */
export interface InstallationDefinition {
  id: number;
  /** Defaults to the App when the stand-in has exactly one. */
  appId?: number;
  /** Login of the account the App is installed on (a user or an organization). */
  account: string;
  accountType?: 'User' | 'Organization';
  /** `'all'`: every repository of the account; else `owner/name` of each repository selected. */
  repositories: 'all' | string[];
  /** Default: the App's permissions. */
  permissions?: AppPermissions;
}

export interface AppRecord extends Required<AppDefinition> {
  createdAt: string;
}

export interface InstallationRecord extends Required<InstallationDefinition> {
  createdAt: string;
}

/** What an installation token may reach, as the stand-in enforces it. */
export interface InstallationGrant {
  token: string;
  installationId: number;
  appId: number;
  /** The installation's account: an `'all'` token reaches its repositories. */
  account: string;
  /** repoKeys, or every repository of `account`. */
  repositories: 'all' | Set<string>;
  permissions: AppPermissions;
  /** Epoch ms. */
  createdAt: number;
  expiresAt: number;
}

/** An installation token as minted, for tests to inspect (`repositories` as `owner/name`). */
export interface MintedToken {
  token: string;
  installationId: number;
  repositories: 'all' | string[];
  permissions: AppPermissions;
  /** ISO 8601, as the API answered. */
  expiresAt: string;
}

/** An App made from a manifest, as `POST /app-manifests/{code}/conversions` answers. */
export interface ManifestDefinition {
  name: string;
  /** The App's homepage. */
  url?: string;
  owner?: string;
  permissions?: AppPermissions;
  events?: string[];
}

export type CheckRunStatus = 'queued' | 'in_progress' | 'completed';
export type CheckRunConclusion =
  'action_required' | 'cancelled' | 'failure' | 'neutral' | 'success' | 'skipped' | 'timed_out';

/** A check run annotation as it was sent. */
export interface CheckAnnotation {
  path: string;
  start_line: number;
  end_line: number;
  start_column?: number;
  end_column?: number;
  annotation_level: 'notice' | 'warning' | 'failure';
  message: string;
  title?: string;
  raw_details?: string;
}

/** A check run as the stand-in keeps it, with every annotation it was sent, oldest first. */
export interface StoredCheckRun {
  id: number;
  appId: number;
  checkSuiteId: number;
  /** `owner/name`, as the repository was added. */
  repo: string;
  name: string;
  head_sha: string;
  status: CheckRunStatus;
  conclusion: CheckRunConclusion | null;
  details_url: string | null;
  external_id: string | null;
  started_at: string;
  completed_at: string | null;
  output: { title: string | null; summary: string | null; text: string | null };
  annotations: CheckAnnotation[];
  /** How many requests (create, then updates) sent annotations, and how many each. */
  annotationBatches: number[];
  /**
   * The buttons last sent (`actions`). GitHub shows them on the run but does not return them in
   * the API's answers, so neither does the stand-in: tests read them here.
   */
  actions: CheckRunAction[];
}

/** A check run's button as it was sent. */
export interface CheckRunAction {
  label: string;
  description: string;
  identifier: string;
}

/** Repositories are found case-insensitively, as on GitHub. */
export const repoKey = (owner: string, name: string): string => `${owner}/${name}`.toLowerCase();
