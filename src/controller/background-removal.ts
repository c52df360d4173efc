/**
 * Removing a large tree without making anyone wait: a build's work root or a replaced dependency
 * tree holds tens of thousands of files, and deleting them took 1.2-1.4 s on this project's test
 * machine, time a `lambkin run` or the next build in the slot would otherwise wait for.
 *
 * The caller first moves the tree to a name of its own that nothing else uses (a rename: atomic),
 * under a folder only root may list; `removeInBackground` then gives the tree's top folder to root
 * (mode 0700), so whoever owned it cannot enter it any more, and deletes it in a process of its own
 * that outlives this one (`rm` never follows a link).
 */
import { spawn } from 'node:child_process';
import { chmod, lchown, lstat, rm } from 'node:fs/promises';

/**
 * Deletes the folder `path` in a detached `rm` (in this process when none can start, or when
 * `path` is no folder). Resolves once the folder is closed to its former owner and its deletion
 * has started, not when it is gone.
 */
export async function removeInBackground(path: string): Promise<void> {
  const stats = await lstat(path).catch(() => undefined);
  if (!stats) return;
  if (!stats.isDirectory()) {
    await rm(path, { force: true });
    return;
  }
  // As root (the only caller with trees of other uids); otherwise the tree is the caller's own.
  if (process.getuid?.() === 0) {
    await lchown(path, 0, 0);
    await chmod(path, 0o700);
  }
  await new Promise<void>((resolve) => {
    // Not --one-file-system: a btrfs subvolume a build made in its tree (any user may) has a device
    // of its own, and would be left behind for ever. No build can mount anything the host sees.
    const child = spawn('rm', ['-rf', '--', path], {
      detached: true,
      stdio: 'ignore',
      cwd: '/',
    });
    child.once('spawn', () => {
      child.unref();
      resolve();
    });
    child.once('error', () => {
      // No rm here (or no process to spare): delete it in this process instead, and wait.
      void rm(path, { recursive: true, force: true })
        .catch(() => undefined)
        .then(resolve);
    });
  });
}
