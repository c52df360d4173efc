/**
 * Sealing of the settings store's `secretEnv` values, so they are never stored in plain text.
 *
 * A sealed value is text that says how it was sealed: `kms:v1:<base64>` (AWS KMS, in the cloud) or
 * `local:v1:<base64>` (AES-256-GCM with a key file in the local stack's data dir). Each value is
 * bound to its scope (`global` or `repo#owner/name`) by an encryption context, so a sealed value
 * copied into another repository's settings does not decrypt there.
 *
 * Errors name the scope and what failed, never a value.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { link, mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DecryptCommand, EncryptCommand, KMSClient } from '@aws-sdk/client-kms';
import { recordCommands } from '../aws/command-log.js';
import type { RepoName } from '../core/build.js';
import { LambkinError } from '../core/errors.js';

/** Sealed values are text that says how they were sealed (below). */
const SEALED = /^(kms|local):v\d+:/;

/** True for a value in a sealed form (of any cipher); false for a plain (legacy) value. */
export function isSealed(value: string): boolean {
  return SEALED.test(value);
}

/** How a value was sealed (`kms`, `local`), or undefined for a plain value. */
export function sealKind(value: string): string | undefined {
  return SEALED.exec(value)?.[1];
}

/** Which settings document a value belongs to: a repository's, or the global one (no repo). */
export interface SecretContext {
  repo?: RepoName;
}

export interface SecretCipher {
  /** Seals `plain` for the scope; the result is a sealed value (`isSealed` is true for it). */
  encrypt(plain: string, context: SecretContext): Promise<string>;
  /** Opens a value this cipher sealed for the same scope; a SecretCipherError otherwise. */
  decrypt(sealed: string, context: SecretContext): Promise<string>;
}

export const KMS_PREFIX = 'kms:v1:';
export const LOCAL_PREFIX = 'local:v1:';

/** The scope of a context, as the settings table keys it. */
export function secretScope(context: SecretContext): string {
  return context.repo === undefined ? 'global' : `repo#${context.repo}`;
}

/** The encryption context a value is sealed with: it must match exactly to decrypt. */
export function encryptionContext(context: SecretContext): Record<string, string> {
  return { lambkin: 'secretEnv', scope: secretScope(context) };
}

/** Sealing or opening a value failed. The message names the scope and the reason, never a value. */
export class SecretCipherError extends LambkinError {
  constructor(
    readonly scope: string,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super('SECRET_CIPHER', `a secret value of ${scope} ${reason}`, options);
  }
}

function awsErrorText(error: unknown): string {
  if (!(error instanceof Error)) return 'unknown error';
  return error.message && error.message !== 'UnknownError' ? `${error.name}: ${error.message}` : error.name;
}

export interface KmsClientOptions {
  region?: string;
  /** An explicit endpoint overrides AWS_ENDPOINT_URL_KMS (tests, KMS-compatible servers). */
  endpoint?: string;
  credentials?: { accessKeyId: string; secretAccessKey: string };
}

/** A KMS client recorded for the IAM check (src/aws/command-log.ts). */
export function createKmsClient(options: KmsClientOptions = {}): KMSClient {
  return recordCommands(
    new KMSClient({
      ...(options.region ? { region: options.region } : {}),
      ...(options.endpoint ? { endpoint: options.endpoint } : {}),
      ...(options.credentials ? { credentials: options.credentials } : {}),
    }),
  );
}

/**
 * KMS Encrypt / Decrypt with one key (`keyId`: key id, key ARN, alias name or alias ARN). Decrypt
 * names the key too, so a value sealed with another key is refused even where the caller may use
 * it. The client is created on first use only, so a process that never seals or opens a value
 * never makes one.
 */
export class KmsSecretCipher implements SecretCipher {
  private client: KMSClient | undefined;
  private readonly clientOptions: KmsClientOptions | undefined;

  /** `client`: a client to use (the caller owns it), or the options of the one made on first use. */
  constructor(
    readonly keyId: string,
    client: KMSClient | KmsClientOptions = {},
  ) {
    if (client instanceof KMSClient) this.client = client;
    else this.clientOptions = client;
  }

  private kms(): KMSClient {
    this.client ??= createKmsClient(this.clientOptions);
    return this.client;
  }

  async encrypt(plain: string, context: SecretContext): Promise<string> {
    let blob: Uint8Array | undefined;
    try {
      const result = await this.kms().send(
        new EncryptCommand({
          KeyId: this.keyId,
          Plaintext: Buffer.from(plain, 'utf8'),
          EncryptionContext: encryptionContext(context),
        }),
      );
      blob = result.CiphertextBlob;
    } catch (error) {
      throw new SecretCipherError(
        secretScope(context),
        `could not be encrypted with the KMS key ${this.keyId} (${awsErrorText(error)})`,
        { cause: error },
      );
    }
    if (!blob || blob.length === 0) {
      throw new SecretCipherError(secretScope(context), 'could not be encrypted: KMS returned no ciphertext');
    }
    return KMS_PREFIX + Buffer.from(blob).toString('base64');
  }

