/**
 * How the controller starts the runner: a separate Lambda function in the cloud, a separate
 * process with a clean environment locally. Either way the runner shares no process tree and no
 * environment with the controller's credentials.
 */
import { execFile, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { promisify } from 'node:util';
import { readFileSync } from 'node:fs';
import { InvokeCommand, type LambdaClient } from '@aws-sdk/client-lambda';
import { isUncleanContainerExit } from '../core/container.js';
import { LambkinError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { PhaseTiming, RunnerAfterword, RunnerInput, RunnerOutcome } from '../core/protocol.js';
import { checkRunnableByOthers, runnerProgram } from './runner-program.js';
import type { RunnerInvoker, StartedRunner } from '../core/ports.js';
import { formatProtections } from '../core/sandbox.js';
import { acquireBuildSandbox, type BuildSandbox, type BuildSandboxOptions } from './build-sandbox.js';
import type { DependencyHandover } from './dependency-handover.js';
import type { NpmCacheHandover } from './npm-cache-handover.js';

/** The runner did not return an outcome: it crashed, was killed, or hit its time limit. */
export class RunnerFailedError extends LambkinError {
  constructor(
    message: string,
    readonly timedOut: boolean,
  ) {
    super(timedOut ? 'RUNNER_TIMED_OUT' : 'RUNNER_FAILED', message);
  }
}

/** The controller stopped the runner (the build was cancelled while it ran). */
export class RunnerAbortedError extends LambkinError {
  constructor(readonly reason: string) {
    super('RUNNER_ABORTED', `The runner was stopped: ${reason}`);
  }
}

/** Why a run ends when its local stack stops (`lambkin dev` stopped while it ran). */
const STOPPED_WITH_THE_STACK = 'the local stack stopped while the build ran';

function abortReason(signal: AbortSignal): string {
  const reason: unknown = signal.reason;
  if (reason instanceof Error) return reason.message;
  return typeof reason === 'string' ? reason : 'aborted';
}

export function parseRunnerOutcome(value: unknown): RunnerOutcome {
  const outcome = value as Partial<RunnerOutcome> | null;
  if (
    !outcome ||
    outcome.kind !== 'outcome' ||
    !['success', 'failure', 'error', 'timed_out'].includes(String(outcome.state)) ||
    typeof outcome.description !== 'string' ||
    !Array.isArray(outcome.steps) ||
    typeof outcome.log !== 'object' ||
    (outcome.checkoutRoot !== undefined &&
      (typeof outcome.checkoutRoot !== 'string' || !outcome.checkoutRoot.startsWith('/')))
  ) {
    throw new RunnerFailedError('The runner answered with something that is not an outcome.', false);
  }
  const { timings, notes, ...rest } = outcome as RunnerOutcome;
  return { ...rest, ...runnerExtras(timings, notes) } as RunnerOutcome;
}

/** At most this many phases and lines of notes, each note at most this long, are taken from the runner. */
const MAX_TIMINGS = 50;
const MAX_NOTES = 20;
const MAX_NOTE_LENGTH = 2000;

/** The runner's timings and notes, bounded and well-formed (it is the untrusted side). */
function runnerExtras(timings: unknown, notes: unknown): Pick<RunnerOutcome, 'timings' | 'notes'> {
  return {
    ...(Array.isArray(timings) ? { timings: timings.filter(isPhaseTiming).slice(0, MAX_TIMINGS) } : {}),
    ...(Array.isArray(notes)
      ? {
          notes: notes
            .filter((note): note is string => typeof note === 'string')
            .slice(0, MAX_NOTES)
            .map((note) => note.slice(0, MAX_NOTE_LENGTH)),
        }
      : {}),
  };
}

/**
 * Invokes the runner function synchronously (its role can do nothing; it gets only the input).
 * When the runner ended its container unused because it found it unclean (a `Runtime.ExitError`
 * with UNCLEAN_CONTAINER_EXIT_STATUS, src/core/container.ts), Lambda starts a fresh container for
 * the next invocation: the build is sent again, once. No other error is retried (the build may have
 * run, and a deploy step must not run twice).
 */
export class LambdaRunnerInvoker implements RunnerInvoker {
  constructor(
    private readonly lambda: LambdaClient,
    private readonly functionName: string,
  ) {}

  async run(input: RunnerInput, signal?: AbortSignal): Promise<RunnerOutcome> {
    const first = await this.invoke(input, signal);
    const answer = first.kind === 'fresh container needed' ? await this.invoke(input, signal) : first;
    if (answer.kind === 'outcome') return answer.outcome;
    if (answer.kind === 'fresh container needed') {
      throw new RunnerFailedError(
        `The runner found its container unclean twice and ended it without running the build: ${answer.message.slice(0, 400)}`,
        false,
      );
    }
    throw answer.error;
  }

  private async invoke(
    input: RunnerInput,
    signal: AbortSignal | undefined,
  ): Promise<
    | { kind: 'outcome'; outcome: RunnerOutcome }
    | { kind: 'fresh container needed'; message: string }
    | { kind: 'failed'; error: RunnerFailedError }
  > {
    if (signal?.aborted) throw new RunnerAbortedError(abortReason(signal));
    let response;
    try {
      response = await this.lambda.send(
        new InvokeCommand({
          FunctionName: this.functionName,
          InvocationType: 'RequestResponse',
          Payload: new TextEncoder().encode(JSON.stringify(input)),
        }),
        signal ? { abortSignal: signal } : {},
      );
    } catch (error) {
      // Closing the connection ends the wait; the runner function stops at its own deadline.
      if (signal?.aborted) throw new RunnerAbortedError(abortReason(signal));
      throw error;
    }
    const text = response.Payload ? new TextDecoder().decode(response.Payload) : '';
    if (response.FunctionError) {
      let message = text;
      let errorType: string | undefined;
      try {
        const parsed = JSON.parse(text) as { errorMessage?: string; errorType?: string };
        message = parsed.errorMessage ?? text;
        errorType = parsed.errorType;
      } catch {
        // not JSON: keep the text
      }
      if (isUncleanContainerExit(errorType, message)) return { kind: 'fresh container needed', message };
      const timedOut = /Task timed out/i.test(message);
      return {
        kind: 'failed',
        error: new RunnerFailedError(
          timedOut
            ? `The runner hit its time limit: ${message}`
            : `The runner crashed: ${message.slice(0, 500)}`,
          timedOut,
        ),
      };
    }
    return { kind: 'outcome', outcome: parseRunnerOutcome(JSON.parse(text)) };
  }
}

/**
 * Sends trusted builds to one runner and every other build to another: in the cloud, two runner
 * functions from the same code (template.yaml), so a container that ran an untrusted build never
 * runs a trusted one. A build counts as trusted only when `build.trusted` is exactly `true`.
 */
export class TrustRoutedRunnerInvoker implements RunnerInvoker {
  constructor(
    private readonly trusted: RunnerInvoker,
    private readonly untrusted: RunnerInvoker,
  ) {}

  run(
    input: RunnerInput,
    signal?: AbortSignal,
    onVerdict?: (verdict: RunnerOutcome) => void,
  ): Promise<RunnerOutcome> {
    return (input.build?.trusted === true ? this.trusted : this.untrusted).run(input, signal, onVerdict);
  }

  start(trusted: boolean): StartedRunner {
    const target = trusted ? this.trusted : this.untrusted;
    const started = target.start
      ? target.start(trusted)
      : { run: target.run.bind(target), discard: () => Promise.resolve() };
    return {
      run: async (input, signal, onVerdict) => {
        if ((input.build?.trusted === true) !== trusted) {
          void started.discard();
          throw new Error(
            `a runner started for ${trusted ? '' : 'un'}trusted builds was given another build`,
          );
        }
        return started.run(input, signal, onVerdict);
      },
      discard: () => started.discard(),
    };
  }
}

const execFileAsync = promisify(execFile);

/**
 * The CA certificates the runner adds to Node's (NODE_EXTRA_CA_CERTS): this process's own, else
 * npm's `cafile` (what npm itself trusts to reach the registry), asked once per process.
 */
let extraCa: Promise<{ NODE_EXTRA_CA_CERTS: string } | undefined> | undefined;
function extraCaCertificates(): Promise<{ NODE_EXTRA_CA_CERTS: string } | undefined> {
  extraCa ??= (async () => {
    const own = process.env.NODE_EXTRA_CA_CERTS;
    if (own) return { NODE_EXTRA_CA_CERTS: own };
    try {
      const { stdout } = await execFileAsync('npm', ['config', 'get', 'cafile'], { timeout: 30_000 });
      const file = stdout.trim();
      return file && file !== 'null' && file !== 'undefined' ? { NODE_EXTRA_CA_CERTS: file } : undefined;
    } catch {
      return undefined; // no npm here: Node's own certificates
    }
  })();
  return extraCa;
}

/** Parent of each build's work root when sandboxed and no `workRoot` is given. */
export const DEFAULT_SANDBOX_WORK_ROOT = '/tmp/lambkin-builds';

export interface ProcessRunnerOptions {
  /** Command that starts the runner process (default: the runner program, src/controller/runner-program.ts). */
  command?: string[];
  /**
   * A sandbox per build (the local stack as root, src/controller/build-sandbox.ts): the runner and
   * its steps as a uid of the build's own, in a cgroup and PID namespace of their own, all of it
   * killed and its work root removed when the build ends. `true` for the defaults.
   */
  sandbox?: boolean | BuildSandboxOptions;
  /**
   * Keep one runner booted (its sandbox, its process, its compiled code) for the next build, as a
   * warm Lambda container is: booted after each run ends, used by one build only. `close()` ends it.
   */
  spare?: boolean;
  /** Parent of the runner's work areas (with `sandbox`: of each build's own work root). */
  workRoot?: string;
  /**
   * With `sandbox`: hand each repository's trusted npm cache from one trusted build to the next
   * (src/controller/npm-cache-handover.ts), as a warm runner keeps its own; without it, every
   * sandboxed build's npm cache starts empty.
   */
  npmCaches?: { handover: NpmCacheHandover; logger?: Logger };
  /**
   * With `sandbox`: keep each trusted build's unpacked dependency tree for the next build of its
   * cache key (src/controller/dependency-handover.ts), so that build moves it in instead of
   * unpacking the archive; without it, every build unpacks.
   */
  dependencies?: { handover: DependencyHandover; logger?: Logger };
  /** Time past the input's deadline before the process is killed. */
  graceMs?: number;
}

/**
 * Starts the runner as a child process with a clean environment: only PATH, LANG and the work
 * root. Input on stdin; on stdout the verdict, then the afterword (src/runner/main.ts). Its working
 * folder is the runner program's (or `/`), never the caller's: that may be closed to the runner's
 * user. `start` boots the process (and its sandbox) before the input is ready.
 */
export class ProcessRunnerInvoker implements RunnerInvoker {
  /** The runner booted for the next build (`spare`); each is handed to one build, then replaced. */
  private spare: Promise<BootedRunner> | undefined;
  private closed = false;
  /** One per run being driven: close() stops them. */
  private readonly running = new Set<AbortController>();

  constructor(private readonly options: ProcessRunnerOptions = {}) {}

  async run(
    input: RunnerInput,
    signal?: AbortSignal,
    onVerdict?: (verdict: RunnerOutcome) => void,
  ): Promise<RunnerOutcome> {
    if (signal?.aborted) throw new RunnerAbortedError(abortReason(signal));
    if (this.closed) throw new RunnerAbortedError(STOPPED_WITH_THE_STACK);
    return this.start().run(input, signal, onVerdict);
  }

  start(): StartedRunner {
    const booting = this.spareOrBoot();
    booting.catch(() => undefined); // told to whoever runs or discards it
    return {
      run: async (input, signal, onVerdict) => {
        const booted = await booting;
        const keepNpmCache = await this.lendNpmCache(booted.sandbox, input);
        const dependencies = await this.lendDependencies(booted.sandbox, input);
        try {
          return await this.drive(booted, dependencies?.input ?? input, signal, onVerdict);
        } finally {
          await booted.sandbox?.teardown(async () => {
            await keepNpmCache?.();
            await dependencies?.keep();
          });
          this.replenish();
        }
      },
      discard: async () => {
        const booted = await booting.catch(() => undefined);
        if (booted) await endBooted(booted);
        this.replenish();
      },
    };
  }

  /**
   * Ends the spare runner (if any); no other is booted after this. Runs still going are stopped
   * as a cancel stops them (the runner kills its steps): their controllers end their builds, and
   * the process that closes this one is not held open by a runner until its build's end.
   */
  async close(): Promise<void> {
    this.closed = true;
    for (const run of this.running) run.abort(new Error(STOPPED_WITH_THE_STACK));
    const spare = this.spare;
    this.spare = undefined;
    const booted = await spare?.catch(() => undefined);
    if (booted) await endBooted(booted);
  }

  /** The spare runner while it is alive (it is taken: the next is booted once a run ends), else a new one. */
  private async spareOrBoot(): Promise<BootedRunner> {
    const spare = this.spare;
    this.spare = undefined;
    const booted = await spare?.catch(() => undefined);
    if (booted && booted.child.exitCode === null && booted.child.signalCode === null) return booted;
    if (booted) await endBooted(booted); // it died while waiting: its sandbox goes, a new one boots
    return this.boot();
  }

  /**
   * A trusted build's sandbox gets its repository's kept npm cache before the runner has its input;
   * returns what takes it back at teardown. A failed handover costs the build its cache only.
   */
  private async lendNpmCache(
    sandbox: BuildSandbox | undefined,
    input: RunnerInput,
  ): Promise<(() => Promise<void>) | undefined> {
    const npmCaches = this.options.npmCaches;
    if (!sandbox || !npmCaches || input.build?.trusted !== true) return undefined;
    const { handover, logger } = npmCaches;
    const repo = input.build.repo;
    const fields = { repo, number: input.build.number };
    try {
      await handover.lend(repo, sandbox);
    } catch (error) {
      logger?.warn('npm cache: could not hand the kept cache to the build', { ...fields, error });
    }
    return async () => {
      try {
        const result = await handover.keep(repo, sandbox);
        if (!result.kept) logger?.info(`npm cache: not kept: ${result.reason}`, fields);
      } catch (error) {
        logger?.warn("npm cache: could not keep the build's cache", { ...fields, error });
      }
    };
  }

  /**
   * A trusted build's sandbox gets the dependency tree kept for its cache key (while the archive
   * is stored at it) before the runner has its input, and the input tells the runner to hand its
   * tree back; returns that input and what takes the tree back at teardown. A failed handover
   * costs the build only the time an unpack takes.
   */
  private async lendDependencies(
    sandbox: BuildSandbox | undefined,
    input: RunnerInput,
  ): Promise<{ input: RunnerInput; keep: () => Promise<void> } | undefined> {
    const dependencies = this.options.dependencies;
    const cache = input.cache;
    // A job with a Node.js of its own restores after the fetch, as the cloud does: no tree for it.
    if (!sandbox || !dependencies || !cache || input.build?.trusted !== true || input.job?.node)
      return undefined;
    const { handover, logger } = dependencies;
    const repo = input.build.repo;
    const fields = { repo, number: input.build.number, key: cache.key };
    if (cache.stored === true) {
      try {
        await handover.lend(repo, cache.key, sandbox);
      } catch (error) {
        logger?.warn('dependencies: could not hand the kept tree to the build', { ...fields, error });
      }
    }
    return {
      input: { ...input, cache: { ...cache, keepTree: true } },
      keep: async () => {
        try {
          const result = await handover.keep(repo, cache.key, sandbox);
          if (!result.kept) logger?.info(`dependencies: tree not kept: ${result.reason}`, fields);
        } catch (error) {
          logger?.warn("dependencies: could not keep the build's tree", { ...fields, error });
        }
      },
    };
  }

  /**
   * Boots a runner now for the next build to take, unless one waits already: a caller that knows
   * a build is coming (`lambkin run`) overlaps the boot with its own start. `close()` ends it
   * when no build took it.
   */
  prepare(): void {
    if (this.closed || this.spare) return;
    this.spare = this.boot();
    this.spare.catch(() => undefined); // a spare that failed to boot is replaced when taken
  }

  /** Boots the next spare runner (`spare`), once the build that took the last one has ended. */
  private replenish(): void {
    if (this.options.spare) this.prepare();
  }

  /** The sandbox and the runner process, waiting for its input on stdin. */
  private async boot(): Promise<BootedRunner> {
    const [command, cwd] = await this.commandAndFolder();
    const options = this.options.sandbox;
    const sandbox = options
      ? await acquireBuildSandbox(
          this.options.workRoot ?? DEFAULT_SANDBOX_WORK_ROOT,
          options === true ? {} : options,
        )
      : undefined;
    try {
      const [executable, ...args] = sandbox ? sandbox.wrap(command) : command;
      if (!executable) throw new Error('ProcessRunnerInvoker needs a command');
      const workRoot = sandbox?.workRoot ?? this.options.workRoot;
      const env: Record<string, string> = {
        PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
        LANG: 'C.UTF-8',
        // The machine's extra CA certificates (a proxy that re-signs TLS): the runner's own HTTPS
        // (the archive, a job's Node.js from the registry) trusts what this process trusts. A file
        // path, no secret; steps never see the runner's environment.
        ...((await extraCaCertificates()) ?? {}),
        ...(workRoot ? { LAMBKIN_WORK_ROOT: workRoot } : {}),
        // What the controller set up; the runner adds what it can do for its steps (src/core/sandbox.ts).
        LAMBKIN_BUILD_SANDBOX: sandbox ? formatProtections(sandbox.protections) : '',
      };
      const child = spawn(executable, args, { env, cwd, stdio: ['pipe', 'pipe', 'pipe'] });
      const booted: BootedRunner = {
        sandbox,
        child,
        stdout: '',
        stderr: '',
        exit: new Promise((resolve, reject) => {
          child.once('error', reject);
          child.once('close', (exitCode, closeSignal) => resolve([exitCode, closeSignal]));
        }),
      };
      booted.exit.catch(() => undefined); // told by drive
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
        booted.stdout += chunk;
        booted.onStdout?.();
      });
      child.stderr
        .setEncoding('utf8')
        .on('data', (chunk: string) => (booted.stderr = (booted.stderr + chunk).slice(-8192)));
      child.stdin.on('error', () => undefined); // a runner that dies at once closes its stdin
      return booted;
    } catch (error) {
      await sandbox?.teardown();
      throw error;
    }
  }

  /** Runs the build on `booted`, stopped when `signal` is aborted or this invoker closes. */
  private async drive(
    booted: BootedRunner,
    input: RunnerInput,
    signal?: AbortSignal,
    onVerdict?: (verdict: RunnerOutcome) => void,
  ): Promise<RunnerOutcome> {
    const closing = new AbortController();
    this.running.add(closing);
    try {
      return await this.driveUntilClosed(
        booted,
        input,
        AbortSignal.any([closing.signal, ...(signal ? [signal] : [])]),
        onVerdict,
      );
    } finally {
      this.running.delete(closing);
    }
  }

  private async driveUntilClosed(
    booted: BootedRunner,
    input: RunnerInput,
    signal: AbortSignal,
    onVerdict?: (verdict: RunnerOutcome) => void,
  ): Promise<RunnerOutcome> {
    const { child, sandbox } = booted;
    // The verdict line comes first (src/runner/main.ts): the controller reports it while the runner
    // goes on with its cache save.
    let verdict: RunnerOutcome | undefined;
    let aborted = false;
    booted.onStdout = () => {
      // A verdict after the controller stopped the runner is the stop's doing: the stop decides.
      if (verdict !== undefined || aborted) return;
      const end = booted.stdout.indexOf('\n');
      if (end < 0) return;
      verdict = verdictOf(booted.stdout.slice(0, end));
      if (verdict) onVerdict?.(verdict);
    };
    booted.onStdout();
    child.stdin.end(JSON.stringify(input));
    let timedOut = false;
    const killAt = input.deadlineAt + (this.options.graceMs ?? 10_000);
    const timer = setTimeout(
      () => {
        timedOut = true;
        child.kill('SIGKILL');
      },
      Math.max(killAt - Date.now(), 0),
    );
    const onAbort = (): void => {
      aborted = true;
      // The runner puts each step in its own process group and kills it on SIGTERM (SIGTERM to
      // the group, SIGKILL after its 2 s grace); SIGKILL the runner only if it is not gone by then.
      // In its own PID namespace the runner is unshare's child: unshare ignores SIGTERM, so the
      // runner gets it directly, and SIGKILL to unshare takes the whole namespace.
      const runner = sandbox ? childOf(child.pid) : child.pid;
      try {
        if (runner === undefined) child.kill('SIGKILL');
        else process.kill(runner, 'SIGTERM');
      } catch {
        // Gone already: nothing to stop.
      }
      setTimeout(() => child.kill('SIGKILL'), 5000).unref();
    };
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
    const [code, exitSignal] = await booted.exit.finally(() => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    });
    const { stdout, stderr } = booted;
    if (verdict)
      return withAfterword(verdict, stdout, () => describeExit(code, exitSignal, timedOut, stderr));
    if (aborted && signal) throw new RunnerAbortedError(abortReason(signal));
    if (timedOut) throw new RunnerFailedError('The runner hit its time limit and was killed.', true);
    const last = stdout.trim().split('\n').pop() ?? '';
    if (code !== 0 || !last) {
      const how = exitSignal ? `was killed by ${exitSignal}` : `exited with code ${code}`;
      throw new RunnerFailedError(`The runner ${how}: ${stderr.trim().slice(-500) || '(no output)'}`, false);
    }
    try {
      return parseRunnerOutcome(JSON.parse(last));
    } catch (error) {
      if (error instanceof RunnerFailedError) throw error;
      throw new RunnerFailedError(`The runner's answer was not JSON: ${last.slice(0, 200)}`, false);
    }
  }

  private async commandAndFolder(): Promise<[readonly string[], string]> {
    if (this.options.command) return [this.options.command, '/'];
    const program = await runnerProgram();
    if (this.options.sandbox) await checkRunnableByOthers(program);
    return [program.command, program.dir];
  }
}

