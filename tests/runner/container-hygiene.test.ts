/**
 * The runner's container hygiene (src/runner/container-hygiene.ts) against real hostile leftovers:
 * a `setsid` process, a double-forked one, one that ignores SIGTERM, one that forks without end, a
 * stopped one, one that keeps writing into the tmp root; read-only and unreadable folders, symbolic
 * links out of the tmp root, a FIFO. The sweep kills every process, so it runs only in a PID
 * namespace of its own (tests/support/hygiene-sandbox.ts as its pid 1), as in a Lambda container:
 * as nobody when the tests run as root (CI), in a user namespace otherwise. And the switch that
 * keeps it off everywhere but in a Lambda container.
 */
import { execFile, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import {
  containerHygieneMode,
  containerRuntimePids,
  emptyFolder,
  listProcesses,
} from '../../src/runner/container-hygiene.js';
import type { SandboxConfig, SandboxResult } from '../support/hygiene-sandbox.js';
import { REPO_ROOT } from '../support/template.js';
import { isCI } from '../support/tools.js';

const run = promisify(execFile);
const NOBODY = { uid: 65534, gid: 65534 };
const isRoot = process.getuid?.() === 0;

/** How this machine makes a PID namespace: as root, or in a user namespace; undefined if it cannot. */
function namespacePrefix(): string[] | undefined {
  const prefix = isRoot
    ? ['unshare', '--pid', '--fork', '--mount-proc', '--kill-child=SIGKILL']
    : ['unshare', '--user', '--map-root-user', '--pid', '--fork', '--mount-proc', '--kill-child=SIGKILL'];
  const probe = spawnSync(prefix[0] ?? 'unshare', [...prefix.slice(1), 'true'], { stdio: 'ignore' });
  return probe.status === 0 ? prefix : undefined;
}

const prefix = namespacePrefix();
let scratch: string;
let sandbox: string;

beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), 'lambkin-hygiene-'));
  chmodSync(scratch, 0o755);
  sandbox = join(scratch, 'sandbox.mjs');
  await build({
    entryPoints: [join(REPO_ROOT, 'tests/support/hygiene-sandbox.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile: sandbox,
    // As scripts/build.mjs: the CommonJS dependencies (execa's) require Node built-ins.
    banner: {
      js: "import { createRequire as __sandboxRequire } from 'node:module';\nconst require = __sandboxRequire(import.meta.url);",
    },
    logLevel: 'error',
  });
  chmodSync(sandbox, 0o644);
}, 30_000);

