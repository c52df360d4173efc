/**
 * What a build's check run says on GitHub (App mode): its conclusion, and its output — a title, a
 * Markdown summary of the steps with their results and durations, the end of the failing step's
 * log as text, and the annotations read from the log. Pure: the controller sends it
 * (src/github/checks.ts).
 */
import type { BuildRecord, StepResult } from './build.js';
import { annotationSummary, extractAnnotations, type CheckAnnotation } from './annotations/index.js';
import { formatDuration, lastBytes, stepOutcome } from './log-format.js';
import type { BuildState } from './state-machine.js';
import { JOB_CONTEXT } from './job-id.js';
import { stripTerminalControls } from './terminal-text.js';

/** The check run's name (one per build; per job once builds have jobs). */
export const CHECK_RUN_NAME = 'Lambkin';

/** GitHub's limits on a check run's output (characters). */
export const CHECK_TITLE_MAX = 255;
export const CHECK_SUMMARY_MAX = 65_535;
/** The log's end shown as the output's text: well under GitHub's 65 535 characters. */
export const CHECK_TEXT_LOG_BYTES = 48 * 1024;

export type CheckConclusion =
  | 'success'
  | 'failure'
  | 'cancelled'
  | 'timed_out'
  | 'action_required'
  /** An approval's check run once the approved build took over. */
  | 'neutral';

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
export function checkExternalId(build: Pick<BuildRecord, 'repo' | 'number'>, job?: string): string {
  return job === undefined ? `${build.repo}#${build.number}` : `${build.repo}#${build.number}/${job}`;
}

/** A job's check run name: its status context with the product's name, `Lambkin/node-22 (2/4)`. */
export function jobCheckRunName(context: string): string {
  return context.startsWith(JOB_CONTEXT) ? `${CHECK_RUN_NAME}${context.slice(JOB_CONTEXT.length)}` : context;
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
  // A commit status's description names the build already.
  const named = input.description.startsWith(`Build #${input.build.number} `);
  const title = cut(
    named ? input.description : `Build #${input.build.number}: ${input.description}`,
    CHECK_TITLE_MAX,
  );
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
    ...(log.trim() ? { text: fencedLog(log) } : {}),
    annotations: [...(input.annotations ?? [])],
  };
}

const FENCE_OPEN = '```text\n';
const FENCE_CLOSE = '\n```';

/**
 * The log's end in a code block of at most CHECK_SUMMARY_MAX characters (GitHub's limit on the
 * text too). Each ``` gets a zero-width space so no line closes the fence; that lengthens the text
 * (a log of backticks by a third), so its start is dropped again until the block fits.
 */
