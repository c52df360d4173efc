/**
 * Notification settings (Slack and SNS) and the rules that decide whether a build change notifies.
 * Pure: no HTTP, no AWS. Kept in the settings store (src/core/settings.ts `notifications`), never in
 * the repository's own files, and never handed to a build.
 */
import picomatch from 'picomatch';
import type { BuildRecord } from './build.js';
import { isTerminal, type BuildState, type TerminalState } from './state-machine.js';

/**
 * What may notify: the build started, or it ended with a result. `fixed` is a success after the
 * previous finished build of the same branch or pull request did not succeed (a subset of
 * `success`: listing `success` notifies fixed builds too).
 */
export const NOTIFY_EVENTS = [
  'started',
  'success',
  'fixed',
  'failure',
  'error',
  'timed_out',
  'cancelled',
] as const;
export type NotifyEvent = (typeof NOTIFY_EVENTS)[number];

/** Default `on`: every start and every result except cancelled (superseded builds are noise). */
export const DEFAULT_NOTIFY_ON: readonly NotifyEvent[] = [
  'started',
  'success',
  'failure',
  'error',
  'timed_out',
];

/** Which builds a channel hears about. */
export interface NotifyFilter {
  /** Events that notify; default DEFAULT_NOTIFY_ON. */
  on?: NotifyEvent[];
  /**
   * Branch globs whose builds notify: the pushed branch, the branch a pull request merges into, or
   * the tag. Default: every one.
   */
  branches?: string[];
  /** Off turns the channel off (e.g. for one repository while the global settings name it). */
  enabled?: boolean;
}

export interface SlackSettings extends NotifyFilter {
  /** An incoming-webhook URL (secret: sealed in the store). Cannot update a message in place. */
  webhookUrl?: string;
  /** A bot token, `xoxb-…` (secret: sealed in the store), used with `channel`. */
  token?: string;
  /** The channel the bot posts to (`#builds` or an id), with `token`. */
  channel?: string;
}

export interface SnsSettings extends NotifyFilter {
  /** The topic each finished build is published to; the stack must grant it (NotificationTopicArns). */
  topicArn?: string;
}

/** The `notifications` section of a settings document (global or per repository). */
export interface NotificationSettings {
  slack?: SlackSettings;
  sns?: SnsSettings;
}

/** Secret keys of `notifications.slack`: sealed like `secretEnv`, shown as `***`. */
export const SLACK_SECRET_KEYS = ['webhookUrl', 'token'] as const satisfies readonly (keyof SlackSettings)[];

/** Dotted paths of every notification secret, for sealing, opening and masking. */
export const NOTIFICATION_SECRET_PATHS: readonly (readonly string[])[] = SLACK_SECRET_KEYS.map((key) => [
  'notifications',
  'slack',
  key,
]);

/**
 * Merges a later (more specific) document's notifications over the current ones, key by key. A
 * repository that names its own Slack webhook drops an inherited bot token, and the other way round,
 * so that the connection it names is the one used.
 */
export function mergeNotifications(
  current: NotificationSettings,
  document: NotificationSettings | undefined,
): NotificationSettings {
  if (!document) return current;
  const merged: NotificationSettings = { ...current };
  if (document.slack) {
    const slack: SlackSettings = { ...current.slack };
    if (document.slack.webhookUrl !== undefined) {
      delete slack.token;
      delete slack.channel;
    }
    if (document.slack.token !== undefined) delete slack.webhookUrl;
    merged.slack = { ...slack, ...copyLists(document.slack) };
  }
  if (document.sns) merged.sns = { ...current.sns, ...copyLists(document.sns) };
  return merged;
}

function copyLists<T extends NotifyFilter>(settings: T): T {
  return {
    ...settings,
    ...(settings.on ? { on: [...settings.on] } : {}),
    ...(settings.branches ? { branches: [...settings.branches] } : {}),
  };
}

/** The result a finished build notifies as: its state, or `fixed`. */
export function resultOf(
  build: Pick<BuildRecord, 'state'>,
  previous: Pick<BuildRecord, 'state'> | undefined,
): TerminalState | 'fixed' | undefined {
  if (!isTerminal(build.state)) return undefined;
  if (build.state === 'success' && previous !== undefined && isBrokenState(previous.state)) return 'fixed';
  return build.state;
}

/** A finished build that did not pass (cancelled is neither broken nor passing). */
export function isBrokenState(state: BuildState): boolean {
  return state === 'failure' || state === 'error' || state === 'timed_out';
}

/** The name branch globs are matched against: the pushed branch, a PR's base branch, or the tag. */
export function notifyTargetOf(build: Pick<BuildRecord, 'branch' | 'baseBranch' | 'pr' | 'tag'>): string {
  if (build.pr !== undefined) return build.baseBranch ?? build.branch ?? '';
  return build.tag ?? build.branch ?? '';
}

/**
 * Whether a channel's filter lets this build's event through. An untrusted build of a branch (a
 * check suite's, whose commit may be a fork's) speaks for nobody: "main failed" would be a
 * stranger's word. Pull requests from forks notify as pull requests.
 */
export function shouldNotify(
  filter: NotifyFilter,
  build: Pick<BuildRecord, 'branch' | 'baseBranch' | 'pr' | 'tag' | 'trusted'>,
  event: NotifyEvent,
): boolean {
  if (filter.enabled === false) return false;
  if (!build.trusted && build.pr === undefined) return false;
  const target = notifyTargetOf(build);
  // Not policy.ts's matchesAny: that module imports the settings, which import this one.
  if (filter.branches && !filter.branches.some((glob) => picomatch.isMatch(target, glob, { dot: true })))
    return false;
  const on = filter.on ?? DEFAULT_NOTIFY_ON;
  if (on.includes(event)) return true;
  // A fixed build is also a success.
  return event === 'fixed' && on.includes('success');
}

/** A Slack configuration that can post: a webhook, or a bot token with a channel. */
export type SlackConnection =
  { kind: 'webhook'; webhookUrl: string } | { kind: 'bot'; token: string; channel: string };

/** The connection the settings name, or undefined when Slack is not configured (or is off). */
export function slackConnectionOf(slack: SlackSettings | undefined): SlackConnection | undefined {
  if (!slack || slack.enabled === false) return undefined;
  if (slack.token && slack.channel) return { kind: 'bot', token: slack.token, channel: slack.channel };
  if (slack.webhookUrl) return { kind: 'webhook', webhookUrl: slack.webhookUrl };
  return undefined;
}

/** Where the Slack message of a build is, once posted with a bot token (kept on the build record). */
export interface SlackMessageRef {
  channel: string;
  ts: string;
}

/** The build record with what notifications keep on it. */
export type NotifiedBuild = BuildRecord & { slackMessage?: SlackMessageRef };
