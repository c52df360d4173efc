/**
 * DynamoDB stream records as the builds table's stream (NEW_AND_OLD_IMAGES) delivers them to a
 * Lambda event source: images marshalled from items as stored, every field AWS sends.
 */
import { randomUUID } from 'node:crypto';
import { marshall } from '@aws-sdk/util-dynamodb';
import type { BuildStreamRecord } from '../../src/notify/stream.js';

type Item = Record<string, unknown>;

/** A stream record with every field DynamoDB Streams sends (Lambkin reads a few of them). */
export interface AwsStreamRecord extends BuildStreamRecord {
  eventVersion: string;
  eventSource: 'aws:dynamodb';
  awsRegion: string;
  eventSourceARN: string;
  dynamodb: NonNullable<BuildStreamRecord['dynamodb']> & {
    ApproximateCreationDateTime: number;
    SizeBytes: number;
    StreamViewType: 'NEW_AND_OLD_IMAGES';
  };
}

let sequence = 0;

/** What DynamoDB Streams delivers for a write that turned `before` into `after`. */
export function streamRecordOf(
  eventName: 'INSERT' | 'MODIFY' | 'REMOVE',
  after: Item | undefined,
  before?: Item,
): AwsStreamRecord {
  const image = (item: Item) => marshall(item, { removeUndefinedValues: true });
  const key = (after ?? before) as Item;
  const images = {
    ...(after ? { NewImage: image(after) } : {}),
    ...(before ? { OldImage: image(before) } : {}),
  };
  sequence += 1;
  return {
    eventID: randomUUID().replace(/-/g, ''),
    eventName,
    eventVersion: '1.1',
    eventSource: 'aws:dynamodb',
    awsRegion: 'us-east-1',
    dynamodb: {
      ApproximateCreationDateTime: Math.floor(Date.now() / 1000),
      Keys: marshall({ repo: key.repo, number: key.number }),
      ...images,
      SequenceNumber: `4000000000000${String(sequence).padStart(13, '0')}`,
      SizeBytes: JSON.stringify(images).length,
      StreamViewType: 'NEW_AND_OLD_IMAGES',
    },
    eventSourceARN:
      'arn:aws:dynamodb:us-east-1:123456789012:table/lambkin-builds/stream/2030-01-01T00:00:00.000',
  };
}
