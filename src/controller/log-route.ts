/**
 * The cloud log route: a build's stable link (`/builds/<owner>/<repo>/<number>` and `…/log.txt`,
 * with `?token=…` for private repositories) checked against the build record. The page is answered
 * right there, at the stable link, so that its relative links (src/core/links.ts) resolve to this
 * route; the raw log is answered with a short-lived presigned S3 URL. The bucket stays private; the
 * link is the only key. `/builds/<owner>/<repo>` is a public repository's page of recent builds
 * (never a private one's: it links every build with its token). `/badges/<owner>/<repo>.svg[?branch=…]`
 * is a repository's build badge, answered from the build records (handleBadgeRequest; the local log
 * viewer serves it with the same code). No Lambda and no AWS SDK here: the handler adapts events and
 * supplies the stores.
 */
import { jobLogPrefix } from '../core/job-record.js';
import { isJobId } from '../core/job-id.js';
import { createHash, timingSafeEqual } from 'node:crypto';
import { BADGE_CONTENT_TYPE, renderBadge, type BadgeState } from '../pages/badge.js';
import { REPO_PAGE_BUILDS } from '../pages/repo-page.js';
import { LOG_KEYS, REPO_KEYS } from '../core/protocol.js';
import type { HttpResponse } from '../core/http.js';
import type { Logger } from '../core/logger.js';
import { buildLabel, logPrefixFor, type BuildKey, type BuildRecord, type RepoName } from '../core/build.js';
import { isTerminal } from '../core/state-machine.js';
import { type BuildStore, type LogStore } from '../core/ports.js';
import { escapeHtml } from '../pages/html.js';

/** How long a presigned URL the route hands out stays valid. */
export const LINK_LIFETIME_SECONDS = 5 * 60;
/**
 * The running page reloads its own (presigned) URL, so while a build is unfinished the page's URL
 * lives until the build's deadline plus LINK_LIFETIME_SECONDS, but never longer than this.
 */
export const MAX_LINK_LIFETIME_SECONDS = 60 * 60;
/**
 * The most log text answered directly while a build runs (its log.txt does not exist yet). Well
 * under Lambda's 6 MB response limit; the end of the log is what a reader of a running build wants.
 */
export const MAX_INLINE_LOG_BYTES = 1024 * 1024;
/**
 * The largest page answered at its stable link (a Lambda answer holds at most 6 MB; a finished
 * page shows at most the last MiB of the log, so real pages stay well under). A larger one is
 * redirected to S3 as the raw log is, where its relative links do not resolve.
 */
export const MAX_INLINE_PAGE_BYTES = 5 * 1024 * 1024;
/** How often the waiting page reloads itself. */
export const WAITING_REFRESH_SECONDS = 5;
/**
 * A badge changes with every build: GitHub's image proxy (which otherwise keeps images for long)
 * and browsers must ask again each time they show it.
 */
export const BADGE_CACHE_CONTROL = 'max-age=0, no-cache';
/**
 * How many of a repository's latest builds a badge looks at to learn its default branch (the
 * latest that recorded one) and whether it is private (any of them).
 */
export const BADGE_RECENT_BUILDS = 20;
/** Longer branch names cannot be a branch (and would not fit the index key). */
const MAX_BRANCH_BYTES = 255;

export interface LogRouteRequest {
  method: string;
  /** Path without the query string or an API Gateway stage, e.g. `/builds/octo/app/7`. */
  path: string;
  /** The raw query string, without `?`. */
  query: string;
}

export interface BadgeRouteDependencies {
  builds: Pick<BuildStore, 'listBuilds' | 'previousFinishedBuildOf' | 'badgeTokenOf'>;
  logger: Logger;
}

export interface LogRouteDependencies extends BadgeRouteDependencies {
  builds: BadgeRouteDependencies['builds'] & Pick<BuildStore, 'getBuild'>;
  logs: Pick<LogStore, 'presignGet' | 'readLog' | 'getObjectText'>;
  /** Whether an object exists in the log bucket: a redirect must never point at nothing. */
  objectExists: (key: string) => Promise<boolean>;
  /** Epoch ms; defaults to Date.now. */
  now?: () => number;
}

