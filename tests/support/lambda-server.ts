/**
 * A loopback stand-in for the Lambda Invoke API for tests: the local Lambda service
 * (src/local/lambda-service.ts) answers, so status codes, headers, error bodies and the async
 * semantics are the real service's; this layer only records what it saw and injects faults
 * (throttles, service errors, resets, slow answers) in front of it.
 */
import { createServer } from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  LocalLambdaService,
  isFunctionName,
  lambdaApiErrors,
  readInvokeTarget,
  writeLambdaError,
} from '../../src/local/lambda-service.js';
import type {
  AcceptedInvocation,
  AsyncFailure,
  InvocationOutcome,
  InvokeTarget,
  LambdaApiError,
  LocalFunction,
  RunInvocationType,
} from '../../src/local/lambda-service.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import type { MemoryLogger } from '../../src/core/logger.js';

export type { AsyncFailure, InvocationOutcome, InvocationType } from '../../src/local/lambda-service.js';

/** What a handler gets besides the payload (a small part of the Lambda runtime context). */
export interface LambdaInvokeContext {
  functionName: string;
  invocationType: RunInvocationType;
  awsRequestId: string;
  /** 1, or 2 and 3 for the retries of a failed Event invocation. */
  attempt: number;
  /** `X-Amz-Client-Context`, decoded from base64 JSON when present (RequestResponse only). */
  clientContext?: unknown;
}

export type LambdaHandler = (payload: unknown, context: LambdaInvokeContext) => Promise<unknown>;

/** One invocation the function accepted (faulted requests and dry runs are in `requests` only). */
export interface RecordedInvocation {
  /** Plain function name, also when the caller used an ARN. */
  functionName: string;
  qualifier?: string;
  invocationType: RunInvocationType;
  /** The JSON payload, parsed (`{}` when the request had none). */
  payload: unknown;
  /** Request headers, lower-cased by Node. */
  headers: IncomingHttpHeaders;
  /** Epoch ms when the request reached the service. */
  receivedAt: number;
  requestId: string;
  /** How it ended, once it has (Event handlers run after the 202, retries included). */
  outcome?: InvocationOutcome;
  /** Runs it took (up to 3 for a failing Event invocation), once it ended. */
  attempts?: number;
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
  /** Event invocations running at once (the service's default: 2). */
  concurrency?: number;
  /** Waits before the retries of a failed Event invocation; short by default so tests stay quick. */
  retryDelaysMs?: number[];
  /** Called after the failure is recorded in `failures`. */
  onFailure?: (record: AsyncFailure) => Promise<void>;
}

export interface LambdaServer {
  /** `http://127.0.0.1:<port>`, for the client's `endpoint`. */
  readonly endpoint: string;
  readonly region: string;
  readonly accountId: string;
  /** Accepted invocations, in arrival order. */
  readonly invocations: readonly RecordedInvocation[];
  readonly requests: readonly RecordedRequest[];
  /** What reached the on-failure destination: Event invocations that failed every attempt. */
  readonly failures: readonly AsyncFailure[];
  /** What the service logged (retries, failures). */
  readonly logger: MemoryLogger;
  setHandler(functionName: string, handler: LambdaHandler | undefined): void;
  /** Applies `fault` to the next `count` invoke requests (queued after faults already pending). */
  failNext(fault: LambdaFault, count?: number): void;
  /** Drops faults no request has used yet, so they cannot leak into the next test. */
  clearFaults(): void;
  /** Resolves with the first `count` invocations once that many arrived; rejects after `timeoutMs`. */
  waitForInvocations(count: number, timeoutMs?: number): Promise<RecordedInvocation[]>;
  /** Resolves once every invocation so far (Event ones and their retries included) has ended. */
  waitForIdle(timeoutMs?: number): Promise<void>;
  functionArn(functionName: string): string;
  close(): Promise<void>;
}

const DEFAULT_WAIT_MS = 5000;
const TEST_RETRY_DELAYS_MS = [50, 100];

