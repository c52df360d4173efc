/**
 * Starts the controller for a queued build: one asynchronous invoke of the builder function (InvocationType
 * Event), which the service queues and answers with 202 at once. The webhook calls this while
 * GitHub waits (10 s for the whole delivery), so every call is bounded in time, retries included.
 */
import { InvokeCommand } from '@aws-sdk/client-lambda';
import type { LambdaClient } from '@aws-sdk/client-lambda';
import type { BuildKey } from '../core/build.js';
import { buildLabel } from '../core/build.js';
import { LambkinError, messageOf } from '../core/errors.js';
import { builderInvocationFor } from '../core/protocol.js';
import type { ControllerInvoker } from '../core/ports.js';

export interface LambdaControllerInvokerOptions {
  /** Milliseconds one HTTP attempt may take before it is abandoned (and maybe retried). */
  attemptTimeoutMs?: number;
  /** Milliseconds the whole invoke may take, all attempts and backoff included. */
  deadlineMs?: number;
}

/** An Event invoke is answered in tens of milliseconds; a second means the endpoint is in trouble. */
export const DEFAULT_ATTEMPT_TIMEOUT_MS = 1000;
/** Leaves the webhook most of GitHub's 10 s for DynamoDB and the commit status. */
export const DEFAULT_INVOKE_DEADLINE_MS = 3000;

/** The builder function could not be invoked; the build was not started. */
export class BuilderInvokeError extends LambkinError {
  constructor(
    readonly functionName: string,
    readonly build: BuildKey,
    /** The AWS error name (`ResourceNotFoundException`, `TooManyRequestsException`, `TimeoutError`…). */
    readonly awsErrorName: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(
      'BUILDER_INVOKE_FAILED',
      `Could not start build ${buildLabel(build)}: invoking builder function "${functionName}" failed with ` +
        `${awsErrorName} (${detail}). ${adviceFor(awsErrorName)}`,
      options,
    );
  }
}

export class LambdaControllerInvoker implements ControllerInvoker {
  private readonly attemptTimeoutMs: number;
  private readonly deadlineMs: number;

  constructor(
    private readonly lambda: LambdaClient,
    readonly functionName: string,
    options: LambdaControllerInvokerOptions = {},
  ) {
    this.attemptTimeoutMs = options.attemptTimeoutMs ?? DEFAULT_ATTEMPT_TIMEOUT_MS;
    this.deadlineMs = options.deadlineMs ?? DEFAULT_INVOKE_DEADLINE_MS;
  }

  async invoke(key: BuildKey, job?: string): Promise<void> {
    const payload = new TextEncoder().encode(JSON.stringify(builderInvocationFor(key, job)));
    const deadline = AbortSignal.timeout(this.deadlineMs);
    let statusCode: number | undefined;
    try {
      const response = await this.lambda.send(
        new InvokeCommand({ FunctionName: this.functionName, InvocationType: 'Event', Payload: payload }),
        // The per-attempt timeout lets the SDK retry a stuck request; the deadline bounds the sum.
        { abortSignal: deadline, requestTimeout: this.attemptTimeoutMs },
      );
      statusCode = response.StatusCode;
    } catch (error) {
      throw this.invokeError(key, error, deadline.aborted);
    }
    if (statusCode !== 202) {
      throw new BuilderInvokeError(
        this.functionName,
        key,
        'UnexpectedStatus',
        `the service answered ${statusCode ?? 'without a status'} instead of 202 Accepted`,
      );
    }
  }

  private invokeError(key: BuildKey, error: unknown, deadlinePassed: boolean): BuilderInvokeError {
    const attempts = attemptsOf(error);
    const tries = attempts ? `, ${attempts} attempt(s)` : '';
    if (deadlinePassed) {
      return new BuilderInvokeError(
        this.functionName,
        key,
        'TimeoutError',
        `no answer within ${this.deadlineMs} ms${tries}`,
        { cause: error },
      );
    }
    const name = error instanceof Error ? errorName(error) : 'UnknownError';
    const message = messageOf(error);
    return new BuilderInvokeError(this.functionName, key, name, `${message}${tries}`, { cause: error });
  }
}

function attemptsOf(error: unknown): number | undefined {
  const metadata = (error as { $metadata?: { attempts?: unknown } } | null)?.$metadata;
  return typeof metadata?.attempts === 'number' ? metadata.attempts : undefined;
}

/** The SDK's text when it had to wrap an error it did not recognise (one from another JS realm). */
const SDK_WRAPPED_ERROR = /^AWS SDK error wrapper for (\w+):/;

/** SDK errors carry the AWS name; Node network errors carry theirs in `code` (ECONNRESET…). */
function errorName(error: Error): string {
  const code = (error as { code?: unknown }).code;
  if (error.name !== 'Error') return error.name;
  if (typeof code === 'string') return code;
  return SDK_WRAPPED_ERROR.exec(error.message)?.[1] ?? error.name;
}

function adviceFor(awsErrorName: string): string {
  switch (awsErrorName) {
    case 'ResourceNotFoundException':
      return (
        'Check that LAMBKIN_BUILDER_FUNCTION names the deployed builder function (name or ARN) ' +
        'in the region the webhook runs in.'
      );
    case 'AccessDeniedException':
    case 'AccessDenied':
    case 'UnrecognizedClientException':
    case 'InvalidSignatureException':
    case 'ExpiredTokenException':
      return (
        "Check the webhook function's credentials and that its role allows lambda:InvokeFunction " +
        'on the builder function (LAMBKIN_BUILDER_FUNCTION).'
      );
    case 'TooManyRequestsException':
      return (
        'The builder function is throttled: raise its reserved concurrency or the account limit, ' +
        'then push again or redeliver the webhook.'
      );
    case 'TimeoutError':
    case 'AbortError':
    case 'ECONNRESET':
    case 'ECONNREFUSED':
    case 'ETIMEDOUT':
    case 'EPIPE':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return (
        'Check that the Lambda endpoint is reachable from the webhook function ' +
        '(network, VPC endpoint, AWS_ENDPOINT_URL_LAMBDA), then push again or redeliver the webhook.'
      );
    case 'ServiceException':
      return 'The Lambda service failed; push again or redeliver the webhook in a moment.';
    default:
      return (
        'Check LAMBKIN_BUILDER_FUNCTION and that the webhook role may call lambda:InvokeFunction on it, ' +
        'then push again or redeliver the webhook.'
      );
  }
}
