/**
 * `lambkin setup app` as a person runs it: the real `bin/lambkin.js` as a process, a real headless
 * Chromium that opens the printed URL (whose page posts the manifest to GitHub), a loopback
 * "GitHub" that shows the manifest form's target and sends the browser back with a code, as
 * github.com does, and answers the code's conversion as the REST API does. The App is then stored
 * for `lambkin dev` (a 0600 file) or in the stack's secret (moto_server's Secrets Manager), named
 * by its ARN or found through the stack's SecretArn parameter (moto_server's CloudFormation).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CloudFormationClient, CreateStackCommand } from '@aws-sdk/client-cloudformation';
import {
  CreateSecretCommand,
  GetSecretValueCommand,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import {
  LAMBKIN_APP_EVENTS,
  LAMBKIN_APP_PERMISSIONS,
  type AppManifest,
} from '../../src/github/app-manifest.js';
import { createGitHubApp } from '../../src/github/app-auth.js';
import type { ManifestDefinition } from '../../src/local/github/records.js';
import { startGitHubServer, type GitHubStandIn } from '../support/github-server.js';
import { findChromium, launchChromium, type LaunchedBrowser } from '../support/browser.js';
import { LAMBKIN_BIN, OUTSIDE_CHECKOUT } from '../support/dev-process.js';
import { requireTool } from '../support/tools.js';

const WEBHOOK_URL = 'https://ci.example.test/webhook';

/**
 * github.com's manifest page, on loopback: it takes the form the CLI's page posts, registers a
 * one-time code with the API stand-in (which converts it as the REST API does) and sends the
 * browser back to the manifest's redirect_url, as GitHub does once the person confirms.
 */
class ManifestPage {
  url = '';
  /** The organization of each form posted (undefined: the user's own account). */
  readonly organizations: (string | undefined)[] = [];
  private readonly server: Server = createServer((request, response) => void this.handle(request, response));

  constructor(private readonly api: GitHubStandIn) {}

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', this.url);
    const body = await new Promise<string>((resolve) => {
      let text = '';
      request.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
      request.on('end', () => resolve(text));
    });
    const form = /^\/(?:organizations\/([^/]+)\/)?settings\/apps\/new$/.exec(url.pathname);
    if (request.method !== 'POST' || !form) {
      response.writeHead(404).end();
      return;
    }
    const manifest = JSON.parse(new URLSearchParams(body).get('manifest') ?? 'null') as AppManifest;
    this.organizations.push(form[1] === undefined ? undefined : decodeURIComponent(form[1]));
    const code = randomBytes(10).toString('hex');
    this.api.addManifestCode(code, {
      name: manifest.name,
      url: manifest.url,
      permissions: manifest.default_permissions as ManifestDefinition['permissions'],
      events: manifest.default_events,
    });
    const back = new URL(manifest.redirect_url);
    back.searchParams.set('code', code);
    back.searchParams.set('state', url.searchParams.get('state') ?? '');
    response.writeHead(302, { location: back.toString() }).end();
  }
}

let api: GitHubStandIn;
let github: ManifestPage;
let browser: LaunchedBrowser | undefined;
const folders: string[] = [];

function scratch(): string {
  const folder = mkdtempSync(join(tmpdir(), 'lambkin-setup-app-'));
  folders.push(folder);
  return folder;
}

beforeAll(async () => {
  api = await startGitHubServer({ token: 'unused-personal-token' });
  github = new ManifestPage(api);
  await github.start();
});

afterAll(async () => {
  await browser?.close();
  await github.close();
  await api.close();
  for (const folder of folders) rmSync(folder, { recursive: true, force: true });
});

interface SetupRun {
  child: ChildProcess;
  /** The URL it printed for the browser. */
  startUrl: Promise<string>;
  done: Promise<{ code: number | null; stdout: string; stderr: string }>;
}

function startSetupApp(args: string[], env: Record<string, string> = {}): SetupRun {
  const child = spawn(
    process.execPath,
    [
      LAMBKIN_BIN,
      'setup',
      'app',
      '--webhook-url',
      WEBHOOK_URL,
      '--github-url',
      github.url,
      '--no-open',
      ...args,
    ],
    {
      cwd: OUTSIDE_CHECKOUT,
      env: { PATH: process.env.PATH ?? '', HOME: OUTSIDE_CHECKOUT, GITHUB_API_URL: api.url, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stdout = '';
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const startUrl = new Promise<string>((resolve, reject) => {
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      const match = /^open (http:\/\/127\.0\.0\.1:\d+\/) in a browser/m.exec(stdout);
      if (match) resolve(match[1]!);
    });
    child.once('exit', () =>
      reject(new Error(`setup app exited before printing its URL: ${stdout}${stderr}`)),
    );
  });
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.once('exit', (code) => resolve({ code, stdout, stderr })),
  );
  return { child, startUrl, done };
}

