/**
 * The local Lambda service: answers the Lambda Invoke API
 * (`POST /2015-03-31/functions/{FunctionName}/invocations`) the way the service does, status codes,
 * headers and error bodies included, so `@aws-sdk/client-lambda` talks to it unchanged (through
 * `endpoint` or AWS_ENDPOINT_URL_LAMBDA) and the code that invokes functions is the same locally
 * and in the cloud.
 *
 * It keeps the service's semantics too: an `Event` invocation is answered 202 at once and queued;
 * a bounded worker pool runs the queue in order; a function that throws is retried (twice by
 * default) and then handed to the on-failure destination. `RequestResponse` runs at once and answers
 * with the result, or with an `Unhandled` function error.
 */
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ConfigurationError, LambkinError, messageOf } from '../core/errors.js';
import { createJsonLogger } from '../core/logger.js';
import type { Logger } from '../core/logger.js';

export type InvocationType = 'Event' | 'RequestResponse' | 'DryRun';
/** The invocation types that run the function (a dry run only checks the request). */
export type RunInvocationType = Exclude<InvocationType, 'DryRun'>;

/** What a function gets besides its payload (the useful part of the Lambda runtime context). */
export interface LocalInvocationContext {
  functionName: string;
  /** The `x-amzn-RequestId` the caller got; the same for every attempt of one async invocation. */
  requestId: string;
  /** 1 for the first run, 2 and 3 for the retries of a failed async invocation. */
  attempt: number;
  invocationType: RunInvocationType;
  /** `X-Amz-Client-Context`, decoded from base64 JSON; like the service, synchronous invocations only. */
  clientContext?: unknown;
}

export type LocalFunction = (payload: unknown, context: LocalInvocationContext) => Promise<unknown>;

/** An invocation that passed validation: what the caller sent, as the service saw it. */
export interface AcceptedInvocation {
  /** Plain function name, also when the caller used an ARN. */
  readonly functionName: string;
  readonly qualifier?: string;
  readonly invocationType: RunInvocationType;
  /** The JSON payload, parsed (`{}` when the request had none). */
  readonly payload: unknown;
  readonly requestId: string;
  /** Request headers, lower-cased by Node. */
  readonly headers: IncomingHttpHeaders;
  /** Epoch ms when the request reached the service. */
  readonly receivedAt: number;
}

/** How an invocation ended: the result, or the error of its last attempt. */
export type InvocationOutcome =
  { status: 'succeeded'; result: unknown } | { status: 'failed'; errorType: string; errorMessage: string };

/** Observers of the invocations, for test recorders and the local stack's display. */
export interface InvocationHooks {
  /** Called when an invocation is accepted, before it is answered (202) or run. */
  accepted?(invocation: AcceptedInvocation): void;
  /** Called once an invocation ended for good (after its last attempt). */
  settled?(invocation: AcceptedInvocation, outcome: InvocationOutcome, attempts: number): void;
}

/** The record handed to the on-failure destination (Lambda's `RetriesExhausted` condition). */
export interface AsyncFailure {
  functionName: string;
  requestId: string;
  payload: unknown;
  attempts: number;
  error: { errorType: string; errorMessage: string };
}

export interface LocalLambdaOptions {
  /** Async (Event) invocations running at once, across functions; default 2. */
  concurrency?: number;
  /**
   * The wait before each retry of a failed async invocation; its length is the number of retries
   * (Lambda's MaximumRetryAttempts, 0 to 2). Default [1000, 2000].
   */
  retryDelaysMs?: number[];
  /** The on-failure destination: called once an async invocation failed every attempt. */
  onFailure?: (record: AsyncFailure) => Promise<void>;
  /** Default: JSON lines on stdout, like the rest of Lambkin. */
  logger?: Logger;
  /** For function ARNs in error messages; default us-east-1 and 123456789012. */
  region?: string;
  accountId?: string;
  hooks?: InvocationHooks;
  /**
   * Checks each invoke request (its SigV4 signature, in the local stack) before anything else is
   * read of it; a refusal is answered 403. Unset: every request is served, as a bare test server.
   */
  authenticate?: (
    request: IncomingMessage,
    body: Buffer,
  ) => Promise<{ ok: true } | { ok: false; reason: string }>;
}

