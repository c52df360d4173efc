/**
 * Container hygiene of the runner function. A warm Lambda container serves invocation after
 * invocation: whatever a build leaves behind (a `setsid` or double-forked process, files in /tmp)
 * would meet the next build. So, before each build and before answering, the runner kills every
 * process it did not start as its runtime (itself, its ancestors, pid 1: Lambda's init) and empties
 * /tmp, then looks again: a process still alive (one it may not signal) or an entry still in /tmp
 * means the container is not clean, and the handler ends it (src/handlers/runner.ts).
 *
 * This kills every process it may signal, so it runs only where the process table is the
 * container's own: `containerHygieneMode` turns it on only with LAMBKIN_CONTAINER_HYGIENE=1 (the
 * template sets it on the runner functions) inside a Lambda execution environment. Every function
 * takes the /proc root, the tmp root and the pids to keep, so tests run it in a PID namespace.
 */
import { existsSync } from 'node:fs';
import { chmod, lstat, mkdir, readdir, readFile, rm, rmdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';

/** One process as /proc shows it. */
export interface ProcessEntry {
  pid: number;
  ppid: number;
  /** `R`, `S`, `D`, `T`, `Z` (zombie), `X` (dead), … */
  state: string;
  /** Real uid (the `Uid:` line of /proc/<pid>/status); -1 when unknown. */
  uid: number;
  /** The command name (`comm`). */
  command: string;
}

/** What a sweep did and what it found afterwards. */
export interface SweepReport {
  /** No stray process alive and nothing in the tmp root but what is kept. */
  clean: boolean;
  /** Pids sent SIGKILL. */
  killed: number[];
  /** Entries of the tmp root removed. */
  removed: string[];
  /** Processes still alive after the sweep (not kept, not zombies). */
  remainingProcesses: ProcessEntry[];
  /** Paths still under the tmp root (not kept) after the sweep. */
  remainingFiles: string[];
  /** Why it is not clean, in words, one line each. */
  problems: string[];
}

export interface SweepOptions {
  /** Where /proc is mounted (default `/proc`). It must be the proc of the pids to signal. */
  procRoot?: string;
  /** The folder to empty (`/tmp` on Lambda). */
  tmpRoot: string;
  /** Pids never signalled: the runtime's own (containerRuntimePids). */
  keepPids: ReadonlySet<number>;
  /** Names directly under the tmp root that are kept (default: none). */
  keepInTmp?: readonly string[];
  /** How long to keep killing and waiting for the killed to die (default 3 s). */
  timeoutMs?: number;
}

const DEAD_STATES = new Set(['Z', 'X', 'x']);

/** Every process /proc shows, skipping those that end while it reads. */
export async function listProcesses(procRoot = '/proc'): Promise<ProcessEntry[]> {
  const entries: ProcessEntry[] = [];
  for (const name of await readdir(procRoot)) {
    if (!/^\d+$/.test(name)) continue;
    const entry = await readProcess(procRoot, Number(name));
    if (entry) entries.push(entry);
  }
  return entries;
}

export async function readProcess(procRoot: string, pid: number): Promise<ProcessEntry | undefined> {
  try {
    const stat = await readFile(join(procRoot, String(pid), 'stat'), 'utf8');
    // `pid (comm) state ppid …`: the command may hold spaces and parentheses; the last `)` ends it.
    const close = stat.lastIndexOf(')');
    const command = stat.slice(stat.indexOf('(') + 1, close);
    const [state = '?', ppid = '0'] = stat
      .slice(close + 2)
      .split(' ')
      .slice(0, 2);
    let uid = -1;
    try {
      const status = await readFile(join(procRoot, String(pid), 'status'), 'utf8');
      uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1] ?? -1);
    } catch {
      // gone meanwhile: the stat line is enough
    }
    return { pid, ppid: Number(ppid), state, uid, command };
  } catch {
    return undefined;
  }
}

/**
 * The pids of the runtime itself: `pid` (this process), its ancestors, and pid 1 (Lambda's init).
 * Nothing else in the container is the runtime's.
 */
