/**
 * What a build's check run says on GitHub (App mode): its conclusion, and its output — a title, a
 * Markdown summary of the steps with their results and durations, the end of the failing step's
 * log as text, and the annotations read from the log. Pure: the controller sends it
 * (src/github/checks.ts).
 */
import type { BuildRecord, StepResult } from './build.js';
import { annotationSummary, type CheckAnnotation } from './annotations/index.js';
import { formatDuration, lastBytes, stepOutcome } from './log-format.js';
import type { BuildState } from './state-machine.js';
import { stripTerminalControls } from './terminal-text.js';

/** The check run's name (one per build; per job once builds have jobs). */
export const CHECK_RUN_NAME = 'Lambkin';

/** GitHub's limits on a check run's output (characters). */
export const CHECK_TITLE_MAX = 255;
export const CHECK_SUMMARY_MAX = 65_535;
/** The log's end shown as the output's text: well under GitHub's 65 535 characters. */
export const CHECK_TEXT_LOG_BYTES = 48 * 1024;

export type CheckConclusion = 'success' | 'failure' | 'cancelled' | 'timed_out' | 'action_required';

/** The conclusion of a finished build; undefined while it is queued or running. */
export function checkConclusion(state: BuildState): CheckConclusion | undefined {
  switch (state) {
    case 'success':
      return 'success';
    case 'failure':
    case 'error':
      return 'failure';
    case 'timed_out':
      return 'timed_out';
    case 'cancelled':
      return 'cancelled';
    default:
      return undefined;
  }
}

/** `owner/repo#number`: comes back in `check_run` webhooks, so a re-run names its build. */
export function checkExternalId(build: Pick<BuildRecord, 'repo' | 'number'>): string {
  return `${build.repo}#${build.number}`;
}

export interface CheckOutputInput {
  build: Pick<BuildRecord, 'number' | 'state'>;
  /** The commit status's one line (which step failed, what timed out). */
  description: string;
  steps: readonly StepResult[];
  /** The log, or its end (only the end is shown). */
  log?: string;
  annotations?: readonly CheckAnnotation[];
  /** Annotations found beyond the cap. */
  omittedAnnotations?: number;
}

export interface CheckOutput {
  title: string;
  summary: string;
  text?: string;
  annotations: CheckAnnotation[];
}

export function checkOutput(input: CheckOutputInput): CheckOutput {
  const title = cut(`Build #${input.build.number}: ${input.description}`, CHECK_TITLE_MAX);
  const rows = input.steps.map((step) => {
    const outcome = stepOutcome(step);
    return `| ${markdownCell(step.name)} | ${outcome} | ${formatDuration(step.durationMs)} |`;
  });
  const parts = [
    rows.length > 0
      ? ['| step | result | duration |', '| --- | --- | --- |', ...rows].join('\n')
      : 'No step ran.',
  ];
  const omitted = annotationSummary(input.omittedAnnotations ?? 0);
  if (omitted) parts.push(omitted);
  const log =
    input.log === undefined ? '' : stripTerminalControls(lastBytes(input.log, CHECK_TEXT_LOG_BYTES));
  return {
    title,
    summary: cut(parts.join('\n\n'), CHECK_SUMMARY_MAX),
    ...(log.trim() ? { text: '```text\n' + log.replace(/```/g, '`\u200b``') + '\n```' } : {}),
    annotations: [...(input.annotations ?? [])],
  };
}

/** A table cell: no line breaks, no column separators. */
function markdownCell(text: string): string {
  return text.replace(/[\r\n]+/g, ' ').replace(/\|/g, '\\|');
}

function cut(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
