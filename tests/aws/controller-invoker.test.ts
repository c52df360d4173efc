import { jest } from '@jest/globals';
import { LambdaClient } from '@aws-sdk/client-lambda';
import {
  BuilderInvokeError,
  DEFAULT_INVOKE_DEADLINE_MS,
  LambdaControllerInvoker,
} from '../../src/aws/controller-invoker.js';
import { createLambdaClient } from '../../src/aws/clients.js';
import { LambkinError } from '../../src/core/errors.js';
import { startLambdaServer } from '../support/lambda-server.js';
import type { LambdaServer } from '../support/lambda-server.js';
import {
  InvalidBuilderInvocationError,
  builderInvocationFor,
  parseBuilderInvocation,
} from '../../src/core/protocol.js';

const FUNCTION = 'lambkin-builder';
const KEY = { repo: 'octo-org/hello-world', number: 42 };
/**
 * Only "did not hang": ten times the default deadline. What the deadline means is asserted as an
 * outcome (the error names it) or as a lower bound (the code's own wait), neither of which a slow
 * machine can break. Tests that wait for it get twice this as their jest timeout.
 */
const HANG_MS = 10 * DEFAULT_INVOKE_DEADLINE_MS;
const HANG_TEST_TIMEOUT_MS = 2 * HANG_MS;

async function invokeErrorOf(
  invoker: LambdaControllerInvoker,
): Promise<{ error: BuilderInvokeError; ms: number }> {
  const started = Date.now();
  try {
    await invoker.invoke(KEY);
  } catch (error) {
    expect(error).toBeInstanceOf(BuilderInvokeError);
    return { error: error as BuilderInvokeError, ms: Date.now() - started };
  }
  throw new Error('expected the invoke to fail, but it succeeded');
}

describe('LambdaControllerInvoker against the Lambda stand-in', () => {
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

  it('invokes the builder asynchronously with the build key as its payload', async () => {
    await new LambdaControllerInvoker(lambda, FUNCTION).invoke(KEY);

    const [invocation] = await server.waitForInvocations(1, 10_000);
    expect(invocation).toMatchObject({
      functionName: FUNCTION,
      invocationType: 'Event',
      payload: { kind: 'build', repo: 'octo-org/hello-world', number: 42 },
    });
    expect(parseBuilderInvocation(invocation?.payload)).toEqual(builderInvocationFor(KEY));
    expect(server.requests).toHaveLength(1);
  });

  it('accepts a function ARN as the function name', async () => {
    await new LambdaControllerInvoker(lambda, server.functionArn(FUNCTION)).invoke(KEY);
    expect(server.invocations.map((invocation) => invocation.functionName)).toEqual([FUNCTION]);
  });

  it('rides out a throttle: the SDK retries and the build is queued once', async () => {
    server.failNext({ kind: 'throttle429' });

    await new LambdaControllerInvoker(lambda, FUNCTION).invoke(KEY);

    expect(server.requests.map((request) => request.fault ?? request.status)).toEqual(['throttle429', 202]);
    expect(server.invocations).toHaveLength(1);
  });

  it('rides out service errors: the SDK retries and the build is queued once', async () => {
    server.failNext({ kind: 'service500' }, 2);

    await new LambdaControllerInvoker(lambda, FUNCTION).invoke(KEY);

    expect(server.requests.map((request) => request.fault ?? request.status)).toEqual([
      'service500',
      'service500',
      202,
    ]);
    expect(server.invocations).toHaveLength(1);
  });

  it('fails at once on a missing function, naming it and the setting to check', async () => {
    server.failNext({ kind: 'notFound404' }, 3);

    const { error } = await invokeErrorOf(new LambdaControllerInvoker(lambda, FUNCTION));

    expect(error).toBeInstanceOf(LambkinError);
    expect(error.code).toBe('BUILDER_INVOKE_FAILED');
    expect(error.awsErrorName).toBe('ResourceNotFoundException');
    expect(error.functionName).toBe(FUNCTION);
    expect(error.build).toEqual(KEY);
    expect(error.message).toContain('octo-org/hello-world#42');
    expect(error.message).toContain(`"${FUNCTION}"`);
    expect(error.message).toContain(`Function not found: ${server.functionArn(FUNCTION)}`);
    expect(error.message).toContain('LAMBKIN_BUILDER_FUNCTION');
    expect(server.requests).toHaveLength(1);
    expect(server.invocations).toHaveLength(0);
  });

  it(
    'gives up on a throttle that does not end, within the deadline',
    async () => {
      server.failNext({ kind: 'throttle429' }, 20);

      const { error, ms } = await invokeErrorOf(new LambdaControllerInvoker(lambda, FUNCTION));

      // The SDK's throttle backoff is random: it either runs out of attempts or meets the deadline.
      expect(['TooManyRequestsException', 'TimeoutError']).toContain(error.awsErrorName);
      if (error.awsErrorName === 'TimeoutError') {
        expect(error.message).toContain(`no answer within ${DEFAULT_INVOKE_DEADLINE_MS} ms`);
      }
      expect(server.requests.length).toBeGreaterThanOrEqual(2);
      // It gave up: most of the 20 throttles were never asked for.
      expect(server.requests.length).toBeLessThan(20);
      expect(ms).toBeLessThan(HANG_MS);
    },
    HANG_TEST_TIMEOUT_MS,
  );

  it(
    'fails within bounded time when every connection is reset',
    async () => {
      server.failNext({ kind: 'reset' }, 20);

      const { error, ms } = await invokeErrorOf(new LambdaControllerInvoker(lambda, FUNCTION));

      expect(error.message).toMatch(/socket hang up|ECONNRESET/);
      expect(['TimeoutError', 'ECONNRESET']).toContain(error.awsErrorName);
      expect(error.message).toContain('AWS_ENDPOINT_URL_LAMBDA');
      // Resets are transient: the SDK retried them, then gave up long before the 20 resets ran out.
      expect(server.requests.length).toBeGreaterThan(1);
      expect(server.requests.length).toBeLessThan(20);
      expect(server.invocations).toHaveLength(0);
      expect(ms).toBeLessThan(HANG_MS);
    },
    HANG_TEST_TIMEOUT_MS,
  );

  it('abandons a slow attempt, retries, and succeeds when the service answers in time', async () => {
    // The slow answer would come after 20 s, so only abandoning the attempt can end the invoke sooner.
    server.failNext({ kind: 'slow', delayMs: 20_000 });

    const started = Date.now();
    await new LambdaControllerInvoker(lambda, FUNCTION, { attemptTimeoutMs: 300 }).invoke(KEY);
    const ms = Date.now() - started;

    expect(server.requests.map((request) => request.fault ?? request.status)).toEqual(['slow', 202]);
    expect(server.invocations).toHaveLength(1);
    // The retry came once the attempt timeout had passed (the code's own wait), not before.
    const [slow, retried] = server.requests;
    expect((retried?.receivedAt ?? 0) - (slow?.receivedAt ?? 0)).toBeGreaterThanOrEqual(290);
    // ...and the invoke ended long before the slow answer would have come.
    expect(ms).toBeLessThan(10_000);
  });

  it(
    'gives up on a service that never answers, by default within its deadline',
    async () => {
      server.failNext({ kind: 'slow', delayMs: 20_000 }, 20);

      const { error, ms } = await invokeErrorOf(new LambdaControllerInvoker(lambda, FUNCTION));

      expect(['TimeoutError']).toContain(error.awsErrorName);
      // The default deadline is what ended it: it waited that long, and says so.
      expect(error.message).toContain(`no answer within ${DEFAULT_INVOKE_DEADLINE_MS} ms`);
      expect(ms).toBeGreaterThanOrEqual(DEFAULT_INVOKE_DEADLINE_MS - 5);
      expect(ms).toBeLessThan(HANG_MS);
      expect(server.invocations).toHaveLength(0);
    },
    HANG_TEST_TIMEOUT_MS,
  );

  it('keeps to its deadline even on a client built without request timeouts', async () => {
    const plainClient = new LambdaClient({ region: 'us-east-1', endpoint: server.endpoint });
    server.failNext({ kind: 'slow', delayMs: 20_000 }, 20);
    const warnings = jest.spyOn(console, 'warn').mockImplementation(() => undefined);

    const { error, ms } = await invokeErrorOf(
      new LambdaControllerInvoker(plainClient, FUNCTION, { attemptTimeoutMs: 300, deadlineMs: 800 }),
    );
    plainClient.destroy();
    const warned = warnings.mock.calls.map((call) => String(call[0]));
    warnings.mockRestore();

    // Such a client only warns when an attempt overruns; the deadline is what ended the call.
    expect(warned.some((message) => message.includes('300 ms requestTimeout'))).toBe(true);
    expect(error.awsErrorName).toBe('TimeoutError');
    expect(error.message).toContain('no answer within 800 ms');
    expect(ms).toBeGreaterThanOrEqual(800 - 5);
    expect(ms).toBeLessThan(10 * 800);
  });
});

