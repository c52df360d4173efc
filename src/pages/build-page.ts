/**
 * The readable log page (`index.html` next to `log.txt`): what was built, how it went, each step,
 * and the log with its colours. One self-contained document: inline CSS, no scripts, nothing loaded
 * from elsewhere.
 *
 * Build output is untrusted: everything from the log or the build record is HTML-escaped, and the
 * page's Content-Security-Policy forbids scripts anyway, should anything ever slip through.
 */
import { AnsiUp } from 'ansi_up';
import type { BuildRecord } from '../core/build.js';
import { relativePageLinks } from '../core/links.js';
import { STATE_LABELS } from '../core/state-machine.js';
import {
  formatDuration,
  parseStepMarkers,
  stepOutcome,
  type StepMarker,
  type StepOutcome,
} from '../core/log-format.js';
import { stripTerminalControls } from '../core/terminal-text.js';
import { escapeHtml, safeUrl } from './html.js';

export const DEFAULT_REFRESH_SECONDS = 5;

/** The fields of a build record the page shows. */
export type LogPageBuild = Pick<BuildRecord, 'repo' | 'number' | 'state' | 'sha' | 'author' | 'queuedAt'> &
  Partial<
    Pick<
      BuildRecord,
      'branch' | 'tag' | 'pr' | 'commitTitle' | 'htmlUrl' | 'startedAt' | 'endedAt' | 'description' | 'steps'
    >
  >;

export interface LogPageLinks {
  /** The raw log, relative to the page (src/core/links.ts `relativePageLinks`). */
  raw: string;
  /** The repository's page of recent builds, relative to the page; none for private builds. */
  repoPage?: string;
  /** The repository on GitHub. */
  github?: string;
  /** The commit on GitHub. */
  commit?: string;
  /** Where a running page reloads from: the page itself, with the private build's token. */
  self?: string;
}

/**
 * The page's links from the build's stable link: relative ones inside Lambkin, so the stored page
 * works wherever it is served; GitHub's stay absolute. A private build's link carries its token,
 * and its repository's page is never served (it would list every build with its token): no link.
 */
export function logPageLinksFor(pageUrl: string, githubUrl?: string): LogPageLinks {
  const relative = relativePageLinks(pageUrl);
  const isPrivate = new URL(pageUrl, 'http://lambkin.invalid').searchParams.has('token');
  return {
    raw: relative.rawLog,
    self: relative.self,
    ...(isPrivate ? {} : { repoPage: relative.repoPage }),
    ...(githubUrl ? { github: githubUrl } : {}),
  };
}

export interface LogPageInput {
  build: LogPageBuild;
  /** The (masked, bounded) raw log, ANSI escapes included. */
  log: string;
  /** While true the page refreshes itself. */
  running: boolean;
  links: LogPageLinks;
  refreshSeconds?: number;
  /** Epoch ms used for "running for …"; defaults to the current time. */
  now?: number;
  /** A build of several jobs: its jobs, each with a link to its own page. */
  jobs?: readonly LogPageJob[];
  /** A job's page: which job of the build it is, and the link back to the build's page. */
  job?: { title: string; buildHref: string };
}

/** One row of a build's job list. */
export interface LogPageJob {
  title: string;
  state: BuildRecord['state'];
  durationMs?: number;
  /** The job's page, relative to the build's (`7/jobs/node-22`). */
  href: string;
}

type StepStatus = StepOutcome | 'running' | 'interrupted' | 'not run';

interface StepRow {
  name: string;
  status: StepStatus;
  exitCode: number | null | undefined;
  duration: string | undefined;
  /** Id of the step's section in the log, when the log has one. */
  anchor: string | undefined;
}

interface LogSection {
  id: string | undefined;
  text: string;
}

interface LoggedStep {
  name: string;
  anchor: string;
  end: Extract<StepMarker, { kind: 'step-end' }> | undefined;
}

const STEP_STATUS_SYMBOLS: Record<StepStatus, string> = {
  passed: '✔',
  failed: '✘',
  'timed out': '⏱',
  killed: '✘',
  running: '●',
  interrupted: '■',
  'not run': '○',
};

