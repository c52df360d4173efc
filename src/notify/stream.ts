/**
 * Notifications in the cloud come from one place: the builds table's DynamoDB stream. Whichever
 * function changed a build (the webhook queueing or cancelling it, the builder, the sweeper, the
 * on-failure function, the CLI), its stream record reaches the notifier function, and this module
 * decides which records are state changes and hands those to the BuildNotifier.
 *
 * Only a change of `state` notifies: the notifier itself writes the build again (the Slack message
 * reference), and so does the status reporting (`reportedState`); notifying on those writes would
 * post twice or loop. Plain data only: the Lambda adapter is src/handlers/notifier.ts.
 */
import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import { buildLabel, type BuildRecord } from '../core/build.js';
import type { NotifiedBuild } from '../core/notifications.js';
import { isTerminal } from '../core/state-machine.js';
import { LambkinError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { buildRecordOfItem, isBuildItemKey } from '../store/builds.js';
import type { BuildObserver } from './observer.js';
import { type BuildStore } from '../core/ports.js';

/** A DynamoDB image: attribute name to its typed value (`{S: …}`, `{N: …}`, `{M: …}`, …). */
export type StreamImage = Record<string, AttributeValue>;

/** One DynamoDB stream record, as the stream delivers it (the fields read here). */
export interface BuildStreamRecord {
  eventID?: string;
  eventName?: string;
  dynamodb?: {
    Keys?: StreamImage;
    NewImage?: StreamImage;
    OldImage?: StreamImage;
    /** Identifies the record in a batch failure report. */
    SequenceNumber?: string;
  };
}

/** Whether a record notifies, and why not when it does not. */
export type StreamDecision =
  | { notify: true; build: NotifiedBuild }
  | { notify: false; reason: 'removed' | 'not a build' | 'state unchanged' };

/** The stream's records are not what a NEW_AND_OLD_IMAGES stream of the builds table sends. */
export class BuildStreamRecordError extends LambkinError {
  constructor(message: string) {
    super('BUILD_STREAM_RECORD', message);
  }
}

/**
 * INSERT of a build (a queued build) and MODIFY whose `state` differs from the old image's notify;
 * REMOVE (a delivery guard's TTL), the counter and delivery-guard items, and writes that leave the
 * state as it was do not.
 */
export function decideStreamRecord(record: BuildStreamRecord): StreamDecision {
  const { eventName } = record;
  if (eventName === 'REMOVE') return { notify: false, reason: 'removed' };
  if (eventName !== 'INSERT' && eventName !== 'MODIFY') {
    throw new BuildStreamRecordError(
      `stream record ${record.eventID ?? '(no id)'} has event name ${JSON.stringify(eventName)}, ` +
        'not INSERT, MODIFY or REMOVE',
    );
  }
  const newImage = record.dynamodb?.NewImage;
  if (!newImage) {
    throw new BuildStreamRecordError(
      `stream record ${record.eventID ?? '(no id)'} (${eventName}) has no new image: the builds ` +
        "table's stream must send NEW_AND_OLD_IMAGES",
    );
  }
  const item = unmarshall(newImage);
  if (!isBuildItemKey(item) || typeof item.state !== 'string')
    return { notify: false, reason: 'not a build' };
  if (eventName === 'MODIFY') {
    const oldImage = record.dynamodb?.OldImage;
    if (!oldImage) {
      throw new BuildStreamRecordError(
        `stream record ${record.eventID ?? '(no id)'} (MODIFY) has no old image: the builds table's ` +
          'stream must send NEW_AND_OLD_IMAGES',
      );
    }
    if (unmarshall(oldImage).state === item.state) return { notify: false, reason: 'state unchanged' };
  }
  return { notify: true, build: buildRecordOfItem(item) as NotifiedBuild };
}

export interface BuildStreamDependencies {
  notifier: BuildObserver;
  /**
   * Reads a finished build's Slack message reference when its image does not carry it yet (the
   * start message was recorded after the build ended); without it the image is used as it is.
   */
  builds?: Pick<BuildStore, 'getBuild'>;
  logger: Logger;
}

export interface BuildStreamResult {
  notified: number;
  skipped: number;
  /**
   * Sequence numbers of the records left unhandled because handling one threw: that record's and
   * every later one's, in order. The stream delivers them again (Lambda's batch item failures), so
   * no change is lost and the order of one build's changes is kept.
   */
  unhandled: (string | undefined)[];
}

/**
 * Hands each state change of the batch to the notifier, one record after another (a build's start
 * message must be recorded before its end updates it). The notifier never throws for Slack, SNS or
 * the page; what may throw is reading the table or a malformed record, and then this record and the
 * rest of the batch are reported unhandled, to be delivered again.
 */
export async function notifyBuildStream(
  deps: BuildStreamDependencies,
  records: readonly BuildStreamRecord[],
): Promise<BuildStreamResult> {
  const result: BuildStreamResult = { notified: 0, skipped: 0, unhandled: [] };
  for (const [index, record] of records.entries()) {
    try {
      const decision = decideStreamRecord(record);
      if (!decision.notify) {
        result.skipped += 1;
        continue;
      }
      await deps.notifier.buildChanged(await withSlackMessage(deps, decision.build));
      result.notified += 1;
    } catch (error) {
      result.unhandled = records.slice(index).map((left) => left.dynamodb?.SequenceNumber);
      deps.logger.error('could not handle a builds table stream record; it will be delivered again', {
        eventId: record.eventID,
        sequenceNumber: record.dynamodb?.SequenceNumber,
        unhandled: result.unhandled.length,
        error,
      });
      break;
    }
  }
  return result;
}

/**
 * The image of a build that just ended may predate the start message's reference: the notifier
 * records it while handling the `running` record, which can be after the build already ended.
 */
async function withSlackMessage(deps: BuildStreamDependencies, build: NotifiedBuild): Promise<BuildRecord> {
  if (!deps.builds || !isTerminal(build.state) || build.slackMessage) return build;
  const current = (await deps.builds.getBuild(build)) as NotifiedBuild | undefined;
  if (!current?.slackMessage) return build;
  deps.logger.info('the Slack message of the build was recorded after it ended; updating that one', {
    build: buildLabel(build),
  });
  return { ...build, slackMessage: current.slackMessage } as NotifiedBuild;
}