describe('parseBuilderInvocation', () => {
  it('returns the invocation and drops fields it does not know', () => {
    expect(parseBuilderInvocation({ kind: 'build', repo: 'o/r.js', number: 7, deliveryId: 'x' })).toEqual({
      kind: 'build',
      repo: 'o/r.js',
      number: 7,
    });
  });

  it.each([
    ['null', null, 'the event is null'],
    ['an array', [], 'the event is an array'],
    ['a string', '{"kind":"build"}', 'the event is string'],
    ['another kind', { kind: 'sweep', repo: 'o/r', number: 1 }, '"kind" is "sweep"'],
    ['a repo without owner', { kind: 'build', repo: 'r', number: 1 }, '"repo" is "r"'],
    ['a path as repo', { kind: 'build', repo: '../o/r', number: 1 }, '"repo" is "../o/r"'],
    ['number zero', { kind: 'build', repo: 'o/r', number: 0 }, '"number" is 0'],
    ['a fractional number', { kind: 'build', repo: 'o/r', number: 1.5 }, '"number" is 1.5'],
    ['a numeric string', { kind: 'build', repo: 'o/r', number: '3' }, '"number" is "3"'],
    ['an empty object', {}, '"kind" is missing'],
  ])('rejects %s', (_label, event, problem) => {
    expect(() => parseBuilderInvocation(event)).toThrow(InvalidBuilderInvocationError);
    expect(() => parseBuilderInvocation(event)).toThrow(problem);
  });

  it('lists every problem at once and says what it expects', () => {
    let caught: unknown;
    try {
      parseBuilderInvocation({ repo: 5 });
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(InvalidBuilderInvocationError);
    const error = caught as InvalidBuilderInvocationError;
    expect(error.code).toBe('INVALID_BUILDER_INVOCATION');
    expect(error.problems).toHaveLength(3);
    expect(error.message).toContain('{"kind":"build","repo":"owner/name","number":<build number>}');
  });
});