type Target = 'page' | 'log';

const NAME = '[A-Za-z0-9._-]{1,100}';
// Build numbers start at 1 and have no leading zeros: one URL per build.
// A job of a build of several: `/builds/<owner>/<repo>/<number>/jobs/<job id>` (src/core/jobs.ts ids).
const BUILD_PATH = new RegExp(
  `^/builds/(${NAME})/(${NAME})/([1-9][0-9]{0,8})(?:/jobs/([a-z0-9_][a-z0-9._-]{0,299}))?(?:(/log\\.txt)|(/))?$`,
);
const REPO_PATH = new RegExp(`^/builds/(${NAME})/(${NAME})(/)?$`);
const BADGE_PATH = new RegExp(`^/badges/(${NAME})/(${NAME})\\.svg$`);
const DOTS_ONLY = /^\.+$/;

/** Headers of every answer: nothing cached, the token never sent on as a Referer. */
const COMMON_HEADERS: Readonly<Record<string, string>> = {
  'cache-control': 'no-store',
  'referrer-policy': 'no-referrer',
  'x-content-type-options': 'nosniff',
};
/** The stored pages (src/builder/logs/page.ts, repo-page.ts) as they say of themselves, never framed. */
const STORED_PAGE_HEADERS: Readonly<Record<string, string>> = {
  ...COMMON_HEADERS,
  'content-type': 'text/html; charset=utf-8',
  'content-security-policy':
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'",
};
/** Pages the route writes itself: inline style only, never framed. */
const PAGE_HEADERS: Readonly<Record<string, string>> = {
  ...COMMON_HEADERS,
  'content-type': 'text/html; charset=utf-8',
  'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
};

/** The headers of every badge: short-lived in any cache, and inert if opened on its own. */
const BADGE_HEADERS: Readonly<Record<string, string>> = {
  ...COMMON_HEADERS,
  'cache-control': BADGE_CACHE_CONTROL,
  'content-type': BADGE_CONTENT_TYPE,
  'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
};

export async function handleLogRequest(
  deps: LogRouteDependencies,
  request: LogRouteRequest,
): Promise<HttpResponse> {
  if (isBadgePath(request.path)) return handleBadgeRequest(deps, request);
  const response = await answer(deps, request);
  // HEAD: the same status and headers as GET, no body.
  return request.method === 'HEAD' ? { ...response, body: '' } : response;
}

async function answer(deps: LogRouteDependencies, request: LogRouteRequest): Promise<HttpResponse> {
  if (request.method !== 'GET' && request.method !== 'HEAD') {
    return page(405, 'Method not allowed', '<p>Build links can only be read (GET or HEAD).</p>', {
      allow: 'GET, HEAD',
    });
  }
  const repo = parseRepoPath(request.path);
  // With a trailing slash, the pages' relative links would resolve one folder too deep: the one
  // link without it (a rewrite of the path only, so it tells nothing about the build).
  if (repo?.slash) return redirect(`../${repo.name.split('/')[1]}`);
  if (repo) return serveRepoPage(deps, repo.name);
  const route = parseBuildPath(request.path);
  if (!route) return notFound();
  if (route.slash) {
    const last = route.job ?? String(route.key.number);
    return redirect(`../${encodeURIComponent(last)}${request.query ? `?${request.query}` : ''}`);
  }
  let build: BuildRecord | undefined;
  try {
    build = await deps.builds.getBuild(route.key);
  } catch (error) {
    return failure(deps, route.key, 'could not look up the build', error);
  }
  // Unknown build and wrong token get the same answer: private builds cannot be discovered.
  if (!build || !mayRead(deps, build, tokenOf(request.query))) return notFound();

  const prefix = build.logPrefix;
  if (!prefix.startsWith(logPrefixFor(route.key)) || !prefix.endsWith('/')) {
    // Never presign outside the build's own folder (the bucket also holds caches).
    return failure(
      deps,
      route.key,
      `the build's log prefix ${JSON.stringify(prefix)} is not inside its folder`,
      undefined,
    );
  }
  try {
    // A job's files are under its build's folder: the build's link (and token) opens them.
    const files = route.job === undefined ? prefix : jobLogPrefix(prefix, route.job);
    return route.target === 'page' ? await servePage(deps, build, files) : await serveLog(deps, build, files);
  } catch (error) {
    return failure(deps, route.key, `could not serve the build's ${route.target}`, error);
  }
}

