/**
 * Lambda entry point of the notifier (`NotifierFunction`), fed by the builds table's DynamoDB
 * stream: every build state change, whoever made it, refreshes the repository's page of recent
 * builds and reaches Slack and SNS (src/notify/stream.ts). Dependencies are built once per
 * container, on the first batch. Records that could not be handled are returned as batch item
 * failures (the event source has ReportBatchItemFailures), so the stream delivers them again.
 */
import { loadFunctionConfig, onColdStart } from '../aws/secrets.js';
import type { LambkinConfig } from '../config.js';
import { LambkinError } from '../core/errors.js';
import { createJsonLogger, type Logger } from '../core/logger.js';
import { notifyBuildStream, type BuildStreamDependencies, type BuildStreamRecord } from '../notify/stream.js';
import { createNotifierDependencies } from '../wiring.js';

/** Lambda's partial batch response: the records to deliver again, by sequence number. */
export interface StreamBatchResponse {
  batchItemFailures: { itemIdentifier: string }[];
}

/** The event is not a DynamoDB stream batch, or a failed record cannot be named. */
export class InvalidStreamEventError extends LambkinError {
  constructor(message: string) {
    super('INVALID_STREAM_EVENT', message);
  }
}

export function createNotifierHandler(
  dependencies: () => BuildStreamDependencies | Promise<BuildStreamDependencies>,
): (event: unknown) => Promise<StreamBatchResponse> {
  const load = onColdStart(dependencies);
  return async (event) => {
    const records = streamRecordsOf(event);
    const { unhandled } = await notifyBuildStream(await load(), records);
    const batchItemFailures = unhandled.map((sequenceNumber) => {
      // Without a sequence number Lambda cannot be told which record failed: fail the whole batch.
      if (!sequenceNumber) {
        throw new InvalidStreamEventError(
          'a stream record that could not be handled has no dynamodb.SequenceNumber; the batch is retried whole',
        );
      }
      return { itemIdentifier: sequenceNumber };
    });
    return { batchItemFailures };
  };
}

function streamRecordsOf(event: unknown): BuildStreamRecord[] {
  const records = (event as { Records?: unknown } | null | undefined)?.Records;
  if (!Array.isArray(records)) {
    throw new InvalidStreamEventError(
      'The notifier expects a DynamoDB stream event ({"Records": [...]}); configure it only with the ' +
        "builds table's stream as its event source.",
    );
  }
  return records as BuildStreamRecord[];
}

export function notifierDependencies(config: LambkinConfig, logger: Logger): BuildStreamDependencies {
  return createNotifierDependencies(config, logger);
}

export const handler = createNotifierHandler(async () =>
  notifierDependencies(await loadFunctionConfig('notifier'), createJsonLogger()),
);