/** The service's error answers: status, `x-amzn-ErrorType`, and the body (member casing as the service sends it). */
export interface LambdaApiError {
  status: number;
  type: string;
  body: Record<string, unknown>;
  headers?: Record<string, string>;
}

/** What an invoke request's path and headers name, before anything is validated. */
export interface InvokeTarget {
  method: string;
  /** Plain function name, also when the path held a full or partial ARN. */
  functionName: string;
  qualifier?: string;
  /** `X-Amz-Invocation-Type` as sent (default RequestResponse); not yet checked. */
  invocationType: string;
}

/** `idle()` ran out of time: something still runs or waits. */
export class LocalLambdaBusyError extends LambkinError {
  constructor(timeoutMs: number, detail: string) {
    super(
      'LOCAL_LAMBDA_BUSY',
      `The local Lambda service was still busy after ${timeoutMs} ms: ${detail}. A function may be ` +
        'stuck: check its logs, or wait longer.',
    );
  }
}

/** The service could not start listening (or was asked to listen twice, or after close). */
export class LocalLambdaListenError extends LambkinError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('LOCAL_LAMBDA_LISTEN', message, options);
  }
}

export const DEFAULT_CONCURRENCY = 2;
export const DEFAULT_RETRY_DELAYS_MS: readonly number[] = [1000, 2000];
/** Lambda's MaximumRetryAttempts allows 0 to 2 retries of an async invocation. */
const MAX_RETRIES = 2;
const DEFAULT_IDLE_TIMEOUT_MS = 30_000;
const DEFAULT_CLOSE_TIMEOUT_MS = 10_000;
/** The service's payload limits: 6 MB synchronous, 1 MB asynchronous (requests and sync responses). */
export const SYNC_PAYLOAD_LIMIT_BYTES = 6 * 1024 * 1024;
export const ASYNC_PAYLOAD_LIMIT_BYTES = 1024 * 1024;

const INVOKE_PATH = /^\/2015-03-31\/functions\/([^/]+)\/invocations$/;
/** A full (`arn:aws:lambda:<region>:<account>:function:name`) or partial (`<account>:function:name`) ARN. */
const FUNCTION_ARN = /^(?:arn:aws[a-z-]*:lambda:[^:]+:)?\d{12}:function:([^:]+)(?::(.+))?$/;
/** What CreateFunction accepts as a name. */
const FUNCTION_NAME = /^[A-Za-z0-9_-]{1,64}$/;
/** What Invoke accepts in a name (it lets dots through; no function can have them). */
const INVOKE_FUNCTION_NAME = /^[A-Za-z0-9._-]{1,64}$/;

export function isFunctionName(name: string): boolean {
  return FUNCTION_NAME.test(name);
}

/** The Invoke API's errors, shaped as the service sends them. */
export const lambdaApiErrors = {
  resourceNotFound: (functionArn: string): LambdaApiError => ({
    status: 404,
    type: 'ResourceNotFoundException',
    body: { Type: 'User', Message: `Function not found: ${functionArn}` },
  }),
  invalidParameterValue: (message: string): LambdaApiError => ({
    status: 400,
    type: 'InvalidParameterValueException',
    body: { Type: 'User', message },
  }),
  invalidRequestContent: (message: string): LambdaApiError => ({
    status: 400,
    type: 'InvalidRequestContentException',
    body: { Type: 'User', message },
  }),
  requestTooLarge: (limitBytes: number): LambdaApiError => ({
    status: 413,
    type: 'RequestTooLargeException',
    body: {
      Type: 'User',
      message: `Request must be smaller than ${limitBytes} bytes for the Invoke operation`,
    },
  }),
  invalidSignature: (reason: string): LambdaApiError => ({
    status: 403,
    type: 'InvalidSignatureException',
    body: { Type: 'User', message: `Refused by the Lambkin local stack: ${reason}.` },
  }),
  service: (message = 'The AWS Lambda service encountered an internal error.'): LambdaApiError => ({
    status: 500,
    type: 'ServiceException',
    body: { Type: 'Service', Message: message },
  }),
  tooManyRequests: (reason: string, retryAfterSeconds?: number): LambdaApiError => ({
    status: 429,
    type: 'TooManyRequestsException',
    body: { Type: 'User', message: 'Rate Exceeded.', Reason: reason },
    headers: retryAfterSeconds === undefined ? {} : { 'Retry-After': String(retryAfterSeconds) },
  }),
  unknownOperation: (method: string, path: string): LambdaApiError => ({
    status: 404,
    type: 'UnknownOperationException',
    body: { Type: 'User', message: `${method} ${path} is not an operation of this server.` },
  }),
};

