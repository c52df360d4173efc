/**
 * Sealing of `secretEnv`: the local AES-GCM cipher and the settings store on the npm emulators, KMS
 * on moto_server (Encrypt/Decrypt with an encryption context), and the controller handing the
 * decrypted values to a trusted build's steps (and none to a fork's), and `lambkin config` sealing
 * with the stack's cipher.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateAliasCommand, CreateKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { GetCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import { createLambdaClient } from '../../src/aws/clients.js';
import { runControllerBuild } from '../../src/controller/controller.js';
import { ProcessRunnerInvoker } from '../../src/controller/runner-invoker.js';
import { loadConfig } from '../../src/config.js';
import type { BuildRequest } from '../../src/core/build.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import { DynamoBuildStore } from '../../src/store/builds.js';
import { S3LogStore } from '../../src/store/logs.js';
import {
  KmsSecretCipher,
  LOCAL_KEY_FILE,
  LocalSecretCipher,
  SecretCipherError,
  encryptionContext,
  type SecretCipher,
  isSealed,
} from '../../src/store/secret-cipher.js';
import {
  DynamoSettingsStore,
  GLOBAL_SCOPE,
  SettingsSecretError,
  plainSecretNames,
  repoScope,
  scopeKey,
} from '../../src/store/settings.js';
import { createControllerDependencies } from '../../src/wiring.js';
import { createGitRepo, startGitHubServer, type GitHubStandIn } from '../support/github-server.js';
import { npmProject } from '../support/npm-projects.js';
import { testBuildRequest } from '../support/builds.js';
import { createTestStorage, type TestStorage } from '../support/storage.js';
import { runInProcess, stackEnvironment, writeLocalStack, type CliRun } from '../cli/helpers.js';
import { requireTool } from '../support/tools.js';
import { type SettingsScope } from '../../src/core/ports.js';

const folders: string[] = [];
function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  folders.push(dir);
  return dir;
}

afterAll(() => {
  for (const folder of folders) rmSync(folder, { recursive: true, force: true });
});

/** Expects `promise` to fail with `type`, with a message matching `message` and never holding `secret`. */
async function expectRefusal(
  promise: Promise<unknown>,
  type: new (...args: never[]) => Error,
  message: RegExp,
  secret: string,
): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(type);
  expect((error as Error).message).toMatch(message);
  expect((error as Error).message).not.toContain(secret);
}

