/**
 * Locations in tool output: `file:line:col` pieces, stack frames and the path relative to the
 * repository root. Pure: string processing only.
 */
import type { SourceLocation } from './types.js';

const FILE_LINE_COLUMN = /^(.+):(\d+):(\d+)$/;
const FILE_LINE = /^(.+):(\d+)$/;
/** A URL scheme or Node's `node:` prefix: `node:internal/…`, `webpack://…` are no files of the repository. */
const SCHEME = /^[a-zA-Z][a-zA-Z0-9+.-]*:/;
const STACK_FRAME = /^\s*at\s/;

/** `path:line:col` (or `path:line` with `allowNoColumn`), or undefined. */
export function parseLocation(text: string, allowNoColumn = false): SourceLocation | undefined {
  const full = FILE_LINE_COLUMN.exec(text);
  if (full !== null) return location(full[1] ?? '', full[2], full[3]);
  if (!allowNoColumn) return undefined;
  const partial = FILE_LINE.exec(text);
  return partial === null ? undefined : location(partial[1] ?? '', partial[2], undefined);
}

/** Builds a location from the matched pieces; line 0 (ESLint's file-level problems) becomes line 1. */
export function location(file: string, line: string | undefined, column: string | undefined): SourceLocation {
  const result: SourceLocation = { file, line: Math.max(1, Number(line)) };
  if (column !== undefined && Number(column) > 0) result.column = Number(column);
  return result;
}

/** Whether the line is a V8 stack frame (`    at fn (file:1:2)`). */
export function isStackFrame(line: string): boolean {
  return STACK_FRAME.test(line);
}

/**
 * The place of one stack frame, with or without its `at ` (node:test's TAP leaves it out):
 * `at fn (/abs/file.js:1:2)`, `at /abs/file.js:1:2`, `at async fn (file:///abs/file.mjs:1:2)`,
 * `Fn.<anonymous> (/abs/file.js:1:2) {`.
 */
export function frameLocation(line: string): SourceLocation | undefined {
  let text = line.trim();
  if (text.startsWith('at ')) text = text.slice(3).trim();
  if (text.endsWith(' {')) text = text.slice(0, -2).trimEnd();
  if (text.endsWith(')')) {
    const open = text.lastIndexOf('(');
    if (open === -1) return undefined;
    text = text.slice(open + 1, -1);
    // An eval frame, `eval (eval at f (/a.js:1:2), <anonymous>:3:4)`: no file of its own.
    if (text.includes('), ')) return undefined;
  } else {
    text = text.slice(text.lastIndexOf(' ') + 1);
  }
  return parseLocation(text);
}

/** The frames' places, in order (lines that are not frames are skipped). */
export function frameLocations(lines: readonly string[], onlyAtLines = true): SourceLocation[] {
  const found: SourceLocation[] = [];
  for (const line of lines) {
    if (onlyAtLines && !isStackFrame(line)) continue;
    const place = frameLocation(line);
    if (place !== undefined) found.push(place);
  }
  return found;
}

/** The path's segments with `.`, empty ones and `..` resolved; undefined when `..` climbs out. */
function segments(path: string): string[] | undefined {
  const out: string[] = [];
  for (const segment of path.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') {
      if (out.length === 0) return undefined;
      out.pop();
    } else {
      out.push(segment);
    }
  }
  return out;
}

/**
 * The file's path relative to the repository root, or undefined when it is not a file of the
 * repository: outside the checkout (`/usr/lib/…`, another folder), under any `node_modules` (not in
 * the diff, even inside the checkout), a `node:` internal or another URL scheme than `file:`, or the
 * root itself. A relative path is read as relative to the checkout root (where tools are run).
 */
export function repositoryPath(file: string, checkoutRoot: string): string | undefined {
  let path = file.trim();
  if (path.startsWith('file://')) {
    path = path.slice('file://'.length);
    try {
      path = decodeURIComponent(path);
    } catch {
      return undefined;
    }
  }
  if (SCHEME.test(path) || path.includes('\\')) return undefined;
  let relative: string[] | undefined;
  if (path.startsWith('/')) {
    const root = segments(checkoutRoot);
    const absolute = segments(path);
    if (root === undefined || absolute === undefined || absolute.length <= root.length) return undefined;
    if (root.some((segment, index) => absolute[index] !== segment)) return undefined;
    relative = absolute.slice(root.length);
  } else {
    relative = segments(path);
  }
  if (relative === undefined || relative.length === 0 || relative.includes('node_modules')) return undefined;
  return relative.join('/');
}
