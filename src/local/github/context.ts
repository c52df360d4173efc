/**
 * What the resources share: the stand-in's state, the request a handler answers, and the routes
 * under /repos/{owner}/{repo} each resource serves.
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { Caller } from './callers.js';
import { notFound, PRIVATE_CACHE, RouteError } from './http.js';
import { JWT_UNDECODABLE } from './jwt.js';
import {
  repoKey,
  type AppRecord,
  type CreatedStatus,
  type InstallationGrant,
  type InstallationRecord,
  type ManifestDefinition,
  type MintedToken,
  type PermissionLevel,
  type Repository,
} from './records.js';

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

/** A private repository's archive URL: which repository it opens, and until when. */
export interface ArchiveGrant {
  repoKey: string;
  expiresAt: number;
}

/** The stand-in's state for the server's lifetime. */
export interface StandIn {
  /** `http://127.0.0.1:{port}`, known once the server listens. */
  baseUrl: string;
  /** Login of the token's user (the creator of statuses). */
  login: string;
  archiveUrlTtlMs: number;
  onStatus: ((status: CreatedStatus) => void) | undefined;
  /** By repoKey. */
  repositories: Map<string, Repository>;
  /** By the token in a private archive's URL. */
  archiveTokens: Map<string, ArchiveGrant>;
  nextStatusId: number;
  nextHookId: number;
  /** GitHub Apps by id. */
  apps: Map<number, AppRecord>;
  installations: Map<number, InstallationRecord>;
  /** Installation tokens minted, by token. */
  installationTokens: Map<string, InstallationGrant>;
  /** Every installation token minted, oldest first. */
  mintedTokens: MintedToken[];
  installationTokenTtlMs: number;
  /** Manifest codes not yet converted, with the App each makes. */
  manifestCodes: Map<string, ManifestDefinition>;
  nextCheckRunId: number;
  /** Check suites by `repoKey@sha@appId`. */
  checkSuites: Map<string, number>;
}

/** One API request being answered. */
export interface RequestContext {
  standIn: StandIn;
  request: IncomingMessage;
  response: ServerResponse;
  recorded: RecordedRequest;
  caller: Caller;
  /** The headers every answer to this request carries (request id, rate limit). */
  headers: Record<string, string>;
  query: URLSearchParams;
}

/**
 * An endpoint under /repos/{owner}/{repo}. `path` is what follows (`''`: the repository itself):
 * fixed segments and at most one parameter, `{name}` for one segment or `{name*}` / `{name+}` for
 * zero / one or more, joined by `/`. The handler gets the parameter's value after owner and name.
 */
export interface Route {
  method: string;
  path: string;
  /**
   * What an installation token needs for this endpoint (a permission at a level; none: metadata,
   * which every installation has), or `'app'` for an endpoint only an App's JWT may call.
   */
  access?: { permission: string; level: PermissionLevel } | 'app';
  handle(context: RequestContext, owner: string, name: string, parameter: string): Promise<void>;
}

/** The value of `path`'s parameter in `rest` ('' when it has none); undefined when `rest` does not fit. */
function matchPath(path: string, rest: string[]): string | undefined {
  const pattern = path === '' ? [] : path.split('/');
  const at = pattern.findIndex((part) => part.startsWith('{'));
  if (at < 0) {
    const fits = pattern.length === rest.length && pattern.every((part, index) => part === rest[index]);
    return fits ? '' : undefined;
  }
  const parameter = pattern[at] ?? '';
  const taken = rest.length - (pattern.length - 1);
  const fewest = parameter.endsWith('*}') ? 0 : 1;
  const most = parameter.endsWith('*}') || parameter.endsWith('+}') ? Infinity : 1;
  if (taken < fewest || taken > most) return undefined;
  const fixedFit = pattern.every(
    (part, index) => index === at || part === rest[index < at ? index : index + taken - 1],
  );
  return fixedFit ? rest.slice(at, at + taken).join('/') : undefined;
}

/** Answers a request for `segments` (the decoded path) with the first route that fits; else 404. */
export async function route(routes: Route[], context: RequestContext, segments: string[]): Promise<void> {
  const [api, owner = '', name = '', ...rest] = segments;
  if (api !== 'repos' || segments.length < 3) throw notFound();
  for (const candidate of routes) {
    if (candidate.method !== context.request.method) continue;
    const parameter = matchPath(candidate.path, rest);
    if (parameter === undefined) continue;
    authorize(context.caller, candidate, owner, name);
    return candidate.handle(context, owner, name, parameter);
  }
  throw notFound();
}

export const INTEGRATION_FORBIDDEN = 'Resource not accessible by integration';

/** Whether an installation token's grant reaches `owner/name`. */
export function grantReaches(grant: InstallationGrant, owner: string, name: string): boolean {
  return grant.repositories === 'all'
    ? owner.toLowerCase() === grant.account.toLowerCase()
    : grant.repositories.has(repoKey(owner, name));
}

/**
 * GitHub's rules for Apps: an App's JWT is only for the App's own endpoints, and an installation
 * token reaches only its repositories (404 elsewhere, as if they did not exist) with only its
 * permissions (403 otherwise). Personal tokens and anonymous callers are left to the route.
 */
function authorize(caller: Caller, candidate: Route, owner: string, name: string): void {
  const access = candidate.access;
  if (access === 'app') {
    if (caller.kind !== 'app') throw new RouteError(401, JWT_UNDECODABLE);
    return;
  }
  if (caller.kind === 'app') throw new RouteError(403, INTEGRATION_FORBIDDEN);
  if (caller.kind !== 'installation') return;
  if (!grantReaches(caller.grant, owner, name)) throw notFound();
  if (access === undefined) return;
  const granted = caller.grant.permissions[access.permission];
  if (granted === 'write' || granted === access.level) return;
  throw new RouteError(403, INTEGRATION_FORBIDDEN);
}

/** The request's parsed JSON body (undefined when it has none); 400 when it is not JSON, as on GitHub. */
export function requestBody(context: RequestContext, docs: string): unknown {
  const { body, rawBody } = context.recorded;
  if (rawBody !== '' && body === undefined) throw new RouteError(400, 'Problems parsing JSON', docs);
  return body;
}

/**
 * The page of `items` the request asks for (`per_page` 1–100, default 30; `page` from 1) and the
 * headers to answer with, including GitHub's `link` to the next and last pages of `listUrl`.
 */
export function pageOf<T>(
  context: RequestContext,
  items: T[],
  listUrl: string,
): { items: T[]; headers: Record<string, string> } {
  const perPage = Math.min(Math.max(Number(context.query.get('per_page') ?? 30) || 30, 1), 100);
  const page = Math.max(Number(context.query.get('page') ?? 1) || 1, 1);
  const lastPage = Math.max(Math.ceil(items.length / perPage), 1);
  const headers: Record<string, string> = { ...context.headers, 'cache-control': PRIVATE_CACHE };
  if (page < lastPage) {
    const pageUrl = (n: number): string => `${listUrl}?per_page=${perPage}&page=${n}`;
    headers.link = `<${pageUrl(page + 1)}>; rel="next", <${pageUrl(lastPage)}>; rel="last"`;
  }
  return { items: items.slice((page - 1) * perPage, page * perPage), headers };
}

/** What reading a repository's files takes (archives, contents, trees). */
export const CONTENTS_READ: Route['access'] = { permission: 'contents', level: 'read' };
