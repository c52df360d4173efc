/**
 * The runner process's two-line answer (src/runner/main.ts): its verdict first, its afterword once
 * the cache save is done. Real child processes (shell scripts standing in for the runner) that
 * answer as a runner would, or misbehave after their verdict.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ProcessRunnerInvoker, RunnerAbortedError } from '../../src/controller/runner-invoker.js';
import type { RunnerAfterword, RunnerInput, RunnerOutcome } from '../../src/core/protocol.js';

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'lambkin-verdict-test-'));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

const VERDICT: RunnerOutcome = {
  kind: 'outcome',
  state: 'success',
  description: 'passed in 1 s',
  steps: [{ name: 'test', exitCode: 0, durationMs: 1000 }],
  log: { chunks: 1, totalBytes: 10, truncatedBytes: 0, tail: false },
  timings: [{ name: 'step test', ms: 1000 }],
};
const AFTERWORD: RunnerAfterword = {
  kind: 'afterword',
  timings: [
    { name: 'cache save', ms: 700 },
    { name: 'cleanup', ms: 5 },
  ],
  notes: ['Cache: saved cache/o/r/key.tar.gz (3 files, 0.1 MiB) in 700 ms'],
};

/** Only what the invoker reads of the input: its deadline. */
const input = (deadlineInMs = 60_000): RunnerInput =>
  ({ deadlineAt: Date.now() + deadlineInMs }) as RunnerInput;

/** A runner that reads its input, then runs `script` (a shell script) with `$GATE`, a file path. */
function runner(script: string, gate: string): ProcessRunnerInvoker {
  return new ProcessRunnerInvoker({ command: ['sh', '-c', `cat >/dev/null\nGATE='${gate}'\n${script}`] });
}

const line = (value: unknown): string => `'${JSON.stringify(value)}'`;

describe('the runner process’s verdict', () => {
  it('is told before the runner ends; the whole outcome follows with the afterword', async () => {
    const gate = join(scratch, 'gate-1');
    // The afterword waits for the gate, which only the verdict's receiver opens: a verdict told
    // only at the end would never come.
    const invoker = runner(
      `echo ${line(VERDICT)}\nwhile [ ! -e "$GATE" ]; do sleep 0.05; done\necho ${line(AFTERWORD)}`,
      gate,
    );
    const told: RunnerOutcome[] = [];
    const outcome = await invoker.run(input(20_000), undefined, (verdict) => {
      told.push(verdict);
      void writeFile(gate, 'open');
    });
    expect(told).toEqual([VERDICT]);
    expect(outcome).toEqual({
      ...VERDICT,
      timings: [...(VERDICT.timings ?? []), ...AFTERWORD.timings],
      notes: AFTERWORD.notes,
    });
  });

  it('stands when the runner dies after it, with a note saying so', async () => {
    const invoker = runner(`echo ${line(VERDICT)}\necho 'saving went wrong' >&2\nexit 3`, join(scratch, 'x'));
    const outcome = await invoker.run(input(), undefined, () => undefined);
    expect(outcome.state).toBe('success');
    expect(outcome.notes).toEqual([
      'The runner ended after its verdict without finishing: it exited with code 3 (saving went wrong)',
    ]);
  });

  it('stands when the runner hangs after it until its time limit', async () => {
    const invoker = new ProcessRunnerInvoker({
      command: ['sh', '-c', `cat >/dev/null\necho ${line(VERDICT)}\nexec sleep 600`],
      graceMs: 0,
    });
    const outcome = await invoker.run(input(1500), undefined, () => undefined);
    expect(outcome.state).toBe('success');
    expect(outcome.notes?.[0]).toMatch(/without finishing: it hit its time limit and was killed/);
  });

  it('bounds what the runner adds after it: no more than 20 notes, no timing that is not one', async () => {
    const flood: RunnerAfterword = {
      kind: 'afterword',
      timings: [{ name: 'cache save', ms: 1 }, { name: 'bad', ms: -1 }, { nope: true } as never],
      notes: Array.from({ length: 100 }, (_, index) => `note ${index} ${'x'.repeat(5000)}`),
    };
    const file = join(scratch, 'flood.json');
    await writeFile(file, JSON.stringify(VERDICT) + '\n' + JSON.stringify(flood) + '\n');
    const outcome = await new ProcessRunnerInvoker({
      command: ['sh', '-c', `cat >/dev/null\ncat '${file}'`],
    }).run(input(), undefined, () => undefined);
    expect(outcome.timings).toEqual([...(VERDICT.timings ?? []), { name: 'cache save', ms: 1 }]);
    expect(outcome.notes).toHaveLength(20);
    expect(outcome.notes?.every((note) => note.length <= 2000)).toBe(true);
  });

  it('is not told when it comes after the controller stopped the runner: the stop decides', async () => {
    const gate = join(scratch, 'gate-stop');
    const invoker = runner(
      `trap 'echo ${line({ ...VERDICT, state: 'failure' }).replace(/'/g, '')} ; exit 0' TERM\n` +
        `touch "$GATE"\nwhile :; do sleep 0.05; done`,
      gate,
    );
    const stop = new AbortController();
    const told: RunnerOutcome[] = [];
    const running = invoker.run(input(), stop.signal, (verdict) => told.push(verdict));
    while (!existsSync(gate)) await new Promise((resolve) => setTimeout(resolve, 20));
    stop.abort(new Error('superseded by #2'));
    await expect(running).rejects.toBeInstanceOf(RunnerAbortedError);
    expect(told).toEqual([]);
  });
});
