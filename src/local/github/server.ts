/**
 * The stand-in's HTTP server: records each request, applies injected faults, identifies the caller,
 * counts the rate limit, and hands API requests to the resources' routes.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { appRecord, appRepositoryRoutes, installationRecord, routeApps } from './apps.js';
import { archiveRoutes, CODELOAD_PREFIX, serveArchive } from './archives.js';
import {
  identify,
  RATE_LIMIT_DOCS,
  rateLimitHeaders,
  rateWindow,
  type Caller,
  type RateWindow,
  AUTHENTICATED_RATE_LIMIT,
} from './callers.js';
import { checkRoutes } from './checks.js';
import { collaboratorRoutes } from './collaborators.js';
import { contentRoutes } from './contents.js';
import { route, type RecordedRequest, type RequestContext, type Route, type StandIn } from './context.js';
import { Faults, type Fault } from './faults.js';
import { hookRoutes } from './hooks.js';
import { baseHeaders, DOCS, errorBody, newRequestId, RouteError, sendJson, timestamp } from './http.js';
import {
  repoKey,
  type AppDefinition,
  type InstallationDefinition,
  type ManifestDefinition,
  type MintedToken,
  type StoredCheckRun,
  type CommitStatusRecord,
  type CreatedStatus,
  type Repository,
  type RepositoryDefinition,
  type StoredHook,
} from './records.js';
import { repositoryRoutes } from './repositories.js';
import { statusRoutes } from './statuses.js';
import { treeRoutes } from './trees.js';
import { messageOf } from '../../core/errors.js';

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
  /** GitHub Apps whose JWTs the stand-in accepts (more with addApp). */
  apps?: AppDefinition[];
  /** Installations of those Apps (more with addInstallation). */
  installations?: InstallationDefinition[];
  /** How long an installation token works; default 1 hour, as GitHub. */
  installationTokenTtlMs?: number;
  /**
   * Requests an authenticated caller may make per hour; default 5 000, as GitHub gives a token
   * (the bench raises it: thousands of webhooks in an hour measure Lambkin, not the quota).
   */
  rateLimit?: number;
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
  /** A GitHub App whose JWTs are accepted from now on. */
  addApp(definition: AppDefinition): void;
  addInstallation(definition: InstallationDefinition): void;
  /**
   * Makes `code` convert once (POST /app-manifests/{code}/conversions) into a new App made from
   * `manifest`, with a new key pair; the stand-in then accepts that App's JWTs.
   */
  addManifestCode(code: string, manifest: ManifestDefinition): void;
  /** Every installation token minted, oldest first. */
  mintedTokens(): MintedToken[];
  /** Check runs of a commit, newest first, with every annotation sent (`repo` is `owner/name`). */
  checkRunsFor(repo: string, sha: string): StoredCheckRun[];
  /** Makes the next matching requests fail; faults are used in the order they were added. */
  failNext(fault: Fault): void;
  /** How many injected failures are still waiting for a request. */
  pendingFaults(): number;
  /** Drops the injected failures no request has used yet. */
  clearFaults(): void;
  close(): Promise<void>;
}

const ROUTES: Route[] = [
  ...repositoryRoutes,
  ...statusRoutes,
  ...archiveRoutes,
  ...contentRoutes,
  ...treeRoutes,
  ...hookRoutes,
  ...checkRoutes,
  ...appRepositoryRoutes,
  ...collaboratorRoutes,
];

