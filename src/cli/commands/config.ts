/**
 * `lambkin config get|set|unset`: the operator's settings in the settings store, global or per
 * repository, addressed with dotted keys (src/cli/settings-keys.ts). `secretEnv` values are sealed
 * with the stack's cipher when set (src/cli/stack.ts), and opened only for `--show-secrets`.
 */
import type { Command } from 'commander';
import type { RepoName } from '../../core/build.js';
import { mergeSettings, type SettingsDocument } from '../../core/settings.js';
import { GLOBAL_SCOPE, openSecrets, plainSecretNames, repoScope, scopeKey } from '../../store/settings.js';
import { STACK_HELP, addStackOptions, parseRepoArgument } from '../arguments.js';
import { SettingsKeyError } from '../cli-errors.js';
import { formatJson } from '../output.js';
import { withStack, type CliContext, type CommandModule } from '../program.js';
import {
  SECRET_MASK,
  checkKeyPath,
  formatKeyPath,
  getAtPath,
  holdsSecrets,
  isNotificationSecretPath,
  maskSecrets,
  normalizeAndValidate,
  parseKeyPath,
  parseValue,
  setAtPath,
  unsetAtPath,
} from '../settings-keys.js';
import type { StackOptions } from '../stack.js';
import { type SettingsScope } from '../../core/ports.js';

interface ScopeOptions extends StackOptions {
  repo?: RepoName;
}

interface GetOptions extends ScopeOptions {
  showSecrets?: boolean;
  effective?: boolean;
}

const KEYS_HELP = `
Keys (docs/configuration.md, "Settings store and environment"):
  build.branches               branch globs whose pushes build
  build.ignoreBranches         branch globs whose pushes never build
  build.tags                   build tag pushes (true/false)
  build.pullRequests.<source>.build, .inheritSecrets, .allowConfigOverrides,
  .requireApproval             pull requests by source: fromSelfPublicRepo,
                               fromSelfPrivateRepo, fromForkPublicRepo,
                               fromForkPrivateRepo (docs/security.md);
                               requireApproval (App mode): hold each commit
                               until a maintainer approves it
  build.pullRequests.sameRepo  shorthand: build pull requests from the
                               repository itself (true/false)
  build.pullRequests.forks     shorthand: build pull requests from forks
  deploy.roleArn               the IAM role the deploy step runs as
  deploy.region                the deploy step's AWS_REGION
  deploy.branches, deploy.tags globs that may deploy at all: narrow the
                               default branch's deployBranches/deployTags
  config.<key>                 defaults of the repository config (install,
                               test, timeout, env, node, branches, …) and
                               allowConfigOverrides
  secretEnv.<NAME>             a secret variable for pushes (and pull requests
                               whose source inherits secrets), stored
                               encrypted (KMS: the stack's SettingsKeyId with
                               --stack, else LAMBKIN_SETTINGS_KMS_KEY;
                               --local: a key in the data directory)
  notifications.slack.webhookUrl  a Slack incoming-webhook URL (secret, stored
                               encrypted like secretEnv)
  notifications.slack.token    a Slack bot token, xoxb-… (secret), with
  notifications.slack.channel  the channel it posts to (updated in place)
  notifications.slack.on       which events notify: started, success, fixed,
                               failure, error, timed_out, cancelled
  notifications.slack.branches branch globs whose builds notify
  notifications.sns.topicArn   an SNS topic for finished builds (the stack's
                               NotificationTopicArns must name it); also
                               notifications.sns.on and .branches
  notifications.<slack|sns>.enabled  false turns one off
A name with dots goes in ["…"]: config.branches["release/1.x"].test`;