export async function containerRuntimePids(pid = process.pid, procRoot = '/proc'): Promise<Set<number>> {
  const kept = new Set<number>([1, pid]);
  let current = pid;
  for (let depth = 0; depth < 64 && current > 1; depth++) {
    const entry = await readProcess(procRoot, current);
    if (!entry) break;
    kept.add(entry.ppid);
    current = entry.ppid;
  }
  kept.delete(0);
  return kept;
}

/**
 * SIGKILLs every process that is not kept and not already dead, in rounds until a scan finds none
 * alive (a process forked between a scan and its parent's kill is caught by the next round) or the
 * time is up. A process it may not signal (EPERM) is left alone and stays among the remaining.
 */
export async function killStrayProcesses(
  options: Pick<SweepOptions, 'procRoot' | 'keepPids' | 'timeoutMs'>,
): Promise<{ killed: number[]; remaining: ProcessEntry[]; refused: ProcessEntry[] }> {
  const procRoot = options.procRoot ?? '/proc';
  const deadline = Date.now() + (options.timeoutMs ?? 3000);
  const killed = new Set<number>();
  const refused = new Map<number, ProcessEntry>();
  let remaining: ProcessEntry[];
  for (;;) {
    remaining = (await listProcesses(procRoot)).filter(
      (entry) => !options.keepPids.has(entry.pid) && !DEAD_STATES.has(entry.state),
    );
    for (const entry of remaining) {
      if (refused.has(entry.pid)) continue;
      try {
        process.kill(entry.pid, 'SIGKILL');
        killed.add(entry.pid);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'EPERM') refused.set(entry.pid, entry);
        // ESRCH: it ended meanwhile
      }
    }
    // Done when nothing is left, or only what it may not signal; else wait for the killed to die.
    if (remaining.every((entry) => refused.has(entry.pid)) || Date.now() >= deadline) break;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return { killed: [...killed], remaining, refused: [...refused.values()] };
}

/**
 * Removes everything under `tmpRoot` but the kept names, whatever its permissions (a read-only
 * folder is made writable first; a symbolic link is removed, never followed). Returns the names
 * removed and the problems met; the caller checks what is left.
 */
export async function emptyFolder(
  tmpRoot: string,
  keep: readonly string[] = [],
): Promise<{ removed: string[]; problems: string[] }> {
  const removed: string[] = [];
  const problems: string[] = [];
  if (!existsSync(tmpRoot)) {
    try {
      await mkdir(tmpRoot, { recursive: true, mode: 0o1777 });
    } catch (error) {
      problems.push(`${tmpRoot} is missing and cannot be made again: ${String(error)}`);
    }
    return { removed, problems };
  }
  for (const name of await readdir(tmpRoot)) {
    if (keep.includes(name)) continue;
    const path = join(tmpRoot, name);
    try {
      await rm(path, { recursive: true, force: true });
    } catch {
      // A read-only folder inside: make the folders writable, then remove entry by entry.
      try {
        await removeStubborn(path);
      } catch (error) {
        problems.push(`could not remove ${path}: ${(error as Error).message}`);
        continue;
      }
    }
    removed.push(name);
  }
  return { removed, problems };
}

