/** The step executor with real bash processes: output, environment, timeouts, kills and leftovers. */
import { spawn } from 'node:child_process';
import { access, chmod, chown, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BashNotFoundError,
  findPrlimit,
  killProcessGroup,
  runStep,
  StepError,
  type RunStepOptions,
  type StepRun,
  type StepSpec,
} from '../../src/runner/steps.js';
import { itAsRoot, requireTool } from '../support/tools.js';

/** The conventional unprivileged user. */
const NOBODY = 65534;
const PATH = process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin';

let folder: string;
/** Pids a test started outside runStep's control, killed after it whatever happens. */
const strays: number[] = [];

beforeEach(async () => {
  folder = await mkdtemp(join(tmpdir(), 'lambkin-steps-test-'));
});

afterEach(async () => {
  for (const pid of strays.splice(0)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await rm(folder, { recursive: true, force: true });
});

interface Captured {
  run: StepRun;
  output: Buffer;
  chunks: number;
}

async function run(
  command: string,
  spec: Partial<StepSpec> = {},
  options: Partial<RunStepOptions> = {},
): Promise<Captured> {
  const chunks: Buffer[] = [];
  const result = await runStep(
    { name: 'test', command, cwd: folder, env: { PATH }, timeoutMs: 10_000, ...spec },
    { onOutput: (chunk) => chunks.push(Buffer.from(chunk)), ...options },
  );
  return { run: result, output: Buffer.concat(chunks), chunks: chunks.length };
}

/**
 * Whether the process runs. A zombie does not: PID 1 of some containers never reaps orphans, so a
 * killed orphan can stay listed as a zombie for good.
 */
async function isRunning(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'latin1').catch(() => undefined);
  if (stat === undefined) return false;
  return !/^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2));
}

const pidsIn = (output: Buffer): number[] =>
  output
    .toString()
    .split('\n')
    .filter((line) => /^\d+$/.test(line))
    .map(Number);

describe('runStep: output', () => {
  test('runs the command with bash in the folder and passes its output on', async () => {
    const { run: result, output } = await run('pwd; echo "$BASH_VERSION" | cut -c1');
    expect(result).toEqual({ exitCode: 0, timedOut: false, durationMs: expect.any(Number) });
    expect(output.toString()).toMatch(new RegExp(`^${folder}\n[0-9]\n$`));
  });

  test('keeps stdout and stderr in the order they were written', async () => {
    const { output } = await run('for i in $(seq 1 300); do echo "out $i"; echo "err $i" >&2; done');
    const expected = Array.from({ length: 300 }, (_, index) => `out ${index + 1}\nerr ${index + 1}\n`);
    expect(output.toString()).toBe(expected.join(''));
  });

  test('passes binary output and output without a newline through byte for byte', async () => {
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, index) => 255 - index));
    const printf = [...bytes].map((byte) => `\\${byte.toString(8).padStart(3, '0')}`).join('');
    const { output } = await run(`printf '${printf}'; printf 'no newline' >&2`);
    expect(output).toEqual(Buffer.concat([bytes, Buffer.from('no newline')]));
  });

  test('streams output while the step still runs', async () => {
    const controller = new AbortController();
    const seen: string[] = [];
    // The step would sleep for 30 s; only the first output arriving early can end it sooner.
    const result = await runStep(
      { name: 'test', command: 'echo started; exec sleep 30', cwd: folder, env: { PATH }, timeoutMs: 20_000 },
      {
        onOutput: (chunk) => {
          seen.push(Buffer.from(chunk).toString());
          controller.abort();
        },
        signal: controller.signal,
      },
    );
    expect(seen.join('')).toBe('started\n');
    expect(result).toMatchObject({ exitCode: null, signal: 'SIGTERM', timedOut: false });
  });

  test('streams huge output without holding it in memory', async () => {
    // Large enough that buffering would dwarf the garbage the collector has not yet freed
    // (seen up to ~30 MB on a busy 2-core machine), so the bound below cannot flake.
    const size = 400 * 1024 ** 2;
    global.gc?.();
    const before = process.memoryUsage().rss;
    let received = 0;
    let peak = before;
    const result = await runStep(
      { name: 'test', command: `head -c ${size} /dev/zero`, cwd: folder, env: { PATH }, timeoutMs: 20_000 },
      {
        onOutput: (chunk) => {
          received += chunk.length;
          if (received % (1024 * 1024) < chunk.length) peak = Math.max(peak, process.memoryUsage().rss);
        },
      },
    );
    expect(result.exitCode).toBe(0);
    expect(received).toBe(size);
    // Buffering the whole output would grow the process by at least its size.
    expect(peak - before).toBeLessThan(size / 4);
  });
});

