#!/usr/bin/env node
/**
 * The `lambkin` executable: runs the registered commands on the process's arguments and exits with
 * the code they produced (src/cli/program.ts `runCli`: one line on stderr for any error).
 */
import { COMMANDS } from './commands/index.js';
import { createCliContext, runCli } from './program.js';

// The AWS SDK warns, in nine lines on stderr, that its future versions will need a newer Node.js:
// news for whoever maintains Lambkin, noise in the output of every command.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

// `lambkin logs … | head` closes the pipe early: that is not an error.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(0);
    throw error;
  });
}

const context = createCliContext({ stdout: process.stdout, stderr: process.stderr });
process.exitCode = await runCli(process.argv.slice(2), context, COMMANDS);
