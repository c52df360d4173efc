/** How the CLI prints: aligned tables for people, JSON for scripts, short times and durations. */
import { stripVTControlCharacters } from 'node:util';

/** Where a command writes; process.stdout/stderr in main.ts, strings in tests. */
export interface OutputStream {
  write(text: string): void;
  /** True for a terminal (process.stdout has it); absent for pipes, files and strings. */
  readonly isTTY?: boolean;
}

/**
 * Whether text written to `stream` may keep its colours, as Node's `util.styleText` decides it:
 * FORCE_COLOR when set (`0` or `false`: no colour), then NO_COLOR (any non-empty value: none), then
 * a terminal that is not TERM=dumb. Read from the CLI's own environment, so tests can set it.
 */
export function colourEnabled(
  stream: OutputStream,
  env: Readonly<Record<string, string | undefined>>,
): boolean {
  const force = env.FORCE_COLOR;
  if (force !== undefined) return force !== '0' && force.toLowerCase() !== 'false';
  if (env.NO_COLOR) return false;
  return stream.isTTY === true && env.TERM !== 'dumb';
}

const ESC = '\u001b';
const BEL = '\u0007';
/** An escape sequence cut off at the end of a write: CSI without its final byte, OSC unterminated. */
const UNFINISHED_ESCAPE = new RegExp(`${ESC}(?:\\[[0-?]*[ -/]*|\\][^${BEL}${ESC}]*${ESC}?)?$`);
/** Longer than any real sequence: past this, what looks unfinished is written (stripped) anyway. */
const LONGEST_ESCAPE = 256;

/**
 * A writer for terminal text (a build log, with the escapes of the builder's step lines and of the
 * build's own tools): as is where colour is on, without its escape sequences where it is off
 * (`util.stripVTControlCharacters`). Logs arrive in pieces, so a sequence cut between two writes is
 * held back until its end arrives.
 */
export function terminalWriter(
  stream: OutputStream,
  env: Readonly<Record<string, string | undefined>>,
): (text: string) => void {
  if (colourEnabled(stream, env)) return (text) => stream.write(text);
  let held = '';
  return (text) => {
    let pending = held + text;
    held = '';
    const unfinished = UNFINISHED_ESCAPE.exec(pending);
    if (unfinished && pending.length - unfinished.index <= LONGEST_ESCAPE) {
      held = pending.slice(unfinished.index);
      pending = pending.slice(0, unfinished.index);
    }
    const plain = stripVTControlCharacters(pending);
    if (plain) stream.write(plain);
  };
}

export interface Column<Row> {
  header: string;
  value: (row: Row) => string;
  /** Numbers read better right-aligned. */
  align?: 'left' | 'right';
}

/** A table with a header row, columns two spaces apart, no trailing spaces. */
export function formatTable<Row>(columns: readonly Column<Row>[], rows: readonly Row[]): string {
  const cells = rows.map((row) => columns.map((column) => column.value(row)));
  const widths = columns.map((column, index) =>
    Math.max(column.header.length, ...cells.map((line) => (line[index] ?? '').length)),
  );
  const render = (line: readonly string[]): string =>
    line
      .map((cell, index) => {
        const width = widths[index] ?? 0;
        return columns[index]?.align === 'right' ? cell.padStart(width) : cell.padEnd(width);
      })
      .join('  ')
      .trimEnd();
  return (
    [render(columns.map((column) => column.header)), ...cells.map((line) => render(line))].join('\n') + '\n'
  );
}

/** Pretty JSON with a final newline. */
export function formatJson(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

/** `850ms`, `42s`, `3m 05s`, `1h 02m`. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`;
  const seconds = Math.floor(ms / 1000);
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m ${String(seconds % 60).padStart(2, '0')}s`;
  return `${Math.floor(minutes / 60)}h ${String(minutes % 60).padStart(2, '0')}m`;
}

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** `12s ago`, `5 min ago`, `3 h ago`, `6 d ago`; past a month, the date (UTC). */
export function formatAge(at: number, now: number): string {
  const age = Math.max(0, now - at);
  if (age < MINUTE) return `${Math.floor(age / 1000)}s ago`;
  if (age < HOUR) return `${Math.floor(age / MINUTE)} min ago`;
  if (age < DAY) return `${Math.floor(age / HOUR)} h ago`;
  if (age < 30 * DAY) return `${Math.floor(age / DAY)} d ago`;
  return new Date(at).toISOString().slice(0, 10);
}

export function shortSha(sha: string): string {
  return sha.slice(0, 7);
}

/** The longest and shortest end of what was printed that is looked for in a rewritten log. */
const LONGEST_PROBE = 2048;
const SHORTEST_PROBE = 16;

/**
 * The part of `text` (the log as now stored) that has not been printed yet. A log normally only
 * grows, but past its size limit its tail is rewritten (the middle is cut): then the new text is
 * printed from just after the end of what was already printed, found in it, or, when that was cut
 * too, from the line where the two versions part (the cut marker's).
 */
export function unseenPart(printed: string, text: string): string {
  if (text.startsWith(printed)) return text.slice(printed.length);
  let common = 0;
  while (common < printed.length && common < text.length && printed[common] === text[common]) common++;
  // Shorter and shorter ends, since the start of the part after `common` (the marker) changed too.
  for (
    let length = Math.min(LONGEST_PROBE, printed.length - common);
    length >= SHORTEST_PROBE;
    length = Math.floor(length / 2)
  ) {
    // The first match: with repeated lines, printing some twice beats skipping some.
    const at = text.indexOf(printed.slice(printed.length - length), common);
    if (at >= 0) return text.slice(at + length);
  }
  // From the start of the line they part in: a whole marker line reads better than half of one.
  return text.slice(text.lastIndexOf('\n', common - 1) + 1);
}
