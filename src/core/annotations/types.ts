/**
 * The shapes shared by the annotation parsers (src/core/annotations/). Pure: no I/O.
 */

/** One annotation as GitHub's "Create a check run" and "Update a check run" take it (`output.annotations[]`). */
export interface CheckAnnotation {
  /** Relative to the repository root, `/`-separated, e.g. `src/a.ts`. */
  path: string;
  /** Line numbers start at 1. */
  start_line: number;
  end_line: number;
  /** Columns start at 1; GitHub takes columns only when start_line equals end_line. */
  start_column?: number;
  end_column?: number;
  annotation_level: 'failure' | 'warning' | 'notice';
  /** At most 64 KB. */
  message: string;
  /** At most 255 characters. */
  title?: string;
  /** At most 64 KB. */
  raw_details?: string;
}

/** A place in a file as a tool printed it: the path is not normalised yet. */
export interface SourceLocation {
  /** Absolute, relative to the working directory, or a `file://` URL. */
  file: string;
  line: number;
  column?: number;
}

/** What a parser found: a problem and where it may be, best guess first. */
export interface Finding {
  /**
   * Candidate places, best first (e.g. the frames of a stack): the first one inside the checkout and
   * outside node_modules is the annotation's place; a finding with none is dropped.
   */
  locations: SourceLocation[];
  level: CheckAnnotation['annotation_level'];
  message: string;
  title?: string;
  rawDetails?: string;
  /** Index of the log line the finding starts at, to keep the log's order across parsers. */
  lineIndex: number;
}

/** One output format. Parsers read whole lines once, front to back: linear in the log's length. */
export interface LogParser {
  name: string;
  parse(lines: readonly string[]): Finding[];
}
