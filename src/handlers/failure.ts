/**
 * Lambda entry point of the builder's on-failure destination (`FailureFunction`). When the builder
 * function fails every async attempt (or the event expires before it runs), Lambda invokes this
 * function with a destination record; the build the record's payload names ends as `error`
 * (src/controller/on-failure.ts). Anything that is not such a record is refused with a typed error.
 */
import { loadFunctionConfig, onColdStart } from '../aws/secrets.js';
import {
  endFailedBuild,
  type FailedInvocation,
  type OnFailureDependencies,
  type OnFailureResult,
} from '../controller/on-failure.js';
import type { LambkinConfig } from '../config.js';
import { LambkinError } from '../core/errors.js';
import { createJsonLogger, type Logger } from '../core/logger.js';
import { createBuildEnderDependencies } from '../wiring.js';
import { isPlainObject } from '../core/values.js';

/** What Lambda sends an asynchronous invocation's destination (the fields Lambkin reads). */
export interface DestinationRecord {
  version: string;
  timestamp: string;
  requestContext: {
    requestId: string;
    functionArn: string;
    /** `RetriesExhausted` or `EventAgeExceeded` for failures (`Success` goes to on-success only). */
    condition: string;
    approximateInvokeCount: number;
  };
  /** The event the failed function was invoked with. */
  requestPayload: unknown;
  /** Absent when the function never ran (the event expired in the queue). */
  responseContext?: { statusCode: number; executedVersion: string; functionError?: string };
  /** The function's error (`errorMessage`, `errorType`, …), when it ran. */
  responsePayload?: unknown;
}

/** The event is not an on-failure destination record. */
export class InvalidDestinationRecordError extends LambkinError {
  constructor(readonly problems: string[]) {
    super(
      'INVALID_DESTINATION_RECORD',
      `The failure function expects a Lambda on-failure destination record ({version, timestamp, ` +
        `requestContext, requestPayload, …}): ${problems.join('; ')}. Configure it only as the ` +
        `builder function's on-failure destination.`,
    );
  }
}

const FAILURE_CONDITIONS = new Set(['RetriesExhausted', 'EventAgeExceeded']);

/** Validates the record's shape; every problem is reported together. */
export function parseDestinationRecord(event: unknown): DestinationRecord {
  if (!isPlainObject(event)) {
    throw new InvalidDestinationRecordError([
      `the event is ${event === null ? 'null' : Array.isArray(event) ? 'an array' : typeof event}, not an object`,
    ]);
  }
  const problems: string[] = [];
  const text = (value: unknown, name: string): string => {
    if (typeof value === 'string' && value !== '') return value;
    problems.push(`"${name}" is ${JSON.stringify(value) ?? 'missing'}, not text`);
    return '';
  };
  const version = text(event.version, 'version');
  const timestamp = text(event.timestamp, 'timestamp');
  const context = isPlainObject(event.requestContext) ? event.requestContext : undefined;
  if (!context) problems.push('"requestContext" is missing or not an object');
  const requestId = text(context?.requestId, 'requestContext.requestId');
  const functionArn = text(context?.functionArn, 'requestContext.functionArn');
  const condition = text(context?.condition, 'requestContext.condition');
  if (condition && !FAILURE_CONDITIONS.has(condition)) {
    problems.push(
      `"requestContext.condition" is "${condition}", not a failure (RetriesExhausted, EventAgeExceeded)`,
    );
  }
  const count = context?.approximateInvokeCount;
  if (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 0) {
    problems.push(
      `"requestContext.approximateInvokeCount" is ${JSON.stringify(count) ?? 'missing'}, not a whole number`,
    );
  }
  if (!('requestPayload' in event)) problems.push('"requestPayload" is missing');
  let responseContext: DestinationRecord['responseContext'];
  if (event.responseContext !== undefined) {
    const response = event.responseContext;
    if (!isPlainObject(response) || typeof response.statusCode !== 'number') {
      problems.push('"responseContext" has no numeric "statusCode"');
    } else {
      responseContext = {
        statusCode: response.statusCode,
        executedVersion: typeof response.executedVersion === 'string' ? response.executedVersion : '',
        ...(typeof response.functionError === 'string' ? { functionError: response.functionError } : {}),
      };
    }
  }
  if (problems.length > 0) throw new InvalidDestinationRecordError(problems);
  return {
    version,
    timestamp,
    requestContext: { requestId, functionArn, condition, approximateInvokeCount: count as number },
    requestPayload: event.requestPayload,
    ...(responseContext ? { responseContext } : {}),
    ...('responsePayload' in event ? { responsePayload: event.responsePayload } : {}),
  };
}

/** `arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]` → `<name>`. */
function functionNameOf(arn: string): string {
  const match = /:function:([^:]+)/.exec(arn);
  return match?.[1] ?? arn;
}

/** The record as the failed invocation it reports. */
export function failedInvocationOf(record: DestinationRecord): FailedInvocation {
  const { requestContext, responseContext } = record;
  const response = isPlainObject(record.responsePayload) ? record.responsePayload : {};
  const errorType =
    (typeof response.errorType === 'string' && response.errorType) ||
    responseContext?.functionError ||
    requestContext.condition;
  const errorMessage =
    (typeof response.errorMessage === 'string' && response.errorMessage) ||
    (typeof record.responsePayload === 'string' && record.responsePayload) ||
    (requestContext.condition === 'EventAgeExceeded'
      ? 'the invocation waited in the queue past its maximum age (EventAgeExceeded)'
      : `${requestContext.condition} (${responseContext?.functionError ?? 'no error reported'})`);
  return {
    payload: record.requestPayload,
    attempts: requestContext.approximateInvokeCount,
    error: { errorType, errorMessage },
    functionName: functionNameOf(requestContext.functionArn),
    requestId: requestContext.requestId,
  };
}

export function createFailureHandler(
  dependencies: () => OnFailureDependencies | Promise<OnFailureDependencies>,
): (event: unknown) => Promise<OnFailureResult> {
  const load = onColdStart(dependencies);
  return async (event) => {
    // Parsed before anything is built: a wrong event fails fast, whatever the configuration.
    const failure = failedInvocationOf(parseDestinationRecord(event));
    return endFailedBuild(await load(), failure);
  };
}

export function failureDependencies(config: LambkinConfig, logger: Logger): OnFailureDependencies {
  return createBuildEnderDependencies(config, logger);
}

export const handler = createFailureHandler(async () =>
  failureDependencies(await loadFunctionConfig('failure'), createJsonLogger()),
);
