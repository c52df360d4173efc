/**
 * A loopback stand-in for the Lambda Invoke API (`POST /2015-03-31/functions/{name}/invocations`).
 * It answers the way the service does, status codes, headers and error bodies included, so the
 * real `@aws-sdk/client-lambda` talks to it unchanged (via `endpoint` or AWS_ENDPOINT_URL_LAMBDA)
 * and its error classes and retries are exercised for real.
 */
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type InvocationType = 'Event' | 'RequestResponse' | 'DryRun';

/** What a handler gets besides the payload (a small part of the Lambda runtime context). */
export interface LambdaInvokeContext {
  functionName: string;
  invocationType: InvocationType;
  awsRequestId: string;
  /** `X-Amz-Client-Context`, decoded from base64 JSON when present. */
  clientContext?: unknown;
}

export type LambdaHandler = (payload: unknown, context: LambdaInvokeContext) => Promise<unknown>;

/** How an invocation's handler ended (set once it has; Event handlers run after the 202). */
export type InvocationOutcome =
  { status: 'succeeded'; result: unknown } | { status: 'failed'; errorType: string; errorMessage: string };

/** One invocation the function accepted (faulted requests and dry runs are in `requests` only). */
export interface RecordedInvocation {
  /** Plain function name, also when the caller used an ARN. */
  functionName: string;
  qualifier?: string;
  invocationType: 'Event' | 'RequestResponse';
  /** The JSON payload, parsed (`{}` when the request had none). */
  payload: unknown;
  /** Request headers, lower-cased by Node. */
  headers: IncomingHttpHeaders;
  /** Epoch ms when the request arrived. */
  receivedAt: number;
  requestId: string;
  outcome?: InvocationOutcome;
}

export type LambdaFault =
  /** 500 ServiceException. */
  | { kind: 'service500' }
  /** 429 TooManyRequestsException, with the service's `Reason` and optional `Retry-After`. */
  | { kind: 'throttle429'; reason?: string; retryAfterSeconds?: number }
  /** 404 ResourceNotFoundException, as for a function that does not exist. */
  | { kind: 'notFound404' }
  /** Wait before answering normally (the caller may have given up by then). */
  | { kind: 'slow'; delayMs: number }
  /** Destroy the connection without answering. */
  | { kind: 'reset' };

/** Every request the server saw, whatever became of it. */
export interface RecordedRequest {
  method: string;
  path: string;
  functionName?: string;
  invocationType?: string;
  receivedAt: number;
  /** The fault injected into this request, if any. */
  fault?: LambdaFault['kind'];
  /** Status answered; undefined when the connection was reset or the client left first. */
  status?: number;
}

export interface LambdaServerOptions {
  /** Handlers by function name; functions without one return `null`. */
  functions?: Record<string, LambdaHandler>;
  /** When true, only functions with a handler exist; others get 404 like the real service. */
  strictFunctions?: boolean;
  region?: string;
  accountId?: string;
}

export interface LambdaServer {
  /** `http://127.0.0.1:<port>`, for the client's `endpoint`. */
  readonly endpoint: string;
  readonly region: string;
  readonly accountId: string;
  /** Accepted invocations, in arrival order. */
  readonly invocations: readonly RecordedInvocation[];
  readonly requests: readonly RecordedRequest[];
  setHandler(functionName: string, handler: LambdaHandler | undefined): void;
  /** Applies `fault` to the next `count` requests (queued after faults already pending). */
  failNext(fault: LambdaFault, count?: number): void;
  /** Drops faults no request has used yet, so they cannot leak into the next test. */
  clearFaults(): void;
  /** Resolves with the first `count` invocations once that many arrived; rejects after `timeoutMs`. */
  waitForInvocations(count: number, timeoutMs?: number): Promise<RecordedInvocation[]>;
  /** Resolves once every handler started so far (Event ones included) has settled. */
  waitForIdle(timeoutMs?: number): Promise<void>;
  functionArn(functionName: string): string;
  close(): Promise<void>;
}

/** Error codes and bodies as the service sends them (member casing follows the service model). */
interface ServiceError {
  status: number;
  type: string;
  body: Record<string, unknown>;
  headers?: Record<string, string>;
}

const INVOKE_PATH = /^\/2015-03-31\/functions\/([^/]+)\/invocations$/;
/** A full (`arn:aws:lambda:<region>:<account>:function:name`) or partial (`<account>:function:name`) ARN. */
const FUNCTION_ARN = /^(?:arn:aws[a-z-]*:lambda:[^:]+:)?\d{12}:function:([^:]+)(?::(.+))?$/;
const DEFAULT_WAIT_MS = 5000;

