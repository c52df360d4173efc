/**
 * What a notification says: the Slack message (coloured by result, with repo, branch or pull
 * request, commit title, author, duration, a link to the log and, on failure, the tail of the failing
 * step) and the SNS subject, message and attributes. Build records carry untrusted text (branch
 * names, commit titles, log output): Slack's control characters are escaped so a build cannot
 * mention `@channel` or forge links.
 */
import type { BuildRecord } from '../core/build.js';
import type { NotifyEvent } from '../core/notifications.js';
import type { BuildState } from '../core/state-machine.js';
import { formatDuration } from '../core/log-format.js';
import type { LogTail } from './log-tail.js';
import type { SlackMessage } from './slack.js';

/** started: the build began; otherwise the result it ended with. */
export type MessageEvent = NotifyEvent;

const COLOURS: Record<MessageEvent, string> = {
  started: '#3aa3e3',
  success: '#2eb886',
  fixed: '#2eb886',
  failure: '#d00000',
  error: '#d00000',
  timed_out: '#daa038',
  cancelled: '#9e9e9e',
};

const WORDS: Record<MessageEvent, string> = {
  started: 'started',
  success: 'passed',
  fixed: 'fixed',
  failure: 'failed',
  error: 'errored',
  timed_out: 'timed out',
  cancelled: 'was cancelled',
};

export interface MessageInput {
  build: BuildRecord;
  event: MessageEvent;
  /** The build's page. */
  url: string;
  tail?: LogTail;
}

/** `&`, `<` and `>` are Slack's control characters: escaped, text cannot become a link or mention. */
export function escapeSlack(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** A `<url|label>` link; a URL that is not http(s) is left out. */
function slackLink(url: string, label: string): string {
  if (!/^https?:\/\/[^\s]+$/i.test(url)) return escapeSlack(label);
  const safe = url.replace(/[<>|]/g, (char) => encodeURIComponent(char));
  return `<${safe}|${escapeSlack(label)}>`;
}

export function targetLabel(build: Pick<BuildRecord, 'branch' | 'tag' | 'pr' | 'baseBranch'>): string {
  if (build.pr !== undefined) {
    return `PR #${build.pr}${build.branch ? ` (${build.branch}${build.baseBranch ? ` → ${build.baseBranch}` : ''})` : ''}`;
  }
  if (build.tag !== undefined) return `tag ${build.tag}`;
  return build.branch ?? '';
}

export function durationOf(build: Pick<BuildRecord, 'startedAt' | 'endedAt'>): number | undefined {
  return build.startedAt !== undefined && build.endedAt !== undefined
    ? build.endedAt - build.startedAt
    : undefined;
}

function singleLine(text: string, length: number): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > length ? `${flat.slice(0, length - 1)}…` : flat;
}

export function slackMessageFor(input: MessageInput): SlackMessage {
  const { build, event, url } = input;
  const title = `${build.repo} #${build.number}`;
  const headline = `${slackLink(url, title)} ${WORDS[event]}`;
  const fields = [
    {
      title: build.pr !== undefined ? 'Pull request' : build.tag !== undefined ? 'Tag' : 'Branch',
      value: escapeSlack(targetLabel(build)),
      short: true,
    },
    { title: 'Author', value: escapeSlack(build.author), short: true },
    {
      title: 'Commit',
      value:
        `\`${escapeSlack(build.sha.slice(0, 7))}\`` +
        (build.commitTitle ? ` ${escapeSlack(singleLine(build.commitTitle, 120))}` : ''),
      short: false,
    },
  ];
  const duration = durationOf(build);
  if (duration !== undefined)
    fields.push({ title: 'Duration', value: formatDuration(duration), short: true });
  const lines: string[] = [];
  if (event !== 'started' && build.description) lines.push(escapeSlack(singleLine(build.description, 300)));
  if (input.tail) {
    const from = input.tail.step
      ? `Last lines of ${escapeSlack(input.tail.step)}:`
      : 'Last lines of the log:';
    // A run of backticks in the output would close the code block early.
    lines.push(
      `${from}\n\`\`\`${escapeSlack(input.tail.text).replace(/`{3,}/g, (ticks) => ticks.split('').join('\u200b'))}\`\`\``,
    );
  }
  return {
    text: `${headline}${event === 'started' ? '' : ` · ${escapeSlack(targetLabel(build))}`}`,
    attachments: [
      {
        color: COLOURS[event],
        title: `${title} ${WORDS[event]}`,
        ...(/^https?:\/\//i.test(url) ? { title_link: url } : {}),
        ...(lines.length > 0 ? { text: lines.join('\n') } : {}),
        fields,
        footer: 'Lambkin CI',
        mrkdwn_in: ['text', 'fields'],
      },
    ],
  };
}

/** SNS message attributes subscribers filter on (String values). */
export interface SnsNotification {
  subject: string;
  message: string;
  attributes: Record<string, string>;
}

/** SNS subjects: printable ASCII, no line breaks, under 100 characters. */
export function snsSubject(text: string): string {
  const ascii = text.replace(/[^\x20-\x7e]/g, '?').trim();
  return ascii.length > 99 ? `${ascii.slice(0, 98)}…`.replace(/[^\x20-\x7e]/g, '.') : ascii;
}

export function snsNotificationFor(input: {
  build: BuildRecord;
  result: Exclude<MessageEvent, 'started'>;
  url: string;
}): SnsNotification {
  const { build, result, url } = input;
  const duration = durationOf(build);
  const state: BuildState = build.state;
  const message = {
    repo: build.repo,
    number: build.number,
    state,
    result,
    event: build.event,
    ...(build.branch !== undefined ? { branch: build.branch } : {}),
    ...(build.tag !== undefined ? { tag: build.tag } : {}),
    ...(build.pr !== undefined ? { pr: build.pr } : {}),
    ...(build.baseBranch !== undefined ? { baseBranch: build.baseBranch } : {}),
    sha: build.sha,
    ...(build.commitTitle !== undefined ? { commitTitle: build.commitTitle } : {}),
    author: build.author,
    ...(build.description !== undefined ? { description: build.description } : {}),
    ...(duration !== undefined ? { durationMs: duration } : {}),
    ...(build.startedAt !== undefined ? { startedAt: new Date(build.startedAt).toISOString() } : {}),
    ...(build.endedAt !== undefined ? { endedAt: new Date(build.endedAt).toISOString() } : {}),
    url,
  };
  const attributes: Record<string, string> = { state, result, repo: build.repo, event: build.event };
  if (build.branch) attributes.branch = build.branch;
  if (build.pr !== undefined) attributes.pr = String(build.pr);
  return {
    subject: snsSubject(`Lambkin: ${build.repo} #${build.number} ${WORDS[result]}`),
    message: JSON.stringify(message, null, 2),
    attributes,
  };
}
