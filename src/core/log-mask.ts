/**
 * Secret masking for build output. Everything a build prints passes through a masker before it
 * reaches S3, so a secret is replaced by `***` whether it is printed as is, split across chunks,
 * base64-encoded inside a longer string, URL-encoded or JSON-escaped, or cut apart by terminal
 * escapes and control characters (`s3c\x1b[0mret`, which a terminal and the build page show
 * whole): secrets are looked for in the raw text and in the text as the page shows it
 * (src/core/terminal-text.ts), and a match there masks its whole raw span, escapes included.
 *
 * Pure: no I/O. The builder owns one masker per build and writes each output chunk through it.
 */
import { hasTerminalControls, unfinishedEscapeStart, visibleTextWithOffsets } from './terminal-text.js';

/** What every masked occurrence becomes. */
export const MASK = '***';

/**
 * Secrets (and secret lines) shorter than this are not masked. A value such as `1`, `on` or `dev`
 * occurs all over any log: masking it would destroy the log and, worse, the pattern of `***` left
 * behind would show what the value is. Real credentials are far longer.
 */
export const MIN_SECRET_LENGTH = 4;

export interface SecretMasker {
  /**
   * Masks one chunk of output and returns what is safe to emit now. Trailing characters that could
   * be the start of a secret are held back until the next chunk (or `flush`) shows whether they are.
   */
  write(chunk: string): string;
  /** Returns everything still held back, masked. Call once when the output ends. */
  flush(): string;
  /** Masks these too from now on (secrets that exist only part way through, such as deploy credentials). */
  add(secrets: readonly string[]): void;
}

/**
 * Every form in which the given secrets are masked, longest first, deduplicated. Exported so the
 * builder can report how many forms are watched for, and for tests.
 */
export function secretVariants(secrets: readonly string[]): string[] {
  const variants = new Set<string>();
  for (const secret of secrets) {
    for (const base of secretBases(secret)) {
      for (const variant of encodedForms(base)) {
        if (variant.length >= MIN_SECRET_LENGTH) variants.add(variant);
      }
    }
  }
  // Longest first: at one position the longest form wins, and the hold-back check can stop early.
  return [...variants].sort((a, b) => b.length - a.length || (a < b ? -1 : a > b ? 1 : 0));
}

export function createSecretMasker(secrets: readonly string[]): SecretMasker {
  const known = [...secrets];
  let variants = secretVariants(known);
  /** Raw text not yet emitted: a possible start of a secret. */
  let pending = '';
  /** How many leading characters of `pending` lie inside a mask that was already emitted. */
  let alreadyMasked = 0;

  function release(chunk: string, final: boolean): string {
    if (variants.length === 0) return chunk;
    const text = pending + chunk;
    const found = occurrences(text, variants);
    let cut = final ? text.length : text.length - possibleSecretStartLength(text, variants);
    if (hasTerminalControls(text)) {
      // A sequence the next chunk may finish is held back whole, so the visible text is read
      // exactly as the page reads the finished log.
      const held = (final ? undefined : unfinishedEscapeStart(text)) ?? text.length;
      const visible = visibleTextWithOffsets(text.slice(0, held));
      for (const range of occurrences(visible.text, variants)) {
        found.push({
          start: visible.rawOffsets[range.start] ?? 0,
          end: (visible.rawOffsets[range.end - 1] ?? 0) + 1,
          emitted: false,
        });
      }
      const visibleStart = final
        ? visible.text.length
        : visible.text.length - possibleSecretStartLength(visible.text, variants);
      cut = Math.min(cut, held, visible.rawOffsets[visibleStart] ?? held);
    }
    let output = '';
    let position = 0;
    let maskedPastCut = 0;
    for (const range of mergeRanges(found, alreadyMasked)) {
      if (range.start >= cut) break;
      output += text.slice(position, range.start);
      if (!range.emitted) output += MASK;
      position = range.end;
      // A mask crossing the cut is emitted now; what of it lies in the held-back text is remembered
      // so that a longer match starting there does not emit a second `***`.
      if (range.end > cut) maskedPastCut = range.end - cut;
    }
    if (position < cut) output += text.slice(position, cut);
    pending = text.slice(cut);
    alreadyMasked = maskedPastCut;
    return output;
  }

  return {
    write: (chunk) => release(chunk, false),
    flush: () => release('', true),
    add: (more) => {
      known.push(...more);
      variants = secretVariants(known);
    },
  };
}

