/**
 * Pull request commits held for approval (App mode, `requireApproval`), in the settings table beside
 * the installations' record: one item per repository and commit, `approval#owner/name@sha` (the
 * repository lowercased: GitHub names are case-insensitive). Settings use the `scope` keys `global`
 * and `repo#…`, installations `installation#…`, so the prefixes cannot collide.
 *
 * Taking a hold is one conditional delete returning the item, so of two clicks on "Approve and run"
 * (or two deliveries of one click) exactly one gets the build. The table has no time to live: an
 * expired hold stays until it is taken (and refused as expired) or replaced by a hold of the same
 * commit; holds are small and few.
 */
import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { DeleteCommand, PutCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { LambkinError } from '../core/errors.js';
import type { ApprovalStore, HeldBuild } from '../core/ports.js';

const PREFIX = 'approval#';
/** How long a held commit may still be approved. */
export const APPROVAL_HOLD_MS = 30 * 24 * 60 * 60 * 1000;

/** A DynamoDB call of the approval store failed; says which table to check. */
export class ApprovalStoreError extends LambkinError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('APPROVAL_STORE', message, options);
  }
}

/** The item key of a held commit. */
export function approvalKey(repo: string, sha: string): string {
  return `${PREFIX}${repo.toLowerCase()}@${sha}`;
}

function isConditionFailure(error: unknown): boolean {
  return (
    error instanceof ConditionalCheckFailedException ||
    (error instanceof Error && error.name === 'ConditionalCheckFailedException')
  );
}

function isHeldBuild(value: unknown): value is HeldBuild {
  const candidate = value as Partial<HeldBuild> | undefined;
  return (
    typeof candidate?.repo === 'string' &&
    typeof candidate.sha === 'string' &&
    typeof candidate.ref === 'string' &&
    typeof candidate.event === 'string'
  );
}

export class DynamoApprovalStore implements ApprovalStore {
  constructor(
    private readonly documents: DynamoDBDocumentClient,
    private readonly tableName: string,
    private readonly holdMs = APPROVAL_HOLD_MS,
  ) {}

  async hold(candidate: HeldBuild, at: number): Promise<void> {
    await this.call(`hold ${candidate.repo}@${candidate.sha} for approval`, () =>
      this.documents.send(
        new PutCommand({
          TableName: this.tableName,
          Item: {
            scope: approvalKey(candidate.repo, candidate.sha),
            candidate,
            heldAt: at,
            expiresAt: at + this.holdMs,
          },
        }),
      ),
    );
  }

  async take(repo: string, sha: string, now: number): Promise<HeldBuild | undefined> {
    try {
      const result = await this.documents.send(
        new DeleteCommand({
          TableName: this.tableName,
          Key: { scope: approvalKey(repo, sha) },
          ConditionExpression: 'attribute_exists(#scope) AND #expiresAt > :now',
          ExpressionAttributeNames: { '#scope': 'scope', '#expiresAt': 'expiresAt' },
          ExpressionAttributeValues: { ':now': now },
          ReturnValues: 'ALL_OLD',
        }),
      );
      const candidate: unknown = result.Attributes?.candidate;
      if (!isHeldBuild(candidate)) {
        throw new ApprovalStoreError(
          `The held build ${approvalKey(repo, sha)} in ${this.tableName} is not a build request; ` +
            'push a new commit to the pull request to hold it again.',
        );
      }
      return candidate;
    } catch (error) {
      // Nothing held, taken by a concurrent click, or expired.
      if (isConditionFailure(error)) return undefined;
      if (error instanceof ApprovalStoreError) throw error;
      throw this.failure(`take the hold of ${repo}@${sha}`, error);
    }
  }

  private async call<T>(action: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (error) {
      throw this.failure(action, error);
    }
  }

  private failure(action: string, error: unknown): ApprovalStoreError {
    const detail = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    return new ApprovalStoreError(
      `Could not ${action} in the DynamoDB table ${this.tableName} (${detail}). Check that the table ` +
        'exists and that this function may put and delete its approval#* items (LAMBKIN_SETTINGS_TABLE).',
      { cause: error },
    );
  }
}
