/**
 * The step sandbox (docs/design/build-sandbox.md): each build step runs in new user, PID, mount and
 * (when slirp4netns can serve it) network namespaces, made by util-linux `unshare` as the runner's
 * own unprivileged user:
 *
 * - PID: the step sees only its own processes (not the runner, not another build); when its first
 *   process ends, the kernel ends every process it left behind (`setsid` or double fork included).
 * - mount: `/tmp` and `/var/tmp` are the build's own tmp folder (inside the work folder: removed
 *   with it, counted in its disk quota), `/dev/shm` a fresh tmpfs. The work folder and npm cache
 *   stay where they are (a work root under `/var/tmp` or `/dev/shm` leaves that one the host's).
 * - network: the step has only its own loopback and a tap device served by slirp4netns with
 *   `--disable-host-loopback`: the internet is reachable (npm install), the host's 127.0.0.1 is not,
 *   and `/proc/net/tcp` lists none of the host's sockets.
 *
 * The step's command then runs in a nested user namespace that maps the runner's uid back to itself:
 * no capabilities, the same uid as outside (`id` is not root), `no_new_privs`.
 */
import { accessSync, constants, readFileSync, readlinkSync, statSync } from 'node:fs';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { SandboxProtections } from '../core/sandbox.js';
import { parseProtections, sandboxWarning } from '../core/sandbox.js';

/** What `runStep` needs to run a step in the sandbox (see `stepSandboxFor`). */
export interface StepSandbox {
  unshare: string;
  setpriv: string;
  /** slirp4netns, when steps get a network namespace of their own. */
  slirp?: string;
  /** Mounted on /tmp and /var/tmp of the step (the build's tmp folder). */
  tmp: string;
  /** Folders under /tmp the step must still reach at their own path (work folder, npm cache). */
  keep: string[];
  /** The runner's own uid and gid: the step's, inside and outside. */
  uid: number;
  gid: number;
}

export interface StepSandboxProbe {
  /** The step-level protections that hold in this process. */
  pidNamespace: boolean;
  privateTmp: boolean;
  network: boolean;
  /** Why a protection does not hold (for the build log). */
  reason?: string;
  unshare?: string;
  setpriv?: string;
  slirp?: string;
}

const SYSTEM_FOLDERS = ['/usr/bin', '/bin', '/usr/sbin', '/sbin', '/usr/local/bin'];

