/**
 * The local log viewer: serves each build's page and raw log from the local S3 at the same
 * stable links the cloud uses (`/builds/<owner>/<repo>/<number>` and `…/log.txt`), a
 * repository's page of recent builds at `/builds/<owner>/<repo>`, and its badge at
 * `/badges/<owner>/<repo>.svg` through the cloud route's own code (handleBadgeRequest).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { logPrefixFor, type BuildRecord } from '../core/build.js';
import { handleBadgeRequest, isBadgePath } from '../controller/log-route.js';
import { LOG_KEYS, REPO_KEYS } from '../core/protocol.js';
import type { Logger } from '../core/logger.js';
import { type BuildStore, type LogStore } from '../core/ports.js';

const NAME = '[A-Za-z0-9._-]{1,100}';
const BUILD_PATH = new RegExp(`^/builds/(${NAME})/(${NAME})/(\\d{1,9})(/log\\.txt)?/?$`);
const REPO_PATH = new RegExp(`^/builds/(${NAME})/(${NAME})/?$`);

function send(response: ServerResponse, status: number, type: string, body: string): void {
  response
    .writeHead(status, {
      'content-type': type,
      'cache-control': 'no-cache',
      'x-content-type-options': 'nosniff',
    })
    .end(body);
}

const escapeHtml = (text: string): string => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

export async function serveLogViewer(
  logs: LogStore,
  builds: BuildStore,
  request: IncomingMessage,
  response: ServerResponse,
  base: string,
  logger: Logger,
): Promise<void> {
  try {
    const url = new URL(request.url ?? '/', base);
    const path = url.pathname;
    if (isBadgePath(path)) {
      const answer = await handleBadgeRequest(
        { builds, logger },
        { method: request.method ?? 'GET', path, query: url.search.slice(1) },
      );
      response.writeHead(answer.statusCode, answer.headers).end(answer.body);
      return;
    }
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      send(response, 405, 'text/plain; charset=utf-8', 'Only GET here.\n');
      return;
    }
    // With a trailing slash the stored pages' relative links would resolve one folder too deep.
    const slashed = /^\/builds\/.+\/([^/]+)\/$/.exec(path);
    if (slashed) {
      response.writeHead(302, { location: `../${slashed[1]}${url.search}` }).end();
      return;
    }
    const build = BUILD_PATH.exec(path);
    if (build) {
      const [, owner, repo, number, raw] = build;
      const key = { repo: `${owner}/${repo}`, number: Number(number) };
      const prefix = logPrefixFor(key);
      if (raw) {
        const log = await logs.readLog(prefix);
        if (log === undefined)
          send(response, 404, 'text/plain; charset=utf-8', 'No log for this build yet.\n');
        else send(response, 200, 'text/plain; charset=utf-8', log);
        return;
      }
      const page = await logs.getObjectText(LOG_KEYS.page(prefix));
      if (page !== undefined) {
        send(response, 200, 'text/html; charset=utf-8', page);
        return;
      }
      const record = await builds.getBuild(key);
      if (!record) send(response, 404, 'text/html; charset=utf-8', notFoundPage(`${key.repo}#${key.number}`));
      else send(response, 200, 'text/html; charset=utf-8', waitingPage(record));
      return;
    }
    const repoMatch = REPO_PATH.exec(path);
    if (repoMatch) {
      const repo = `${repoMatch[1]}/${repoMatch[2]}`;
      // The page the builder keeps in the bucket (src/pages/repo-page.ts), as the cloud has it.
      const stored = await logs.getObjectText(REPO_KEYS.page(repo));
      if (stored !== undefined) {
        send(response, 200, 'text/html; charset=utf-8', stored);
        return;
      }
      send(
        response,
        200,
        'text/html; charset=utf-8',
        buildListPage(repo, await builds.listBuilds(repo, { limit: 50 }), base),
      );
      return;
    }
    if (path === '/' || path === '/builds') {
      send(
        response,
        200,
        'text/html; charset=utf-8',
        shell(
          'Lambkin',
          "<p>Lambkin local stack. Build pages are at <code>/builds/&lt;owner&gt;/&lt;repo&gt;/&lt;number&gt;</code>; a repository's builds at <code>/builds/&lt;owner&gt;/&lt;repo&gt;</code>; its badge at <code>/badges/&lt;owner&gt;/&lt;repo&gt;.svg</code>.</p>",
        ),
      );
      return;
    }
    send(response, 404, 'text/html; charset=utf-8', notFoundPage(path));
  } catch (error) {
    send(response, 500, 'text/plain; charset=utf-8', `The log viewer failed: ${(error as Error).message}\n`);
  }
}

function shell(title: string, body: string, refresh = false): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>${
    refresh ? '<meta http-equiv="refresh" content="3">' : ''
  }<style>body{font:15px/1.5 system-ui,sans-serif;margin:2rem;color:#1f2328}table{border-collapse:collapse}td,th{padding:.3rem .8rem;border-bottom:1px solid #ddd;text-align:left}code{background:#f3f3f3;padding:0 .2rem}</style></head><body><h1>${escapeHtml(
    title,
  )}</h1>${body}</body></html>\n`;
}

function notFoundPage(what: string): string {
  return shell('Not found', `<p>${escapeHtml(what)} is not a build this stack knows.</p>`);
}

function waitingPage(build: BuildRecord): string {
  return shell(
    `${build.repo} #${build.number}`,
    `<p>This build is <strong>${escapeHtml(build.state)}</strong>${
      build.description ? `: ${escapeHtml(build.description)}` : ''
    }. Its log appears here once it starts; this page refreshes itself.</p>`,
    build.state === 'queued' || build.state === 'running',
  );
}

function buildListPage(repo: string, list: BuildRecord[], base: string): string {
  const rows = list
    .map((build) => {
      const [owner, name] = build.repo.split('/');
      const link = `${base}/builds/${owner}/${name}/${build.number}`;
      const target = build.pr !== undefined ? `PR #${build.pr}` : (build.branch ?? build.tag ?? '');
      return `<tr><td><a href="${escapeHtml(link)}">#${build.number}</a></td><td>${escapeHtml(build.state)}</td><td>${escapeHtml(
        target,
      )}</td><td><code>${escapeHtml(build.sha.slice(0, 7))}</code></td><td>${escapeHtml(build.author)}</td><td>${escapeHtml(
        build.description ?? '',
      )}</td></tr>`;
    })
    .join('');
  return shell(
    `${repo}: recent builds`,
    list.length === 0
      ? '<p>No builds yet.</p>'
      : `<table><tr><th>build</th><th>state</th><th>branch / PR</th><th>commit</th><th>author</th><th>result</th></tr>${rows}</table>`,
  );
}