export function writeLambdaError(response: ServerResponse, error: LambdaApiError): void {
  if (response.headersSent || response.destroyed) return;
  const body = JSON.stringify(error.body);
  response.writeHead(error.status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(body),
    'x-amzn-RequestId': randomUUID(),
    'x-amzn-ErrorType': error.type,
    ...error.headers,
  });
  response.end(body);
}

/** Reads the invoke request's target from its path and headers; undefined when it is not an invoke path. */
export function readInvokeTarget(request: IncomingMessage): InvokeTarget | undefined {
  const url = new URL(request.url ?? '/', 'http://localhost');
  const encoded = INVOKE_PATH.exec(url.pathname)?.[1];
  if (!encoded) return undefined;
  let target = encoded;
  try {
    target = decodeURIComponent(encoded);
  } catch {
    // A malformed escape: keep the raw text, validation rejects it.
  }
  const arn = FUNCTION_ARN.exec(target);
  const [functionName = target, pathQualifier] = arn ? [arn[1], arn[2]] : target.split(':', 2);
  const qualifier = url.searchParams.get('Qualifier') ?? pathQualifier;
  return {
    method: request.method ?? '',
    functionName,
    ...(qualifier ? { qualifier } : {}),
    invocationType: headerValue(request.headers['x-amz-invocation-type']) ?? 'RequestResponse',
  };
}

interface AsyncJob {
  readonly invocation: AcceptedInvocation;
  readonly fn: LocalFunction;
  /** The body as received: each attempt parses its own copy, so one attempt cannot change the next one's. */
  readonly payloadText: string;
  attempts: number;
}

type FunctionResult =
  | { status: 'succeeded'; result: unknown }
  | { status: 'failed'; errorType: string; errorMessage: string; stackTrace?: string[] };
type FailedResult = Extract<FunctionResult, { status: 'failed' }>;

const silentHooks: InvocationHooks = {};

export class LocalLambdaService {
  readonly region: string;
  readonly accountId: string;
  private readonly concurrency: number;
  private readonly retryDelaysMs: readonly number[];
  private readonly logger: Logger;
  private readonly hooks: InvocationHooks;
  private readonly onFailure: ((record: AsyncFailure) => Promise<void>) | undefined;
  private readonly authenticate: LocalLambdaOptions['authenticate'];
  private readonly functions = new Map<string, LocalFunction>();

  private readonly queue: AsyncJob[] = [];
  private readonly runningAsync = new Set<AsyncJob>();
  private readonly runningSync = new Set<AcceptedInvocation>();
  private readonly retryTimers = new Map<AsyncJob, NodeJS.Timeout>();
  /** On-failure deliveries in flight: an invocation is not over until its destination has it. */
  private deliveries = 0;
  /** Called after every change of the above, to wake `idle()` and `close()`. */
  private readonly changeListeners = new Set<() => void>();

  private server: Server | undefined;
  private closing = false;
  private closed: Promise<void> | undefined;

  constructor(options: LocalLambdaOptions = {}) {
    const problems: string[] = [];
    const concurrency = options.concurrency ?? DEFAULT_CONCURRENCY;
    if (!Number.isSafeInteger(concurrency) || concurrency < 1) {
      problems.push(`concurrency is ${concurrency}; give a whole number of 1 or more`);
    }
    const retryDelaysMs = options.retryDelaysMs ?? DEFAULT_RETRY_DELAYS_MS;
    if (retryDelaysMs.length > MAX_RETRIES) {
      problems.push(
        `retryDelaysMs has ${retryDelaysMs.length} delays; Lambda retries an async invocation at most ` +
          `${MAX_RETRIES} times, so give at most ${MAX_RETRIES}`,
      );
    }
    if (retryDelaysMs.some((delay) => !Number.isFinite(delay) || delay < 0)) {
      problems.push(`retryDelaysMs is ${JSON.stringify(retryDelaysMs)}; give milliseconds of 0 or more`);
    }
    if (problems.length > 0) {
      throw new ConfigurationError(problems.map((problem) => `local Lambda: ${problem}`));
    }
    this.concurrency = concurrency;
    this.retryDelaysMs = [...retryDelaysMs];
    this.region = options.region ?? 'us-east-1';
    this.accountId = options.accountId ?? '123456789012';
    this.logger = options.logger ?? createJsonLogger(undefined, { component: 'local-lambda' });
    this.hooks = options.hooks ?? silentHooks;
    this.onFailure = options.onFailure;
    this.authenticate = options.authenticate;
  }

