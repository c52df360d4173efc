/**
 * Text helpers of the annotation parsers: indentation, dedenting, GitHub's size limits. Pure.
 */

/** GitHub's limits on an annotation: `message` and `raw_details` 64 KB, `title` 255 characters. */
export const MESSAGE_MAX_BYTES = 64_000;
export const RAW_DETAILS_MAX_BYTES = 64_000;
export const TITLE_MAX_CHARACTERS = 255;

const ELLIPSIS = '…';
const ELLIPSIS_BYTES = 3;

/** How many leading spaces or tabs the line has. */
export function indentOf(line: string): number {
  let index = 0;
  while (index < line.length && (line[index] === ' ' || line[index] === '\t')) index++;
  return index;
}

export function isBlank(line: string): boolean {
  return indentOf(line) === line.length;
}

/**
 * The lines without their common indentation (or, given `indent`, without up to that many leading
 * blanks each) and without blank lines at either end, joined.
 */
export function dedent(lines: readonly string[], indent?: number): string {
  let start = 0;
  let end = lines.length;
  while (start < end && isBlank(lines[start] ?? '')) start++;
  while (end > start && isBlank(lines[end - 1] ?? '')) end--;
  const kept = lines.slice(start, end);
  let common = indent ?? Infinity;
  if (indent === undefined)
    for (const line of kept) if (!isBlank(line)) common = Math.min(common, indentOf(line));
  if (common === Infinity) common = 0;
  return kept.map((line) => line.slice(Math.min(common, indentOf(line))).trimEnd()).join('\n');
}

function utf8Length(code: number): number {
  return code < 0x80 ? 1 : code < 0x800 ? 2 : 3;
}

/** The text cut to at most `maxBytes` bytes of UTF-8 (with an ellipsis when cut), never inside a character. */
export function truncateUtf8(text: string, maxBytes: number): string {
  if (text.length * 3 <= maxBytes) return text;
  let bytes = 0;
  let cut: number | undefined;
  for (let index = 0; index < text.length; index++) {
    const code = text.charCodeAt(index);
    const isPair = code >= 0xd800 && code <= 0xdbff && index + 1 < text.length;
    const size = isPair ? 4 : utf8Length(code);
    if (cut === undefined && bytes + size > maxBytes - ELLIPSIS_BYTES) cut = index;
    bytes += size;
    if (bytes > maxBytes) return text.slice(0, cut) + ELLIPSIS;
    if (isPair) index++;
  }
  return text;
}

/** The first line of the text, cut to `max` characters (with an ellipsis when cut). */
export function truncateTitle(text: string, max = TITLE_MAX_CHARACTERS): string {
  const line = (text.split('\n', 1)[0] ?? '').trim();
  if (line.length <= max) return line;
  let end = max - ELLIPSIS.length;
  const last = line.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--;
  return line.slice(0, end) + ELLIPSIS;
}
