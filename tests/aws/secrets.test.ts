/**
 * The cloud secret (LAMBKIN_SECRET_ARN) against moto_server's Secrets Manager, the handlers' cold
 * start (once per container, retried after a failure), and the webhook function, run as its own
 * process from the environment alone, never calling KMS.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CreateKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { CreateSecretCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { createDynamoClients, createLambdaClient } from '../../src/aws/clients.js';
import { COMMAND_LOG_VARIABLE } from '../../src/aws/command-log.js';
import {
  CloudSecretError,
  loadFunctionConfig,
  onColdStart,
  parseCloudSecret,
  withCloudSecrets,
} from '../../src/aws/secrets.js';
import { createBuilderHandler } from '../../src/handlers/controller.js';
import { createWebhookHandler, requireWebhookSecrets } from '../../src/handlers/webhook.js';
import { loadConfig, type LambkinConfig } from '../../src/config.js';
import { ConfigurationError } from '../../src/core/errors.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import { DynamoSettingsStore, GLOBAL_SCOPE, repoScope } from '../../src/store/settings.js';
import { KmsSecretCipher } from '../../src/store/secret-cipher.js';
import { createControllerDependencies, createIntakeDependencies } from '../../src/wiring.js';
import { createGitRepo, startGitHubServer, type GitHubStandIn } from '../support/github-server.js';
import { startLambdaServer, type LambdaServer } from '../support/lambda-server.js';
import { examplePayload, pushPayload, signedDelivery } from '../support/payloads.js';
import { createTestStorage, type TestStorage } from '../support/storage.js';
import { requireTool } from '../support/tools.js';

const ARN = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:lambkin-AbCdEf';

/** The error `run` throws (or the promise rejects with); fails the test when there is none. */
async function caught(run: () => unknown): Promise<Error> {
  try {
    await run();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected an error, but there was none');
}

/** Runs `use` with SDK clients made inside it recording their commands into a fresh file. */
async function withCommandLog(use: () => Promise<void>): Promise<string[]> {
  const folder = mkdtempSync(join(tmpdir(), 'lambkin-command-log-'));
  const file = join(folder, 'commands.log');
  writeFileSync(file, '');
  const previous = process.env[COMMAND_LOG_VARIABLE];
  process.env[COMMAND_LOG_VARIABLE] = file;
  try {
    await use();
  } finally {
    if (previous === undefined) delete process.env[COMMAND_LOG_VARIABLE];
    else process.env[COMMAND_LOG_VARIABLE] = previous;
  }
  const lines = readFileSync(file, 'utf8').split('\n').filter(Boolean);
  rmSync(folder, { recursive: true, force: true });
  return lines;
}

describe('parseCloudSecret', () => {
  it('reads the token and one or two webhook secrets (new first)', () => {
    expect(parseCloudSecret(ARN, '{"githubToken": " ghp_x ", "webhookSecret": "one"}')).toEqual({
      mode: 'token',
      githubToken: 'ghp_x',
      webhookSecrets: ['one'],
    });
    expect(
      parseCloudSecret(ARN, JSON.stringify({ githubToken: 't', webhookSecret: 'new-one, old-one' })),
    ).toEqual({ mode: 'token', githubToken: 't', webhookSecrets: ['new-one', 'old-one'] });
  });

  it("reads an App's id and private key (App mode)", () => {
    const key = '-----BEGIN RSA PRIVATE KEY-----\nMIIabc\n-----END RSA PRIVATE KEY-----';
    expect(
      parseCloudSecret(
        ARN,
        JSON.stringify({ githubAppId: '42', githubAppPrivateKey: key, webhookSecret: 'w' }),
      ),
    ).toEqual({ mode: 'app', githubAppId: '42', githubAppPrivateKey: key, webhookSecrets: ['w'] });
  });

  it.each([
    ['ghp_Sup3rS3cret not json', /is not valid JSON/],
    ['"ghp_Sup3rS3cret"', /is JSON but not an object \(it is a string\)/],
    ['["ghp_Sup3rS3cret"]', /is JSON but not an object \(it is a list\)/],
    ['{"webhookSecret": "ghp_Sup3rS3cret"}', /has no "githubToken"/],
    [
      '{"githubToken": "ghp_Sup3rS3cret", "webhookSecret": 42}',
      /has a "webhookSecret" that is a number, not text/,
    ],
    ['{"githubToken": "ghp_Sup3rS3cret", "webhookSecret": "  "}', /has an empty "webhookSecret"/],
    ['{"githubToken": "ghp_Sup3rS3cret", "webhookSecret": " , "}', /has no secret in "webhookSecret"/],
    [
      '{"github_token": "ghp_Sup3rS3cret", "webhookSecret": "w"}',
      /has no "githubToken"; has unexpected keys "github_token"/,
    ],
    [
      '{"githubToken": "ghp_Sup3rS3cret", "githubAppId": "1", "githubAppPrivateKey": "-----BEGIN RSA PRIVATE KEY-----Sup3rS3cret", "webhookSecret": "w"}',
      /has both "githubToken" and the App's keys/,
    ],
    ['{"githubAppId": "1", "webhookSecret": "Sup3rS3cret"}', /has no "githubAppPrivateKey"/],
    [
      '{"githubAppId": "1", "githubAppPrivateKey": "Sup3rS3cret", "webhookSecret": "w"}',
      /"githubAppPrivateKey" that is not a PEM private key/,
    ],
  ])('refuses %j without quoting it', (text, message) => {
    let error: unknown;
    try {
      parseCloudSecret(ARN, text);
    } catch (thrown) {
      error = thrown;
    }
    expect(error).toBeInstanceOf(CloudSecretError);
    const shown = (error as Error).message;
    expect(shown).toMatch(message);
    expect(shown).toContain(`The secret ${ARN} (LAMBKIN_SECRET_ARN)`);
    expect(shown).toContain('{"githubToken": "...", "webhookSecret": "..."}');
    expect(shown).not.toContain('Sup3rS3cret');
    expect((error as CloudSecretError).code).toBe('CLOUD_SECRET');
  });
});

describe('onColdStart', () => {
  it('builds once for concurrent first calls, keeps a success, and tries again after a failure', async () => {
    let builds = 0;
    let fail = true;
    const deps = onColdStart(async () => {
      builds += 1;
      await new Promise((resolve) => setTimeout(resolve, 20));
      if (fail) throw new Error(`cold start ${builds} failed`);
      return { built: builds };
    });
    const first = await Promise.allSettled([deps(), deps(), deps()]);
    expect(first.map((result) => result.status)).toEqual(['rejected', 'rejected', 'rejected']);
    expect(builds).toBe(1);
    fail = false;
    expect(await Promise.all([deps(), deps()])).toEqual([{ built: 2 }, { built: 2 }]);
    fail = true;
    expect(await deps()).toEqual({ built: 2 });
    expect(builds).toBe(2);
  });

  it('turns a synchronous throw into a rejection, retried next time', async () => {
    let calls = 0;
    const deps = onColdStart(() => {
      calls += 1;
      if (calls === 1) throw new Error('no config');
      return 'ready';
    });
    await expect(deps()).rejects.toThrow('no config');
    await expect(deps()).resolves.toBe('ready');
    expect(calls).toBe(2);
  });
});

describe('requireWebhookSecrets', () => {
  it('names both sources when neither gives a webhook secret', async () => {
    const error = await caught(() => requireWebhookSecrets(loadConfig({}, [])));
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(error.message).toMatch(/no webhook secret: set LAMBKIN_SECRET_ARN .* or LAMBKIN_WEBHOOK_SECRET/);
    const local = loadConfig({ LAMBKIN_WEBHOOK_SECRET: 'a,b' }, []);
    expect(requireWebhookSecrets(local)).toBe(local);
  });
});

describe('cloud secrets on moto_server', () => {
  const moto = process.env.LAMBKIN_TEST_MOTO_ENDPOINT;
  if (!requireTool('moto_server', 'Secrets Manager and KMS against moto_server', moto !== undefined) || !moto)
    return;
  const endpoint = moto;
  /** Setup only: the operator creates secrets and keys; not recorded for the IAM check. */
  const admin = new SecretsManagerClient({ endpoint });
  const kmsAdmin = new KMSClient({ endpoint });
  const suffix = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  let saved: string | undefined;

  async function createSecret(name: string, value: string | Uint8Array): Promise<string> {
    const result = await admin.send(
      new CreateSecretCommand({
        Name: `lambkin-${name}-${suffix}`,
        ...(typeof value === 'string' ? { SecretString: value } : { SecretBinary: value }),
      }),
    );
    if (!result.ARN) throw new Error('moto returned no ARN');
    return result.ARN;
  }

  const base = (): LambkinConfig =>
    loadConfig({ GITHUB_TOKEN: 'local-token', LAMBKIN_WEBHOOK_SECRET: 'l' }, []);

  beforeAll(() => {
    // The functions' own clients find Secrets Manager and KMS through the SDK's endpoint variables.
    saved = process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER;
    process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER = endpoint;
  });

  afterAll(() => {
    if (saved === undefined) delete process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER;
    else process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER = saved;
    admin.destroy();
    kmsAdmin.destroy();
  });

  it('fills the token and the webhook secrets from the secret, with GetSecretValue recorded', async () => {
    const arn = await createSecret(
      'ok',
      JSON.stringify({ githubToken: 'ghp_from_secret', webhookSecret: 'new-hook,old-hook' }),
    );
    let config: LambkinConfig | undefined;
    const commands = await withCommandLog(async () => {
      config = await withCloudSecrets({ ...base(), secretArn: arn });
    });
    expect(config).toMatchObject({
      secretArn: arn,
      githubToken: 'ghp_from_secret',
      webhookSecrets: ['new-hook', 'old-hook'],
    });
    expect(commands).toEqual(['SecretsManagerClient GetSecretValueCommand']);
    // Again without a separate log, so the test run's own command log (the IAM check) sees it.
    expect((await withCloudSecrets({ ...base(), secretArn: arn })).githubToken).toBe('ghp_from_secret');
  });

  it('leaves the config as it is, and calls nothing, without a secret ARN (local)', async () => {
    const config = base();
    let result: LambkinConfig | undefined;
    const commands = await withCommandLog(async () => {
      result = await withCloudSecrets(config);
    });
    expect(result).toBe(config);
    expect(result).toMatchObject({ githubToken: 'local-token', webhookSecrets: ['l'] });
    expect(commands).toEqual([]);
  });

  it('uses a client it is given', async () => {
    const arn = await createSecret('given', JSON.stringify({ githubToken: 'g', webhookSecret: 'w' }));
    const client = new SecretsManagerClient({ endpoint });
    const commands = await withCommandLog(async () => {
      expect((await withCloudSecrets({ ...base(), secretArn: arn }, client)).webhookSecrets).toEqual(['w']);
    });
    expect(commands).toEqual([]);
    // Still usable: withCloudSecrets does not destroy a client it was given.
    expect((await withCloudSecrets({ ...base(), secretArn: arn }, client)).githubToken).toBe('g');
    client.destroy();
  });

  it('refuses a secret of the wrong shape, naming the ARN and never a value', async () => {
    const cases: [string | Uint8Array, RegExp][] = [
      ['not json ghp_Sup3rS3cret', /is not valid JSON/],
      [JSON.stringify({ githubToken: 'ghp_Sup3rS3cret' }), /has no "webhookSecret"/],
      [Buffer.from('ghp_Sup3rS3cret'), /is binary, not a JSON string/],
    ];
    for (const [index, [value, message]] of cases.entries()) {
      const arn = await createSecret(`bad-${index}`, value);
      const error = await caught(() => withCloudSecrets({ ...base(), secretArn: arn }));
      expect(error).toBeInstanceOf(CloudSecretError);
      expect(error.message).toMatch(message);
      expect(error.message).toContain(arn);
      expect(error.message).not.toContain('Sup3rS3cret');
    }
    const missing = `arn:aws:secretsmanager:us-east-1:123456789012:secret:lambkin-missing-${suffix}`;
    const error = await caught(() => withCloudSecrets({ ...base(), secretArn: missing }));
    expect(error).toBeInstanceOf(CloudSecretError);
    expect(error.message).toContain(`The secret ${missing} (LAMBKIN_SECRET_ARN) could not be read`);
    expect(error.message).toMatch(/ResourceNotFoundException/);
  });

  it('loadFunctionConfig: the function’s variables, then the secret, in one call', async () => {
    const arn = await createSecret(
      'fn',
      JSON.stringify({ githubToken: 'fn-token', webhookSecret: 'fn-hook' }),
    );
    const config = await loadFunctionConfig('webhook', {
      LAMBKIN_BUILDS_TABLE: 'b',
      LAMBKIN_SETTINGS_TABLE: 's',
      LAMBKIN_BUILDER_FUNCTION: 'f',
      LAMBKIN_SECRET_ARN: arn,
    });
    expect(config).toMatchObject({ buildsTable: 'b', githubToken: 'fn-token', webhookSecrets: ['fn-hook'] });
    const error = await caught(() => loadFunctionConfig('webhook', { LAMBKIN_SECRET_ARN: arn }));
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(error.message).toMatch(/LAMBKIN_BUILDS_TABLE is not set/);
  });

  describe('handlers', () => {
    let storage: TestStorage;
    let lambda: LambdaServer;
    let github: GitHubStandIn;
    let gitDir: string;
    let sha: string;
    let keyArn: string;
    let arn: string;

    beforeAll(async () => {
      storage = await createTestStorage();
      lambda = await startLambdaServer();
      github = await startGitHubServer({ token: 'token-from-secret' });
      const repo = await createGitRepo({ 'README.md': 'secrets\n' });
      gitDir = repo.dir;
      sha = repo.sha;
      github.addRepository({ owner: 'octo', name: 'kms', gitDir });
      keyArn = (await kmsAdmin.send(new CreateKeyCommand({}))).KeyMetadata?.Arn ?? '';
      arn = await createSecret(
        'webhook',
        JSON.stringify({ githubToken: 'token-from-secret', webhookSecret: 'hook-new,hook-old' }),
      );
    });

    afterAll(async () => {
      await Promise.all([lambda.close(), github.close()]);
      rmSync(gitDir, { recursive: true, force: true });
    });

    function environment(extra: Record<string, string> = {}): Record<string, string | undefined> {
      return {
        LAMBKIN_BUILDS_TABLE: storage.buildsTable,
        LAMBKIN_SETTINGS_TABLE: storage.settingsTable,
        LAMBKIN_BUILDER_FUNCTION: 'lambkin-builder',
        LAMBKIN_PUBLIC_URL: 'https://ci.example.test',
        GITHUB_API_URL: github.url,
        ...extra,
      };
    }

    it('the webhook reports a missing secret on the first request and recovers on the next', async () => {
      const env = environment();
      const clients = {
        ...createDynamoClients({ endpoints: { dynamodb: storage.backend.dynamodbEndpoint } }),
        lambda: createLambdaClient({ endpoints: { lambda: lambda.endpoint } }),
      };
      const handler = createWebhookHandler(async () =>
        createIntakeDependencies(
          requireWebhookSecrets(await loadFunctionConfig('webhook', env)),
          createMemoryLogger(),
          clients,
        ),
      );
      const ping = await signedDelivery('hook-old', 'ping', examplePayload('ping'));
      const event = {
        rawPath: '/webhook',
        headers: ping.headers,
        body: ping.body,
        requestContext: { http: { method: 'POST' } },
      };
      const error = await caught(() => handler(event));
      expect(error).toBeInstanceOf(ConfigurationError);
      expect(error.message).toMatch(/LAMBKIN_SECRET_ARN .* or LAMBKIN_WEBHOOK_SECRET/);
      env.LAMBKIN_SECRET_ARN = arn;
      expect((await handler(event)).statusCode).toBe(200);
    });

    it('the builder builds its dependencies again after a failed cold start', async () => {
      let attempts = 0;
      const handler = createBuilderHandler(async () => {
        attempts += 1;
        const config = await loadFunctionConfig(
          'builder',
          environment({
            // The first cold start finds no secret (a wrong ARN); the next one does.
            LAMBKIN_SECRET_ARN: attempts === 1 ? `${arn}-missing` : arn,
            LAMBKIN_BUCKET: storage.bucket,
            LAMBKIN_RUNNER_FUNCTION: 'lambkin-runner',
            LAMBKIN_UNTRUSTED_RUNNER_FUNCTION: 'lambkin-untrusted-runner',
          }),
        );
        expect(config.githubToken).toBe('token-from-secret');
        return createControllerDependencies(config, createMemoryLogger(), {
          ...storage.clients,
          lambda: createLambdaClient({ endpoints: { lambda: lambda.endpoint } }),
        });
      });
      const invocation = { kind: 'build', repo: 'octo/none', number: 1 };
      expect(await caught(() => handler(invocation))).toBeInstanceOf(CloudSecretError);
      expect(await handler(invocation)).toEqual({ ran: false, reason: 'not found' });
      expect(await handler(invocation)).toEqual({ ran: false, reason: 'not found' });
      expect(attempts).toBe(2);
    });

    it('the webhook function, from its environment: the secret read once, both rotation secrets, no KMS', async () => {
      // The repository's settings hold a KMS-sealed secret value, as the builder would read it.
      const sealing = new KmsSecretCipher(keyArn, { endpoint });
      const settings = new DynamoSettingsStore(storage.clients.documents, storage.settingsTable, sealing);
      await settings.update(repoScope('octo/kms'), () => ({ secretEnv: { DEPLOY_TOKEN: 'kms-only-value' } }));
      await settings.update(GLOBAL_SCOPE, () => ({ secretEnv: { SHARED: 'global-kms-value' } }));
      expect(JSON.stringify(await settings.get(repoScope('octo/kms')))).toMatch(/kms:v1:/);
      sealing.destroy();

      const folder = mkdtempSync(join(tmpdir(), 'lambkin-webhook-secret-'));
      const commandLog = join(folder, 'commands.log');
      writeFileSync(commandLog, '');
      const deliveries = [
        await signedDelivery('hook-new', 'push', pushPayload({ repo: 'octo/kms', branch: 'a', sha })),
        await signedDelivery('hook-new', 'push', pushPayload({ repo: 'octo/kms', branch: 'b', sha })),
        await signedDelivery('hook-old', 'push', pushPayload({ repo: 'octo/kms', branch: 'c', sha })),
        await signedDelivery('hook-new', 'push', pushPayload({ repo: 'octo/kms', branch: 'd', sha }), {
          signature: 'wrong',
        }),
      ];
      const file = join(folder, 'deliveries.json');
      writeFileSync(file, JSON.stringify(deliveries));
      const env = {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '',
        AWS_ACCESS_KEY_ID: 'test',
        AWS_SECRET_ACCESS_KEY: 'test',
        AWS_REGION: 'us-east-1',
        AWS_ENDPOINT_URL_DYNAMODB: storage.backend.dynamodbEndpoint,
        AWS_ENDPOINT_URL_LAMBDA: lambda.endpoint,
        AWS_ENDPOINT_URL_SECRETS_MANAGER: endpoint,
        // Reachable, so a KMS call would succeed and show in the log rather than fail the request.
        AWS_ENDPOINT_URL_KMS: endpoint,
        LAMBKIN_SETTINGS_KMS_KEY: keyArn,
        LAMBKIN_SDK_COMMAND_LOG: commandLog,
        ...(environment({ LAMBKIN_SECRET_ARN: arn }) as Record<string, string>),
      };
      const { stdout } = await promisify(execFile)(
        process.execPath,
        ['--import', 'tsx', 'tests/support/webhook-worker.ts', file],
        { env, maxBuffer: 1 << 22 },
      );
      const responses = JSON.parse(stdout.trim().split('\n').pop() ?? '[]') as { statusCode: number }[];
      const commands = readFileSync(commandLog, 'utf8').split('\n').filter(Boolean);
      rmSync(folder, { recursive: true, force: true });

      expect(responses.map((response) => response.statusCode)).toEqual([202, 202, 202, 401]);
      // The token came from the secret: the GitHub stand-in accepts no other.
      expect(github.statusesFor('octo/kms', sha).filter((status) => status.state === 'pending')).toHaveLength(
        3,
      );
      expect(commands.filter((line) => line.startsWith('SecretsManagerClient '))).toEqual([
        'SecretsManagerClient GetSecretValueCommand',
      ]);
      expect(commands).toContain('LambdaClient InvokeCommand');
      expect(commands.filter((line) => line.startsWith('DynamoDB'))).not.toEqual([]);
      expect(commands.filter((line) => line.startsWith('KMSClient '))).toEqual([]);

      // The same log records a KMS call where one is made: the controller's settings store.
      const opened = await withCommandLog(async () => {
        const cipher = new KmsSecretCipher(keyArn, { endpoint });
        const store = new DynamoSettingsStore(storage.clients.documents, storage.settingsTable, cipher);
        expect((await store.effective('octo/kms', { decryptSecrets: true })).secretEnv).toEqual({
          SHARED: 'global-kms-value',
          DEPLOY_TOKEN: 'kms-only-value',
        });
        cipher.destroy();
      });
      expect(opened).toEqual(['KMSClient DecryptCommand', 'KMSClient DecryptCommand']);
    }, 60_000);
  });
});
