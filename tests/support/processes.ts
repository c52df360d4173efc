/** The host's processes as /proc shows them, for tests that kill runners and look for leftovers. */
import { readFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { waitFor } from './wait.js';

/** Host pids whose command line is exactly `command`. */
export async function processesRunning(command: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').replace(/\0/g, ' ').trim() === command)
        pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/**
 * The nearest ancestor of `pid` that is a node process whose command line holds `needle` (a
 * runner: wrappers such as bwrap or setpriv name the same program in their arguments).
 */
export function ancestorRunning(pid: number, needle: string): number | undefined {
  let current = pid;
  for (let depth = 0; depth < 20 && current > 1; depth++) {
    try {
      const stat = readFileSync(`/proc/${current}/stat`, 'utf8');
      current = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const cmdline = readFileSync(`/proc/${current}/cmdline`, 'utf8').split('\0');
      if (cmdline[0]?.endsWith('node') && cmdline.some((arg) => arg.includes(needle))) return current;
    } catch {
      return undefined; // gone meanwhile
    }
  }
  return undefined;
}

/** The host pid of a step running `command` (exactly), once it runs; its runner is `runnerNeedle`. */
export async function stepAndRunner(
  command: string,
  runnerNeedle: string,
): Promise<{ step: number; runner: number }> {
  const step = await waitFor(
    'the step running',
    async () => (await processesRunning(command))[0],
    60_000,
    50,
  );
  const runner = ancestorRunning(step, runnerNeedle);
  if (runner === undefined) throw new Error(`no ancestor of the step ${step} runs ${runnerNeedle}`);
  return { step, runner };
}
