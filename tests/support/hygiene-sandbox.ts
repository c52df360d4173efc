/**
 * A stand-in for a runner function's container, for tests/runner/container-hygiene.test.ts: run as
 * pid 1 of a PID namespace of its own (`unshare --pid --fork --mount-proc`), bundled with esbuild so
 * that `nobody` can run it. As `init` it plays Lambda's init: it starts a hostile build's leftovers
 * (as nobody when it is root), optionally a process of its own that nobody may not signal, then the
 * runtime, `sweep` (as nobody when it is root), which sweeps the container as the runner does and
 * prints its report. Then it looks for itself and prints one JSON line. When it exits, the kernel
 * kills whatever is left in the namespace.
 *
 * argv: <init|sweep> <JSON of SandboxConfig>
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import type { RunnerInput } from '../../src/core/protocol.js';
import { createRunnerHandler } from '../../src/handlers/runner.js';
import { containerRuntimePids, listProcesses, sweepContainer } from '../../src/runner/container-hygiene.js';

export interface SandboxConfig {
  /** The folder to empty (the container's /tmp). */
  tmpRoot: string;
  /** A folder outside it, with a file `keep-me` the hostile build links to. */
  outside: string;
  /** Start a process the sweeper may not signal (a root process; the sweeper runs as nobody). */
  unkillable: boolean;
  /** Run the hostile build and the sweeper as this uid/gid (when root). */
  user?: { uid: number; gid: number };
  /**
   * `sweep`: the runtime sweeps (sweepContainer). `handler`: the runtime is the runner function's
   * handler with the hygiene on, given a build whose archive cannot be fetched (it ends `error`).
   */
  runtime?: 'sweep' | 'handler';
}

/** What the runner handler did in the `handler` runtime. */
export interface HandlerResult {
  /** The status it ended its container with, if it did. */
  exited?: number;
  /** The state of the outcome it answered with, if it answered. */
  state?: string;
  log: string[];
}

export interface SandboxResult {
  /** Processes other than pid 1 before the sweep, as `pid command uid`. */
  before: string[];
  report?: Awaited<ReturnType<typeof sweepContainer>>;
  handler?: HandlerResult;
  /** Processes other than pid 1 (not zombies) after the sweep. */
  after: string[];
  tmpLeft: string[];
  outsideIntact: boolean;
}

/** A build's leftovers: processes that outlive it every way they can, and files of every kind. */
const HOSTILE_BUILD = `
set -e
T="$1"; OUTSIDE="$2"
mkdir -p "$T/a/b/c"; echo x > "$T/a/b/c/f"
mkdir -p "$T/ro/sub"; echo y > "$T/ro/file"; echo z > "$T/ro/sub/g"; chmod 500 "$T/ro/sub" "$T/ro"
echo r > "$T/readonly-file"; chmod 400 "$T/readonly-file"
chmod 000 "$T/a"
ln -s "$OUTSIDE/keep-me" "$T/link-to-file"
ln -s "$OUTSIDE" "$T/link-to-folder"
mkdir "$T/folder-with-link"; ln -s "$OUTSIDE" "$T/folder-with-link/inner"
mkfifo "$T/fifo"
touch "$T/.hidden" "$T/name with
newline"
setsid sleep 1001 </dev/null >/dev/null 2>&1 &
( sleep 1002 </dev/null >/dev/null 2>&1 & )
sh -c 'trap "" TERM HUP INT; while :; do sleep 1; done' </dev/null >/dev/null 2>&1 &
sh -c 'while :; do sleep 1003 & sleep 0.02; done' </dev/null >/dev/null 2>&1 &
sleep 1004 </dev/null >/dev/null 2>&1 &
STOPPED=$!
# Stopped once it runs sleep (stopped before its exec, it would still hold this shell's pipes).
sleep 0.2
kill -STOP $STOPPED
sh -c 'while :; do echo x >> "$0/busy-$$"; sleep 0.01; done' "$T" </dev/null >/dev/null 2>&1 &
exit 0
`;

