/**
 * Check run annotations from a build's log: the failures that TAP (node:test, tape), node:test's spec
 * reporter, mocha, jest, tsc and ESLint's stylish formatter print, each pointed at a file and line
 * relative to the repository root, for GitHub's check runs (at most 50 annotations a request, the rest
 * by further updates).
 *
 * Pure: string processing only, linear in the log's length (parsers read lines once; no regular
 * expression backtracks over more than one line).
 */
import { stripTerminalControls } from '../terminal-text.js';
import { repositoryPath } from './locations.js';
import { PARSERS } from './parsers.js';
import { MESSAGE_MAX_BYTES, RAW_DETAILS_MAX_BYTES, truncateTitle, truncateUtf8 } from './text.js';
import type { CheckAnnotation, Finding, LogParser } from './types.js';

export type { CheckAnnotation, Finding, LogParser, SourceLocation } from './types.js';
export { PARSERS } from './parsers.js';

/** GitHub's limit of annotations in one "Create/Update a check run" request. */
export const ANNOTATIONS_PER_REQUEST = 50;
/** How many annotations one build reports by default: four requests' worth. */
export const DEFAULT_MAX_ANNOTATIONS = 4 * ANNOTATIONS_PER_REQUEST;

export interface ExtractOptions {
  /** The absolute path the build ran in (`/tmp/lambkin-work/build-…/src`): stripped from paths. */
  checkoutRoot: string;
  /** At most this many annotations (default DEFAULT_MAX_ANNOTATIONS); the rest are counted in `omitted`. */
  maxAnnotations?: number;
  /** The parsers to run (default: all of PARSERS). */
  parsers?: readonly LogParser[];
}

export interface ExtractedAnnotations {
  annotations: CheckAnnotation[];
  /** How many distinct annotations were found beyond the cap. */
  omitted: number;
}

const LEVEL_ORDER: Record<CheckAnnotation['annotation_level'], number> = {
  failure: 0,
  warning: 1,
  notice: 2,
};

/** The largest line or column GitHub takes (a 32-bit integer); the log's own numbers may be any length. */
export const MAX_LINE_OR_COLUMN = 2 ** 31 - 1;

function isLineNumber(value: number | undefined): value is number {
  return value !== undefined && Number.isInteger(value) && value >= 1 && value <= MAX_LINE_OR_COLUMN;
}

function toAnnotation(finding: Finding, checkoutRoot: string): CheckAnnotation | undefined {
  for (const place of finding.locations) {
    // A line no integer holds (`file.js:99999999999999999999`) would be sent as a number GitHub
    // refuses (or JSON null), failing the whole report: such a place is no place.
    if (!isLineNumber(place.line)) continue;
    const path = repositoryPath(place.file, checkoutRoot);
    if (path === undefined) continue;
    const annotation: CheckAnnotation = {
      path,
      start_line: place.line,
      end_line: place.line,
      annotation_level: finding.level,
      message: truncateUtf8(finding.message.trim() === '' ? 'Failed' : finding.message, MESSAGE_MAX_BYTES),
    };
    if (isLineNumber(place.column)) {
      annotation.start_column = place.column;
      annotation.end_column = place.column;
    }
    const title = finding.title === undefined ? '' : truncateTitle(finding.title);
    if (title !== '') annotation.title = title;
    if (finding.rawDetails !== undefined && finding.rawDetails.trim() !== '') {
      annotation.raw_details = truncateUtf8(finding.rawDetails, RAW_DETAILS_MAX_BYTES);
    }
    return annotation;
  }
  return undefined;
}

/**
 * The annotations the log's failures call for. Terminal escapes are removed first. A failure whose
 * places are all outside the checkout or under node_modules (or that has none) gives no annotation;
 * identical annotations (same place, level, title and message: a reporter's closing summary repeats
 * its failures) count once. Failures come first, then warnings, then notices, each in the log's
 * order; past `maxAnnotations`, the rest are counted in `omitted`.
 */
export function extractAnnotations(log: string, options: ExtractOptions): ExtractedAnnotations {
  if (!options.checkoutRoot.startsWith('/')) {
    // A relative or empty root would take any absolute path (/usr/lib/…) for one of the repository.
    throw new TypeError(`checkoutRoot must be an absolute path: ${JSON.stringify(options.checkoutRoot)}`);
  }
  const max = Math.max(0, Math.floor(options.maxAnnotations ?? DEFAULT_MAX_ANNOTATIONS));
  const lines = stripTerminalControls(log).split('\n');
  const findings: Finding[] = [];
  // One by one: spreading a parser's findings into push() overflows the stack past ~100 000 (a log
  // of that many failing tests fits the log limit), and the final report would never be sent.
  for (const parser of options.parsers ?? PARSERS)
    for (const finding of parser.parse(lines)) findings.push(finding);
  findings.sort((a, b) => LEVEL_ORDER[a.level] - LEVEL_ORDER[b.level] || a.lineIndex - b.lineIndex);

  const seen = new Set<string>();
  const unique: CheckAnnotation[] = [];
  for (const finding of findings) {
    const annotation = toAnnotation(finding, options.checkoutRoot);
    if (annotation === undefined) continue;
    const key = JSON.stringify([
      annotation.path,
      annotation.start_line,
      annotation.start_column,
      annotation.annotation_level,
      annotation.title,
      annotation.message,
    ]);
    if (seen.has(key)) continue;
    seen.add(key);
    unique.push(annotation);
  }
  return { annotations: unique.slice(0, max), omitted: Math.max(0, unique.length - max) };
}

/** The annotations in requests of at most `size` (GitHub takes 50 a request). */
export function chunkAnnotations(
  annotations: readonly CheckAnnotation[],
  size = ANNOTATIONS_PER_REQUEST,
): CheckAnnotation[][] {
  if (!Number.isInteger(size) || size < 1)
    throw new RangeError(`chunk size must be a positive integer: ${size}`);
  const chunks: CheckAnnotation[][] = [];
  for (let start = 0; start < annotations.length; start += size) {
    chunks.push(annotations.slice(start, start + size));
  }
  return chunks;
}

/** A line for the check run's summary saying how many annotations were left out, or '' when none were. */
export function annotationSummary(omitted: number): string {
  if (omitted <= 0) return '';
  return omitted === 1
    ? '1 more annotation was left out (the limit per build was reached); see the full log.'
    : `${omitted} more annotations were left out (the limit per build was reached); see the full log.`;
}
