/**
 * Repository archives: GET /repos/{owner}/{repo}/tarball/{ref} redirects, as GitHub does, to a
 * download URL (on codeload at GitHub, here under CODELOAD_PREFIX) that serves `git archive`.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { CONTENTS_READ, type RequestContext, type Route, type StandIn } from './context.js';
import { runGit } from './git.js';
import { baseHeaders, notFound, send } from './http.js';
import { repoKey } from './records.js';
import { resolveCommit, visibleRepository } from './repositories.js';

/** Where the download URLs are: outside the API, answered without authentication or rate limit. */
export const CODELOAD_PREFIX = '/_codeload';

async function tarballRedirect(
  context: RequestContext,
  owner: string,
  name: string,
  ref: string,
): Promise<void> {
  const { standIn } = context;
  const repository = visibleRepository(standIn, owner, name, context.caller);
  const wanted = ref === '' ? repository.defaultBranch : ref;
  if ((await resolveCommit(repository, wanted)) === undefined) throw notFound();
  let location = `${standIn.baseUrl}${CODELOAD_PREFIX}/${repository.owner}/${repository.name}/legacy.tar.gz/${encodeURIComponent(wanted)}`;
  if (repository.private) {
    // Like codeload: a private archive URL carries its own short-lived token.
    const token = randomBytes(20).toString('hex').toUpperCase();
    standIn.archiveTokens.set(token, {
      repoKey: repoKey(repository.owner, repository.name),
      expiresAt: Date.now() + standIn.archiveUrlTtlMs,
    });
    location += `?token=${token}`;
  }
  send(context.response, 302, {
    ...context.headers,
    'cache-control': 'public, must-revalidate, max-age=0',
    'content-type': 'text/html;charset=utf-8',
    expires: new Date().toUTCString(),
    location,
  });
}

export const archiveRoutes: Route[] = [
  { method: 'GET', path: 'tarball/{ref*}', access: CONTENTS_READ, handle: tarballRedirect },
];

/** Serves a download URL; `segments` are the decoded path after CODELOAD_PREFIX. */
export async function serveArchive(
  standIn: StandIn,
  request: IncomingMessage,
  response: ServerResponse,
  requestId: string,
  segments: string[],
  query: URLSearchParams,
): Promise<void> {
  const plainNotFound = (): void =>
    send(
      response,
      404,
      { ...baseHeaders(requestId), 'content-type': 'text/plain; charset=utf-8' },
      '404: Not Found',
    );
  const [owner, name, format, ...refParts] = segments;
  const repository = owner && name ? standIn.repositories.get(repoKey(owner, name)) : undefined;
  if (!repository || format !== 'legacy.tar.gz' || refParts.length === 0 || request.method !== 'GET') {
    return plainNotFound();
  }
  if (repository.private) {
    const grant = standIn.archiveTokens.get(query.get('token') ?? '');
    if (
      !grant ||
      grant.repoKey !== repoKey(repository.owner, repository.name) ||
      grant.expiresAt < Date.now()
    ) {
      return plainNotFound();
    }
  }
  const sha = await resolveCommit(repository, refParts.join('/'));
  if (sha === undefined) return plainNotFound();
  const prefix = `${repository.owner}-${repository.name}-${sha.slice(0, 7)}`;
  const archive = await runGit(repository.gitDir, ['archive', '--format=tar.gz', `--prefix=${prefix}/`, sha]);
  send(
    response,
    200,
    {
      ...baseHeaders(requestId),
      'access-control-allow-origin': 'https://render.githubusercontent.com',
      'content-disposition': `attachment; filename=${prefix}.tar.gz`,
      'content-type': 'application/x-gzip',
      etag: `"${sha}"`,
    },
    archive,
  );
}
