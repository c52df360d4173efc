/**
 * Short-lived credentials from STS: grants of the deploy step's role (the DeployRoleGrants port,
 * src/core/ports.ts: presigned AssumeRole requests the runner redeems after its tests passed), and
 * the runner's upload credentials, limited by a session policy to the build's own keys, so that the
 * signed forms and URLs the runner holds name no credential of the controller.
 */
import { createHash, createHmac } from 'node:crypto';
import type { S3Client } from '@aws-sdk/client-s3';
import { AssumeRoleCommand, STSClient } from '@aws-sdk/client-sts';
import { SignatureV4 } from '@smithy/signature-v4';
import type { BuildKey } from '../core/build.js';
import type { DeployCredentialGrant } from '../core/protocol.js';
import { LambkinError, messageOf } from '../core/errors.js';
import { recordCommands } from './command-log.js';
import {
  type BuildGrants,
  type BuildSigner,
  DeployRoleError,
  type DeployRoleGrants,
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

/** STS's query API version (AssumeRole's `Version`). */
const STS_API_VERSION = '2011-06-15';
/** SigV4 presigned URLs live at most seven days. */
const MAX_PRESIGNED_SECONDS = 7 * 24 * 3600;

/**
 * Presigned STS AssumeRole requests of the deploy role, signed (SigV4, in the query) with the STS
 * client's own credentials, i.e. the builder's. Signing calls nothing: the role is assumed when,
 * and only if, the runner sends the request, after install and test passed. The builder's role
 * must still be allowed sts:AssumeRole on the deploy role (the template's AssumeDeployRoles),
 * since STS checks the signer's permissions when the request arrives.
 */
export class StsDeployRoleGrants implements DeployRoleGrants {
  constructor(
    private readonly sts: STSClient,
    /** AWS_REGION of the deploy step when the settings name none. */
    private readonly defaultRegion: string,
    /** STS's endpoint; default AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL, else the region's. */
    private readonly options: { endpoint?: string } = {},
  ) {}

  async grant(request: DeployRoleRequest): Promise<DeployCredentialGrant> {
    try {
      const region = await this.sts.config.region();
      const endpoint = new URL(this.options.endpoint ?? defaultStsEndpoint(region));
      const credentials = await this.sts.config.credentials();
      const signer = new SignatureV4({
        credentials,
        region,
        service: 'sts',
        sha256: NodeSha256,
        applyChecksum: false,
      });
      const expiresIn = Math.min(Math.max(Math.ceil(request.expiresInSeconds), 1), MAX_PRESIGNED_SECONDS);
      const signingDate = new Date();
      const presigned = await signer.presign(
        {
          method: 'GET',
          protocol: endpoint.protocol,
          hostname: endpoint.hostname,
          ...(endpoint.port ? { port: Number(endpoint.port) } : {}),
          path: endpoint.pathname || '/',
          query: {
            Action: 'AssumeRole',
            Version: STS_API_VERSION,
            RoleArn: request.roleArn,
            RoleSessionName: roleSessionName(request.sessionName),
            DurationSeconds: String(roleDurationSeconds(request.durationSeconds)),
          },
          headers: { host: endpoint.host },
        },
        { expiresIn, signingDate },
      );
      const url = new URL(endpoint.origin);
      url.pathname = presigned.path;
      for (const [name, value] of Object.entries(presigned.query ?? {})) {
        for (const item of Array.isArray(value) ? value : [value ?? '']) url.searchParams.append(name, item);
      }
      return {
        roleArn: request.roleArn,
        region: request.region ?? this.defaultRegion,
        url: url.toString(),
        expiresAt: signingDate.getTime() + expiresIn * 1000,
      };
    } catch (error) {
      const message = messageOf(error);
      throw new DeployRoleError(
        `could not sign the AssumeRole request of the deploy role ${request.roleArn}: ${message}`,
        { cause: error },
      );
    }
  }
}

/** STS's endpoint in `region`, or as the standard environment variables override it. */
export function defaultStsEndpoint(region: string, env: NodeJS.ProcessEnv = process.env): string {
  const configured = env.AWS_ENDPOINT_URL_STS ?? env.AWS_ENDPOINT_URL;
  if (configured) return configured;
  return `https://sts.${region}.amazonaws.com${region.startsWith('cn-') ? '.cn' : ''}`;
}

/** SHA-256 as `@smithy/signature-v4` asks for it (HMAC with a key, a digest without). */
class NodeSha256 {
  private hash: ReturnType<typeof createHash> | ReturnType<typeof createHmac>;
  constructor(private readonly secret?: string | ArrayBuffer | ArrayBufferView) {
    this.hash = this.start();
  }
  private start() {
    return this.secret === undefined ? createHash('sha256') : createHmac('sha256', bytesOf(this.secret));
  }
  update(data: string | ArrayBuffer | ArrayBufferView): void {
    this.hash.update(bytesOf(data));
  }
  digest(): Promise<Uint8Array> {
    return Promise.resolve(new Uint8Array(this.hash.digest()));
  }
  reset(): void {
    this.hash = this.start();
  }
}

function bytesOf(data: string | ArrayBuffer | ArrayBufferView): Buffer {
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return Buffer.from(data);
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
      const message = messageOf(error);
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
