/** Work areas on the real file system, in a temporary root per test. */
import { spawn } from 'node:child_process';
import {
  access,
  chmod,
  chown,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  rm,
  stat,
  symlink,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { execa } from 'execa';
import { WorkspaceError } from '../../src/runner/source-errors.js';
import {
  createWorkspace,
  FOREIGN_WORK_FOLDER_MAX_AGE_MS,
  folderSize,
  removeFolder,
  sweepStaleWorkspaces,
  type Workspace,
} from '../../src/runner/workspace.js';
import { itAsRoot, requireTool } from '../support/tools.js';

/** The conventional unprivileged user. */
const NOBODY = 65534;

let root: string;
const created: Workspace[] = [];

beforeEach(async () => {
  root = join(await mkdtemp(join(tmpdir(), 'lambkin-workspace-test-')), 'work');
});

afterEach(async () => {
  await Promise.all(created.splice(0).map((workspace) => workspace.dispose()));
  await removeFolder(join(root, '..'));
});

async function make(trusted: boolean, label = 'owner/repo#12'): Promise<Workspace> {
  const workspace = await createWorkspace(root, { trusted, label });
  created.push(workspace);
  return workspace;
}

const exists = (path: string): Promise<boolean> =>
  access(path).then(
    () => true,
    () => false,
  );
const modeOf = async (path: string): Promise<number> => (await stat(path)).mode & 0o777;

describe('createWorkspace', () => {
  test('makes a private folder with checkout, home and tmp, named after the build', async () => {
    const workspace = await make(true);
    expect(relative(root, workspace.root)).toMatch(
      new RegExp(`^trusted/build-owner-repo-12-p${process.pid}n\\d+-\\w{6}$`),
    );
    for (const folder of [
      workspace.root,
      workspace.checkout,
      workspace.home,
      workspace.tmp,
      workspace.npmCache,
    ]) {
      expect((await stat(folder)).isDirectory()).toBe(true);
      expect(await modeOf(folder)).toBe(0o700);
    }
    expect(await modeOf(join(root, 'trusted'))).toBe(0o700);
    expect(workspace.checkout).toBe(join(workspace.root, 'checkout'));
    expect(workspace.npmCache).toBe(join(root, 'trusted', 'npm-cache'));
    // The runner's own folder is beside the work folder: outside its quota and the steps' binds.
    expect(relative(root, workspace.runnerTmp)).toMatch(
      new RegExp(`^trusted/build-owner-repo-12-p${process.pid}n\\d+-\\w{6}$`),
    );
    expect(workspace.runnerTmp).not.toBe(workspace.root);
    expect(await modeOf(workspace.runnerTmp)).toBe(0o700);
    expect(await readdir(workspace.checkout)).toEqual([]);
  });

  test('two workspaces in a row share nothing', async () => {
    const first = await make(true);
    await writeFile(join(first.checkout, 'left-behind'), 'x');
    await writeFile(join(first.home, '.npmrc'), 'registry=somewhere');
    await writeFile(join(first.tmp, 'scratch'), 'x');
    await first.dispose();
    const second = await make(true);
    expect(second.root).not.toBe(first.root);
    expect(await exists(first.root)).toBe(false);
    for (const folder of [second.checkout, second.home, second.tmp])
      expect(await readdir(folder)).toEqual([]);
    // Only the npm cache, by design, is the same for builds of one trust class.
    expect(second.npmCache).toBe(first.npmCache);
  });

  test('trusted and untrusted builds never share a folder, the npm cache included', async () => {
    const trusted = await make(true);
    const untrusted = await make(false);
    expect(relative(root, untrusted.root).startsWith('untrusted/')).toBe(true);
    expect(untrusted.npmCache).toBe(join(root, 'untrusted', 'npm-cache'));
    const trustedPaths = [trusted.root, trusted.npmCache];
    for (const path of [
      untrusted.root,
      untrusted.checkout,
      untrusted.home,
      untrusted.tmp,
      untrusted.npmCache,
    ]) {
      for (const other of trustedPaths) expect(relative(other, path).startsWith('..')).toBe(true);
    }
    await writeFile(join(untrusted.npmCache, 'poisoned'), 'x');
    expect(await readdir(trusted.npmCache)).toEqual([]);
  });

  test('a label with odd characters makes a plain folder name', async () => {
    const workspace = await make(false, '../../etc/passwd; rm -rf /');
    expect(relative(join(root, 'untrusted'), workspace.root)).toMatch(
      /^build-etc-passwd-rm-rf-p\d+n\d+-\w{6}$/,
    );
  });

  test('refuses a class folder that is a planted link', async () => {
    const elsewhere = await mkdtemp(join(tmpdir(), 'lambkin-workspace-elsewhere-'));
    try {
      await mkdir(root, { recursive: true });
      await symlink(elsewhere, join(root, 'untrusted'));
      await expect(createWorkspace(root, { trusted: false, label: 'x' })).rejects.toBeInstanceOf(
        WorkspaceError,
      );
      expect(await readdir(elsewhere)).toEqual([]);
    } finally {
      await rm(elsewhere, { recursive: true, force: true });
    }
  });
});

describe('dispose', () => {
  test('removes read-only, deeply nested content, and may be called twice', async () => {
    const workspace = await make(false);
    let folder = workspace.checkout;
    for (let depth = 0; depth < 50; depth++) {
      folder = join(folder, `level-${depth}`);
      await mkdir(folder);
      await writeFile(join(folder, 'file'), 'x');
    }
    await chmod(join(folder, 'file'), 0o400);
    // Read-only folders from the bottom up, as `npm ci` caches and some test suites leave them.
    for (let current = folder; current !== workspace.root; current = join(current, '..')) {
      await chmod(current, 0o500);
    }
    await symlink('/etc', join(workspace.home, 'etc-link'));
    await workspace.dispose();
    expect(await exists(workspace.root)).toBe(false);
    expect(await exists('/etc/passwd')).toBe(true); // the link was removed, not followed
    await workspace.dispose();
  });

  // Root may remove anything, read-only or not: run the same as an unprivileged user to mean it.
  if (requireTool('setpriv', 'removing read-only folders as an unprivileged user')) {
    itAsRoot('removes read-only folders as an unprivileged user too', async () => {
      const sandbox = await mkdtemp(join(tmpdir(), 'lambkin-workspace-nobody-'));
      try {
        await chown(sandbox, NOBODY, NOBODY);
        const script = join(sandbox, 'dispose-read-only.mts');
        await writeFile(
          script,
          `import { createWorkspace } from ${JSON.stringify(join(process.cwd(), 'src/runner/workspace.ts'))};
        import { access, chmod, mkdir, writeFile } from 'node:fs/promises';
        import { join } from 'node:path';
        const workspace = await createWorkspace(${JSON.stringify(join(sandbox, 'root'))}, { trusted: false, label: 'x' });
        let folder = workspace.checkout;
        for (let depth = 0; depth < 20; depth++) {
          folder = join(folder, 'level-' + depth);
          await mkdir(folder);
          await writeFile(join(folder, 'file'), 'x');
        }
        for (let current = folder; current !== workspace.root; current = join(current, '..')) await chmod(current, 0o500);
        await workspace.dispose();
        const gone = await access(workspace.root).then(() => false, () => true);
        console.log(JSON.stringify({ uid: process.getuid(), gone }));`,
        );
        const tsx = join(process.cwd(), 'node_modules', '.bin', 'tsx');
        const run = await execa(
          'setpriv',
          [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', tsx, script],
          {
            env: { PATH: process.env.PATH, HOME: sandbox },
            extendEnv: false,
          },
        );
        expect(JSON.parse(run.stdout.trim().split('\n').at(-1) ?? '{}')).toEqual({ uid: NOBODY, gone: true });
      } finally {
        await rm(sandbox, { recursive: true, force: true });
      }
    });
  }

  test('removes nesting deeper than a path can name', async () => {
    const workspace = await make(false);
    // Made with relative paths, as a build step could: the full path passes PATH_MAX (4096).
    const script = `
      const fs = require('node:fs');
      for (let depth = 0; depth < 250; depth++) {
        fs.mkdirSync('d0123456789abcdef0123456789');
        process.chdir('d0123456789abcdef0123456789');
      }
      fs.writeFileSync('file', 'deep');
      fs.chmodSync('.', 0o500);`;
    await execa(process.execPath, ['-e', script], { cwd: workspace.checkout });
    await expect(
      stat(join(workspace.checkout, 'd0123456789abcdef0123456789/'.repeat(250))),
    ).rejects.toMatchObject({
      code: 'ENAMETOOLONG',
    });
    await workspace.dispose();
    expect(await exists(workspace.root)).toBe(false);
  });

  test('a workspace leaves nothing behind in its class folder', async () => {
    const workspace = await make(true);
    await writeFile(join(workspace.checkout, 'a'), 'x');
    await workspace.dispose();
    expect(await readdir(join(root, 'trusted'))).toEqual(['npm-cache']);
  });
});

describe('sweepStaleWorkspaces', () => {
  /** A work folder as a crashed earlier build (a process that is gone) leaves it. */
  async function leftover(trustClass: 'trusted' | 'untrusted', contentBytes: number): Promise<string> {
    const gonePid = await deadPid();
    const folder = join(root, trustClass, `build-old-${trustClass}-p${gonePid}-abc123`);
    await mkdir(join(folder, 'checkout', 'node_modules'), { recursive: true });
    await writeFile(join(folder, 'checkout', 'node_modules', 'big'), Buffer.alloc(contentBytes));
    await chmod(join(folder, 'checkout'), 0o500);
    return folder;
  }

  test('removes what crashed builds left, keeps the npm cache and live work areas, and says what it freed', async () => {
    const live = await make(true);
    await writeFile(join(live.npmCache, 'cached-tarball'), Buffer.alloc(1000));
    const untrustedLive = await make(false);
    const staleTrusted = await leftover('trusted', 3000);
    const staleUntrusted = await leftover('untrusted', 500);

    const result = await sweepStaleWorkspaces(root);

    expect(result.removed.sort()).toEqual([staleTrusted, staleUntrusted].sort());
    expect(result.bytes).toBe(3500);
    expect(await exists(staleTrusted)).toBe(false);
    expect(await exists(staleUntrusted)).toBe(false);
    expect(await exists(join(live.npmCache, 'cached-tarball'))).toBe(true);
    expect(await exists(live.checkout)).toBe(true);
    expect(await exists(untrustedLive.checkout)).toBe(true);
  });

  test('keeps work folders of another process that is still running', async () => {
    await make(true);
    const other = spawn('sleep', ['30']);
    try {
      const folder = join(root, 'trusted', `build-other-p${other.pid}-abc123`);
      await mkdir(folder);
      expect((await sweepStaleWorkspaces(root)).removed).toEqual([]);
      expect(await exists(folder)).toBe(true);
    } finally {
      other.kill();
    }
  });

  test('removes a disposed-of work folder of this process that failed to go', async () => {
    await make(true);
    const folder = join(root, 'trusted', `build-mine-p${process.pid}-abc123`);
    await mkdir(folder);
    expect((await sweepStaleWorkspaces(root)).removed).toEqual([folder]);
  });

  test('keeps a folder of another PID namespace with this pid (runners are all pid 1 there) until it is older than any build', async () => {
    await make(true);
    const foreign = join(root, 'trusted', `build-neighbour-p${process.pid}n1-abc123`);
    await mkdir(foreign);
    expect((await sweepStaleWorkspaces(root)).removed).toEqual([]);
    const long = (Date.now() - FOREIGN_WORK_FOLDER_MAX_AGE_MS - 60_000) / 1000;
    await utimes(foreign, long, long);
    expect((await sweepStaleWorkspaces(root)).removed).toEqual([foreign]);
  });

  test('removes an npm cache that grew past the cap', async () => {
    const workspace = await make(false);
    await writeFile(join(workspace.npmCache, 'blob'), Buffer.alloc(5000));
    const result = await sweepStaleWorkspaces(root, { maxNpmCacheBytes: 4000 });
    expect(result).toEqual({ removed: [workspace.npmCache], bytes: 5000 });
    expect(await exists(workspace.npmCache)).toBe(false);
    expect(await exists(workspace.checkout)).toBe(true);
  });

  test('a root with nothing in it frees nothing', async () => {
    expect(await sweepStaleWorkspaces(root)).toEqual({ removed: [], bytes: 0 });
  });
});

describe('folderSize', () => {
  test('counts file bytes once, without following links', async () => {
    const dir = join(root, 'sized');
    await mkdir(join(dir, 'sub'), { recursive: true });
    await writeFile(join(dir, 'a'), Buffer.alloc(100));
    await writeFile(join(dir, 'sub', 'b'), Buffer.alloc(50));
    await execa('ln', [join(dir, 'a'), join(dir, 'sub', 'hard-a')]);
    await symlink('/usr', join(dir, 'usr-link'));
    const linkSize = (await lstat(join(dir, 'usr-link'))).size;
    expect(await folderSize(dir)).toBe(150 + linkSize);
  });

  test('a missing folder is 0 bytes', async () => {
    expect(await folderSize(join(root, 'nothing-here'))).toBe(0);
  });

  test('a file is its own size; a large tree is summed whole while the event loop keeps turning', async () => {
    const dir = join(root, 'wide');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'single'), Buffer.alloc(7));
    expect(await folderSize(join(dir, 'single'))).toBe(7);
    // 40 folders of 250 files: walked in slices, so timers due meanwhile still run.
    for (let folder = 0; folder < 40; folder++) {
      await mkdir(join(dir, `f${folder}`));
      await Promise.all(
        Array.from({ length: 250 }, (_, file) => writeFile(join(dir, `f${folder}`, `${file}`), 'xy')),
      );
    }
    let turns = 0;
    const ticking = setInterval(() => turns++, 1);
    const started = performance.now();
    const bytes = await folderSize(dir);
    const elapsed = performance.now() - started;
    clearInterval(ticking);
    expect(bytes).toBe(7 + 40 * 250 * 2);
    // Held at most ~10 ms at a time: a walk that took longer let the 1 ms timer run.
    if (elapsed > 40) expect(turns).toBeGreaterThan(0);
  });
});

/** The pid of a process that has just exited (so no process has it, for now). */
async function deadPid(): Promise<number> {
  const child = execa('true');
  await child;
  return child.pid ?? 999_999;
}