describe('LocalSecretCipher', () => {
  const secret = 'npm_local-very-secret-0123';

  it('seals with a random IV under a key it creates on first use, mode 0600', async () => {
    const dir = tempDir('lambkin-cipher-');
    const cipher = new LocalSecretCipher(dir);
    expect(() => statSync(join(dir, LOCAL_KEY_FILE))).toThrow();
    const one = await cipher.encrypt(secret, { repo: 'octo/app' });
    const two = await cipher.encrypt(secret, { repo: 'octo/app' });
    expect(one).toMatch(/^local:v1:[A-Za-z0-9+/]+={0,2}$/);
    expect(one).not.toBe(two);
    expect(one).not.toContain(secret);
    expect(one).not.toContain(Buffer.from(secret).toString('base64').slice(0, 12));
    const key = statSync(join(dir, LOCAL_KEY_FILE));
    expect(key.mode & 0o777).toBe(0o600);
    expect(Buffer.from(readFileSync(join(dir, LOCAL_KEY_FILE), 'utf8').trim(), 'base64')).toHaveLength(32);
    // A new instance (another process: the CLI, then `lambkin dev`) opens it with the same key file.
    expect(await new LocalSecretCipher(dir).decrypt(one, { repo: 'octo/app' })).toBe(secret);
    expect(await cipher.decrypt(two, { repo: 'octo/app' })).toBe(secret);
    expect(await cipher.decrypt(await cipher.encrypt('', {}), {})).toBe('');
  });

  it('opens a value only in the scope it was sealed for', async () => {
    const cipher = new LocalSecretCipher(tempDir('lambkin-cipher-'));
    const sealed = await cipher.encrypt(secret, { repo: 'octo/app' });
    for (const elsewhere of [{ repo: 'octo/other' }, { repo: 'octo/App' }, {}]) {
      await expectRefusal(cipher.decrypt(sealed, elsewhere), SecretCipherError, /another scope/, secret);
    }
    const global = await cipher.encrypt(secret, {});
    await expectRefusal(
      cipher.decrypt(global, { repo: 'octo/app' }),
      SecretCipherError,
      /another scope/,
      secret,
    );
  });

  it('refuses another data dir’s key, a damaged value, a KMS value and a missing key', async () => {
    const cipher = new LocalSecretCipher(tempDir('lambkin-cipher-'));
    const sealed = await cipher.encrypt(secret, {});
    const other = new LocalSecretCipher(tempDir('lambkin-cipher-'));
    await other.encrypt('make the key', {});
    await expectRefusal(other.decrypt(sealed, {}), SecretCipherError, /another key/, secret);
    const bytes = Buffer.from(sealed.slice('local:v1:'.length), 'base64');
    bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 1;
    await expectRefusal(
      cipher.decrypt(`local:v1:${bytes.toString('base64')}`, {}),
      SecretCipherError,
      /does not decrypt/,
      secret,
    );
    await expectRefusal(cipher.decrypt('local:v1:AAAA', {}), SecretCipherError, /too short/, secret);
    await expectRefusal(cipher.decrypt('kms:v1:AAAA', {}), SecretCipherError, /sealed with "kms"/, secret);
    await expectRefusal(cipher.decrypt(secret, {}), SecretCipherError, /is not sealed/, secret);
    const empty = new LocalSecretCipher(tempDir('lambkin-cipher-'));
    await expectRefusal(empty.decrypt(sealed, {}), SecretCipherError, /does not exist/, secret);
    expect(() => statSync(join(empty.dataDir, LOCAL_KEY_FILE))).toThrow();
  });

  it('makes one key when several processes seal at once, and refuses a damaged key file', async () => {
    const dir = tempDir('lambkin-cipher-');
    const ciphers = Array.from({ length: 6 }, () => new LocalSecretCipher(dir));
    const sealed = await Promise.all(ciphers.map((cipher, index) => cipher.encrypt(`value-${index}`, {})));
    const reader = new LocalSecretCipher(dir);
    expect(await Promise.all(sealed.map((value) => reader.decrypt(value, {})))).toEqual(
      ciphers.map((_, index) => `value-${index}`),
    );
    const broken = tempDir('lambkin-cipher-');
    writeFileSync(join(broken, LOCAL_KEY_FILE), 'c2hvcnQ=\n', { mode: 0o600 });
    await expectRefusal(
      new LocalSecretCipher(broken).encrypt(secret, {}),
      SecretCipherError,
      /does not hold a 32-byte key/,
      secret,
    );
  });
});

