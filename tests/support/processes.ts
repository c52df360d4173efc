/** The host's processes as /proc shows them, for tests that kill runners and look for leftovers. */
import { readFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';

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

/** The nearest ancestor of `pid` whose command line holds `needle`. */
export function ancestorRunning(pid: number, needle: string): number | undefined {
  let current = pid;
  for (let depth = 0; depth < 20 && current > 1; depth++) {
    const stat = readFileSync(`/proc/${current}/stat`, 'utf8');
    current = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (readFileSync(`/proc/${current}/cmdline`, 'utf8').includes(needle)) return current;
  }
  return undefined;
}
