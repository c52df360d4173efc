/** Links Lambkin hands out. Stable: a build's link never changes, wherever its log lives. */
import { randomBytes } from 'node:crypto';
import type { BuildKey, RepoName } from './build.js';

/** The secret part of a private link (a build's log token, a repository's badge token): 18 random bytes. */
export function newLinkToken(): string {
  return randomBytes(18).toString('base64url');
}

/**
 * The build's page: the API's log route in the cloud, the dev server's log viewer locally. Builds
 * of private repositories carry an unguessable token, so build numbers cannot be enumerated.
 */
export function buildPageUrl(publicUrl: string, key: BuildKey, logToken?: string): string {
  const [owner = '', name = ''] = key.repo.split('/');
  const path = `/builds/${encodeURIComponent(owner)}/${encodeURIComponent(name)}/${key.number}`;
  return `${publicUrl.replace(/\/+$/, '')}${path}${logToken ? `?token=${encodeURIComponent(logToken)}` : ''}`;
}

/** The raw log's link: `/log.txt` after the page's path, before its query (the private token). */
export function rawLogUrl(pageUrl: string): string {
  const query = pageUrl.indexOf('?');
  return query < 0 ? `${pageUrl}/log.txt` : `${pageUrl.slice(0, query)}/log.txt${pageUrl.slice(query)}`;
}

/**
 * A repository's build badge: its default branch's, or `branch`'s. A private repository's badge
 * carries the repository's badge token (never a build's log token: the link must outlive builds).
 */
export function badgeUrl(
  publicUrl: string,
  repo: RepoName,
  options: { branch?: string; token?: string } = {},
): string {
  const [owner = '', name = ''] = repo.split('/');
  const query = new URLSearchParams();
  if (options.branch !== undefined) query.set('branch', options.branch);
  if (options.token !== undefined) query.set('token', options.token);
  const search = query.size > 0 ? `?${query.toString()}` : '';
  return `${publicUrl.replace(/\/+$/, '')}/badges/${encodeURIComponent(owner)}/${encodeURIComponent(name)}.svg${search}`;
}

/** A repository's page of recent builds (served for public repositories only). */
export function repoPageUrl(publicUrl: string, repo: RepoName): string {
  const [owner = '', name = ''] = repo.split('/');
  return `${publicUrl.replace(/\/+$/, '')}/builds/${encodeURIComponent(owner)}/${encodeURIComponent(name)}`;
}

/**
 * Links inside the stored pages, relative to where those pages are served: a build's page at
 * `…/builds/<owner>/<repo>/<number>`, the repository's page at `…/builds/<owner>/<repo>` (the log
 * viewer of `lambkin dev` and the cloud's log route both serve them there). Relative, so one stored
 * page still links right when served from another port, host or custom domain. A private build's
 * token (its link's query) is kept on the links that need it.
 */
export interface RelativePageLinks {
  /** From the build's page to its raw log: `7/log.txt`. */
  rawLog: string;
  /** From the build's page to itself (a running page reloads it): `7`. */
  self: string;
  /** From the build's page to the repository's page of recent builds: `../app`. */
  repoPage: string;
  /** From the repository's page to the build's page: `app/7`. */
  fromRepoPage: string;
}

/**
 * The relative links of a build, from its stable link (`buildPageUrl`, any host; or only its path,
 * when no public URL is configured: only the path and the query matter).
 */
export function relativePageLinks(pageUrl: string): RelativePageLinks {
  const url = new URL(pageUrl, 'http://lambkin.invalid');
  const [name = '', number = ''] = url.pathname.split('/').slice(-2);
  return {
    rawLog: `${number}/log.txt${url.search}`,
    self: `${number}${url.search}`,
    repoPage: `../${name}`,
    fromRepoPage: `${name}/${number}${url.search}`,
  };
}

/** The relative links of a job's page (`…/builds/<owner>/<repo>/<number>/jobs/<id>`). */
export interface RelativeJobPageLinks {
  /** From the job's page to its raw log: `node-22/log.txt`. */
  rawLog: string;
  /** From the job's page to itself: `node-22`. */
  self: string;
  /** From the job's page to its build's page: `../../7`. */
  build: string;
}

/** A job's page, from its build's stable link: `/jobs/<id>` after the path, before the query (a private build's token). */
export function jobPageUrl(buildPageUrl: string, id: string): string {
  const query = buildPageUrl.indexOf('?');
  const path = `/jobs/${encodeURIComponent(id)}`;
  return query < 0
    ? `${buildPageUrl}${path}`
    : `${buildPageUrl.slice(0, query)}${path}${buildPageUrl.slice(query)}`;
}

export function relativeJobPageLinks(buildPageUrl: string, id: string): RelativeJobPageLinks {
  const url = new URL(buildPageUrl, 'http://lambkin.invalid');
  const number = url.pathname.split('/').pop() ?? '';
  const job = encodeURIComponent(id);
  return {
    rawLog: `${job}/log.txt${url.search}`,
    self: `${job}${url.search}`,
    build: `../../${number}${url.search}`,
  };
}

/** From a build's page to one of its jobs' pages: `7/jobs/node-22`. */
export function jobLinkFromBuildPage(buildPageUrl: string, id: string): string {
  const url = new URL(buildPageUrl, 'http://lambkin.invalid');
  const number = url.pathname.split('/').pop() ?? '';
  return `${number}/jobs/${encodeURIComponent(id)}${url.search}`;
}

/** The link recorded on the build at intake, or one made from the configured base URL. */
export function pageUrlOf(
  build: BuildKey & { pageUrl?: string; logToken?: string },
  publicUrl: string,
): string {
  return build.pageUrl ?? buildPageUrl(publicUrl, build, build.logToken);
}

const HOST = /^[A-Za-z0-9.-]{1,253}(:\d{1,5})?$/;

/**
 * The public base URL as the request reached us (API Gateway and function URLs set `host` and
 * `x-forwarded-proto`), for deployments that do not configure LAMBKIN_PUBLIC_URL.
 */
export function baseUrlFromRequest(headers: Record<string, string | undefined>): string | undefined {
  const host = headers['host'];
  if (!host || !HOST.test(host)) return undefined;
  const protocol = headers['x-forwarded-proto'] === 'http' ? 'http' : 'https';
  return `${protocol}://${host}`;
}
