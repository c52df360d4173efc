/** `lambkin dev`: the embedded local stack, until interrupted. */
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { DEFAULT_GITHUB_API_URL } from '../../config.js';
import { describeLocalConfig } from '../../local/local-config.js';
import { startLocalStack } from '../../local/stack.js';
import { ConfigurationError } from '../../core/errors.js';
import { createJsonLogger } from '../../core/logger.js';
import { CliError } from '../cli-errors.js';
import type { CliContext, CommandModule } from '../program.js';

interface DevOptions {
  port: string;
  dataDir: string;
  githubApi?: string;
  concurrency: string;
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
      .option('--concurrency <n>', 'builds running at once', '2')
      .option(
        '--allow-unsandboxed-forks',
        'not run as root: build pull requests from forks anyway, as your own user (docs/security.md)',
      )
      .addHelpText(
        'after',
        `
Environment:
  LAMBKIN_WEBHOOK_SECRET          the webhook's secret (required)
  GITHUB_TOKEN                    token that sets commit statuses (optional locally)
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
        const secret = context.env.LAMBKIN_WEBHOOK_SECRET;
        if (!secret)
          throw new CliError(
            'NOT_CONFIGURED',
            'LAMBKIN_WEBHOOK_SECRET is not set: set it to the secret of your GitHub webhook.',
          );
        const port = Number(options.port);
        if (!Number.isInteger(port) || port < 0 || port > 65535)
          throw new CliError('BAD_PORT', `--port must be a port number (got "${options.port}").`, 2);
        const concurrency = Number(options.concurrency);
        if (!Number.isInteger(concurrency) || concurrency < 1)
          throw new CliError('BAD_CONCURRENCY', '--concurrency must be a whole number of at least 1.', 2);
        const stack = await startLocalStack({
          dataDir: resolve(context.cwd, options.dataDir),
          port,
          githubApiUrl: options.githubApi ?? context.env.GITHUB_API_URL ?? DEFAULT_GITHUB_API_URL,
          ...(context.env.GITHUB_TOKEN ? { githubToken: context.env.GITHUB_TOKEN } : {}),
          webhookSecret: secret,
          concurrency,
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
        for (const [name, url] of Object.entries(stack.file.endpoints))
          context.stdout.write(`${name} ${url}\n`);
        if (stack.intake.refuseUntrustedBuilds !== undefined)
          context.stdout.write(`forks refused: ${stack.intake.refuseUntrustedBuilds}\n`);
        context.stdout.write(`ready (data in ${resolve(context.cwd, options.dataDir)}; Ctrl-C stops)\n`);
        await new Promise<void>((done) => {
          process.once('SIGINT', done);
          process.once('SIGTERM', done);
        });
        await stack.stop();
      });
  },
};