export const configCommand: CommandModule = {
  name: 'config',
  register(program, context) {
    const config = program
      .command('config')
      .summary('read and change global or per-repository settings')
      .description(
        "Read and change the operator's settings in the settings store: the global document, or a " +
          "repository's with --repo (which ranks above the global one). Keys are dotted paths into " +
          'the document, such as build.branches or config.timeout.',
      )
      .addHelpText('after', KEYS_HELP);

    scoped(config.command('get'))
      .summary('print a setting, or the whole document, as JSON')
      .description(
        'Print the value of KEY as JSON, or the whole settings document without KEY. Secret values ' +
          'are shown as *** unless --show-secrets, which decrypts them (in AWS this needs kms:Decrypt ' +
          "on the stack's settings key). A key that is not set is an error (exit 1).",
      )
      .argument('[key]', 'dotted key, such as build.tags; the whole document when omitted')
      .option('--show-secrets', 'decrypt and show the values of secretEnv instead of ***')
      .option('--effective', 'the merged settings (built-in defaults, global, then the repository)')
      .addHelpText(
        'after',
        `${KEYS_HELP}\n${STACK_HELP}\n\nExamples:\n  $ lambkin config get\n` +
          '  $ lambkin config get build.branches --repo octo/hello\n' +
          '  $ lambkin config get --effective --repo octo/hello',
      )
      .action((key: string | undefined, options: GetOptions) => getSetting(context, key, options));

    scoped(config.command('set'))
      .summary('set a setting')
      .description(
        'Set KEY to VALUE. VALUE is read as JSON when it is valid JSON (true, 600, ["main"], ' +
          '{"NODE_ENV":"test"}), else as text; secret values and node ranges are always text. A list ' +
          'of globs also takes a single one. The result is checked before it is stored.',
      )
      .argument('<key>', 'dotted key, such as build.tags or secretEnv.NPM_TOKEN')
      .argument('<value>', 'the value: JSON, or text')
      .addHelpText(
        'after',
        `${KEYS_HELP}\n${STACK_HELP}\n\nExamples:\n  $ lambkin config set build.branches '["main", "release/*"]'\n` +
          '  $ lambkin config set build.pullRequests.forks false --repo octo/hello\n' +
          '  $ lambkin config set config.timeout 900 --repo octo/hello\n' +
          '  $ lambkin config set secretEnv.NPM_TOKEN "$NPM_TOKEN" --repo octo/hello\n' +
          '  $ lambkin config set --stack lambkin build.pullRequests.forks false\n' +
          '  $ lambkin config set notifications.slack.webhookUrl "$SLACK_WEBHOOK_URL"\n' +
          `  $ lambkin config set notifications.slack.on '["failure", "fixed"]' --repo octo/hello`,
      )
      .action((key: string, value: string, options: ScopeOptions) =>
        setSetting(context, key, value, options),
      );

    scoped(config.command('unset'))
      .summary('remove a setting (the global or default value applies again)')
      .description(
        'Remove KEY from the settings document, so that the global value (for --repo) or the ' +
          'built-in default applies again. Removing a key that is not set changes nothing.',
      )
      .argument('<key>', 'dotted key, such as build.tags')
      .addHelpText(
        'after',
        `${KEYS_HELP}\n${STACK_HELP}\n\nExamples:\n  $ lambkin config unset config.timeout --repo octo/hello\n` +
          '  $ lambkin config unset secretEnv.NPM_TOKEN',
      )
      .action((key: string, options: ScopeOptions) => unsetSetting(context, key, options));
  },
};

function scoped(command: Command): Command {
  return addStackOptions(
    command.option(
      '--repo <owner/repo>',
      "a repository's settings instead of the global ones",
      parseRepoArgument,
    ),
  );
}

function scopeOf(options: ScopeOptions): SettingsScope {
  return options.repo === undefined ? GLOBAL_SCOPE : repoScope(options.repo);
}

function scopeLabel(options: ScopeOptions): string {
  return options.repo === undefined ? 'global' : options.repo;
}