describe('runStep: command and environment', () => {
  test('passes the command as it is: quotes, expansions, newlines, no positional parameters', async () => {
    const command = [
      `echo "two  spaces" 'single $HOME' "$0" "$#" "\${1-unset}"`,
      `cat <<'EOF'`,
      `a "quoted" 'line' \\ $(not run)`,
      `EOF`,
      `x=1; [ "$x" = 1 ] && echo ok`,
    ].join('\n');
    const { output, run: result } = await run(command);
    expect(result.exitCode).toBe(0);
    expect(output.toString()).toBe(
      `two  spaces single $HOME bash 0 unset\na "quoted" 'line' \\ $(not run)\nok\n`,
    );
  });

  test('gives the step exactly its env, nothing of the runner process', async () => {
    process.env.LAMBKIN_STEPS_TEST_RUNNER_ONLY = 'must not leak';
    try {
      const { output } = await run('env -0', { env: { PATH, CI: 'true', 'WITH SPACE': 'x y' } });
      // bash itself exports PWD, SHLVL and _; everything else must come from the env given.
      const names = output
        .toString()
        .split('\0')
        .filter(Boolean)
        .map((entry) => entry.slice(0, entry.indexOf('=')));
      expect(names.sort()).toEqual(['CI', 'PATH', 'PWD', 'SHLVL', 'WITH SPACE', '_'].sort());
      const values = await run('echo "$CI|$LAMBKIN_STEPS_TEST_RUNNER_ONLY|$HOME"', {
        env: { PATH, CI: 'true' },
      });
      expect(values.output.toString()).toBe('true||\n');
    } finally {
      delete process.env.LAMBKIN_STEPS_TEST_RUNNER_ONLY;
    }
  });

  test('stdin is empty', async () => {
    const { output } = await run('wc -c');
    expect(output.toString().trim()).toBe('0');
  });

  test('reports a non-zero exit code', async () => {
    const { run: result, output } = await run('echo failing; exit 3');
    expect(result).toEqual({ exitCode: 3, timedOut: false, durationMs: expect.any(Number) });
    expect(output.toString()).toBe('failing\n');
  });

  test('reports a signal that ended the step', async () => {
    const { run: result } = await run('kill -KILL $$');
    expect(result).toMatchObject({ exitCode: null, signal: 'SIGKILL', timedOut: false });
  });

  test('shell errors come out in the output, as bash -c prints them', async () => {
    const { run: result, output } = await run('no-such-command-lambkin');
    expect(result.exitCode).toBe(127);
    expect(output.toString()).toMatch(/^bash: line 1: no-such-command-lambkin: command not found\n$/);
  });
});

describe('runStep: timeouts and leftovers', () => {
  test('a step that runs too long is stopped with SIGTERM and marked timed out', async () => {
    // Long enough for bash to start and echo on a busy machine (300 ms was not always).
    const { run: result, output } = await run('echo begun; sleep 30; echo never', { timeoutMs: 2000 });
    expect(result).toMatchObject({ exitCode: null, signal: 'SIGTERM', timedOut: true });
    expect(output.toString()).toBe('begun\n');
    expect(result.durationMs).toBeGreaterThanOrEqual(1950);
    expect(result.durationMs).toBeLessThan(10_000);
  });

  test('a step that ignores SIGTERM is killed after the grace time, children included', async () => {
    const { run: result, output } = await run(
      `trap '' TERM; sleep 30 & echo $!; sleep 30; echo never`,
      // Time for the trap and the echo before the SIGTERM, also on a busy machine.
      { timeoutMs: 2000 },
      { killGraceMs: 300 },
    );
    expect(result).toMatchObject({ exitCode: null, signal: 'SIGKILL', timedOut: true });
    const [child] = pidsIn(output);
    expect(child).toBeDefined();
    expect(await isRunning(child!)).toBe(false);
  });

  test('processes left in the background are ended when the step exits', async () => {
    // One keeps the output pipe open, one does not: both must go, and neither may hold the step up.
    const { run: result, output } = await run(
      'sleep 1000 & echo $!; sleep 1000 >/dev/null 2>&1 & echo $!; exit 0',
      { timeoutMs: 20_000 },
      { killGraceMs: 5000 },
    );
    expect(result).toEqual({ exitCode: 0, timedOut: false, durationMs: expect.any(Number) });
    const pids = pidsIn(output);
    expect(pids).toHaveLength(2);
    for (const pid of pids) expect(await isRunning(pid)).toBe(false);
  });

  test('a step that closes its output and keeps running is waited for', async () => {
    const { run: result, output } = await run('echo closing; exec >&- 2>&-; sleep 0.3; exit 4');
    expect(result).toMatchObject({ exitCode: 4, timedOut: false });
    expect(output.toString()).toBe('closing\n');
  });

  test('a step that closes its output and runs too long still times out', async () => {
    const { run: result } = await run('exec >&- 2>&-; sleep 30', { timeoutMs: 300 });
    expect(result).toMatchObject({ exitCode: null, signal: 'SIGTERM', timedOut: true });
  });

  describe('a process that left the group', () => {
    if (!requireTool('setsid', 'a step whose process escapes its process group')) return;

    test('cannot keep the step from ending by holding its output open', async () => {
      const { run: result, output } = await run('setsid sleep 30 & echo $!; echo done');
      strays.push(...pidsIn(output));
      expect(result).toMatchObject({ exitCode: 0, timedOut: false });
      expect(output.toString()).toMatch(/^\d+\ndone\n$/);
      expect(result.durationMs).toBeLessThan(10_000);
    });
  });
});

