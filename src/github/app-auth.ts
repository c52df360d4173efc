/**
 * Lambkin as a GitHub App: an App JWT for the App's own endpoints, and for each repository an
 * installation token limited to that one repository and to the permissions a caller names, kept
 * until shortly before it expires. @octokit/auth-app signs the JWTs and mints the tokens; this
 * module decides which token each request gets and when to mint a new one.
 *
 * The clients are made with createGitHubClient (retry and throttling plugins, the given API base
 * URL); a hook sets each request's Authorization header, so a long-lived client always sends a
 * fresh token. A 401 drops the cached token: the next request mints a new one.
 */
import { createAppAuth } from '@octokit/auth-app';
import type { Octokit } from '@octokit/rest';
import {
  createDirectGitHubClient,
  createGitHubClient,
  DEFAULT_GITHUB_API_URL,
  splitRepoName,
  type GitHubClient,
} from './client.js';
import type { Logger } from '../core/logger.js';

/** What identifies the App: its id (or client id) and its private key (PEM). */
export interface GitHubAppCredentials {
  appId: number | string;
  privateKey: string;
}

/** GitHub App permissions as the API names them: `{ checks: 'write', contents: 'read' }`. */
export type InstallationPermissions = Record<string, 'read' | 'write'>;

export interface GitHubAppOptions {
  /** GitHub's API base URL (`GITHUB_API_URL`); default https://api.github.com. */
  baseUrl?: string;
  logger?: Logger;
  userAgent?: string;
  /** A token is replaced once it has less than this left; default 5 minutes. */
  refreshBeforeExpiryMs?: number;
  /** The clock that decides when a token is old (tests move it); default Date.now. */
  now?: () => number;
  /**
   * An installation id known without asking GitHub (the record the installation events keep);
   * undefined, or a failure, falls back to GET /repos/{owner}/{repo}/installation.
   */
  knownInstallation?: (repo: string) => Promise<number | undefined>;
}

/** An installation token and when it stops working. */
export interface InstallationToken {
  token: string;
  /** Epoch ms. */
  expiresAt: number;
  installationId: number;
}

export const DEFAULT_REFRESH_BEFORE_EXPIRY_MS = 5 * 60_000;

/** The App with its caches: make one per process (per App and API base URL) and pass it around. */
export interface GitHubApp {
  readonly appId: number | string;
  readonly baseUrl: string;
  /** A client authenticated as the App itself (JWT): GET /app, installations, tokens. */
  readonly appClient: GitHubClient;
  /** The id of the App's installation on `repo` (`owner/name`), looked up once. */
  installationId(repo: string): Promise<number>;
  /** A token for `repo` alone with `permissions`, minted when none is cached or it is near its expiry. */
  installationToken(repo: string, permissions: InstallationPermissions): Promise<InstallationToken>;
  /** A client for `repo` alone with `permissions`: each request carries a current installation token. */
  installationClient(repo: string, permissions: InstallationPermissions): GitHubClient;
  /** The same without the retry and throttling plugins (createDirectGitHubClient). */
  directInstallationClient(repo: string, permissions: InstallationPermissions): Octokit;
  /** Forgets the cached tokens and installation ids. */
  clear(): void;
}

/** Same repository and permissions, whatever the order the permissions were named in. */
function tokenKey(repo: string, permissions: InstallationPermissions): string {
  const named = Object.entries(permissions)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, level]) => `${name}:${level}`);
  return `${repo.toLowerCase()}|${named.join(',')}`;
}

function statusOf(error: unknown): number | undefined {
  const status = (error as { status?: unknown } | null)?.status;
  return typeof status === 'number' ? status : undefined;
}

