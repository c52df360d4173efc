/**
 * The keys the local stack accepts. One per-stack key, made at start (32 random bytes), signs
 * every call of the stack's own clients and of the CLI's `--local` (through `stack.json`, mode
 * 0600); no build ever gets it. Per-build keys (EphemeralBuildSigner) sign only the presigned URLs
 * and upload forms a build's runner gets, and are accepted only for those, only for the keys the
 * build was granted (as the session policy of the cloud's per-build credentials), until they expire.
 */
import { randomBytes } from 'node:crypto';

export interface AccessKey {
  accessKeyId: string;
  secretAccessKey: string;
}

/** `stack`: an SDK call signed in its headers; `presign`: a presigned URL or an upload form. */
export type CredentialUse = 'stack' | 'presign';

export const STACK_ACCESS_KEY_ID = 'lambkin-local';

/** Object key prefixes a per-build key may read and write (BuildGrants of src/core/ports.ts). */
export interface KeyGrants {
  read: readonly string[];
  write: readonly string[];
}

export class StackCredentials {
  readonly stack: AccessKey;
  private readonly buildKeys = new Map<
    string,
    { secretAccessKey: string; expiresAt: number; grants: KeyGrants }
  >();

  constructor(stackSecret: string = randomBytes(32).toString('hex')) {
    this.stack = { accessKeyId: STACK_ACCESS_KEY_ID, secretAccessKey: stackSecret };
  }

  /** A key for one build's presigned URLs and forms on `grants`, accepted until `validForMs` from now. */
  issueBuildKey(validForMs: number, grants: KeyGrants): AccessKey {
    this.forgetExpired();
    const key = {
      accessKeyId: `LKBUILD${randomBytes(7).toString('hex').toUpperCase()}`,
      secretAccessKey: randomBytes(30).toString('base64'),
    };
    this.buildKeys.set(key.accessKeyId, {
      secretAccessKey: key.secretAccessKey,
      expiresAt: Date.now() + validForMs,
      grants: { read: [...grants.read], write: [...grants.write] },
    });
    return key;
  }

  /** The secret of a key this stack accepts for `use`; undefined for any other (or expired) key. */
  secretFor(accessKeyId: string, use: CredentialUse): string | undefined {
    if (accessKeyId === this.stack.accessKeyId) return this.stack.secretAccessKey;
    if (use !== 'presign') return undefined;
    const build = this.buildKeys.get(accessKeyId);
    if (!build || build.expiresAt < Date.now()) return undefined;
    return build.secretAccessKey;
  }

  /** Whether `accessKeyId` may `access` the object `objectKey`: the stack's key may do anything. */
  allows(accessKeyId: string, access: 'read' | 'write', objectKey: string): boolean {
    if (accessKeyId === this.stack.accessKeyId) return true;
    const grants = this.buildKeys.get(accessKeyId)?.grants;
    return (grants?.[access] ?? []).some((prefix) => objectKey.startsWith(prefix));
  }

  private forgetExpired(): void {
    const now = Date.now();
    for (const [id, key] of this.buildKeys) if (key.expiresAt < now) this.buildKeys.delete(id);
  }
}