export function renderLogPage(input: LogPageInput): string {
  const { build, running } = input;
  const now = input.now ?? Date.now();
  const refreshSeconds = validRefreshSeconds(input.refreshSeconds);
  const { sections, loggedSteps } = splitLog(input.log);
  const steps = stepRows(build, loggedSteps, running);
  const label = STATE_LABELS[build.state] ?? 'unknown';
  const title = `${build.repo} #${build.number}${input.job ? ` ${input.job.title}` : ''} · ${label}`;

  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="referrer" content="no-referrer">
${running ? `<meta http-equiv="refresh" content="${refreshTarget(refreshSeconds, input.links.self)}">\n` : ''}<title>${escapeHtml(title)} — Lambkin</title>
<style>${STYLE}</style>
</head>
<body>
<header class="build">
${renderHeading(build, input.links, label)}
${renderJobParent(input.job, build)}${renderRepoPageLink(build, input.links)}${build.commitTitle ? `<p class="commit-title">${escapeHtml(build.commitTitle)}</p>\n` : ''}${renderFacts(build, input.links, running, now)}
${build.description ? `<p class="description">${escapeHtml(build.description)}</p>\n` : ''}${
    running
      ? `<p class="notice">The ${input.job ? 'job' : 'build'} is running: this page refreshes every ${refreshSeconds} s.</p>\n`
      : ''
  }</header>
${renderJobs(input.jobs)}${renderSteps(steps, stepsTotalMs(build))}
<main>
<div class="toolbar"><h2>Log</h2><span><a href="${escapeHtml(safeUrl(input.links.raw) ?? '#')}">Raw log</a> · <a href="#end">Jump to end</a></span></div>
<div class="log">
${renderSections(sections, running)}<span id="end"></span>
</div>
</main>
<footer>Lambkin CI</footer>
</body>
</html>
`;
}

function renderHeading(build: LogPageBuild, links: LogPageLinks, label: string): string {
  const repoUrl = safeUrl(links.github);
  const repo = repoUrl
    ? `<a href="${escapeHtml(repoUrl)}">${escapeHtml(build.repo)}</a>`
    : escapeHtml(build.repo);
  return (
    `<div class="heading"><h1>${repo} <span class="number">#${escapeHtml(String(build.number))}</span></h1>` +
    `<span class="pill state-${escapeHtml(build.state)}">${escapeHtml(label)}</span></div>`
  );
}

function renderJobParent(job: LogPageInput['job'], build: LogPageBuild): string {
  if (!job) return '';
  const href = safeUrl(job.buildHref) ?? '#';
  return (
    `<p class="job">Job <strong>${escapeHtml(job.title)}</strong> of ` +
    `<a href="${escapeHtml(href)}">build #${escapeHtml(String(build.number))}</a></p>\n`
  );
}

/** The jobs of a build of several: state, duration and a link to each one's page and log. */
function renderJobs(jobs: readonly LogPageJob[] | undefined): string {
  if (!jobs || jobs.length === 0) return '';
  const rows = jobs.map((job) => {
    const label = STATE_LABELS[job.state] ?? 'unknown';
    const href = safeUrl(job.href) ?? '#';
    const duration = job.durationMs === undefined ? '' : formatDuration(job.durationMs);
    return (
      `<tr class="job-${escapeHtml(job.state)}"><td class="name"><a href="${escapeHtml(href)}">${escapeHtml(job.title)}</a></td>` +
      `<td class="outcome"><span class="pill state-${escapeHtml(job.state)}">${escapeHtml(label)}</span></td>` +
      `<td class="duration">${escapeHtml(duration)}</td></tr>`
    );
  });
  return `<nav class="jobs"><h2>Jobs</h2><table><tbody>\n${rows.join('\n')}\n</tbody></table></nav>\n`;
}

function renderRepoPageLink(build: LogPageBuild, links: LogPageLinks): string {
  const url = safeUrl(links.repoPage);
  if (!url) return '';
  return `<p class="all-builds"><a href="${escapeHtml(url)}">All builds of ${escapeHtml(build.repo)}</a></p>\n`;
}