export function createGitHubApp(
  credentials: GitHubAppCredentials,
  options: GitHubAppOptions = {},
): GitHubApp {
  const baseUrl = (options.baseUrl ?? DEFAULT_GITHUB_API_URL).replace(/\/+$/, '');
  const refreshBeforeMs = options.refreshBeforeExpiryMs ?? DEFAULT_REFRESH_BEFORE_EXPIRY_MS;
  const now = options.now ?? Date.now;
  const clientOptions = {
    baseUrl,
    ...(options.logger ? { logger: options.logger } : {}),
    ...(options.userAgent ? { userAgent: options.userAgent } : {}),
  };
  // Mints go through a client of their own (retries, throttling) that adds no credentials:
  // @octokit/auth-app sets the JWT on each of its requests.
  const transport = createGitHubClient(clientOptions);
  const auth = createAppAuth({
    appId: credentials.appId,
    privateKey: credentials.privateKey,
    request: transport.request,
  });

  const appClient = createGitHubClient(clientOptions);
  appClient.hook.before('request', async (request) => {
    const { token } = await auth({ type: 'app' });
    request.headers.authorization = `bearer ${token}`;
  });

  const installationIds = new Map<string, Promise<number>>();
  const tokens = new Map<string, Promise<InstallationToken>>();

  function installationId(repo: string): Promise<number> {
    const key = repo.toLowerCase();
    let id = installationIds.get(key);
    if (!id) {
      const { owner, name } = splitRepoName(repo);
      const ask = (): Promise<number> =>
        appClient.rest.apps.getRepoInstallation({ owner, repo: name }).then((response) => response.data.id);
      const known = options.knownInstallation;
      id = known
        ? known(repo).then(
            (recorded) => recorded ?? ask(),
            () => ask(),
          )
        : ask();
      installationIds.set(key, id);
      id.catch(() => installationIds.delete(key)); // looked up again next time
    }
    return id;
  }

  async function mint(repo: string, permissions: InstallationPermissions): Promise<InstallationToken> {
    const id = await installationId(repo);
    const { name } = splitRepoName(repo);
    const minted = await auth({
      type: 'installation',
      installationId: id,
      repositoryNames: [name],
      permissions,
      refresh: true, // this module's cache decides (auth-app's keeps tokens 59 minutes, whatever their expiry)
    }).catch((error: unknown) => {
      // Uninstalled, or installed anew under another id: look the installation up again next time.
      if (statusOf(error) === 404 || statusOf(error) === 422) installationIds.delete(repo.toLowerCase());
      throw error;
    });
    return { token: minted.token, expiresAt: Date.parse(minted.expiresAt), installationId: id };
  }

  async function installationToken(
    repo: string,
    permissions: InstallationPermissions,
  ): Promise<InstallationToken> {
    const key = tokenKey(repo, permissions);
    const cached = tokens.get(key);
    if (cached) {
      try {
        const token = await cached;
        if (token.expiresAt - now() > refreshBeforeMs) return token;
      } catch {
        // the mint failed: try again below
      }
      if (tokens.get(key) !== cached) return installationToken(repo, permissions); // another caller re-minted
    }
    const minted = mint(repo, permissions);
    tokens.set(key, minted);
    minted.catch(() => {
      if (tokens.get(key) === minted) tokens.delete(key);
    });
    return minted;
  }

  function installationClient(repo: string, permissions: InstallationPermissions): GitHubClient {
    return asInstallation(createGitHubClient(clientOptions), repo, permissions);
  }

  function directInstallationClient(repo: string, permissions: InstallationPermissions): Octokit {
    return asInstallation(createDirectGitHubClient(clientOptions), repo, permissions);
  }

  /** Sends each of the client's requests with the installation's current token for `repo`. */
  function asInstallation<T extends Octokit>(
    client: T,
    repo: string,
    permissions: InstallationPermissions,
  ): T {
    const key = tokenKey(repo, permissions);
    client.hook.before('request', async (request) => {
      const { token } = await installationToken(repo, permissions);
      request.headers.authorization = `token ${token}`;
    });
    client.hook.error('request', async (error) => {
      if (statusOf(error) === 401) tokens.delete(key); // revoked or expired early: mint anew next time
      throw error;
    });
    return client;
  }

  return {
    appId: credentials.appId,
    baseUrl,
    appClient,
    installationId,
    installationToken,
    installationClient,
    directInstallationClient,
    clear() {
      tokens.clear();
      installationIds.clear();
    },
  };
}

/**
 * A client for `repo` (`owner/name`) acting as `app`'s installation there, with an installation
 * token limited to that repository and `permissions` (cached by `app`).
 */
export function createInstallationClient(
  app: GitHubApp,
  repo: string,
  permissions: InstallationPermissions,
): GitHubClient {
  return app.installationClient(repo, permissions);
}
