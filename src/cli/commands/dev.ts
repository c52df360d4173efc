/** `lambkin dev`: the embedded local stack, until interrupted. */
import { readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { DEFAULT_GITHUB_API_URL, describeGitHubMode, keyFileExposure } from '../../config.js';
import { describeLocalConfig } from '../../local/local-config.js';
import { startLocalStack } from '../../local/stack.js';
import { ConfigurationError } from '../../core/errors.js';
import { createJsonLogger } from '../../core/logger.js';
import { CliError } from '../cli-errors.js';
import type { CliContext, CommandModule } from '../program.js';
import { LOCAL_APP_FILE } from './setup-app.js';

interface DevOptions {
  port: string;
  dataDir: string;
  githubApi?: string;
  concurrency?: string;
  allowUnsandboxedForks?: boolean;
}

export const devCommand: CommandModule = {
  name: 'dev',
  register(program: Command, context: CliContext) {
    program
      .command('dev')
      .description(
        'Start the embedded local stack: webhook endpoint, Lambda Invoke API, log viewer, and DynamoDB- and S3-compatible servers, until interrupted.',
      )
      .option('--port <port>', 'port of the webhook, Lambda API and log viewer', '3000')
      .option('--data-dir <dir>', 'where the stack keeps its data and stack.json', '.lambkin')
      .option(
        '--github-api <url>',
        `GitHub API base URL (default: GITHUB_API_URL or ${DEFAULT_GITHUB_API_URL})`,
      )
      .option('--concurrency <n>', 'builds and jobs running at once (default: one per core, at least 2)')
      .option(
        '--allow-unsandboxed-forks',
        'not run as root: build pull requests from forks anyway, as your own user (docs/security.md)',
      )
      .addHelpText(
        'after',
        `
Environment:
  LAMBKIN_WEBHOOK_SECRET          the webhook's secret (required, unless <data-dir>/github-app.json has one)
  GITHUB_TOKEN                    token that sets commit statuses (optional locally)
  LAMBKIN_GITHUB_APP_ID           App mode (check runs): the GitHub App's id, with its private key in
  LAMBKIN_GITHUB_APP_PRIVATE_KEY  (PEM text) or LAMBKIN_GITHUB_APP_PRIVATE_KEY_FILE (a path);
                                  without these, the App that \`lambkin setup app --local\` stored in
                                  <data-dir>/github-app.json. A token or an App, not both.
  GITHUB_API_URL                  GitHub API base URL (or --github-api)
  LAMBKIN_SLACK_API_URL           Slack Web API base URL (a stand-in or a proxy)
  LAMBKIN_QUEUE_TIMEOUT_SECONDS, LAMBKIN_RUNNER_TIMEOUT_SECONDS, LAMBKIN_LOG_LIMIT_BYTES
                                  as in the cloud (docs/configuration.md)
The stack sets its own table and bucket names, builder function and public URL, and has no use
for LAMBKIN_RUNNER_FUNCTION, LAMBKIN_UNTRUSTED_RUNNER_FUNCTION, LAMBKIN_SECRET_ARN,
LAMBKIN_SETTINGS_KMS_KEY or LAMBKIN_UPLOAD_ROLE:
it says so at start, with the variables it took from the environment.

Every endpoint is printed at start, one per line, and written to <data-dir>/stack.json, where
the other commands given --local find the stack. Stop it with Ctrl-C.

Example:
  LAMBKIN_WEBHOOK_SECRET=s3cret GITHUB_TOKEN=ghp_… lambkin dev --port 3000`,
      )
      .action(async (options: DevOptions) => {
        const dataDir = resolve(context.cwd, options.dataDir);
        const storedApp = await localApp(context, dataDir);
        // The App's own webhook secret signs its deliveries; one set in the environment is kept too.
        const secret = [context.env.LAMBKIN_WEBHOOK_SECRET, storedApp?.webhookSecret]
          .filter((value): value is string => Boolean(value?.trim()))
          .join(',');
        if (!secret)
          throw new CliError(
            'NOT_CONFIGURED',
            'LAMBKIN_WEBHOOK_SECRET is not set: set it to the secret of your GitHub webhook.',
          );
        const port = Number(options.port);
        if (!Number.isInteger(port) || port < 0 || port > 65535)
          throw new CliError('BAD_PORT', `--port must be a port number (got "${options.port}").`, 2);
        const concurrency = options.concurrency === undefined ? undefined : Number(options.concurrency);
        if (concurrency !== undefined && (!Number.isInteger(concurrency) || concurrency < 1))
          throw new CliError('BAD_CONCURRENCY', '--concurrency must be a whole number of at least 1.', 2);
        const appFromEnvironment = context.env.LAMBKIN_GITHUB_APP_ID?.trim();
        const stack = await startLocalStack({
          dataDir,
          port,
          githubApiUrl: options.githubApi ?? context.env.GITHUB_API_URL ?? DEFAULT_GITHUB_API_URL,
          ...(context.env.GITHUB_TOKEN ? { githubToken: context.env.GITHUB_TOKEN } : {}),
          ...(appFromEnvironment
            ? {
                githubApp: {
                  appId: appFromEnvironment,
                  ...(context.env.LAMBKIN_GITHUB_APP_PRIVATE_KEY
                    ? { privateKey: context.env.LAMBKIN_GITHUB_APP_PRIVATE_KEY }
                    : {}),
                  ...(context.env.LAMBKIN_GITHUB_APP_PRIVATE_KEY_FILE
                    ? {
                        privateKeyFile: resolve(context.cwd, context.env.LAMBKIN_GITHUB_APP_PRIVATE_KEY_FILE),
                      }
                    : {}),
                },
              }
            : storedApp
              ? { githubApp: { appId: String(storedApp.appId), privateKey: storedApp.privateKey } }
              : {}),
          webhookSecret: secret,
          ...(concurrency !== undefined ? { concurrency } : {}),
          ...(options.allowUnsandboxedForks ? { allowUnsandboxedForks: true } : {}),
          environment: context.env,
          logger: createJsonLogger((line) => context.stderr.write(line + '\n')),
        }).catch((error: unknown) => {
          // A variable of the environment it reads is wrong; said before any server started.
          if (!(error instanceof ConfigurationError)) throw error;
          throw new CliError(
            'NOT_CONFIGURED',
            `not configured: ${error.problems.join('; ')}: fix or unset it ` +
              '(`lambkin dev --help` lists the variables it reads)',
          );
        });
        for (const line of describeLocalConfig(stack.config, context.env)) context.stdout.write(`${line}\n`);
        context.stdout.write(
          `${describeGitHubMode(stack.config)}${storedApp && !appFromEnvironment ? ` from ${join(dataDir, LOCAL_APP_FILE)}` : ''}\n`,
        );
        for (const [name, url] of Object.entries(stack.file.endpoints))
          context.stdout.write(`${name} ${url}\n`);
        if (stack.intake.refuseUntrustedBuilds !== undefined)
          context.stdout.write(`forks refused: ${stack.intake.refuseUntrustedBuilds}\n`);
        context.stdout.write(`ready (data in ${dataDir}; Ctrl-C stops)\n`);
        await new Promise<void>((done) => {
          process.once('SIGINT', done);
          process.once('SIGTERM', done);
        });
        await stack.stop();
      });
  },
};

/** What `lambkin setup app --local` stored: the App `lambkin dev` signs in as. */
interface StoredApp {
  appId: number | string;
  privateKey: string;
  webhookSecret?: string;
}

/**
 * The App in `<dataDir>/github-app.json`, when there is one and the environment names no token or
 * App of its own (the environment's App is used instead; a token with a stored App is an error:
 * a stack signs in one way).
 */
async function localApp(context: CliContext, dataDir: string): Promise<StoredApp | undefined> {
  const path = join(dataDir, LOCAL_APP_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CliError('NOT_CONFIGURED', `${path} cannot be read: ${(error as Error).message}`);
  }
  if (context.env.LAMBKIN_GITHUB_APP_ID?.trim()) return undefined;
  const exposed = keyFileExposure(path, (await stat(path)).mode);
  if (exposed) throw new CliError('NOT_CONFIGURED', `the App's key is in ${exposed}`);
  if (context.env.GITHUB_TOKEN?.trim()) {
    throw new CliError(
      'NOT_CONFIGURED',
      `GITHUB_TOKEN is set and ${path} holds a GitHub App: a stack signs in one way. Unset ` +
        'GITHUB_TOKEN to run as the App (check runs), or move the file away to use the token.',
    );
  }
  let stored: Partial<StoredApp>;
  try {
    stored = JSON.parse(text) as Partial<StoredApp>;
  } catch {
    throw new CliError('NOT_CONFIGURED', `${path} is not JSON: run \`lambkin setup app --local\` again`);
  }
  if (
    (typeof stored.appId !== 'number' && typeof stored.appId !== 'string') ||
    typeof stored.privateKey !== 'string'
  ) {
    throw new CliError(
      'NOT_CONFIGURED',
      `${path} has no appId and privateKey: run \`lambkin setup app --local\` again`,
    );
  }
  return {
    appId: stored.appId,
    privateKey: stored.privateKey,
    ...(typeof stored.webhookSecret === 'string' ? { webhookSecret: stored.webhookSecret } : {}),
  };
}
