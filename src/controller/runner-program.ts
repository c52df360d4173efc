/**
 * The program a local stack starts as the runner process: the runner and everything it imports in
 * one self-contained ES module (as the Lambda runner bundle), copied into a fresh folder that every
 * user can read and only this process's user can change.
 *
 * Why a copy: started as root, the local stack runs the runner as an unprivileged user, who cannot
 * read a root user's `0700` home where Lambkin may be installed or checked out; and a runner loaded
 * through the user's current folder (`node --import tsx`) fails wherever that folder has no tsx.
 * The copy depends on neither. Installed, the program is `dist/cli/runner.mjs` beside the CLI; in a
 * checkout it is bundled from the sources once per process (esbuild, a development dependency).
 */
import { constants as fs, rmSync } from 'node:fs';
import { chmod, mkdtemp, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, parse, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { LambkinError, messageOf } from '../core/errors.js';
import { RUNNER_NODE_OPTIONS } from '../core/protocol.js';

export interface RunnerProgram {
  /** The command that starts the runner: this Node.js, RUNNER_NODE_OPTIONS and the program file. */
  readonly command: readonly string[];
  /** The program file (the runner bundle). */
  readonly file: string;
  /** The folder that holds the program: a working folder any runner user can enter. */
  readonly dir: string;
}

/** The runner program could not be prepared, or the runner's user could not run it. */
export class RunnerProgramError extends LambkinError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('RUNNER_PROGRAM', message, options);
  }
}

/** The name of the program beside the built CLI (scripts/build.mjs writes it). */
const BUILT_PROGRAM = 'runner.mjs';

let prepared: Promise<RunnerProgram> | undefined;

/** The runner program of this process: prepared on first use, removed when the process exits. */
export function runnerProgram(): Promise<RunnerProgram> {
  prepared ??= prepareRunnerProgram().catch((error: unknown) => {
    prepared = undefined; // a later build may try again (e.g. after `npm ci`)
    throw error;
  });
  return prepared;
}

async function prepareRunnerProgram(): Promise<RunnerProgram> {
  const code = await programCode();
  const dir = await mkdtemp(join(await sharedTempRoot(), 'lambkin-runner-program-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'runner.mjs');
  await writeFile(file, code, { mode: 0o444 });
  // mkdtemp makes the folder 0700: open it for reading, never for writing, so no build (whatever
  // user it runs as) can change the program the next build runs.
  await chmod(dir, 0o755);
  return { command: [process.execPath, RUNNER_NODE_OPTIONS, file], file, dir };
}

/** Where the source files live when this module runs from them (a checkout), else undefined. */
function checkoutRoot(): string | undefined {
  const self = fileURLToPath(import.meta.url);
  return self.endsWith('.ts') ? resolve(dirname(self), '..', '..') : undefined;
}

async function programCode(): Promise<Uint8Array> {
  const root = checkoutRoot();
  if (!root) {
    // Built: this code is inside dist/cli/lambkin.mjs, and the program is beside it.
    const built = join(dirname(fileURLToPath(import.meta.url)), BUILT_PROGRAM);
    try {
      return await readFile(built);
    } catch (error) {
      throw new RunnerProgramError(
        `The runner program ${built} is missing: reinstall Lambkin, or run \`npm run build\` in its checkout.`,
        { cause: error },
      );
    }
  }
  // A path built at run time: the cloud bundles, which never run this branch, must not take
  // esbuild in through a static import.
  const script = pathToFileURL(join(root, 'scripts', 'build.mjs')).href;
  try {
    const build = (await import(script)) as { bundleRunnerProgram(): Promise<Uint8Array> };
    return await build.bundleRunnerProgram();
  } catch (error) {
    throw new RunnerProgramError(
      `Could not bundle the runner from ${root}/src (${messageOf(error)}). ` +
        'A checkout builds it with its development dependencies: run `npm ci` there.',
      { cause: error },
    );
  }
}

/** The system's temporary folder if every user can reach it (TMPDIR may be a private one), else /tmp. */
async function sharedTempRoot(): Promise<string> {
  const candidate = tmpdir();
  return (await unreachableFolder(candidate)) === undefined ? candidate : '/tmp';
}

/**
 * Checks that a user other than this process's can start the runner: enter every folder above the
 * program and Node.js, read the program and run Node.js. Throws RunnerProgramError naming what is
 * closed. Judged by the "others" permission bits, which is what an unprivileged user gets.
 */
export async function checkRunnableByOthers(program: RunnerProgram): Promise<void> {
  const [node] = program.command;
  for (const [path, need, what] of [
    [node, fs.S_IXOTH, 'run'],
    [program.file, fs.S_IROTH, 'read'],
  ] as const) {
    if (!path) continue;
    const closed = await unreachableFolder(dirname(path));
    const mode = (await stat(path).catch(() => undefined))?.mode ?? 0;
    if (closed !== undefined || (mode & need) === 0) {
      throw new RunnerProgramError(
        `The build user cannot ${what} ${path}` +
          (closed !== undefined ? ` (${closed} is closed to other users)` : '') +
          (path === node
            ? ': install Node.js where every user can run it (e.g. /usr/local), or run Lambkin as a user other than root.'
            : '.'),
      );
    }
  }
}

/** The first folder from the root down to `dir` that other users cannot enter; undefined if none. */
async function unreachableFolder(dir: string): Promise<string | undefined> {
  const absolute = resolve(dir);
  const { root } = parse(absolute);
  const parts = absolute.slice(root.length).split('/').filter(Boolean);
  let current = root;
  for (const part of ['', ...parts]) {
    current = part ? join(current, part) : current;
    const mode = (await stat(current).catch(() => undefined))?.mode;
    if (mode === undefined || (mode & fs.S_IXOTH) === 0) return current;
  }
  return undefined;
}
