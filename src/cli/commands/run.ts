/** `lambkin run [path]`: build a working copy exactly as the cloud would, on a private stack. */
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { defaultLocalCacheDir } from '../../local/local-cache.js';
import { runLocalBuild } from '../../local/local-run.js';
import { CliError, EXIT_USER_ERROR } from '../cli-errors.js';
import { InterruptedError, interruptOnSignals } from '../interrupt.js';
import { formatJson, terminalWriter } from '../output.js';
import type { CliContext, CommandModule } from '../program.js';
import { DEFAULT_JOB_NAME } from '../../core/jobs.js';
import { formatDuration } from '../../core/log-format.js';

interface RunOptions {
  json?: boolean;
  job?: string;
  deploy?: boolean;
  /** False with --no-cache. */
  cache: boolean;
  env: string[];
}

/** Exit codes of `lambkin run`: the build's result. */
export const RUN_EXIT = { success: 0, failure: 1, other: 2 } as const;

export const runCommand: CommandModule = {
  name: 'run',
  register(program: Command, context: CliContext) {
    program
      .command('run')
      .description(
        'Build a local working copy through the same builder and config rules as the cloud, printing the log live.',
      )
      .argument('[path]', 'the working copy', '.')
      .option('--json', 'print only a JSON summary on stdout (the log goes to stderr)')
      .option('--deploy', 'also run the deploy step (a local run never deploys otherwise)')
      .option('--job <id>', 'run only this job of the matrix (its id, such as node-22.shard-2)')
      .option('--no-cache', 'neither restore nor save the dependency cache for this run')
      .option(
        '--env <NAME=value>',
        'a variable for the steps (repeatable)',
        (value: string, all: string[]) => [...all, value],
        [],
      )
      .addHelpText(
        'after',
        `
In a git working copy, what a commit would hold plus uncommitted changes is built (tracked files and
untracked files that are not ignored); elsewhere every file but node_modules and .git. Nothing is
sent to GitHub.

The dependencies installed by a passing build are kept in $XDG_CACHE_HOME/lambkin (default
~/.cache/lambkin), one entry per working copy, runtime and lockfile: the next run with the same
lockfile restores them and skips \`npm ci\`. Delete that folder to clear it.

With "matrix" or "parallel" in the config, every job runs (as many at once as the machine has
cores), each log line marked with its job; --job runs one. The build passes only if every job does.

Ctrl-C cancels the build: its steps are stopped and everything it made is removed (a second
Ctrl-C quits at once).

Exit codes: 0 success, 1 failure, 2 error, timed out or cancelled, 130 interrupted.

Example:
  lambkin run ./my-project --env NODE_ENV=test --json`,
      )
      .action(async (path: string, options: RunOptions) => {
        const env: Record<string, string> = {};
        for (const pair of options.env) {
          const match = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/s.exec(pair);
          if (!match) throw new CliError('BAD_ENV', `--env takes NAME=value (got "${pair}").`, 2);
          env[match[1] ?? ''] = match[2] ?? '';
        }
        // With --json, stdout holds the summary alone (`lambkin run --json | jq`): the log goes to stderr.
        const writeLog = terminalWriter(options.json ? context.stderr : context.stdout, context.env);
        // Ctrl-C cancels the build as `lambkin cancel` would: its steps are stopped and its sandbox,
        // servers and files removed before the command ends.
        const interruption = interruptOnSignals(context.stderr, 'cancelling the build and cleaning up');
        const result = await runLocalBuild({
          signal: interruption.signal,
          path: resolve(context.cwd, path),
          write: writeLog,
          ...(options.deploy ? { deploy: true } : {}),
          ...(options.job !== undefined ? { job: options.job } : {}),
          ...(options.cache ? { cacheDir: defaultLocalCacheDir(context.env) } : {}),
          env,
          logger: {
            info: () => undefined,
            warn: (message) => context.stderr.write(`lambkin: warning: ${message}\n`),
            error: (message) => context.stderr.write(`lambkin: ${message}\n`),
          },
        })
          .catch((error: unknown) => {
            if (interruption.received) {
              throw new InterruptedError(interruption.received, 'interrupted before the build started');
            }
            throw error;
          })
          .finally(() => interruption.dispose());
        if (options.json) context.stdout.write(formatJson(result));
        else if (result.jobs.length > 1 || result.jobs[0]?.id !== DEFAULT_JOB_NAME) {
          const lines = result.jobs.map(
            (job) =>
              `  ${job.id.padEnd(24)} ${job.state.padEnd(9)} ${job.durationMs === null ? '' : formatDuration(job.durationMs)}`,
          );
          writeLog(`\nJobs:\n${lines.join('\n')}\n`);
        }
        if (interruption.received) {
          throw new InterruptedError(
            interruption.received,
            `build ${result.state.replace('_', ' ')}: ${result.description}`,
          );
        }
        if (result.state === 'success') return;
        throw new CliError(
          'BUILD_' + result.state.toUpperCase(),
          `build ${result.state.replace('_', ' ')}: ${result.description}`,
          result.state === 'failure' ? EXIT_USER_ERROR : RUN_EXIT.other,
        );
      });
  },
};
