/**
 * `lambkin badge owner/repo [--branch NAME]`: the Markdown of the repository's build badge, to
 * paste into its README. A private repository's link carries its badge token (made on first use).
 */
import type { RepoName } from '../../core/build.js';
import { badgeUrl, repoPageUrl } from '../../core/links.js';
import { findBadgeBuild } from '../../controller/log-route.js';
import { badgeWordOf } from '../../pages/badge.js';
import { STACK_HELP, addStackOptions, parseRepoArgument } from '../arguments.js';
import { CliError, UsageError } from '../cli-errors.js';
import { withStack, type CommandModule } from '../program.js';
import type { StackOptions } from '../stack.js';

interface BadgeOptions extends StackOptions {
  branch?: string;
  url?: boolean;
  newToken?: boolean;
}

/** The stack's public URL is unknown: a badge link cannot be made. */
export class NoPublicUrlError extends CliError {
  constructor() {
    super(
      'NO_PUBLIC_URL',
      "a badge link needs the stack's public URL: set LAMBKIN_PUBLIC_URL, or use --local or --stack NAME",
    );
  }
}

export const badgeCommand: CommandModule = {
  name: 'badge',
  register(program, context) {
    const command = program
      .command('badge')
      .summary("print the Markdown of a repository's build badge")
      .description(
        "Print the Markdown of the repository's build badge (`build | passing`), to paste into its " +
          'README. It shows the latest build of the default branch (or of --branch) that ended: ' +
          "passing, failing or error; unknown when there is none. A public repository's badge links " +
          "to its page of recent builds. A private repository's badge link carries the repository's " +
          'badge token, made the first time this command is run for it: anyone who has the link sees ' +
          'the state of the branch, nothing else; --new-token replaces it (links with the old one ' +
          'then show unknown).',
      )
      .argument('<owner/repo>', 'the repository, as GitHub names it', parseRepoArgument)
      .option('--branch <name>', 'the badge of this branch (default: the default branch)')
      .option('--url', 'print only the badge URL')
      .option(
        '--new-token',
        "replace a private repository's badge token: links with the old one show unknown",
      );
    addStackOptions(command)
      .addHelpText(
        'after',
        `${STACK_HELP}\n\nExamples:\n  $ lambkin badge octo/hello\n` +
          '  $ lambkin badge octo/hello --branch release --local\n' +
          '  $ lambkin badge octo/private-app --new-token',
      )
      .action(async (repo: RepoName, options: BadgeOptions) => {
        if (options.branch === '') throw new UsageError('--branch needs a branch name');
        await withStack(context, options, ['builds'], async (stack) => {
          if (!stack.publicUrl) throw new NoPublicUrlError();
          const subject = await findBadgeBuild(stack.builds, repo, options.branch);
          if (options.newToken && !subject.isPrivate) {
            throw new CliError(
              'NOT_PRIVATE',
              `${repo} is not private as far as its builds tell: its badge has no token to replace`,
            );
          }
          const token = !subject.isPrivate
            ? undefined
            : options.newToken
              ? await stack.builds.replaceBadgeToken(repo)
              : await stack.builds.ensureBadgeToken(repo);
          const image = badgeUrl(stack.publicUrl, repo, {
            ...(options.branch !== undefined ? { branch: options.branch } : {}),
            ...(token ? { token } : {}),
          });
          if (options.url) context.stdout.write(`${image}\n`);
          // A private repository has no public page of builds to link to.
          else if (token) context.stdout.write(`![build](${image})\n`);
          else context.stdout.write(`[![build](${image})](${repoPageUrl(stack.publicUrl, repo)})\n`);

          const which = subject.branch ?? 'its default branch';
          context.stderr.write(
            subject.build
              ? `the badge shows ${badgeWordOf(subject.build.state)}: build #${subject.build.number} of ${which}\n`
              : `the badge shows unknown until a build of ${which} ends${
                  subject.branch ? '' : ' (no build of the repository has recorded its default branch yet)'
                }\n`,
          );
          if (token) {
            context.stderr.write(
              `${repo} is private: the link carries its badge token; whoever has it sees the badge, not the logs\n`,
            );
          }
        });
      });
  },
};
