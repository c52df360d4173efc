/**
 * The dependency cache on S3, the controller's side: where a build's cache entry lives and
 * presigned URLs for the runner (which holds no credentials).
 *
 *   cache/<owner>/<repo>/node<major>-<platform>-<arch>/<lockfile blob sha>.tar.<zst|br|gz>
 *
 * The extension is the codec (src/core/cache-key.ts): the best the builders' runtime can read, so a
 * runner is never handed an archive it could not unpack.
 *
 * The same storage keeps the Node.js package tarballs jobs run on (the `node` matrix key), one per
 * version, arch and digest, shared by every repository (`locateNode`, `presignNode`):
 *
 *   cache/_node/node-<version>-linux-<arch>-<sha512 hex of the tarball>.tgz
 *
 * The key is derived without the checkout, from the lockfile's git blob sha at the build's commit
 * (the git trees API), so the controller and the runner agree on it before the source is fetched;
 * the runner checks its checkout's lockfile against the same sha. One object per key, written once
 * by a trusted build and never replaced: a changed lockfile is a new key.
 */
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { CacheAccess, NodeCacheAccess } from '../core/protocol.js';
import type { RepoName } from '../core/build.js';
import {
  CACHE_PREFIX,
  cacheKeyOf,
  currentRuntime,
  preferredCacheCodec,
  type CacheCodec,
  type CacheRuntime,
} from '../core/cache-key.js';
import { LambkinError } from '../core/errors.js';
import {
  NODE_ARCHES,
  NODE_CACHE_PREFIX,
  NODE_TARBALL_MAX_BYTES,
  nodeCacheKey,
} from '../core/node-version.js';
import type { LockfileBlob } from '../github/trees.js';
import {
  type CacheLocation,
  type CachePlanner,
  type NodeCacheLocation,
  type NodeCacheSubject,
} from '../core/ports.js';

/** Largest archive a build may upload, unless the planner is told otherwise. */
export const DEFAULT_CACHE_MAX_BYTES = 2 * 1024 ** 3;

/** An S3 call of the cache planner failed; the controller then builds without the cache. */
export class CacheStoreError extends LambkinError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('CACHE_STORE', message, options);
  }
}

export interface S3CachePlannerOptions {
  /** The npm lockfile at a commit (src/github/trees.ts readLockfileBlob, bound to a client). */
  lockfiles: { readLockfileBlob(repo: RepoName, sha: string): Promise<LockfileBlob | undefined> };
  /** The runner's runtime; default this process's (the builder functions share one runtime). */
  runtime?: CacheRuntime;
  /** Largest archive a build may upload; default DEFAULT_CACHE_MAX_BYTES. */
  maxBytes?: number;
  /** The archives' codec; default the best this process's runtime has (it is the runners' too). */
  codec?: CacheCodec;
}

export class S3CachePlanner implements CachePlanner {
  private readonly runtime: CacheRuntime;
  private readonly maxBytes: number;

  constructor(
    private readonly s3: S3Client,
    private readonly bucket: string,
    private readonly options: S3CachePlannerOptions,
  ) {
    this.runtime = options.runtime ?? currentRuntime();
    this.maxBytes = options.maxBytes ?? DEFAULT_CACHE_MAX_BYTES;
    if (!Number.isSafeInteger(this.maxBytes) || this.maxBytes < 1) {
      throw new CacheStoreError(
        `The cache's maxBytes must be a positive whole number (got ${this.maxBytes}).`,
      );
    }
  }

  async locate(
    build: { repo: RepoName; sha: string },
    options: { nodeVersion?: string } = {},
  ): Promise<CacheLocation | undefined> {
    const lockfile = await this.options.lockfiles.readLockfileBlob(build.repo, build.sha);
    if (!lockfile) return undefined;
    const key = cacheKeyOf(
      build.repo,
      this.runtime,
      lockfile.sha,
      options.nodeVersion,
      this.options.codec ?? preferredCacheCodec(),
    );
    return { key, lockfileSha: lockfile.sha, exists: await this.exists(key) };
  }

