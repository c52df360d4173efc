/**
 * The spare runner (ProcessRunnerInvoker's `spare`, as the local stack keeps one): booted once a
 * run ends, handed to exactly one build, replaced when it died while waiting, ended by `close()`.
 * Real child processes: shell scripts standing in for the runner, which note each boot in a file
 * and answer with the boot that served the input. As root, the same in the build sandbox, against
 * a hostile build that attacks every process it can reach while the spare waits.
 */
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ProcessRunnerInvoker, RunnerAbortedError } from '../../src/controller/runner-invoker.js';
import type { RunnerInput, RunnerOutcome } from '../../src/core/protocol.js';

const itAsRoot = process.getuid?.() === 0 ? it : it.skip;

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'lambkin-spare-test-'));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

/** A folder every build uid can write in, none can empty (sticky), for one test. */
async function boardFolder(name: string): Promise<string> {
  const made = await mkdtemp(join(scratch, `${name}-`));
  await chmod(scratch, 0o755);
  await chmod(made, 0o1777);
  return made;
}

/**
 * The stand-in runner: notes its boot (`booted-*` in `dir`) before it reads its input, then answers
 * "<its boot> <the input's id>". An input with `"hostile":true` waits for `dir/gate`, then forges
 * an input into every process's stdin it can open and SIGKILLs every process it may signal.
 */
function standIn(dir: string): string[] {
  return [
    'sh',
    '-c',
    `boot=$(mktemp '${dir}/booted-XXXXXX')
input=$(cat)
id=$(printf '%s' "$input" | sed -n 's/.*"id":"\\([a-z0-9-]*\\)".*/\\1/p' | tr '\\n' ' ')
case "$input" in *'"hostile":true'*)
  while [ ! -e '${dir}/gate' ]; do sleep 0.05; done
  for stdin in /proc/[0-9]*/fd/0; do printf '{"id":"forged"}' 2>/dev/null >"$stdin"; done
  kill -9 -1 2>/dev/null
  touch '${dir}/attacked';;
esac
printf '{"kind":"outcome","state":"success","description":"%s %s","steps":[],"log":{}}\\n' "\${boot##*/}" "$id"`,
  ];
}

const input = (id: string, extra: Record<string, unknown> = {}): RunnerInput =>
  ({ deadlineAt: Date.now() + 60_000, id, ...extra }) as unknown as RunnerInput;

const boots = async (dir: string): Promise<string[]> =>
  (await readdir(dir)).filter((name) => name.startsWith('booted-')).sort();

async function until(condition: () => Promise<boolean>, what: string): Promise<void> {
  for (let attempt = 0; attempt < 400; attempt++) {
    if (await condition()) return;
    await sleep(25);
  }
  throw new Error(`waited 10 s for ${what}`);
}

/** "<boot> <id>" of an outcome: which boot served which input. */
const served = (outcome: RunnerOutcome): [string, string] => {
  const [boot = '', id = ''] = outcome.description.trim().split(' ');
  return [boot, id];
};