/** Kills a runner that will get no input and removes its sandbox. */
async function endBooted(booted: BootedRunner): Promise<void> {
  booted.child.kill('SIGKILL');
  // The sandbox first: what the runner started may hold its pipes open, and the exit ('close')
  // waits for them; the teardown kills every process of the build.
  await booted.sandbox?.teardown();
  await booted.exit.catch(() => undefined);
}

/** A runner process started before its input, and what it said so far. */
interface BootedRunner {
  sandbox: BuildSandbox | undefined;
  child: ChildProcessWithoutNullStreams;
  stdout: string;
  stderr: string;
  exit: Promise<[number | null, NodeJS.Signals | null]>;
  /** Called on every piece of stdout once the runner has its input. */
  onStdout?: () => void;
}

/** The runner's first line when it is a verdict; undefined otherwise (an older runner's log line). */
function verdictOf(line: string): RunnerOutcome | undefined {
  try {
    return parseRunnerOutcome(JSON.parse(line));
  } catch {
    return undefined;
  }
}

/**
 * The whole outcome of a runner that announced its verdict: the verdict stands whatever happened
 * after it; the afterword adds the phases after it and the lines for the log, or a note saying
 * why it is missing (the runner died or was killed during its cache save).
 */
function withAfterword(verdict: RunnerOutcome, stdout: string, exit: () => string): RunnerOutcome {
  const last = stdout.trim().split('\n').pop() ?? '';
  let afterword: Partial<RunnerAfterword> | undefined;
  try {
    const value = JSON.parse(last) as Partial<RunnerAfterword> | null;
    if (value?.kind === 'afterword') afterword = value;
  } catch {
    afterword = undefined;
  }
  if (!afterword) {
    return { ...verdict, notes: [`The runner ended after its verdict without finishing: ${exit()}`] };
  }
  const after = runnerExtras(afterword.timings, afterword.notes);
  return {
    ...verdict,
    timings: [...(verdict.timings ?? []), ...(after.timings ?? [])],
    notes: after.notes ?? [],
  };
}

function isPhaseTiming(value: unknown): value is PhaseTiming {
  const timing = value as Partial<PhaseTiming> | null;
  return (
    typeof timing?.name === 'string' &&
    timing.name.length <= 100 &&
    typeof timing.ms === 'number' &&
    Number.isFinite(timing.ms) &&
    timing.ms >= 0
  );
}

function describeExit(
  code: number | null,
  exitSignal: NodeJS.Signals | null,
  timedOut: boolean,
  stderr: string,
): string {
  if (timedOut) return 'it hit its time limit and was killed';
  const how = exitSignal ? `it was killed by ${exitSignal}` : `it exited with code ${code}`;
  return `${how}${stderr.trim() ? ` (${stderr.trim().slice(-300)})` : ''}`;
}

/** The (first) child process of `pid`, from /proc; undefined when it has none or is gone. */
function childOf(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/);
    const first = Number(children[0]);
    return Number.isInteger(first) && first > 0 ? first : undefined;
  } catch {
    return undefined;
  }
}