/** Whether the path is under `/badges/`: those are handleBadgeRequest's, whatever follows. */
export function isBadgePath(path: string): boolean {
  return path.startsWith('/badges/');
}

/**
 * A repository's build badge, `build | passing`, from the build records: the state of the latest
 * build of the branch (`?branch=`, else the repository's default branch) that ended with a verdict
 * (cancelled, queued and running builds are skipped). Always `200` with an SVG, so that a README
 * never shows a broken image: an unknown repository or branch, a repository without such a build,
 * and a private repository asked without its badge token all answer the same `unknown` badge.
 */
export async function handleBadgeRequest(
  deps: BadgeRouteDependencies,
  request: LogRouteRequest,
): Promise<HttpResponse> {
  if (request.method !== 'GET' && request.method !== 'HEAD') {
    return page(405, 'Method not allowed', '<p>Badges can only be read (GET or HEAD).</p>', {
      allow: 'GET, HEAD',
    });
  }
  const repo = parseBadgePath(request.path);
  if (!repo) return notFound();
  let state: BadgeState;
  try {
    state = await badgeStateOf(deps, repo, request.query);
  } catch (error) {
    // Still an image: the error is logged, the README shows `unknown` rather than a broken image.
    deps.logger.error('log route: could not look up the badge', { repo, error });
    state = 'unknown';
  }
  const body = renderBadge(state);
  return { statusCode: 200, headers: { ...BADGE_HEADERS }, body: request.method === 'HEAD' ? '' : body };
}

function parseBadgePath(path: string): RepoName | undefined {
  const match = BADGE_PATH.exec(path);
  if (!match) return undefined;
  const [, owner = '', repo = ''] = match;
  if (DOTS_ONLY.test(owner) || DOTS_ONLY.test(repo)) return undefined;
  return `${owner}/${repo}`;
}

async function badgeStateOf(
  deps: BadgeRouteDependencies,
  repo: RepoName,
  query: string,
): Promise<BadgeState> {
  const asked = new URLSearchParams(query).getAll('branch');
  if (asked.length > 1) return 'unknown';
  const subject = await findBadgeBuild(deps.builds, repo, asked[0]);
  if (!subject.build) return 'unknown';
  if (subject.isPrivate && !(await mayReadPrivateBadge(deps, repo, tokenOf(query)))) return 'unknown';
  return subject.build.state;
}

/** What a badge shows, found in the build records (the route and `lambkin badge` alike). */
export interface BadgeSubject {
  /** The branch asked for, else the default branch; absent when neither is known. */
  branch?: string;
  /** The branch's latest build with a verdict; absent when there is none. */
  build?: BuildRecord;
  /** The badge needs the repository's badge token: any of its latest builds, or `build`, is private. */
  isPrivate: boolean;
}

export async function findBadgeBuild(
  builds: BadgeRouteDependencies['builds'],
  repo: RepoName,
  branch?: string,
): Promise<BadgeSubject> {
  const recent = await builds.listBuilds(repo, { limit: BADGE_RECENT_BUILDS });
  const isPrivate = recent.some(isPrivateBuild);
  // The default branch as GitHub last said it (every webhook carries it).
  const shownBranch = branch ?? recent.find((build) => build.defaultBranch)?.defaultBranch;
  if (!shownBranch || Buffer.byteLength(shownBranch, 'utf8') > MAX_BRANCH_BYTES) {
    return { ...(shownBranch ? { branch: shownBranch } : {}), isPrivate };
  }
  // Below any number: the latest such build of all.
  const build = await builds.previousFinishedBuildOf(repo, { branch: shownBranch }, Number.MAX_SAFE_INTEGER);
  return {
    branch: shownBranch,
    ...(build ? { build } : {}),
    isPrivate: isPrivate || (build !== undefined && isPrivateBuild(build)),
  };
}