describe('runStep: cancellation', () => {
  test('aborting kills the whole group and reports the signal', async () => {
    const controller = new AbortController();
    let pids: number[] = [];
    const result = await runStep(
      {
        name: 'test',
        command: 'sleep 30 & echo $!; echo ready; wait',
        cwd: folder,
        env: { PATH },
        timeoutMs: 20_000,
      },
      {
        onOutput: (chunk) => {
          pids = [...pids, ...pidsIn(Buffer.from(chunk))];
          if (Buffer.from(chunk).toString().includes('ready')) controller.abort();
        },
        signal: controller.signal,
      },
    );
    expect(result).toMatchObject({ exitCode: null, signal: 'SIGTERM', timedOut: false });
    expect(pids).toHaveLength(1);
    expect(await isRunning(pids[0]!)).toBe(false);
  });

  test('a step cancelled before it starts is not started', async () => {
    const controller = new AbortController();
    controller.abort();
    const { run: result } = await run('touch started', {}, { signal: controller.signal });
    expect(result).toEqual({ exitCode: null, timedOut: false, durationMs: 0 });
    await expect(access(join(folder, 'started'))).rejects.toThrow();
  });

  test('a step with no time left is not started', async () => {
    const { run: result } = await run('touch started', { timeoutMs: 0 });
    expect(result).toEqual({ exitCode: null, timedOut: true, durationMs: 0 });
    await expect(access(join(folder, 'started'))).rejects.toThrow();
  });

  test('an onOutput that throws stops the step with a typed error', async () => {
    const pids: number[] = [];
    const failure = await runStep(
      { name: 'test', command: 'sleep 30 & echo $!; wait', cwd: folder, env: { PATH }, timeoutMs: 20_000 },
      {
        onOutput: (chunk) => {
          pids.push(...pidsIn(Buffer.from(chunk)));
          throw new Error('log storage is gone');
        },
      },
    ).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(StepError);
    expect(failure).toMatchObject({ code: 'STEP_OUTPUT', message: expect.stringContaining('log storage') });
    expect(pids).toHaveLength(1);
    expect(await isRunning(pids[0]!)).toBe(false);
  });
});

