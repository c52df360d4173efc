/** Repository contents: GET /repos/{owner}/{repo}/contents/{path}, as JSON or raw. */
import { CONTENTS_READ, type RequestContext, type Route } from './context.js';
import { runGit } from './git.js';
import { DOCS, PRIVATE_CACHE, RouteError, send, sendJson } from './http.js';
import type { Repository } from './records.js';
import { resolveCommit, visibleRepository } from './repositories.js';
import { listTree, type TreeEntry } from './trees.js';

const CONTENT_DOCS = `${DOCS}/repos/contents#get-repository-content`;
/** Files above this size come without content in the JSON answer (`encoding: none`). */
const MAX_INLINE_CONTENT_BYTES = 1024 * 1024;

function contentLinks(
  baseUrl: string,
  repository: Repository,
  path: string,
  ref: string,
  objectSha: string,
  kind: 'blob' | 'tree',
) {
  const api = `${baseUrl}/repos/${repository.owner}/${repository.name}`;
  const self = `${api}/contents/${path}?ref=${encodeURIComponent(ref)}`;
  const git = `${api}/git/${kind === 'blob' ? 'blobs' : 'trees'}/${objectSha}`;
  const html = `${baseUrl}/${repository.owner}/${repository.name}/${kind}/${ref}/${path}`;
  return { url: self, git_url: git, html_url: html, _links: { self, git, html } };
}

async function getContent(context: RequestContext, owner: string, name: string, path: string): Promise<void> {
  const { baseUrl } = context.standIn;
  const repository = visibleRepository(context.standIn, owner, name, context.caller);
  const ref = context.query.get('ref') || repository.defaultBranch;
  const commit = await resolveCommit(repository, ref);
  if (commit === undefined) throw new RouteError(404, `No commit found for the ref ${ref}`, CONTENT_DOCS);
  const cleanPath = path.replace(/^\/+|\/+$/g, '');
  const headers = {
    ...context.headers,
    'cache-control': PRIVATE_CACHE,
    'last-modified': new Date().toUTCString(),
  };
  const raw = /application\/vnd\.github(?:\.v3)?\.raw/.test(context.request.headers.accept ?? '');
  const describe = (entry: TreeEntry) => {
    const type =
      entry.type === 'tree'
        ? 'dir'
        : entry.type === 'commit'
          ? 'submodule'
          : entry.mode === '120000'
            ? 'symlink'
            : 'file';
    const links = contentLinks(
      baseUrl,
      repository,
      entry.path,
      ref,
      entry.sha,
      entry.type === 'tree' ? 'tree' : 'blob',
    );
    return {
      type,
      size: entry.type === 'blob' ? entry.size : 0,
      name: entry.path.split('/').pop() ?? entry.path,
      path: entry.path,
      sha: entry.sha,
      ...links,
      download_url:
        type === 'file'
          ? `${baseUrl}/_raw/${repository.owner}/${repository.name}/${ref}/${entry.path}`
          : null,
    };
  };
  // `ls-tree <commit> -- dir/` lists the folder's entries with their full paths, as GitHub gives them.
  const listing = async (folder: string) =>
    (await listTree(repository, folder === '' ? [commit] : [commit, '--', `${folder}/`])).map(describe);
  if (cleanPath === '') return sendJson(context.response, 200, headers, await listing(''));
  const [entry] = await listTree(repository, [commit, '--', cleanPath]);
  if (!entry || entry.path !== cleanPath) throw new RouteError(404, 'Not Found', CONTENT_DOCS);
  if (entry.type === 'tree') return sendJson(context.response, 200, headers, await listing(cleanPath));
  const item = describe(entry);
  if (item.type === 'submodule') {
    return sendJson(context.response, 200, headers, { ...item, submodule_git_url: '' });
  }
  const blob = await runGit(repository.gitDir, ['cat-file', 'blob', entry.sha]);
  if (item.type === 'symlink') {
    return sendJson(context.response, 200, headers, { ...item, target: blob.toString('utf8') });
  }
  if (raw) {
    return send(
      context.response,
      200,
      {
        ...headers,
        'content-type': 'application/vnd.github.raw; charset=utf-8',
        'x-github-media-type': 'github.v3; param=raw',
      },
      blob,
    );
  }
  const inline = blob.length <= MAX_INLINE_CONTENT_BYTES;
  sendJson(context.response, 200, headers, {
    ...item,
    // GitHub wraps the base64 at 60 characters per line.
    content: inline
      ? (blob.toString('base64').match(/.{1,60}/g) ?? []).map((line) => `${line}\n`).join('')
      : '',
    encoding: inline ? 'base64' : 'none',
  });
}

export const contentRoutes: Route[] = [
  { method: 'GET', path: 'contents/{path*}', access: CONTENTS_READ, handle: getContent },
];
