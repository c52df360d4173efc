/**
 * The build sandbox of the local stack run as root (docs/design/build-sandbox.md): every build's
 * runner (and so its steps) runs as a uid of its own, in a cgroup v2 of its own and in PID and mount
 * namespaces of their own; when the build ends, whatever its processes and files were, all of it
 * goes: `cgroup.kill`, then every process of its uid, then its work folder.
 *
 * A build holds a slot N (uid `firstUid + N`) from `acquire` until its teardown has finished. A slot
 * is held by a folder `<stateDir>/slots/N` made with mkdir (atomic: two stacks never take the same
 * slot) naming its owner's pid; a slot whose owner is gone is cleaned and taken again.
 */
import { accessSync, constants, lstatSync, readFileSync, readdirSync } from 'node:fs';
import { chown, lstat, mkdir, readFile, readdir, rename, rm, rmdir, writeFile } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { randomBytes } from 'node:crypto';
import { LambkinError } from '../core/errors.js';
import { removeInBackground } from './background-removal.js';
import type { SandboxProtections } from '../core/sandbox.js';

export interface BuildSandboxOptions {
  /**
   * The first sandbox uid (and gid). Default 0x70000000 (1879048192): above the ranges of
   * `/etc/subuid` (100000 + 65536 per user) and of systemd-nspawn containers, below 2^31.
   */
  firstUid?: number;
  /** How many builds can hold a sandbox at once. Default 1000. */
  slots?: number;
  /** Where slots are held. Default /run/lambkin. */
  stateDir?: string;
  /** Set false to skip the cgroup (to test the fallback: killing every process of the build's uid). */
  cgroup?: boolean;
  /**
   * A work root still being removed this long after its teardown was left by a removal that died
   * (the machine stopped, its `rm` was killed): the next `acquire` removes it. Default one hour.
   */
  staleRemovalMs?: number;
}

export class BuildSandboxError extends LambkinError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('BUILD_SANDBOX', message, options);
  }
}

export const DEFAULT_FIRST_SANDBOX_UID = 0x70000000;
const DEFAULT_SLOTS = 1000;
const DEFAULT_STATE_DIR = '/run/lambkin';
/** A work root being removed in the background (`clean`) is renamed to this prefix first. */
const REMOVING_PREFIX = 'removing-';
const DEFAULT_STALE_REMOVAL_MS = 3600 * 1000;
/** How long teardown waits for the kernel to take the build's processes away. */
const KILL_SETTLE_MS = 5000;

/** One build's sandbox: its uid, cgroup and work root, from `acquire` until `teardown`. */
export interface BuildSandbox {
  readonly uid: number;
  readonly gid: number;
  /** The cgroup v2 folder of the build; undefined when cgroup v2 is not usable here. */
  readonly cgroup: string | undefined;
  /** The runner's LAMBKIN_WORK_ROOT: owned by the build's uid, removed at teardown. */
  readonly workRoot: string;
  readonly protections: Pick<SandboxProtections, 'perBuildUser' | 'cgroup' | 'pidNamespace' | 'hostServices'>;
  /** The command that runs `command` (the runner) in the sandbox; started as root. */
  wrap(command: readonly string[]): string[];
  /**
   * Kills every process of the build, removes its cgroup and work root, frees the slot.
   * `beforeRemoval` runs once nothing of the build runs any more, before its work root goes (to
   * take what is kept for the next build); its failure does not stop the teardown. Only the first
   * call's counts.
   */
  teardown(beforeRemoval?: () => Promise<unknown>): Promise<void>;
}

/** The cgroup v2 mount point from /proc/self/mountinfo (hybrid layouts: /sys/fs/cgroup/unified). */
export function cgroup2Mount(): string | undefined {
  let text: string;
  try {
    text = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    const [before, after] = line.split(' - ');
    if (after?.split(' ')[0] !== 'cgroup2') continue;
    const mountPoint = before?.split(' ')[4];
    if (mountPoint) return mountPoint.replace(/\\040/g, ' ');
  }
  return undefined;
}

/**
 * Joins the cgroup (if any), then makes the PID and mount namespaces (as root) and, inside, gives
 * the build a `/dev/net/tun` its user may open (a node on a tmpfs of this mount namespace only: the
 * host's may be 0600, and slirp4netns, run by the runner for each step, needs it), then drops to the
 * build's uid with no capabilities, no groups and no_new_privs, and runs the runner. Values come in
 * as positional parameters, never pasted into the script.
 */
