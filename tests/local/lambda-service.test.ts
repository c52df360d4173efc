import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  InvalidParameterValueException,
  InvalidRequestContentException,
  InvokeCommand,
  RequestTooLargeException,
  ResourceNotFoundException,
} from '@aws-sdk/client-lambda';
import type { InvocationType as SdkInvocationType, LambdaClient } from '@aws-sdk/client-lambda';
import { LambdaControllerInvoker } from '../../src/aws/controller-invoker.js';
import { createLambdaClient } from '../../src/aws/clients.js';
import { ConfigurationError } from '../../src/core/errors.js';
import {
  ASYNC_PAYLOAD_LIMIT_BYTES,
  LocalLambdaBusyError,
  LocalLambdaListenError,
  LocalLambdaService,
} from '../../src/local/lambda-service.js';
import type {
  AsyncFailure,
  LocalInvocationContext,
  LocalLambdaOptions,
} from '../../src/local/lambda-service.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import type { MemoryLogger } from '../../src/core/logger.js';
import { parseBuilderInvocation } from '../../src/core/protocol.js';

const encode = (value: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(value));
const decode = (payload: Uint8Array | undefined): unknown =>
  payload === undefined || payload.length === 0 ? undefined : JSON.parse(new TextDecoder().decode(payload));
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A promise the test resolves when it chooses: holds functions mid-run. */
function gate(): { opened: Promise<void>; open: () => void } {
  let open: () => void = () => undefined;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { opened, open };
}

/** Polls `condition` until it holds; fails the test after `timeoutMs`. */
async function eventually(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
}

/** Runs `work` and returns what it threw (failing the test when it did not throw). */
async function thrownBy(work: () => Promise<unknown>): Promise<Error & Record<string, unknown>> {
  try {
    await work();
  } catch (error) {
    expect(error).toBeInstanceOf(Error);
    return error as Error & Record<string, unknown>;
  }
  throw new Error('expected the call to throw, but it succeeded');
}

interface Started {
  service: LocalLambdaService;
  endpoint: string;
  lambda: LambdaClient;
  logger: MemoryLogger;
}

const cleanups: (() => Promise<void>)[] = [];

async function start(options: LocalLambdaOptions = {}): Promise<Started> {
  const logger = createMemoryLogger();
  const service = new LocalLambdaService({ logger, ...options });
  const { endpoint } = await service.listen();
  // One attempt: the tests count requests and runs, so the SDK must not retry behind their back.
  const lambda = createLambdaClient({ region: 'us-east-1', endpoints: { lambda: endpoint }, maxAttempts: 1 });
  cleanups.push(async () => {
    lambda.destroy();
    await service.close(1000);
  });
  return { service, endpoint, lambda, logger };
}

afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

const invoke = (lambda: LambdaClient, functionName: string, payload: unknown, type: SdkInvocationType) =>
  lambda.send(
    new InvokeCommand({ FunctionName: functionName, InvocationType: type, Payload: encode(payload) }),
  );