/** Masks a complete text in one go. */
export function maskSecrets(text: string, secrets: readonly string[]): string {
  const masker = createSecretMasker(secrets);
  return masker.write(text) + masker.flush();
}

/** The secret itself and, for multi-line secrets, each line and the CRLF form. */
function secretBases(secret: string): string[] {
  if (secret.length === 0) return [];
  const bases = [secret];
  const lines = secret.split(/\r?\n/);
  if (lines.length > 1) {
    bases.push(secret.replace(/\r?\n/g, '\r\n'), ...lines.filter((line) => line.length > 0));
  }
  return bases;
}

function encodedForms(secret: string): string[] {
  const forms = [secret, ...base64Forms(secret)];
  const uriEncoded = safeEncodeURIComponent(secret);
  if (uriEncoded !== undefined) {
    forms.push(
      uriEncoded,
      uriEncoded.replace(/%[0-9A-F]{2}/g, (escape) => escape.toLowerCase()),
      uriEncoded.replace(/%20/g, '+'),
      // application/x-www-form-urlencoded also escapes !'()~ and turns spaces into '+'.
      new URLSearchParams([['', secret]]).toString().slice(1),
    );
  }
  const jsonEscaped = JSON.stringify(secret).slice(1, -1);
  forms.push(
    jsonEscaped,
    jsonEscaped.replace(/\//g, '\\/'),
    // Serializers that emit ASCII only (Python's json.dumps by default) escape everything else.
    jsonEscaped.replace(
      /[^\u0020-\u007e]/g,
      (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`,
    ),
  );
  return forms;
}

/**
 * The base64 characters that depend only on the secret, for each of the three positions the secret
 * can take relative to base64's 3-byte groups (0, 1 or 2 bytes of other data before it). Characters
 * that also carry bits of the neighbouring data differ from log to log, so they are left alone.
 */
function base64Forms(secret: string): string[] {
  const bytes = Buffer.from(secret, 'utf8');
  const forms: string[] = [];
  for (const offset of [0, 1, 2]) {
    const encoded = Buffer.concat([Buffer.alloc(offset), bytes]).toString('base64');
    // Character i carries bits [6i, 6i + 6); the secret occupies bits [8 offset, 8 (offset + n)).
    const first = Math.ceil((8 * offset) / 6);
    const end = Math.floor((8 * (offset + bytes.length)) / 6);
    const stable = encoded.slice(first, end);
    forms.push(stable, stable.replace(/\+/g, '-').replace(/\//g, '_'));
  }
  return forms;
}

function safeEncodeURIComponent(text: string): string | undefined {
  try {
    return encodeURIComponent(text);
  } catch {
    return undefined; // a lone surrogate cannot be URL-encoded, so it cannot appear that way either
  }
}

interface MaskRange {
  start: number;
  end: number;
  /** Its `***` was already emitted by an earlier write. */
  emitted: boolean;
}

/** Every occurrence of every variant, unmerged. */
function occurrences(text: string, variants: readonly string[]): MaskRange[] {
  const found: MaskRange[] = [];
  for (const variant of variants) {
    for (let at = text.indexOf(variant); at !== -1; at = text.indexOf(variant, at + 1)) {
      found.push({ start: at, end: at + variant.length, emitted: false });
    }
  }
  return found;
}

/** The ranges (and the already emitted mask at the start), overlapping ones merged, in order. */
function mergeRanges(ranges: MaskRange[], alreadyMasked: number): MaskRange[] {
  const found = alreadyMasked > 0 ? [{ start: 0, end: alreadyMasked, emitted: true }, ...ranges] : ranges;
  found.sort((a, b) => a.start - b.start || b.end - a.end);
  const merged: MaskRange[] = [];
  for (const range of found) {
    const last = merged.at(-1);
    if (last && range.start < last.end) {
      last.end = Math.max(last.end, range.end);
      last.emitted ||= range.emitted;
    } else {
      merged.push({ ...range });
    }
  }
  return merged;
}

/** Length of the longest end of `text` that is the beginning (not the whole) of some variant. */
function possibleSecretStartLength(text: string, variants: readonly string[]): number {
  let longest = 0;
  const lastChar = text.charCodeAt(text.length - 1);
  for (const variant of variants) {
    for (let length = Math.min(variant.length - 1, text.length); length > longest; length--) {
      if (variant.charCodeAt(length - 1) !== lastChar) continue; // cheap pre-check
      if (text.endsWith(variant.slice(0, length))) {
        longest = length;
        break;
      }
    }
  }
  return longest;
}
