/** `lambkin demo` (what `npm start` runs): the whole pipeline on the embedded stack, then exit. */
import type { Command } from 'commander';
import { runDemo } from '../../local/demo.js';
import { CliError } from '../cli-errors.js';
import { InterruptedError, interruptOnSignals } from '../interrupt.js';
import type { CliContext, CommandModule } from '../program.js';

export const demoCommand: CommandModule = {
  name: 'demo',
  register(program: Command, context: CliContext) {
    program
      .command('demo')
      .description(
        'Run the demo: the embedded stack and a loopback GitHub stand-in build the example app (a push and a pull request), printing each status and the log links.',
      )
      .option('--keep-data <dir>', 'keep the stack data in this folder instead of a temporary one')
      .addHelpText('after', '\nExits 0 when both builds pass.\n\nExample:\n  lambkin demo')
      .action(async (options: { keepData?: string }) => {
        const interruption = interruptOnSignals(
          context.stderr,
          'cancelling the builds and stopping the stack',
        );
        const code = await runDemo({
          write: (line) => context.stdout.write(line + '\n'),
          ...(options.keepData ? { dataDir: options.keepData } : {}),
          signal: interruption.signal,
        })
          .catch((error: unknown) => {
            if (interruption.received) {
              throw new InterruptedError(interruption.received, 'demo stopped: its builds were cancelled');
            }
            throw error;
          })
          .finally(() => interruption.dispose());
        if (code !== 0)
          throw new CliError('DEMO_FAILED', 'the demo builds did not pass: see the log links above.');
      });
  },
};
