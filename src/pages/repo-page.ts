/**
 * The page of a repository's recent builds (`logs/<owner>/<repo>/index.html`): number, state,
 * branch or pull request, commit, author, duration and a link to each build's page. Re-rendered
 * whenever one of its builds changes state (src/notify/observer.ts).
 *
 * Build records carry untrusted text (branch names, commit titles, authors come from whoever
 * pushed): everything is HTML-escaped, links are web links only, and the page's
 * Content-Security-Policy forbids scripts, like the log page's (src/pages/build-page.ts).
 */
import type { BuildRecord } from '../core/build.js';
import { STATE_LABELS } from '../core/state-machine.js';
import { formatDuration } from '../core/log-format.js';
import { escapeHtml, safeUrl } from './html.js';

/** How many builds the page lists. */
export const REPO_PAGE_BUILDS = 50;

export type RepoPageBuild = Pick<BuildRecord, 'repo' | 'number' | 'state' | 'sha' | 'author' | 'queuedAt'> &
  Partial<
    Pick<BuildRecord, 'branch' | 'tag' | 'pr' | 'commitTitle' | 'startedAt' | 'endedAt' | 'description'>
  >;

export interface RepoPageInput {
  repo: string;
  /** Latest first. */
  builds: readonly RepoPageBuild[];
  /** The link of a build's page, relative to this page (src/core/links.ts `relativePageLinks`). */
  linkOf: (build: RepoPageBuild) => string | undefined;
  /** Epoch ms for "running for …"; defaults to now. */
  now?: number;
}

export function renderRepoPage(input: RepoPageInput): string {
  const now = input.now ?? Date.now();
  const active = input.builds.some((build) => build.state === 'queued' || build.state === 'running');
  const rows = input.builds.map((build) => renderRow(build, input.linkOf(build), now)).join('\n');
  const title = `${input.repo} · recent builds`;
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="referrer" content="no-referrer">
<title>${escapeHtml(title)} — Lambkin</title>
<style>${STYLE}</style>
</head>
<body>
<main>
<h1>${escapeHtml(input.repo)} <span class="muted">recent builds</span></h1>
${
  input.builds.length === 0
    ? '<p class="empty">No builds yet.</p>'
    : `<table>
<thead><tr><th>Build</th><th>State</th><th>Branch / PR</th><th>Commit</th><th>Author</th><th>Duration</th></tr></thead>
<tbody>
${rows}
</tbody>
</table>`
}
${active ? '<p class="muted">Builds are running: reload for their progress.</p>\n' : ''}</main>
<footer>Lambkin CI · updated ${escapeHtml(new Date(now).toISOString().slice(0, 19).replace('T', ' '))} UTC</footer>
</body>
</html>
`;
}

function renderRow(build: RepoPageBuild, link: string | undefined, now: number): string {
  const url = safeUrl(link);
  const number = `#${escapeHtml(String(build.number))}`;
  const target =
    build.pr !== undefined
      ? `PR #${escapeHtml(String(build.pr))}${build.branch ? ` <span class="muted">${escapeHtml(build.branch)}</span>` : ''}`
      : build.tag !== undefined
        ? `tag ${escapeHtml(build.tag)}`
        : escapeHtml(build.branch ?? '');
  const title = build.commitTitle ? ` ${escapeHtml(truncate(build.commitTitle, 80))}` : '';
  const state = STATE_LABELS[build.state] ?? 'unknown';
  const description = build.description ? ` title="${escapeHtml(truncate(build.description, 200))}"` : '';
  return (
    `<tr class="state-${escapeHtml(build.state)}">` +
    `<td>${url ? `<a href="${escapeHtml(url)}">${number}</a>` : number}</td>` +
    `<td><span class="pill"${description}>${escapeHtml(state)}</span></td>` +
    `<td>${target}</td>` +
    `<td><code>${escapeHtml(build.sha.slice(0, 7))}</code>${title}</td>` +
    `<td>${escapeHtml(build.author)}</td>` +
    `<td>${escapeHtml(durationOf(build, now))}</td></tr>`
  );
}

function durationOf(build: RepoPageBuild, now: number): string {
  if (build.startedAt === undefined) return '';
  if (build.endedAt !== undefined) return formatDuration(build.endedAt - build.startedAt);
  return build.state === 'running' ? `${formatDuration(now - build.startedAt)} so far` : '';
}

function truncate(text: string, length: number): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > length ? `${flat.slice(0, length - 1)}…` : flat;
}

const STYLE = `
:root{color-scheme:light dark;--bg:#f6f8fa;--fg:#1f2328;--muted:#59636e;--card:#fff;--border:#d1d9e0;--link:#0969da}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#9198a1;--card:#151b23;--border:#3d444d;--link:#4493f8}}
body{margin:0;padding:24px;background:var(--bg);color:var(--fg);font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:1200px;margin:0 auto;background:var(--card);border:1px solid var(--border);border-radius:8px;padding:16px 20px}
a{color:var(--link);text-decoration:none}a:hover{text-decoration:underline}
h1{font-size:22px;margin:0 0 12px;font-weight:600}.muted{color:var(--muted);font-weight:400}
table{border-collapse:collapse;width:100%}th,td{padding:4px 10px;border-top:1px solid var(--border);text-align:left;vertical-align:top}
th{color:var(--muted);font-size:12px;font-weight:600;border-top:0}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.pill{display:inline-block;padding:0 10px;border-radius:999px;color:#fff;font-weight:600;font-size:12px;background:#6e7781}
.state-success .pill{background:#1f883d}.state-failure .pill{background:#cf222e}.state-error .pill{background:#bc4c00}
.state-timed_out .pill{background:#9a6700}.state-running .pill{background:#0969da}
footer{max-width:1200px;margin:16px auto 0;color:var(--muted);font-size:12px}`;
