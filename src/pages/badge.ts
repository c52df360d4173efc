/**
 * The status badge: a shields-style flat SVG, `build | passing`. The log route serves it at
 * `/badges/<owner>/<repo>.svg` (src/controller/log-route.ts); the controller also keeps a copy per branch
 * in the bucket (`branches/<branch>/badge.svg`).
 */
import type { BuildState } from '../core/state-machine.js';
import { escapeHtml } from './html.js';

export const BADGE_CONTENT_TYPE = 'image/svg+xml';

export type BadgeState = BuildState | 'unknown';
/** The only words a badge says. */
export type BadgeWord = 'passing' | 'failing' | 'error' | 'unknown';

const LABEL = 'build';
const LABEL_COLOR = '#555';

const COLORS: Record<BadgeWord, string> = {
  passing: '#4c1',
  failing: '#e05d44',
  error: '#fe7d37',
  unknown: '#9f9f9f',
};

/**
 * What a build in `state` says on a badge: the verdict of a build that ended (`timed_out` is an
 * error, as in its commit status); `unknown` for a build without one (queued, running, cancelled)
 * and for anything unexpected read from storage.
 */
export function badgeWordOf(state: BadgeState | undefined): BadgeWord {
  switch (state) {
    case 'success':
      return 'passing';
    case 'failure':
      return 'failing';
    case 'error':
    case 'timed_out':
      return 'error';
    default:
      return 'unknown';
  }
}

/**
 * Advance widths of Verdana at 11px (the badge font), in px, for the characters badges use; others
 * count as a wide character. Close enough to centre the text; `textLength` makes it fit exactly.
 */
// prettier-ignore
const VERDANA_11_WIDTHS: Record<string, number> = {
  a: 6.6, b: 6.9, c: 5.7, d: 6.9, e: 6.6, f: 3.9, g: 6.9, h: 7, i: 3, j: 3.8, k: 6.5, l: 3, m: 10.7,
  n: 7, o: 6.7, p: 6.9, q: 6.9, r: 4.7, s: 5.7, t: 4.3, u: 7, v: 6.5, w: 9, x: 6.5, y: 6.5, z: 5.8,
  ' ': 3.9,
};
const DEFAULT_CHAR_WIDTH = 7.5;
const HORIZONTAL_PADDING = 10;

export function renderBadge(state: BadgeState): string {
  // The state may come from storage as anything: badgeWordOf shows `unknown` rather than fail.
  const word = badgeWordOf(state);
  const labelTextWidth = textWidth(LABEL);
  const messageTextWidth = textWidth(word);
  const labelWidth = Math.round(labelTextWidth + HORIZONTAL_PADDING);
  const messageWidth = Math.round(messageTextWidth + HORIZONTAL_PADDING);
  const width = labelWidth + messageWidth;
  const label = escapeHtml(LABEL);
  const message = escapeHtml(word);
  const color = escapeHtml(COLORS[word]);
  const title = `${label}: ${message}`;
  const text = (content: string, x: number, length: number): string =>
    `<text x="${x}" y="15" fill="#010101" fill-opacity=".3" aria-hidden="true" textLength="${length}">${content}</text>` +
    `<text x="${x}" y="14" textLength="${length}">${content}</text>`;
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="20" role="img" aria-label="${title}">` +
    `<title>${title}</title>` +
    `<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/>` +
    `<stop offset="1" stop-opacity=".1"/></linearGradient>` +
    `<clipPath id="r"><rect width="${width}" height="20" rx="3" fill="#fff"/></clipPath>` +
    `<g clip-path="url(#r)"><rect width="${labelWidth}" height="20" fill="${LABEL_COLOR}"/>` +
    `<rect x="${labelWidth}" width="${messageWidth}" height="20" fill="${color}"/>` +
    `<rect width="${width}" height="20" fill="url(#s)"/></g>` +
    `<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" ` +
    `text-rendering="geometricPrecision" font-size="11">` +
    text(label, labelWidth / 2, round1(labelTextWidth)) +
    text(message, labelWidth + messageWidth / 2, round1(messageTextWidth)) +
    `</g></svg>\n`
  );
}

function textWidth(text: string): number {
  let width = 0;
  for (const char of text) width += VERDANA_11_WIDTHS[char] ?? DEFAULT_CHAR_WIDTH;
  return width;
}

function round1(value: number): number {
  return Math.round(value * 10) / 10;
}
