/** Git trees: GET /repos/{owner}/{repo}/git/trees/{tree_sha}, and the tree listing contents use. */
import { CONTENTS_READ, type RequestContext, type Route } from './context.js';
import { gitText, runGit } from './git.js';
import { DOCS, PRIVATE_CACHE, RouteError, sendJson } from './http.js';
import type { Repository } from './records.js';
import { visibleRepository } from './repositories.js';

/** An entry of `git ls-tree --long`. */
export interface TreeEntry {
  mode: string;
  type: string;
  sha: string;
  size: number;
  path: string;
}

/** `git ls-tree --long` with `args` (a tree-ish, then options or paths), paths taken literally. */
export async function listTree(repository: Repository, args: string[]): Promise<TreeEntry[]> {
  const output = await runGit(repository.gitDir, ['--literal-pathspecs', 'ls-tree', '-z', '--long', ...args]);
  return output
    .toString('utf8')
    .split('\0')
    .filter((line) => line !== '')
    .map((line) => {
      const tab = line.indexOf('\t');
      const [mode = '', type = '', sha = '', size = '0'] = line.slice(0, tab).trim().split(/\s+/);
      return { mode, type, sha, size: Number(size) || 0, path: line.slice(tab + 1) };
    });
}

/**
 * A tree by its sha, or the root tree of a commit or ref, as GitHub accepts both; `recursive`
 * lists every entry below it.
 */
async function getTree(context: RequestContext, owner: string, name: string, treeish: string): Promise<void> {
  const repository = visibleRepository(context.standIn, owner, name, context.caller);
  const docs = `${DOCS}/git/trees#get-a-tree`;
  if (treeish === '' || treeish.startsWith('-')) throw new RouteError(404, 'Not Found', docs);
  let treeSha: string;
  try {
    treeSha = await gitText(repository.gitDir, ['rev-parse', '--verify', '--quiet', `${treeish}^{tree}`]);
  } catch {
    throw new RouteError(404, 'Not Found', docs);
  }
  // GitHub reads any present value of `recursive` (even "false") as recursive; so does this.
  const recursive = context.query.has('recursive');
  const entries = await listTree(repository, recursive ? ['-r', '-t', treeSha] : [treeSha]);
  const api = `${context.standIn.baseUrl}/repos/${repository.owner}/${repository.name}/git`;
  const tree = entries.map((entry) => ({
    path: entry.path,
    mode: entry.mode,
    type: entry.type,
    sha: entry.sha,
    // Blobs carry their size; submodules (type commit) have no object here, so no url.
    ...(entry.type === 'blob' ? { size: entry.size, url: `${api}/blobs/${entry.sha}` } : {}),
    ...(entry.type === 'tree' ? { url: `${api}/trees/${entry.sha}` } : {}),
  }));
  sendJson(
    context.response,
    200,
    { ...context.headers, 'cache-control': PRIVATE_CACHE },
    { sha: treeSha, url: `${api}/trees/${treeSha}`, tree, truncated: false },
  );
}

export const treeRoutes: Route[] = [
  { method: 'GET', path: 'git/trees/{treeish+}', access: CONTENTS_READ, handle: getTree },
];