/** `GET /app` with a JWT signed by `privateKey` answers the App `id`. */
async function expectAppAuthenticates(id: number, privateKey: string): Promise<void> {
  const app = createGitHubApp({ appId: id, privateKey }, { baseUrl: api.url });
  const { data } = await app.appClient.request('GET /app');
  expect(data).toMatchObject({ id });
}

async function chromium(): Promise<LaunchedBrowser> {
  browser ??= await launchChromium();
  return browser;
}

describe('lambkin setup app', () => {
  if (!requireTool('chromium', 'the manifest flow in a real browser', findChromium() !== undefined)) return;

  it('creates the App through the browser and stores it for `lambkin dev`, owner-only', async () => {
    const dataDir = join(scratch(), 'data');
    const run = startSetupApp([
      '--local',
      '--data-dir',
      dataDir,
      '--name',
      'lambkin-test-app',
      '--org',
      'octo-org',
    ]);
    const page = await (await chromium()).context.newPage();
    try {
      await page.goto(await run.startUrl);
      // The page posted the manifest to GitHub, which sent the browser back to the CLI.
      await page.waitForURL(/\/callback\?/);
      expect(await page.textContent('body')).toContain('lambkin-test-app is created');
    } finally {
      await page.close();
    }
    const result = await run.done;
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(github.organizations.at(-1)).toBe('octo-org');
    const id = Number(/created the GitHub App lambkin-test-app \(id (\d+)\)/.exec(result.stdout)?.[1]);
    expect(id).toBeGreaterThan(0);
    expect(result.stdout).toContain(
      `install it on your repositories: ${api.url}/apps/lambkin-test-app/installations/new`,
    );

    const stored = join(dataDir, 'github-app.json');
    expect(statSync(stored).mode & 0o777).toBe(0o600);
    expect(statSync(dataDir).mode & 0o777).toBe(0o700);
    const app = JSON.parse(readFileSync(stored, 'utf8')) as Record<string, unknown>;
    expect(app).toMatchObject({
      appId: id,
      slug: 'lambkin-test-app',
      webhookSecret: expect.stringMatching(/\S{20}/),
    });
    // The stored key is the App's: GitHub takes the JWTs it signs.
    await expectAppAuthenticates(id, String(app.privateKey));
  });

  it('stores the key owner-only over an earlier github-app.json that others could read', async () => {
    const dataDir = join(scratch(), 'data');
    mkdirSync(dataDir, { mode: 0o755 });
    const stored = join(dataDir, 'github-app.json');
    writeFileSync(stored, '{"appId": 1, "privateKey": "an older App"}\n');
    chmodSync(stored, 0o644);
    const run = startSetupApp(['--local', '--data-dir', dataDir, '--name', 'lambkin-rerun-app']);
    const page = await (await chromium()).context.newPage();
    try {
      await page.goto(await run.startUrl);
      await page.waitForURL(/\/callback\?/);
    } finally {
      await page.close();
    }
    expect(await run.done).toMatchObject({ code: 0, stderr: '' });
    expect(statSync(stored).mode & 0o777).toBe(0o600);
    expect(readFileSync(stored, 'utf8')).toContain('lambkin-rerun-app');
  });

  it('asks GitHub for exactly the permissions and events Lambkin uses, in the organization given', async () => {
    const run = startSetupApp([
      '--local',
      '--data-dir',
      join(scratch(), 'data'),
      '--name',
      'lambkin-manifest',
      '--org',
      'octo-org',
    ]);
    const start = await run.startUrl;
    const html = await (await fetch(start)).text();
    const action = /<form method="post" action="([^"]+)"/.exec(html)?.[1]?.replace(/&amp;/g, '&');
    expect(action).toMatch(
      new RegExp(`^${github.url}/organizations/octo-org/settings/apps/new\\?state=[0-9a-f]{32}$`),
    );
    const value = /name="manifest" value="([^"]+)"/.exec(html)?.[1] ?? '';
    const manifest = JSON.parse(
      value
        .replace(/&quot;/g, '"')
        .replace(/&#39;/g, "'")
        .replace(/&lt;/g, '<')
        .replace(/&gt;/g, '>')
        .replace(/&amp;/g, '&'),
    ) as AppManifest;
    expect(manifest).toEqual({
      name: 'lambkin-manifest',
      url: 'https://ci.example.test',
      hook_attributes: { url: WEBHOOK_URL, active: true },
      redirect_url: `${start}callback`,
      public: false,
      default_permissions: { ...LAMBKIN_APP_PERMISSIONS },
      default_events: [...LAMBKIN_APP_EVENTS],
    });
    expect(manifest.default_permissions).toEqual({
      checks: 'write',
      statuses: 'write',
      contents: 'read',
      pull_requests: 'read',
      metadata: 'read',
    });
    run.child.kill('SIGTERM');
    await run.done;
  });

  it('refuses a redirect carrying another run’s state, and a code GitHub does not know, saying what to do', async () => {
    const dataDir = join(scratch(), 'data');
    const run = startSetupApp(['--local', '--data-dir', dataDir]);
    const start = await run.startUrl;
    const forged = await fetch(`${start}callback?code=stolen&state=${'0'.repeat(32)}`);
    expect(forged.status).toBe(400);
    expect(api.requests.some((request) => request.path.includes('stolen'))).toBe(false);
    // The right state, but a code GitHub never issued (or one already used).
    const state = /state=([0-9a-f]{32})/.exec(await (await fetch(start)).text())?.[1];
    const unknown = await fetch(`${start}callback?code=unknown-code&state=${state}`);
    expect(unknown.status).toBe(502);
    const result = await run.done;
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      /GitHub did not turn the code into an App \(404 Not Found\).*run `lambkin setup app` again/,
    );
    expect(() => statSync(join(dataDir, 'github-app.json'))).toThrow();
  });

  it('needs a place to store the App', async () => {
    const run = startSetupApp([]);
    run.startUrl.catch(() => undefined); // it prints none: it refuses first
    const result = await run.done;
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--local \(and --data-dir\).*--stack NAME or --secret-arn ARN/);
  });

  it('takes one place only: --local, --stack and --secret-arn exclude each other', async () => {
    const arn = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:lambkin-AbCdEf';
    for (const [args, named] of [
      [['--local', '--stack', 'lambkin'], '--local and --stack'],
      [['--stack', 'lambkin', '--secret-arn', arn], '--stack and --secret-arn'],
      [['--local', '--secret-arn', arn], '--local and --secret-arn'],
    ] as const) {
      const run = startSetupApp([...args]);
      run.startUrl.catch(() => undefined);
      const result = await run.done;
      expect({ args, code: result.code, stdout: result.stdout }).toEqual({ args, code: 2, stdout: '' });
      expect(result.stderr).toContain(`${named} exclude each other`);
    }
    const region = startSetupApp(['--local', '--region', 'eu-west-1']);
    region.startUrl.catch(() => undefined);
    const result = await region.done;
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--region goes with --stack NAME only');
  });

  describe("into the stack's secret (moto_server's Secrets Manager)", () => {
    const endpoint = process.env.LAMBKIN_TEST_MOTO_ENDPOINT;
    if (!requireTool('moto_server', "the stack's secret on moto_server", endpoint !== undefined) || !endpoint)
      return;

    it('adds the App to the secret, keeps its other keys and drops the personal token', async () => {
      const env = {
        AWS_REGION: 'us-east-1',
        AWS_ACCESS_KEY_ID: 'testing',
        AWS_SECRET_ACCESS_KEY: 'testing',
        AWS_ENDPOINT_URL_SECRETS_MANAGER: endpoint,
      };
      const client = new SecretsManagerClient({
        region: 'us-east-1',
        endpoint,
        credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
      });
      const created = await client.send(
        new CreateSecretCommand({
          Name: `lambkin-${randomBytes(3).toString('hex')}`,
          SecretString: JSON.stringify({
            githubToken: 'ghp_old',
            webhookSecret: 'old-secret',
            extra: 'kept',
          }),
        }),
      );
      const run = startSetupApp(['--secret-arn', created.ARN!, '--name', 'lambkin-cloud'], env);
      const page = await (await chromium()).context.newPage();
      try {
        await page.goto(await run.startUrl);
        await page.waitForURL(/\/callback\?/);
      } finally {
        await page.close();
      }
      const result = await run.done;
      expect(result).toMatchObject({ code: 0, stderr: '' });
      expect(result.stdout).toContain('githubToken removed');
      const secret = await client.send(new GetSecretValueCommand({ SecretId: created.ARN! }));
      const stored = JSON.parse(secret.SecretString!) as Record<string, string>;
      expect(Object.keys(stored).sort()).toEqual([
        'extra',
        'githubAppId',
        'githubAppPrivateKey',
        'webhookSecret',
      ]);
      expect(stored.extra).toBe('kept');
      expect(stored.webhookSecret).not.toBe('old-secret');
      await expectAppAuthenticates(Number(stored.githubAppId), stored.githubAppPrivateKey!);
    });

    describe('--stack NAME: the secret its SecretArn parameter names', () => {
      const env = {
        AWS_REGION: 'us-east-1',
        AWS_ACCESS_KEY_ID: 'testing',
        AWS_SECRET_ACCESS_KEY: 'testing',
        AWS_ENDPOINT_URL_SECRETS_MANAGER: endpoint,
        AWS_ENDPOINT_URL_CLOUDFORMATION: endpoint,
      };
      const credentials = { accessKeyId: 'testing', secretAccessKey: 'testing' };

      /** A stack with the template's SecretArn parameter (and nothing else of it). */
      async function createStack(name: string, secretArn: string | undefined): Promise<void> {
        const cloudformation = new CloudFormationClient({ region: 'us-east-1', endpoint, credentials });
        try {
          await cloudformation.send(
            new CreateStackCommand({
              StackName: name,
              TemplateBody: JSON.stringify({
                ...(secretArn ? { Parameters: { SecretArn: { Type: 'String' } } } : {}),
                Resources: { Handle: { Type: 'AWS::CloudFormation::WaitConditionHandle' } },
              }),
              ...(secretArn
                ? { Parameters: [{ ParameterKey: 'SecretArn', ParameterValue: secretArn }] }
                : {}),
            }),
          );
        } finally {
          cloudformation.destroy();
        }
      }

      it("stores the App in the stack's secret, found by the stack's name", async () => {
        const client = new SecretsManagerClient({ region: 'us-east-1', endpoint, credentials });
        const created = await client.send(
          new CreateSecretCommand({
            Name: `lambkin-${randomBytes(3).toString('hex')}`,
            SecretString: JSON.stringify({ githubToken: 'ghp_old', webhookSecret: 'old-secret' }),
          }),
        );
        const stackName = `lambkin-app-${randomBytes(3).toString('hex')}`;
        await createStack(stackName, created.ARN!);
        const run = startSetupApp(['--stack', stackName, '--name', 'lambkin-by-stack'], env);
        const page = await (await chromium()).context.newPage();
        try {
          await page.goto(await run.startUrl);
          await page.waitForURL(/\/callback\?/);
        } finally {
          await page.close();
        }
        const result = await run.done;
        expect(result).toMatchObject({ code: 0, stderr: '' });
        expect(result.stdout).toContain(`stored in ${created.ARN!} (githubAppId, githubAppPrivateKey`);
        const secret = await client.send(new GetSecretValueCommand({ SecretId: created.ARN! }));
        client.destroy();
        const stored = JSON.parse(secret.SecretString!) as Record<string, string>;
        expect(Object.keys(stored).sort()).toEqual(['githubAppId', 'githubAppPrivateKey', 'webhookSecret']);
        await expectAppAuthenticates(Number(stored.githubAppId), stored.githubAppPrivateKey!);
      });

      it('stops before GitHub is asked when the stack, its SecretArn or the secret is missing', async () => {
        const noParameter = `not-lambkin-${randomBytes(3).toString('hex')}`;
        await createStack(noParameter, undefined);
        const noSecret = `lambkin-gone-${randomBytes(3).toString('hex')}`;
        await createStack(
          noSecret,
          'arn:aws:secretsmanager:us-east-1:123456789012:secret:lambkin-deleted-AbCdEf',
        );
        const cases = [
          ['no-such-stack', /no deployed stack "no-such-stack" in us-east-1/],
          [noParameter, /it has no SecretArn parameter: is it a Lambkin stack\?/],
          [noSecret, /no secret arn:aws:secretsmanager:\S+lambkin-deleted-AbCdEf: create it first/],
        ] as const;
        for (const [stackName, message] of cases) {
          const conversions = api.requests.length;
          const run = startSetupApp(['--stack', stackName], env);
          run.startUrl.catch(() => undefined); // it prints none: it stops first
          const result = await run.done;
          expect({ stackName, code: result.code, stdout: result.stdout }).toEqual({
            stackName,
            code: 1,
            stdout: '',
          });
          expect(result.stderr).toMatch(message);
          expect(api.requests.length).toBe(conversions);
        }
      });
    });
  });
});
