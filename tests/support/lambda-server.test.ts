import {
  InvokeCommand,
  LambdaClient,
  ResourceNotFoundException,
  ServiceException,
  TooManyRequestsException,
} from '@aws-sdk/client-lambda';
import type { InvokeCommandOutput } from '@aws-sdk/client-lambda';
import { createLambdaClient } from '../../src/aws/clients.js';
import { startLambdaServer } from './lambda-server.js';
import type { LambdaServer } from './lambda-server.js';

const encode = (value: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(value));
const decode = (payload: Uint8Array | undefined): unknown =>
  payload === undefined || payload.length === 0 ? undefined : JSON.parse(new TextDecoder().decode(payload));

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

describe('Lambda Invoke API stand-in', () => {
  let server: LambdaServer;
  let lambda: LambdaClient;

  beforeEach(async () => {
    server = await startLambdaServer();
    lambda = createLambdaClient({ region: 'us-east-1', endpoints: { lambda: server.endpoint } });
  });

  afterEach(async () => {
    lambda.destroy();
    await server.close();
  });

  it('accepts an Event invoke with 202 and runs the handler after answering', async () => {
    let release: () => void = () => undefined;
    const handlerMayFinish = new Promise<void>((resolve) => (release = resolve));
    server.setHandler('builder', async (payload) => {
      await handlerMayFinish;
      return { saw: payload };
    });
    const before = Date.now();

    const response = await lambda.send(
      new InvokeCommand({ FunctionName: 'builder', InvocationType: 'Event', Payload: encode({ n: 1 }) }),
    );

    expect(response.StatusCode).toBe(202);
    expect(response.Payload?.length ?? 0).toBe(0);
    expect(response.$metadata.requestId).toMatch(/^[0-9a-f-]{36}$/);
    const [invocation] = await server.waitForInvocations(1, 10_000);
    expect(invocation).toMatchObject({ functionName: 'builder', invocationType: 'Event', payload: { n: 1 } });
    expect(invocation?.headers['x-amz-invocation-type']).toBe('Event');
    expect(invocation?.headers.authorization).toMatch(/^AWS4-HMAC-SHA256 /);
    expect(invocation?.receivedAt).toBeGreaterThanOrEqual(before);
    // The 202 came back while the handler was still blocked.
    expect(invocation?.outcome).toBeUndefined();
    release();
    await server.waitForIdle(10_000);
    expect(invocation?.outcome).toEqual({ status: 'succeeded', result: { saw: { n: 1 } } });
  });

  it('answers RequestResponse (the default) with the handler result and the executed version', async () => {
    server.setHandler('runner', async (payload, context) => ({
      echo: payload,
      type: context.invocationType,
    }));

    const plain = await lambda.send(new InvokeCommand({ FunctionName: 'runner', Payload: encode({ a: 1 }) }));
    const byArn = await lambda.send(
      new InvokeCommand({ FunctionName: `${server.functionArn('runner')}:live`, Payload: encode('x') }),
    );

    expect(plain.StatusCode).toBe(200);
    expect(plain.ExecutedVersion).toBe('$LATEST');
    expect(plain.FunctionError).toBeUndefined();
    expect(decode(plain.Payload)).toEqual({ echo: { a: 1 }, type: 'RequestResponse' });
    expect(byArn.ExecutedVersion).toBe('live');
    expect(decode(byArn.Payload)).toEqual({ echo: 'x', type: 'RequestResponse' });
    expect(server.invocations.map((entry) => [entry.functionName, entry.qualifier])).toEqual([
      ['runner', undefined],
      ['runner', 'live'],
    ]);
  });

  it('reports a handler that throws as an Unhandled function error in a 200', async () => {
    server.setHandler('runner', async () => {
      throw new TypeError('cannot read the archive');
    });

    const response = await lambda.send(new InvokeCommand({ FunctionName: 'runner', Payload: encode({}) }));

    expect(response.StatusCode).toBe(200);
    expect(response.FunctionError).toBe('Unhandled');
    expect(decode(response.Payload)).toMatchObject({
      errorType: 'TypeError',
      errorMessage: 'cannot read the archive',
    });
  });

  it('retries a failing Event handler as the service does and records what reached on-failure', async () => {
    let runs = 0;
    server.setHandler('builder', async (_payload, context) => {
      runs += 1;
      throw new Error(`attempt ${context.attempt} failed`);
    });

    const response = await lambda.send(
      new InvokeCommand({ FunctionName: 'builder', InvocationType: 'Event', Payload: encode({ n: 2 }) }),
    );
    await server.waitForIdle(10_000);

    expect(runs).toBe(3);
    expect(server.invocations[0]).toMatchObject({
      outcome: { status: 'failed', errorType: 'Error', errorMessage: 'attempt 3 failed' },
      attempts: 3,
    });
    expect(server.failures).toEqual([
      {
        functionName: 'builder',
        requestId: response.$metadata.requestId,
        payload: { n: 2 },
        attempts: 3,
        error: { errorType: 'Error', errorMessage: 'attempt 3 failed' },
      },
    ]);
    expect(server.logger.entries.map((entry) => entry.level)).toEqual(['warn', 'warn', 'error']);
  });

  it('answers DryRun with 204 without running the function', async () => {
    let ran = false;
    server.setHandler('builder', async () => {
      ran = true;
    });

    const response = await lambda.send(
      new InvokeCommand({ FunctionName: 'builder', InvocationType: 'DryRun' }),
    );

    expect(response.StatusCode).toBe(204);
    expect(ran).toBe(false);
    expect(server.invocations).toHaveLength(0);
    expect(server.requests.map((request) => request.status)).toEqual([204]);
  });

  it('turns a 404 into ResourceNotFoundException naming the function ARN, without retrying', async () => {
    server.failNext({ kind: 'notFound404' });

    const error = await thrownBy(() =>
      lambda.send(new InvokeCommand({ FunctionName: 'missing', InvocationType: 'Event' })),
    );

    expect(error).toBeInstanceOf(ResourceNotFoundException);
    expect(error.message).toBe(`Function not found: ${server.functionArn('missing')}`);
    expect(error.Type).toBe('User');
    expect(error.$metadata).toMatchObject({ httpStatusCode: 404, attempts: 1 });
    expect(server.requests).toHaveLength(1);
  });

  it('turns a 429 into TooManyRequestsException with Reason and Retry-After', async () => {
    const once = createLambdaClient({
      region: 'us-east-1',
      endpoints: { lambda: server.endpoint },
      maxAttempts: 1,
    });
    server.failNext({
      kind: 'throttle429',
      reason: 'ReservedFunctionConcurrentInvocationLimitExceeded',
      retryAfterSeconds: 1,
    });

    const error = await thrownBy(() => once.send(new InvokeCommand({ FunctionName: 'builder' })));
    once.destroy();

    expect(error).toBeInstanceOf(TooManyRequestsException);
    expect(error).toMatchObject({
      message: 'Rate Exceeded.',
      Reason: 'ReservedFunctionConcurrentInvocationLimitExceeded',
      retryAfterSeconds: '1',
      Type: 'User',
      $fault: 'client',
    });
  });

  it('turns a 500 into ServiceException, and the SDK retries it until the server recovers', async () => {
    const once = createLambdaClient({
      region: 'us-east-1',
      endpoints: { lambda: server.endpoint },
      maxAttempts: 1,
    });
    server.failNext({ kind: 'service500' });
    const error = await thrownBy(() => once.send(new InvokeCommand({ FunctionName: 'builder' })));
    once.destroy();
    expect(error).toBeInstanceOf(ServiceException);
    expect(error).toMatchObject({ $fault: 'server', Type: 'Service' });

    server.failNext({ kind: 'service500' }, 2);
    const response = await lambda.send(new InvokeCommand({ FunctionName: 'builder', Payload: encode(1) }));
    expect(response.StatusCode).toBe(200);
    expect(response.$metadata.attempts).toBe(3);
    expect(server.requests.map((request) => request.fault ?? request.status)).toEqual([
      'service500',
      'service500',
      'service500',
      200,
    ]);
    expect(server.invocations).toHaveLength(1);
  });

  it('resets the connection and delays answers when told, then serves normally', async () => {
    const once = createLambdaClient({
      region: 'us-east-1',
      endpoints: { lambda: server.endpoint },
      maxAttempts: 1,
    });
    server.failNext({ kind: 'reset' });
    const reset = await thrownBy(() => once.send(new InvokeCommand({ FunctionName: 'builder' })));
    // Jest runs the SDK in its own realm, which wraps Node's socket errors: match on the message.
    expect(reset.message).toMatch(/socket hang up|ECONNRESET/);

    // The stand-in would answer after 20 s: only the client's 200 ms timeout can end the call sooner.
    server.failNext({ kind: 'slow', delayMs: 20_000 });
    const started = Date.now();
    const slow = await thrownBy(() =>
      once.send(new InvokeCommand({ FunctionName: 'builder' }), { requestTimeout: 200 }),
    );
    expect(slow.name).toBe('TimeoutError');
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
    expect(Date.now() - started).toBeLessThan(10_000);

    const response: InvokeCommandOutput = await once.send(new InvokeCommand({ FunctionName: 'builder' }));
    once.destroy();
    expect(response.StatusCode).toBe(200);
    expect(server.invocations).toHaveLength(1);
  });

  it('answers a slow request once the delay has passed when the client waits', async () => {
    server.failNext({ kind: 'slow', delayMs: 300 });
    const started = Date.now();
    const response = await lambda.send(
      new InvokeCommand({ FunctionName: 'builder', InvocationType: 'Event' }),
    );
    expect(response.StatusCode).toBe(202);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
  });

  it('rejects malformed payloads as the service does', async () => {
    const error = await thrownBy(() =>
      lambda.send(
        new InvokeCommand({ FunctionName: 'builder', Payload: new TextEncoder().encode('{not json') }),
      ),
    );
    expect(error.name).toBe('InvalidRequestContentException');
    expect(error.$metadata).toMatchObject({ httpStatusCode: 400 });
  });

  it('knows only functions with handlers when strict', async () => {
    const strict = await startLambdaServer({ strictFunctions: true, functions: { known: async () => 'ok' } });
    const client = createLambdaClient({ region: 'us-east-1', endpoints: { lambda: strict.endpoint } });
    try {
      const known = await client.send(new InvokeCommand({ FunctionName: 'known' }));
      expect(decode(known.Payload)).toBe('ok');
      const error = await thrownBy(() => client.send(new InvokeCommand({ FunctionName: 'unknown' })));
      expect(error).toBeInstanceOf(ResourceNotFoundException);
      strict.setHandler('known', undefined);
      const forgotten = await thrownBy(() => client.send(new InvokeCommand({ FunctionName: 'known' })));
      expect(forgotten).toBeInstanceOf(ResourceNotFoundException);
    } finally {
      client.destroy();
      await strict.close();
    }
  });

  it('is found through AWS_ENDPOINT_URL_LAMBDA too', async () => {
    const saved = process.env.AWS_ENDPOINT_URL_LAMBDA;
    process.env.AWS_ENDPOINT_URL_LAMBDA = server.endpoint;
    const fromEnvironment = new LambdaClient({ region: 'us-east-1' });
    try {
      await fromEnvironment.send(new InvokeCommand({ FunctionName: 'builder', InvocationType: 'Event' }));
    } finally {
      fromEnvironment.destroy();
      if (saved === undefined) delete process.env.AWS_ENDPOINT_URL_LAMBDA;
      else process.env.AWS_ENDPOINT_URL_LAMBDA = saved;
    }
    expect(server.invocations.map((entry) => entry.functionName)).toEqual(['builder']);
  });

  it('waits for the Nth invocation and says what it saw when it does not come', async () => {
    const waiting = server.waitForInvocations(2, 10_000);
    await lambda.send(new InvokeCommand({ FunctionName: 'a', InvocationType: 'Event', Payload: encode(1) }));
    await lambda.send(new InvokeCommand({ FunctionName: 'b', InvocationType: 'Event', Payload: encode(2) }));
    expect((await waiting).map((entry) => entry.payload)).toEqual([1, 2]);

    await expect(server.waitForInvocations(3, 100)).rejects.toThrow(
      'Expected 3 Lambda invocation(s) within 100 ms but got 2',
    );
  });

  it('stops answering once closed', async () => {
    const closing = await startLambdaServer();
    const client = createLambdaClient({
      region: 'us-east-1',
      endpoints: { lambda: closing.endpoint },
      maxAttempts: 1,
    });
    await client.send(new InvokeCommand({ FunctionName: 'builder', InvocationType: 'Event' }));
    await closing.close();
    const error = await thrownBy(() => client.send(new InvokeCommand({ FunctionName: 'builder' })));
    client.destroy();
    // A pooled keep-alive socket may be cut (hang up) rather than refused: either way, no answer.
    expect(error.message).toMatch(/ECONNREFUSED|socket hang up|ECONNRESET/);
    expect(closing.invocations).toHaveLength(1);
  });
});