describe('runStep: refusals', () => {
  test('no bash on the step PATH is a typed error', async () => {
    const emptyBin = join(folder, 'bin');
    await mkdir(emptyBin);
    const failure = await run('true', { env: { PATH: emptyBin } }).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(BashNotFoundError);
    expect(failure).toMatchObject({ code: 'BASH_NOT_FOUND', message: expect.stringContaining(emptyBin) });
  });

  test('a missing folder is a typed error', async () => {
    const failure = await run('true', { cwd: join(folder, 'missing') }).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(StepError);
    expect(failure).toMatchObject({ code: 'STEP_START' });
  });

  test('an environment the system cannot pass on is a typed error, not a crash', async () => {
    const failure = await run('true', { env: { PATH, BROKEN: 'nul\0inside' } }).catch(
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(StepError);
    expect(failure).toMatchObject({ code: 'STEP_START' });
  });

  test('a uid without a gid is refused (it would keep the root group)', async () => {
    const failure = await run('true', {}, { uid: NOBODY }).catch((error: unknown) => error);
    expect(failure).toMatchObject({ code: 'STEP_INVALID' });
  });
});

describe('runStep as another user', () => {
  itAsRoot('runs as the uid and gid given, in folders that user owns', async () => {
    // The temporary folder is 0700 root; the user must be able to pass through it.
    await chmod(folder, 0o711);
    const checkout = join(folder, 'checkout');
    const home = join(folder, 'home');
    for (const path of [checkout, home]) {
      await mkdir(path, { mode: 0o700 });
      await chown(path, NOBODY, NOBODY);
    }
    const { run: result, output } = await run(
      'id -u; id -g; id -G; echo "$HOME"; pwd; touch made && echo wrote',
      { cwd: checkout, env: { PATH, HOME: home } },
      { uid: NOBODY, gid: NOBODY },
    );
    expect(result.exitCode).toBe(0);
    // id -G: no supplementary group of the runner (root) is kept.
    expect(output.toString()).toBe(`${NOBODY}\n${NOBODY}\n${NOBODY}\n${home}\n${checkout}\nwrote\n`);
  });
});

describe('killProcessGroup', () => {
  test('ends every process of a group, also when its leader is gone', async () => {
    const leader = spawn('bash', ['-c', 'sleep 30 & echo $!; sleep 30 & echo $!'], {
      detached: true,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    strays.push(leader.pid!);
    let text = '';
    leader.stdout.on('data', (chunk: Buffer) => (text += chunk.toString()));
    await new Promise((resolve) => leader.once('exit', resolve));
    const pids = pidsIn(Buffer.from(text));
    strays.push(...pids);
    expect(pids).toHaveLength(2);
    for (const pid of pids) expect(await isRunning(pid)).toBe(true);

    await killProcessGroup(leader.pid!, 2000);
    for (const pid of pids) expect(await isRunning(pid)).toBe(false);
    // A group that is gone is fine too.
    await expect(killProcessGroup(leader.pid!, 2000)).resolves.toBeUndefined();
  });

  test.each([0, 1, -1, -5, 1.5, Number.NaN])('refuses process group id %p', async (pgid) => {
    await expect(killProcessGroup(pgid, 100)).rejects.toMatchObject({ code: 'STEP_INVALID' });
  });
});

describe('runStep with maxProcesses', () => {
  it('runs the step under prlimit: RLIMIT_NPROC is the bound asked for', async () => {
    const { run: result, output } = await run('ulimit -u; ulimit -Hu', {}, { maxProcesses: 37 });
    expect(result.exitCode).toBe(0);
    expect(output.toString()).toBe('37\n37\n');
  });

  it('keeps the step its own process group under prlimit (prlimit execs bash)', async () => {
    const { output } = await run('ps -o pid=,pgid= -p $$', {}, { maxProcesses: 50 });
    const [pid, pgid] = output.toString().trim().split(/\s+/);
    expect(pid).toBe(pgid);
  });

  it('refuses a maxProcesses that is not a positive integer', async () => {
    for (const maxProcesses of [0, -1, 1.5, Number.NaN]) {
      await expect(run('true', {}, { maxProcesses })).rejects.toMatchObject({ code: 'STEP_INVALID' });
    }
  });

  it('finds prlimit on the PATH', () => {
    expect(findPrlimit(PATH)).toMatch(/\/prlimit$/);
  });
});

describe('runStep with maxFileBytes', () => {
  const write = 'head -c 2097152 /dev/zero > big.bin; echo "exit=$?"; stat -c %s big.bin';

  it('stops a step from growing one file past the bound (SIGXFSZ), whatever its speed', async () => {
    const { output } = await run(write, {}, { maxFileBytes: 1024 * 1024 });
    // head is killed by SIGXFSZ (128 + 25) with the file at the bound.
    expect(output.toString()).toMatch(/exit=153\n1048576\n$/);
  });

  it('writes the whole file without the bound (the probe above can fail)', async () => {
    const { output } = await run(write, {}, {});
    expect(output.toString()).toMatch(/exit=0\n2097152\n$/);
  });

  it('refuses a maxFileBytes that is not a positive integer', async () => {
    for (const maxFileBytes of [0, -5, 2.5]) {
      await expect(run('true', {}, { maxFileBytes })).rejects.toMatchObject({ code: 'STEP_INVALID' });
    }
  });
});

describe('runStep with maxProcesses as another user', () => {
  itAsRoot('stops forks past the bound', async () => {
    await chmod(folder, 0o777);
    // A uid nothing else uses, so its process count is this step's alone; dash fails a fork at
    // once where bash would retry for seconds.
    const { output } = await run(
      "sh -c 'for i in 1 2 3 4 5 6 7 8 9 10; do sleep 5 & done; echo all-started'",
      { timeoutMs: 20_000 },
      { maxProcesses: 4, uid: 48152, gid: 48152 },
    );
    expect(output.toString()).toMatch(/Cannot fork/);
    expect(output.toString()).not.toContain('all-started');
  });
});
