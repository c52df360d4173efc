/**
 * The lock in front of the local storage servers. dynalite and s3rver take any credentials and
 * answer CORS preflights, so each listens on an internal port of 127.0.0.1 and this proxy listens
 * on the public one: it lets through only requests signed with a key of the stack
 * (src/local/request-signatures.ts), refuses every other one with 403 before the server sees it,
 * refuses OPTIONS, and strips CORS headers from the answers, so no web page can read them either.
 */
import {
  createServer,
  request as forward,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import {
  isPresignedRequest,
  verifyHeaderSignature,
  verifyPostPolicySignature,
  verifyQuerySignature,
  type SignatureVerdict,
} from './request-signatures.js';
import type { StackCredentials } from './stack-credentials.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDynamoServer, startS3Server, type RunningServer } from './storage-servers.js';

export type StorageService = 'dynamodb' | 's3';

export interface StorageProxyOptions {
  service: StorageService;
  /** The storage server behind the proxy (its Unix socket, or its URL). */
  target: RunningServer;
  credentials: StackCredentials;
  host?: string;
  port?: number;
}

/** DynamoDB's largest request (BatchWriteItem) is 16 MB; its bodies are read whole to check the hash. */
const MAX_DYNAMODB_BODY_BYTES = 16 * 1024 * 1024;
/** An upload form's fields come before its file; more than this before the file is not a form of ours. */
const MAX_FORM_FIELDS_BYTES = 64 * 1024;

export async function startStorageProxy(options: StorageProxyOptions): Promise<RunningServer> {
  const host = options.host ?? '127.0.0.1';
  const target = options.target.socketPath
    ? { socketPath: options.target.socketPath }
    : { host: new URL(options.target.endpoint).hostname, port: new URL(options.target.endpoint).port };
  const server: Server = createServer((request, response) => {
    handle(request, response).catch(() => {
      if (!response.headersSent) refuse(response, options.service, 'the request could not be checked');
      else response.destroy();
    });
  });
  const handle = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    if (request.method === 'OPTIONS') {
      refuse(response, options.service, 'cross-origin requests are not served');
      return;
    }
    const received = { method: request.method ?? 'GET', url: request.url ?? '/', headers: request.headers };
    const verify = { credentials: options.credentials, service: options.service };
    if (request.headers.authorization !== undefined) {
      // S3 requests sign their payload's hash in a header: the body streams through. DynamoDB's
      // signature covers the body itself, so it is read first.
      const body =
        options.service === 'dynamodb' ? await readWithin(request, MAX_DYNAMODB_BODY_BYTES) : undefined;
      if (body === 'too large') {
        refuse(response, options.service, 'the request body is too large');
        return;
      }
      const verdict = await verifyHeaderSignature(received, body, verify);
      if (!verdict.ok) return refuse(response, options.service, verdict.reason);
      pass(request, response, body === undefined ? [] : [body], true);
      return;
    }
    if (options.service === 's3' && isPresignedRequest(received)) {
      const verdict = await verifyQuerySignature(received, verify);
      if (!verdict.ok) return refuse(response, options.service, verdict.reason);
      const access = request.method === 'GET' || request.method === 'HEAD' ? 'read' : 'write';
      const objectKey = objectKeyOf(received.url);
      // PUT writes one object, DELETE removes one (a CodeBuild runner spends its input that way).
      if (
        objectKey === undefined ||
        (access === 'write' && request.method !== 'PUT' && request.method !== 'DELETE')
      )
        return refuse(response, options.service, 'a presigned URL only reads, writes or deletes one object');
      if (climbs(objectKey))
        return refuse(response, options.service, `a key may not hold . or .. segments: ${objectKey}`);
      if (!options.credentials.allows(verdict.accessKeyId, access, objectKey))
        return refuse(response, options.service, `the key may not ${access} ${objectKey}`);
      // S3's conditional write (If-None-Match: *), which s3rver ignores: a CodeBuild runner's outcome
      // is written once, and a second writer must hear 412 as it would from S3.
      if (request.method === 'PUT' && request.headers['if-none-match'] === '*') {
        if (await objectExists(received.url.split('?')[0] ?? '/')) return preconditionFailed(response);
      }
      pass(request, response, [], true);
      return;
    }
    if (options.service === 's3' && request.method === 'POST' && isMultipartForm(request)) {
      const form = await readFormFields(request);
      const verdict: SignatureVerdict = form
        ? verifyPostPolicySignature(form.fields, { credentials: options.credentials })
        : { ok: false, reason: 'the form has no fields before its file' };
      if (!verdict.ok) return refuse(response, options.service, verdict.reason);
      // s3rver applies none of the policy's conditions: the key, at least, is checked here.
      const objectKey = form?.fields.get('key') ?? '';
      if (
        objectKey.includes('${filename}') ||
        climbs(objectKey) ||
        !options.credentials.allows(verdict.accessKeyId, 'write', objectKey)
      )
        return refuse(response, options.service, `the form may not write ${objectKey}`);
      pass(request, response, form?.read ?? [], true);
      return;
    }
    refuse(response, options.service, 'the request is not signed with a key of this stack');
  };

  /** Whether the server holds the object at `path` (`/<bucket>/<key>`). */
  const objectExists = (path: string): Promise<boolean> =>
    new Promise((resolve, reject) => {
      const probe = forward({ ...target, method: 'HEAD', path }, (answer) => {
        answer.resume();
        resolve(answer.statusCode === 200);
      });
      probe.on('error', reject);
      probe.end();
    });

  /** Sends what was read, then the rest of the request, to the server; its answer comes back without CORS. */
  const pass = (request: IncomingMessage, response: ServerResponse, read: Buffer[], rest: boolean): void => {
    const upstream = forward(
      {
        ...target,
        method: request.method,
        path: request.url,
        headers: request.headers,
      },
      (answer) => {
        const headers = { ...answer.headers };
        for (const name of Object.keys(headers)) if (name.startsWith('access-control-')) delete headers[name];
        response.writeHead(answer.statusCode ?? 502, headers);
        answer.pipe(response);
      },
    );
    upstream.on('error', () => {
      if (!response.headersSent) response.writeHead(502).end();
      else response.destroy();
    });
    for (const chunk of read) upstream.write(chunk);
    if (rest && !request.readableEnded) request.pipe(upstream);
    else upstream.end();
  };

  server.listen(options.port ?? 0, host);
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://${host}:${port}`,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** 403 in the shape each service's SDK reads, so a caller sees why. */
function refuse(response: ServerResponse, service: StorageService, reason: string): void {
  const message = `Refused by the Lambkin local stack: ${reason}. Use the stack's own clients or \`lambkin … --local\`.`;
  if (service === 'dynamodb') {
    const body = JSON.stringify({ __type: 'com.amazon.coral.service#UnrecognizedClientException', message });
    response.writeHead(403, {
      'content-type': 'application/x-amz-json-1.0',
      'content-length': Buffer.byteLength(body),
    });
    response.end(body);
    return;
  }
  const escaped = message.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code><Message>${escaped}</Message></Error>`;
  response.writeHead(403, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
  response.end(body);
}

/** S3's answer to a conditional write whose object exists. */
function preconditionFailed(response: ServerResponse): void {
  const body =
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>PreconditionFailed</Code>' +
    '<Message>At least one of the pre-conditions you specified did not hold</Message>' +
    '<Condition>If-None-Match</Condition></Error>';
  response.writeHead(412, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
  response.end(body);
}

/**
 * Whether a key has a `.` or `..` segment. S3 takes keys literally, but the local S3 server stores
 * them as files: `<granted prefix>../../index.html` passes a check of the prefix by its text and
 * lands outside it. No key Lambkin makes has one.
 */
function climbs(key: string): boolean {
  return key.split('/').some((segment) => segment === '.' || segment === '..');
}

/** `/bucket/some/key` → `some/key` (path-style, as the stack's clients address the bucket). */
function objectKeyOf(url: string): string | undefined {
  const path = url.split('?')[0] ?? '';
  const match = /^\/[^/]+\/(.+)$/.exec(path);
  if (!match?.[1]) return undefined;
  try {
    return decodeURIComponent(match[1]);
  } catch {
    return undefined;
  }
}

async function readWithin(request: IncomingMessage, limitBytes: number): Promise<Buffer | 'too large'> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > limitBytes) return 'too large';
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

function isMultipartForm(request: IncomingMessage): boolean {
  return /^multipart\/form-data\s*;/i.test(request.headers['content-type'] ?? '');
}

function boundaryOf(request: IncomingMessage): string | undefined {
  const match = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(request.headers['content-type'] ?? '');
  return match?.[1] ?? match?.[2];
}

/**
 * Reads a multipart form up to the headers of its `file` part (S3 requires the file last) and
 * returns the fields before it (names lower-cased) with every chunk read, to be sent on unchanged.
 * The request is paused there; the file streams through once the form is accepted.
 */
async function readFormFields(
  request: IncomingMessage,
): Promise<{ fields: Map<string, string>; read: Buffer[] } | undefined> {
  const boundary = boundaryOf(request);
  if (!boundary) return undefined;
  const delimiter = Buffer.from(`\r\n--${boundary}`);
  const read: Buffer[] = [];
  let size = 0;
  const fields = new Map<string, string>();
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      read.push(chunk);
      size += chunk.length;
      // A leading CRLF makes the first delimiter look like every other one.
      const text = Buffer.concat([Buffer.from('\r\n'), ...read]);
      let position = text.indexOf(delimiter);
      while (position !== -1) {
        const headersStart = position + delimiter.length + 2;
        const headersEnd = text.indexOf('\r\n\r\n', headersStart);
        if (headersEnd === -1) break;
        const partHeaders = text.subarray(headersStart, headersEnd).toString('utf8');
        const name = /content-disposition:[^\r\n]*\bname="([^"]*)"/i.exec(partHeaders)?.[1];
        if (name === 'file' || /filename=/i.test(partHeaders)) {
          done({ fields, read });
          return;
        }
        const next = text.indexOf(delimiter, headersEnd + 4);
        if (next === -1) break;
        if (name !== undefined)
          fields.set(name.toLowerCase(), text.subarray(headersEnd + 4, next).toString('utf8'));
        position = next;
      }
      if (size > MAX_FORM_FIELDS_BYTES) done(undefined);
    };
    const onEnd = (): void => done(undefined);
    const done = (value: { fields: Map<string, string>; read: Buffer[] } | undefined): void => {
      request.off('data', onData);
      request.off('end', onEnd);
      request.off('error', reject);
      request.pause();
      resolve(value);
    };
    request.on('data', onData);
    request.on('end', onEnd);
    request.on('error', reject);
  });
}

export interface GuardedStorageOptions {
  credentials: StackCredentials;
  /** dynalite's LevelDB folder; in memory when omitted. */
  dynamoPath?: string;
  /** s3rver's folder. */
  s3Directory: string;
  /** Where the proxies listen; default 127.0.0.1. */
  host?: string;
}

/**
 * dynalite and s3rver on Unix sockets in a fresh folder only this user may enter (a loopback port
 * would be as open to a build as the public one), each behind its proxy: the endpoints clients use.
 * `dynamodbSocket` is dynalite's own socket, for this process's clients alone (they hold the
 * stack's key anyway): without the proxy's HTTP hop and signature check, a DynamoDB request costs
 * the process less CPU, which the webhook's answer waits for.
 */
export async function startGuardedStorage(
  options: GuardedStorageOptions,
): Promise<{ dynamodb: RunningServer; s3: RunningServer; dynamodbSocket?: string; stop(): Promise<void> }> {
  // mkdtemp makes the folder 0700. Under the system's temporary folder: a socket's path must stay
  // short (108 bytes), which a data dir's path may not.
  const socketDir = await mkdtemp(join(tmpdir(), 'lambkin-storage-'));
  const started: RunningServer[] = [];
  const stop = async (): Promise<void> => {
    await Promise.allSettled(started.reverse().map((server) => server.stop()));
    await rm(socketDir, { recursive: true, force: true });
  };
  try {
    // Side by side: s3rver's process start is most of the wait, and dynalite runs in this one.
    const [dynamoStarted, s3Started] = await Promise.allSettled([
      startDynamoServer({
        ...(options.dynamoPath ? { path: options.dynamoPath } : {}),
        socketPath: join(socketDir, 'dynamodb.sock'),
      }),
      startS3Server({ directory: options.s3Directory, socketPath: join(socketDir, 's3.sock') }),
    ]);
    for (const result of [dynamoStarted, s3Started]) {
      if (result.status === 'fulfilled') started.push(result.value);
    }
    if (dynamoStarted.status === 'rejected') throw dynamoStarted.reason;
    if (s3Started.status === 'rejected') throw s3Started.reason;
    const innerDynamo = dynamoStarted.value;
    const innerS3 = s3Started.value;
    const proxy = (service: StorageService, target: RunningServer) =>
      startStorageProxy({
        service,
        target,
        credentials: options.credentials,
        ...(options.host ? { host: options.host } : {}),
      });
    const dynamodb = await proxy('dynamodb', innerDynamo);
    started.push(dynamodb);
    const s3 = await proxy('s3', innerS3);
    started.push(s3);
    return {
      dynamodb,
      s3,
      ...(innerDynamo.socketPath !== undefined ? { dynamodbSocket: innerDynamo.socketPath } : {}),
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
