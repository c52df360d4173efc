/**
 * Running `lambkin` in tests: in this process (runCli with captured output) or as a real child
 * process (`bin/lambkin.js`), against a local stack file or LAMBKIN_* variables.
 */
import { execFile, execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { COMMANDS } from '../../src/cli/commands/index.js';
import { createCliContext, runCli, type CliContextOptions } from '../../src/cli/program.js';
import { STACK_FILE_NAME, type StackFile } from '../../src/local/stack-file.js';
import type { BuildRequest } from '../../src/core/build.js';
import type { TestStorage } from '../support/storage.js';
import type { GitFiles } from '../support/github-server.js';
import { passingProject } from '../support/npm-projects.js';
import { LAMBKIN_BIN, OUTSIDE_CHECKOUT } from '../support/dev-process.js';

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

export type InProcessOptions = Partial<Omit<CliContextOptions, 'stdout' | 'stderr'>>;

/** Runs the CLI in this process; its environment is only what `options.env` holds. */
export async function runInProcess(argv: string[], options: InProcessOptions = {}): Promise<CliRun> {
  let stdout = '';
  let stderr = '';
  const context = createCliContext({
    env: {},
    pollIntervalMs: 20,
    ...options,
    stdout: { write: (text) => void (stdout += text) },
    stderr: { write: (text) => void (stderr += text) },
  });
  const code = await runCli(argv, context, COMMANDS);
  return { code, stdout, stderr };
}

/**
 * Only a hang ends a child this early: a whole `lambkin run` takes 4 s alone but over 20 s on a
 * 2-core CI machine while other suites build too (speed is the bench's to measure, not a test's).
 */
export const CHILD_TIMEOUT_MS = 90_000;
/** For a test that runs `lambkin` `runs` times: each may take up to CHILD_TIMEOUT_MS. */
export const childTestTimeout = (runs = 1): number => runs * CHILD_TIMEOUT_MS + 10_000;

/**
 * Runs `lambkin` (this checkout's bin/lambkin.js) as a child process with exactly `env` (plus PATH
 * and HOME), by default in a folder outside the checkout, as a user runs it in their own project.
 */
export function runProcess(argv: string[], env: Record<string, string>, cwd?: string): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [LAMBKIN_BIN, ...argv],
      {
        cwd: cwd ?? OUTSIDE_CHECKOUT,
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
        timeout: CHILD_TIMEOUT_MS,
        maxBuffer: 1 << 22,
      },
      (error, stdout, stderr) => {
        if (error && typeof error.code !== 'number') {
          const killed = error.killed ? ` (killed after ${CHILD_TIMEOUT_MS / 1000} s)` : '';
          reject(new Error(`lambkin ${argv.join(' ')} did not finish${killed}: ${error.message}\n${stderr}`));
          return;
        }
        resolve({ code: typeof error?.code === 'number' ? error.code : 0, stdout, stderr });
      },
    );
  });
}

/** A data directory holding a stack file for the test storage, "written" by process `pid`. */
export function writeLocalStack(
  storage: TestStorage,
  options: { pid?: number; lambda?: string; publicUrl?: string; dir?: string } = {},
): string {
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'lambkin-cli-'));
  const stack: StackFile = {
    version: 1,
    pid: options.pid ?? process.pid,
    endpoints: {
      webhook: 'http://127.0.0.1:9/webhook',
      dynamodb: storage.backend.dynamodbEndpoint,
      s3: storage.backend.s3Endpoint,
      // Port 9 (discard) refuses connections: fine for commands that never invoke the builder.
      lambda: options.lambda ?? 'http://127.0.0.1:9',
      logs: 'http://127.0.0.1:9/builds',
    },
    tables: { builds: storage.buildsTable, settings: storage.settingsTable },
    bucket: storage.bucket,
    builderFunction: 'lambkin-builder',
    publicUrl: options.publicUrl ?? 'http://127.0.0.1:9',
    region: 'us-east-1',
    // The test storage takes any key; a real stack's proxies take only the one it wrote here.
    credentials: { accessKeyId: 'lambkin-local', secretAccessKey: 'test-stack-key' },
  };
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, STACK_FILE_NAME), JSON.stringify(stack, null, 2));
  return dir;
}

