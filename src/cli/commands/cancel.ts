/**
 * `lambkin cancel owner/repo N`: ends a queued or running build as `cancelled` with one conditional
 * transition. A running runner is not stopped from here: the controller finds the build cancelled
 * when it reports, and keeps that state. The commit status becomes `error` ("Build #N cancelled by
 * …") when a GitHub token is configured, since nothing else will change it.
 */
import { statusDescription } from '../../controller/controller.js';
import { buildLabel, type BuildKey, type BuildRecord, type RepoName } from '../../core/build.js';
import { pageUrlOf } from '../../core/links.js';
import { commitStateFor, isTerminal, type BuildState } from '../../core/state-machine.js';
import { TransitionRefusedError } from '../../core/errors.js';
import { STACK_HELP, addStackOptions, parseBuildNumber, parseRepoArgument } from '../arguments.js';
import { BuildFinishedError } from '../cli-errors.js';
import { withStack, type CliContext, type CommandModule } from '../program.js';
import type { Stack, StackOptions } from '../stack.js';
import { buildOrFail, setStatusOrWarn } from './shared.js';

/** Who cancelled, for the build's description: the login name when known. */
export function cancelledBy(env: CliContext['env']): string {
  return env.USER?.trim() || env.USERNAME?.trim() || 'lambkin cancel';
}

export const cancelCommand: CommandModule = {
  name: 'cancel',
  register(program, context) {
    const command = program
      .command('cancel')
      .summary('cancel a queued or running build')
      .description(
        'End a queued or running build as cancelled ("cancelled by <user>"). A build that already ' +
          'finished is left as it is (exit 1). A running build stops reporting: the builder finds it ' +
          'cancelled and keeps that state. With GITHUB_TOKEN set, the commit status becomes error ' +
          '("Build #N cancelled by <user>"); without it, GitHub keeps showing pending.',
      )
      .argument('<owner/repo>', 'the repository, as GitHub names it', parseRepoArgument)
      .argument('<number>', 'the build to cancel', parseBuildNumber);
    addStackOptions(command)
      .addHelpText(
        'after',
        `${STACK_HELP}\n\nExamples:\n  $ lambkin cancel octo/hello 42\n` +
          '  $ lambkin cancel octo/hello 42 --local',
      )
      .action(async (repo: RepoName, number: number, options: StackOptions) => {
        await withStack(context, options, ['builds'], async (stack) => {
          const key = { repo, number };
          const { before, cancelled } = await cancelBuild(
            stack,
            key,
            `cancelled by ${cancelledBy(context.env)}`,
          );
          context.stdout.write(`cancelled build ${buildLabel(key)} (it was ${before})\n`);
          const url = stack.publicUrl ? pageUrlOf(cancelled, stack.publicUrl) : (cancelled.pageUrl ?? '');
          const set = await setStatusOrWarn(
            context,
            stack,
            {
              repo,
              sha: cancelled.sha,
              state: commitStateFor(cancelled.state),
              description: statusDescription(cancelled),
              ...(url ? { targetUrl: url } : {}),
            },
            cancelled,
            cancelled.state,
          );
          if (!stack.statuses) {
            context.stderr.write(
              'neither GITHUB_TOKEN nor a GitHub App is set: the commit status on GitHub still says pending\n',
            );
          } else if (!set) {
            context.stderr.write('the commit status on GitHub may still say pending\n');
          }
        });
      });
  },
};

/** The builder may claim the build between the read and the write: a few rounds are plenty. */
const CANCEL_ATTEMPTS = 3;

/**
 * Moves the build from the state it was just read in to `cancelled`, so the recorded event names
 * that state; when another writer moved it first, reads it again.
 */
async function cancelBuild(
  stack: Stack,
  key: BuildKey,
  reason: string,
): Promise<{ before: BuildState; cancelled: BuildRecord }> {
  for (let attempt = 1; ; attempt++) {
    const current = await buildOrFail(stack, key);
    if (isTerminal(current.state)) {
      throw new BuildFinishedError(buildLabel(key), current.state, current.description);
    }
    try {
      const cancelled = await stack.builds.transition(key, { from: current.state, to: 'cancelled', reason });
      return { before: current.state, cancelled };
    } catch (error) {
      if (!(error instanceof TransitionRefusedError) || attempt >= CANCEL_ATTEMPTS) throw error;
    }
  }
}