function renderFacts(build: LogPageBuild, links: LogPageLinks, running: boolean, now: number): string {
  const facts: [string, string][] = [];
  const shortSha = escapeHtml(build.sha.slice(0, 7));
  const commitUrl = safeUrl(links.commit);
  facts.push([
    'Commit',
    commitUrl
      ? `<a href="${escapeHtml(commitUrl)}"><code>${shortSha}</code></a>`
      : `<code>${shortSha}</code>`,
  ]);
  if (build.pr !== undefined) {
    const prUrl = safeUrl(build.htmlUrl);
    const pr = `PR #${escapeHtml(String(build.pr))}`;
    const from = build.branch ? ` <span class="muted">from</span> ${escapeHtml(build.branch)}` : '';
    facts.push(['Pull request', (prUrl ? `<a href="${escapeHtml(prUrl)}">${pr}</a>` : pr) + from]);
  } else if (build.tag !== undefined) {
    facts.push(['Tag', escapeHtml(build.tag)]);
  } else if (build.branch !== undefined) {
    facts.push(['Branch', escapeHtml(build.branch)]);
  }
  facts.push(['Author', escapeHtml(build.author)]);
  // The build's own time, fetch and log upload included; the steps' sum is under Steps (the
  // description's "passed in …" is that sum), so each figure says what it measures.
  const duration = durationText(build, running, now);
  if (duration) {
    facts.push([
      'Total time',
      `${escapeHtml(duration)} <span class="muted">(fetch, steps, log upload)</span>`,
    ]);
  }
  const startedAt = build.startedAt ?? build.queuedAt;
  facts.push([build.startedAt === undefined ? 'Queued' : 'Started', renderTime(startedAt)]);
  const items = facts.map(([term, value]) => `<div><dt>${term}</dt><dd>${value}</dd></div>`);
  return `<dl class="facts">${items.join('')}</dl>`;
}

function renderSteps(steps: StepRow[], stepsTotalMs: number | undefined): string {
  if (steps.length === 0) return '';
  const rows = steps.map((step) => {
    const name = step.anchor
      ? `<a href="#${step.anchor}">${escapeHtml(step.name)}</a>`
      : escapeHtml(step.name);
    // No exit code (killed, timed out, not run): the status column already says why.
    const exit = typeof step.exitCode === 'number' ? `exit ${step.exitCode}` : '';
    const statusClass = `step-${step.status.replace(/ /g, '-')}`;
    return (
      `<tr class="${statusClass}"><td class="status"><span title="${step.status}">${STEP_STATUS_SYMBOLS[step.status]}</span></td>` +
      `<td class="name">${name}</td><td class="outcome">${step.status}</td>` +
      `<td class="exit">${exit}</td><td class="duration">${escapeHtml(step.duration ?? '')}</td></tr>`
    );
  });
  const total =
    stepsTotalMs === undefined
      ? ''
      : `\n<tfoot><tr><td></td><td class="name" colspan="3">Steps in total</td><td class="duration">${escapeHtml(formatDuration(stepsTotalMs))}</td></tr></tfoot>`;
  return `<nav class="steps"><h2>Steps</h2><table><tbody>\n${rows.join('\n')}\n</tbody>${total}</table></nav>`;
}

function renderSections(sections: LogSection[], running: boolean): string {
  const rendered = sections
    .filter((section) => section.id !== undefined || section.text.length > 0)
    .map((section) => {
      let html = renderTerminalText(section.text);
      // The HTML parser drops a newline right after <pre>: double it to keep a leading blank line.
      if (html.startsWith('\n')) html = `\n${html}`;
      return `<pre${section.id ? ` id="${section.id}"` : ''}>${html}</pre>\n`;
    });
  if (rendered.length === 0) {
    return `<p class="empty">${running ? 'No output yet.' : 'The log is empty.'}</p>\n`;
  }
  return rendered.join('');
}

/** Splits the log at each step header (and the summary), so each step's output can be linked to. */
function splitLog(log: string): { sections: LogSection[]; loggedSteps: LoggedStep[] } {
  const sections: LogSection[] = [];
  const loggedSteps: LoggedStep[] = [];
  let sectionStart = 0;
  let sectionId: string | undefined;
  for (const marker of parseStepMarkers(log)) {
    if (marker.kind === 'step-end') {
      const current = loggedSteps.at(-1);
      if (current && current.name === marker.name && !current.end && sectionId === current.anchor) {
        current.end = marker;
      }
      continue;
    }
    sections.push({ id: sectionId, text: log.slice(sectionStart, marker.start) });
    sectionStart = marker.start;
    if (marker.kind === 'step-start') {
      sectionId = `step-${loggedSteps.length + 1}`;
      loggedSteps.push({ name: marker.name, anchor: sectionId, end: undefined });
    } else {
      sectionId = 'summary';
    }
  }
  sections.push({ id: sectionId, text: log.slice(sectionStart) });
  return { sections, loggedSteps };
}