async function readBody(request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export async function startGitHubServer(options: GitHubServerOptions = {}): Promise<GitHubStandIn> {
  const standIn: StandIn = {
    baseUrl: '',
    login: options.login ?? 'lambkin-test-bot',
    archiveUrlTtlMs: options.archiveUrlTtlMs ?? 5 * 60_000,
    onStatus: options.onStatus,
    repositories: new Map(),
    archiveTokens: new Map(),
    nextStatusId: 1,
    nextHookId: 1,
    apps: new Map(),
    installations: new Map(),
    installationTokens: new Map(),
    mintedTokens: [],
    installationTokenTtlMs: options.installationTokenTtlMs ?? 3_600_000,
    manifestCodes: new Map(),
    nextCheckRunId: 1,
    checkSuites: new Map(),
  };
  for (const app of options.apps ?? []) standIn.apps.set(app.id, appRecord(app));
  for (const installation of options.installations ?? []) {
    standIn.installations.set(installation.id, installationRecord(standIn, installation));
  }
  const requests: RecordedRequest[] = [];
  const faults = new Faults();
  const rateWindows = new Map<string, RateWindow>();
  const rateLimit = options.rateLimit ?? AUTHENTICATED_RATE_LIMIT;
  const sockets = new Set<Socket>();
  const startedAt = timestamp();
  let nextRepositoryId = 1000;

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
      if (!isCodeload) caller = identify(request, options.token, standIn);
    } catch {
      caller = undefined; // bad credentials: answered below, after any fault
    }
    const fault = faults.take(recorded);
    if (fault) {
      const window = caller ? rateWindow(rateWindows, caller, rateLimit) : undefined;
      if (await faults.apply(fault, { request, response, requestId, caller, window })) return;
    }

    if (isCodeload) {
      return serveArchive(standIn, request, response, requestId, segments.slice(1), target.searchParams);
    }
    try {
      const who = caller ?? identify(request, options.token, standIn); // throws the 401
      const window = rateWindow(rateWindows, who, rateLimit);
      window.used += 1;
      const headers = { ...baseHeaders(requestId), ...rateLimitHeaders(window) };
      if (who.kind === 'token') {
        headers['x-oauth-scopes'] = 'repo';
        headers['x-accepted-oauth-scopes'] = '';
      }
      if (window.used > window.limit) {
        throw new RouteError(403, `API rate limit exceeded for ${who.identity}.`, RATE_LIMIT_DOCS);
      }
      const context: RequestContext = {
        standIn,
        request,
        response,
        recorded,
        caller: who,
        headers,
        query: target.searchParams,
      };
      if (!(await routeApps(context, segments))) await route(ROUTES, context, segments);
    } catch (error) {
      if (!(error instanceof RouteError)) throw error;
      const window = caller ? rateLimitHeaders(rateWindow(rateWindows, caller, rateLimit)) : {};
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
      const message = messageOf(error);
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
  standIn.baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  /** A repository added with addRepository (`repo` is `owner/name`). */
  const addedRepository = (repo: string): Repository => {
    const repository = standIn.repositories.get(repo.toLowerCase());
    if (!repository) throw new Error(`The stand-in has no repository ${repo}: call addRepository first.`);
    return repository;
  };

  return {
    url: standIn.baseUrl,
    requests,
    addRepository(definition) {
      const key = repoKey(definition.owner, definition.name);
      if (standIn.repositories.has(key))
        throw new Error(`The stand-in already has ${definition.owner}/${definition.name}.`);
      standIn.repositories.set(key, {
        owner: definition.owner,
        name: definition.name,
        private: definition.private ?? false,
        defaultBranch: definition.defaultBranch ?? 'main',
        gitDir: definition.gitDir,
        id: nextRepositoryId++,
        description: definition.description ?? null,
        collaborators: Object.fromEntries(
          Object.entries(definition.collaborators ?? {}).map(([login, role]) => [login.toLowerCase(), role]),
        ),
        createdAt: startedAt,
        statuses: new Map(),
        hooks: new Map(),
        checkRuns: new Map(),
      });
    },
    addApp(definition) {
      if (standIn.apps.has(definition.id)) throw new Error(`The stand-in already has App ${definition.id}.`);
      standIn.apps.set(definition.id, appRecord(definition));
    },
    addInstallation(definition) {
      if (standIn.installations.has(definition.id))
        throw new Error(`The stand-in already has installation ${definition.id}.`);
      standIn.installations.set(definition.id, installationRecord(standIn, definition));
    },
    addManifestCode(code, manifest) {
      standIn.manifestCodes.set(code, structuredClone(manifest));
    },
    mintedTokens() {
      return structuredClone(standIn.mintedTokens);
    },
    checkRunsFor(repo, sha) {
      return [...addedRepository(repo).checkRuns.values()]
        .filter((run) => run.head_sha === sha)
        .sort((a, b) => b.id - a.id)
        .map((run) => structuredClone(run));
    },
    hooksOf(repo) {
      return [...addedRepository(repo).hooks.values()].map((hook) => structuredClone(hook));
    },
    statusesFor(repo, sha) {
      return [...(addedRepository(repo).statuses.get(sha) ?? [])];
    },
    failNext(fault) {
      faults.add(fault);
    },
    pendingFaults() {
      return faults.pending();
    },
    clearFaults() {
      faults.clear();
    },
    async close() {
      faults.cancelDelays();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}