describe('the spare runner', () => {
  it('is booted once a run ends and serves exactly the next build', async () => {
    const dir = await boardFolder('next');
    const invoker = new ProcessRunnerInvoker({ command: standIn(dir), spare: true });
    try {
      const [first] = served(await invoker.run(input('one')));
      // The spare boots after the first run, before any second input exists.
      await until(async () => (await boots(dir)).length === 2, 'the spare to boot');
      const spare = (await boots(dir)).find((boot) => boot !== first);
      const second = await invoker.run(input('two'));
      expect(served(second)).toEqual([spare, 'two']);
      await until(async () => (await boots(dir)).length === 3, 'the next spare');
    } finally {
      await invoker.close();
    }
  });

  it('is not kept without the option: each run boots its own runner', async () => {
    const dir = await boardFolder('none');
    const invoker = new ProcessRunnerInvoker({ command: standIn(dir) });
    await invoker.run(input('one'));
    await sleep(300);
    expect(await boots(dir)).toHaveLength(1);
  });

  it('is booted at once by prepare(), taken by the next build, and not replaced without the option', async () => {
    const dir = await boardFolder('prepared');
    const invoker = new ProcessRunnerInvoker({ command: standIn(dir) });
    try {
      invoker.prepare();
      invoker.prepare(); // one waits already: no second
      await until(async () => (await boots(dir)).length === 1, 'the prepared runner');
      const [prepared] = await boots(dir);
      expect(served(await invoker.run(input('one')))).toEqual([prepared, 'one']);
      await sleep(300);
      expect(await boots(dir)).toHaveLength(1);
    } finally {
      await invoker.close();
    }
  });

  it('is replaced when it died while waiting: the build still runs', async () => {
    const dir = await boardFolder('died');
    // The boot line carries the process's pid, so the test can kill the one waiting.
    const invoker = new ProcessRunnerInvoker({
      command: ['sh', '-c', `echo $$ > '${dir}/pid-'$$\n${standIn(dir)[2] ?? ''}`],
      spare: true,
    });
    try {
      await invoker.run(input('one'));
      await until(
        async () => (await readdir(dir)).filter((n) => n.startsWith('pid-')).length === 2,
        'a spare',
      );
      const pids = (await readdir(dir)).filter((n) => n.startsWith('pid-')).map((n) => Number(n.slice(4)));
      const waiting = pids.filter((pid) => {
        try {
          process.kill(pid, 0);
          return true;
        } catch {
          return false;
        }
      });
      expect(waiting).toHaveLength(1);
      process.kill(waiting[0] ?? 0, 'SIGKILL');
      await sleep(100);
      const before = await boots(dir);
      const outcome = await invoker.run(input('two'));
      expect(outcome.state).toBe('success');
      const [boot, id] = served(outcome);
      expect(id).toBe('two');
      expect(before).not.toContain(boot); // a runner booted after the spare died
    } finally {
      await invoker.close();
    }
  });

  it('is ended by close(), and no runner boots after it', async () => {
    const dir = await boardFolder('close');
    const invoker = new ProcessRunnerInvoker({
      command: ['sh', '-c', `echo $$ > '${dir}/pid-'$$\n${standIn(dir)[2] ?? ''}`],
      spare: true,
    });
    await invoker.run(input('one'));
    await until(async () => (await boots(dir)).length === 2, 'the spare');
    await invoker.close();
    const alive = (await readdir(dir))
      .filter((n) => n.startsWith('pid-'))
      .filter((n) => {
        try {
          process.kill(Number(n.slice(4)), 0);
          return true;
        } catch {
          return false;
        }
      });
    expect(alive).toEqual([]);
    // A build after close() (its controller claimed it as the stack stopped) boots no runner: it
    // ends as stopped, which its controller records.
    await expect(invoker.run(input('late'))).rejects.toThrow(RunnerAbortedError);
    await sleep(300);
    expect(await boots(dir)).toHaveLength(2);
  });

  itAsRoot(
    'in the build sandbox, outlives a hostile build that runs while it waits, and serves only the next build',
    async () => {
      const dir = await boardFolder('hostile');
      const invoker = new ProcessRunnerInvoker({
        command: standIn(dir),
        spare: true,
        sandbox: true,
        workRoot: '/tmp/lambkin-spare-test',
      });
      try {
        const [warmUp] = served(await invoker.run(input('w')));
        await until(async () => (await boots(dir)).length === 2, 'the first spare');
        // The hostile build takes that spare and waits at its gate; a second build runs meanwhile,
        // and when it ends the next spare boots, while the hostile build still runs.
        const hostile = invoker.run(input('h', { hostile: true }));
        const [beside] = served(await invoker.run(input('a')));
        await until(async () => (await boots(dir)).length === 4, 'the spare booted beside the hostile build');
        await writeFile(join(dir, 'gate'), '');
        const [attacker] = served(await hostile);
        expect(existsSync(join(dir, 'attacked'))).toBe(true);
        const spare = (await boots(dir)).filter((boot) => ![warmUp, beside, attacker].includes(boot));
        expect(spare).toHaveLength(1);
        // Neither killed nor fed a forged input: the spare booted before the attack serves this build.
        expect(served(await invoker.run(input('c')))).toEqual([spare[0], 'c']);
      } finally {
        await invoker.close();
      }
    },
    30_000,
  );
});
