/**
 * Ctrl-C on `lambkin run`, as a terminal sends it: SIGINT to the command's whole process group
 * (the CLI, its storage servers, the runner; the steps run in a group of their own). The build is
 * cancelled, its step stopped, and nothing of the run is left running once the command has ended.
 */
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { LAMBKIN_BIN } from '../support/dev-process.js';
import { processesRunning } from '../support/processes.js';
import { itAsRoot } from '../support/tools.js';
import { scratchFolders } from '../support/scratch.js';
import { waitFor } from '../support/wait.js';
import { passingProject } from '../support/npm-projects.js';
import { CHILD_TIMEOUT_MS, checkoutInto, childTestTimeout, writeProject } from './helpers.js';

const NOBODY = 65534;
const scratch = scratchFolders();

/** A project whose test step says it started, then runs `marker` (a long sleep) and never ends. */
function hangingProject(dir: string, marker: string): string {
  return writeProject(dir, {
    ...passingProject(),
    '.lambkin.json': JSON.stringify({ test: `echo "step started"; ${marker}; echo "step ended"` }),
  });
}

/** Pids of the processes in process group `group`. */
function processGroup(group: number): number[] {
  const members: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (state !== 'Z' && Number(pgrp) === group) members.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return members;
}

/**
 * Starts `lambkin run` in a process group of its own (as a shell starts a foreground job), sends
 * the group SIGINT once the step has started, and answers how the command ended.
 */
async function interruptedRun(options: {
  bin: string;
  project: string;
  marker: string;
  argv?: string[];
  user?: number;
  /** How the command is interrupted once its step runs; default SIGINT to its whole group (Ctrl-C). */
  interrupt?: (command: number) => void;
}): Promise<{ code: number | null; stdout: string; stderr: string; group: number }> {
  const child = spawn(process.execPath, [options.bin, 'run', '.', ...(options.argv ?? [])], {
    cwd: options.project,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: options.project,
      XDG_CACHE_HOME: join(options.project, '.cache'),
    },
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(options.user === undefined ? {} : { uid: options.user, gid: options.user }),
  });
  const group = child.pid ?? 0;
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  try {
    // The step runs: its own process, found on the host.
    await waitFor(
      () => `the step to start; output so far:\n${stdout}\n${stderr}`,
      async () => ((await processesRunning(options.marker)).length > 0 ? true : undefined),
      CHILD_TIMEOUT_MS,
    );
    (options.interrupt ?? ((command) => process.kill(-command, 'SIGINT')))(group);
    const code = await Promise.race([
      exited,
      new Promise<never>((_, reject) =>
        setTimeout(
          () => reject(new Error(`lambkin run did not end after Ctrl-C:\n${stderr}`)),
          60_000,
        ).unref(),
      ),
    ]);
    return { code, stdout, stderr, group };
  } finally {
    if (child.exitCode === null && child.signalCode === null) process.kill(-group, 'SIGKILL');
  }
}

/** What every interrupted run must show: cancelled, exit 130, the step stopped, nothing left. */
async function expectCancelledAndGone(
  run: { code: number | null; stderr: string; group: number },
  marker: string,
): Promise<void> {
  expect(run.code).toBe(130);
  expect(run.stderr).toContain('lambkin: interrupted (Ctrl-C): cancelling the build');
  expect(run.stderr.trimEnd().split('\n').at(-1)).toBe('lambkin: build cancelled: interrupted (Ctrl-C)');
  // Its storage servers answered to the end (they ignore the terminal's SIGINT; the CLI stops them).
  expect(run.stderr).not.toMatch(/could not|ECONNREFUSED/);
  expect(await processesRunning(marker)).toEqual([]);
  expect(processGroup(run.group)).toEqual([]);
}

describe('Ctrl-C on lambkin run', () => {
  it(
    'cancels the build, stops its step and leaves no process of the run behind',
    async () => {
      const marker = `sleep ${37_400 + (process.pid % 100)}`;
      const project = hangingProject(scratch('lambkin-interrupt-'), marker);
      const run = await interruptedRun({ bin: LAMBKIN_BIN, project, marker });
      const lines = run.stdout.split('\n');
      expect(lines).toContain('step started');
      expect(run.stdout).toContain('The build was stopped: cancelled: interrupted (Ctrl-C)');
      expect(lines).not.toContain('step ended');
      // The runner's own summary: the step was stopped, not failed.
      expect(run.stdout).toContain('test was stopped: the runner was told to stop');
      expect(run.stdout).not.toContain('build failed');
      await expectCancelledAndGone(run, marker);
    },
    childTestTimeout(),
  );

  it(
    'killed outright (SIGKILL, or a second Ctrl-C), leaves no step running: the runner stops on its own',
    async () => {
      const marker = `sleep ${40_400 + (process.pid % 100)}`;
      const project = hangingProject(scratch('lambkin-killed-'), marker);
      const run = await interruptedRun({
        bin: LAMBKIN_BIN,
        project,
        marker,
        interrupt: (command) => process.kill(command, 'SIGKILL'),
      });
      expect(run.code).toBeNull();
      // Nothing is left to stop the step but the runner itself: its storage is gone with the
      // command (the servers end when their parent does), so its log uploads fail and it stops.
      await waitFor(
        'the step to be stopped',
        async () => ((await processesRunning(marker)).length === 0 ? true : undefined),
        30_000,
      );
      await waitFor(
        'the runner to end',
        () => (processGroup(run.group).length === 0 ? true : undefined),
        30_000,
      );
    },
    childTestTimeout(),
  );

  itAsRoot(
    'does the same for a user who is not root (no sandbox: the runner is in the terminal’s group), and --json prints the cancelled summary',
    async () => {
      const shared = scratch('lambkin-interrupt-shared-');
      chmodSync(shared, 0o755);
      const checkout = checkoutInto(shared, 'hardlink');
      const home = scratch('lambkin-interrupt-home-');
      const marker = `sleep ${38_400 + (process.pid % 100)}`;
      const project = hangingProject(join(home, 'my-app'), marker);
      execFileSync('chown', ['-R', `${NOBODY}:${NOBODY}`, home]);
      const run = await interruptedRun({
        bin: join(checkout, 'bin', 'lambkin.js'),
        project,
        marker,
        argv: ['--json'],
        user: NOBODY,
      });
      expect(JSON.parse(run.stdout)).toMatchObject({
        state: 'cancelled',
        description: 'interrupted (Ctrl-C)',
      });
      expect(run.stderr.split('\n')).not.toContain('step ended');
      await expectCancelledAndGone(run, marker);
    },
    childTestTimeout(2),
  );
});