/**
 * The steps as recorded on the build (authoritative once it ends), linked to their sections of the
 * log; steps only the log knows of (the one running now) follow.
 */
function stepRows(build: LogPageBuild, loggedSteps: LoggedStep[], running: boolean): StepRow[] {
  const unmatched = [...loggedSteps];
  const rows: StepRow[] = [];
  for (const step of build.steps ?? []) {
    const index = unmatched.findIndex((logged) => logged.name === step.name);
    const logged = index === -1 ? undefined : unmatched.splice(index, 1)[0];
    let status: StepStatus = logged?.end?.outcome ?? stepOutcome(step);
    if (step.exitCode === null && !logged) status = 'not run';
    rows.push({
      name: step.name,
      status,
      exitCode: step.exitCode,
      duration: status === 'not run' ? undefined : formatDuration(step.durationMs),
      anchor: logged?.anchor,
    });
  }
  for (const logged of unmatched) {
    rows.push({
      name: logged.name,
      status: logged.end?.outcome ?? (running ? 'running' : 'interrupted'),
      exitCode: logged.end ? logged.end.exitCode : undefined,
      duration: logged.end?.durationText,
      anchor: logged.anchor,
    });
  }
  return rows;
}

/** The recorded steps' time added up (what "passed in …" says); none while the build runs. */
function stepsTotalMs(build: LogPageBuild): number | undefined {
  if (build.endedAt === undefined || !build.steps?.length) return undefined;
  return build.steps.reduce((sum, step) => sum + step.durationMs, 0);
}

function durationText(build: LogPageBuild, running: boolean, now: number): string | undefined {
  if (build.startedAt === undefined) return undefined;
  if (build.endedAt !== undefined) return formatDuration(build.endedAt - build.startedAt);
  return running ? `${formatDuration(now - build.startedAt)} so far` : undefined;
}

function renderTime(epochMs: number): string {
  const date = new Date(epochMs);
  if (Number.isNaN(date.getTime())) return '';
  const iso = date.toISOString();
  return `<time datetime="${iso}">${iso.slice(0, 10)} ${iso.slice(11, 19)} UTC</time>`;
}

function validRefreshSeconds(seconds: number | undefined): number {
  return seconds !== undefined && Number.isInteger(seconds) && seconds >= 1
    ? seconds
    : DEFAULT_REFRESH_SECONDS;
}

/** What is left of control characters after ANSI conversion (not valid in HTML text). */
const CONTROL_CHARACTERS = /(?![\t\n])\p{Cc}/gu;

/**
 * Build output → HTML: colours kept, everything else escaped. Every other escape sequence and
 * control character is removed first, by the same reading the secret masker uses
 * (src/core/terminal-text.ts): ansi_up then sees only text and colours, so the page shows no text
 * the masker did not look at (and no OSC hyperlink, nor an OSC that swallows the rest).
 */
function renderTerminalText(text: string): string {
  const converter = new AnsiUp();
  converter.escape_html = true;
  converter.use_classes = true;
  const html = converter.ansi_to_html(
    applyCarriageReturns(stripTerminalControls(text, { colours: true, carriageReturns: true })),
  );
  return html.replace(CONTROL_CHARACTERS, '');
}

/** A progress bar redraws its line after `\r`: keep what the terminal would finally show. */
function applyCarriageReturns(text: string): string {
  if (!text.includes('\r')) return text;
  return text
    .replace(/\r+\n/g, '\n')
    .split('\n')
    .map((line) => {
      if (!line.includes('\r')) return line;
      const redraws = line.split('\r').filter((part) => part.length > 0);
      return redraws.at(-1) ?? '';
    })
    .join('\n');
}

/** `5`, or `5;url=<the stable link>` when there is one (escaped by the caller's attribute). */
function refreshTarget(seconds: number, self: string | undefined): string {
  const url = safeUrl(self);
  return url ? `${seconds};url=${escapeHtml(url)}` : String(seconds);
}

