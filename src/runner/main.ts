/**
 * The runner as a process (the local stack): reads a RunnerInput on stdin, runs the build, prints
 * the RunnerOutcome as one JSON line on stdout. Started with a clean environment.
 */
import { text } from 'node:stream/consumers';
import { runBuild } from './runner.js';
import type { RunnerInput } from '../core/protocol.js';

// The controller stops a cancelled build with SIGTERM: kill the running step's process group
// (it is in a session of its own, so it would outlive this process) before exiting.
const stop = new AbortController();
process.once('SIGTERM', () => stop.abort(new Error('the runner was told to stop')));

const input = JSON.parse(await text(process.stdin)) as RunnerInput;
const outcome = await runBuild(input, {
  ...(process.env.LAMBKIN_WORK_ROOT ? { workRoot: process.env.LAMBKIN_WORK_ROOT } : {}),
  stop: stop.signal,
});
process.stdout.write(JSON.stringify(outcome) + '\n');