  async decrypt(sealed: string, context: SecretContext): Promise<string> {
    const blob = payloadOf(sealed, KMS_PREFIX, context);
    try {
      const result = await this.kms().send(
        new DecryptCommand({
          KeyId: this.keyId,
          CiphertextBlob: blob,
          EncryptionContext: encryptionContext(context),
        }),
      );
      if (!result.Plaintext) throw new Error('KMS returned no plaintext');
      return Buffer.from(result.Plaintext).toString('utf8');
    } catch (error) {
      const reason =
        error instanceof Error && error.name === 'InvalidCiphertextException'
          ? 'does not decrypt: it was sealed for another scope or is damaged'
          : `could not be decrypted with the KMS key ${this.keyId} (${awsErrorText(error)})`;
      throw new SecretCipherError(secretScope(context), reason, { cause: error });
    }
  }

  /** Releases the client's connections, when this cipher made the client. */
  destroy(): void {
    if (this.clientOptions === undefined) return;
    this.client?.destroy();
    this.client = undefined;
  }
}

function payloadOf(sealed: string, prefix: string, context: SecretContext): Buffer {
  if (!sealed.startsWith(prefix)) {
    const kind = sealKind(sealed);
    throw new SecretCipherError(
      secretScope(context),
      kind === undefined
        ? `is not sealed (it has no ${prefix} prefix)`
        : `was sealed with "${kind}", which this stack cannot open (it uses ${prefix.split(':')[0]})`,
    );
  }
  const text = sealed.slice(prefix.length);
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text)) {
    throw new SecretCipherError(secretScope(context), 'is damaged: its sealed form is not base64');
  }
  return Buffer.from(text, 'base64');
}

/** The file in the local stack's data dir holding the local cipher's key (mode 0600). */
export const LOCAL_KEY_FILE = 'secret-env.key';

const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;

/**
 * AES-256-GCM for the embedded local stack, with a random key kept in `<dataDir>/secret-env.key`
 * (mode 0600, created on the first seal). The encryption context is the GCM additional data, so a
 * value opens only in the scope it was sealed for. This protects the data files at rest only against
 * casual reading: anyone who can read the data dir can read the key too.
 */
export class LocalSecretCipher implements SecretCipher {
  private key: Buffer | undefined;

  constructor(readonly dataDir: string) {}

  get keyFile(): string {
    return join(this.dataDir, LOCAL_KEY_FILE);
  }

  async encrypt(plain: string, context: SecretContext): Promise<string> {
    const key = await this.loadKey(context, true);
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', key, iv);
    cipher.setAAD(additionalData(context));
    const body = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
    return LOCAL_PREFIX + Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64');
  }

  async decrypt(sealed: string, context: SecretContext): Promise<string> {
    const payload = payloadOf(sealed, LOCAL_PREFIX, context);
    if (payload.length < IV_BYTES + TAG_BYTES) {
      throw new SecretCipherError(secretScope(context), 'is damaged: its sealed form is too short');
    }
    const key = await this.loadKey(context, false);
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, payload.subarray(0, IV_BYTES));
      decipher.setAAD(additionalData(context));
      decipher.setAuthTag(payload.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
      const plain = Buffer.concat([
        decipher.update(payload.subarray(IV_BYTES + TAG_BYTES)),
        decipher.final(),
      ]);
      return plain.toString('utf8');
    } catch (error) {
      throw new SecretCipherError(
        secretScope(context),
        `does not decrypt with the key in ${this.keyFile}: it was sealed for another scope or with another key`,
        { cause: error },
      );
    }
  }

  private async loadKey(context: SecretContext, create: boolean): Promise<Buffer> {
    // Kept once read; a missing key is looked for again next time (a seal may have created it).
    this.key ??= await this.readOrCreateKey(context, create);
    return this.key;
  }

  private async readOrCreateKey(context: SecretContext, create: boolean): Promise<Buffer> {
    const existing = await this.readKey(context);
    if (existing) return existing;
    if (!create) {
      throw new SecretCipherError(
        secretScope(context),
        `cannot be decrypted: the local key ${this.keyFile} does not exist (set the value again)`,
      );
    }
    // Create-if-absent atomically: write a private temporary file, then link it into place. A
    // concurrent creator (another lambkin process) wins or loses as a whole; the loser reads its key.
    await mkdir(this.dataDir, { recursive: true });
    const temporary = join(
      this.dataDir,
      `.${LOCAL_KEY_FILE}.${process.pid}.${randomBytes(4).toString('hex')}`,
    );
    await writeFile(temporary, randomBytes(KEY_BYTES).toString('base64') + '\n', { mode: 0o600, flag: 'wx' });
    try {
      await link(temporary, this.keyFile);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    } finally {
      await unlink(temporary);
    }
    const key = await this.readKey(context);
    if (!key)
      throw new SecretCipherError(secretScope(context), `could not be sealed: ${this.keyFile} vanished`);
    return key;
  }

  private async readKey(context: SecretContext): Promise<Buffer | undefined> {
    let text: string;
    try {
      text = await readFile(this.keyFile, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new SecretCipherError(
        secretScope(context),
        `cannot be sealed or opened: ${this.keyFile} cannot be read (${(error as Error).message})`,
        { cause: error },
      );
    }
    const key = Buffer.from(text.trim(), 'base64');
    if (key.length !== KEY_BYTES) {
      throw new SecretCipherError(
        secretScope(context),
        `cannot be sealed or opened: ${this.keyFile} does not hold a ${KEY_BYTES}-byte key`,
      );
    }
    return key;
  }
}

function additionalData(context: SecretContext): Buffer {
  const entries = Object.entries(encryptionContext(context)).sort(([a], [b]) => a.localeCompare(b));
  return Buffer.from(JSON.stringify(entries), 'utf8');
}
