/**
 * The runner as a process (the local stack): reads a RunnerInput on stdin, runs the build, and
 * answers on stdout with one JSON line per phase: the RunnerOutcome as soon as the verdict is known
 * (the controller sets the final status at once), then a RunnerAfterword once the cache save and the
 * work area's removal are done. Started with a clean environment.
 */
import { text } from 'node:stream/consumers';
import { runBuild } from './runner.js';
import type { RunnerAfterword, RunnerInput, RunnerOutcome } from '../core/protocol.js';

// The controller stops a cancelled build with SIGTERM: kill the running step's process group
// (it is in a session of its own, so it would outlive this process) before exiting.
const stop = new AbortController();
process.once('SIGTERM', () => stop.abort(new Error('the runner was told to stop')));

const answer = (value: RunnerOutcome | RunnerAfterword): void =>
  void process.stdout.write(JSON.stringify(value) + '\n');

const input = JSON.parse(await text(process.stdin)) as RunnerInput;
let verdict: RunnerOutcome | undefined;
const outcome = await runBuild(input, {
  ...(process.env.LAMBKIN_WORK_ROOT ? { workRoot: process.env.LAMBKIN_WORK_ROOT } : {}),
  stop: stop.signal,
  onVerdict: (announced) => {
    verdict = announced;
    answer(announced);
  },
});
answer(
  verdict
    ? {
        kind: 'afterword',
        timings: (outcome.timings ?? []).slice(verdict.timings?.length ?? 0),
        notes: outcome.notes ?? [],
      }
    : outcome,
);
