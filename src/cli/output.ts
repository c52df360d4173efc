/** How the CLI prints: aligned tables for people, JSON for scripts, short times and durations. */

/** Where a command writes; process.stdout/stderr in main.ts, strings in tests. */
export interface OutputStream {
  write(text: string): void;
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
