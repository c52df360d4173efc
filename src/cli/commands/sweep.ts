/**
 * `lambkin sweep`: what the scheduled sweeper does, now — ends the builds still queued or running
 * past their deadline (queued → error, running → timed_out) and sets their commit status. It needs
 * GITHUB_TOKEN: a build ended without its status would show pending on GitHub for good, since no
 * later sweep finds it again.
 */
import {
  assertSweepComplete,
  sweepOverdueBuilds,
  type SweepResult,
  type SweptBuild,
} from '../../controller/sweeper.js';
import { buildLabel } from '../../core/build.js';
import { createMemoryLogger } from '../../core/logger.js';
import { STACK_HELP, addStackOptions } from '../arguments.js';
import { CliError } from '../cli-errors.js';
import { formatJson } from '../output.js';
import { withStack, type CommandModule } from '../program.js';
import type { StackOptions } from '../stack.js';
import { CLI_STATUS_DELIVERY } from './shared.js';

interface SweepCommandOptions extends StackOptions {
  json?: boolean;
}

/** Sweeping without a token would end builds that GitHub then shows pending forever. */
export class SweepNeedsTokenError extends CliError {
  constructor() {
    super(
      'SWEEP_NEEDS_TOKEN',
      'GITHUB_TOKEN is not set: the sweep would end overdue builds without setting their commit ' +
        'status, and GitHub would show them pending for good; set GITHUB_TOKEN (and GITHUB_API_URL)',
    );
  }
}

export const sweepCommand: CommandModule = {
  name: 'sweep',
  register(program, context) {
    const command = program
      .command('sweep')
      .summary('end the builds stuck past their deadline, as the scheduled sweeper does')
      .description(
        'End every build still queued or running past its deadline: a queued build ends as error ' +
          '("never started"), a running one as timed_out ("stuck"), each with a conditional change, so ' +
          'a build that finishes meanwhile keeps its own state. The commit status of each becomes ' +
          'error. The deployed stack runs this every 5 minutes; run it by hand after an outage. ' +
          'Needs GITHUB_TOKEN. Exit 1 when a build could not be ended or its status not set.',
      )
      .option('--json', 'print what the sweep did as JSON');
    addStackOptions(command)
      .addHelpText('after', `${STACK_HELP}\n\nExamples:\n  $ lambkin sweep\n  $ lambkin sweep --local --json`)
      .action(async (options: SweepCommandOptions) => {
        const result = await withStack(context, options, ['builds'], async (stack) => {
          if (!stack.statuses) throw new SweepNeedsTokenError();
          return sweepOverdueBuilds({
            builds: stack.builds,
            statuses: stack.statuses,
            logger: createMemoryLogger(),
            publicUrl: stack.publicUrl,
            clock: context.now,
            statusDelivery: CLI_STATUS_DELIVERY,
          });
        });
        context.stdout.write(options.json ? formatJson(result) : describeSweep(result));
        // One line naming what was left undone (the JSON has every detail).
        assertSweepComplete(result);
      });
  },
};

function describeEnded(build: SweptBuild): string {
  return `ended ${buildLabel(build)}: ${build.from} → ${build.to} (${build.reason})\n`;
}

/** One line per build, then a summary line. */
export function describeSweep(result: SweepResult): string {
  if (result.found === 0) return 'no overdue builds\n';
  const lines = result.ended.map(describeEnded);
  for (const left of result.leftAlone) {
    lines.push(`left ${buildLabel(left)} as it is: it ${left.state ? `is ${left.state}` : 'changed'} now\n`);
  }
  const summary = [`${result.ended.length} ended`];
  if (result.leftAlone.length > 0) summary.push(`${result.leftAlone.length} left alone`);
  if (result.failed.length > 0) summary.push(`${result.failed.length} failed`);
  if (result.deferred > 0) summary.push(`${result.deferred} left for the next sweep`);
  lines.push(`${result.found} overdue: ${summary.join(', ')}\n`);
  return lines.join('');
}
