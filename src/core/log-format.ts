/**
 * The lines the builder writes into the raw log around each step and at the end of the build, and a
 * parser that finds them again (the log page uses it to link each step to its output).
 *
 * The lines are meant for people reading the log in a terminal: bold and coloured with ANSI escapes.
 * Each starts with an exact escape sequence and symbol at the start of a line, so ordinary build
 * output does not look like one by accident. A build can still print one on purpose: the markers
 * only drive navigation on the page, never anything that matters for trust or results.
 *
 * Each formatted block ends with a newline and must be written at the start of a line.
 */
import type { StepResult } from './build.js';
import type { BuildState } from './state-machine.js';

const ESC = '\u001b';
const RESET = `${ESC}[0m`;
const DIM = `${ESC}[2m`;
const HEADER_START = `${ESC}[1;36m▶ step `;
const COMMAND_START = `${ESC}[36m`;
const FIRST_COMMAND_PROMPT = '$ ';
const NEXT_COMMAND_PROMPT = '> ';

export type StepOutcome = 'passed' | 'failed' | 'timed out' | 'killed';

const OUTCOME_STYLES: Record<StepOutcome, { sgr: string; symbol: string }> = {
  passed: { sgr: '1;32', symbol: '✔' },
  failed: { sgr: '1;31', symbol: '✘' },
  'timed out': { sgr: '1;33', symbol: '⏱' },
  killed: { sgr: '1;31', symbol: '✘' },
};

/** How the summary line names each build state. */
const BUILD_STATE_WORDS: Record<BuildState, string> = {
  queued: 'queued',
  running: 'running',
  success: 'passed',
  failure: 'failed',
  error: 'errored',
  timed_out: 'timed out',
  cancelled: 'cancelled',
};

const BUILD_STATE_SGR: Record<BuildState, string> = {
  queued: '1;37',
  running: '1;34',
  success: '1;32',
  failure: '1;31',
  error: '1;31',
  timed_out: '1;33',
  cancelled: '1;37',
};

const HEADER_PATTERN = new RegExp(`^${escapeRegExp(HEADER_START)}(.*)${escapeRegExp(RESET)}$`);
const COMMAND_PATTERN = new RegExp(
  `^${escapeRegExp(COMMAND_START)}(${escapeRegExp(FIRST_COMMAND_PROMPT)}|${escapeRegExp(NEXT_COMMAND_PROMPT)})(.*)${escapeRegExp(RESET)}$`,
);
const FOOTER_PATTERN = new RegExp(
  `^${escapeRegExp(ESC)}\\[1;3[123]m[✔✘⏱] step (.*): (passed|failed|timed out|killed)${escapeRegExp(RESET)}` +
    `${escapeRegExp(DIM)} \\((?:exit (-?\\d+)|no exit code), (.+)\\)${escapeRegExp(RESET)}$`,
);
const SUMMARY_PATTERN = new RegExp(`^${escapeRegExp(ESC)}\\[1;3\\dm■ build ([a-z ]+)${escapeRegExp(RESET)}`);
const BUILD_STATE_BY_WORD = new Map(
  Object.entries(BUILD_STATE_WORDS).map(([state, word]) => [word, state as BuildState]),
);

export interface StepHeaderInput {
  name: string;
  command: string;
}

export interface StepFooterInput {
  name: string;
  /** Null when the process was killed (by a signal or the timeout). */
  exitCode: number | null;
  durationMs: number;
  timedOut?: boolean;
}

export interface BuildSummaryInput {
  state: BuildState;
  durationMs?: number;
  steps?: readonly (StepResult & { timedOut?: boolean })[];
  /** One line saying why, e.g. "timed out after 600 s in test". */
  description?: string;
}

export type StepMarker =
  | { kind: 'step-start'; name: string; command: string; start: number; end: number }
  | {
      kind: 'step-end';
      name: string;
      outcome: StepOutcome;
      exitCode: number | null;
      /** As written, e.g. `12.3 s`. */
      durationText: string;
      start: number;
      end: number;
    }
  | { kind: 'build-summary'; state: BuildState; start: number; end: number };

export function stepOutcome(step: { exitCode: number | null; timedOut?: boolean }): StepOutcome {
  if (step.timedOut) return 'timed out';
  if (step.exitCode === null) return 'killed';
  return step.exitCode === 0 ? 'passed' : 'failed';
}