describe('LocalLambdaService: the Invoke API', () => {
  it('answers an Event invoke with 202 at once and runs the function afterwards', async () => {
    const { service, lambda } = await start();
    const held = gate();
    const calls: { payload: unknown; context: LocalInvocationContext }[] = [];
    let finished = false;
    service.register('builder', async (payload, context) => {
      calls.push({ payload, context });
      await held.opened;
      finished = true;
      return 'ignored';
    });

    const response = await lambda.send(
      new InvokeCommand({
        FunctionName: 'builder',
        InvocationType: 'Event',
        Payload: encode({ n: 1 }),
        ClientContext: Buffer.from(JSON.stringify({ custom: 1 })).toString('base64'),
      }),
    );

    expect(response.StatusCode).toBe(202);
    expect(response.Payload?.length ?? 0).toBe(0);
    expect(response.$metadata.requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(finished).toBe(false);
    held.open();
    await service.idle(1000);
    expect(finished).toBe(true);
    // As in the service, only synchronous invocations get the client context.
    expect(calls).toEqual([
      {
        payload: { n: 1 },
        context: {
          functionName: 'builder',
          requestId: response.$metadata.requestId,
          attempt: 1,
          invocationType: 'Event',
        },
      },
    ]);
  });

  it('answers RequestResponse with the result, by name, full ARN with qualifier and partial ARN', async () => {
    const { service, lambda } = await start();
    service.register('runner', async (payload, context) => ({
      echo: payload,
      type: context.invocationType,
      clientContext: context.clientContext ?? 'none',
    }));
    service.register('quiet', async () => undefined);

    const plain = await lambda.send(
      new InvokeCommand({
        FunctionName: 'runner',
        Payload: encode({ a: 1 }),
        ClientContext: Buffer.from(JSON.stringify({ custom: { build: 7 } })).toString('base64'),
      }),
    );
    const byArn = await invoke(lambda, `${service.functionArn('runner')}:live`, 'x', 'RequestResponse');
    const byPartialArn = await invoke(lambda, '123456789012:function:runner', 2, 'RequestResponse');
    const quiet = await invoke(lambda, 'quiet', {}, 'RequestResponse');

    expect(plain.StatusCode).toBe(200);
    expect(plain.ExecutedVersion).toBe('$LATEST');
    expect(plain.FunctionError).toBeUndefined();
    expect(decode(plain.Payload)).toEqual({
      echo: { a: 1 },
      type: 'RequestResponse',
      clientContext: { custom: { build: 7 } },
    });
    expect(byArn.ExecutedVersion).toBe('live');
    expect(decode(byArn.Payload)).toEqual({ echo: 'x', type: 'RequestResponse', clientContext: 'none' });
    expect(decode(byPartialArn.Payload)).toMatchObject({ echo: 2 });
    // A function that returns nothing answers JSON null, as the Node runtime does.
    expect(new TextDecoder().decode(quiet.Payload)).toBe('null');
  });

  it('reports a function that throws as an Unhandled function error in a 200, with its stack', async () => {
    const { service, lambda } = await start();
    service.register('runner', async () => {
      throw new TypeError('cannot read the archive');
    });
    service.register('bigint', async () => ({ size: BigInt(1) }));

    const response = await invoke(lambda, 'runner', {}, 'RequestResponse');
    const unserializable = await invoke(lambda, 'bigint', {}, 'RequestResponse');

    expect(response.StatusCode).toBe(200);
    expect(response.FunctionError).toBe('Unhandled');
    const body = decode(response.Payload) as Record<string, unknown>;
    expect(body).toMatchObject({ errorType: 'TypeError', errorMessage: 'cannot read the archive' });
    expect(body.stackTrace).toEqual(expect.arrayContaining([expect.stringMatching(/^at /)]));
    expect(unserializable.FunctionError).toBe('Unhandled');
    expect(decode(unserializable.Payload)).toMatchObject({ errorType: 'TypeError' });
  });

  it('checks each request with its authenticate hook first: a refusal is a 403 and runs nothing', async () => {
    const seen: string[] = [];
    const { service, lambda } = await start({
      authenticate: async (request, body) => {
        seen.push(body.toString('utf8'));
        return request.headers['x-test-key'] === 'right' ? { ok: true } : { ok: false, reason: 'wrong key' };
      },
    });
    let ran = 0;
    service.register('builder', async () => {
      ran++;
    });

    const refused = await thrownBy(() => invoke(lambda, 'builder', { n: 1 }, 'Event'));
    const missingFunction = await thrownBy(() => invoke(lambda, 'missing', { n: 2 }, 'RequestResponse'));
    await service.idle(1000);

    expect(refused).toMatchObject({ name: 'InvalidSignatureException', $metadata: { httpStatusCode: 403 } });
    expect((refused as Error).message).toMatch(/wrong key/);
    // Refused before the function name is looked at: nothing tells a stranger what exists.
    expect(missingFunction).toMatchObject({ $metadata: { httpStatusCode: 403 } });
    expect(seen).toEqual(['{"n":1}', '{"n":2}']);
    expect(ran).toBe(0);
  });

  it('answers DryRun with 204 without running the function', async () => {
    const { service, lambda } = await start();
    let ran = false;
    service.register('builder', async () => {
      ran = true;
    });

    const response = await lambda.send(
      new InvokeCommand({ FunctionName: 'builder', InvocationType: 'DryRun' }),
    );
    const missing = await thrownBy(() =>
      lambda.send(new InvokeCommand({ FunctionName: 'missing', InvocationType: 'DryRun' })),
    );

    expect(response.StatusCode).toBe(204);
    expect(missing).toBeInstanceOf(ResourceNotFoundException);
    await service.idle(1000);
    expect(ran).toBe(false);
  });

  it("maps its errors onto the SDK's exception classes", async () => {
    const { service, lambda } = await start();
    service.register('builder', async () => 'ran');

    const missing = await thrownBy(() => invoke(lambda, 'missing', {}, 'Event'));
    const malformed = await thrownBy(() =>
      lambda.send(
        new InvokeCommand({ FunctionName: 'builder', Payload: new TextEncoder().encode('{not json') }),
      ),
    );
    const badType = await thrownBy(() => invoke(lambda, 'builder', {}, 'Later' as SdkInvocationType));
    const badName = await thrownBy(() => invoke(lambda, 'no spaces', {}, 'RequestResponse'));

    expect(missing).toBeInstanceOf(ResourceNotFoundException);
    expect(missing.message).toBe(`Function not found: ${service.functionArn('missing')}`);
    expect(missing.$metadata).toMatchObject({ httpStatusCode: 404 });
    expect(malformed).toBeInstanceOf(InvalidRequestContentException);
    expect(malformed.message).toMatch(/^Could not parse request body into json/);
    expect(badType).toBeInstanceOf(InvalidParameterValueException);
    expect(badType.message).toContain("Value 'Later' at 'invocationType'");
    expect(badName).toBeInstanceOf(InvalidParameterValueException);
    expect(badName.message).toContain("Value 'no spaces' at 'functionName'");
  });

  it('holds Event payloads to 1 MB and RequestResponse ones to 6 MB, as the service does', async () => {
    const { service, lambda } = await start();
    service.register('builder', async (payload) => (payload as string).length);
    const overAsyncLimit = 'x'.repeat(ASYNC_PAYLOAD_LIMIT_BYTES);

    const tooLarge = await thrownBy(() => invoke(lambda, 'builder', overAsyncLimit, 'Event'));
    const sync = await invoke(lambda, 'builder', overAsyncLimit, 'RequestResponse');

    expect(tooLarge).toBeInstanceOf(RequestTooLargeException);
    expect(tooLarge.$metadata).toMatchObject({ httpStatusCode: 413 });
    expect(decode(sync.Payload)).toBe(ASYNC_PAYLOAD_LIMIT_BYTES);
  });

  it("sends the service's error shape and headers on the wire", async () => {
    const { endpoint } = await start();

    const response = await fetch(`${endpoint}/2015-03-31/functions/missing/invocations`, {
      method: 'POST',
      headers: { 'X-Amz-Invocation-Type': 'Event' },
      body: '{}',
    });
    const other = await fetch(`${endpoint}/2015-03-31/functions/missing`);

    expect(response.status).toBe(404);
    expect(response.headers.get('x-amzn-errortype')).toBe('ResourceNotFoundException');
    expect(response.headers.get('x-amzn-requestid')).toMatch(/^[0-9a-f-]{36}$/);
    expect(await response.json()).toEqual({
      Type: 'User',
      Message: 'Function not found: arn:aws:lambda:us-east-1:123456789012:function:missing',
    });
    expect(other.status).toBe(404);
    expect(other.headers.get('x-amzn-errortype')).toBe('UnknownOperationException');
  });
});

describe('LocalLambdaService: async invocations', () => {
  it('retries a function that fails twice and succeeds on the third attempt, without on-failure', async () => {
    const failures: AsyncFailure[] = [];
    const { service, lambda, logger } = await start({
      retryDelaysMs: [30, 60],
      onFailure: async (record) => void failures.push(record),
    });
    const attempts: { attempt: number; requestId: string; at: number; seen: string }[] = [];
    service.register('flaky', async (payload, context) => {
      const seen = JSON.stringify(payload);
      attempts.push({ attempt: context.attempt, requestId: context.requestId, at: Date.now(), seen });
      // Each attempt gets its own copy of the payload, so this cannot leak into the next one.
      (payload as { touched?: boolean }).touched = true;
      if (context.attempt < 3) throw new Error(`attempt ${context.attempt} failed`);
    });

    const response = await invoke(lambda, 'flaky', { n: 1 }, 'Event');
    await service.idle(3000);

    expect(attempts.map((entry) => entry.attempt)).toEqual([1, 2, 3]);
    expect(new Set(attempts.map((entry) => entry.requestId))).toEqual(
      new Set([response.$metadata.requestId]),
    );
    expect(attempts.map((entry) => entry.seen)).toEqual(['{"n":1}', '{"n":1}', '{"n":1}']);
    const [first, second, third] = attempts.map((entry) => entry.at);
    expect((second ?? 0) - (first ?? 0)).toBeGreaterThanOrEqual(25);
    expect((third ?? 0) - (second ?? 0)).toBeGreaterThanOrEqual(55);
    expect(failures).toEqual([]);
    expect(logger.entries.map((entry) => [entry.level, entry.message, entry.fields.attempt])).toEqual([
      ['warn', 'async invocation failed; retrying', 1],
      ['warn', 'async invocation failed; retrying', 2],
    ]);
    expect(logger.entries[1]?.fields).toMatchObject({
      functionName: 'flaky',
      errorMessage: 'attempt 2 failed',
      retryInMs: 60,
    });
  });

  it('gives a function that always fails exactly 3 attempts, then calls on-failure once', async () => {
    const failures: AsyncFailure[] = [];
    const { service, lambda, logger } = await start({
      retryDelaysMs: [10, 10],
      onFailure: async (record) => {
        await sleep(50); // a destination takes time: idle() waits for it
        failures.push(record);
      },
    });
    let runs = 0;
    service.register('broken', async (_payload, context) => {
      runs += 1;
      throw new RangeError(`attempt ${context.attempt} failed`);
    });

    const response = await invoke(lambda, 'broken', { repo: 'o/r', number: 3 }, 'Event');
    await service.idle(3000);

    expect(runs).toBe(3);
    expect(failures).toEqual([
      {
        functionName: 'broken',
        requestId: response.$metadata.requestId,
        payload: { repo: 'o/r', number: 3 },
        attempts: 3,
        error: { errorType: 'RangeError', errorMessage: 'attempt 3 failed' },
      },
    ]);
    expect(logger.entries.filter((entry) => entry.level === 'error')).toEqual([
      {
        level: 'error',
        message: 'async invocation failed every attempt; sending it to the on-failure destination',
        fields: expect.objectContaining({ functionName: 'broken', attempt: 3, errorType: 'RangeError' }),
      },
    ]);
  });

  it('does not retry when given no retry delays (MaximumRetryAttempts 0)', async () => {
    const failures: AsyncFailure[] = [];
    const { service, lambda } = await start({
      retryDelaysMs: [],
      onFailure: async (record) => void failures.push(record),
    });
    let runs = 0;
    service.register('once', async () => {
      runs += 1;
      throw new Error('no');
    });

    await invoke(lambda, 'once', {}, 'Event');
    await service.idle(1000);

    expect(runs).toBe(1);
    expect(failures.map((failure) => failure.attempts)).toEqual([1]);
  });

  it('logs an on-failure destination that fails, and keeps serving', async () => {
    const { service, lambda, logger } = await start({
      retryDelaysMs: [],
      onFailure: async () => {
        throw new Error('destination down');
      },
    });
    service.register('broken', async () => {
      throw new Error('no');
    });
    service.register('fine', async () => 'ok');

    await invoke(lambda, 'broken', {}, 'Event');
    await service.idle(1000);
    const after = await invoke(lambda, 'fine', {}, 'RequestResponse');

    expect(decode(after.Payload)).toBe('ok');
    expect(logger.entries.at(-1)).toMatchObject({
      level: 'error',
      message: 'the on-failure destination failed; the failure record is lost',
      fields: { functionName: 'broken', error: { message: 'destination down' } },
    });
  });

  it('never runs more async invocations at once than its concurrency, across functions, in order', async () => {
    const { service, lambda } = await start({ concurrency: 3 });
    const held = gate();
    let running = 0;
    let mostAtOnce = 0;
    const started: unknown[] = [];
    const work = async (payload: unknown): Promise<void> => {
      running += 1;
      mostAtOnce = Math.max(mostAtOnce, running);
      started.push(payload);
      await held.opened;
      await sleep(5);
      running -= 1;
    };
    service.register('a', work);
    service.register('b', work);
    service.register('sync', async () => 'not queued');

    for (let index = 0; index < 10; index += 1) {
      await invoke(lambda, index % 2 === 0 ? 'a' : 'b', index, 'Event');
    }
    await eventually(() => running === 3, 'three invocations to run');
    // RequestResponse does not go through the async queue, so a full pool does not hold it.
    const sync = await invoke(lambda, 'sync', {}, 'RequestResponse');
    expect(decode(sync.Payload)).toBe('not queued');
    expect(started).toEqual([0, 1, 2]);
    held.open();
    await service.idle(3000);

    expect(mostAtOnce).toBe(3);
    expect(started).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('idle() waits for the queue to drain, and says what is still busy when it times out', async () => {
    const { service, lambda } = await start({ concurrency: 1 });
    const held = gate();
    const done: unknown[] = [];
    service.register('slow', async (payload) => {
      await held.opened;
      done.push(payload);
    });

    await invoke(lambda, 'slow', 1, 'Event');
    await invoke(lambda, 'slow', 2, 'Event');
    const busy = await thrownBy(() => service.idle(100));
    held.open();
    await service.idle(2000);

    expect(busy).toBeInstanceOf(LocalLambdaBusyError);
    expect(busy.message).toContain('still busy after 100 ms: 1 async running (slow)');
    expect(busy.message).toContain('1 queued');
    expect(done).toEqual([1, 2]);
  });
});

describe('LocalLambdaService: lifecycle', () => {
  it('close() waits for running work, drops queued work, then stops answering', async () => {
    const { service, lambda, logger } = await start({ concurrency: 1 });
    // The running work ends when the test says, not after a fixed time: on a busy machine the
    // second invoke could take longer than that, so the work had ended before close() was called.
    const held = gate();
    const started: unknown[] = [];
    const ran: unknown[] = [];
    const order: string[] = [];
    service.register('build', async (payload) => {
      started.push(payload);
      await held.opened;
      ran.push(payload);
      order.push(`ran ${String(payload)}`);
    });

    await invoke(lambda, 'build', 'running', 'Event');
    await eventually(() => started.length === 1, 'the first invocation to run');
    const queued = await invoke(lambda, 'build', 'queued', 'Event');
    const closing = service.close(5000).then(() => void order.push('closed'));
    await sleep(150); // time for close() to end early, were it not to wait
    held.open();
    await closing;

    expect(ran).toEqual(['running']);
    expect(order).toEqual(['ran running', 'closed']);
    expect(logger.entries).toContainEqual({
      level: 'warn',
      message: 'local Lambda closed with async invocations not run; they are dropped',
      fields: { dropped: [{ functionName: 'build', requestId: queued.$metadata.requestId }] },
    });
    const refused = await thrownBy(() => invoke(lambda, 'build', 'late', 'Event'));
    expect(refused.message).toMatch(/ECONNREFUSED|socket hang up|ECONNRESET/);
    await sleep(50);
    expect(ran).toEqual(['running']);
  });

  it('close() is bounded: a function that never returns does not hold it', async () => {
    const { service, lambda, logger } = await start();
    service.register('stuck', () => new Promise(() => undefined));

    await invoke(lambda, 'stuck', {}, 'Event');
    const closing = Date.now();
    await service.close(100);

    // The function never returns, so any end at all is close()'s bound; the time only means "did not hang".
    expect(Date.now() - closing).toBeGreaterThanOrEqual(95);
    expect(Date.now() - closing).toBeLessThan(10_000);
    expect(logger.entries.at(-1)).toMatchObject({
      level: 'warn',
      message: 'local Lambda closed while invocations were still running; their results are lost',
    });
  });

  it('mounts in another server: handle() takes invoke paths and leaves the rest to the caller', async () => {
    const service = new LocalLambdaService({ logger: createMemoryLogger() });
    service.register('runner', async (payload) => ({ echo: payload }));
    const host = createServer((request, response) => {
      if (service.handle(request, response)) return;
      response.writeHead(200, { 'Content-Type': 'text/plain' });
      response.end('stack ok');
    });
    await new Promise<void>((resolve) => host.listen(0, '127.0.0.1', resolve));
    const endpoint = `http://127.0.0.1:${(host.address() as AddressInfo).port}`;
    const lambda = createLambdaClient({ region: 'us-east-1', endpoints: { lambda: endpoint } });
    try {
      const response = await invoke(lambda, 'runner', 5, 'RequestResponse');
      const health = await fetch(`${endpoint}/health`);

      expect(decode(response.Payload)).toEqual({ echo: 5 });
      expect(await health.text()).toBe('stack ok');
    } finally {
      lambda.destroy();
      await service.close(1000);
      host.closeAllConnections();
      await new Promise((resolve) => host.close(resolve));
    }
  });

  it("is what the webhook's builder queue reaches through AWS_ENDPOINT_URL_LAMBDA", async () => {
    const { service, endpoint } = await start();
    const received: unknown[] = [];
    service.register('lambkin-builder', async (event) => void received.push(parseBuilderInvocation(event)));
    const saved = process.env.AWS_ENDPOINT_URL_LAMBDA;
    process.env.AWS_ENDPOINT_URL_LAMBDA = endpoint;
    const fromEnvironment = createLambdaClient({ region: 'us-east-1' });
    try {
      await new LambdaControllerInvoker(fromEnvironment, service.functionArn('lambkin-builder')).invoke({
        repo: 'octo/app',
        number: 4,
      });
    } finally {
      fromEnvironment.destroy();
      if (saved === undefined) delete process.env.AWS_ENDPOINT_URL_LAMBDA;
      else process.env.AWS_ENDPOINT_URL_LAMBDA = saved;
    }
    await service.idle(1000);

    expect(received).toEqual([{ kind: 'build', repo: 'octo/app', number: 4 }]);
  });

  it('reports a port in use and refuses to listen twice', async () => {
    const { service, endpoint } = await start();
    const port = Number(new URL(endpoint).port);
    const second = new LocalLambdaService({ logger: createMemoryLogger() });

    const inUse = await thrownBy(() => second.listen(port));
    const twice = await thrownBy(() => service.listen());
    await second.close();

    expect(inUse).toBeInstanceOf(LocalLambdaListenError);
    expect(inUse.message).toContain(`127.0.0.1:${port} (EADDRINUSE)`);
    expect(inUse.message).toContain('choose another one');
    expect(twice).toBeInstanceOf(LocalLambdaListenError);
  });

  it('rejects options and function names the service would not accept', () => {
    expect(() => new LocalLambdaService({ concurrency: 0 })).toThrow(ConfigurationError);
    expect(() => new LocalLambdaService({ concurrency: 1.5 })).toThrow('concurrency is 1.5');
    expect(() => new LocalLambdaService({ retryDelaysMs: [1, 2, 3] })).toThrow(
      'Lambda retries an async invocation at most 2 times',
    );
    expect(() => new LocalLambdaService({ retryDelaysMs: [-1] })).toThrow('milliseconds of 0 or more');
    const service = new LocalLambdaService({ logger: createMemoryLogger() });
    expect(() => service.register('my.function', async () => null)).toThrow(ConfigurationError);
    expect(() => service.register('x'.repeat(65), async () => null)).toThrow('1 to 64 letters');
  });
});
