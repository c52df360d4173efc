/**
 * How the trusted services reach GitHub for one repository: with the deployment's token (token
 * mode: one client for everything), or as the GitHub App's installation on that repository (App
 * mode: a token limited to that repository and the permissions the call needs, minted when none
 * is cached or it nears its expiry; src/github/app-auth.ts). Made once per process by the
 * composition root. No token from here is ever put in a runner's input.
 */
import { createGitHubApp, type GitHubApp, type InstallationPermissions } from './app-auth.js';
import type { Octokit } from '@octokit/rest';
import { createDirectGitHubClient, createGitHubClient, type GitHubClient } from './client.js';
import type { Logger } from '../core/logger.js';

/** Statuses and check runs: what the reporters write. */
export const REPORTING_PERMISSIONS: InstallationPermissions = { checks: 'write', statuses: 'write' };
/** The archive, config files and lockfile of the commit being built. */
export const CONTENTS_PERMISSIONS: InstallationPermissions = { contents: 'read' };
/** Who may do what in the repository (collaborators' permissions): every installation has it. */
export const METADATA_PERMISSIONS: InstallationPermissions = { metadata: 'read' };

export interface GitHubAccess {
  readonly mode: 'app' | 'token';
  /** A client for calls about `repo` (`owner/name`) that need `permissions`. */
  forRepo(repo: string, permissions: InstallationPermissions): GitHubClient;
  /**
   * The same without the retry and throttling plugins, for callers that bound and retry each call
   * themselves (src/github/delivery.ts): the commit status reporter.
   */
  directForRepo(repo: string, permissions: InstallationPermissions): Octokit;
  /** The App (App mode only): its JWT client and installation lookups. */
  readonly app?: GitHubApp;
}

export interface GitHubAccessOptions {
  baseUrl: string;
  logger: Logger;
  /** Token mode (or anonymous, without one). */
  token?: string;
  /** App mode. */
  app?: { appId: string; privateKey: string };
  /** An installation id known without asking GitHub (the installation events' record). */
  knownInstallation?: (repo: string) => Promise<number | undefined>;
}

export function createGitHubAccess(options: GitHubAccessOptions): GitHubAccess {
  if (!options.app) {
    const clientOptions = {
      baseUrl: options.baseUrl,
      ...(options.token ? { token: options.token } : {}),
      logger: options.logger,
    };
    const client = createGitHubClient(clientOptions);
    const direct = createDirectGitHubClient(clientOptions);
    return { mode: 'token', forRepo: () => client, directForRepo: () => direct };
  }
  const app = createGitHubApp(
    { appId: options.app.appId, privateKey: options.app.privateKey },
    {
      baseUrl: options.baseUrl,
      logger: options.logger,
      ...(options.knownInstallation ? { knownInstallation: options.knownInstallation } : {}),
    },
  );
  // One client per repository and permissions: each keeps its throttling queue and sends the
  // current token of its own.
  const clients = new Map<string, GitHubClient>();
  const directClients = new Map<string, Octokit>();
  const keyOf = (repo: string, permissions: InstallationPermissions): string =>
    `${repo.toLowerCase()}|${JSON.stringify(Object.entries(permissions).sort())}`;
  return {
    mode: 'app',
    app,
    forRepo(repo, permissions) {
      const key = keyOf(repo, permissions);
      let client = clients.get(key);
      if (!client) {
        client = app.installationClient(repo, permissions);
        clients.set(key, client);
      }
      return client;
    },
    directForRepo(repo, permissions) {
      const key = keyOf(repo, permissions);
      let client = directClients.get(key);
      if (!client) {
        client = app.directInstallationClient(repo, permissions);
        directClients.set(key, client);
      }
      return client;
    },
  };
}
