/**
 * Slack: incoming webhooks (post only) and the Web API with a bot token (chat.postMessage, then
 * chat.update in place). Every call is bounded by a deadline: rate limits (429 + Retry-After) and
 * failures (5xx, network) are retried with backoff while time remains, and a Retry-After past the
 * deadline gives up at once rather than delaying the build. Errors are SlackError; the caller logs
 * them, a notification never fails a build.
 */
import type { SlackMessageRef } from '../core/notifications.js';
import { LambkinError } from '../core/errors.js';

export const DEFAULT_SLACK_API_URL = 'https://slack.com/api';

export interface SlackField {
  title: string;
  value: string;
  short?: boolean;
}

/** A message with one coloured attachment (Slack's "secondary" attachment layout). */
export interface SlackMessage {
  /** Notification text and the fallback of clients that do not show attachments. */
  text: string;
  attachments: {
    color: string;
    title?: string;
    title_link?: string;
    text?: string;
    fields?: SlackField[];
    footer?: string;
    mrkdwn_in?: string[];
  }[];
}

export interface SlackClientOptions {
  /** Base of the Web API (LAMBKIN_SLACK_API_URL; a loopback stand-in in tests). */
  apiUrl?: string;
  /** Time for one HTTP attempt; default 5 s (less when the deadline is nearer). */
  attemptTimeoutMs?: number;
  /** Attempts per call, the first included; default 4. */
  maxAttempts?: number;
  /** Wait before the first retry, doubled after each; default 250 ms. */
  baseDelayMs?: number;
  clock?: () => number;
}

/** A Slack call failed for good, or ran out of time. `slackError` is Slack's own code when it gave one. */
export class SlackError extends LambkinError {
  constructor(
    message: string,
    readonly slackError?: string,
    options?: { cause?: unknown },
  ) {
    super('SLACK', message, options);
  }
}

/** Web API errors worth trying again (everything else is a configuration problem). */
const RETRYABLE_API_ERRORS = new Set([
  'ratelimited',
  'internal_error',
  'fatal_error',
  'service_unavailable',
  'request_timeout',
]);

/** chat.update errors that mean "post a new message instead". */
export const UPDATE_NOT_POSSIBLE = new Set([
  'message_not_found',
  'cant_update_message',
  'edit_window_closed',
  'msg_too_long',
]);

type Attempt =
  | { done: true; value: unknown }
  | { done: false; retryAfterMs?: number; reason: string; slackError?: string; permanent: boolean };

export class SlackClient {
  private readonly apiUrl: string;
  private readonly attemptTimeoutMs: number;
  private readonly maxAttempts: number;
  private readonly baseDelayMs: number;
  private readonly clock: () => number;

  constructor(options: SlackClientOptions = {}) {
    this.apiUrl = (options.apiUrl ?? DEFAULT_SLACK_API_URL).replace(/\/+$/, '');
    this.attemptTimeoutMs = options.attemptTimeoutMs ?? 5000;
    this.maxAttempts = options.maxAttempts ?? 4;
    this.baseDelayMs = options.baseDelayMs ?? 250;
    this.clock = options.clock ?? Date.now;
  }

