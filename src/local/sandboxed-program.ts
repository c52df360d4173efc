/**
 * Runs one program (the local CodeBuild endpoint's `node <bundle> --input-url <url>`) the way the
 * local Lambda runners run: in a build sandbox of its own when the stack is root
 * (src/controller/build-sandbox.ts: a uid, cgroup and PID namespace, all of it killed and its work
 * root removed at the end), and always with the runner's clean environment. The sandbox and its
 * wrapping are the controller's own; this adapter only adds what ProcessRunnerInvoker cannot give:
 * the program's exit code (CodeBuild's verdict) rather than a RunnerOutcome on stdout.
 */
import { spawn } from 'node:child_process';
import {
  acquireBuildSandbox,
  type BuildSandbox,
  type BuildSandboxOptions,
} from '../controller/build-sandbox.js';
import { DEFAULT_SANDBOX_WORK_ROOT } from '../controller/runner-invoker.js';
import { formatProtections } from '../core/sandbox.js';

export interface SandboxedProgramOptions {
  /** A sandbox per run (as root); `true` for the defaults. */
  sandbox?: boolean | BuildSandboxOptions;
  /** Parent of the program's work areas (with `sandbox`: of each run's own work root). */
  workRoot?: string;
  /** The program's working folder: one its user can enter. */
  cwd: string;
}

export interface SandboxedProgram {
  /** The exit code, or the signal that ended it. */
  readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The end of what it wrote (stdout and stderr), for the endpoint's log. */
  output(): string;
  /** Kills it and everything it started (the sandbox's teardown); resolves once all of it is gone. */
  kill(): Promise<void>;
  /** Tears the sandbox down after a normal exit (whatever the program left running goes too). */
  release(): Promise<void>;
}

const OUTPUT_TAIL = 8192;
const UNSANDBOXED_STOP_GRACE_MS = 2000;

export async function startSandboxedProgram(
  command: readonly string[],
  options: SandboxedProgramOptions,
): Promise<SandboxedProgram> {
  const sandbox: BuildSandbox | undefined = options.sandbox
    ? await acquireBuildSandbox(
        options.workRoot ?? DEFAULT_SANDBOX_WORK_ROOT,
        options.sandbox === true ? {} : options.sandbox,
      )
    : undefined;
  try {
    const [executable, ...args] = sandbox ? sandbox.wrap(command) : command;
    if (!executable) throw new Error('startSandboxedProgram needs a command');
    const workRoot = sandbox?.workRoot ?? options.workRoot;
    // The runner's environment (as ProcessRunnerInvoker gives it): nothing of this process's.
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
      LANG: 'C.UTF-8',
      ...(process.env.NODE_EXTRA_CA_CERTS ? { NODE_EXTRA_CA_CERTS: process.env.NODE_EXTRA_CA_CERTS } : {}),
      ...(workRoot ? { LAMBKIN_WORK_ROOT: workRoot } : {}),
      LAMBKIN_BUILD_SANDBOX: sandbox ? formatProtections(sandbox.protections) : '',
    };
    // Unsandboxed, a process group of its own: a stop reaches the runner and not this process.
    const child = spawn(executable, args, {
      env,
      cwd: options.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: !sandbox,
    });
    let output = '';
    const keep = (chunk: string): void => void (output = (output + chunk).slice(-OUTPUT_TAIL));
    child.stdout.setEncoding('utf8').on('data', keep);
    child.stderr.setEncoding('utf8').on('data', keep);
    const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (code, signal) => resolve({ code, signal }));
    });
    exit.catch(() => undefined); // told to whoever awaits it
    let released: Promise<void> | undefined;
    const release = (): Promise<void> => (released ??= sandbox?.teardown() ?? Promise.resolve());
    return {
      exit,
      output: () => output,
      release,
      kill: async () => {
        if (sandbox) {
          // The teardown first: the namespace's first process outlives a SIGKILLed unshare (it is
          // reparented, still holding the pipes); the teardown kills the cgroup and the uid.
          child.kill('SIGKILL');
          await release();
        } else if (child.pid !== undefined && child.exitCode === null) {
          // The runner stops its steps on SIGTERM (they are in sessions of their own); then SIGKILL.
          killGroup(child.pid, 'SIGTERM');
          const pid = child.pid;
          setTimeout(() => killGroup(pid, 'SIGKILL'), UNSANDBOXED_STOP_GRACE_MS).unref();
        }
        await exit.catch(() => undefined);
        await release();
      },
    };
  } catch (error) {
    await sandbox?.teardown();
    throw error;
  }
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // gone already
  }
}