/** Terminal colours chosen to read well on the dark log panel (ansi_up emits these classes). */
const ANSI_PALETTE: Record<string, [normal: string, bright: string]> = {
  black: ['#484f58', '#6e7681'],
  red: ['#ff7b72', '#ffa198'],
  green: ['#3fb950', '#56d364'],
  yellow: ['#d29922', '#e3b341'],
  blue: ['#58a6ff', '#79c0ff'],
  magenta: ['#bc8cff', '#d2a8ff'],
  cyan: ['#39c5cf', '#56d4dd'],
  white: ['#b1bac4', '#f0f6fc'],
};

const ANSI_CSS = Object.entries(ANSI_PALETTE)
  .flatMap(([name, [normal, bright]]) => [
    `.ansi-${name}-fg{color:${normal}}`,
    `.ansi-bright-${name}-fg{color:${bright}}`,
    `.ansi-${name}-bg{background:${normal}}`,
    `.ansi-bright-${name}-bg{background:${bright}}`,
  ])
  .join('');

const STYLE = `
:root{color-scheme:light dark;--bg:#f6f8fa;--fg:#1f2328;--muted:#59636e;--card:#fff;--border:#d1d9e0;--link:#0969da}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#9198a1;--card:#151b23;--border:#3d444d;--link:#4493f8}}
*{box-sizing:border-box}
body{margin:0;padding:24px;background:var(--bg);color:var(--fg);font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
a{color:var(--link);text-decoration:none}a:hover{text-decoration:underline}
header.build,nav.steps{background:var(--card);border:1px solid var(--border);border-radius:8px;padding:16px 20px;margin:0 auto 16px;max-width:1200px}
main{max-width:1200px;margin:0 auto}
.heading{display:flex;align-items:center;gap:12px;flex-wrap:wrap}
h1{font-size:22px;margin:0;font-weight:600}h1 .number{color:var(--muted);font-weight:400}
h2{font-size:15px;margin:0 0 8px}
.pill{display:inline-block;padding:2px 12px;border-radius:999px;color:#fff;font-weight:600;font-size:13px;background:#6e7781}
.state-success{background:#1f883d}.state-failure{background:#cf222e}.state-error{background:#bc4c00}
.state-timed_out{background:#9a6700}.state-running{background:#0969da}.state-queued,.state-cancelled{background:#6e7781}
.commit-title{margin:8px 0 0;font-size:15px}
.facts{display:flex;flex-wrap:wrap;gap:8px 28px;margin:12px 0 0}
.facts dt{color:var(--muted);font-size:12px}.facts dd{margin:0}
code,pre{font-family:ui-monospace,SFMono-Regular,"SF Mono",Menlo,Consolas,"Liberation Mono",monospace}
.description{margin:12px 0 0}.muted{color:var(--muted)}
.notice{margin:12px 0 0;color:var(--muted)}.notice::before{content:"● ";color:#0969da}
.steps table{border-collapse:collapse;width:100%}
.steps td{padding:3px 8px;border-top:1px solid var(--border)}.steps tr:first-child td{border-top:0}
.steps .status{width:24px;text-align:center}.steps .exit,.steps .duration{color:var(--muted);white-space:nowrap;text-align:right}
.steps .outcome{color:var(--muted)}
.steps tfoot td{border-top:1px solid var(--border);color:var(--muted)}
.all-builds{margin:4px 0 0;font-size:13px}
.step-passed .status{color:#1a7f37}.step-failed .status,.step-killed .status{color:#cf222e}
.step-timed-out .status{color:#9a6700}.step-running .status{color:#0969da}.step-interrupted .status,.step-not-run .status{color:var(--muted)}
.toolbar{display:flex;justify-content:space-between;align-items:baseline;margin:0 0 8px}
.log{background:#0d1117;color:#e6edf3;border:1px solid #30363d;border-radius:8px;padding:12px 0;overflow-x:auto}
.log pre{margin:0;padding:0 16px;font-size:13px;line-height:1.45;white-space:pre-wrap;overflow-wrap:anywhere;tab-size:8}
.log pre:target{background:#161b22;box-shadow:inset 3px 0 #58a6ff}
.log .empty{margin:0;padding:0 16px;color:#9198a1;font-style:italic}
footer{max-width:1200px;margin:16px auto 0;color:var(--muted);font-size:12px}
${ANSI_CSS}`;