  /** Makes `name` invocable; replaces an earlier registration (invocations already queued keep theirs). */
  register(name: string, fn: LocalFunction): void {
    if (!isFunctionName(name)) {
      throw new ConfigurationError([
        `local Lambda: "${name}" is not a Lambda function name; use 1 to 64 letters, digits, hyphens or ` +
          'underscores',
      ]);
    }
    this.functions.set(name, fn);
  }

  /** Removes `name`; invocations of it get 404 from now on. Returns whether it was registered. */
  unregister(name: string): boolean {
    return this.functions.delete(name);
  }

  has(name: string): boolean {
    return this.functions.has(name);
  }

  functionArn(name: string): string {
    return `arn:aws:lambda:${this.region}:${this.accountId}:function:${name}`;
  }

  /**
   * Node http handler for the Invoke API (mount it in any server); returns false when the path is
   * not an invoke path so the caller can route elsewhere. Bound, so it can be passed as it is.
   */
  readonly handle = (request: IncomingMessage, response: ServerResponse): boolean => {
    const target = readInvokeTarget(request);
    if (!target) return false;
    this.serve(request, response, target).catch((error: unknown) => {
      // A bug here, not the function's failure: answer as the service would, and say so in the log.
      this.logger.error('local Lambda failed to answer an invoke request', {
        functionName: target.functionName,
        error,
      });
      if (response.headersSent) response.destroy();
      else writeLambdaError(response, lambdaApiErrors.service());
    });
    return true;
  };