async function getSetting(context: CliContext, key: string | undefined, options: GetOptions): Promise<void> {
  const path = key === undefined ? [] : parseKeyPath(key);
  if (path.length > 0) checkKeyPath(path, 'get');
  const document = await withStack(context, options, ['settings'], async (stack) => {
    // --effective: the documents the builder merges, global then the repository's.
    const scopes = options.effective
      ? [GLOBAL_SCOPE, ...(options.repo === undefined ? [] : [repoScope(options.repo)])]
      : [scopeOf(options)];
    const stored = await Promise.all(scopes.map((scope) => stack.settings.get(scope)));
    scopes.forEach((scope, index) => warnAboutPlainSecrets(context, scope, stored[index]));
    const documents = options.showSecrets
      ? await Promise.all(scopes.map((scope, index) => openSecrets(stored[index], scope, stack.cipher)))
      : stored;
    return options.effective ? mergeSettings(...documents) : (documents[0] ?? {});
  });
  const shown = options.showSecrets ? document : maskSecrets(document);
  const value = path.length === 0 ? shown : getAtPath(shown, path);
  if (value === undefined) {
    throw new SettingsKeyError(
      `${formatKeyPath(path)} is not set (${scopeLabel(options)})` +
        (options.effective ? '' : '; --effective shows what applies'),
    );
  }
  context.stdout.write(formatJson(value));
}

async function setSetting(
  context: CliContext,
  key: string,
  raw: string,
  options: ScopeOptions,
): Promise<void> {
  const path = parseKeyPath(key);
  checkKeyPath(path, 'set');
  const value = parseValue(path, raw);
  let sealing = false;
  const stored = await withStack(context, options, ['settings'], (stack) => {
    sealing = stack.cipher !== undefined;
    return stack.settings.update(scopeOf(options), (current) =>
      normalizeAndValidate(setAtPath(current, path, value), path),
    );
  });
  // What was stored, which is not always what was typed (a single glob becomes a list).
  const secret = holdsSecrets(path);
  if (secret && !sealing) {
    context.stderr.write(
      `lambkin: warning: ${formatKeyPath(path)} is stored in plain text: set LAMBKIN_SETTINGS_KMS_KEY ` +
        "to the stack's settings key to encrypt secret values\n",
    );
  }
  const shown =
    path[0] === 'secretEnv'
      ? path.length === 1
        ? '{…}'
        : SECRET_MASK
      : isNotificationSecretPath(path)
        ? SECRET_MASK
        : JSON.stringify(getAtPath(maskSecrets(stored), path));
  context.stdout.write(`set ${formatKeyPath(path)} = ${shown} (${scopeLabel(options)})\n`);
}

async function unsetSetting(context: CliContext, key: string, options: ScopeOptions): Promise<void> {
  const path = parseKeyPath(key);
  const removed = await withStack(context, options, ['settings'], async (stack) => {
    const scope = scopeOf(options);
    const current: SettingsDocument = (await stack.settings.get(scope)) ?? {};
    checkKeyPath(path, 'unset', current);
    if (getAtPath(current, path) === undefined) return false;
    let removedNow = false;
    await stack.settings.update(scope, (latest) => {
      removedNow = unsetAtPath(latest, path);
      return latest;
    });
    return removedNow;
  });
  if (removed) context.stdout.write(`unset ${formatKeyPath(path)} (${scopeLabel(options)})\n`);
  else context.stderr.write(`${formatKeyPath(path)} was not set (${scopeLabel(options)}); nothing changed\n`);
}

/** Secret values written before sealing existed still work, but should be set again. */
function warnAboutPlainSecrets(
  context: CliContext,
  scope: SettingsScope,
  document: SettingsDocument | undefined,
): void {
  const names = plainSecretNames(document);
  if (names.length === 0) return;
  context.stderr.write(
    `lambkin: warning: ${names.map((name) => `secretEnv.${name}`).join(', ')} of ${scopeKey(scope)} ` +
      `${names.length === 1 ? 'is' : 'are'} stored in plain text: set ${names.length === 1 ? 'it' : 'them'} ` +
      'again to encrypt\n',
  );
}
