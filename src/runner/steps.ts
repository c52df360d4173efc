/**
 * The step executor: runs one build command (`install`, `test`, `deploy`, …) with `bash -c` in the
 * checkout, streams its output as raw bytes, and makes sure that when it ends — normally, by
 * timeout or by cancellation — nothing it started is left running.
 *
 * Every step runs in a new session (`detached: true`, i.e. setsid), so its process group id is its
 * pid and one signal reaches the whole tree. Processes that call setsid themselves escape the group;
 * they can no longer hold the runner up (see `OUTPUT_DRAIN_MS`), but only the sandbox ending stops them.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { readFile, readdir, stat } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { delimiter, isAbsolute, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { LambkinError, messageOf } from '../core/errors.js';
import { sandboxedCommand, startStepNetwork, type StepNetwork, type StepSandbox } from './step-sandbox.js';

export interface StepSpec {
  /** 'install' | 'test' | 'deploy' | …, for messages. */
  name: string;
  /** Shell code, run with `bash -c`. */
  command: string;
  /** The checkout. */
  cwd: string;
  /** The COMPLETE environment of the step: nothing is inherited from the runner's process.env. */
  env: Record<string, string>;
  /** The time this step may take (the build's remaining time). */
  timeoutMs: number;
}

export interface StepRun {
  /** null when killed by a signal (or never started, see `runStep`). */
  exitCode: number | null;
  /** The signal that ended the step, e.g. SIGKILL. */
  signal?: string;
  timedOut: boolean;
  /** From the start until the step and whatever it left behind were gone. */
  durationMs: number;
}

export interface RunStepOptions {
  /** Output as it arrives: stdout and stderr interleaved in the order written, bytes untouched. */
  onOutput: (chunk: Uint8Array) => void;
  /** Abort = kill the step (cancellation). */
  signal?: AbortSignal;
  /** SIGTERM → wait this long → SIGKILL. Default 2000. */
  killGraceMs?: number;
  /** Run as this user and group (the local stack as root drops to an unprivileged user). */
  uid?: number;
  gid?: number;
  /**
   * RLIMIT_NPROC of the step (`prlimit --nproc=N:N`): it can fork no more once the build user has N
   * processes (threads count). It counts every process of the user, so it bounds a fork bomb only
   * when steps run as their own unprivileged user; root ignores it. Without `prlimit` (see
   * `findPrlimit`) the step runs unbounded.
   */
  maxProcesses?: number;
  /**
   * RLIMIT_FSIZE of the step (`prlimit --fsize`): no file it writes can grow past this many bytes
   * (the writer gets SIGXFSZ). The runner's disk quota is measured every second; this stops one
   * fast writer from filling the disk between two measurements.
   */
  maxFileBytes?: number;
  /**
   * Run the step in the step sandbox (src/runner/step-sandbox.ts): namespaces of its own, a private
   * /tmp and, when available, a network of its own. `uid`/`gid` do not apply then.
   */
  sandbox?: StepSandbox;
}

export const DEFAULT_KILL_GRACE_MS = 2000;

/**
 * After the step's process and its group are gone, how long to keep reading output that is still
 * in the pipe. Only a process that left the group (setsid) can hold the pipe open longer; past this
 * the runner stops listening instead of waiting for it.
 */
const OUTPUT_DRAIN_MS = 1000;

/** After SIGKILL, how long to wait for the kernel to take the processes away. */
const SIGKILL_SETTLE_MS = 2000;

/** setTimeout fires at once for delays above this (with a warning), so longer timeouts are capped. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * The script bash runs; the step's command is `$1`, `$0` is the name in bash's messages.
 *
 * `exec 2>&1` makes fd 2 the same pipe as fd 1, so stdout and stderr reach the runner in exactly
 * the order written (two pipes merged by the runner can only approximate that).
 *
 * The command then runs as `"$BASH" -c "$1" "$0"`, exactly what `bash -c <command>` would do: parsed
 * by bash as a script, never pasted into another string (no quoting to break), with `$0` = `bash`
 * and no positional parameters. `eval "$1"` would parse the same text but leave `$1` (the command
 * itself) and `$#` = 1 visible to it. `exec` keeps the pid, so the process group stays the step's.
 *
 * First it closes every file descriptor past stdin, stdout and stderr: Node.js opens its own with
 * close-on-exec, but one the operator's process inherited without it (a shell's `exec 5>>file`, a
 * CI harness's pipe) would pass through Lambkin, the sandbox and the privilege drop to the step,
 * which could then write where its own user may not.
 */
const STEP_SCRIPT =
  'for fd in /proc/$$/fd/*; do fd=${fd##*/}; [ "$fd" -gt 2 ] && exec {fd}>&-; done; ' +
  'exec 2>&1; exec "$BASH" -c "$1" "$0"';