function fencedLog(log: string): string {
  let body = log.replace(/```/g, '`\u200b``');
  const room = CHECK_SUMMARY_MAX - FENCE_OPEN.length - FENCE_CLOSE.length;
  if (body.length > room) {
    let start = body.length - room;
    // Never start with a backtick (a cut escape could start a line with ```, closing the fence)
    // nor inside a surrogate pair.
    while (start < body.length && /[`\u200b\udc00-\udfff]/.test(body.charAt(start))) start++;
    body = body.slice(start);
  }
  return FENCE_OPEN + body + FENCE_CLOSE;
}

export type CheckRunStatus = 'queued' | 'in_progress' | 'completed';

/**
 * What a build's check run should say now: sent beside the commit status by a reporter in App
 * mode (src/github/build-reporter.ts), ignored in token mode.
 */
export interface CheckRunReport {
  name: string;
  /** `owner/repo#number`: how the reporter finds the build's run again. */
  externalId: string;
  status: CheckRunStatus;
  conclusion?: CheckConclusion;
  /** Epoch ms. */
  startedAt?: number;
  completedAt?: number;
  output: CheckOutput;
  /** Buttons GitHub shows on the run; a click comes back as `check_run` `requested_action`. */
  actions?: CheckRunAction[];
}

/** A check run's button, within GitHub's limits (label 20, description 40, identifier 20 characters). */
export interface CheckRunAction {
  label: string;
  identifier: string;
  description: string;
}

export interface CheckReportInput {
  build: Pick<BuildRecord, 'repo' | 'number' | 'startedAt' | 'endedAt' | 'steps'>;
  /** The state being reported (a failure to start reports `error` of a build still `queued`). */
  state: BuildState;
  /** The commit status's description: the one line shown as the title. */
  description: string;
  /** The final log, when the controller has it: its end becomes the text, its failures the annotations. */
  log?: string;
  /** The runner's checkout (absolute): annotations are read only with it. */
  checkoutRoot?: string;
  /** A job's run (a build of several jobs): its id and context name the run; `build` is then the job's times. */
  job?: { id: string; context: string };
}

/** The check run that goes with a commit status: its status, conclusion and output. */
export function checkReportOf(input: CheckReportInput): CheckRunReport {
  const { build } = input;
  const base = input.job
    ? { name: jobCheckRunName(input.job.context), externalId: checkExternalId(build, input.job.id) }
    : { name: CHECK_RUN_NAME, externalId: checkExternalId(build) };
  const conclusion = checkConclusion(input.state);
  if (conclusion === undefined) {
    const running = input.state === 'running';
    return {
      ...base,
      status: running ? 'in_progress' : 'queued',
      ...(running && build.startedAt !== undefined ? { startedAt: build.startedAt } : {}),
      output: {
        title: cut(input.description, CHECK_TITLE_MAX),
        summary: running ? 'The build is running: its log is on the details page.' : 'Waiting for a runner.',
        annotations: [],
      },
    };
  }
  const found =
    input.log !== undefined && input.checkoutRoot !== undefined && input.state === 'failure'
      ? extractAnnotations(input.log, { checkoutRoot: input.checkoutRoot })
      : { annotations: [], omitted: 0 };
  return {
    ...base,
    status: 'completed',
    conclusion,
    ...(build.startedAt !== undefined ? { startedAt: build.startedAt } : {}),
    completedAt: build.endedAt ?? Date.now(),
    output: checkOutput({
      build: { number: build.number, state: input.state },
      description: input.description,
      steps: build.steps ?? [],
      ...(input.log !== undefined ? { log: input.log } : {}),
      annotations: found.annotations,
      omittedAnnotations: found.omitted,
    }),
  };
}

/** A table cell: no line breaks, no column separators. */
function markdownCell(text: string): string {
  return text.replace(/[\r\n]+/g, ' ').replace(/\|/g, '\\|');
}

function cut(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** The button on a held pull request's check run; its identifier comes back when clicked. */
export const APPROVE_ACTION: CheckRunAction = {
  label: 'Approve and run',
  identifier: 'approve',
  description: 'Build this commit once, without secrets',
};

/** The commit status of a held commit (within GitHub's 140 characters). */
export const AWAITING_APPROVAL_DESCRIPTION =
  "Waiting for approval: a maintainer approves this pull request's code before it runs";

/** `owner/repo#approval`: the external id of a held commit's check run (comes back with the click). */
export function approvalExternalId(repo: string): string {
  return `${repo}#approval`;
}

/** The check run of a commit held for approval: completed, `action_required`, with the button. */
export function approvalRequestedReport(input: {
  repo: string;
  pr?: number;
  author: string;
  at: number;
}): CheckRunReport {
  const pr = input.pr !== undefined ? `Pull request #${input.pr}` : 'This pull request';
  return {
    name: CHECK_RUN_NAME,
    externalId: approvalExternalId(input.repo),
    status: 'completed',
    conclusion: 'action_required',
    completedAt: input.at,
    output: {
      title: 'Waiting for approval',
      summary:
        `${pr} by @${input.author} comes from a fork, and this repository builds such code only once ` +
        'someone with write access approved it.\n\n' +
        'Read the changes first: the build runs their commands (install, test), though without ' +
        'secrets, cache writes or deploys. Then click **Approve and run** above. Each new commit ' +
        'asks again.',
      annotations: [],
    },
    actions: [APPROVE_ACTION],
  };
}

/** The approval's check run once approved: `neutral`, naming who approved and the build. */
export function approvalGrantedReport(input: {
  approver: string;
  number: number;
  at: number;
  repo: string;
}): CheckRunReport {
  const title = `Approved by @${input.approver}: build #${input.number}`;
  return {
    name: CHECK_RUN_NAME,
    externalId: approvalExternalId(input.repo),
    status: 'completed',
    conclusion: 'neutral',
    completedAt: input.at,
    output: {
      title: cut(title, CHECK_TITLE_MAX),
      summary: `${title} reports on its own check run.`,
      annotations: [],
    },
    actions: [],
  };
}
