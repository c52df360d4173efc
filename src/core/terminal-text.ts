/**
 * Terminal escape sequences and control characters in build output, read one way everywhere: the
 * secret masker (src/core/log-mask.ts) looks for secrets in the text with them removed, and the
 * build page (src/pages/build-page.ts) removes the same ones before rendering (keeping colours). So
 * a secret cut apart by escapes (`s3c\x1b[0mret`) that the page would show whole is one the masker
 * saw whole. Lengths are bounded so that a masker reading chunk by chunk can hold back any sequence
 * not finished yet and still read the text exactly as the page reads it in one piece.
 *
 * Pure: no I/O.
 */

const ESC = '\\u001b';
const BEL = '\\u0007';

/** OSC (window titles, hyperlinks): `ESC ]`, a payload, then BEL or `ESC \`. */
const OSC = `${ESC}\\][^${BEL}${ESC}]{0,512}(?:${BEL}|${ESC}\\\\)`;
/** CSI (colours, cursor moves): `ESC [`, parameters, intermediates, one final byte. */
const CSI = `${ESC}\\[[0-?]{0,64}[ -/]{0,8}[@-~]`;
/** Every other escape: `ESC`, intermediates (e.g. `(` of a charset choice), one final byte. */
const OTHER_ESCAPE = `${ESC}[ -/]{0,8}[0-~]`;
/** Control characters that show nothing; tab and newline are text. */
const CONTROL_CHARACTER = '(?![\\t\\n])\\p{Cc}';

const TERMINAL_CONTROL = new RegExp(`${OSC}|${CSI}|${OTHER_ESCAPE}|${CONTROL_CHARACTER}`, 'gu');
const ANY_TERMINAL_CONTROL = new RegExp(CONTROL_CHARACTER, 'u');
/** A colour change (SGR), the only sequence the page renders. */
const COLOUR = new RegExp(`^${ESC}\\[[0-9;]{0,64}m$`, 'u');
/** The start of a sequence that more text could still complete, at the very end. */
const UNFINISHED_ESCAPE = new RegExp(
  `${ESC}(?:\\[[0-?]{0,64}[ -/]{0,8}|\\][^${BEL}${ESC}]{0,512}${ESC}?|[ -/]{0,8})$`,
  'u',
);
/** Longer than any unfinished sequence can be (in UTF-16 units). */
const UNFINISHED_SEARCH_WINDOW = 2 * (2 + 512 + 1) + 16;

/** Whether the text holds an escape or control character at all (most output does not). */
export function hasTerminalControls(text: string): boolean {
  return ANY_TERMINAL_CONTROL.test(text);
}

/**
 * The text without escape sequences and control characters (tab and newline stay). With `colours`,
 * colour changes stay (for a renderer); with `carriageReturns`, `\r` stays (for a caller that
 * redraws progress bars as a terminal would).
 */
export function stripTerminalControls(
  text: string,
  keep: { colours?: boolean; carriageReturns?: boolean } = {},
): string {
  return text.replace(TERMINAL_CONTROL, (control) =>
    (keep.colours === true && COLOUR.test(control)) || (keep.carriageReturns === true && control === '\r')
      ? control
      : '',
  );
}

/** The visible text and, for each of its UTF-16 units, its offset in the raw text. */
export interface VisibleText {
  text: string;
  rawOffsets: number[];
}

/** The text as stripTerminalControls leaves it, with where each remaining unit came from. */
export function visibleTextWithOffsets(raw: string): VisibleText {
  let text = '';
  const rawOffsets: number[] = [];
  let position = 0;
  const keep = (end: number): void => {
    text += raw.slice(position, end);
    for (let offset = position; offset < end; offset++) rawOffsets.push(offset);
  };
  for (const match of raw.matchAll(TERMINAL_CONTROL)) {
    keep(match.index);
    position = match.index + match[0].length;
  }
  keep(raw.length);
  return { text, rawOffsets };
}

/**
 * Where a sequence that the next chunk could still complete begins at the end of `text`
 * (`ESC`, `ESC [ 3`, an OSC without its terminator), or undefined.
 */
export function unfinishedEscapeStart(text: string): number | undefined {
  const from = Math.max(0, text.length - UNFINISHED_SEARCH_WINDOW);
  const found = text.slice(from).search(UNFINISHED_ESCAPE);
  return found === -1 ? undefined : from + found;
}
