/**
 * The runner as a process (the local stack): reads a RunnerInput on stdin, runs the build, prints
 * the RunnerOutcome as one JSON line on stdout. Started with a clean environment.
 */
import { text } from 'node:stream/consumers';
import { runBuild } from './runner.js';
import type { RunnerInput } from './protocol.js';

const input = JSON.parse(await text(process.stdin)) as RunnerInput;
const outcome = await runBuild(input, {
  ...(process.env.LAMBKIN_WORK_ROOT ? { workRoot: process.env.LAMBKIN_WORK_ROOT } : {}),
});
process.stdout.write(JSON.stringify(outcome) + '\n');