export async function startLambdaServer(options: LambdaServerOptions = {}): Promise<LambdaServer> {
  const handlers = new Map(Object.entries(options.functions ?? {}));
  const invocations: RecordedInvocation[] = [];
  const requests: RecordedRequest[] = [];
  const failures: AsyncFailure[] = [];
  const pendingFaults: LambdaFault[] = [];
  const faultTimers = new Set<NodeJS.Timeout>();
  const invocationWaiters = new Set<() => void>();
  const recorded = new WeakMap<AcceptedInvocation, RecordedInvocation>();
  const logger = createMemoryLogger();

  const service = new LocalLambdaService({
    ...(options.region ? { region: options.region } : {}),
    ...(options.accountId ? { accountId: options.accountId } : {}),
    ...(options.concurrency ? { concurrency: options.concurrency } : {}),
    retryDelaysMs: options.retryDelaysMs ?? TEST_RETRY_DELAYS_MS,
    logger,
    onFailure: async (failure) => {
      failures.push(failure);
      await options.onFailure?.(failure);
    },
    hooks: {
      accepted(invocation) {
        const record: RecordedInvocation = { ...invocation };
        recorded.set(invocation, record);
        invocations.push(record);
        for (const wake of invocationWaiters) wake();
      },
      settled(invocation, outcome, attempts) {
        const record = recorded.get(invocation);
        if (record) Object.assign(record, { outcome, attempts });
      },
    },
  });

  /** The service's function for `name`: looks the handler up at call time, so setHandler applies at once. */
  const dispatcher =
    (functionName: string): LocalFunction =>
    async (payload, context) => {
      const handler = handlers.get(functionName);
      if (!handler) return null;
      return handler(payload, {
        functionName,
        invocationType: context.invocationType,
        awsRequestId: context.requestId,
        attempt: context.attempt,
        ...(context.clientContext === undefined ? {} : { clientContext: context.clientContext }),
      });
    };
  for (const name of handlers.keys()) service.register(name, dispatcher(name));

  const delay = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const timer = setTimeout(() => {
        faultTimers.delete(timer);
        resolve();
      }, ms);
      faultTimers.add(timer);
    });

  const faultError = (fault: LambdaFault, functionName: string): LambdaApiError | undefined => {
    switch (fault.kind) {
      case 'service500':
        return lambdaApiErrors.service();
      case 'throttle429':
        return lambdaApiErrors.tooManyRequests(
          fault.reason ?? 'ReservedFunctionConcurrentInvocationLimitExceeded',
          fault.retryAfterSeconds,
        );
      case 'notFound404':
        return lambdaApiErrors.resourceNotFound(service.functionArn(functionName));
      case 'slow':
      case 'reset':
        return undefined;
    }
  };

  const serveInvoke = async (
    request: IncomingMessage,
    response: ServerResponse,
    record: RecordedRequest,
    target: InvokeTarget,
  ): Promise<void> => {
    const fault = target.method === 'POST' ? pendingFaults.shift() : undefined;
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
        if (error) writeLambdaError(response, error);
        return;
      }
    }
    // Outside strict mode every function exists, as if deployed, and returns null without a handler.
    const { functionName } = target;
    if (!options.strictFunctions && !service.has(functionName) && isFunctionName(functionName)) {
      service.register(functionName, dispatcher(functionName));
    }
    service.handle(request, response);
  };

  const server: Server = createServer((request, response) => {
    const path = new URL(request.url ?? '/', 'http://127.0.0.1').pathname;
    const record: RecordedRequest = { method: request.method ?? '', path, receivedAt: Date.now() };
    requests.push(record);
    response.once('finish', () => (record.status = response.statusCode));
    const target = readInvokeTarget(request);
    if (!target) {
      writeLambdaError(response, lambdaApiErrors.unknownOperation(record.method, path));
      return;
    }
    record.functionName = target.functionName;
    record.invocationType = target.invocationType;
    serveInvoke(request, response, record, target).catch((error: unknown) => {
      // A bug in the stand-in itself: answer 500 so the test sees it rather than hanging.
      writeLambdaError(response, lambdaApiErrors.service(`lambda stand-in failed: ${String(error)}`));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    endpoint: `http://127.0.0.1:${port}`,
    region: service.region,
    accountId: service.accountId,
    invocations,
    requests,
    failures,
    logger,
    functionArn: (functionName) => service.functionArn(functionName),
    setHandler(functionName, handler) {
      if (handler) {
        handlers.set(functionName, handler);
        if (!service.has(functionName)) service.register(functionName, dispatcher(functionName));
      } else {
        handlers.delete(functionName);
        if (options.strictFunctions) service.unregister(functionName);
      }
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
    waitForIdle: (timeoutMs = DEFAULT_WAIT_MS) => service.idle(timeoutMs),
    async close() {
      for (const timer of faultTimers) clearTimeout(timer);
      faultTimers.clear();
      pendingFaults.length = 0;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      await service.close(DEFAULT_WAIT_MS);
      server.closeAllConnections();
      await closed;
    },
  };
}