async function removeStubborn(path: string): Promise<void> {
  let stat;
  try {
    stat = await lstat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  if (!stat.isDirectory()) {
    await unlink(path);
    return;
  }
  // lstat said folder, not link: chmod changes this folder and nothing it points to.
  if ((stat.mode & 0o700) !== 0o700) await chmod(path, (stat.mode & 0o7777) | 0o700);
  for (const name of await readdir(path)) await removeStubborn(join(path, name));
  await rmdir(path);
}

/** Everything still under `tmpRoot` (not kept), as paths; empty when clean. */
async function leftInFolder(tmpRoot: string, keep: readonly string[]): Promise<string[]> {
  try {
    return (await readdir(tmpRoot)).filter((name) => !keep.includes(name)).map((name) => join(tmpRoot, name));
  } catch (error) {
    return [`${tmpRoot} (${(error as NodeJS.ErrnoException).code ?? String(error)})`];
  }
}

/**
 * Kills every stray process, empties the tmp root, then checks both again. Processes go first, so
 * nothing writes into the tmp root while it is emptied.
 */
export async function sweepContainer(options: SweepOptions): Promise<SweepReport> {
  const procRoot = options.procRoot ?? '/proc';
  const keepInTmp = options.keepInTmp ?? [];
  const problems: string[] = [];
  const processes = await killStrayProcesses(options);
  const files = await emptyFolder(options.tmpRoot, keepInTmp);
  problems.push(...files.problems);
  // Look again: a process that survived (or was started by one that did) and what is in the tmp root.
  const remainingProcesses = (await listProcesses(procRoot)).filter(
    (entry) => !options.keepPids.has(entry.pid) && !DEAD_STATES.has(entry.state),
  );
  for (const entry of remainingProcesses) {
    const refused = processes.refused.some((other) => other.pid === entry.pid);
    problems.push(
      `process ${entry.pid} (${entry.command}, uid ${entry.uid}) is still running` +
        (refused ? ': not permitted to signal it' : ''),
    );
  }
  const remainingFiles = await leftInFolder(options.tmpRoot, keepInTmp);
  if (remainingFiles.length > 0)
    problems.push(`${options.tmpRoot} is not empty: ${remainingFiles.join(', ')}`);
  return {
    clean: remainingProcesses.length === 0 && remainingFiles.length === 0 && problems.length === 0,
    killed: processes.killed,
    removed: files.removed,
    remainingProcesses,
    remainingFiles,
    problems,
  };
}

/** The variable that turns the hygiene on (template.yaml sets it on both runner functions). */
export const CONTAINER_HYGIENE_VARIABLE = 'LAMBKIN_CONTAINER_HYGIENE';

export type HygieneMode =
  | { kind: 'off' }
  | { kind: 'on' }
  /** Asked for, but this is not a Lambda container of its own: sweeping could kill others' processes. */
  | { kind: 'refused'; reason: string };

/**
 * Whether the runner sweeps its container. Off unless LAMBKIN_CONTAINER_HYGIENE=1. When it is set,
 * the sweep kills every process it may signal, so the process must show that the process table is
 * its container's own, as in a Lambda execution environment:
 * - AWS_LAMBDA_FUNCTION_NAME, AWS_LAMBDA_RUNTIME_API and LAMBDA_TASK_ROOT set (the Lambda
 *   runtime's), and LAMBDA_TASK_ROOT a folder that exists (the function's code);
 * - the runtime is pid 1's child, or its grandchild through one bootstrap process: Lambda's init
 *   starts the runtime. On a workstation or a CI host a process started from a shell, an IDE or
 *   npm is deeper than that;
 * - pid 1 is not systemd (a host's init).
 * Set but not confirmed, the handler refuses builds rather than run them unswept.
 */
export async function containerHygieneMode(
  env: Readonly<Record<string, string | undefined>>,
  pid = process.pid,
  procRoot = '/proc',
): Promise<HygieneMode> {
  const flag = env[CONTAINER_HYGIENE_VARIABLE]?.trim() ?? '';
  if (flag === '' || flag === '0') return { kind: 'off' };
  if (flag !== '1') {
    return { kind: 'refused', reason: `${CONTAINER_HYGIENE_VARIABLE} must be 1 or 0, not "${flag}"` };
  }
  const missing = ['AWS_LAMBDA_FUNCTION_NAME', 'AWS_LAMBDA_RUNTIME_API', 'LAMBDA_TASK_ROOT'].filter(
    (name) => !env[name],
  );
  if (missing.length > 0)
    return { kind: 'refused', reason: `not a Lambda environment: ${missing.join(', ')} not set` };
  if (!existsSync(env.LAMBDA_TASK_ROOT ?? '')) {
    return {
      kind: 'refused',
      reason: `not a Lambda environment: LAMBDA_TASK_ROOT ${env.LAMBDA_TASK_ROOT} is missing`,
    };
  }
  const init = await readProcess(procRoot, 1);
  if (!init) return { kind: 'refused', reason: `${procRoot}/1 cannot be read` };
  if (init.command === 'systemd')
    return { kind: 'refused', reason: 'pid 1 is systemd: this is a host, not a container' };
  const self = await readProcess(procRoot, pid);
  const parent = self && self.ppid !== 1 ? await readProcess(procRoot, self.ppid) : undefined;
  if (!self || (self.ppid !== 1 && parent?.ppid !== 1)) {
    return {
      kind: 'refused',
      reason: `the runtime (pid ${pid}) is not a child or grandchild of pid 1: not a container of its own`,
    };
  }
  return { kind: 'on' };
}
