/** `lambkin builds owner/repo`: the latest builds of a repository, as a table or JSON. */
import type { BuildRecord, RepoName } from '../../core/build.js';
import { STACK_HELP, addStackOptions, parseRepoArgument, wholeNumberBetween } from '../arguments.js';
import { UsageError } from '../cli-errors.js';
import { formatAge, formatDuration, formatJson, formatTable, shortSha, type Column } from '../output.js';
import { withStack, type CommandModule } from '../program.js';
import type { StackOptions } from '../stack.js';

interface BuildsOptions extends StackOptions {
  json?: boolean;
  limit: number;
}

export const DEFAULT_BUILDS_LIMIT = 20;
const MAX_BUILDS_LIMIT = 1000;

export const buildsCommand: CommandModule = {
  name: 'builds',
  register(program, context) {
    const command = program
      .command('builds')
      .summary('list the latest builds of a repository')
      .description(
        'List the latest builds of a repository, newest first: number, state, branch, tag or pull ' +
          'request, commit, author, how long it ran and how long ago it was queued.\n\n' +
          'A repository is required: builds are stored per repository, and listing them across all ' +
          'repositories would mean reading the whole builds table.',
      )
      .argument('[owner/repo]', 'the repository, as GitHub names it', parseRepoArgument)
      .option('--json', 'print the stored build records as a JSON array')
      .option(
        '--limit <n>',
        `how many builds to show (1 to ${MAX_BUILDS_LIMIT})`,
        wholeNumberBetween(1, MAX_BUILDS_LIMIT),
        DEFAULT_BUILDS_LIMIT,
      );
    addStackOptions(command)
      .addHelpText(
        'after',
        `${STACK_HELP}\n\nExamples:\n  $ lambkin builds octo/hello\n` +
          '  $ lambkin builds octo/hello --limit 5 --json\n' +
          '  $ lambkin builds octo/hello --local\n' +
          '  $ lambkin builds octo/hello --stack lambkin --region eu-west-1',
      )
      .action(async (repo: RepoName | undefined, options: BuildsOptions) => {
        if (repo === undefined) {
          throw new UsageError(
            'a repository is needed (owner/repo): builds are stored per repository, ' +
              'and listing every repository would mean reading the whole table',
          );
        }
        const builds = await withStack(context, options, ['builds'], (stack) =>
          stack.builds.listBuilds(repo, { limit: options.limit }),
        );
        if (options.json) {
          context.stdout.write(formatJson(builds));
        } else if (builds.length === 0) {
          context.stdout.write(`no builds of ${repo} yet\n`);
        } else {
          context.stdout.write(formatTable(buildColumns(context.now()), builds));
        }
      });
  },
};

function buildColumns(now: number): Column<BuildRecord>[] {
  return [
    { header: '#', value: (build) => String(build.number), align: 'right' },
    { header: 'STATE', value: (build) => build.state },
    { header: 'TARGET', value: targetOf },
    { header: 'COMMIT', value: (build) => shortSha(build.sha) },
    { header: 'AUTHOR', value: (build) => build.author },
    { header: 'DURATION', value: (build) => durationOf(build, now), align: 'right' },
    { header: 'AGE', value: (build) => formatAge(build.queuedAt, now) },
  ];
}

/** `main`, `PR #12`, `tag v1.0.0`. */
export function targetOf(build: BuildRecord): string {
  if (build.pr !== undefined) return `PR #${build.pr}${build.fork ? ' (fork)' : ''}`;
  if (build.tag !== undefined) return `tag ${build.tag}`;
  return build.branch ?? build.ref;
}

/** How long it ran (so far, while running); `-` while queued or when it never ran. */
export function durationOf(build: BuildRecord, now: number): string {
  if (build.startedAt === undefined) return '-';
  return formatDuration(
    (build.endedAt ?? (build.state === 'running' ? now : build.startedAt)) - build.startedAt,
  );
}
