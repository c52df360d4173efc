/**
 * `lambkin rebuild owner/repo N`: builds the same commit again under a new number. The new build
 * is queued exactly as the webhook queues one (same request, a `rebuild-<uuid>` delivery id), the
 * commit status goes back to pending when a GitHub token is configured, and the builder is invoked
 * asynchronously. Should the invoke fail, the new build ends as `error`, so nothing stays queued.
 */
import { randomUUID } from 'node:crypto';
import { BuilderInvokeError } from '../../aws/controller-invoker.js';
import { buildLabel, rebuildRequest, type BuildRecord, type RepoName } from '../../core/build.js';
import { buildPageUrl } from '../../core/links.js';
import { TransitionRefusedError, messageOf } from '../../core/errors.js';
import { isJobId } from '../../core/job-id.js';
import { STACK_HELP, addStackOptions, parseBuildNumber, parseRepoArgument } from '../arguments.js';
import { CliError } from '../cli-errors.js';
import { formatJson, shortSha } from '../output.js';
import { withStack, type CliContext, type CommandModule } from '../program.js';
import type { Stack, StackOptions } from '../stack.js';
import { buildOrFail, setStatusOrWarn } from './shared.js';

interface RebuildOptions extends StackOptions {
  json?: boolean;
  job?: string;
}

/** The builder could not be invoked; the new build was marked `error`. */
export class RebuildNotStartedError extends CliError {
  constructor(label: string, cause: unknown) {
    const detail =
      cause instanceof BuilderInvokeError
        ? `${cause.awsErrorName} invoking "${cause.functionName}"`
        : cause instanceof Error
          ? cause.message
          : String(cause);
    super(
      'REBUILD_NOT_STARTED',
      `build ${label} was queued but the builder could not be started (${detail}), so it is marked error: ` +
        'check LAMBKIN_BUILDER_FUNCTION and that your credentials may invoke it (or that `lambkin dev` runs)',
      undefined,
      { cause },
    );
  }
}

export const rebuildCommand: CommandModule = {
  name: 'rebuild',
  register(program, context) {
    const command = program
      .command('rebuild')
      .summary("build a build's commit again, as a new build")
      .description(
        'Queue a new build of the same commit, branch or pull request as build NUMBER (a fork ' +
          "pull request's build stays untrusted), set the commit status to pending when GITHUB_TOKEN " +
          'is set, and start the builder. Prints the new build number and its link.',
      )
      .argument('<owner/repo>', 'the repository, as GitHub names it', parseRepoArgument)
      .argument('<number>', 'the build to repeat', parseBuildNumber)
      .option('--json', 'print {repo, number, rebuildOf, sha, url} as JSON')
      .option('--job <id>', 'run only this job of the build (its id, such as node-22.shard-2)');
    addStackOptions(command)
      .addHelpText(
        'after',
        `${STACK_HELP}\n\nExamples:\n  $ lambkin rebuild octo/hello 42\n` +
          '  $ lambkin rebuild octo/hello 42 --job node-22.shard-2\n' +
          '  $ lambkin rebuild octo/hello 42 --local',
      )
      .action(async (repo: RepoName, number: number, options: RebuildOptions) => {
        if (options.job !== undefined && !isJobId(options.job)) {
          throw new CliError(
            'BAD_JOB',
            `--job takes a job's id as the build page and \`lambkin run --json\` show it, such as node-22.shard-2 (got "${options.job}").`,
            2,
          );
        }
        const build = await withStack(context, options, ['builds', 'builder'], (stack) =>
          rebuild(context, stack, repo, number, options.job),
        );
        const url = build.url;
        if (options.json) {
          context.stdout.write(
            formatJson({ repo, number: build.number, rebuildOf: number, sha: build.sha, url: url || null }),
          );
        } else {
          context.stdout.write(
            `queued build ${buildLabel(build)}: rebuild of #${number} (${shortSha(build.sha)})\n` +
              (url ? `${url}\n` : ''),
          );
        }
      });
  },
};

async function rebuild(
  context: CliContext,
  stack: Stack,
  repo: RepoName,
  number: number,
  job: string | undefined,
): Promise<BuildRecord & { url: string }> {
  const original = await buildOrFail(stack, { repo, number });
  const again = rebuildRequest(original, `rebuild-${randomUUID()}`);
  // One job of it: the controller plans the commit's jobs again and runs that one only.
  const request = job !== undefined ? { ...again, jobs: [job] } : again;
  const newNumber = await stack.builds.allocateNumber(repo);
  const now = context.now();
  // Same base and token as the original's link, so a private repo's pages stay unguessable.
  const base = stack.publicUrl || (original.pageUrl ? new URL(original.pageUrl).origin : '');
  const build = await stack.builds.putQueuedBuild(request, newNumber, {
    deadline: now + stack.queueTimeoutMs,
    at: now,
    ...(original.logToken ? { logToken: original.logToken } : {}),
    ...(base ? { pageUrl: (n: number) => buildPageUrl(base, { repo, number: n }, original.logToken) } : {}),
  });
  const url = build.pageUrl ?? '';
  // Pending first, then the invoke: the builder's own statuses then always land after this one.
  await setStatusOrWarn(
    context,
    stack,
    {
      repo,
      sha: build.sha,
      state: 'pending',
      description: `Build #${build.number} queued (rebuild of #${number}${job !== undefined ? `, job ${job}` : ''})`,
      ...(url ? { targetUrl: url } : {}),
    },
    build,
    'queued',
  );
  try {
    await stack.controller.invoke(build);
  } catch (error) {
    const reason = `could not start the builder: ${messageOf(error)}`;
    try {
      await stack.builds.transition(build, { from: 'queued', to: 'error', reason });
    } catch (refused) {
      // The invoke got through after all and the builder claimed the build: it reports the rest.
      if (refused instanceof TransitionRefusedError) return { ...build, url };
      throw refused;
    }
    await setStatusOrWarn(
      context,
      stack,
      {
        repo,
        sha: build.sha,
        state: 'error',
        description: `Build #${build.number} ${reason}`,
        ...(url ? { targetUrl: url } : {}),
      },
      build,
      'error',
    );
    throw new RebuildNotStartedError(buildLabel(build), error);
  }
  return { ...build, url };
}
