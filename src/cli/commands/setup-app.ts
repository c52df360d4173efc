/**
 * `lambkin setup app`: makes Lambkin's GitHub App with GitHub's manifest flow. A page on a loopback
 * port posts the manifest to GitHub (src/github/app-manifest.ts), the person confirms there with one
 * click, GitHub sends the browser back to that port with a one-time code, and the code is exchanged
 * for the App's id, private key and webhook secret, which are stored where the stack reads them:
 * `--local` for `lambkin dev`, `--secret-arn ARN` or `--stack NAME` (its SecretArn parameter) for a
 * deployed stack. Where it goes is settled (and the secret read) before GitHub is asked, so no App
 * is made that has nowhere to go.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import {
  GetSecretValueCommand,
  PutSecretValueCommand,
  ResourceNotFoundException,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import type { Command } from 'commander';
import { DEFAULT_GITHUB_API_URL } from '../../config.js';
import { isPlainObject } from '../../core/values.js';
import {
  appManifest,
  convertManifestCode,
  manifestFormUrl,
  type AppRegistration,
} from '../../github/app-manifest.js';
import { createGitHubClient } from '../../github/client.js';
import { escapeHtml } from '../../pages/html.js';
import { CliError } from '../cli-errors.js';
import type { CliContext } from '../program.js';
import { parseWebhookUrl } from '../arguments.js';
import { DEFAULT_DATA_DIR, endpointOf, resolveRegion } from '../stack.js';
import { readStackSecretArn } from '../stack-outputs.js';
import { messageOf } from '../../core/errors.js';

export const DEFAULT_GITHUB_WEB_URL = 'https://github.com';
/** The file `lambkin dev` finds the App in, in its data dir (0600, like stack.json). */
export const LOCAL_APP_FILE = 'github-app.json';

interface SetupAppOptions {
  webhookUrl: string;
  org?: string;
  name?: string;
  local?: boolean;
  dataDir: string;
  secretArn?: string;
  stack?: string;
  region?: string;
  githubUrl?: string;
  open: boolean;
  timeout: string;
}

export function registerSetupApp(setup: Command, context: CliContext): void {
  setup
    .command('app')
    .description(
      "Create Lambkin's GitHub App with GitHub's manifest flow: open the printed URL, confirm on " +
        'GitHub, and the App (id, private key, webhook secret) is stored for the stack. The App asks ' +
        'for checks and commit statuses (write), contents, pull requests and metadata (read), and ' +
        'the events push, pull_request, check_suite, check_run and merge_group.',
    )
    .requiredOption('--webhook-url <url>', "where GitHub delivers the App's webhooks", parseWebhookUrl)
    .option('--org <name>', "create the App in this organization (default: your user's account)")
    .option('--name <name>', 'the App name, unique on GitHub (default: lambkin-<random>)')
    .option('--local', "store it for `lambkin dev`, in its data dir's github-app.json")
    .option('--data-dir <dir>', 'the data dir of `lambkin dev` (with --local)', DEFAULT_DATA_DIR)
    .option('--secret-arn <arn>', "store it in the stack's Secrets Manager secret (its SecretArn parameter)")
    .option(
      '--stack <name>',
      "store it in the Secrets Manager secret of this deployed stack (found by its CloudFormation name: the stack's SecretArn parameter)",
    )
    .option(
      '--region <region>',
      'the AWS region of the stack (with --stack; default: AWS_REGION, AWS_DEFAULT_REGION, then your AWS profile)',
    )
    .option(
      '--github-url <url>',
      `GitHub's web address (GitHub Enterprise Server: its own; default ${DEFAULT_GITHUB_WEB_URL})`,
    )
    .option('--no-open', 'only print the URL to open, do not start a browser')
    .option('--timeout <minutes>', 'how long to wait for GitHub to send the browser back', '10')
    .action(async (options: SetupAppOptions) => setupApp(context, options));
}