  async presign(
    location: CacheLocation,
    signer: S3Client | undefined,
    options: { write: boolean; expiresInSeconds: number },
  ): Promise<CacheAccess> {
    if (!location.key.startsWith(CACHE_PREFIX)) {
      throw new CacheStoreError(
        `Refused to presign ${JSON.stringify(location.key)}: cache keys start with ${CACHE_PREFIX}. Use locate().`,
      );
    }
    const client = signer ?? this.s3;
    const expiresIn = options.expiresInSeconds;
    const getUrl = await this.call('presign a download of', location.key, () =>
      getSignedUrl(client, new GetObjectCommand({ Bucket: this.bucket, Key: location.key }), { expiresIn }),
    );
    const access: CacheAccess = {
      key: location.key,
      lockfileSha: location.lockfileSha,
      getUrl,
      stored: location.exists,
      maxBytes: this.maxBytes,
    };
    if (!options.write) return access;
    return { ...access, ...(await this.presignPut(client, location.key, expiresIn)) };
  }

  /** Where the job's Node.js package tarball is kept, and whether it is stored yet. */
  async locateNode(node: NodeCacheSubject): Promise<NodeCacheLocation> {
    let key: string;
    try {
      if (!(NODE_ARCHES as readonly string[]).includes(node.arch)) {
        throw new Error(`there is no official Node.js package for ${JSON.stringify(node.arch)}`);
      }
      key = nodeCacheKey(node.version, node.arch, node.integrity);
    } catch (error) {
      throw new CacheStoreError(
        `Cannot name the Node.js ${JSON.stringify(node.version)} tarball in the cache: ${describe(error)}.`,
        { cause: error },
      );
    }
    return { key, exists: await this.exists(key) };
  }

  /**
   * Presigned URLs of a Node.js package tarball: a GET always; a PUT only with `write` and only
   * when nothing is stored at the key yet (signed with `If-None-Match: *` like `presign`'s).
   */
  async presignNode(
    location: NodeCacheLocation,
    signer: S3Client | undefined,
    options: { write: boolean; expiresInSeconds: number },
  ): Promise<NodeCacheAccess> {
    if (!location.key.startsWith(NODE_CACHE_PREFIX) || location.key.includes('..')) {
      throw new CacheStoreError(
        `Refused to presign ${JSON.stringify(location.key)}: Node.js tarballs are kept under ` +
          `${NODE_CACHE_PREFIX}. Use locateNode().`,
      );
    }
    const client = signer ?? this.s3;
    const expiresIn = options.expiresInSeconds;
    const getUrl = await this.call('presign a download of', location.key, () =>
      getSignedUrl(client, new GetObjectCommand({ Bucket: this.bucket, Key: location.key }), { expiresIn }),
    );
    const access: NodeCacheAccess = {
      key: location.key,
      getUrl,
      stored: location.exists,
      maxBytes: Math.min(this.maxBytes, NODE_TARBALL_MAX_BYTES),
    };
    if (!options.write || location.exists) return access;
    return { ...access, ...(await this.presignPut(client, location.key, expiresIn)) };
  }

  /**
   * A PUT signed with `If-None-Match: *`: S3 then refuses to replace an object stored meanwhile
   * (by a concurrent build), so a key once written never changes under the builds restoring it.
   */
  private async presignPut(
    client: S3Client,
    key: string,
    expiresIn: number,
  ): Promise<{ putUrl: string; putHeaders: Record<string, string> }> {
    const putUrl = await this.call('presign an upload of', key, () =>
      getSignedUrl(client, new PutObjectCommand({ Bucket: this.bucket, Key: key, IfNoneMatch: '*' }), {
        expiresIn,
        signableHeaders: new Set(['if-none-match']),
      }),
    );
    return { putUrl, putHeaders: { 'if-none-match': '*' } };
  }

  private async exists(key: string): Promise<boolean> {
    try {
      await this.s3.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return true;
    } catch (error) {
      const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      // S3 answers 403 instead of 404 for a missing key to a caller that may not list that prefix.
      // Either way nothing usable is there; the worst case is one build saving again.
      if (status === 404 || status === 403) return false;
      throw new CacheStoreError(
        `Could not look up the dependency cache s3://${this.bucket}/${key} (${describe(error)}). ` +
          'Check that the bucket exists and that the builder may read cache/ (LAMBKIN_BUCKET); ' +
          'the build runs without the cache meanwhile.',
        { cause: error },
      );
    }
  }

  private async call<T>(action: string, key: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (error) {
      throw new CacheStoreError(`Could not ${action} s3://${this.bucket}/${key} (${describe(error)}).`, {
        cause: error,
      });
    }
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
