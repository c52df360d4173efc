/**
 * `lambkin setup owner/repo --url WEBHOOK_URL [--secret-from-env]`: points a repository's webhook
 * at Lambkin — creates it (`push` and `pull_request`, JSON, TLS checked, active), or updates the
 * hook that already delivers to that URL, so running it again changes nothing more.
 *
 * The secret: with --secret-from-env, the stack's own from LAMBKIN_WEBHOOK_SECRET (the first,
 * newest, when it lists two during a rotation). Without it, a new hook gets a fresh random secret,
 * printed once for the stack's configuration, and an existing hook keeps the secret it has.
 */
import { randomBytes } from 'node:crypto';
import type { Command } from 'commander';
import type { RepoName } from '../../core/build.js';
import { DEFAULT_GITHUB_API_URL } from '../../config.js';
import { createGitHubClient } from '../../github/client.js';
import { ensureRepoWebhook, LAMBKIN_HOOK_EVENTS } from '../../github/hooks.js';
import { parseRepoArgument, parseWebhookUrl } from '../arguments.js';
import { CliError } from '../cli-errors.js';
import type { CliContext, CommandModule } from '../program.js';
import { registerSetupApp } from './setup-app.js';

interface SetupOptions {
  url?: string;
  secretFromEnv?: boolean;
}

/** A variable the command needs is not set. */
export class SetupVariableError extends CliError {
  constructor(variable: string, why: string) {
    super('SETUP_VARIABLE', `${variable} is not set: ${why}`);
  }
}

/** A webhook secret as strong as GitHub's docs ask for: 32 random bytes, as hex. */
export function newWebhookSecret(): string {
  return randomBytes(32).toString('hex');
}

export const setupCommand: CommandModule = {
  name: 'setup',
  register(program, context) {
    program
      .command('setup')
      .summary("create or update a repository's webhook for Lambkin")
      .description(
        "Create the repository's webhook that sends push and pull_request events to Lambkin's " +
          'webhook URL (JSON payloads, TLS checked, active), or update the hook that already ' +
          'delivers to that URL: running it again is harmless. Needs GITHUB_TOKEN with admin rights ' +
          'on the repository (the admin:repo_hook scope, or the fine-grained "Webhooks: read and ' +
          'write" permission); GITHUB_API_URL for GitHub Enterprise Server.\n\n' +
          "The secret: --secret-from-env sets the stack's own, from LAMBKIN_WEBHOOK_SECRET (for a " +
          'deployed stack, the "webhookSecret" of its Secrets Manager secret). Without it a new hook ' +
          'gets a random secret, printed once, that the stack refuses deliveries signed with until ' +
          "it is stored as the stack's webhook secret; an existing hook keeps its secret.",
      )
      .argument('<owner/repo>', 'the repository, as GitHub names it', parseRepoArgument)
      .option('--url <url>', "the webhook function's URL (the stack's WebhookUrl output)", parseWebhookUrl)
      .option(
        '--secret-from-env',
        "give the hook the stack's secret, from LAMBKIN_WEBHOOK_SECRET (the first, when it lists two)",
      )
      .addHelpText(
        'after',
        '\nExamples:\n' +
          '  $ GITHUB_TOKEN=ghp_… LAMBKIN_WEBHOOK_SECRET=… lambkin setup octo/hello \\\n' +
          '      --url https://abc123.execute-api.us-east-1.amazonaws.com/webhook --secret-from-env\n' +
          '  $ GITHUB_TOKEN=ghp_… lambkin setup octo/hello --url https://ci.example.com/webhook',
      )
      .action(async (repo: RepoName, options: SetupOptions) => setup(context, repo, options));
    // A subcommand of `setup` (`lambkin setup app`): so `--url` above is checked in the action.
    registerSetupApp(setupCommandOf(program), context);
  },
};

function setupCommandOf(program: Command): Command {
  const command = program.commands.find((candidate) => candidate.name() === 'setup');
  if (!command) throw new Error('the setup command is not registered');
  return command;
}

async function setup(context: CliContext, repo: RepoName, options: SetupOptions): Promise<void> {
  if (options.url === undefined) {
    throw new CliError('MISSING_URL', "required option '--url <url>' not specified", 2);
  }
  const token = context.env.GITHUB_TOKEN?.trim();
  if (!token) {
    throw new SetupVariableError(
      'GITHUB_TOKEN',
      "set it to a token with admin rights on the repository (it creates the repository's webhook)",
    );
  }
  let secret: string | undefined;
  if (options.secretFromEnv) {
    secret = context.env.LAMBKIN_WEBHOOK_SECRET?.split(',')
      .map((part) => part.trim())
      .find(Boolean);
    if (!secret) {
      throw new SetupVariableError(
        'LAMBKIN_WEBHOOK_SECRET',
        "--secret-from-env sets the stack's webhook secret from it; set it, or leave out --secret-from-env",
      );
    }
  }
  const octokit = createGitHubClient({
    baseUrl: context.env.GITHUB_API_URL?.trim() || DEFAULT_GITHUB_API_URL,
    token,
    // The client's rate limit waits, for the person waiting.
    logger: {
      info: () => undefined,
      warn: (message) => context.stderr.write(`lambkin: warning: ${message}\n`),
      error: () => undefined,
    },
  });
  const result = await ensureRepoWebhook(octokit, repo, {
    url: options.url,
    events: LAMBKIN_HOOK_EVENTS,
    ...(secret === undefined ? {} : { secret }),
    newSecret: newWebhookSecret,
  });
  const { hook } = result;
  context.stdout.write(
    `${result.action} webhook ${hook.id} of ${repo}: ${hook.url} (${hook.events.join(', ')}), ` +
      `${result.secretSet ? 'secret set' : 'its secret kept'}\n`,
  );
  if (result.generatedSecret) {
    context.stdout.write(
      `webhook secret: ${result.generatedSecret}\n` +
        'store it as the stack\'s webhook secret (LAMBKIN_WEBHOOK_SECRET locally, "webhookSecret" in ' +
        'the LAMBKIN_SECRET_ARN secret in the cloud); GitHub never shows it again\n',
    );
  }
}