function findTool(name: string): string | undefined {
  for (const folder of SYSTEM_FOLDERS) {
    const candidate = join(folder, name);
    try {
      accessSync(candidate, constants.X_OK);
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

let probed: StepSandboxProbe | undefined;

/** The step's namespaces (`unshare` options), as the probe tries them and as steps run in them. */
const STEP_NAMESPACES = [
  '--user',
  '--map-root-user',
  '--mount',
  '--pid',
  '--fork',
  '--kill-child=SIGKILL',
  '--mount-proc',
] as const;

/**
 * Whether steps can be sandboxed here, probed once per process: util-linux `unshare` and `setpriv`,
 * user namespaces this user may make, and for the network slirp4netns and a `/dev/net/tun` this
 * user may open. `LAMBKIN_STEP_SANDBOX=off` turns the sandbox off (for comparison and debugging).
 */
export function probeStepSandbox(): StepSandboxProbe {
  probed ??= probe();
  return probed;
}

function probe(): StepSandboxProbe {
  const none = (reason: string): StepSandboxProbe => ({
    pidNamespace: false,
    privateTmp: false,
    network: false,
    reason,
  });
  if (process.env.LAMBKIN_STEP_SANDBOX === 'off') return none('LAMBKIN_STEP_SANDBOX=off');
  const unshare = findTool('unshare');
  const setpriv = findTool('setpriv');
  if (!unshare || !setpriv) return none('util-linux unshare or setpriv was not found');
  const tried = spawnSync(unshare, [...STEP_NAMESPACES, '--net', '--', 'true'], {
    stdio: ['ignore', 'ignore', 'pipe'],
    timeout: 10_000,
    encoding: 'utf8',
  });
  if (tried.status !== 0) {
    return none(
      `user namespaces are not available to this user: ${(tried.stderr || String(tried.error)).trim()}`,
    );
  }
  const slirp = findTool('slirp4netns');
  let reason: string | undefined;
  if (!slirp) reason = 'slirp4netns is not installed';
  else if (!canOpen('/dev/net/tun')) reason = '/dev/net/tun cannot be opened by this user';
  return {
    pidNamespace: true,
    privateTmp: true,
    network: reason === undefined,
    ...(reason === undefined ? {} : { reason }),
    unshare,
    setpriv,
    ...(slirp && reason === undefined ? { slirp } : {}),
  };
}

function canOpen(path: string): boolean {
  try {
    accessSync(path, constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The protections of this build: the controller's part (per-build user, cgroup: given in
 * `LAMBKIN_BUILD_SANDBOX`) and the steps' part (probed here).
 */
export function buildProtections(probe: StepSandboxProbe = probeStepSandbox()): SandboxProtections {
  const fromController = parseProtections(process.env.LAMBKIN_BUILD_SANDBOX);
  return {
    perBuildUser: fromController.perBuildUser,
    cgroup: fromController.cgroup,
    network: probe.network,
    pidNamespace: probe.pidNamespace,
    privateTmp: probe.privateTmp,
    hostServices: fromController.hostServices,
  };
}

/**
 * The build log's line on what of the sandbox does not hold; only for the local stack (whose
 * controller sets `LAMBKIN_BUILD_SANDBOX`). On Lambda the runner functions' split by trust and their
 * container cleaning (src/runner/container-hygiene.ts) stand in for it.
 */
export function sandboxNotice(): string | undefined {
  if (process.env.LAMBKIN_BUILD_SANDBOX === undefined) return undefined;
  return sandboxWarning(buildProtections(), probeStepSandbox().reason);
}

/** The step sandbox for a build's work folders, or undefined when steps cannot be sandboxed here. */
export function stepSandboxFor(folders: { tmp: string; keep: string[] }): StepSandbox | undefined {
  const found = probeStepSandbox();
  if (!found.pidNamespace || !found.unshare || !found.setpriv) return undefined;
  return {
    unshare: found.unshare,
    setpriv: found.setpriv,
    ...(found.slirp ? { slirp: found.slirp } : {}),
    tmp: folders.tmp,
    keep: folders.keep,
    uid: process.getuid?.() ?? 0,
    gid: process.getgid?.() ?? 0,
  };
}

/**
 * Runs as pid 1 of the step's namespaces, as root of its user namespace (no host privilege):
 * mounts the private tmp, waits for the runner's go (a line on stdin: the network is up), then
 * runs the step in a nested user namespace as the runner's uid, forwarding TERM, INT and HUP (pid 1
 * gets no signal it has no handler for) and exiting with the step's status. `-p`: no BASH_ENV, no
 * functions from the step's environment. System tools by their system path only.
 */
const WRAPPER = `set -e
sys() { PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
tmp=$1 uid=$2 gid=$3 count=$4
shift 4
keeps=("\${@:1:count}")
shift "$count"
var_tmp=/var/tmp shm=/dev/shm
for keep in "\${keeps[@]}"; do
  case $keep in
    /tmp/*) target=$tmp/\${keep#/tmp/}; sys mkdir -p -- "$target"; sys mount --bind -- "$keep" "$target" ;;
    /var/tmp/*) var_tmp= ;;
    /dev/shm/*) shm= ;;
  esac
done
sys mount --rbind -- "$tmp" /tmp
if [ -n "$var_tmp" ] && [ -d /var/tmp ]; then sys mount --rbind -- "$tmp" /var/tmp; fi
if [ -n "$shm" ] && [ -d /dev/shm ]; then sys mount -t tmpfs -o mode=1777,nosuid,nodev lambkin-shm /dev/shm; fi
read -r _ || exit 125
exec </dev/null
set +e
unshare=$(PATH=/usr/sbin:/usr/bin:/sbin:/bin command -v unshare)
"$unshare" --user --map-user="$uid" --map-group="$gid" -- "$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM
trap 'kill -INT "$child" 2>/dev/null' INT
trap 'kill -HUP "$child" 2>/dev/null' HUP
while :; do
  wait "$child"
  status=$?
  kill -0 "$child" 2>/dev/null || break
done
exit "$status"`;

/** The command that runs `command` (file and arguments) in the step sandbox. */
export function sandboxedCommand(sandbox: StepSandbox, command: readonly string[]): [string, string[]] {
  return [
    sandbox.setpriv,
    [
      // If the runner dies (even by SIGKILL), unshare gets SIGKILL, and with it the whole namespace.
      '--pdeathsig',
      'SIGKILL',
      '--',
      sandbox.unshare,
      ...STEP_NAMESPACES,
      ...(sandbox.slirp ? ['--net'] : []),
      '--',
      '/bin/bash',
      '-p',
      '-c',
      WRAPPER,
      'lambkin-step',
      sandbox.tmp,
      String(sandbox.uid),
      String(sandbox.gid),
      String(sandbox.keep.length),
      ...sandbox.keep,
      ...command,
    ],
  ];
}

/** slirp4netns serving a step's network namespace; `stop()` kills it. */
export interface StepNetwork {
  stop(): void;
}

/**
 * Waits for the step's namespaces (made by the unshare with pid `pid`), starts slirp4netns for it
 * and resolves once the step's network is configured. Rejects (after killing slirp) if it fails.
 */
export async function startStepNetwork(
  sandbox: StepSandbox,
  pid: number,
  withinMs = 10_000,
): Promise<StepNetwork> {
  const slirpPath = sandbox.slirp;
  if (!slirpPath) return { stop: () => undefined };
  const deadline = Date.now() + withinMs;
  const ownNet = readlinkSync('/proc/self/ns/net');
  // unshare makes the namespaces, then writes the uid map and, after it, the gid map: slirp joins
  // once all are done (before the gid map, its setegid(0) fails: seen with 8 steps on 2 cores).
  for (;;) {
    let ready: boolean;
    try {
      ready =
        readlinkSync(`/proc/${pid}/ns/net`) !== ownNet &&
        readFileSync(`/proc/${pid}/uid_map`, 'utf8').trim().startsWith('0 ') &&
        readFileSync(`/proc/${pid}/gid_map`, 'utf8').trim().startsWith('0 ');
    } catch {
      throw new Error('the step ended before its network was set up');
    }
    if (ready) break;
    if (Date.now() > deadline) throw new Error('the step\u2019s namespaces did not appear in time');
    await sleep(2);
  }
  const slirp: ChildProcess = spawn(
    sandbox.setpriv,
    [
      '--pdeathsig',
      'SIGKILL',
      '--',
      slirpPath,
      '--configure',
      '--mtu=65520',
      '--disable-host-loopback',
      '--enable-sandbox',
      '--enable-seccomp',
      '--ready-fd=3',
      `--userns-path=/proc/${pid}/ns/user`,
      '--netns-type=pid',
      String(pid),
      'tap0',
    ],
    { stdio: ['ignore', 'ignore', 'pipe', 'pipe'], env: { PATH: '/usr/bin:/bin' } },
  );
  const stop = (): void => {
    for (const stream of slirp.stdio) stream?.destroy();
    if (slirp.exitCode === null && slirp.signalCode === null) slirp.kill('SIGKILL');
  };
  let stderr = '';
  slirp.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-2000)));
  try {
    await new Promise<void>((resolve, reject) => {
      const readyFd = slirp.stdio[3];
      const timer = setTimeout(
        () => reject(new Error(`slirp4netns was not ready within ${withinMs} ms`)),
        Math.max(deadline - Date.now(), 0),
      );
      readyFd?.on('data', () => {
        clearTimeout(timer);
        resolve();
      });
      slirp.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
      slirp.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`slirp4netns ended (${signal ?? `exit ${code}`}): ${stderr.trim().slice(-500)}`));
      });
    });
  } catch (error) {
    stop();
    throw error;
  }
  slirp.removeAllListeners('exit');
  return { stop };
}
