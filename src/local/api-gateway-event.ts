/**
 * The one adapter between the local HTTP server and the cloud's handlers: a Node request becomes the
 * API Gateway HTTP API event (payload format 2.0) the handler gets in the cloud, and the handler's
 * result is written back as API Gateway would. The local stack has no glue of its own beyond this,
 * so a request answered locally is answered by the same code as in the cloud.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { LambkinError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { MAX_WEBHOOK_BODY_BYTES } from '../github/webhook.js';
import type { HttpApiEvent, LambdaHttpResult } from '../handlers/http-event.js';

/** GitHub never delivers a webhook payload larger than 25 MB; nothing else here has a body. */
export const MAX_REQUEST_BODY_BYTES = MAX_WEBHOOK_BODY_BYTES;

/** A handler as src/handlers creates it: one HTTP API event in, one result out. */
export type HttpApiHandler = (event: HttpApiEvent) => Promise<LambdaHttpResult>;

/** The request's body passed the size limit: it was not read to its end. */
export class RequestBodyTooLargeError extends LambkinError {
  constructor(readonly limitBytes: number) {
    super(
      'REQUEST_BODY_TOO_LARGE',
      `The request body is larger than ${limitBytes} bytes, the most this server reads ` +
        "(GitHub's cap for webhook payloads): send a smaller body.",
    );
  }
}

/** Content types API Gateway passes on as text; any other body arrives base64-encoded. */
const TEXT_CONTENT_TYPE =
  /^\s*(text\/[^;]*|application\/([a-z0-9.+-]*\+)?(json|xml|javascript|x-www-form-urlencoded))\s*(;|$)/i;
const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Reads the body, at most `limitBytes` of it. Past the limit it stops reading (the rest stays
 * unread on the connection, which the answer closes), so an endless body costs no memory.
 */
export async function readBodyWithin(request: IncomingMessage, limitBytes: number): Promise<Buffer> {
  const declared = Number(request.headers['content-length']);
  if (Number.isFinite(declared) && declared > limitBytes) throw new RequestBodyTooLargeError(limitBytes);
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limitBytes) {
        stop();
        request.pause();
        chunks.length = 0;
        reject(new RequestBodyTooLargeError(limitBytes));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      stop();
      resolve(Buffer.concat(chunks, size));
    };
    const onError = (error: Error): void => {
      stop();
      reject(error);
    };
    const stop = (): void => {
      request.off('data', onData).off('end', onEnd).off('error', onError);
    };
    request.on('data', onData).on('end', onEnd).on('error', onError);
  });
}

/**
 * The event API Gateway (HTTP API, `$default` stage) sends for this request: header names in lower
 * case with repeated headers joined by commas, cookies apart, the query string raw and parsed, the
 * body as text for text content types and base64 otherwise.
 */
export function toHttpApiEvent(request: IncomingMessage, body: Buffer, now = Date.now()): HttpApiEvent {
  const target = request.url ?? '/';
  const queryAt = target.indexOf('?');
  const rawPath = queryAt < 0 ? target : target.slice(0, queryAt);
  const rawQueryString = queryAt < 0 ? '' : target.slice(queryAt + 1);
  const method = (request.method ?? 'GET').toUpperCase();

  const headers: Record<string, string> = {};
  let cookies: string[] = [];
  for (const [name, value] of Object.entries(request.headersDistinct)) {
    if (!value) continue;
    if (name === 'cookie') cookies = value.flatMap((line) => line.split(/;\s*/)).filter(Boolean);
    else headers[name] = value.join(',');
  }
  const sourceIp = request.socket.remoteAddress ?? '127.0.0.1';
  // API Gateway says how the request reached it; the client's own x-forwarded-* are not believed.
  headers['x-forwarded-for'] = sourceIp;
  headers['x-forwarded-proto'] = 'http';
  headers['x-forwarded-port'] = String(request.socket.localPort ?? '');

  const queryStringParameters: Record<string, string> = {};
  for (const [name, value] of new URLSearchParams(rawQueryString)) {
    const earlier = queryStringParameters[name];
    queryStringParameters[name] = earlier === undefined ? value : `${earlier},${value}`;
  }
  const text = isText(headers['content-type'], body);
  const domainName = headers['host'] ?? 'localhost';
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath,
    rawQueryString,
    ...(cookies.length > 0 ? { cookies } : {}),
    headers,
    ...(rawQueryString ? { queryStringParameters } : {}),
    requestContext: {
      accountId: 'anonymous',
      apiId: 'local',
      domainName,
      domainPrefix: domainName.split('.')[0] ?? domainName,
      http: {
        method,
        path: rawPath,
        protocol: `HTTP/${request.httpVersion}`,
        sourceIp,
        userAgent: headers['user-agent'] ?? '',
      },
      requestId: randomUUID(),
      routeKey: '$default',
      stage: '$default',
      time: new Date(now).toUTCString(),
      timeEpoch: now,
    },
    ...(body.length > 0 ? { body: text ? body.toString('utf8') : body.toString('base64') } : {}),
    isBase64Encoded: body.length > 0 && !text,
  };
}

function isText(contentType: string | undefined, body: Buffer): boolean {
  if (!contentType || !TEXT_CONTENT_TYPE.test(contentType)) return false;
  try {
    STRICT_UTF8.decode(body);
    return true;
  } catch {
    return false; // not UTF-8 after all: base64 keeps the exact bytes
  }
}

/** Writes a handler's result as API Gateway would: status, headers, cookies, the body decoded. */
export function writeLambdaResult(response: ServerResponse, result: LambdaHttpResult): void {
  const body = result.isBase64Encoded ? Buffer.from(result.body, 'base64') : Buffer.from(result.body, 'utf8');
  if (result.cookies?.length) response.setHeader('set-cookie', result.cookies);
  response.writeHead(result.statusCode, result.headers);
  response.end(body);
}

/**
 * Answers one request with a handler: reads the body within the limit (413 past it), builds the
 * event, calls the handler, writes its result. A handler that throws is a 500, as Lambda's is.
 */
export async function answerWithHandler(
  handler: HttpApiHandler,
  request: IncomingMessage,
  response: ServerResponse,
  options: { logger: Logger; maxBodyBytes?: number },
): Promise<void> {
  let body: Buffer;
  try {
    body = await readBodyWithin(request, options.maxBodyBytes ?? MAX_REQUEST_BODY_BYTES);
  } catch (error) {
    if (!(error instanceof RequestBodyTooLargeError)) {
      options.logger.warn('local server: could not read a request body', { error });
      response.destroy();
      return;
    }
    options.logger.warn('local server: request body too large', {
      path: request.url,
      limit: error.limitBytes,
    });
    // The unread rest of the body stays on the connection: it is closed once the answer is out.
    response.shouldKeepAlive = false;
    writeLambdaResult(response, {
      statusCode: 413,
      headers: { 'content-type': 'application/json; charset=utf-8', connection: 'close' },
      body: JSON.stringify({ error: error.message }) + '\n',
    });
    return;
  }
  let result: LambdaHttpResult;
  try {
    result = await handler(toHttpApiEvent(request, body));
  } catch (error) {
    options.logger.error('local server: the handler failed', { path: request.url, error });
    result = {
      statusCode: 500,
      headers: { 'content-type': 'application/json; charset=utf-8' },
      body: JSON.stringify({ message: 'Internal Server Error' }) + '\n',
    };
  }
  writeLambdaResult(response, result);
}