export async function startLambdaServer(options: LambdaServerOptions = {}): Promise<LambdaServer> {
  const region = options.region ?? 'us-east-1';
  const accountId = options.accountId ?? '123456789012';
  const handlers = new Map(Object.entries(options.functions ?? {}));
  const invocations: RecordedInvocation[] = [];
  const requests: RecordedRequest[] = [];
  const pendingFaults: LambdaFault[] = [];
  const running = new Set<Promise<void>>();
  const timers = new Set<NodeJS.Timeout>();
  const invocationWaiters = new Set<() => void>();

  const functionArn = (name: string): string => `arn:aws:lambda:${region}:${accountId}:function:${name}`;

  const notifyWaiters = (): void => {
    for (const wake of invocationWaiters) wake();
  };

  const delay = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const timer = setTimeout(() => {
        timers.delete(timer);
        resolve();
      }, ms);
      timers.add(timer);
    });

  const sendError = (response: ServerResponse, record: RecordedRequest, error: ServiceError): void => {
    const body = JSON.stringify(error.body);
    record.status = error.status;
    response.writeHead(error.status, {
      'Content-Type': 'application/json',
      'Content-Length': Buffer.byteLength(body),
      'x-amzn-RequestId': randomUUID(),
      'x-amzn-ErrorType': error.type,
      ...error.headers,
    });
    response.end(body);
  };

  const faultError = (fault: LambdaFault, functionName: string): ServiceError | undefined => {
    switch (fault.kind) {
      case 'service500':
        return {
          status: 500,
          type: 'ServiceException',
          body: { Type: 'Service', Message: 'The AWS Lambda service encountered an internal error.' },
        };
      case 'throttle429':
        return {
          status: 429,
          type: 'TooManyRequestsException',
          body: {
            Type: 'User',
            message: 'Rate Exceeded.',
            Reason: fault.reason ?? 'ReservedFunctionConcurrentInvocationLimitExceeded',
          },
          headers:
            fault.retryAfterSeconds === undefined ? {} : { 'Retry-After': String(fault.retryAfterSeconds) },
        };
      case 'notFound404':
        return notFound(functionName);
      case 'slow':
      case 'reset':
        return undefined;
    }
  };

  const notFound = (functionName: string): ServiceError => ({
    status: 404,
    type: 'ResourceNotFoundException',
    body: { Type: 'User', Message: `Function not found: ${functionArn(functionName)}` },
  });

  const invalidParameter = (message: string): ServiceError => ({
    status: 400,
    type: 'InvalidParameterValueException',
    body: { Type: 'User', message },
  });

  const runHandler = async (
    invocation: RecordedInvocation,
    handler: LambdaHandler | undefined,
    context: LambdaInvokeContext,
  ): Promise<InvocationOutcome> => {
    try {
      const result = handler ? await handler(invocation.payload, context) : null;
      invocation.outcome = { status: 'succeeded', result: result ?? null };
    } catch (error) {
      invocation.outcome = {
        status: 'failed',
        errorType: error instanceof Error ? error.name : 'Error',
        errorMessage: error instanceof Error ? error.message : String(error),
      };
    }
    return invocation.outcome;
  };

  /** Keeps track of a handler run so `waitForIdle` and `close` can wait for it. */
  const track = <T>(work: Promise<T>): Promise<T> => {
    const settled = work.then(
      () => undefined,
      () => undefined,
    );
    running.add(settled);
    void settled.then(() => running.delete(settled));
    return work;
  };

  const handle = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const url = new URL(request.url ?? '/', 'http://127.0.0.1');
    const record: RecordedRequest = {
      method: request.method ?? '',
      path: url.pathname,
      receivedAt: Date.now(),
    };
    requests.push(record);
    const body = await readBody(request);

    const match = INVOKE_PATH.exec(url.pathname);
    if (request.method !== 'POST' || !match?.[1]) {
      sendError(response, record, {
        status: 404,
        type: 'UnknownOperationException',
        body: {
          Type: 'User',
          message: `${request.method} ${url.pathname} is not an operation of this server.`,
        },
      });
      return;
    }
    const target = parseFunctionTarget(decodeURIComponent(match[1]), url.searchParams.get('Qualifier'));
    record.functionName = target.functionName;
    const invocationType = headerValue(request.headers['x-amz-invocation-type']) ?? 'RequestResponse';
    record.invocationType = invocationType;

    const fault = pendingFaults.shift();
    if (fault) {
      record.fault = fault.kind;
      if (fault.kind === 'reset') {
        request.socket.destroy();
        return;
      }
      if (fault.kind === 'slow') {
        await delay(fault.delayMs);
        if (response.destroyed || request.socket.destroyed) return;
      } else {
        const error = faultError(fault, target.functionName);
        if (error) sendError(response, record, error);
        return;
      }
    }

    if (!isInvocationType(invocationType)) {
      sendError(
        response,
        record,
        invalidParameter(
          `1 validation error detected: Value '${invocationType}' at 'invocationType' failed to satisfy ` +
            'constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]',
        ),
      );
      return;
    }
    const handler = handlers.get(target.functionName);
    if (options.strictFunctions && !handler) {
      sendError(response, record, notFound(target.functionName));
      return;
    }
    let payload: unknown;
    try {
      payload = body.length === 0 ? {} : JSON.parse(body.toString('utf8'));
    } catch (error) {
      sendError(response, record, {
        status: 400,
        type: 'InvalidRequestContentException',
        body: { Type: 'User', message: `Could not parse request body into json: ${String(error)}` },
      });
      return;
    }

    const requestId = randomUUID();
    if (invocationType === 'DryRun') {
      record.status = 204;
      response.writeHead(204, { 'x-amzn-RequestId': requestId });
      response.end();
      return;
    }

    const invocation: RecordedInvocation = {
      functionName: target.functionName,
      ...(target.qualifier ? { qualifier: target.qualifier } : {}),
      invocationType,
      payload,
      headers: request.headers,
      receivedAt: record.receivedAt,
      requestId,
    };
    invocations.push(invocation);
    notifyWaiters();
    const context: LambdaInvokeContext = {
      functionName: target.functionName,
      invocationType,
      awsRequestId: requestId,
      ...decodeClientContext(request.headers['x-amz-client-context']),
    };

    if (invocationType === 'Event') {
      // The service queues the event and answers at once; the handler runs afterwards.
      record.status = 202;
      response.writeHead(202, { 'x-amzn-RequestId': requestId, 'Content-Length': 0 });
      response.end();
      void track(runHandler(invocation, handler, context));
      return;
    }

    const outcome = await track(runHandler(invocation, handler, context));
    const resultBody =
      outcome.status === 'succeeded'
        ? JSON.stringify(outcome.result)
        : JSON.stringify({ errorType: outcome.errorType, errorMessage: outcome.errorMessage, trace: [] });
    if (response.destroyed) return;
    record.status = 200;
    response.writeHead(200, {
      'Content-Type': 'application/json',
      'Content-Length': Buffer.byteLength(resultBody),
      'x-amzn-RequestId': requestId,
      'X-Amz-Executed-Version': target.qualifier ?? '$LATEST',
      ...(outcome.status === 'failed' ? { 'X-Amz-Function-Error': 'Unhandled' } : {}),
    });
    response.end(resultBody);
  };

  const server: Server = createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      // A bug in the stand-in itself: answer 500 so the test sees it rather than hanging.
      if (!response.headersSent && !response.destroyed) {
        response.writeHead(500, { 'Content-Type': 'text/plain' });
        response.end(`lambda stand-in failed: ${String(error)}`);
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    endpoint: `http://127.0.0.1:${port}`,
    region,
    accountId,
    invocations,
    requests,
    functionArn,
    setHandler(functionName, handler) {
      if (handler) handlers.set(functionName, handler);
      else handlers.delete(functionName);
    },
    failNext(fault, count = 1) {
      for (let index = 0; index < count; index += 1) pendingFaults.push(fault);
    },
    clearFaults() {
      pendingFaults.length = 0;
    },
    waitForInvocations(count, timeoutMs = DEFAULT_WAIT_MS) {
      return new Promise((resolve, reject) => {
        const check = (): boolean => {
          if (invocations.length < count) return false;
          clearTimeout(timer);
          invocationWaiters.delete(wake);
          resolve(invocations.slice(0, count));
          return true;
        };
        const wake = (): void => void check();
        const timer = setTimeout(() => {
          invocationWaiters.delete(wake);
          reject(
            new Error(
              `Expected ${count} Lambda invocation(s) within ${timeoutMs} ms but got ${invocations.length} ` +
                `(${requests.length} request(s) in all). Check the client's endpoint and the invocation code.`,
            ),
          );
        }, timeoutMs);
        invocationWaiters.add(wake);
        check();
      });
    },
    async waitForIdle(timeoutMs = DEFAULT_WAIT_MS) {
      const deadline = Date.now() + timeoutMs;
      while (running.size > 0) {
        const remaining = deadline - Date.now();
        if (remaining <= 0) {
          throw new Error(`${running.size} Lambda handler(s) still running after ${timeoutMs} ms.`);
        }
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          Promise.all(running),
          new Promise((resolve) => (timer = setTimeout(resolve, remaining))),
        ]);
        clearTimeout(timer);
      }
    },
    async close() {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      pendingFaults.length = 0;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}

function isInvocationType(value: string): value is InvocationType {
  return value === 'Event' || value === 'RequestResponse' || value === 'DryRun';
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** The path holds a name, a full or partial ARN, optionally with `:qualifier`. */
function parseFunctionTarget(
  target: string,
  queryQualifier: string | null,
): { functionName: string; qualifier?: string } {
  const arn = FUNCTION_ARN.exec(target);
  const [name, pathQualifier] = arn ? [arn[1] ?? target, arn[2]] : target.split(':', 2);
  const qualifier = queryQualifier ?? pathQualifier;
  return { functionName: name ?? target, ...(qualifier ? { qualifier } : {}) };
}

function decodeClientContext(header: string | string[] | undefined): { clientContext?: unknown } {
  const encoded = headerValue(header);
  if (!encoded) return {};
  try {
    return { clientContext: JSON.parse(Buffer.from(encoded, 'base64').toString('utf8')) };
  } catch {
    return { clientContext: encoded };
  }
}

async function readBody(request: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
