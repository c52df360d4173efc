/**
 * A hostile build's btrfs subvolume and the removal of its torn-down work root
 * (src/controller/background-removal.ts): any user may make a subvolume (a device of its own) in a
 * folder it can write, with no capability; an `rm --one-file-system` skipped it, and whatever the
 * build wrote in it stayed for ever, through every later sweep. The whole tree must go. Needs root,
 * mkfs.btrfs, btrfs (CI installs btrfs-progs) and a loop device; skipped, saying so, otherwise.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { acquireBuildSandbox, DEFAULT_FIRST_SANDBOX_UID } from '../../src/controller/build-sandbox.js';
import { findOnPath } from '../support/tools.js';
import { waitFor } from '../support/wait.js';

const FIRST_UID = DEFAULT_FIRST_SANDBOX_UID - 700;
const usable =
  process.getuid?.() === 0 && findOnPath('mkfs.btrfs') !== undefined && findOnPath('btrfs') !== undefined;
if (!usable) console.warn('SKIPPED: removal-subvolume needs root, mkfs.btrfs and btrfs (btrfs-progs)');
const describeIf = usable ? describe : describe.skip;

describeIf('a hostile build on a btrfs work root', () => {
  let scratch: string;
  let mountPoint: string;
  let mounted = false;
  const stateDir = () => join(scratch, 'state');

  beforeAll(async () => {
    scratch = await mkdtemp('/tmp/lambkin-removal-btrfs-');
    await chmod(scratch, 0o711);
    const image = join(scratch, 'fs.img');
    execFileSync('truncate', ['-s', '160M', image]);
    execFileSync('mkfs.btrfs', ['-q', image], { stdio: 'ignore' });
    mountPoint = join(scratch, 'builds');
    await mkdir(mountPoint, { mode: 0o711 });
    execFileSync('mount', ['-o', 'loop', image, mountPoint]);
    mounted = true;
    await chmod(mountPoint, 0o711);
  });

  afterAll(async () => {
    // Node's rm crosses into the subvolume (what the teardown did before the change).
    if (mounted) {
      for (const name of await readdir(mountPoint).catch(() => [])) {
        await rm(join(mountPoint, name), { recursive: true, force: true }).catch(() => undefined);
      }
      execFileSync('umount', [mountPoint]);
    }
    await rm(scratch, { recursive: true, force: true });
    try {
      execFileSync('nft', ['delete', 'table', 'inet', `lambkin_sandbox_${FIRST_UID.toString(16)}`], {
        stdio: 'ignore',
      });
    } catch {
      // no nft, or no table
    }
  });

  it('removes everything the build wrote once it is torn down, also in a subvolume it made', async () => {
    const options = { firstUid: FIRST_UID, slots: 1, stateDir: stateDir(), cgroup: false };
    const sandbox = await acquireBuildSandbox(mountPoint, options);
    // The build, as its own uid with no capability: a subvolume, and 8 MiB in it.
    const hostile =
      'btrfs subvolume create "$1/stash" >/dev/null && head -c 8388608 /dev/zero > "$1/stash/blob" && echo made';
    const [executable, ...args] = sandbox.wrap(['/bin/sh', '-c', hostile, 'hostile', sandbox.workRoot]);
    const output = await new Promise<string>((resolve, reject) => {
      const child = spawn(executable!, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      let text = '';
      child.stdout.on('data', (chunk: Buffer) => (text += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (text += chunk.toString()));
      child.once('error', reject);
      child.once('close', () => resolve(text));
    });
    expect(output).toContain('made');

    await sandbox.teardown();
    const gone = async () => ((await readdir(mountPoint)).length === 0 ? true : undefined);
    await waitFor('the torn-down work root, subvolume and all, to be removed', gone, 30_000);

    // What a removal left (stale at once here) is swept by a later acquire, subvolume and all.
    const left = join(mountPoint, 'removing-0-0123456789ab');
    await mkdir(left);
    execFileSync('btrfs', ['subvolume', 'create', join(left, 'stash')], { stdio: 'ignore' });
    const next = await acquireBuildSandbox(mountPoint, { ...options, staleRemovalMs: 0 });
    await next.teardown();
    await waitFor('the left tree, subvolume and all, to be removed', gone, 30_000);
    expect(existsSync(left)).toBe(false);
  }, 60_000);
});