/** A private repository's badge needs the repository's badge token; without one made, none reads it. */
async function mayReadPrivateBadge(
  deps: BadgeRouteDependencies,
  repo: RepoName,
  token: string | undefined,
): Promise<boolean> {
  if (token === undefined) return false;
  const expected = await deps.builds.badgeTokenOf(repo);
  return expected !== undefined && sameSecret(expected, token);
}

function parseBuildPath(
  path: string,
): { key: BuildKey; job?: string; target: Target; slash: boolean } | undefined {
  const match = BUILD_PATH.exec(path);
  if (!match) return undefined;
  const [, owner = '', repo = '', number = '', job, log, slash] = match;
  if (DOTS_ONLY.test(owner) || DOTS_ONLY.test(repo)) return undefined;
  if (job !== undefined && !isJobId(job)) return undefined;
  return {
    key: { repo: `${owner}/${repo}`, number: Number(number) },
    ...(job !== undefined ? { job } : {}),
    target: log ? 'log' : 'page',
    slash: slash !== undefined,
  };
}

function parseRepoPath(path: string): { name: RepoName; slash: boolean } | undefined {
  const match = REPO_PATH.exec(path);
  if (!match) return undefined;
  const [, owner = '', repo = '', slash] = match;
  if (DOTS_ONLY.test(owner) || DOTS_ONLY.test(repo)) return undefined;
  return { name: `${owner}/${repo}`, slash: slash !== undefined };
}

/**
 * A public repository's page of recent builds (written by the notifier on every state change). It
 * lists every build with its link, and a private build's link carries its token: a repository any
 * of whose listed builds is private is answered like one without a page, so that neither its page
 * nor its existence is given away.
 */
async function serveRepoPage(deps: LogRouteDependencies, repo: RepoName): Promise<HttpResponse> {
  try {
    const builds = await deps.builds.listBuilds(repo, { limit: REPO_PAGE_BUILDS });
    if (builds.length === 0 || builds.some(isPrivateBuild)) return noRepoPage();
    const html = await deps.logs.getObjectText(REPO_KEYS.page(repo));
    if (html === undefined) return noRepoPage();
    return { statusCode: 200, headers: STORED_PAGE_HEADERS, body: html };
  } catch (error) {
    return failure(deps, repo, "could not serve the repository's page of recent builds", error);
  }
}

function isPrivateBuild(build: BuildRecord): boolean {
  return build.privateRepo || build.logToken !== undefined;
}

/** The `token` query parameter; absent when missing or given more than once. */
function tokenOf(query: string): string | undefined {
  const tokens = new URLSearchParams(query).getAll('token');
  return tokens.length === 1 ? tokens[0] : undefined;
}

function mayRead(deps: LogRouteDependencies, build: BuildRecord, token: string | undefined): boolean {
  if (!build.privateRepo && build.logToken === undefined) return true;
  if (!build.logToken) {
    // Fail closed: a private build without a token has no link that may read it.
    deps.logger.warn('private build has no log token; its log is not served', { build: buildLabel(build) });
    return false;
  }
  return token !== undefined && sameSecret(build.logToken, token);
}

/** Constant-time comparison; hashing first makes the lengths equal. */
function sameSecret(expected: string, given: string): boolean {
  const digest = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest();
  return timingSafeEqual(digest(expected), digest(given));
}

/** The page itself, at the stable link (a running page reloads that link, so it stays fresh). */
async function servePage(
  deps: LogRouteDependencies,
  build: BuildRecord,
  prefix: string,
): Promise<HttpResponse> {
  const key = LOG_KEYS.page(prefix);
  const html = await deps.logs.getObjectText(key);
  // A queued build has no page yet.
  if (html === undefined) return waitingPage(build);
  if (Buffer.byteLength(html, 'utf8') > MAX_INLINE_PAGE_BYTES) {
    return redirect(await deps.logs.presignGet(key, pageLifetimeSeconds(build, deps.now?.() ?? Date.now())));
  }
  return { statusCode: 200, headers: STORED_PAGE_HEADERS, body: html };
}

/**
 * log.txt once the controller assembled it; while the build runs, the chunks so far straight from
 * the store (bounded to the end of the log); before anything was uploaded, the waiting page.
 */
