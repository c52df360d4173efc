/**
 * Ctrl-C while a command works. The first SIGINT (or SIGTERM, SIGHUP) asks the command to stop its
 * work and clean up: its signal is aborted, and the command ends with 128 + the signal's number, as
 * a shell reports a process the signal ended. A second one exits at once, leaving what is left.
 */
import { constants } from 'node:os';
import { CliError } from './cli-errors.js';
import type { OutputStream } from './output.js';

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/** The exit code a shell gives a process that `signal` ended (130 for Ctrl-C). */
export function exitCodeOfSignal(signal: NodeJS.Signals): number {
  return 128 + constants.signals[signal];
}

/** The command stopped because it was interrupted; `message` says what became of its work. */
export class InterruptedError extends CliError {
  constructor(
    readonly signal: NodeJS.Signals,
    message: string,
  ) {
    super('INTERRUPTED', message, exitCodeOfSignal(signal));
  }
}

export interface Interruption {
  /** Aborted at the first signal; its reason's message says which (`interrupted (Ctrl-C)`). */
  readonly signal: AbortSignal;
  /** The first signal received, if any. */
  readonly received: NodeJS.Signals | undefined;
  /** Stops listening: the signals' default actions apply again. */
  dispose(): void;
}

/** Listens for the signals until disposed; `stopping` says what the command does once one comes. */
export function interruptOnSignals(stderr: OutputStream, stopping: string): Interruption {
  const controller = new AbortController();
  let received: NodeJS.Signals | undefined;
  const onSignal = (name: NodeJS.Signals): void => {
    if (received !== undefined) {
      stderr.write(`lambkin: ${name} again: quitting at once, without cleaning up\n`);
      process.exit(exitCodeOfSignal(name));
    }
    received = name;
    const what = name === 'SIGINT' ? 'Ctrl-C' : name;
    stderr.write(`\nlambkin: interrupted (${what}): ${stopping} (Ctrl-C again quits at once)\n`);
    controller.abort(new Error(`interrupted (${what})`));
  };
  for (const name of SIGNALS) process.on(name, onSignal);
  return {
    signal: controller.signal,
    get received() {
      return received;
    },
    dispose: () => {
      for (const name of SIGNALS) process.off(name, onSignal);
    },
  };
}
