/**
 * The local stack's stand-in for per-build upload credentials (src/aws/sts.ts in AWS): the local
 * storage servers accept any key, so each build's forms are signed with a key made for it alone.
 * The runner's input then holds no credential of the stack, as in the cloud.
 */
import { randomBytes } from 'node:crypto';
import type { S3Client } from '@aws-sdk/client-s3';
import { type BuildSigner } from '../core/ports.js';

export class EphemeralBuildSigner implements BuildSigner {
  constructor(
    private readonly s3: (credentials: { accessKeyId: string; secretAccessKey: string }) => S3Client,
  ) {}

  forBuild(): Promise<S3Client> {
    return Promise.resolve(
      this.s3({
        accessKeyId: `LKBUILD${randomBytes(7).toString('hex').toUpperCase()}`,
        secretAccessKey: randomBytes(30).toString('base64'),
      }),
    );
  }
}