async function serveLog(
  deps: LogRouteDependencies,
  build: BuildRecord,
  prefix: string,
): Promise<HttpResponse> {
  const key = LOG_KEYS.log(prefix);
  if (await deps.objectExists(key)) return redirect(await deps.logs.presignGet(key, LINK_LIFETIME_SECONDS));
  const text = await deps.logs.readLog(prefix);
  if (text === undefined) return waitingPage(build);
  return {
    statusCode: 200,
    headers: { ...COMMON_HEADERS, 'content-type': 'text/plain; charset=utf-8' },
    body: lastBytes(text, MAX_INLINE_LOG_BYTES),
  };
}

function pageLifetimeSeconds(build: BuildRecord, now: number): number {
  if (isTerminal(build.state)) return LINK_LIFETIME_SECONDS;
  const untilDeadline = Math.ceil((build.deadline - now) / 1000) + LINK_LIFETIME_SECONDS;
  return Math.min(MAX_LINK_LIFETIME_SECONDS, Math.max(LINK_LIFETIME_SECONDS, untilDeadline));
}

/** At most `limit` bytes from the end, starting at a whole line, behind a note of what was left out. */
export function lastBytes(text: string, limit: number): string {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= limit) return text;
  let start = bytes.length - limit;
  const lineStart = bytes.indexOf(0x0a, start) + 1;
  if (lineStart > 0 && lineStart < bytes.length) start = lineStart;
  // Never start inside a multi-byte character.
  while (start < bytes.length && ((bytes[start] ?? 0) & 0xc0) === 0x80) start++;
  return (
    `… the first ${start} bytes of the log are left out while the build runs; ` +
    'this link serves the whole log once the build ends …\n' +
    bytes.subarray(start).toString('utf8')
  );
}

function redirect(location: string): HttpResponse {
  return { statusCode: 302, headers: { ...COMMON_HEADERS, location }, body: '' };
}

function notFound(): HttpResponse {
  return page(404, 'Not found', '<p>There is no build at this address, or the link is incomplete.</p>');
}

/** Unknown, private and not yet written are one answer: private repositories cannot be discovered. */
function noRepoPage(): HttpResponse {
  return page(
    404,
    'Not found',
    '<p>There is no page of recent builds at this address. Lambkin serves it for public ' +
      "repositories only: a private repository's page links each build with its private token, " +
      "so open a build's own link instead.</p>",
  );
}

function waitingPage(build: BuildRecord): HttpResponse {
  const unfinished = !isTerminal(build.state);
  const description = build.description ? `: ${escapeHtml(build.description)}` : '';
  const next = unfinished
    ? 'Its log appears here once it starts; this page refreshes itself.'
    : 'It ended without a log.';
  return page(
    200,
    `${build.repo} #${build.number}`,
    `<p>This build is <strong>${escapeHtml(build.state)}</strong>${description}. ${next}</p>`,
    {},
    unfinished ? WAITING_REFRESH_SECONDS : undefined,
  );
}

function failure(
  deps: LogRouteDependencies,
  key: BuildKey | RepoName,
  problem: string,
  error: unknown,
): HttpResponse {
  const subject = typeof key === 'string' ? { repo: key } : { build: buildLabel(key) };
  deps.logger.error(`log route: ${problem}`, { ...subject, ...(error ? { error } : {}) });
  return page(
    500,
    'Something went wrong',
    '<p>Lambkin could not read this build just now. Try again in a moment.</p>',
  );
}

function page(
  statusCode: number,
  title: string,
  body: string,
  headers: Record<string, string> = {},
  refreshSeconds?: number,
): HttpResponse {
  const refresh = refreshSeconds ? `<meta http-equiv="refresh" content="${refreshSeconds}">` : '';
  return {
    statusCode,
    headers: { ...PAGE_HEADERS, ...headers },
    body:
      `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="referrer" content="no-referrer">` +
      `${refresh}<title>${escapeHtml(title)} — Lambkin</title>` +
      '<style>body{font:15px/1.5 system-ui,sans-serif;margin:2rem;color:#1f2328}</style></head>' +
      `<body><h1>${escapeHtml(title)}</h1>${body}</body></html>\n`,
  };
}
