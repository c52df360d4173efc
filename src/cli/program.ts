/**
 * The `lambkin` command line: a registry of command modules on one commander program. Each module
 * adds its command(s) to the program; `runCli` parses, runs, and turns any error into one line on
 * stderr and an exit code (0 ok, 1 user error or not found, 2 usage error).
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import type { Logger } from '../core/logger.js';
import { normalizeLocalOption } from './arguments.js';
import { EXIT_OK, debugDetails, reportFor } from './cli-errors.js';
import type { OutputStream } from './output.js';
import { openStack, type Stack, type StackNeed, type StackOptions } from './stack.js';

/** What a command gets from the process: streams, environment, time, and the way to its stack. */
export interface CliContext {
  readonly stdout: OutputStream;
  readonly stderr: OutputStream;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Relative paths (`--local .lambkin`) are resolved against this. */
  readonly cwd: string;
  now(): number;
  sleep(ms: number): Promise<void>;
  /** Between two reads of `logs --follow`. */
  readonly pollIntervalMs: number;
  /** How long `logs --follow` waits for the final log of a build that ended while it ran elsewhere. */
  readonly finalLogGraceMs: number;
  /** Opens the stack the options name (checking that it has what `needs` lists). */
  openStack(options: StackOptions, needs: readonly StackNeed[]): Promise<Stack>;
}

/**
 * One command (or group of commands) of the CLI. `register` adds it to the program with
 * `program.command(name)`, which keeps the program's output and error settings; its action throws
 * a LambkinError (src/cli/cli-errors.ts `CliError` for a chosen exit code) to fail.
 */
export interface CommandModule {
  readonly name: string;
  register(program: Command, context: CliContext): void;
}

export interface CliContextOptions {
  stdout: OutputStream;
  stderr: OutputStream;
  env?: Record<string, string | undefined>;
  cwd?: string;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
  pollIntervalMs?: number;
  finalLogGraceMs?: number;
}

export const DEFAULT_POLL_INTERVAL_MS = 1000;
export const DEFAULT_FINAL_LOG_GRACE_MS = 15_000;

export function createCliContext(options: CliContextOptions): CliContext {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const logger = stderrLogger(options.stderr);
  return {
    stdout: options.stdout,
    stderr: options.stderr,
    env,
    cwd,
    now: options.now ?? Date.now,
    sleep: options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms))),
    pollIntervalMs: options.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS,
    finalLogGraceMs: options.finalLogGraceMs ?? DEFAULT_FINAL_LOG_GRACE_MS,
    openStack: (stackOptions, needs) => openStack(stackOptions, needs, { env, cwd, logger }),
  };
}

/** Opens the stack for the duration of `use`, and closes its connections after. */
export async function withStack<T>(
  context: CliContext,
  options: StackOptions,
  needs: readonly StackNeed[],
  use: (stack: Stack) => Promise<T>,
): Promise<T> {
  const stack = await context.openStack(options, needs);
  try {
    return await use(stack);
  } finally {
    stack.close();
  }
}

const ROOT_HELP = `
Exit codes: 0 done; 1 failed (not found, refused, not configured); 2 bad usage.
Set LAMBKIN_DEBUG=1 to see the stack trace of an error.`;

export function createProgram(modules: readonly CommandModule[], context: CliContext): Command {
  const program = new Command('lambkin')
    .description('Serverless CI for GitHub: manage builds and settings of a Lambkin stack.')
    .version(packageVersion(), '-V, --version', 'print the version')
    .helpOption('-h, --help', 'print help')
    .helpCommand('help [command]', 'print help for a command')
    .exitOverride()
    .configureOutput({
      writeOut: (text) => context.stdout.write(text),
      writeErr: (text) => context.stderr.write(text),
      // One line, like every other error (commander adds suggestions on a second line).
      outputError: (text, write) =>
        write(
          `${text
            .trim()
            .replace(/^error: /, 'lambkin: ')
            .replace(/\s*\n\s*/g, ' ')}\n`,
        ),
    })
    .addHelpText('after', ROOT_HELP);
  const names = new Set<string>();
  for (const module of modules) {
    if (names.has(module.name)) throw new Error(`two command modules are named "${module.name}"`);
    names.add(module.name);
    module.register(program, context);
  }
  return program;
}

/** Runs the CLI on `argv` (without node and the script) and returns the exit code. */
export async function runCli(
  argv: readonly string[],
  context: CliContext,
  modules: readonly CommandModule[],
): Promise<number> {
  try {
    const program = createProgram(modules, context);
    await program.parseAsync(normalizeLocalOption(argv, context.cwd), { from: 'user' });
    return EXIT_OK;
  } catch (error) {
    const report = reportFor(error);
    if (report.line) context.stderr.write(`lambkin: ${report.line}\n`);
    if (context.env.LAMBKIN_DEBUG === '1' && !(error instanceof CommanderError)) {
      context.stderr.write(`${debugDetails(error)}\n`);
    }
    return report.exitCode;
  }
}

/** Warnings of the clients (rate limit waits) for a person: one line each on stderr. */
function stderrLogger(stderr: OutputStream): Logger {
  const write = (prefix: string) => (message: string) => stderr.write(`lambkin: ${prefix}${message}\n`);
  return { info: () => undefined, warn: write('warning: '), error: write('') };
}

/** The version in the package.json above this file (src/cli or dist/src/cli). */
function packageVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let depth = 0; depth < 5; depth++) {
    try {
      const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
        name?: unknown;
        version?: unknown;
      };
      if (manifest.name === 'lambkin' && typeof manifest.version === 'string') return manifest.version;
    } catch {
      // not here: look one folder up
    }
    dir = dirname(dir);
  }
  return 'unknown';
}
