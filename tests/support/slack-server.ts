/**
 * A loopback stand-in for Slack: an incoming-webhook endpoint (`POST /services/…`, answers `ok`)
 * and the Web API methods chat.postMessage and chat.update (`POST /api/chat.*`, bearer token, JSON
 * answers with `ok`, `channel`, `ts` as Slack gives them). It records every request, keeps the
 * messages (so an update is seen in place), and can be told to answer the next requests with 429 +
 * Retry-After, 500, or by closing the socket.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface SlackRequest {
  kind: 'webhook' | 'chat.postMessage' | 'chat.update' | 'other';
  path: string;
  /** Parsed JSON body (undefined when it was not JSON). */
  body: Record<string, unknown> | undefined;
  authorization: string | undefined;
  /** Epoch ms it arrived. */
  at: number;
  /** What the stand-in answered: `ok`, an injected failure, or a Slack error code. */
  answer: string;
}

export interface SlackStoredMessage {
  channel: string;
  ts: string;
  /** The payload as last posted or updated. */
  body: Record<string, unknown>;
  updates: number;
}

export type SlackFailure = { status: 429; retryAfterSeconds: number } | { status: 500 } | { close: true };

export interface SlackStandIn {
  /** Base URL; the Web API is at `${url}/api`. */
  url: string;
  apiUrl: string;
  /** An incoming-webhook URL this stand-in accepts. */
  webhookUrl: string;
  /** The bot token chat.* accepts. */
  token: string;
  requests: SlackRequest[];
  /** Messages in the order posted (webhook posts included, with channel `webhook`). */
  messages: SlackStoredMessage[];
  /** The next `count` requests (of any kind) fail this way. */
  failNext(failure: SlackFailure, count?: number): void;
  /** Every request fails this way until `heal()`. */
  failAlways(failure: SlackFailure): void;
  heal(): void;
  reset(): void;
  close(): Promise<void>;
}

const WEBHOOK_PATH = '/services/T000LAMB/B000KIN/stand-in-webhook-secret';

export async function startSlackServer(options: { token?: string } = {}): Promise<SlackStandIn> {
  const token = options.token ?? 'xoxb-stand-in-token-1234567890';
  const requests: SlackRequest[] = [];
  const messages: SlackStoredMessage[] = [];
  const queued: SlackFailure[] = [];
  let always: SlackFailure | undefined;
  let tsCounter = 0;

  const nextTs = (): string => {
    tsCounter += 1;
    return `${Math.floor(Date.now() / 1000)}.${String(tsCounter).padStart(6, '0')}`;
  };

  const server: Server = createServer((request: IncomingMessage, response: ServerResponse) => {
    void (async () => {
      const chunks: Buffer[] = [];
      for await (const chunk of request) chunks.push(chunk as Buffer);
      const path = new URL(request.url ?? '/', 'http://stand-in').pathname;
      let body: Record<string, unknown> | undefined;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
      } catch {
        body = undefined;
      }
      const kind: SlackRequest['kind'] =
        path === WEBHOOK_PATH
          ? 'webhook'
          : path === '/api/chat.postMessage'
            ? 'chat.postMessage'
            : path === '/api/chat.update'
              ? 'chat.update'
              : 'other';
      const record: SlackRequest = {
        kind,
        path,
        body,
        authorization: request.headers.authorization,
        at: Date.now(),
        answer: 'ok',
      };
      requests.push(record);
      const failure = queued.shift() ?? always;
      if (failure) {
        if ('close' in failure) {
          record.answer = 'closed';
          request.socket.destroy();
          return;
        }
        record.answer = String(failure.status);
        if (failure.status === 429) {
          response
            .writeHead(429, {
              'retry-after': String(failure.retryAfterSeconds),
              'content-type': 'text/plain',
            })
            .end('rate limited');
        } else {
          response.writeHead(500, { 'content-type': 'text/plain' }).end('internal error');
        }
        return;
      }
      const json = (value: Record<string, unknown>) => {
        if (value.ok === false) record.answer = String(value.error);
        response
          .writeHead(200, { 'content-type': 'application/json; charset=utf-8' })
          .end(JSON.stringify(value));
      };
      if (kind === 'webhook') {
        if (!body || (typeof body.text !== 'string' && !Array.isArray(body.attachments))) {
          record.answer = 'invalid_payload';
          response.writeHead(400, { 'content-type': 'text/plain' }).end('invalid_payload');
          return;
        }
        messages.push({ channel: 'webhook', ts: nextTs(), body, updates: 0 });
        response.writeHead(200, { 'content-type': 'text/html' }).end('ok');
        return;
      }
      if (kind === 'other') {
        record.answer = 'unknown_method';
        json({ ok: false, error: 'unknown_method' });
        return;
      }
      if (request.headers.authorization !== `Bearer ${token}`) {
        json({ ok: false, error: request.headers.authorization ? 'invalid_auth' : 'not_authed' });
        return;
      }
      if (!body || typeof body.channel !== 'string' || body.channel === '') {
        json({ ok: false, error: 'channel_not_found' });
        return;
      }
      // Slack answers with the channel's id; the stand-in keeps the name as its id.
      const channel = body.channel;
      if (kind === 'chat.postMessage') {
        const ts = nextTs();
        messages.push({ channel, ts, body, updates: 0 });
        json({ ok: true, channel, ts, message: { text: body.text, ts } });
        return;
      }
      const existing = messages.find((message) => message.channel === channel && message.ts === body?.ts);
      if (!existing) {
        json({ ok: false, error: 'message_not_found' });
        return;
      }
      existing.body = body;
      existing.updates += 1;
      json({ ok: true, channel, ts: existing.ts, text: body.text });
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    apiUrl: `${url}/api`,
    webhookUrl: `${url}${WEBHOOK_PATH}`,
    token,
    requests,
    messages,
    failNext(failure, count = 1) {
      for (let index = 0; index < count; index++) queued.push(failure);
    },
    failAlways(failure) {
      always = failure;
    },
    heal() {
      always = undefined;
      queued.length = 0;
    },
    reset() {
      always = undefined;
      queued.length = 0;
      requests.length = 0;
      messages.length = 0;
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
