/** `lambkin logs owner/repo N [--follow]`: a build's log, and with --follow, the rest as it comes. */
import { LOG_KEYS } from '../../core/protocol.js';
import { buildLabel, type BuildKey, type BuildRecord, type RepoName } from '../../core/build.js';
import { isTerminal } from '../../core/state-machine.js';
import { STACK_HELP, addStackOptions, parseBuildNumber, parseRepoArgument } from '../arguments.js';
import { terminalWriter, unseenPart } from '../output.js';
import { withStack, type CliContext, type CommandModule } from '../program.js';
import type { Stack, StackOptions } from '../stack.js';
import { buildOrFail } from './shared.js';
import { CliError } from '../cli-errors.js';
import { isJobId } from '../../core/job-id.js';
import { jobLogPrefix } from '../../core/job-record.js';

interface LogsOptions extends StackOptions {
  follow?: boolean;
  job?: string;
}

export const logsCommand: CommandModule = {
  name: 'logs',
  register(program, context) {
    const command = program
      .command('logs')
      .summary("print a build's log")
      .description(
        "Print a build's log as the builder stored it (colours kept). While the build runs, that is " +
          'what it has uploaded so far; with --follow, new output is printed as it arrives (read ' +
          'about once a second) until the build has ended and its final log is printed.',
      )
      .argument('<owner/repo>', 'the repository, as GitHub names it', parseRepoArgument)
      .argument('<number>', 'the build number', parseBuildNumber)
      .option('-f, --follow', 'keep printing new output until the build ends')
      .option('--job <id>', "one job's log, of a build of several (its id, such as node-22.shard-2)");
    addStackOptions(command)
      .addHelpText(
        'after',
        `${STACK_HELP}\n\nExamples:\n  $ lambkin logs octo/hello 42\n` +
          '  $ lambkin logs octo/hello 42 --job node-22.shard-2\n' +
          '  $ lambkin logs octo/hello 43 --follow --local',
      )
      .action(async (repo: RepoName, number: number, options: LogsOptions) => {
        const { job } = options;
        if (job !== undefined && !isJobId(job)) {
          throw new CliError('BAD_JOB', `--job takes a job's id, such as node-22.shard-2 (got "${job}").`, 2);
        }
        // A job's files are under its build's: the job's log, or the build's (one line per job).
        const prefixOf = (build: BuildRecord): string =>
          job === undefined ? build.logPrefix : jobLogPrefix(build.logPrefix, job);
        await withStack(context, options, ['builds', 'logs'], async (stack) => {
          if (options.follow) await followLog(context, stack, { repo, number }, prefixOf);
          else await printLog(context, stack, { repo, number }, prefixOf);
        });
      });
  },
};

function summary(build: BuildRecord): string {
  return `build ${buildLabel(build)}: ${build.state}${build.description ? ` (${build.description})` : ''}`;
}

async function printLog(
  context: CliContext,
  stack: Stack,
  key: BuildKey,
  prefixOf: (build: BuildRecord) => string,
): Promise<void> {
  const build = await buildOrFail(stack, key);
  const text = await stack.logs.readLog(prefixOf(build));
  if (text === undefined) {
    context.stderr.write(`no log yet: ${summary(build)}\n`);
    return;
  }
  terminalWriter(context.stdout, context.env)(text);
}

async function followLog(
  context: CliContext,
  stack: Stack,
  key: BuildKey,
  prefixOf: (build: BuildRecord) => string,
): Promise<void> {
  let printed = '';
  const writeLog = terminalWriter(context.stdout, context.env);
  const show = (text: string): void => {
    const unseen = unseenPart(printed, text);
    if (unseen) writeLog(unseen);
    printed = text;
  };
  let endedSeenAt: number | undefined;
  for (;;) {
    const build = await buildOrFail(stack, key);
    if (isTerminal(build.state)) {
      endedSeenAt ??= context.now();
      // The controller writes log.txt before it records the final state; a build that ended
      // elsewhere (cancelled, swept) gets it once the controller notices, or never.
      const final = await stack.logs.getObjectText(LOG_KEYS.log(prefixOf(build)));
      const neverRan = build.startedAt === undefined;
      if (final !== undefined || neverRan || context.now() - endedSeenAt >= context.finalLogGraceMs) {
        const text = final ?? (await stack.logs.readLog(prefixOf(build)));
        if (text !== undefined) show(text);
        if (printed && !printed.endsWith('\n')) context.stdout.write('\n');
        if (final === undefined && !neverRan) {
          context.stderr.write('the final log was not written; above is what the build uploaded\n');
        }
        context.stderr.write(`${summary(build)}\n`);
        return;
      }
    }
    const text = await stack.logs.readLog(prefixOf(build));
    if (text !== undefined) show(text);
    await context.sleep(context.pollIntervalMs);
  }
}