const OUTER = `cg=$1 inner=$2
shift 2
if [ -n "$cg" ]; then echo $$ > "$cg/cgroup.procs" || exit 126; fi
exec unshare --pid --mount --fork --mount-proc --kill-child=SIGKILL -- /bin/sh -c "$inner" lambkin-build "$@"`;
const INNER = `uid=$1 gid=$2
shift 2
if [ -c /dev/net/tun ]; then
  mount -t tmpfs -o size=16k,mode=755,nosuid,noexec lambkin-dev-net /dev/net && mknod -m 666 /dev/net/tun c 10 200 || exit 126
fi
exec setpriv --reuid "$uid" --regid "$gid" --clear-groups --inh-caps=-all --bounding-set=-all --no-new-privs -- "$@"`;

/** Takes a free slot and prepares its sandbox (as root). `parentWorkRoot` holds every build's work root. */
export async function acquireBuildSandbox(
  parentWorkRoot: string,
  options: BuildSandboxOptions = {},
): Promise<BuildSandbox> {
  const firstUid = options.firstUid ?? DEFAULT_FIRST_SANDBOX_UID;
  const slots = options.slots ?? DEFAULT_SLOTS;
  const slotsDir = join(options.stateDir ?? DEFAULT_STATE_DIR, 'slots');
  await mkdir(slotsDir, { recursive: true, mode: 0o700 });
  await assertRootFolder(parentWorkRoot, 0o711);
  const mount = options.cgroup === false ? undefined : cgroup2Mount();
  const cgroupParent = mount ? await ensureCgroupParent(mount) : undefined;
  const hostServices = await ensureHostGuard(firstUid, firstUid + slots - 1);
  await removeStaleRemovals(parentWorkRoot, options.staleRemovalMs ?? DEFAULT_STALE_REMOVAL_MS);
  // Start at a different slot each time: a slot just freed is not reused at once.
  const start = Math.floor(Math.random() * slots);
  for (let i = 0; i < slots; i++) {
    const slot = (start + i) % slots;
    const uid = firstUid + slot;
    const slotDir = join(slotsDir, String(slot));
    if (!(await takeSlot(slotDir, slotsDir))) continue;
    const sandbox = makeSandbox(slot, uid, slotDir, parentWorkRoot, cgroupParent, hostServices);
    try {
      // Whatever a crashed stack left in this slot goes first.
      await sandbox.clean();
      // A process of this uid that is not ours (another tool's range): leave the slot alone.
      if ((await processesOfUid(uid)).length > 0) {
        await rm(slotDir, { recursive: true, force: true });
        continue;
      }
      await sandbox.prepare();
      return sandbox;
    } catch (error) {
      await sandbox.teardown().catch(() => undefined);
      throw error;
    }
  }
  throw new BuildSandboxError(`Every one of the ${slots} build sandbox slots is taken; try again later.`);
}

/** Removes again what a background removal left (the machine stopped, or its `rm` was killed). */
async function removeStaleRemovals(parentWorkRoot: string, staleMs: number): Promise<void> {
  for (const name of await readdir(parentWorkRoot).catch(() => [])) {
    if (!name.startsWith(REMOVING_PREFIX)) continue;
    const path = join(parentWorkRoot, name);
    const stats = await lstat(path).catch(() => undefined);
    // By ctime: the rename at teardown set it.
    if (stats && Date.now() - stats.ctimeMs >= staleMs) await removeInBackground(path);
  }
}

async function takeSlot(slotDir: string, slotsDir: string): Promise<boolean> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await mkdir(slotDir, { mode: 0o700 });
      await writeFile(join(slotDir, 'owner'), `${process.pid}\n`);
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    // Taken: by a live stack (leave it), or by one that is gone (clean it and take it).
    const owner = Number((await readFile(join(slotDir, 'owner'), 'utf8').catch(() => '')).trim());
    if (!Number.isSafeInteger(owner) || owner <= 0) {
      // Being made right now, or a crash between mkdir and writeFile: judge by its age.
      const stats = await lstat(slotDir).catch(() => undefined);
      if (!stats || Date.now() - stats.mtimeMs < 60_000) return false;
    } else if (processIsAlive(owner)) {
      return false;
    }
    // Moved aside first: of two stacks reclaiming it, one rename wins.
    const aside = join(slotsDir, `stale-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}`);
    try {
      await rename(slotDir, aside);
    } catch {
      return false;
    }
    await rm(aside, { recursive: true, force: true });
  }
  return false;
}

