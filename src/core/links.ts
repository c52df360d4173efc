/** Links Lambkin hands out. Stable: a build's link never changes, wherever its log lives. */
import type { BuildKey } from './build.js';

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