/** A trusted build whose archive and log form are on a closed port: it ends `error` at once. */
function unfetchableBuild(): RunnerInput {
  return {
    kind: 'run',
    build: {
      repo: 'octo/sandboxed',
      event: 'push',
      ref: 'refs/heads/main',
      sha: '0'.repeat(40),
      branch: 'main',
      defaultBranch: 'main',
      fork: false,
      privateRepo: false,
      trusted: true,
      author: 'octocat',
      deliveryId: 'sandbox',
      number: 1,
      queuedAt: Date.now(),
      startedAt: Date.now(),
    },
    source: { archiveUrl: 'http://127.0.0.1:9/archive.tar.gz' },
    settingsConfig: {},
    secretEnv: {},
    logUpload: {
      url: 'http://127.0.0.1:9/',
      fields: {},
      keyPrefix: 'logs/octo/sandboxed/1/',
      maxObjectBytes: 1 << 20,
      expiresAt: Date.now() + 60_000,
    },
    logLimitBytes: 1 << 16,
    deadlineAt: Date.now() + 40_000,
    buildUrl: 'https://ci.example.test/builds/octo/sandboxed/1',
  } as RunnerInput;
}

function run(
  command: string,
  args: string[],
  user: SandboxConfig['user'],
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      cwd: '/',
      ...(user ? { uid: user.uid, gid: user.gid } : {}),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

async function others(): Promise<string[]> {
  return (await listProcesses())
    .filter((entry) => entry.pid !== process.pid && entry.state !== 'Z' && entry.state !== 'X')
    .map((entry) => `${entry.pid} ${entry.command} ${entry.uid}`);
}

async function main(): Promise<void> {
  const [mode, json] = process.argv.slice(2);
  const config = JSON.parse(json ?? '{}') as SandboxConfig;
  if (mode === 'sweep') {
    const report = await sweepContainer({
      tmpRoot: config.tmpRoot,
      keepPids: await containerRuntimePids(),
      timeoutMs: 5000,
    });
    process.stdout.write(JSON.stringify(report) + '\n');
    return;
  }
  if (mode === 'handler') {
    const log: string[] = [];
    const handler = createRunnerHandler({
      trust: 'trusted',
      hygiene: { kind: 'on' },
      tmpRoot: config.tmpRoot,
      workRoot: `${config.tmpRoot}/lambkin`,
      log: (line) => log.push(line),
      exit: (status) => {
        process.stdout.write(JSON.stringify({ exited: status, log } satisfies HandlerResult) + '\n');
        process.exit(status);
      },
    });
    const outcome = await handler(unfetchableBuild());
    process.stdout.write(JSON.stringify({ state: outcome.state, log } satisfies HandlerResult) + '\n');
    return;
  }
  if (process.pid !== 1)
    throw new Error(`the sandbox must be pid 1 of its own PID namespace, not ${process.pid}`);
  const hostile = await run('sh', ['-c', HOSTILE_BUILD, 'sh', config.tmpRoot, config.outside], config.user);
  if (hostile.code !== 0) throw new Error(`the hostile build failed to set up: ${hostile.stderr}`);
  if (config.unkillable) spawn('sleep', ['1005'], { stdio: 'ignore', detached: true }).unref();
  await new Promise((resolve) => setTimeout(resolve, 300));
  const before = await others();
  const runtime = config.runtime ?? 'sweep';
  const sweep = await run(process.execPath, [process.argv[1] ?? '', runtime, json ?? '{}'], config.user);
  const last = sweep.stdout.trim().split('\n').pop() ?? '';
  if (!last.startsWith('{')) throw new Error(`the runtime failed (${sweep.code}): ${sweep.stderr}`);
  const answer = JSON.parse(last) as unknown;
  const result: SandboxResult = {
    before,
    ...(runtime === 'sweep'
      ? { report: answer as SandboxResult['report'] }
      : { handler: answer as HandlerResult }),
    after: await others(),
    tmpLeft: readdirSync(config.tmpRoot),
    outsideIntact: existsSync(`${config.outside}/keep-me`),
  };
  process.stdout.write(JSON.stringify(result) + '\n');
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`${String((error as Error)?.stack ?? error)}\n`);
    process.exit(1);
  },
);