function makeSandbox(
  slot: number,
  uid: number,
  slotDir: string,
  parentWorkRoot: string,
  cgroupParent: string | undefined,
  hostServices: boolean,
): BuildSandbox & { clean(): Promise<void>; prepare(): Promise<void> } {
  const cgroup = cgroupParent ? join(cgroupParent, `build-${slot}`) : undefined;
  const workRoot = join(parentWorkRoot, `sandbox-${slot}`);
  let usable = cgroup !== undefined;
  let tornDown: Promise<void> | undefined;
  const clean = async (beforeRemoval?: () => Promise<unknown>): Promise<void> => {
    if (cgroup) await killCgroup(cgroup);
    await killUid(uid);
    await beforeRemoval?.().catch(() => undefined);
    // Out of the slot's way at once (the next build of the slot makes its work root anew); its
    // files go in the background, closed to the uid the next build of the slot runs as.
    const removing = join(parentWorkRoot, `${REMOVING_PREFIX}${slot}-${randomBytes(6).toString('hex')}`);
    try {
      await rename(workRoot, removing);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      await rm(workRoot, { recursive: true, force: true, maxRetries: 2 });
      return;
    }
    await removeInBackground(removing);
  };
  return {
    uid,
    gid: uid,
    get cgroup() {
      return usable ? cgroup : undefined;
    },
    workRoot,
    get protections() {
      return { perBuildUser: true, cgroup: usable, pidNamespace: true, hostServices };
    },
    clean: () => clean(),
    async prepare() {
      if (cgroup) {
        try {
          await mkdir(cgroup);
        } catch {
          usable = false; // read-only cgroup tree (a container): the uid sweep alone then
        }
      }
      await mkdir(workRoot, { mode: 0o700 });
      await chown(workRoot, uid, uid);
    },
    wrap(command) {
      return [
        '/bin/sh',
        '-c',
        OUTER,
        'lambkin-build',
        usable && cgroup ? cgroup : '',
        INNER,
        String(uid),
        String(uid),
        ...command,
      ];
    },
    teardown(beforeRemoval) {
      tornDown ??= (async () => {
        await clean(beforeRemoval);
        await rm(slotDir, { recursive: true, force: true });
      })();
      return tornDown;
    },
  };
}

/**
 * The host guard (nftables, once per process and uid range): the sandbox uids may connect to
 * loopback (the runner fetches its tarball and uploads its log there; a step, in its own network,
 * cannot reach it: slirp4netns runs with --disable-host-loopback) and to anything not on this host,
 * but not to the host's own other addresses, where services listening on 0.0.0.0 would answer
 * slirp's connections. Replaced whole in one transaction, so several stacks agree. False when nft
 * is missing or refuses (the build log then says what does not hold).
 */
const hostGuards = new Map<string, Promise<boolean>>();

export function ensureHostGuard(firstUid: number, lastUid: number): Promise<boolean> {
  const key = `${firstUid}-${lastUid}`;
  let guard = hostGuards.get(key);
  if (!guard) {
    guard = installHostGuard(firstUid, lastUid);
    hostGuards.set(key, guard);
  }
  return guard;
}

async function installHostGuard(firstUid: number, lastUid: number): Promise<boolean> {
  const table = `lambkin_sandbox_${firstUid.toString(16)}`;
  const uids = `${firstUid}-${lastUid}`;
  const rules = [
    `table inet ${table}`,
    `delete table inet ${table}`,
    `table inet ${table} {`,
    '  chain output {',
    '    type filter hook output priority filter; policy accept;',
    `    meta skuid ${uids} ip daddr 127.0.0.0/8 accept`,
    `    meta skuid ${uids} ip6 daddr ::1 accept`,
    `    meta skuid ${uids} fib daddr type local reject`,
    '  }',
    '}',
  ].join('\n');
  return new Promise((resolve) => {
    const nft = spawn('nft', ['-f', '-'], { stdio: ['pipe', 'ignore', 'ignore'] });
    nft.once('error', () => resolve(false));
    nft.once('close', (code) => resolve(code === 0));
    nft.stdin.on('error', () => undefined);
    nft.stdin.end(rules + '\n');
  });
}

/** `<cgroup2>/lambkin`, made once. */
async function ensureCgroupParent(mount: string): Promise<string | undefined> {
  const parent = join(mount, 'lambkin');
  try {
    await mkdir(parent);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') return undefined;
  }
  return parent;
}