  /** Posts through an incoming webhook (which answers `ok` and cannot update what it posted). */
  async postToWebhook(webhookUrl: string, message: SlackMessage, deadline: number): Promise<void> {
    if (!/^https?:\/\//i.test(webhookUrl)) {
      throw new SlackError(
        'notifications.slack.webhookUrl is not an http(s) URL: set it to the incoming webhook URL Slack gave you',
      );
    }
    await this.call('the incoming webhook', deadline, async (signal) => {
      const response = await fetch(webhookUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json; charset=utf-8' },
        body: JSON.stringify(message),
        signal,
      });
      const body = await response.text();
      if (response.ok) return { done: true, value: body };
      return failedResponse(response, body.trim().slice(0, 100) || undefined);
    });
  }

  /** chat.postMessage with a bot token; returns where the message is (for chat.update). */
  async postMessage(
    token: string,
    channel: string,
    message: SlackMessage,
    deadline: number,
  ): Promise<SlackMessageRef> {
    const result = await this.webApi('chat.postMessage', token, { channel, ...message }, deadline);
    const posted = result as { channel?: unknown; ts?: unknown };
    if (typeof posted.ts !== 'string' || typeof posted.channel !== 'string') {
      throw new SlackError('chat.postMessage answered ok without the message channel and ts');
    }
    return { channel: posted.channel, ts: posted.ts };
  }

  /** chat.update of a message posted with the same token. */
  async updateMessage(
    token: string,
    ref: SlackMessageRef,
    message: SlackMessage,
    deadline: number,
  ): Promise<void> {
    await this.webApi('chat.update', token, { channel: ref.channel, ts: ref.ts, ...message }, deadline);
  }

  private async webApi(method: string, token: string, body: object, deadline: number): Promise<unknown> {
    return this.call(method, deadline, async (signal) => {
      const response = await fetch(`${this.apiUrl}/${method}`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${token}`,
          'content-type': 'application/json; charset=utf-8',
        },
        body: JSON.stringify(body),
        signal,
      });
      const text = await response.text();
      if (!response.ok) return failedResponse(response, undefined);
      let parsed: { ok?: unknown; error?: unknown };
      try {
        parsed = JSON.parse(text) as { ok?: unknown; error?: unknown };
      } catch {
        return { done: false, permanent: false, reason: `${method} answered something that is not JSON` };
      }
      if (parsed.ok === true) return { done: true, value: parsed };
      const error = typeof parsed.error === 'string' ? parsed.error : 'unknown_error';
      return {
        done: false,
        permanent: !RETRYABLE_API_ERRORS.has(error),
        reason: `${method} failed: ${error}${hintFor(error)}`,
        slackError: error,
      };
    });
  }

  /** Runs attempts until one succeeds, a permanent error, the attempts run out or the deadline. */
  private async call(
    what: string,
    deadline: number,
    attempt: (signal: AbortSignal) => Promise<Attempt>,
  ): Promise<unknown> {
    let last: Extract<Attempt, { done: false }> | undefined;
    for (let index = 0; index < this.maxAttempts; index++) {
      const remaining = deadline - this.clock();
      if (remaining <= 0) break;
      let outcome: Attempt;
      try {
        outcome = await attempt(AbortSignal.timeout(Math.min(this.attemptTimeoutMs, remaining)));
      } catch (error) {
        const name = (error as Error).name;
        const timedOut = name === 'TimeoutError' || name === 'AbortError';
        const detail = timedOut ? 'no answer in time' : describeSlackNetworkError(error);
        outcome = { done: false, permanent: false, reason: `${what}: ${detail}` };
      }
      if (outcome.done) return outcome.value;
      last = outcome;
      if (outcome.permanent) throw new SlackError(outcome.reason, outcome.slackError);
      if (index === this.maxAttempts - 1) break;
      const wait = outcome.retryAfterMs ?? this.baseDelayMs * 2 ** index;
      if (this.clock() + wait >= deadline) {
        throw new SlackError(
          `${outcome.reason}; ${outcome.retryAfterMs !== undefined ? `Slack asked to retry after ${Math.ceil(wait / 1000)} s, ` : ''}` +
            'past the time notifications may take: given up',
          outcome.slackError,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
    throw new SlackError(
      `${last?.reason ?? `${what}: no time left`}; given up after ${this.maxAttempts} attempts or the time limit`,
      last?.slackError,
    );
  }
}

function failedResponse(response: Response, body: string | undefined): Attempt {
  const status = response.status;
  if (status === 429) {
    const seconds = Number(response.headers.get('retry-after'));
    return {
      done: false,
      permanent: false,
      retryAfterMs: Number.isFinite(seconds) && seconds >= 0 ? seconds * 1000 : 1000,
      reason: 'Slack rate limit (429)',
      slackError: 'ratelimited',
    };
  }
  const detail = `HTTP ${status}${body ? ` ${body}` : ''}`;
  if (status >= 500) return { done: false, permanent: false, reason: `Slack answered ${detail}` };
  return {
    done: false,
    permanent: true,
    reason: `Slack refused the message (${detail})${hintFor(body ?? '')}`,
    ...(body ? { slackError: body } : {}),
  };
}

function hintFor(error: string): string {
  switch (error) {
    case 'invalid_auth':
    case 'not_authed':
    case 'token_revoked':
    case 'account_inactive':
      return ': check notifications.slack.token (a bot token, xoxb-…)';
    case 'channel_not_found':
    case 'not_in_channel':
      return ': check notifications.slack.channel, and invite the bot to the channel';
    case 'no_service':
    case 'no_team':
    case 'invalid_token':
      return ': the incoming webhook was removed; set notifications.slack.webhookUrl to a current one';
    default:
      return '';
  }
}

function describeSlackNetworkError(error: unknown): string {
  const cause = (error as { cause?: { code?: unknown; message?: unknown } }).cause;
  if (typeof cause?.code === 'string') return `network error ${cause.code}`;
  return `network error (${(error as Error).message})`;
}