async function setupApp(context: CliContext, options: SetupAppOptions): Promise<void> {
  const targets = [
    options.local === true ? '--local' : undefined,
    options.stack !== undefined ? '--stack' : undefined,
    options.secretArn !== undefined ? '--secret-arn' : undefined,
  ].filter((target) => target !== undefined);
  if (targets.length === 0) {
    throw new CliError(
      'SETUP_APP_TARGET',
      'say where the App is stored: --local (and --data-dir) for `lambkin dev`, or --stack NAME or ' +
        '--secret-arn ARN for a deployed stack',
      2,
    );
  }
  if (targets.length > 1) {
    throw new CliError(
      'SETUP_APP_TARGET',
      `${targets.join(' and ')} exclude each other: the App is stored in one place ` +
        '(--local for `lambkin dev`, --stack NAME or --secret-arn ARN for a deployed stack)',
      2,
    );
  }
  if (options.region !== undefined && options.stack === undefined) {
    throw new CliError('SETUP_APP_TARGET', '--region goes with --stack NAME only', 2);
  }
  const minutes = Number(options.timeout);
  if (!(minutes > 0)) throw new CliError('BAD_TIMEOUT', '--timeout must be a number of minutes above 0.', 2);
  // The secret is found, and read, before anyone creates an App on GitHub.
  const secretArn =
    options.stack !== undefined
      ? await stackSecretArn(context, options.stack, options.region)
      : options.secretArn;
  if (secretArn !== undefined) await readSecret(context, secretArn);
  const apiUrl = context.env.GITHUB_API_URL?.trim() || DEFAULT_GITHUB_API_URL;
  const webUrl = (options.githubUrl ?? DEFAULT_GITHUB_WEB_URL).replace(/\/+$/, '');
  const registration = await runManifestFlow(context, {
    apiUrl,
    webUrl,
    webhookUrl: options.webhookUrl,
    name: options.name ?? `lambkin-${randomBytes(3).toString('hex')}`,
    ...(options.org ? { org: options.org } : {}),
    open: options.open,
    timeoutMs: minutes * 60_000,
  });
  const where =
    secretArn !== undefined
      ? await storeInSecret(context, secretArn, registration)
      : await storeLocally(resolve(context.cwd, options.dataDir), registration);
  context.stdout.write(
    `created the GitHub App ${registration.slug} (id ${registration.appId}); stored ${where}\n` +
      `install it on your repositories: ${registration.htmlUrl || `${webUrl}/apps/${registration.slug}`}/installations/new\n`,
  );
}

interface ManifestFlowOptions {
  apiUrl: string;
  webUrl: string;
  webhookUrl: string;
  name: string;
  org?: string;
  open: boolean;
  timeoutMs: number;
}

/**
 * Serves the page that posts the manifest, waits for GitHub's redirect back with the code (and the
 * state this run made), and exchanges the code. Listens on loopback only, for this one exchange.
 */
async function runManifestFlow(context: CliContext, options: ManifestFlowOptions): Promise<AppRegistration> {
  const state = randomBytes(16).toString('hex');
  const github = createGitHubClient({ baseUrl: options.apiUrl });
  let settle: { resolve(app: AppRegistration): void; reject(error: unknown): void } | undefined;
  const done = new Promise<AppRegistration>((resolveFlow, rejectFlow) => {
    settle = { resolve: resolveFlow, reject: rejectFlow };
  });
  let base = '';
  let exchanging = false;
  const server: Server = createServer((request, response) => {
    const url = new URL(request.url ?? '/', base);
    const page = (status: number, title: string, body: string): void => {
      response.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      response.end(`<!doctype html><meta charset="utf-8"><title>${escapeHtml(title)}</title>${body}`);
    };
    if (request.method === 'GET' && url.pathname === '/') {
      const manifest = appManifest({
        name: options.name,
        homepageUrl: new URL(options.webhookUrl).origin,
        webhookUrl: options.webhookUrl,
        redirectUrl: `${base}/callback`,
      });
      page(
        200,
        'Create the Lambkin GitHub App',
        `<form method="post" action="${escapeHtml(manifestFormUrl(options.webUrl, state, options.org))}">` +
          `<input type="hidden" name="manifest" value="${escapeHtml(JSON.stringify(manifest))}">` +
          '<p>Lambkin asks GitHub to create its App; confirm there.</p><button>Continue to GitHub</button></form>' +
          '<script>document.forms[0].submit()</script>',
      );
      return;
    }
    if (request.method === 'GET' && url.pathname === '/callback') {
      const code = url.searchParams.get('code');
      if (url.searchParams.get('state') !== state || !code) {
        page(400, 'Not this run', '<p>This link is not from this run of <code>lambkin setup app</code>.</p>');
        return;
      }
      if (exchanging) {
        page(409, 'Already done', '<p>This code was already used; see the terminal.</p>');
        return;
      }
      exchanging = true;
      convertManifestCode(github, code).then(
        (app) => {
          page(
            200,
            'App created',
            `<p>The GitHub App ${escapeHtml(app.slug)} is created: back to the terminal.</p>`,
          );
          settle?.resolve(app);
        },
        (error: unknown) => {
          page(502, 'Not created', `<p>${escapeHtml(messageOf(error))}</p>`);
          settle?.reject(error);
        },
      );
      return;
    }
    page(404, 'Not found', '<p>Not found.</p>');
  });
  await new Promise<void>((listening, failed) => {
    server.once('error', failed);
    server.listen(0, '127.0.0.1', () => listening());
  });
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  context.stdout.write(`open ${base}/ in a browser to create the GitHub App (waiting for GitHub)\n`);
  if (options.open) openInBrowser(`${base}/`);
  const timer = setTimeout(
    () =>
      settle?.reject(
        new CliError(
          'SETUP_APP_TIMEOUT',
          `GitHub did not send the browser back within ${Math.round(options.timeoutMs / 60_000)} minutes: run it again`,
        ),
      ),
    options.timeoutMs,
  );
  try {
    return await done;
  } finally {
    clearTimeout(timer);
    server.closeAllConnections();
    await new Promise<void>((closed) => server.close(() => closed()));
  }
}

