/**
 * The last lines of a failed build's failing step, for the failure message: found with the step
 * markers the builder writes (src/core/log-format.ts), stripped of terminal escapes, and masked
 * for the repository's secret values (the log was masked when written; masking again costs nothing
 * and also covers the notification secrets).
 */
import { parseStepMarkers } from '../core/log-format.js';
import { maskSecrets } from '../core/log-mask.js';
import { stripTerminalControls } from '../core/terminal-text.js';

export const DEFAULT_TAIL_LINES = 20;
/** Slack shows about 3000 characters of an attachment's text; leave room for the rest. */
export const MAX_TAIL_CHARACTERS = 2000;

export interface LogTail {
  /** The failing step's name, when the log shows one. */
  step?: string;
  text: string;
}

export function failingStepTail(
  log: string,
  secrets: readonly string[],
  options: { lines?: number; maxCharacters?: number } = {},
): LogTail | undefined {
  const markers = parseStepMarkers(log);
  let start = 0;
  let end = log.length;
  let step: string | undefined;
  // The last step that did not pass; else (failed before any step ended) the end of the log.
  for (let index = markers.length - 1; index >= 0; index--) {
    const marker = markers[index];
    if (marker?.kind !== 'step-end' || marker.outcome === 'passed') continue;
    const header = markers
      .slice(0, index)
      .reverse()
      .find((candidate) => candidate.kind === 'step-start' && candidate.name === marker.name);
    start = header?.end ?? 0;
    end = marker.start;
    step = marker.name;
    break;
  }
  const section = log.slice(start, end);
  const plain = lastLinesOf(
    applyCarriageReturns(stripTerminalControls(section, { carriageReturns: true })),
    options.lines ?? DEFAULT_TAIL_LINES,
  );
  const masked = maskSecrets(plain, secrets);
  const limit = options.maxCharacters ?? MAX_TAIL_CHARACTERS;
  const text = masked.length > limit ? `…${masked.slice(masked.length - limit + 1)}` : masked;
  if (text.trim() === '') return undefined;
  return { ...(step !== undefined ? { step } : {}), text };
}

function lastLinesOf(text: string, count: number): string {
  const lines = text.replace(/\n+$/, '').split('\n');
  return lines.slice(-count).join('\n');
}

/** A progress bar redraws its line after `\r`: keep what a terminal would finally show. */
function applyCarriageReturns(text: string): string {
  if (!text.includes('\r')) return text;
  return text
    .replace(/\r+\n/g, '\n')
    .split('\n')
    .map(
      (line) =>
        line
          .split('\r')
          .filter((part) => part.length > 0)
          .at(-1) ?? '',
    )
    .join('\n');
}
