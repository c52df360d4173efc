/**
 * A newcomer's first commands, run as users run them: `lambkin run .` inside their own project,
 * Lambkin itself checked out into a root user's `0700` home, and Lambkin run by a user who is not
 * root. Each starts the real `bin/lambkin.js` as a process.
 */
import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { passingProject } from '../support/npm-projects.js';
import type { GitFiles } from '../support/github-server.js';
import { LAMBKIN_BIN } from '../support/dev-process.js';
import { isCI } from '../support/tools.js';

const ROOT = process.cwd();
const asRoot = process.getuid?.() === 0;
const NOBODY = 65534;
const folders: string[] = [];
afterAll(() => folders.forEach((folder) => rmSync(folder, { recursive: true, force: true })));

function scratch(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  folders.push(dir);
  return dir;
}

function writeProject(dir: string, files: GitFiles): string {
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(dir, path, '..'), { recursive: true });
    writeFileSync(join(dir, path), typeof content === 'string' ? content : '');
  }
  return dir;
}

/** A project whose test step says which user ran it. */
function whoAmIProject(): GitFiles {
  return {
    ...passingProject(),
    '.lambkin.json': JSON.stringify({ test: 'echo "step uid=$(id -u)" && npm test' }),
  };
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function lambkin(
  bin: string,
  argv: string[],
  options: { cwd: string; env?: Record<string, string>; uid?: number; gid?: number },
): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [bin, ...argv],
      {
        cwd: options.cwd,
        env: { PATH: process.env.PATH ?? '', HOME: options.cwd, ...options.env },
        timeout: 90_000,
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
function checkoutInto(home: string, modules: 'symlink' | 'hardlink'): string {
  const checkout = join(home, 'lambkin');
  mkdirSync(checkout, { mode: 0o755 });
  for (const entry of ['package.json', 'bin', 'src', 'scripts', 'examples']) {
    cpSync(join(ROOT, entry), join(checkout, entry), { recursive: true });
  }
  if (modules === 'symlink') symlinkSync(join(ROOT, 'node_modules'), join(checkout, 'node_modules'));
  else execFileSync('cp', ['-al', join(ROOT, 'node_modules'), join(checkout, 'node_modules')]);
  return checkout;
}

/** Root-only: CI runs as root, so a missing precondition there is a failure, not a skip. */
const rootOnly = (name: string, fn: () => Promise<void>, timeout: number): void => {
  if (asRoot) it(name, fn, timeout);
  else if (isCI()) it(name, () => Promise.reject(new Error('CI=true but not root: run CI as root')));
  else it.skip(`${name} (needs root)`, fn);
};

describe('lambkin from any folder', () => {
  it('`lambkin run .` inside the user’s own project, outside the checkout', async () => {
    const project = writeProject(scratch('lambkin-my-app-'), whoAmIProject());
    const run = await lambkin(LAMBKIN_BIN, ['run', '.'], { cwd: project });
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/■ build passed/);
    expect(run.stdout).toContain(`step uid=${asRoot ? NOBODY : process.getuid?.()}`);
  }, 100_000);

  rootOnly(
    'root with Lambkin checked out in its 0700 home: the steps still run as nobody and pass',
    async () => {
      const home = scratch('lambkin-root-home-');
      chmodSync(home, 0o700);
      const checkout = checkoutInto(home, 'symlink');
      const project = writeProject(join(home, 'my-app'), whoAmIProject());
      const run = await lambkin(join(checkout, 'bin', 'lambkin.js'), ['run', '.'], { cwd: project });
      expect(run.stderr).toBe('');
      expect(run.code).toBe(0);
      expect(run.stdout).toContain(`step uid=${NOBODY}`);
      expect(run.stdout).toMatch(/■ build passed/);
    },
    100_000,
  );

  rootOnly(
    'a user who is not root: no privilege drop, the steps run as that user',
    async () => {
      // Lambkin readable by everyone, as a shared checkout is; the user's own home and project.
      const shared = scratch('lambkin-shared-');
      chmodSync(shared, 0o755);
      const checkout = checkoutInto(shared, 'hardlink');
      const home = scratch('lambkin-user-home-');
      const project = writeProject(join(home, 'my-app'), whoAmIProject());
      execFileSync('chown', ['-R', `${NOBODY}:${NOBODY}`, home]);
      const run = await lambkin(join(checkout, 'bin', 'lambkin.js'), ['run', '.', '--json'], {
        cwd: project,
        uid: NOBODY,
        gid: NOBODY,
      });
      expect(run.code).toBe(0);
      expect(run.stdout).toContain(`step uid=${NOBODY}`);
      expect(run.stdout).toMatch(/"state": "success"/);
    },
    100_000,
  );
});