describe('settings store sealing secretEnv (npm emulators, local cipher)', () => {
  let storage: TestStorage;
  let cipher: LocalSecretCipher;
  let store: DynamoSettingsStore;
  /** The webhook's view: no cipher. */
  let plainStore: DynamoSettingsStore;

  beforeAll(async () => {
    storage = await createTestStorage();
    cipher = new LocalSecretCipher(tempDir('lambkin-settings-'));
    store = new DynamoSettingsStore(storage.clients.documents, storage.settingsTable, cipher);
    plainStore = new DynamoSettingsStore(storage.clients.documents, storage.settingsTable);
  });

  async function rawItem(scope: SettingsScope): Promise<Record<string, unknown> | undefined> {
    const result = await storage.clients.documents.send(
      new GetCommand({ TableName: storage.settingsTable, Key: { scope: scopeKey(scope) } }),
    );
    return result.Item;
  }

  it('stores sealed values, returns them sealed, and opens them only when asked', async () => {
    const repo = 'seal/one';
    await store.update(GLOBAL_SCOPE, (current) => ({
      ...current,
      secretEnv: { ...current.secretEnv, SHARED: 'global-s3cret' },
    }));
    const written = await store.update(repoScope(repo), () => ({
      config: { timeout: 300 },
      // Not bare digits: those can turn up in the item's timestamp by chance (it did: …740123).
      secretEnv: { NPM_TOKEN: 'npm_s3cret-token', PIN: 'pin-0123' },
    }));
    expect(written.secretEnv?.NPM_TOKEN).toMatch(/^local:v1:/);

    const raw = JSON.stringify(await rawItem(repoScope(repo)));
    expect(raw).toContain('local:v1:');
    expect(raw).not.toContain('s3cret');
    expect(raw).not.toContain('pin-0123');
    expect(JSON.stringify(await rawItem(GLOBAL_SCOPE))).not.toContain('global-s3cret');

    const sealed = await store.effective(repo);
    expect(Object.values(sealed.secretEnv).every(isSealed)).toBe(true);
    expect(sealed.config).toEqual({ timeout: 300 });
    expect((await store.get(repoScope(repo)))?.secretEnv?.PIN).toMatch(/^local:v1:/);
    expect((await store.effective(repo, { decryptSecrets: true })).secretEnv).toEqual({
      SHARED: 'global-s3cret',
      NPM_TOKEN: 'npm_s3cret-token',
      PIN: 'pin-0123',
    });
    expect((await store.get(repoScope(repo), { decryptSecrets: true }))?.secretEnv).toEqual({
      NPM_TOKEN: 'npm_s3cret-token',
      PIN: 'pin-0123',
    });
    // Without a cipher (the webhook) the values read sealed, and cannot be opened.
    expect((await plainStore.effective(repo)).secretEnv.NPM_TOKEN).toBe(sealed.secretEnv.NPM_TOKEN);
    await expectRefusal(
      plainStore.effective(repo, { decryptSecrets: true }),
      SettingsSecretError,
      /secretEnv\.\w+ of (global|repo#seal\/one) is encrypted, and this settings store has no key/,
      's3cret',
    );
  });

  it('refuses a sealed value moved to another repository', async () => {
    await store.update(repoScope('seal/victim'), () => ({
      secretEnv: { DEPLOY_KEY: 'victim-deploy-s3cret' },
    }));
    const stolen = (await rawItem(repoScope('seal/victim'))) as {
      settings: { secretEnv: { DEPLOY_KEY: string } };
    };
    const sealed = stolen.settings.secretEnv.DEPLOY_KEY;
    // Someone with write access to the table copies it into a repository they control.
    await storage.clients.documents.send(
      new PutCommand({
        TableName: storage.settingsTable,
        Item: { scope: 'repo#seal/thief', settings: { secretEnv: { DEPLOY_KEY: sealed } }, version: 1 },
      }),
    );
    await expectRefusal(
      store.effective('seal/thief', { decryptSecrets: true }),
      SettingsSecretError,
      /^secretEnv\.DEPLOY_KEY of repo#seal\/thief does not decrypt .*another scope/,
      'victim-deploy-s3cret',
    );
    expect((await store.effective('seal/victim', { decryptSecrets: true })).secretEnv.DEPLOY_KEY).toBe(
      'victim-deploy-s3cret',
    );
  });

  it('reads plain (legacy) values as they are, and seals them on the next write', async () => {
    const repo = 'seal/legacy';
    await plainStore.update(repoScope(repo), () => ({ secretEnv: { OLD: 'legacy-plain' } }));
    expect(plainSecretNames(await store.get(repoScope(repo)))).toEqual(['OLD']);
    expect((await store.effective(repo, { decryptSecrets: true })).secretEnv.OLD).toBe('legacy-plain');
    await store.update(repoScope(repo), (current) => ({
      ...current,
      secretEnv: { ...current.secretEnv, NEW: 'new-value' },
    }));
    const stored = await store.get(repoScope(repo));
    expect(plainSecretNames(stored)).toEqual([]);
    expect(JSON.stringify(stored)).not.toContain('legacy-plain');
    expect((await store.effective(repo, { decryptSecrets: true })).secretEnv).toMatchObject({
      OLD: 'legacy-plain',
      NEW: 'new-value',
    });
  });

  it('opens only the values that apply: a global value the repository overrides is not opened', async () => {
    const repo = 'seal/override';
    // A global value no key here can open (sealed elsewhere), overridden by the repository.
    const foreign = await new LocalSecretCipher(tempDir('lambkin-foreign-')).encrypt(
      'foreign-global-value',
      {},
    );
    await plainStore.update(GLOBAL_SCOPE, (current) => ({
      ...current,
      secretEnv: { ...current.secretEnv, OVERRIDDEN: foreign },
    }));
    await store.update(repoScope(repo), () => ({ secretEnv: { OVERRIDDEN: 'repo-value' } }));
    expect((await store.effective(repo, { decryptSecrets: true })).secretEnv.OVERRIDDEN).toBe('repo-value');
    await expectRefusal(
      store.effective('seal/not-overriding', { decryptSecrets: true }),
      SettingsSecretError,
      /^secretEnv\.OVERRIDDEN of global does not decrypt/,
      'foreign-global-value',
    );
    await plainStore.update(GLOBAL_SCOPE, (current) => {
      delete current.secretEnv?.OVERRIDDEN;
      return current;
    });
  });

  it('seals every value written by racing writers', async () => {
    const scope = repoScope('seal/race');
    await Promise.all(
      ['A', 'B', 'C', 'D'].map((name) =>
        store.update(scope, (current) => ({
          ...current,
          secretEnv: { ...current.secretEnv, [name]: `value-${name}` },
        })),
      ),
    );
    const stored = await store.get(scope);
    expect(Object.keys(stored?.secretEnv ?? {}).sort()).toEqual(['A', 'B', 'C', 'D']);
    expect(plainSecretNames(stored)).toEqual([]);
    expect((await store.get(scope, { decryptSecrets: true }))?.secretEnv).toEqual({
      A: 'value-A',
      B: 'value-B',
      C: 'value-C',
      D: 'value-D',
    });
  });
});

describe('KMS sealing on moto_server', () => {
  const moto = process.env.LAMBKIN_TEST_MOTO_ENDPOINT;
  if (
    !requireTool('moto_server', 'KMS sealing of secretEnv against moto_server', moto !== undefined) ||
    !moto
  )
    return;
  const endpoint = moto;
  /** Setup only (CreateKey, CreateAlias): not Lambkin's calls, so not recorded for the IAM check. */
  const admin = new KMSClient({ endpoint });
  let keyArn: string;
  let alias: string;
  let otherKeyArn: string;

  beforeAll(async () => {
    keyArn = (await admin.send(new CreateKeyCommand({ Description: 'lambkin test' }))).KeyMetadata?.Arn ?? '';
    otherKeyArn = (await admin.send(new CreateKeyCommand({}))).KeyMetadata?.Arn ?? '';
    alias = `alias/lambkin-test-${Date.now().toString(36)}`;
    await admin.send(new CreateAliasCommand({ AliasName: alias, TargetKeyId: keyArn }));
  });

  afterAll(() => admin.destroy());

  it('seals with an encryption context naming the scope, and opens with the key ARN or alias', async () => {
    const secret = 'kms-deploy-s3cret';
    const byArn = new KmsSecretCipher(keyArn, { endpoint });
    const byAlias = new KmsSecretCipher(alias, { endpoint });
    const sealed = await byAlias.encrypt(secret, { repo: 'octo/app' });
    expect(sealed).toMatch(/^kms:v1:[A-Za-z0-9+/]+={0,2}$/);
    expect(sealed).not.toContain(secret);
    expect(await byArn.decrypt(sealed, { repo: 'octo/app' })).toBe(secret);
    expect(await byAlias.decrypt(sealed, { repo: 'octo/app' })).toBe(secret);
    expect(encryptionContext({ repo: 'octo/app' })).toEqual({ lambkin: 'secretEnv', scope: 'repo#octo/app' });
    expect(encryptionContext({})).toEqual({ lambkin: 'secretEnv', scope: 'global' });

    await expectRefusal(
      byArn.decrypt(sealed, { repo: 'octo/other' }),
      SecretCipherError,
      /^a secret value of repo#octo\/other does not decrypt: it was sealed for another scope/,
      secret,
    );
    await expectRefusal(byArn.decrypt(sealed, {}), SecretCipherError, /another scope/, secret);
    await expectRefusal(
      new KmsSecretCipher(otherKeyArn, { endpoint }).decrypt(sealed, { repo: 'octo/app' }),
      SecretCipherError,
      /could not be decrypted with the KMS key/,
      secret,
    );
    await expectRefusal(
      new KmsSecretCipher('alias/does-not-exist', { endpoint }).encrypt(secret, {}),
      SecretCipherError,
      /could not be encrypted with the KMS key alias\/does-not-exist \(NotFoundException/,
      secret,
    );
    await expectRefusal(byArn.decrypt('local:v1:AAAA', {}), SecretCipherError, /sealed with "local"/, secret);
    for (const cipher of [byArn, byAlias]) cipher.destroy();
  });

  it('the controller gives the decrypted value to a trusted build’s steps and nothing to a fork’s', async () => {
    const secret = 'controller-kms-s3cret';
    const storage = await createTestStorage();
    const github: GitHubStandIn = await startGitHubServer({ token: 'seal-token' });
    try {
      const source = await createGitRepo(
        npmProject({
          test:
            "node -e \"const v = process.env.MY_SECRET || ''; " +
            "console.log('secret sha256=' + require('crypto').createHash('sha256').update(v).digest('hex'))\"",
        }),
      );
      folders.push(source.dir);
      github.addRepository({ owner: 'octo', name: 'sealed', gitDir: source.dir });
      const config = {
        ...loadConfig({}, []),
        buildsTable: storage.buildsTable,
        settingsTable: storage.settingsTable,
        bucket: storage.bucket,
        githubApiUrl: github.url,
        githubToken: 'seal-token',
        settingsKmsKey: keyArn,
        runnerTimeoutSeconds: 90,
      };
      // The operator (the CLI) seals with the key; the controller opens with the same key.
      const operator = new DynamoSettingsStore(
        storage.clients.documents,
        storage.settingsTable,
        new KmsSecretCipher(keyArn, { endpoint }),
      );
      await operator.update(repoScope('octo/sealed'), () => ({ secretEnv: { MY_SECRET: secret } }));
      const cipher: SecretCipher = new KmsSecretCipher(config.settingsKmsKey, { endpoint });
      const deps = createControllerDependencies(
        config,
        createMemoryLogger(),
        { ...storage.clients, lambda: createLambdaClient() },
        new ProcessRunnerInvoker(),
        cipher,
      );
      const builds = new DynamoBuildStore(storage.clients.documents, storage.buildsTable);
      const logs = new S3LogStore(storage.clients.s3, storage.bucket);
      const run = async (request: Partial<BuildRequest>) => {
        const full = testBuildRequest({ repo: 'octo/sealed', sha: source.sha, ...request });
        const number = await builds.allocateNumber(full.repo);
        await builds.putQueuedBuild(full, number, { deadline: Date.now() + 120_000 });
        const result = await runControllerBuild(deps, { kind: 'build', repo: full.repo, number });
        if (!result.ran) throw new Error(`build did not run: ${result.reason}`);
        return { build: result.build, log: (await logs.readLog(result.build.logPrefix)) ?? '' };
      };
      const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

      const trusted = await run({});
      expect(trusted.build.state).toBe('success');
      expect(trusted.log).toContain(`secret sha256=${sha256(secret)}`);
      expect(trusted.log).not.toContain(secret);
      const fork = await run({
        event: 'pull_request',
        pr: 3,
        fork: true,
        trusted: false,
        headRepo: 'stranger/sealed',
        ref: 'refs/pull/3/head',
      });
      expect(fork.build.state).toBe('success');
      expect(fork.log).toContain(`secret sha256=${sha256('')}`);
      const stored = await storage.clients.documents.send(
        new GetCommand({ TableName: storage.settingsTable, Key: { scope: 'repo#octo/sealed' } }),
      );
      expect(JSON.stringify(stored.Item)).toMatch(/"MY_SECRET":"kms:v1:/);
      expect(JSON.stringify(stored.Item)).not.toContain(secret);

      // The repository's ciphertext copied into the global settings: the build ends as error.
      const sealed = (stored.Item as { settings: { secretEnv: { MY_SECRET: string } } }).settings.secretEnv
        .MY_SECRET;
      await new DynamoSettingsStore(storage.clients.documents, storage.settingsTable).update(
        GLOBAL_SCOPE,
        () => ({
          secretEnv: { STOLEN: sealed },
        }),
      );
      const moved = await run({});
      expect(moved.build.state).toBe('error');
      expect(moved.build.description).toMatch(
        /^build error: secretEnv\.STOLEN of global does not decrypt: it was sealed for another scope/,
      );
      expect(moved.log).not.toContain(secret);
    } finally {
      await github.close();
    }
  }, 120_000);
});

describe('lambkin config seals secretEnv with the stack’s cipher', () => {
  let storage: TestStorage;
  let raw: DynamoSettingsStore;

  beforeAll(async () => {
    storage = await createTestStorage();
    raw = new DynamoSettingsStore(storage.clients.documents, storage.settingsTable);
  });

  async function ok(run: Promise<CliRun>): Promise<CliRun> {
    const result = await run;
    expect(result.code).toBe(0);
    return result;
  }

  it('--local: the key in the data dir; get shows ***, --show-secrets decrypts', async () => {
    const dataDir = writeLocalStack(storage);
    folders.push(dataDir);
    const config = (...args: string[]) => runInProcess(['config', ...args, `--local=${dataDir}`]);
    const set = await ok(config('set', 'secretEnv.NPM_TOKEN', 'npm_cli-s3cret', '--repo', 'cli/local'));
    expect(set).toEqual({ code: 0, stdout: 'set secretEnv.NPM_TOKEN = *** (cli/local)\n', stderr: '' });
    const stored = await raw.get(repoScope('cli/local'));
    expect(stored?.secretEnv?.NPM_TOKEN).toMatch(/^local:v1:/);
    expect(statSync(join(dataDir, LOCAL_KEY_FILE)).mode & 0o777).toBe(0o600);
    // What the local stack's controller opens, with the same key file.
    const controllerView = new DynamoSettingsStore(
      storage.clients.documents,
      storage.settingsTable,
      new LocalSecretCipher(dataDir),
    );
    expect((await controllerView.effective('cli/local', { decryptSecrets: true })).secretEnv).toEqual({
      NPM_TOKEN: 'npm_cli-s3cret',
    });
    expect((await ok(config('get', 'secretEnv.NPM_TOKEN', '--repo', 'cli/local'))).stdout).toBe('"***"\n');
    const shown = await ok(config('get', 'secretEnv', '--show-secrets', '--repo', 'cli/local'));
    expect(JSON.parse(shown.stdout)).toEqual({ NPM_TOKEN: 'npm_cli-s3cret' });
    const effective = await ok(config('get', '--effective', '--show-secrets', '--repo', 'cli/local'));
    expect((JSON.parse(effective.stdout) as { secretEnv: unknown }).secretEnv).toEqual({
      NPM_TOKEN: 'npm_cli-s3cret',
    });
  });

  it('warns about plain (legacy) values, which still read, and seals them on the next set', async () => {
    const dataDir = writeLocalStack(storage);
    folders.push(dataDir);
    const config = (...args: string[]) => runInProcess(['config', ...args, `--local=${dataDir}`]);
    await raw.update(repoScope('cli/legacy'), () => ({ secretEnv: { OLD: 'legacy-plain-value' } }));
    const got = await ok(config('get', '--repo', 'cli/legacy'));
    expect(JSON.parse(got.stdout)).toEqual({ secretEnv: { OLD: '***' } });
    expect(got.stderr).toBe(
      'lambkin: warning: secretEnv.OLD of repo#cli/legacy is stored in plain text: set it again to encrypt\n',
    );
    const effective = await ok(config('get', '--effective', '--repo', 'cli/legacy'));
    expect(effective.stderr).toContain('secretEnv.OLD of repo#cli/legacy is stored in plain text');
    await ok(config('set', 'secretEnv.NEW', 'x', '--repo', 'cli/legacy'));
    expect(plainSecretNames(await raw.get(repoScope('cli/legacy')))).toEqual([]);
    const after = await ok(config('get', 'secretEnv', '--show-secrets', '--repo', 'cli/legacy'));
    expect(after.stderr).toBe('');
    expect(JSON.parse(after.stdout)).toEqual({ OLD: 'legacy-plain-value', NEW: 'x' });
  });

  it('AWS without LAMBKIN_SETTINGS_KMS_KEY: stores the value as given, and says so', async () => {
    const result = await ok(
      runInProcess(['config', 'set', 'secretEnv.PLAIN', 'unsealed-value', '--repo', 'cli/nokey'], {
        env: stackEnvironment(storage),
      }),
    );
    expect(result.stdout).toBe('set secretEnv.PLAIN = *** (cli/nokey)\n');
    expect(result.stderr).toMatch(
      /^lambkin: warning: secretEnv\.PLAIN is stored in plain text: set LAMBKIN_SETTINGS_KMS_KEY/,
    );
    expect(result.stderr).not.toContain('unsealed-value');
    expect((await raw.get(repoScope('cli/nokey')))?.secretEnv).toEqual({ PLAIN: 'unsealed-value' });
  });

  describe('AWS with LAMBKIN_SETTINGS_KMS_KEY (moto_server)', () => {
    const moto = process.env.LAMBKIN_TEST_MOTO_ENDPOINT;
    if (
      !requireTool('moto_server', 'lambkin config sealing with KMS on moto_server', moto !== undefined) ||
      !moto
    )
      return;
    const endpoint = moto;

    it('seals with KMS for the repository’s scope, and decrypts for --show-secrets', async () => {
      const admin = new KMSClient({ endpoint });
      const keyArn = (await admin.send(new CreateKeyCommand({}))).KeyMetadata?.Arn ?? '';
      admin.destroy();
      const env = stackEnvironment(storage, {
        LAMBKIN_SETTINGS_KMS_KEY: keyArn,
        AWS_ENDPOINT_URL_KMS: endpoint,
      });
      const config = (...args: string[]) => runInProcess(['config', ...args], { env });
      expect(await config('set', 'secretEnv.DEPLOY', 'kms-cli-s3cret', '--repo', 'cli/kms')).toEqual({
        code: 0,
        stdout: 'set secretEnv.DEPLOY = *** (cli/kms)\n',
        stderr: '',
      });
      await ok(config('set', 'secretEnv.SHARED', 'kms-global-s3cret'));
      const stored = await raw.get(repoScope('cli/kms'));
      expect(stored?.secretEnv?.DEPLOY).toMatch(/^kms:v1:/);
      const controllerView = new DynamoSettingsStore(
        storage.clients.documents,
        storage.settingsTable,
        new KmsSecretCipher(keyArn, { endpoint }),
      );
      expect((await controllerView.effective('cli/kms', { decryptSecrets: true })).secretEnv).toMatchObject({
        DEPLOY: 'kms-cli-s3cret',
        SHARED: 'kms-global-s3cret',
      });
      const shown = await ok(config('get', '--effective', '--show-secrets', '--repo', 'cli/kms'));
      expect((JSON.parse(shown.stdout) as { secretEnv: unknown }).secretEnv).toMatchObject({
        DEPLOY: 'kms-cli-s3cret',
        SHARED: 'kms-global-s3cret',
      });
      const masked = await ok(config('get', '--effective', '--repo', 'cli/kms'));
      expect(masked.stdout).not.toContain('s3cret');
      expect(masked.stdout).not.toContain('kms:v1:');
      // The same stored value read through another repository's scope does not open.
      await raw.update(repoScope('cli/kms-copy'), () => ({
        secretEnv: { DEPLOY: stored?.secretEnv?.DEPLOY ?? '' },
      }));
      const refused = await config('get', 'secretEnv', '--show-secrets', '--repo', 'cli/kms-copy');
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/^lambkin: secretEnv\.DEPLOY of repo#cli\/kms-copy does not decrypt/);
      expect(refused.stdout).toBe('');
    });
  });
});
