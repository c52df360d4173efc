/**
 * Large trees removed in a process of their own (src/controller/background-removal.ts), and where
 * the stack uses it: a build sandbox's work root at teardown (out of the slot's way at once, closed
 * to the slot's uid, gone soon after, whatever the build left in it) and what a crashed removal left.
 * Root only where trees of other uids are involved, as in the stack.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { removeInBackground } from '../../src/controller/background-removal.js';
import { acquireBuildSandbox, DEFAULT_FIRST_SANDBOX_UID } from '../../src/controller/build-sandbox.js';
import { waitFor } from '../support/wait.js';

const asRoot = process.getuid?.() === 0;
const describeAsRoot = asRoot ? describe : describe.skip;

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'lambkin-background-removal-'));
  await chmod(scratch, 0o711);
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

/**
 * A tree of `count` files in a few folders; as root, one of them closed to everyone (mode 000), as
 * a build may leave it (only root removes what is in such a folder).
 */
async function treeIn(parent: string, count = 300): Promise<string> {
  const tree = await mkdtemp(join(parent, 'tree-'));
  for (let index = 0; index < count; index++) {
    const folder = join(tree, `pkg-${index % 10}`, 'lib');
    await mkdir(folder, { recursive: true });
    await writeFile(join(folder, `file-${index}.js`), `module.exports = ${index};\n`);
  }
  if (asRoot) {
    await mkdir(join(tree, 'closed'));
    await writeFile(join(tree, 'closed', 'inside'), 'x');
    await chmod(join(tree, 'closed'), 0o000);
  }
  return tree;
}

const gone = (path: string) => async () => (existsSync(path) ? undefined : true);

describe('removeInBackground', () => {
  it('removes the whole tree, and never what a link in it points to', async () => {
    const outside = await mkdtemp(join(scratch, 'outside-'));
    await writeFile(join(outside, 'precious'), 'keep me');
    const tree = await treeIn(scratch);
    await symlink(outside, join(tree, 'link-to-outside'));
    await symlink(join(outside, 'precious'), join(tree, 'pkg-1', 'link-to-file'));

    await removeInBackground(tree);
    await waitFor(`${tree} to be removed`, gone(tree), 30_000);
    expect(await readFile(join(outside, 'precious'), 'utf8')).toBe('keep me');
    expect(await readdir(outside)).toEqual(['precious']);
  });

  it('removes a plain file at once, and is quiet about a path that is not there', async () => {
    const file = join(scratch, 'plain-file');
    await writeFile(file, 'x');
    await removeInBackground(file);
    expect(existsSync(file)).toBe(false);
    await expect(removeInBackground(join(scratch, 'never-there'))).resolves.toBeUndefined();
  });
});

describeAsRoot('removeInBackground as root', () => {
  it('closes the tree to its former owner before it returns: the owner cannot enter what is left', async () => {
    const uid = DEFAULT_FIRST_SANDBOX_UID - 400;
    const tree = await treeIn(scratch, 2000);
    execFileSync('chown', ['-R', '-h', `${uid}:${uid}`, tree]);
    await removeInBackground(tree);
    const stats = await lstat(tree).catch(() => undefined);
    if (stats) {
      // Still there (the rm has only started): root's and closed to everyone else.
      expect({ uid: stats.uid, mode: stats.mode & 0o777 }).toEqual({ uid: 0, mode: 0o700 });
      const entered = (() => {
        try {
          execFileSync('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', 'ls', tree], {
            stdio: 'pipe',
          });
          return 'listed';
        } catch (error) {
          return String((error as { stderr?: Buffer }).stderr ?? error);
        }
      })();
      expect(entered).toMatch(/Permission denied|No such file/);
    }
    await waitFor(`${tree} to be removed`, gone(tree), 30_000);
  });
});

describeAsRoot('a build sandbox teardown', () => {
  // A range of uids of these tests only: never a real build's, nor another suite's.
  const FIRST_UID = DEFAULT_FIRST_SANDBOX_UID - 500;
  const options = () => ({ firstUid: FIRST_UID, slots: 4, stateDir: join(scratch, 'state'), cgroup: false });
  afterAll(() => {
    // The host guard's table of this range (src/controller/build-sandbox.ts installHostGuard).
    try {
      execFileSync('nft', ['delete', 'table', 'inet', `lambkin_sandbox_${FIRST_UID.toString(16)}`], {
        stdio: 'ignore',
      });
    } catch {
      // no nft here, or no table: nothing to remove
    }
  });

  it('frees the work root at once, and its files go soon after, whatever the build left there', async () => {
    const parent = join(scratch, 'builds');
    const sandbox = await acquireBuildSandbox(parent, options());
    const outside = await mkdtemp(join(scratch, 'outside-'));
    await writeFile(join(outside, 'precious'), 'keep me');
    // What a hostile build leaves: many files, a folder it closed, links out of its work root.
    const tree = await treeIn(sandbox.workRoot, 1000);
    await symlink(outside, join(sandbox.workRoot, 'link-out'));
    await symlink('/etc', join(tree, 'etc'));
    execFileSync('chown', ['-R', '-h', `${sandbox.uid}:${sandbox.uid}`, sandbox.workRoot]);

    await sandbox.teardown();
    expect(existsSync(sandbox.workRoot)).toBe(false);
    // Nothing but the renamed work root is left beside (the name a later acquire sweeps), root's.
    const left = await readdir(parent);
    expect(left.length).toBeLessThanOrEqual(1);
    for (const name of left) {
      expect(name).toMatch(/^removing-\d+-[0-9a-f]{12}$/);
      const stats = await lstat(join(parent, name)).catch(() => undefined);
      if (stats) expect({ uid: stats.uid, mode: stats.mode & 0o777 }).toEqual({ uid: 0, mode: 0o700 });
    }
    await waitFor(
      'the torn-down work root to be removed',
      async () => ((await readdir(parent)).length === 0 ? true : undefined),
      30_000,
    );
    expect(await readFile(join(outside, 'precious'), 'utf8')).toBe('keep me');
    expect(existsSync('/etc/passwd')).toBe(true);

    // The slot can be taken again at once, with a work root of its own.
    const next = await acquireBuildSandbox(parent, options());
    expect(await readdir(next.workRoot)).toEqual([]);
    await next.teardown();
  });

  it('removes what a removal that died left, the next time a sandbox is acquired', async () => {
    const parent = join(scratch, 'builds-stale');
    await mkdir(parent, { recursive: true, mode: 0o711 });
    const left = join(parent, 'removing-1-0123456789ab');
    await mkdir(join(left, 'node_modules', 'pkg'), { recursive: true });
    await writeFile(join(left, 'node_modules', 'pkg', 'index.js'), 'x');
    // Not yet stale under the default (an hour): left alone, its rm may still be running.
    const first = await acquireBuildSandbox(parent, options());
    await first.teardown();
    expect(existsSync(left)).toBe(true);

    const sandbox = await acquireBuildSandbox(parent, { ...options(), staleRemovalMs: 0 });
    await waitFor(`${left} to be removed`, gone(left), 30_000);
    await sandbox.teardown();
  });
});