afterAll(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

let runs = 0;
async function inContainer(options: {
  unkillable?: boolean;
  asNobody: boolean;
  runtime?: 'sweep' | 'handler';
}): Promise<SandboxResult> {
  if (!prefix) throw new Error('no PID namespace');
  const base = join(scratch, `run-${++runs}`);
  const config: SandboxConfig = {
    tmpRoot: join(base, 'tmp'),
    outside: join(base, 'outside'),
    unkillable: options.unkillable ?? false,
    ...(options.asNobody ? { user: NOBODY } : {}),
    ...(options.runtime ? { runtime: options.runtime } : {}),
  };
  mkdirSync(config.tmpRoot, { recursive: true });
  mkdirSync(config.outside);
  writeFileSync(join(config.outside, 'keep-me'), 'outside the tmp root');
  chmodSync(base, 0o755);
  if (options.asNobody) {
    // The container's /tmp and what lies outside it belong to the runtime's user, as on Lambda.
    for (const path of [config.tmpRoot, config.outside, join(config.outside, 'keep-me')]) {
      chownSync(path, NOBODY.uid, NOBODY.gid);
    }
  }
  const { stdout } = await run(
    prefix[0] ?? 'unshare',
    [...prefix.slice(1), process.execPath, sandbox, 'init', JSON.stringify(config)],
    // Killing unshare kills the namespace (--kill-child): nothing outlives a test that hangs.
    { timeout: 30_000, killSignal: 'SIGKILL' },
  );
  return JSON.parse(stdout.trim().split('\n').pop() ?? '') as SandboxResult;
}

describe('sweeping a container', () => {
  if (!prefix) {
    if (isCI()) it('can make a PID namespace (CI runs as root)', () => expect(prefix).toBeDefined());
    else {
      console.warn('SKIPPED: container hygiene sweeps: this machine cannot make a PID namespace (unshare).');
      it.skip('sweeps (needs a PID namespace)', () => undefined);
    }
    return;
  }

  it('kills every leftover process and empties the tmp root, without following a link out of it', async () => {
    const result = await inContainer({ asNobody: isRoot });
    if (!result.report) throw new Error('no sweep report');
    // The hostile build really left all of these running.
    for (const command of ['sleep', 'sh']) {
      expect(result.before.some((line) => line.split(' ')[1] === command)).toBe(true);
    }
    expect(result.before.length).toBeGreaterThanOrEqual(6);
    expect(result.report).toMatchObject({
      clean: true,
      problems: [],
      remainingProcesses: [],
      remainingFiles: [],
    });
    expect(result.report.killed.length).toBeGreaterThanOrEqual(6);
    expect(result.report.removed).toEqual(
      expect.arrayContaining(['ro', 'a', 'link-to-folder', 'fifo', '.hidden']),
    );
    // Looked at from pid 1 afterwards: nothing but pid 1 alive, the tmp root empty, the link's target kept.
    expect(result.after).toEqual([]);
    expect(result.tmpLeft).toEqual([]);
    expect(result.outsideIntact).toBe(true);
  }, 60_000);

  it('the runner handler sweeps before the build and again before it answers', async () => {
    const result = await inContainer({ asNobody: isRoot, runtime: 'handler' });
    expect(result.handler).toMatchObject({ state: 'error' });
    expect(result.handler?.exited).toBeUndefined();
    expect(result.handler?.log[0]).toMatch(
      /^container hygiene before the build: killed \d+ process\(es\), removed \d+ entr\(ies\)/,
    );
    expect(result.handler?.log.join('\n')).not.toContain('NOT CLEAN');
    // Its own work area is gone too: nothing of the build is left for the next one.
    expect(result.after).toEqual([]);
    expect(result.tmpLeft).toEqual([]);
    expect(result.outsideIntact).toBe(true);
  }, 60_000);

  if (isRoot) {
    it('the runner handler ends its container before the build when it cannot be made clean', async () => {
      const result = await inContainer({ asNobody: true, unkillable: true, runtime: 'handler' });
      expect(result.handler?.exited).toBe(75);
      expect(result.handler?.state).toBeUndefined();
      expect(result.handler?.log.join('\n')).toMatch(
        /NOT CLEAN: process \d+ \(sleep, uid 0\)[^]*ending this container \(exit 75\)/,
      );
    }, 60_000);

    it('reports the container not clean when a process it may not signal is left (root, swept as nobody)', async () => {
      const result = await inContainer({ asNobody: true, unkillable: true });
      if (!result.report) throw new Error('no sweep report');
      expect(result.report.clean).toBe(false);
      expect(result.report.remainingProcesses).toEqual([
        expect.objectContaining({ command: 'sleep', uid: 0 }),
      ]);
      expect(result.report.problems.join('\n')).toMatch(
        /process \d+ \(sleep, uid 0\) is still running: not permitted to signal it/,
      );
      // Everything it could do it did: the other leftovers are gone and the tmp root is empty.
      expect(result.after).toEqual([expect.stringMatching(/^\d+ sleep 0$/)]);
      expect(result.tmpLeft).toEqual([]);
    }, 60_000);

    it('reports a tmp root it cannot empty (a file of root in a folder of root)', async () => {
      const tmpRoot = join(scratch, 'root-owned');
      mkdirSync(join(tmpRoot, 'closed'), { recursive: true });
      writeFileSync(join(tmpRoot, 'closed', 'file'), 'root');
      chmodSync(scratch, 0o755);
      chmodSync(tmpRoot, 0o777);
      // As nobody, in a process of its own: emptyFolder alone (no process is signalled).
      await build({
        stdin: {
          contents:
            `import { emptyFolder } from ${JSON.stringify(join(REPO_ROOT, 'src/runner/container-hygiene.ts'))};\n` +
            `const result = await emptyFolder(process.argv[2]);\nconsole.log(JSON.stringify(result));`,
          resolveDir: REPO_ROOT,
          loader: 'ts',
        },
        bundle: true,
        platform: 'node',
        format: 'esm',
        target: 'node20',
        outfile: join(scratch, 'empty.mjs'),
        logLevel: 'error',
      });
      chmodSync(join(scratch, 'empty.mjs'), 0o644);
      const { stdout } = await run(process.execPath, [join(scratch, 'empty.mjs'), tmpRoot], {
        uid: NOBODY.uid,
        gid: NOBODY.gid,
        cwd: '/',
      });
      const result = JSON.parse(stdout) as { removed: string[]; problems: string[] };
      expect(result.removed).toEqual([]);
      expect(result.problems.join('\n')).toMatch(/could not remove .*closed/);
    }, 30_000);
  }
});

describe('emptying a tmp root', () => {
  it('keeps the names it is told to keep, and makes a missing tmp root again', async () => {
    const root = mkdtempSync(join(tmpdir(), 'lambkin-empty-'));
    try {
      mkdirSync(join(root, 'cache'));
      writeFileSync(join(root, 'cache', 'x'), 'kept');
      writeFileSync(join(root, 'y'), 'removed');
      expect(await emptyFolder(root, ['cache'])).toEqual({ removed: ['y'], problems: [] });
      rmSync(root, { recursive: true });
      expect(await emptyFolder(root)).toEqual({ removed: [], problems: [] });
      expect((await listProcesses()).length).toBeGreaterThan(0);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('when the hygiene runs', () => {
  const lambdaEnv = (taskRoot: string) => ({
    LAMBKIN_CONTAINER_HYGIENE: '1',
    AWS_LAMBDA_FUNCTION_NAME: 'lambkin-RunnerFunction-1A2B3C',
    AWS_LAMBDA_RUNTIME_API: '127.0.0.1:9001',
    LAMBDA_TASK_ROOT: taskRoot,
  });

  /** A /proc of a container: pid 1 `comm`, the runtime as its child (or deeper). */
  function fakeProc(init: string, chain: number[]): string {
    const root = mkdtempSync(join(tmpdir(), 'lambkin-fake-proc-'));
    const entry = (pid: number, ppid: number, comm: string) => {
      mkdirSync(join(root, String(pid)));
      writeFileSync(join(root, String(pid), 'stat'), `${pid} (${comm}) S ${ppid} ${pid} ${pid} 0`);
      writeFileSync(join(root, String(pid), 'status'), `Name:\t${comm}\nUid:\t993\t993\t993\t993\n`);
    };
    entry(1, 0, init);
    chain.forEach((pid, index) => entry(pid, index === 0 ? 1 : (chain[index - 1] ?? 1), `p${pid}`));
    return root;
  }

  it('is off unless LAMBKIN_CONTAINER_HYGIENE=1', async () => {
    expect(await containerHygieneMode({})).toEqual({ kind: 'off' });
    expect(await containerHygieneMode({ LAMBKIN_CONTAINER_HYGIENE: '0' })).toEqual({ kind: 'off' });
    expect(await containerHygieneMode({ LAMBKIN_CONTAINER_HYGIENE: 'yes' })).toMatchObject({
      kind: 'refused',
    });
  });

  it('never runs here: asked for on this machine (even with the Lambda variables), it is refused', async () => {
    expect(await containerHygieneMode({ LAMBKIN_CONTAINER_HYGIENE: '1' })).toMatchObject({
      kind: 'refused',
      reason: expect.stringMatching(
        /AWS_LAMBDA_FUNCTION_NAME, AWS_LAMBDA_RUNTIME_API, LAMBDA_TASK_ROOT not set/,
      ),
    });
    // A jest worker is far below pid 1 (a shell, npm, jest): not a container of its own.
    expect(await containerHygieneMode(lambdaEnv(REPO_ROOT))).toMatchObject({ kind: 'refused' });
    expect(await containerHygieneMode(lambdaEnv('/var/task-missing'))).toMatchObject({
      kind: 'refused',
      reason: expect.stringContaining('LAMBDA_TASK_ROOT'),
    });
  });

  it("is on in a Lambda container: init's child, or grandchild through the bootstrap; not under systemd", async () => {
    const child = fakeProc('init', [8]);
    const grandchild = fakeProc('init', [7, 8]);
    const deeper = fakeProc('init', [6, 7, 8]);
    const host = fakeProc('systemd', [8]);
    try {
      expect(await containerHygieneMode(lambdaEnv(REPO_ROOT), 8, child)).toEqual({ kind: 'on' });
      expect(await containerHygieneMode(lambdaEnv(REPO_ROOT), 8, grandchild)).toEqual({ kind: 'on' });
      expect(await containerHygieneMode(lambdaEnv(REPO_ROOT), 8, deeper)).toMatchObject({ kind: 'refused' });
      expect(await containerHygieneMode(lambdaEnv(REPO_ROOT), 8, host)).toMatchObject({
        kind: 'refused',
        reason: expect.stringContaining('systemd'),
      });
      // What the sweep keeps: the runtime, its ancestors and pid 1.
      expect([...(await containerRuntimePids(8, grandchild))].sort()).toEqual([1, 7, 8]);
    } finally {
      for (const root of [child, grandchild, deeper, host]) rmSync(root, { recursive: true, force: true });
    }
  });
});