const SHELL_NAME_IN_MESSAGES = 'bash';

/** A step could not be run or its output could not be delivered. */
export class StepError extends LambkinError {
  constructor(
    code: string,
    readonly step: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

/** There is no bash on the step's PATH. */
export class BashNotFoundError extends StepError {
  constructor(step: string, searched: string) {
    super(
      'BASH_NOT_FOUND',
      step,
      `Cannot run step ${step}: bash was not found on the step's PATH (${searched || 'empty'}). ` +
        'Build steps run with bash -c: add bash to the runtime (or the layer on PATH).',
    );
  }
}

/** Process groups of steps still running, killed if the runner's process exits. */
const liveGroups = new Set<number>();
let exitHookInstalled = false;

/**
 * Runs one step and resolves when it has ended and nothing it started is left in its process group.
 *
 * A step that is cancelled (`signal` already aborted) or has no time left (`timeoutMs <= 0`) before
 * it starts is not started at all — a deploy must not begin once the build is over — and resolves
 * with `exitCode: null`, no `signal`, `durationMs: 0` and `timedOut` saying which.
 *
 * Throws `StepError` (`BashNotFoundError`) when the step cannot be started, or when `onOutput` throws
 * (the step is then killed).
 */
export async function runStep(spec: StepSpec, options: RunStepOptions): Promise<StepRun> {
  const killGraceMs = options.killGraceMs ?? DEFAULT_KILL_GRACE_MS;
  validate(spec, options, killGraceMs);
  await assertFolder(spec);
  const bash = findBash(spec);

  if (options.signal?.aborted) return { exitCode: null, timedOut: false, durationMs: 0 };
  if (spec.timeoutMs <= 0) return { exitCode: null, timedOut: true, durationMs: 0 };

  installExitHook();
  const startedAt = performance.now();
  const bashArgs = ['-c', STEP_SCRIPT, SHELL_NAME_IN_MESSAGES, spec.command];
  const limits = [
    ...(options.maxProcesses === undefined
      ? []
      : [`--nproc=${options.maxProcesses}:${options.maxProcesses}`]),
    ...(options.maxFileBytes === undefined
      ? []
      : [`--fsize=${options.maxFileBytes}:${options.maxFileBytes}`]),
  ];
  const prlimit = limits.length === 0 ? undefined : findPrlimit(spec.env.PATH);
  // prlimit sets the limits and execs bash: same pid, so the process group is still the step's.
  const [plainFile, plainArgs] =
    prlimit === undefined ? [bash, bashArgs] : [prlimit, [...limits, '--', bash, ...bashArgs]];
  const sandbox = options.sandbox;
  const [file, args] = sandbox
    ? sandboxedCommand(sandbox, [plainFile, ...plainArgs])
    : [plainFile, plainArgs];
  const subprocess = execa(file, args, {
    cwd: spec.cwd,
    env: spec.env,
    extendEnv: false,
    // In the sandbox the step waits for a line on stdin: its network is up.
    stdin: sandbox ? 'pipe' : 'ignore',
    stdout: 'pipe',
    // Empty once the script has run `exec 2>&1`; read anyway, for whatever bash says before (BASH_ENV).
    stderr: 'pipe',
    buffer: false,
    encoding: 'buffer',
    reject: false,
    // Its own session and process group, so one signal reaches every process of the step. (execa's
    // `cleanup` does not apply to detached processes; `installExitHook` does that job for the group.)
    detached: true,
    ...(options.uid === undefined || sandbox ? {} : { uid: options.uid }),
    ...(options.gid === undefined || sandbox ? {} : { gid: options.gid }),
  });

  let outputError: unknown;
  const deliver = (chunk: Uint8Array): void => {
    if (outputError !== undefined) return;
    try {
      options.onOutput(chunk);
    } catch (error) {
      outputError = error;
      void killGroup();
    }
  };
  subprocess.stdout?.on('data', deliver);
  subprocess.stderr?.on('data', deliver);

  // The pid is known synchronously when the spawn worked; undefined when it failed.
  const pgid = subprocess.pid;
  if (pgid !== undefined) liveGroups.add(pgid);
  let killing: Promise<void> | undefined;
  const killGroup = (): Promise<void> => {
    if (pgid === undefined) return Promise.resolve();
    killing ??= killProcessGroup(pgid, killGraceMs);
    return killing;
  };

  let network: StepNetwork | undefined;
  let sandboxError: unknown;
  const networkUp =
    sandbox && pgid !== undefined
      ? startStepNetwork(sandbox, pgid).then(
          (started) => {
            network = started;
            subprocess.stdin?.on('error', () => undefined);
            subprocess.stdin?.end('\n');
          },
          (error: unknown) => {
            sandboxError = error;
            void killGroup();
          },
        )
      : undefined;

  let timedOut = false;
  const timer = setTimeout(
    () => {
      timedOut = true;
      void killGroup();
    },
    Math.min(spec.timeoutMs, MAX_TIMER_MS),
  );
  const onAbort = (): void => void killGroup();
  options.signal?.addEventListener('abort', onAbort, { once: true });

  try {
    // 'exit', not the end of output: a leftover process may hold the pipe open indefinitely.
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      subprocess.once('exit', (code, signal) => resolve({ code, signal }));
    });
    const first = await Promise.race([exited, subprocess.then((result) => ({ result }))]);
    if ('result' in first) {
      // The promise settles before 'exit' only when the process never started.
      throw new StepError(
        'STEP_START',
        spec.name,
        `Could not start step ${spec.name} with ${bash} in ${spec.cwd}: ${first.result.message}. ` +
          'Check the step environment (names and values without NUL or "="), bash and the build user.',
        { cause: first.result.cause },
      );
    }
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', onAbort);

    if (killing !== undefined || (pgid !== undefined && (await groupIsRunning(pgid)))) await killGroup();
    await networkUp;
    network?.stop();
    await drainOutput(subprocess, [subprocess.stdout, subprocess.stderr]);

    if (sandboxError !== undefined && !timedOut && !options.signal?.aborted) {
      throw new StepError(
        'STEP_SANDBOX',
        spec.name,
        `Could not set up the sandbox of step ${spec.name}: ` + `${messageOf(sandboxError)}.`,
        { cause: sandboxError },
      );
    }

    if (outputError !== undefined) {
      throw new StepError(
        'STEP_OUTPUT',
        spec.name,
        `Step ${spec.name} was stopped: its output could not be handled ` + `(${messageOf(outputError)}).`,
        { cause: outputError },
      );
    }
    // The sandbox's pid 1 reports a step killed by signal N as exit 128 + N (as a shell does).
    const signalled = sandbox ? signalOfStatus(first.code) : undefined;
    if (signalled)
      return {
        exitCode: null,
        signal: signalled,
        timedOut,
        durationMs: Math.round(performance.now() - startedAt),
      };
    return {
      exitCode: first.code,
      ...(first.signal === null ? {} : { signal: first.signal }),
      timedOut,
      durationMs: Math.round(performance.now() - startedAt),
    };
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', onAbort);
    if (pgid !== undefined) liveGroups.delete(pgid);
    network?.stop();
  }
}