  /** Runs the service on its own port (0: any free one). */
  async listen(port = 0, host = '127.0.0.1'): Promise<{ endpoint: string }> {
    if (this.closing)
      throw new LocalLambdaListenError('The local Lambda service is closed; create a new one.');
    if (this.server) {
      throw new LocalLambdaListenError(
        'The local Lambda service is already listening; create another service for a second port.',
      );
    }
    const server = createServer((request, response) => {
      if (!this.handle(request, response)) {
        const path = new URL(request.url ?? '/', 'http://localhost').pathname;
        writeLambdaError(response, lambdaApiErrors.unknownOperation(request.method ?? '', path));
      }
    });
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      throw new LocalLambdaListenError(
        `The local Lambda service could not listen on ${host}:${port} (${String(code ?? error)}). ` +
          (code === 'EADDRINUSE' ? 'Another program uses that port: choose another one, or 0 for any.' : ''),
        { cause: error },
      );
    }
    this.server = server;
    const address = server.address() as AddressInfo;
    const hostPart = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    return { endpoint: `http://${hostPart}:${address.port}` };
  }

  /** Resolves once the async queue is empty and nothing runs, waits to retry or is being delivered. */
  async idle(timeoutMs = DEFAULT_IDLE_TIMEOUT_MS): Promise<void> {
    if (!(await this.waitUntil(() => !this.busy(), timeoutMs))) {
      throw new LocalLambdaBusyError(timeoutMs, this.describeWork());
    }
  }

  /**
   * Stops accepting invocations, drops the queued ones (with a warning), waits up to `timeoutMs` for
   * running ones, then closes the server. Idempotent.
   */
  close(timeoutMs = DEFAULT_CLOSE_TIMEOUT_MS): Promise<void> {
    this.closed ??= this.shutDown(timeoutMs);
    return this.closed;
  }

  private async shutDown(timeoutMs: number): Promise<void> {
    this.closing = true;
    const server = this.server;
    const serverClosed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : undefined;
    server?.closeIdleConnections();

    const dropped = [...this.queue.splice(0), ...this.retryTimers.keys()];
    for (const timer of this.retryTimers.values()) clearTimeout(timer);
    this.retryTimers.clear();
    if (dropped.length > 0) {
      this.logger.warn('local Lambda closed with async invocations not run; they are dropped', {
        dropped: dropped.map((job) => ({
          functionName: job.invocation.functionName,
          requestId: job.invocation.requestId,
        })),
      });
    }
    this.notifyChange();

    const finished = await this.waitUntil(() => !this.running(), timeoutMs);
    if (!finished) {
      this.logger.warn('local Lambda closed while invocations were still running; their results are lost', {
        timeoutMs,
        running: this.describeWork(),
      });
    }
    server?.closeAllConnections();
    await serverClosed;
  }

  private async serve(
    request: IncomingMessage,
    response: ServerResponse,
    target: InvokeTarget,
  ): Promise<void> {
    const receivedAt = Date.now();
    // The signature covers the body, so it is read (within the largest limit) before anything is said.
    let authenticatedBody: Buffer | undefined;
    if (this.authenticate) {
      const body = await readBody(request, SYNC_PAYLOAD_LIMIT_BYTES);
      if (body === undefined) return; // the caller went away
      if (body === 'too large') {
        writeLambdaError(response, lambdaApiErrors.requestTooLarge(SYNC_PAYLOAD_LIMIT_BYTES));
        return;
      }
      const verdict = await this.authenticate(request, body);
      if (!verdict.ok) {
        writeLambdaError(response, lambdaApiErrors.invalidSignature(verdict.reason));
        return;
      }
      authenticatedBody = body;
    }
    if (target.method !== 'POST') {
      const path = new URL(request.url ?? '/', 'http://localhost').pathname;
      writeLambdaError(response, lambdaApiErrors.unknownOperation(target.method, path));
      return;
    }
    if (this.closing) {
      writeLambdaError(response, lambdaApiErrors.service('The local Lambda service is shutting down.'));
      return;
    }
    const invocationType = target.invocationType;
    if (!isInvocationType(invocationType)) {
      writeLambdaError(
        response,
        lambdaApiErrors.invalidParameterValue(
          `1 validation error detected: Value '${invocationType}' at 'invocationType' failed to satisfy ` +
            'constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]',
        ),
      );
      return;
    }
    if (!INVOKE_FUNCTION_NAME.test(target.functionName)) {
      writeLambdaError(
        response,
        lambdaApiErrors.invalidParameterValue(
          `1 validation error detected: Value '${target.functionName}' at 'functionName' failed to satisfy ` +
            'constraint: Member must satisfy regular expression pattern: ' +
            '(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\\d{1}:)?(\\d{12}:)?(function:)?' +
            '([a-zA-Z0-9-_\\.]+)(:(\\$LATEST|[a-zA-Z0-9-_]+))?',
        ),
      );
      return;
    }
    const fn = this.functions.get(target.functionName);
    if (!fn) {
      writeLambdaError(response, lambdaApiErrors.resourceNotFound(this.functionArn(target.functionName)));
      return;
    }
    const limit = invocationType === 'Event' ? ASYNC_PAYLOAD_LIMIT_BYTES : SYNC_PAYLOAD_LIMIT_BYTES;
    const body =
      authenticatedBody === undefined
        ? await readBody(request, limit)
        : authenticatedBody.length > limit
          ? 'too large'
          : authenticatedBody;
    if (body === undefined) return; // the caller went away
    if (body === 'too large') {
      writeLambdaError(response, lambdaApiErrors.requestTooLarge(limit));
      return;
    }
    const payloadText = body.length === 0 ? '{}' : body.toString('utf8');
    let payload: unknown;
    try {
      payload = JSON.parse(payloadText);
    } catch (error) {
      writeLambdaError(
        response,
        lambdaApiErrors.invalidRequestContent(`Could not parse request body into json: ${messageOf(error)}`),
      );
      return;
    }

    const requestId = randomUUID();
    if (invocationType === 'DryRun') {
      response.writeHead(204, { 'x-amzn-RequestId': requestId });
      response.end();
      return;
    }
    const invocation: AcceptedInvocation = {
      functionName: target.functionName,
      ...(target.qualifier ? { qualifier: target.qualifier } : {}),
      invocationType,
      payload,
      requestId,
      headers: request.headers,
      receivedAt,
    };
    this.callHook('accepted', () => this.hooks.accepted?.(invocation));

    if (invocationType === 'Event') {
      // The service queues the event and answers at once; the function runs afterwards.
      response.writeHead(202, { 'x-amzn-RequestId': requestId, 'Content-Length': 0 });
      response.end();
      this.queue.push({ invocation, fn, payloadText, attempts: 0 });
      this.pump();
      return;
    }
    await this.runSync(invocation, fn, payloadText, request, response);
  }

  private async runSync(
    invocation: AcceptedInvocation,
    fn: LocalFunction,
    payloadText: string,
    request: IncomingMessage,
    response: ServerResponse,
  ): Promise<void> {
    this.runningSync.add(invocation);
    let result: FunctionResult;
    try {
      result = await runFunction(fn, payloadText, {
        functionName: invocation.functionName,
        requestId: invocation.requestId,
        attempt: 1,
        invocationType: 'RequestResponse',
        ...decodeClientContext(request.headers['x-amz-client-context']),
      });
    } finally {
      this.runningSync.delete(invocation);
      this.notifyChange();
    }
    let body = '';
    if (result.status === 'succeeded') {
      const serialized = serializeResult(result.result);
      if (typeof serialized !== 'string') result = serialized;
      else if (Buffer.byteLength(serialized) > SYNC_PAYLOAD_LIMIT_BYTES) result = responseTooLarge();
      else body = serialized;
    }
    if (result.status === 'failed') {
      const { errorType, errorMessage, stackTrace } = result;
      body = JSON.stringify({ errorType, errorMessage, ...(stackTrace ? { stackTrace } : {}) });
    }
    const outcome = outcomeOf(result);
    this.callHook('settled', () => this.hooks.settled?.(invocation, outcome, 1));
    if (response.destroyed) return; // the caller gave up; as in the service, the function still ran
    response.writeHead(200, {
      'Content-Type': 'application/json',
      'Content-Length': Buffer.byteLength(body),
      'x-amzn-RequestId': invocation.requestId,
      'X-Amz-Executed-Version': invocation.qualifier ?? '$LATEST',
      ...(result.status === 'failed' ? { 'X-Amz-Function-Error': 'Unhandled' } : {}),
    });
    response.end(body);
  }

  /** Starts queued async invocations while workers are free. */
  private pump(): void {
    while (!this.closing && this.runningAsync.size < this.concurrency) {
      const job = this.queue.shift();
      if (!job) break;
      this.runningAsync.add(job);
      void this.runAttempt(job);
    }
    this.notifyChange();
  }

  private async runAttempt(job: AsyncJob): Promise<void> {
    job.attempts += 1;
    const { invocation } = job;
    const result = await runFunction(job.fn, job.payloadText, {
      functionName: invocation.functionName,
      requestId: invocation.requestId,
      attempt: job.attempts,
      invocationType: 'Event',
    });
    this.runningAsync.delete(job);
    if (result.status === 'succeeded') {
      this.callHook('settled', () => this.hooks.settled?.(invocation, outcomeOf(result), job.attempts));
    } else {
      this.afterFailedAttempt(job, result);
    }
    this.pump();
  }

  private afterFailedAttempt(job: AsyncJob, result: FailedResult): void {
    const { invocation } = job;
    const fields = {
      functionName: invocation.functionName,
      requestId: invocation.requestId,
      attempt: job.attempts,
      errorType: result.errorType,
      errorMessage: result.errorMessage,
    };
    const retryDelayMs = this.retryDelaysMs[job.attempts - 1];
    if (retryDelayMs !== undefined && this.closing) {
      this.logger.warn('async invocation failed while the local Lambda service closed; not retried', fields);
      return;
    }
    if (retryDelayMs !== undefined) {
      this.logger.warn('async invocation failed; retrying', { ...fields, retryInMs: retryDelayMs });
      const timer = setTimeout(() => {
        this.retryTimers.delete(job);
        this.queue.push(job);
        this.pump();
      }, retryDelayMs);
      this.retryTimers.set(job, timer);
      return;
    }
    this.logger.error(
      'async invocation failed every attempt; sending it to the on-failure destination',
      fields,
    );
    this.callHook('settled', () => this.hooks.settled?.(invocation, outcomeOf(result), job.attempts));
    if (!this.onFailure) return;
    const record: AsyncFailure = {
      functionName: invocation.functionName,
      requestId: invocation.requestId,
      payload: invocation.payload,
      attempts: job.attempts,
      error: { errorType: result.errorType, errorMessage: result.errorMessage },
    };
    this.deliveries += 1;
    const deliver = async (): Promise<void> => this.onFailure?.(record);
    deliver()
      .catch((error: unknown) =>
        this.logger.error('the on-failure destination failed; the failure record is lost', {
          functionName: invocation.functionName,
          requestId: invocation.requestId,
          error,
        }),
      )
      .finally(() => {
        this.deliveries -= 1;
        this.notifyChange();
      });
  }

  private callHook(name: keyof InvocationHooks, call: () => void): void {
    try {
      call();
    } catch (error) {
      this.logger.error(`local Lambda "${name}" hook failed`, { error });
    }
  }

  private running(): boolean {
    return this.runningAsync.size + this.runningSync.size + this.deliveries > 0;
  }

  private busy(): boolean {
    return this.running() || this.queue.length > 0 || this.retryTimers.size > 0;
  }

  private describeWork(): string {
    const names = (invocations: Iterable<AcceptedInvocation>): string => {
      const list = [...invocations].map((invocation) => invocation.functionName);
      return list.length > 0 ? ` (${list.join(', ')})` : '';
    };
    const asyncRunning = [...this.runningAsync].map((job) => job.invocation);
    return (
      `${asyncRunning.length} async running${names(asyncRunning)}, ` +
      `${this.runningSync.size} sync running${names(this.runningSync)}, ` +
      `${this.queue.length} queued, ${this.retryTimers.size} waiting to retry, ` +
      `${this.deliveries} on-failure deliveries`
    );
  }

  private notifyChange(): void {
    for (const listener of [...this.changeListeners]) listener();
  }

  /** Resolves true once `condition` holds (checked after every change), false after `timeoutMs`. */
  private waitUntil(condition: () => boolean, timeoutMs: number): Promise<boolean> {
    if (condition()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const finish = (met: boolean): void => {
        clearTimeout(timer);
        this.changeListeners.delete(check);
        resolve(met);
      };
      const check = (): void => {
        if (condition()) finish(true);
      };
      const timer = setTimeout(() => finish(false), timeoutMs);
      this.changeListeners.add(check);
    });
  }
}

