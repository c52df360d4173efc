/**
 * The runner program the local stack starts (src/controller/runner-program.ts): one self-contained file
 * in a folder every user can read and nobody else can change, runnable from any working folder.
 */
import { execFile } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  checkRunnableByOthers,
  RunnerProgramError,
  runnerProgram,
} from '../../src/controller/runner-program.js';
import { itAsRoot } from '../support/tools.js';
import { RUNNER_NODE_OPTIONS } from '../../src/core/protocol.js';

/** Starts the program with `input` on stdin; resolves with its exit code and stderr. */
function startProgram(
  command: readonly string[],
  options: { cwd: string; uid?: number; gid?: number },
  input = 'not json',
): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      command[0] ?? '',
      command.slice(1),
      { ...options, env: { PATH: process.env.PATH ?? '' }, timeout: 20_000 },
      (error, _stdout, stderr) =>
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, stderr }),
    );
    child.stdin?.end(input);
  });
}
const NOBODY = 65534;

const folders: string[] = [];
afterAll(() => folders.forEach((folder) => rmSync(folder, { recursive: true, force: true })));

function closedFolder(): string {
  const dir = mkdtempSync(join(tmpdir(), 'lambkin-closed-'));
  folders.push(dir);
  chmodSync(dir, 0o700);
  return dir;
}

describe('the runner program', () => {
  it('is one read-only file in a folder others may enter but not change, prepared once', async () => {
    const program = await runnerProgram();
    expect(program.command).toEqual([process.execPath, RUNNER_NODE_OPTIONS, program.file]);
    expect(program.file).toBe(join(program.dir, 'runner.mjs'));
    const folder = statSync(program.dir);
    expect(folder.uid).toBe(process.getuid?.());
    expect(folder.mode & 0o777).toBe(0o755);
    expect(statSync(program.file).mode & 0o777).toBe(0o444);
    expect(await runnerProgram()).toBe(program);
    await expect(checkRunnableByOthers(program)).resolves.toBeUndefined();
  });

  it('imports nothing from where Lambkin lives: it runs from / with only PATH in its environment', async () => {
    const { command } = await runnerProgram();
    // An input that is not JSON: the runner's own code must load to fail on it, not a missing module.
    const result = await startProgram(command, { cwd: '/' });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/SyntaxError: .*JSON/);
    expect(result.stderr).not.toMatch(/ERR_MODULE_NOT_FOUND|Cannot find/);
  });

  itAsRoot('runs as the unprivileged build user (root drops to nobody)', async () => {
    const program = await runnerProgram();
    const result = await startProgram(program.command, { cwd: program.dir, uid: NOBODY, gid: NOBODY });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/SyntaxError: .*JSON/);
    expect(result.stderr).not.toMatch(/EACCES|ERR_MODULE_NOT_FOUND/);
  });

  it('refuses, naming the folder, a program or a Node.js that other users cannot reach', async () => {
    const closed = closedFolder();
    const inner = join(closed, 'inner');
    mkdirSync(inner, { mode: 0o755 });
    const file = join(inner, 'runner.mjs');
    copyFileSync((await runnerProgram()).file, file);
    chmodSync(file, 0o444);
    const closedProgram = { command: [process.execPath, file], file, dir: inner };
    await expect(checkRunnableByOthers(closedProgram)).rejects.toThrow(RunnerProgramError);
    await expect(checkRunnableByOthers(closedProgram)).rejects.toThrow(`${closed} is closed to other users`);

    const node = join(closed, 'node');
    copyFileSync(process.execPath, node);
    chmodSync(node, 0o755);
    const program = await runnerProgram();
    const closedNode = { command: [node, program.file], file: program.file, dir: inner };
    await expect(checkRunnableByOthers(closedNode)).rejects.toThrow(
      /install Node\.js where every user can run it/,
    );
  });
});