function signalOfStatus(code: number | null): NodeJS.Signals | undefined {
  if (code === null || code <= 128 || code > 128 + 64) return undefined;
  const found = Object.entries(osConstants.signals).find(([, number]) => number === code - 128);
  return found?.[0] as NodeJS.Signals | undefined;
}

/**
 * Ends every process of the group: SIGTERM (and SIGCONT, so stopped processes can act on it), up to
 * `graceMs` to exit, then SIGKILL. Resolves when none is left (zombies count as gone: a PID 1 that
 * does not reap orphans keeps them forever) or, if the kernel is slow to take them, after a bound.
 */
export async function killProcessGroup(pgid: number, graceMs: number): Promise<void> {
  // kill(-0) is our own group and kill(-1) every process we may signal: never send those.
  if (!Number.isSafeInteger(pgid) || pgid <= 1) {
    throw new StepError('STEP_INVALID', String(pgid), `Refused to kill process group ${pgid}.`);
  }
  if (!(graceMs >= 0)) {
    throw new StepError('STEP_INVALID', String(pgid), `killProcessGroup: grace ${graceMs} ms is invalid.`);
  }
  if (!(await groupIsRunning(pgid))) return;
  signalGroup(pgid, 'SIGTERM');
  signalGroup(pgid, 'SIGCONT');
  if (await waitForGroupToEnd(pgid, graceMs)) return;
  signalGroup(pgid, 'SIGKILL');
  await waitForGroupToEnd(pgid, SIGKILL_SETTLE_MS);
}

function validate(spec: StepSpec, options: RunStepOptions, killGraceMs: number): void {
  const invalid = (what: string): StepError =>
    new StepError('STEP_INVALID', spec.name, `Cannot run step ${spec.name}: ${what}.`);
  // NaN would otherwise start a step with no timeout at all.
  if (Number.isNaN(spec.timeoutMs)) throw invalid('timeoutMs is not a number');
  if (!(killGraceMs >= 0) || !Number.isFinite(killGraceMs)) throw invalid(`killGraceMs ${killGraceMs}`);
  // A uid alone would keep the runner's group (root), which is not the unprivileged user asked for.
  if (options.uid !== undefined && options.gid === undefined) {
    throw invalid('uid is given without gid; give both to run as another user');
  }
  const max = options.maxProcesses;
  if (max !== undefined && !(Number.isSafeInteger(max) && max >= 1)) throw invalid(`maxProcesses ${max}`);
  const fsize = options.maxFileBytes;
  if (fsize !== undefined && !(Number.isSafeInteger(fsize) && fsize >= 1))
    throw invalid(`maxFileBytes ${fsize}`);
}

