/**
 * The local stack's stand-in for per-build upload credentials (src/aws/sts.ts in AWS): each build's
 * forms and URLs are signed with a key made for it alone, which the stack's storage proxy accepts
 * for presigned requests only, until the forms expire (src/local/stack-credentials.ts). The
 * runner's input then holds no credential of the stack, as in the cloud.
 */
import type { S3Client } from '@aws-sdk/client-s3';
import type { BuildGrants, BuildSigner } from '../core/ports.js';
import type { BuildKey } from '../core/build.js';
import type { AccessKey, StackCredentials } from './stack-credentials.js';

/** A key outlives its forms by this much: a form signed at the end of its validity still uploads. */
const KEY_GRACE_MS = 5 * 60 * 1000;

export class EphemeralBuildSigner implements BuildSigner {
  constructor(
    private readonly credentials: StackCredentials,
    private readonly s3: (credentials: AccessKey) => S3Client,
  ) {}

  forBuild(_build: BuildKey, grants: BuildGrants, expiresInSeconds: number): Promise<S3Client> {
    return Promise.resolve(
      this.s3(this.credentials.issueBuildKey(expiresInSeconds * 1000 + KEY_GRACE_MS, grants)),
    );
  }
}