/** LAMBKIN_* and AWS_* variables for the test storage, as a deployed stack's CLI user sets them. */
export function stackEnvironment(
  storage: TestStorage,
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    AWS_ACCESS_KEY_ID: 'test-access-key',
    AWS_SECRET_ACCESS_KEY: 'test-secret-key',
    AWS_REGION: 'us-east-1',
    AWS_ENDPOINT_URL_DYNAMODB: storage.backend.dynamodbEndpoint,
    AWS_ENDPOINT_URL_S3: storage.backend.s3Endpoint,
    LAMBKIN_BUILDS_TABLE: storage.buildsTable,
    LAMBKIN_SETTINGS_TABLE: storage.settingsTable,
    LAMBKIN_BUCKET: storage.bucket,
    ...extra,
  };
}

export function pushRequest(overrides: Partial<BuildRequest> = {}): BuildRequest {
  return {
    repo: 'octo-org/hello-world',
    event: 'push',
    ref: 'refs/heads/main',
    sha: 'a1b2c3d4e5f60718293a4b5c6d7e8f9012345678',
    branch: 'main',
    fork: false,
    privateRepo: false,
    trusted: true,
    defaultBranch: 'main',
    author: 'octocat',
    commitTitle: 'Add a greeting',
    htmlUrl: 'https://github.example/octo-org/hello-world/commit/a1b2c3d',
    deliveryId: 'delivery-1',
    ...overrides,
  };
}

/** Error output is one line: exactly one newline, at the end. */
export function expectOneLine(text: string): void {
  expect(text.endsWith('\n')).toBe(true);
  expect(text.trimEnd().includes('\n')).toBe(false);
}

/** Writes `files` into `dir` (made if missing). */
export function writeProject(dir: string, files: GitFiles): string {
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(dir, path, '..'), { recursive: true });
    writeFileSync(join(dir, path), typeof content === 'string' ? content : '');
  }
  return dir;
}

/** A project whose test step says which user ran it. */
export function whoAmIProject(): GitFiles {
  return {
    ...passingProject(),
    '.lambkin.json': JSON.stringify({ test: 'echo "step uid=$(id -u)" && npm test' }),
  };
}

export interface BinRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a `lambkin` executable (a checkout's bin/lambkin.js or an installed one) as a process, with
 * HOME set to its working folder, optionally as another user.
 */
export function runLambkinBin(
  bin: string,
  argv: string[],
  options: { cwd: string; env?: Record<string, string>; uid?: number; gid?: number },
): Promise<BinRun> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [bin, ...argv],
      {
        cwd: options.cwd,
        env: { PATH: process.env.PATH ?? '', HOME: options.cwd, ...options.env },
        timeout: CHILD_TIMEOUT_MS,
        maxBuffer: 1 << 24,
        ...(options.uid === undefined ? {} : { uid: options.uid, gid: options.gid ?? options.uid }),
      },
      (error, stdout, stderr) =>
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout, stderr }),
    );
  });
}

/**
 * A copy of this checkout's sources inside `home`, so that everything Lambkin loads from its own
 * folder sits under `home`. Its node_modules holds the same files as this one's, as `npm ci` there
 * would install: linked (symbolic) for root, hard-linked for another user, who may not be able to
 * enter the folder this checkout is in (a CI clone may sit in a root user's 0700 home).
 */
export function checkoutInto(home: string, modules: 'symlink' | 'hardlink'): string {
  const checkout = join(home, 'lambkin');
  mkdirSync(checkout, { mode: 0o755 });
  for (const entry of ['package.json', 'bin', 'src', 'scripts', 'examples']) {
    cpSync(join(process.cwd(), entry), join(checkout, entry), { recursive: true });
  }
  if (modules === 'symlink') symlinkSync(join(process.cwd(), 'node_modules'), join(checkout, 'node_modules'));
  else execFileSync('cp', ['-al', join(process.cwd(), 'node_modules'), join(checkout, 'node_modules')]);
  return checkout;
}