/** Best effort: the URL is printed either way. */
function openInBrowser(url: string): void {
  const opener = process.platform === 'darwin' ? 'open' : process.platform === 'win32' ? null : 'xdg-open';
  if (!opener) return;
  const child = spawn(opener, [url], { stdio: 'ignore', detached: true });
  child.on('error', () => undefined);
  child.unref();
}

async function storeLocally(dataDir: string, app: AppRegistration): Promise<string> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const path = join(dataDir, LOCAL_APP_FILE);
  // A new file, owner-only from its first byte, put in place of any earlier one: writing over an
  // existing file would keep its mode (0644 if someone made it so) and expose the key.
  const written = `${path}.${process.pid}.tmp`;
  try {
    await writeFile(written, JSON.stringify(app, null, 2) + '\n', { mode: 0o600, flag: 'wx' });
    await rename(written, path);
  } catch (error) {
    await rm(written, { force: true });
    throw error;
  }
  return `in ${path} (for lambkin dev --data-dir ${dataDir})`;
}

/** `--stack NAME`: the secret the stack's functions read, its SecretArn parameter. */
async function stackSecretArn(
  context: CliContext,
  stack: string,
  region: string | undefined,
): Promise<string> {
  const endpoint = endpointOf(context.env, 'CLOUDFORMATION');
  return readStackSecretArn(stack, {
    region: await resolveRegion(region, context.env),
    ...(endpoint ? { endpoint } : {}),
  });
}

/** A client in the secret's own region (a full ARN names it), else the SDK's. */
function secretsClient(context: CliContext, secretArn: string): SecretsManagerClient {
  const region = /^arn:aws[a-z-]*:secretsmanager:([a-z0-9-]+):/.exec(secretArn)?.[1];
  const endpoint = endpointOf(context.env, 'SECRETS_MANAGER');
  return new SecretsManagerClient({ ...(region ? { region } : {}), ...(endpoint ? { endpoint } : {}) });
}

/** The secret's keys now; a secret that is not a JSON object is not the stack's, and is refused. */
async function readSecret(context: CliContext, secretArn: string): Promise<Record<string, unknown>> {
  const client = secretsClient(context, secretArn);
  try {
    const { SecretString } = await client.send(new GetSecretValueCommand({ SecretId: secretArn }));
    let parsed: unknown;
    try {
      parsed = JSON.parse(SecretString ?? '');
    } catch {
      parsed = undefined;
    }
    if (!isPlainObject(parsed)) {
      throw new CliError(
        'SECRET_NOT_LAMBKIN',
        `the secret ${secretArn} does not hold a JSON object, as the stack's secret does ` +
          '(docs/deploy.md): is it the right one? It is left as it is',
      );
    }
    return parsed;
  } catch (error) {
    if (!(error instanceof ResourceNotFoundException)) throw error;
    throw new CliError('SECRET_NOT_FOUND', `no secret ${secretArn}: create it first (docs/deploy.md)`);
  } finally {
    client.destroy();
  }
}

/**
 * Adds the App to the stack's secret, keeping its other keys; the App's webhook secret replaces
 * the stack's, and the personal token goes (a deployment is in one mode or the other).
 */
async function storeInSecret(context: CliContext, secretArn: string, app: AppRegistration): Promise<string> {
  const { githubToken: _token, ...rest } = await readSecret(context, secretArn);
  const next = {
    ...rest,
    githubAppId: String(app.appId),
    githubAppPrivateKey: app.privateKey,
    webhookSecret: app.webhookSecret,
  };
  const client = secretsClient(context, secretArn);
  try {
    await client.send(new PutSecretValueCommand({ SecretId: secretArn, SecretString: JSON.stringify(next) }));
  } finally {
    client.destroy();
  }
  return `in ${secretArn} (githubAppId, githubAppPrivateKey, webhookSecret; githubToken removed)`;
}
