/**
 * Short-lived credentials from STS: the deploy step's role (the DeployRoleAssumer port, src/core/ports.ts), and the
 * runner's upload credentials, limited by a session policy to the build's own keys, so that the
 * signed forms and URLs the runner holds name no credential of the controller.
 */
import type { S3Client } from '@aws-sdk/client-s3';
import { AssumeRoleCommand, STSClient } from '@aws-sdk/client-sts';
import type { BuildKey } from '../core/build.js';
import type { DeployCredentials } from '../core/protocol.js';
import { LambkinError } from '../core/errors.js';
import { recordCommands } from './command-log.js';
import {
  type BuildGrants,
  type BuildSigner,
  DeployRoleError,
  type DeployRoleAssumer,
  type DeployRoleRequest,
} from '../core/ports.js';

export function createStsClient(options: { region?: string; endpoint?: string } = {}): STSClient {
  return recordCommands(
    new STSClient({
      ...(options.region ? { region: options.region } : {}),
      ...(options.endpoint ? { endpoint: options.endpoint } : {}),
    }),
  );
}

export interface RoleCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken: string;
  expiresAt: number;
}

async function assumeRole(
  sts: STSClient,
  input: { roleArn: string; sessionName: string; durationSeconds: number; policy?: string },
): Promise<RoleCredentials> {
  const answer = await sts.send(
    new AssumeRoleCommand({
      RoleArn: input.roleArn,
      RoleSessionName: roleSessionName(input.sessionName),
      DurationSeconds: roleDurationSeconds(input.durationSeconds),
      ...(input.policy ? { Policy: input.policy } : {}),
    }),
  );
  const credentials = answer.Credentials;
  if (!credentials?.AccessKeyId || !credentials.SecretAccessKey || !credentials.SessionToken) {
    throw new Error('STS answered AssumeRole without credentials');
  }
  return {
    accessKeyId: credentials.AccessKeyId,
    secretAccessKey: credentials.SecretAccessKey,
    sessionToken: credentials.SessionToken,
    expiresAt: credentials.Expiration?.getTime() ?? Date.now() + input.durationSeconds * 1000,
  };
}

export class StsDeployRoleAssumer implements DeployRoleAssumer {
  constructor(
    private readonly sts: STSClient,
    /** AWS_REGION of the deploy step when the settings name none. */
    private readonly defaultRegion: string,
  ) {}

  async assume(request: DeployRoleRequest): Promise<DeployCredentials> {
    try {
      const credentials = await assumeRole(this.sts, request);
      return { ...credentials, region: request.region ?? this.defaultRegion, roleArn: request.roleArn };
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      throw new DeployRoleError(
        `could not assume the deploy role ${request.roleArn}: ${message}. Check that its trust policy ` +
          "lets the builder's role assume it, or change deploy.roleArn in the settings",
        { cause: error },
      );
    }
  }
}

/** Upload credentials could not be made: the build ends `error` (nothing was run). */
export class UploadCredentialsError extends LambkinError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('UPLOAD_CREDENTIALS', message, options);
  }
}

/** A session policy allowing exactly the build's grants in `bucket`. */
export function grantsPolicy(bucket: string, grants: BuildGrants): string {
  const arn = (prefix: string) => `arn:aws:s3:::${bucket}/${prefix}${prefix.endsWith('/') ? '*' : ''}`;
  const statements = [];
  if (grants.write.length > 0) {
    statements.push({ Effect: 'Allow', Action: ['s3:PutObject'], Resource: grants.write.map(arn) });
  }
  if (grants.read.length > 0) {
    statements.push({ Effect: 'Allow', Action: ['s3:GetObject'], Resource: grants.read.map(arn) });
  }
  return JSON.stringify({ Version: '2012-10-17', Statement: statements });
}

/**
 * Signs the runner's forms and URLs with credentials of an upload role, assumed per build with a
 * session policy naming only that build's keys: whatever the runner (or a build step that reads
 * its memory) learns can write its own log and, for trusted builds, its cache entry, nothing else.
 */
export class StsBuildSigner implements BuildSigner {
  constructor(
    private readonly sts: STSClient,
    private readonly options: {
      roleArn: string;
      bucket: string;
      s3: (credentials: RoleCredentials) => S3Client;
    },
  ) {}

  async forBuild(build: BuildKey, grants: BuildGrants, expiresInSeconds: number): Promise<S3Client> {
    try {
      const credentials = await assumeRole(this.sts, {
        roleArn: this.options.roleArn,
        sessionName: `lambkin-upload-${build.number}-${build.repo}`,
        durationSeconds: expiresInSeconds,
        policy: grantsPolicy(this.options.bucket, grants),
      });
      return this.options.s3(credentials);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      throw new UploadCredentialsError(
        `could not assume the upload role ${this.options.roleArn}: ${message}. The template creates it ` +
          "and lets the builder assume it; check LAMBKIN_UPLOAD_ROLE and the role's trust policy",
        { cause: error },
      );
    }
  }
}

/** STS role session names: 2–64 characters of `[\w+=,.@-]`. */
export function roleSessionName(text: string): string {
  const cleaned = text.replace(/[^\w+=,.@-]+/g, '-').slice(0, 64);
  return cleaned.length >= 2 ? cleaned : `lambkin-${cleaned}`;
}

/** STS accepts 900 s to the role's maximum session (at most 12 h). */
export function roleDurationSeconds(seconds: number): number {
  return Math.min(Math.max(Math.ceil(seconds), 900), 12 * 3600);
}