/** `850 ms`, `12.3 s`, `2 min 05 s`, `1 h 02 min`. */
export function formatDuration(ms: number): string {
  const safeMs = Number.isFinite(ms) && ms > 0 ? ms : 0;
  if (Math.round(safeMs) < 1000) return `${Math.round(safeMs)} ms`;
  const tenths = Math.round(safeMs / 100);
  if (tenths < 600) return `${(tenths / 10).toFixed(1)} s`;
  const seconds = Math.round(safeMs / 1000);
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${twoDigits(seconds % 60)} s`;
  const minutes = Math.round(safeMs / 60_000);
  return `${Math.floor(minutes / 60)} h ${twoDigits(minutes % 60)} min`;
}

/**
 * `▶ step <name>` and the command, one `$ `/`> ` line per line of it:
 * what is about to run, in the log right above its output.
 */
export function formatStepHeader(step: StepHeaderInput): string {
  let text = `${HEADER_START}${singleLine(step.name)}${RESET}\n`;
  const commandLines = step.command.split(/\r?\n/);
  while (commandLines.length > 1 && commandLines.at(-1)?.trim() === '') commandLines.pop();
  commandLines.forEach((line, index) => {
    const prompt = index === 0 ? FIRST_COMMAND_PROMPT : NEXT_COMMAND_PROMPT;
    text += `${COMMAND_START}${prompt}${printable(line)}${RESET}\n`;
  });
  return text;
}

/** `✔ step <name>: passed (exit 0, 12.3 s)` and the like. */
export function formatStepFooter(step: StepFooterInput): string {
  return `${outcomeLine(step, '')}\n`;
}

/** The closing block: `■ build passed (2 min 05 s)`, one line per step, and the description. */
export function formatBuildSummary(summary: BuildSummaryInput): string {
  const duration =
    summary.durationMs === undefined ? '' : `${DIM} (${formatDuration(summary.durationMs)})${RESET}`;
  let text = `${ESC}[${BUILD_STATE_SGR[summary.state]}m■ build ${BUILD_STATE_WORDS[summary.state]}${RESET}${duration}\n`;
  for (const step of summary.steps ?? []) text += `${outcomeLine(step, '  ')}\n`;
  if (summary.description) text += `${singleLine(summary.description)}\n`;
  return text;
}

/** Finds the lines written by the functions above, in log order. */
export function parseStepMarkers(log: string): StepMarker[] {
  const markers: StepMarker[] = [];
  let line = lineAt(log, 0);
  while (line) {
    let next = lineAt(log, line.end);
    const header = line.text.startsWith(HEADER_START) ? HEADER_PATTERN.exec(line.text) : null;
    if (header) {
      const commandLines: string[] = [];
      let end = line.end;
      for (let prompt = FIRST_COMMAND_PROMPT; next; prompt = NEXT_COMMAND_PROMPT) {
        const command = next.text.startsWith(COMMAND_START) ? COMMAND_PATTERN.exec(next.text) : null;
        if (!command || command[1] !== prompt) break;
        commandLines.push(command[2]!);
        end = next.end;
        next = lineAt(log, next.end);
      }
      markers.push({
        kind: 'step-start',
        name: header[1]!,
        command: commandLines.join('\n'),
        start: line.start,
        end,
      });
    } else if (line.text.startsWith(`${ESC}[1;3`)) {
      const marker = outcomeOrSummaryMarker(line);
      if (marker) markers.push(marker);
    }
    line = next;
  }
  return markers;
}

function outcomeOrSummaryMarker(line: LogLine): StepMarker | undefined {
  const footer = FOOTER_PATTERN.exec(line.text);
  if (footer) {
    return {
      kind: 'step-end',
      name: footer[1]!,
      outcome: footer[2] as StepOutcome,
      exitCode: footer[3] === undefined ? null : Number(footer[3]),
      durationText: footer[4]!,
      start: line.start,
      end: line.end,
    };
  }
  const summary = SUMMARY_PATTERN.exec(line.text);
  const state = summary ? BUILD_STATE_BY_WORD.get(summary[1]!) : undefined;
  return state ? { kind: 'build-summary', state, start: line.start, end: line.end } : undefined;
}

function outcomeLine(
  step: { name: string; exitCode: number | null; durationMs: number; timedOut?: boolean },
  indent: string,
): string {
  const outcome = stepOutcome(step);
  const style = OUTCOME_STYLES[outcome];
  const exit = step.exitCode === null ? 'no exit code' : `exit ${step.exitCode}`;
  return (
    `${indent}${ESC}[${style.sgr}m${style.symbol} step ${singleLine(step.name)}: ${outcome}${RESET}` +
    `${DIM} (${exit}, ${formatDuration(step.durationMs)})${RESET}`
  );
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Control characters (escapes, newlines) would break the line or forge markers: make them visible. */
function printable(text: string): string {
  return text.replace(/(?!\t)\p{Cc}/gu, '\uFFFD');
}

function singleLine(text: string): string {
  return printable(text.replace(/\s*[\r\n]+\s*/g, ' ').trim());
}

function twoDigits(value: number): string {
  return String(value).padStart(2, '0');
}

interface LogLine {
  /**
   * Without the line break and a trailing carriage return; empty unless the line starts with an
   * escape, as every marker does (ordinary output lines are not copied).
   */
  text: string;
  start: number;
  /** Just after the line break. */
  end: number;
}

function lineAt(text: string, start: number): LogLine | undefined {
  if (start >= text.length) return undefined;
  const newline = text.indexOf('\n', start);
  const end = newline === -1 ? text.length : newline + 1;
  const contentEnd = newline === -1 ? text.length : newline;
  const candidate = text.startsWith(`${ESC}[`, start);
  const content = candidate ? text.slice(start, contentEnd) : '';
  return { text: content.endsWith('\r') ? content.slice(0, -1) : content, start, end };
}

/**
 * The finished page shows at most this much of the end of the log (the raw log has all of it): the
 * log route answers the page itself, and a Lambda answer holds at most 6 MB.
 */
export const FINAL_PAGE_LOG_BYTES = 1024 * 1024;
/** The page starts at a line when one begins within this many bytes of the cut. */
const PAGE_LINE_SEARCH_BYTES = 4 * 1024;

/** The end of the log a finished page shows, behind a line saying how much only the raw log has. */
export function finalPageLog(text: string, maxBytes = FINAL_PAGE_LOG_BYTES): string {
  const kept = lastBytes(text, maxBytes);
  if (kept.length === text.length) return text;
  const leftOut = Buffer.byteLength(text, 'utf8') - Buffer.byteLength(kept, 'utf8');
  return `… the first ${leftOut} bytes of the log are left out here: the raw log has all of it …\n${kept}`;
}

/** The last ≤ maxBytes of the text, starting at a line when one starts nearby, else at a character. */
export function lastBytes(text: string, maxBytes: number): string {
  // Each UTF-16 unit is at least one byte: the last maxBytes units hold at least maxBytes bytes.
  const end = text.length > maxBytes ? text.slice(-maxBytes) : text;
  const bytes = Buffer.from(end, 'utf8');
  if (bytes.length <= maxBytes) return end;
  let start = bytes.length - maxBytes;
  while (start < bytes.length && isContinuationByte(bytes[start])) start++;
  const newline = bytes.indexOf(0x0a, start);
  if (newline !== -1 && newline - start < PAGE_LINE_SEARCH_BYTES) start = newline + 1;
  return bytes.toString('utf8', start);
}

/** A UTF-8 byte that continues a character (never the start of one). */
export function isContinuationByte(byte: number | undefined): boolean {
  return byte !== undefined && (byte & 0xc0) === 0x80;
}

/** Mebibytes for a message: `8` for a whole number, else one decimal (`22.5`). */
export function formatMiB(bytes: number): string {
  const mib = bytes / 1024 ** 2;
  return Number.isInteger(mib) ? String(mib) : mib.toFixed(1);
}

/** One phase of a build and how long it took (src/core/protocol.ts PhaseTiming). */
export interface TimedPhase {
  name: string;
  ms: number;
}

export interface TimeBreakdownInput {
  /** From `running` to the final status, in order. */
  untilStatus: readonly TimedPhase[];
  /** Running → final status as the controller measured it (phases may overlap or leave gaps). */
  totalMs: number;
  /** What ran after the final status was set (the cache save, the runner's cleanup). */
  after: readonly TimedPhase[];
}

/** The first line of the breakdown: `parseTimeBreakdown` finds the block by it. */
export const TIME_BREAKDOWN_TITLE = 'Where the time went';

/**
 * The end of every build's log: each phase from `running` to the final status on a line of its
 * own (the user's steps among them), then what ran after the status, so the build's own overhead
 * is there to see beside its steps.
 */
export function formatTimeBreakdown(input: TimeBreakdownInput): string {
  const name = (phase: TimedPhase): string => singleLine(phase.name);
  const width = Math.max(...[...input.untilStatus, ...input.after].map((phase) => name(phase).length), 0);
  const line = (phase: TimedPhase): string =>
    `  ${name(phase).padEnd(width)}  ${formatDuration(phase.ms).padStart(8)}\n`;
  let text = `${TIME_BREAKDOWN_TITLE} (running → final status ${formatDuration(input.totalMs)}):\n`;
  for (const phase of input.untilStatus) text += line(phase);
  if (input.after.length > 0) {
    text += 'After the final status:\n';
    for (const phase of input.after) text += line(phase);
  }
  return text;
}
