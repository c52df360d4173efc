/**
 * The runner as a process. Two ways to start it:
 *
 * - the local stack: reads a RunnerInput on stdin, runs the build, and answers on stdout with one
 *   JSON line per phase: the RunnerOutcome as soon as the verdict is known (the controller sets the
 *   final status at once), then a RunnerAfterword once the cache save and the work area's removal
 *   are done. Started with a clean environment.
 * - CodeBuild: `--input-url <presigned GET>` (src/runner/remote-input.ts): reads the input there,
 *   deletes it, runs the build, PUTs `{ outcome, afterword }` to the input's `outcomeUpload`, and
 *   exits 0 only when the build passed and its result was delivered (CodeBuild then says SUCCEEDED).
 */
import { text } from 'node:stream/consumers';
import { prepareRunnerProcess, runBuild } from './runner.js';
import { deliverResult, fetchRunnerInput, spendInput } from './remote-input.js';
import type { RunnerAfterword, RunnerInput, RunnerOutcome } from '../core/protocol.js';
import { messageOf } from '../core/errors.js';

// The controller stops a cancelled build with SIGTERM (CodeBuild's StopBuild too): kill the running
// step's process group (it is in a session of its own, so it would outlive this process) before exiting.
const stop = new AbortController();
process.once('SIGTERM', () => stop.abort(new Error('the runner was told to stop')));
// A terminal's Ctrl-C or hangup reaches every process of its foreground group, this one too when
// the local stack starts it: the controller handles it (it cancels the build and stops this
// runner), so the runner does not die in the middle of a step and leave the step's group running.
process.on('SIGINT', () => undefined);
process.on('SIGHUP', () => undefined);

const workRoot = process.env.LAMBKIN_WORK_ROOT ? { workRoot: process.env.LAMBKIN_WORK_ROOT } : {};

function afterwordOf(outcome: RunnerOutcome, verdict: RunnerOutcome): RunnerAfterword {
  return {
    kind: 'afterword',
    timings: (outcome.timings ?? []).slice(verdict.timings?.length ?? 0),
    notes: outcome.notes ?? [],
  };
}

async function runFromStdin(): Promise<void> {
  const answer = (value: RunnerOutcome | RunnerAfterword): void =>
    void process.stdout.write(JSON.stringify(value) + '\n');
  // The input comes once the controller has prepared it: meanwhile, what every build would pay.
  const reading = text(process.stdin);
  prepareRunnerProcess();
  const input = JSON.parse(await reading) as RunnerInput;
  let verdict: RunnerOutcome | undefined;
  const outcome = await runBuild(input, {
    ...workRoot,
    stop: stop.signal,
    onVerdict: (announced) => {
      verdict = announced;
      answer(announced);
    },
  });
  answer(verdict ? afterwordOf(outcome, verdict) : outcome);
}

/** The CodeBuild mode; resolves to the exit code. */
async function runFromUrl(url: string): Promise<number> {
  // The URL is on this process's command line, which every process of the machine can read:
  // overwrite it (libuv writes the title over argv) and spend the input before any step runs.
  process.title = 'lambkin-runner';
  const input = await fetchRunnerInput(url);
  const upload = input.outcomeUpload;
  if (!upload) return 1; // fetchRunnerInput refuses an input without one
  const spendNote = await spendInput(upload);
  let verdict: RunnerOutcome | undefined;
  const outcome = await runBuild(input, {
    ...workRoot,
    stop: stop.signal,
    onVerdict: (announced) => (verdict = announced),
  });
  const first = verdict ?? outcome;
  const afterword = verdict ? afterwordOf(outcome, verdict) : undefined;
  if (spendNote && afterword) afterword.notes.push(`Warning: ${spendNote}`);
  await deliverResult(upload, { outcome: first, ...(afterword ? { afterword } : {}) });
  process.stderr.write(`lambkin runner: ${first.state}: ${first.description}\n`);
  return first.state === 'success' ? 0 : 1;
}

const flag = process.argv.indexOf('--input-url');
if (flag === -1) {
  await runFromStdin();
} else {
  const url = process.argv[flag + 1] ?? '';
  try {
    process.exitCode = await runFromUrl(url);
  } catch (error) {
    process.stderr.write(`lambkin runner: ${messageOf(error)}\n`);
    process.exitCode = 1;
  }
}
