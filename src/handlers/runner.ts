/**
 * Lambda entry point of the runner: invoked synchronously by the controller with a RunnerInput,
 * answers with the RunnerOutcome. Its role can do nothing; it holds no credential of value.
 *
 * Two functions run this code (template.yaml): one for trusted builds, one for untrusted ones.
 * LAMBKIN_RUNNER_TRUST says which this is, and a build of the other kind is refused before
 * anything runs. With LAMBKIN_CONTAINER_HYGIENE=1 the container is swept before the build and
 * again before answering (src/runner/container-hygiene.ts); when it cannot be confirmed clean
 * before a build the runtime exits (UNCLEAN_CONTAINER_EXIT_STATUS), Lambda starts a fresh container
 * and the controller sends the build again, once; when not clean after one, the outcome is still
 * returned and the next invocation ends the container at once.
 */
import { UNCLEAN_CONTAINER_EXIT_STATUS } from '../core/container.js';
import { LambkinError } from '../core/errors.js';
import type { RunnerInput, RunnerOutcome } from '../core/protocol.js';
import {
  containerHygieneMode,
  containerRuntimePids,
  sweepContainer,
  type HygieneMode,
  type SweepReport,
} from '../runner/container-hygiene.js';
import { runBuild } from '../runner/runner.js';

/** Which builds a runner function runs (its LAMBKIN_RUNNER_TRUST). */
export type RunnerTrust = 'trusted' | 'untrusted';

export const RUNNER_TRUST_VARIABLE = 'LAMBKIN_RUNNER_TRUST';

/** A build this runner function must not run (of the other kind), or no kind configured. */
export class RunnerRefusedError extends LambkinError {
  constructor(message: string) {
    super('RUNNER_REFUSED', message);
  }
}

export interface RunnerHandlerOptions {
  /** Which builds this function runs; undefined (not configured): it runs none. */
  trust: RunnerTrust | undefined;
  /** Whether to sweep the container (containerHygieneMode). */
  hygiene: HygieneMode;
  /** The folder emptied by the sweep (`/tmp`). */
  tmpRoot?: string;
  /** Where the builds' work areas go (`/tmp/lambkin`). */
  workRoot?: string;
  procRoot?: string;
  /** Sweeps the container (sweepContainer of this process's /proc and the tmp root); tests pass their own. */
  sweep?: () => Promise<SweepReport>;
  /** Ends the runtime (process.exit); tests pass their own. */
  exit?: (status: number) => never;
  log?: (line: string) => void;
}

export function parseRunnerTrust(value: string | undefined): RunnerTrust | undefined {
  return value === 'trusted' || value === 'untrusted' ? value : undefined;
}

export function createRunnerHandler(
  options: RunnerHandlerOptions,
): (input: RunnerInput) => Promise<RunnerOutcome> {
  const tmpRoot = options.tmpRoot ?? '/tmp';
  const exit = options.exit ?? ((status: number) => process.exit(status));
  const log = options.log ?? ((line: string) => console.error(line));
  // Set when the sweep after a build could not confirm the container clean: the next invocation
  // ends it before anything else.
  let tainted: string | undefined;

  const sweepNow =
    options.sweep ??
    (async () =>
      sweepContainer({
        tmpRoot,
        keepPids: await containerRuntimePids(process.pid, options.procRoot),
        ...(options.procRoot ? { procRoot: options.procRoot } : {}),
      }));
  const sweep = async (when: string): Promise<SweepReport> => {
    const report = await sweepNow();
    if (report.killed.length > 0 || report.removed.length > 0 || !report.clean) {
      log(
        `container hygiene ${when}: killed ${report.killed.length} process(es), removed ${report.removed.length} ` +
          `entr(ies) of ${tmpRoot}${report.clean ? '' : `; NOT CLEAN: ${report.problems.join('; ')}`}`,
      );
    }
    return report;
  };

  const endContainer = (reason: string): never => {
    log(`container hygiene: ending this container (exit ${UNCLEAN_CONTAINER_EXIT_STATUS}): ${reason}`);
    exit(UNCLEAN_CONTAINER_EXIT_STATUS);
    // exit() does not return on Lambda; should a test's return, the build must still not run.
    throw new RunnerRefusedError(`The runner's container is not clean: ${reason}`);
  };

  return async (input: RunnerInput): Promise<RunnerOutcome> => {
    if (input?.kind !== 'run') throw new Error('The runner expects a RunnerInput ({kind: "run", …}).');
    const trust = options.trust;
    if (!trust) {
      throw new RunnerRefusedError(
        `${RUNNER_TRUST_VARIABLE} is not set to trusted or untrusted: this runner function runs no build.`,
      );
    }
    const kind: RunnerTrust = input.build?.trusted === true ? 'trusted' : 'untrusted';
    if (kind !== trust) {
      throw new RunnerRefusedError(
        `This runner function runs ${trust} builds only; build #${input.build?.number} of ` +
          `${input.build?.repo} is ${kind}: refused (the controller must send it to the ${kind} builds' runner).`,
      );
    }
    if (options.hygiene.kind === 'refused') {
      throw new RunnerRefusedError(
        `Container hygiene is asked for but cannot run here (${options.hygiene.reason}): the build is refused.`,
      );
    }
    if (options.hygiene.kind === 'off')
      return runBuild(input, { workRoot: options.workRoot ?? '/tmp/lambkin' });

    if (tainted) endContainer(tainted);
    // A crashed or timed-out invocation may have left processes and files behind.
    const before = await sweep('before the build').catch((error: unknown) => String(error));
    if (typeof before === 'string') endContainer(`the sweep before the build failed: ${before}`);
    else if (!before.clean) endContainer(before.problems.join('; '));
    try {
      return await runBuild(input, { workRoot: options.workRoot ?? '/tmp/lambkin' });
    } finally {
      const after = await sweep('after the build').catch((error: unknown) => {
        log(`container hygiene after the build failed: ${String(error)}`);
        return undefined;
      });
      if (!after?.clean)
        tainted = after ? after.problems.join('; ') : 'the sweep after the last build failed';
    }
  };
}

let configured: ((input: RunnerInput) => Promise<RunnerOutcome>) | undefined;

/** The deployed handler: configured from its function's environment on the first invocation. */
export async function handler(input: RunnerInput): Promise<RunnerOutcome> {
  configured ??= createRunnerHandler({
    trust: parseRunnerTrust(process.env[RUNNER_TRUST_VARIABLE]),
    hygiene: await containerHygieneMode(process.env),
  });
  return configured(input);
}