function isInvocationType(value: string): value is InvocationType {
  return value === 'Event' || value === 'RequestResponse' || value === 'DryRun';
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

async function runFunction(
  fn: LocalFunction,
  payloadText: string,
  context: LocalInvocationContext,
): Promise<FunctionResult> {
  try {
    const result = await fn(JSON.parse(payloadText), context);
    return { status: 'succeeded', result: result ?? null };
  } catch (error) {
    return failureOf(error);
  }
}

function failureOf(error: unknown): FailedResult {
  if (!(error instanceof Error)) return { status: 'failed', errorType: 'Error', errorMessage: String(error) };
  const frames = error.stack
    ?.split('\n')
    .slice(1)
    .map((line) => line.trim())
    .filter((line) => line.length > 0);
  return {
    status: 'failed',
    errorType: error.name,
    errorMessage: error.message,
    ...(frames && frames.length > 0 ? { stackTrace: frames } : {}),
  };
}

/** The result as the response body; a result JSON cannot express is the function's error, as in the runtime. */
function serializeResult(result: unknown): string | FailedResult {
  try {
    return JSON.stringify(result) ?? 'null';
  } catch (error) {
    return failureOf(error);
  }
}

function responseTooLarge(): FailedResult {
  return {
    status: 'failed',
    errorType: 'Function.ResponseSizeTooLarge',
    errorMessage: `Response payload size exceeded maximum allowed payload size (${SYNC_PAYLOAD_LIMIT_BYTES} bytes).`,
  };
}

function outcomeOf(result: FunctionResult): InvocationOutcome {
  return result.status === 'succeeded'
    ? { status: 'succeeded', result: result.result }
    : { status: 'failed', errorType: result.errorType, errorMessage: result.errorMessage };
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

/**
 * Reads the body, keeping at most `limitBytes` (the rest is drained so the connection stays usable).
 * Undefined when the caller went away before the body was complete. Shared by the stack's other
 * SigV4 endpoints (src/local/codebuild-service.ts), whose signatures cover the body too.
 */
export async function readBody(
  request: IncomingMessage,
  limitBytes: number,
): Promise<Buffer | 'too large' | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of request) {
      size += (chunk as Buffer).length;
      if (size <= limitBytes) chunks.push(chunk as Buffer);
    }
  } catch {
    return undefined;
  }
  if (request.readableAborted) return undefined;
  return size > limitBytes ? 'too large' : Buffer.concat(chunks);
}
