/**
 * Which protections of the local build sandbox hold for a build (docs/design/build-sandbox.md).
 * Pure data: the runner and the controller each probe their part; the CLI or the docs can show it,
 * and a stack can refuse fork builds when it is weak.
 */
export interface SandboxProtections {
  /** The build (runner and steps) runs as a uid of its own, no other build's (local stack as root). */
  perBuildUser: boolean;
  /** Every process of the build is in a cgroup killed whole when the build ends. */
  cgroup: boolean;
  /**
   * Steps run in a network namespace of their own: no route to the host's loopback services and no
   * view of its sockets (`/proc/net/tcp`); the internet only through slirp4netns.
   */
  network: boolean;
  /** Steps run in a PID namespace of their own: they see and outlive nothing of theirs. */
  pidNamespace: boolean;
  /** Steps see a `/tmp` (and `/var/tmp`, `/dev/shm`) of their build only, removed with it. */
  privateTmp: boolean;
  /**
   * The build reaches none of the services the host offers on its own addresses (a firewall rule
   * for the sandbox uids): slirp4netns connects from the host, so without it a service listening
   * on 0.0.0.0 is reachable through the host's address.
   */
  hostServices: boolean;
}

export const NO_PROTECTIONS: SandboxProtections = {
  perBuildUser: false,
  cgroup: false,
  network: false,
  pidNamespace: false,
  privateTmp: false,
  hostServices: false,
};

const WHAT_FAILS: Record<keyof SandboxProtections, string> = {
  perBuildUser: 'builds share one user (a leftover of one build may read another\u2019s files)',
  cgroup: 'no cgroup holds the build',
  network: 'steps reach the host\u2019s loopback services and list its sockets',
  pidNamespace: 'steps see other processes and what they start may outlive the build',
  privateTmp: 'steps share the host\u2019s /tmp',
  hostServices: 'steps reach services the host offers on its own addresses (0.0.0.0)',
};

/** Every protection holds. */
export function isFullSandbox(protections: SandboxProtections): boolean {
  return Object.values(protections).every(Boolean);
}

/**
 * One line for the build log naming what does not hold, or undefined when everything does.
 * `reason` says why (e.g. "slirp4netns is not installed").
 */
export function sandboxWarning(protections: SandboxProtections, reason?: string): string | undefined {
  const missing = (Object.keys(WHAT_FAILS) as (keyof SandboxProtections)[]).filter(
    (key) => !protections[key],
  );
  if (missing.length === 0) return undefined;
  const what = missing.map((key) => WHAT_FAILS[key]).join('; ');
  return `Warning: the build sandbox is incomplete${reason ? ` (${reason})` : ''}: ${what}.`;
}

/** `perBuildUser,cgroup` ↔ protections: how the controller tells the runner what it set up. */
export function formatProtections(protections: Partial<SandboxProtections>): string {
  return (Object.keys(protections) as (keyof SandboxProtections)[])
    .filter((key) => protections[key])
    .join(',');
}

export function parseProtections(text: string | undefined): SandboxProtections {
  const names = new Set((text ?? '').split(',').map((name) => name.trim()));
  return {
    perBuildUser: names.has('perBuildUser'),
    cgroup: names.has('cgroup'),
    network: names.has('network'),
    pidNamespace: names.has('pidNamespace'),
    privateTmp: names.has('privateTmp'),
    hostServices: names.has('hostServices'),
  };
}
