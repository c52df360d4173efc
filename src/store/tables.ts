/**
 * The DynamoDB tables Lambkin uses, as CreateTable inputs. One source for the local stack, the
 * tests and the consistency check against template.yaml.
 */
import type { CreateTableCommandInput } from '@aws-sdk/client-dynamodb';

/** Index names on the builds table. */
export const BUILD_INDEXES = {
  /** PK `repoSha` = `owner/name#sha`, SK `number`: the builds of a commit. */
  bySha: 'bySha',
  /** PK `repoTarget` = `owner/name#branch:main` or `owner/name#pr:12`, SK `number`: latest of a branch/PR. */
  byTarget: 'byTarget',
  /**
   * Sparse: PK `unfinished` — `unfinished` while a build is queued or running, `unreported` once it
   * ended until GitHub acknowledged its final status, absent after — SK `deadline` (epoch ms). The
   * sweeper queries builds past their deadline, and ended builds whose status GitHub never got,
   * across all repos.
   */
  byDeadline: 'byDeadline',
} as const;

export function buildsTableDefinition(tableName: string): CreateTableCommandInput {
  return {
    TableName: tableName,
    BillingMode: 'PAY_PER_REQUEST',
    AttributeDefinitions: [
      { AttributeName: 'repo', AttributeType: 'S' },
      { AttributeName: 'number', AttributeType: 'N' },
      { AttributeName: 'repoSha', AttributeType: 'S' },
      { AttributeName: 'repoTarget', AttributeType: 'S' },
      { AttributeName: 'unfinished', AttributeType: 'S' },
      { AttributeName: 'deadline', AttributeType: 'N' },
    ],
    KeySchema: [
      { AttributeName: 'repo', KeyType: 'HASH' },
      { AttributeName: 'number', KeyType: 'RANGE' },
    ],
    GlobalSecondaryIndexes: [
      {
        IndexName: BUILD_INDEXES.bySha,
        KeySchema: [
          { AttributeName: 'repoSha', KeyType: 'HASH' },
          { AttributeName: 'number', KeyType: 'RANGE' },
        ],
        Projection: { ProjectionType: 'ALL' },
      },
      {
        IndexName: BUILD_INDEXES.byTarget,
        KeySchema: [
          { AttributeName: 'repoTarget', KeyType: 'HASH' },
          { AttributeName: 'number', KeyType: 'RANGE' },
        ],
        Projection: { ProjectionType: 'ALL' },
      },
      {
        IndexName: BUILD_INDEXES.byDeadline,
        KeySchema: [
          { AttributeName: 'unfinished', KeyType: 'HASH' },
          { AttributeName: 'deadline', KeyType: 'RANGE' },
        ],
        Projection: { ProjectionType: 'ALL' },
      },
    ],
  };
}

export function settingsTableDefinition(tableName: string): CreateTableCommandInput {
  return {
    TableName: tableName,
    BillingMode: 'PAY_PER_REQUEST',
    AttributeDefinitions: [{ AttributeName: 'scope', AttributeType: 'S' }],
    KeySchema: [{ AttributeName: 'scope', KeyType: 'HASH' }],
  };
}