const PRLIMIT_FALLBACKS = ['/usr/bin', '/bin', '/usr/local/bin'];

/**
 * util-linux's `prlimit` on the step's PATH, else in the usual places; undefined when there is none
 * (the steps then run without a process bound, and the runner says so in the log).
 */
export function findPrlimit(searchPath: string | undefined = process.env.PATH): string | undefined {
  const folders = [...(searchPath ?? '').split(delimiter), ...PRLIMIT_FALLBACKS];
  for (const folder of folders) {
    if (!isAbsolute(folder)) continue;
    const candidate = join(folder, 'prlimit');
    try {
      accessSync(candidate, constants.X_OK);
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // not in this folder
    }
  }
  return undefined;
}

async function assertFolder(spec: StepSpec): Promise<void> {
  const info = await stat(spec.cwd).catch(() => undefined);
  if (!info?.isDirectory()) {
    throw new StepError(
      'STEP_START',
      spec.name,
      `Cannot run step ${spec.name}: its folder ${spec.cwd} does not exist or is not a folder.`,
    );
  }
}

/**
 * bash as the step's own PATH finds it (the runner's PATH when the step has none), so `bash` in the
 * step and the shell running it are the same. Relative PATH entries are skipped: they would depend
 * on the runner's working folder.
 */
function findBash(spec: StepSpec): string {
  const searchPath = spec.env.PATH ?? process.env.PATH ?? '';
  for (const folder of searchPath.split(delimiter)) {
    if (!isAbsolute(folder)) continue;
    const candidate = join(folder, 'bash');
    try {
      accessSync(candidate, constants.X_OK);
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // not in this folder
    }
  }
  throw new BashNotFoundError(spec.name, searchPath);
}

/**
 * Waits for the output still in the pipes, for at most `OUTPUT_DRAIN_MS` (only a process that left
 * the group can keep the pipe open longer), then stops reading.
 */
async function drainOutput(
  finished: Promise<unknown>,
  streams: ({ destroy(): void } | null | undefined)[],
): Promise<void> {
  const stopWaiting = new AbortController();
  const drained = await Promise.race([
    finished.then(() => true),
    sleep(OUTPUT_DRAIN_MS, false, { signal: stopWaiting.signal }).catch(() => false),
  ]);
  stopWaiting.abort();
  if (drained) return;
  for (const stream of streams) stream?.destroy();
  await finished;
}

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // ESRCH: already gone. EPERM: a member we may not signal (setuid); nothing more we can do.
  }
}

async function waitForGroupToEnd(pgid: number, withinMs: number): Promise<boolean> {
  const deadline = performance.now() + withinMs;
  let pause = 10;
  for (;;) {
    if (!(await groupIsRunning(pgid))) return true;
    const left = deadline - performance.now();
    if (left <= 0) return false;
    await sleep(Math.min(pause, left));
    pause = Math.min(pause * 2, 100);
  }
}

/** Whether a process of the group still runs (zombies do not count). */
async function groupIsRunning(pgid: number): Promise<boolean> {
  try {
    process.kill(-pgid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false;
  }
  // Something exists with that group id; kill(0) cannot tell a zombie from a process, /proc can.
  return (await hasLiveProcessInGroup(pgid)) ?? true;
}

/** From /proc: whether a non-zombie process of the group exists; undefined without /proc. */
async function hasLiveProcessInGroup(pgid: number): Promise<boolean | undefined> {
  let entries: string[];
  try {
    entries = await readdir('/proc');
  } catch {
    return undefined;
  }
  const states = await Promise.all(
    entries
      .filter((entry) => /^\d+$/.test(entry))
      .map((pid) => readFile(`/proc/${pid}/stat`, 'latin1').then(parseProcStat, () => undefined)),
  );
  return states.some((state) => state !== undefined && state.pgrp === pgid && !/^[ZX]$/.test(state.state));
}

/** `/proc/<pid>/stat`: "pid (comm) state ppid pgrp …"; comm may contain spaces and parentheses. */
function parseProcStat(text: string): { state: string; pgrp: number } | undefined {
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const [state, , pgrp] = fields;
  if (state === undefined || pgrp === undefined) return undefined;
  return { state, pgrp: Number(pgrp) };
}

/** If the runner exits while steps run, their groups go with it (synchronously: 'exit' allows no more). */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const pgid of liveGroups) signalGroup(pgid, 'SIGKILL');
  });
}
