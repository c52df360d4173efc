/**
 * Lambda entry point of the runner: invoked synchronously by the controller with a RunnerInput,
 * answers with the RunnerOutcome. Its role can do nothing; it holds no credential of value.
 */
import { runBuild } from '../runner/runner.js';
import type { RunnerInput, RunnerOutcome } from '../core/protocol.js';

export async function handler(input: RunnerInput): Promise<RunnerOutcome> {
  if (input?.kind !== 'run') throw new Error('The runner expects a RunnerInput ({kind: "run", …}).');
  return runBuild(input, { workRoot: '/tmp/lambkin' });
}