/** Kills every process of the cgroup, waits until it is empty and removes it. */
async function killCgroup(cgroup: string): Promise<void> {
  const exists = await lstat(cgroup).then(
    () => true,
    () => false,
  );
  if (!exists) return;
  const deadline = Date.now() + KILL_SETTLE_MS;
  for (;;) {
    const events = await readFile(join(cgroup, 'cgroup.events'), 'utf8').catch(() => 'populated 0');
    if (/^populated 0$/m.test(events)) break;
    try {
      await writeFile(join(cgroup, 'cgroup.kill'), '1');
    } catch {
      // No cgroup.kill (Linux before 5.14): each process by its pid.
      const pids = (await readFile(join(cgroup, 'cgroup.procs'), 'utf8').catch(() => '')).split('\n');
      for (const pid of pids.filter(Boolean)) killQuietly(Number(pid));
    }
    if (Date.now() > deadline) {
      throw new BuildSandboxError(`The build's cgroup ${cgroup} did not empty within ${KILL_SETTLE_MS} ms.`);
    }
    await sleep(10);
  }
  for (let attempt = 0; ; attempt++) {
    try {
      await rmdir(cgroup);
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      if (attempt >= 50)
        throw new BuildSandboxError(`Could not remove the cgroup ${cgroup}`, { cause: error });
      await sleep(10);
    }
  }
}

/** SIGKILL to every process whose real, effective or saved uid is `uid`, until none is left. */
async function killUid(uid: number): Promise<void> {
  const deadline = Date.now() + KILL_SETTLE_MS;
  for (;;) {
    const pids = await processesOfUid(uid);
    if (pids.length === 0) return;
    for (const pid of pids) killQuietly(pid);
    if (Date.now() > deadline) {
      throw new BuildSandboxError(
        `Processes of the build's uid ${uid} are still running: ${pids.join(' ')}.`,
      );
    }
    await sleep(10);
  }
}

/** Live (not zombie) processes with `uid` among their uids, from /proc. */
export async function processesOfUid(uid: number): Promise<number[]> {
  const pids = (await readdir('/proc')).filter((entry) => /^\d+$/.test(entry));
  // Read side by side: a machine runs hundreds of processes, and this runs as a build's sandbox
  // is taken, before its runner starts.
  const statuses = await Promise.all(
    pids.map((pid) => readFile(`/proc/${pid}/status`, 'utf8').catch(() => '')),
  );
  return pids
    .filter((_, index) => {
      const status = statuses[index] ?? '';
      const uids = /^Uid:\s+(.*)$/m.exec(status)?.[1]?.split(/\s+/).map(Number) ?? [];
      const state = /^State:\s+(\S)/m.exec(status)?.[1];
      return uids.includes(uid) && state !== 'Z' && state !== 'X';
    })
    .map(Number);
}

function killQuietly(pid: number): void {
  if (!Number.isSafeInteger(pid) || pid <= 1) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone
  }
}

function processIsAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Makes (or checks) a folder of root's that nobody else can change: /tmp is everyone's. */
async function assertRootFolder(folder: string, mode: number): Promise<void> {
  await mkdir(folder, { recursive: true, mode });
  const stats = lstatSync(folder);
  if (!stats.isDirectory() || stats.uid !== 0 || (stats.mode & 0o022) !== 0) {
    throw new BuildSandboxError(
      `${folder} is not a folder of root's that only root can change (a link, or someone else's): ` +
        'remove it; build sandboxes are made only under folders the stack made itself.',
    );
  }
}

/** For tests and diagnostics: the slots held now. */
export function heldSlots(stateDir = DEFAULT_STATE_DIR): string[] {
  try {
    return readdirSync(join(stateDir, 'slots')).filter((name) => /^\d+$/.test(name));
  } catch {
    return [];
  }
}

/**
 * The controller's part of the protections on this machine, without making a sandbox: a uid per
 * build and a PID namespace need root; the cgroup a cgroup v2 tree root may write. The steps' part
 * is probed by the runner (src/runner/step-sandbox.ts), which writes what does not hold in the log.
 */
export function probeBuildSandbox(): Pick<SandboxProtections, 'perBuildUser' | 'cgroup' | 'pidNamespace'> {
  const root = process.getuid?.() === 0;
  const mount = root ? cgroup2Mount() : undefined;
  let cgroup = false;
  if (mount) {
    try {
      accessSync(mount, constants.W_OK);
      cgroup = true;
    } catch {
      cgroup = false;
    }
  }
  return { perBuildUser: root, cgroup, pidNamespace: root };
}
