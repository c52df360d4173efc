/**
 * The bucket's and the settings table's side of CodeBuild runs:
 *
 *   runner-input/<owner>/<repo>/<number>[/<job>]/<random>.json          the RunnerInput, read once
 *   runner-input/<owner>/<repo>/<number>[/<job>]/<random>.outcome.json  `{ outcome, afterword }`
 *   runner/<sha256>.mjs                                                 the runner bundle
 *
 * and the month's CodeBuild minutes (`usage#codebuild#<yyyy-mm>` in the settings table, ADDed).
 * The input holds a trusted build's secrets and deploy grant: it lives minutes, is deleted by the
 * runner once read and by the controller when the run ends, and only presigned URLs reach CodeBuild.
 */
import { createHash } from 'node:crypto';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { GetCommand, UpdateCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { LambkinError } from '../core/errors.js';
import type { RemoteRunObjects, RemoteUsage } from '../core/ports.js';

export const RUNNER_INPUT_PREFIX = 'runner-input/';
export const RUNNER_BUNDLE_PREFIX = 'runner/';
/** Largest outcome object the controller reads (an honest one is a few KiB). */
const MAX_OUTCOME_BYTES = 1024 * 1024;

export class RemoteRunStoreError extends LambkinError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('REMOTE_RUN_STORE', message, options);
  }
}

/** The runner bundle's code: the file beside the controller's bundle, or the local runner program. */
export type RunnerBundleSource = () => Promise<Buffer>;

function statusOf(error: unknown): number | undefined {
  return (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
}

function isMissing(error: unknown): boolean {
  const status = statusOf(error);
  return (error instanceof Error && error.name === 'NoSuchKey') || status === 404;
}

export class S3RemoteRunObjects implements RemoteRunObjects {
  private bundle: Promise<{ key: string; sha256: string }> | undefined;

  constructor(
    private readonly s3: S3Client,
    private readonly bucket: string,
    private readonly runnerBundle_: RunnerBundleSource,
  ) {}

  private checkKey(key: string): void {
    if (!key.startsWith(RUNNER_INPUT_PREFIX) || key.includes('..')) {
      throw new RemoteRunStoreError(`refused: ${key} is not a runner input key`);
    }
  }

  async putInput(key: string, body: string): Promise<void> {
    this.checkKey(key);
    await this.s3.send(
      new PutObjectCommand({
        Bucket: this.bucket,
        Key: key,
        Body: Buffer.from(body, 'utf8'),
        ContentType: 'application/json',
        CacheControl: 'no-store',
      }),
    );
  }

  async presignInput(key: string, expiresIn: number): Promise<{ getUrl: string; deleteUrl: string }> {
    this.checkKey(key);
    const [getUrl, deleteUrl] = await Promise.all([
      getSignedUrl(this.s3, new GetObjectCommand({ Bucket: this.bucket, Key: key }), { expiresIn }),
      getSignedUrl(this.s3, new DeleteObjectCommand({ Bucket: this.bucket, Key: key }), { expiresIn }),
    ]);
    return { getUrl, deleteUrl };
  }

  async presignOutcome(
    key: string,
    expiresIn: number,
  ): Promise<{ url: string; headers: Record<string, string> }> {
    this.checkKey(key);
    const url = await getSignedUrl(
      this.s3,
      new PutObjectCommand({ Bucket: this.bucket, Key: key, IfNoneMatch: '*' }),
      { expiresIn, signableHeaders: new Set(['if-none-match']) },
    );
    return { url, headers: { 'if-none-match': '*' } };
  }

  async readOutcome(key: string): Promise<string | undefined> {
    this.checkKey(key);
    try {
      const response = await this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      if ((response.ContentLength ?? 0) > MAX_OUTCOME_BYTES) return undefined;
      return (await response.Body?.transformToString('utf-8')) ?? '';
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw new RemoteRunStoreError(`could not read the outcome s3://${this.bucket}/${key}`, {
        cause: error,
      });
    }
  }

  async remove(keys: readonly string[]): Promise<void> {
    await Promise.all(
      keys.map(async (key) => {
        this.checkKey(key);
        try {
          await this.s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
        } catch (error) {
          if (!isMissing(error)) throw error;
        }
      }),
    );
  }

  async runnerBundle(expiresIn: number): Promise<{ key: string; sha256: string; url: string }> {
    this.bundle ??= this.uploadBundle().catch((error: unknown) => {
      this.bundle = undefined; // the next run tries again
      throw error;
    });
    const { key, sha256 } = await this.bundle;
    const url = await getSignedUrl(this.s3, new GetObjectCommand({ Bucket: this.bucket, Key: key }), {
      expiresIn,
    });
    return { key, sha256, url };
  }

  /** Once per process: named by its digest, so a key once written never changes. */
  private async uploadBundle(): Promise<{ key: string; sha256: string }> {
    const code = await this.runnerBundle_();
    const sha256 = createHash('sha256').update(code).digest('hex');
    const key = `${RUNNER_BUNDLE_PREFIX}${sha256}.mjs`;
    try {
      await this.s3.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return { key, sha256 };
    } catch (error) {
      if (!isMissing(error) && statusOf(error) !== 403) throw error;
    }
    await this.s3.send(
      new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: code, ContentType: 'text/javascript' }),
    );
    return { key, sha256 };
  }
}

const USAGE_SCOPE = 'usage#codebuild#';

/** The month's CodeBuild minutes, one item per month in the settings table. */
export class DynamoRemoteUsage implements RemoteUsage {
  constructor(
    private readonly documents: DynamoDBDocumentClient,
    private readonly tableName: string,
  ) {}

  async minutesOf(month: string): Promise<number> {
    const result = await this.documents.send(
      new GetCommand({
        TableName: this.tableName,
        Key: { scope: USAGE_SCOPE + month },
        ConsistentRead: true,
      }),
    );
    const minutes: unknown = result.Item?.['minutes'];
    return typeof minutes === 'number' ? minutes : 0;
  }

  async addMinutes(month: string, minutes: number): Promise<void> {
    await this.documents.send(
      new UpdateCommand({
        TableName: this.tableName,
        Key: { scope: USAGE_SCOPE + month },
        UpdateExpression: 'ADD #minutes :minutes',
        ExpressionAttributeNames: { '#minutes': 'minutes' },
        ExpressionAttributeValues: { ':minutes': minutes },
      }),
    );
  }
}
