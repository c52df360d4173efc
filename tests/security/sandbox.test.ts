/**
 * The build sandbox (docs/design/build-sandbox.md) against hostile builds: real builds through the
 * controller and the runner process, no mocks. As root each build has a uid, cgroup and PID
 * namespace of its own (src/controller/build-sandbox.ts) and each step user, PID, mount and network
 * namespaces (src/runner/step-sandbox.ts); not as root the step sandbox alone, and the build log
 * says what does not hold.
 */
import { readFileSync, readdirSync, existsSync, rmSync, statSync } from 'node:fs';
import { connect, createServer, type AddressInfo } from 'node:net';
import { networkInterfaces } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { runControllerBuild, type ControllerDependencies } from '../../src/controller/controller.js';
import { ProcessRunnerInvoker } from '../../src/controller/runner-invoker.js';
import { runnerProgram } from '../../src/controller/runner-program.js';
import { DEFAULT_FIRST_SANDBOX_UID } from '../../src/controller/build-sandbox.js';
import { startControllerFixture, type ControllerFixture } from '../support/controller.js';
import { createGitRepo, type GitFiles } from '../support/github-server.js';
import { npmProject } from '../support/npm-projects.js';
import { testBuildRequest } from '../support/builds.js';
import { itAsRoot, requireTool } from '../support/tools.js';
import { waitFor } from '../support/wait.js';
import { processesRunning, stepAndRunner } from '../support/processes.js';

const TOKEN = 'sandbox-token';
const asRoot = process.getuid?.() === 0;
const SANDBOX_WORK = '/tmp/lambkin-sandbox-security';
const NOBODY_WORK = '/tmp/lambkin-sandbox-security-nobody';
const STATE_DIR = '/run/lambkin-sandbox-security';

let fixture: ControllerFixture;
const folders: string[] = [];

beforeAll(async () => {
  fixture = await startControllerFixture(TOKEN);
}, 60_000);

afterAll(async () => {
  await fixture?.close();
  for (const folder of folders) rmSync(folder, { recursive: true, force: true });
});

/** As the local stack runs as root: a sandbox per build. */
function sandboxed(options: { cgroup?: boolean } = {}): ControllerDependencies {
  return {
    ...fixture.deps,
    runner: new ProcessRunnerInvoker({
      sandbox: { stateDir: STATE_DIR, ...options },
      workRoot: SANDBOX_WORK,
    }),
  };
}

/** As a stack not run as root: the runner as nobody (or, not as root, as this user), no build sandbox. */
async function unprivileged(): Promise<ControllerDependencies> {
  const program = (await runnerProgram()).command;
  const command = asRoot
    ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--', ...program]
    : [...program];
  return { ...fixture.deps, runner: new ProcessRunnerInvoker({ command, workRoot: NOBODY_WORK }) };
}

let repoCount = 0;
async function repository(test: string, extra: GitFiles = {}): Promise<{ repo: string; sha: string }> {
  const name = `sandbox-${++repoCount}`;
  const git = await createGitRepo(npmProject({ test }, extra), { message: 'Initial commit' });
  folders.push(git.dir);
  fixture.github.addRepository({ owner: 'octo', name, gitDir: git.dir });
  return { repo: `octo/${name}`, sha: git.sha };
}

async function build(
  deps: ControllerDependencies,
  test: string,
  extra: GitFiles = {},
): Promise<{ state: string; log: string }> {
  const { repo, sha } = await repository(test, extra);
  const request = testBuildRequest({ repo, sha });
  const number = await fixture.builds.allocateNumber(repo);
  await fixture.builds.putQueuedBuild(request, number, { deadline: Date.now() + 60_000 });
  const result = await runControllerBuild(deps, { kind: 'build', repo, number });
  if (!result.ran) throw new Error(`build did not run: ${result.reason}`);
  return { state: result.build.state, log: (await fixture.logs.readLog(result.build.logPrefix)) ?? '' };
}

/** Loopback ports of the test's own "stack": the storage servers and the GitHub stand-in. */
function stackTargets(): string[] {
  const ports = [
    fixture.storage.backend.dynamodbEndpoint,
    fixture.storage.backend.s3Endpoint,
    fixture.github.url,
  ].map((url) => new URL(url).port);
  const hostAddresses = Object.values(networkInterfaces())
    .flat()
    .filter((address) => address && !address.internal && address.family === 'IPv4')
    .map((address) => address?.address ?? '');
  const targets = new Set<string>();
  for (const port of ports) {
    for (const host of ['127.0.0.1', '10.0.2.2', ...hostAddresses]) targets.add(`${host}:${port}`);
  }
  return [...targets];
}

/** A build whose step runs `marker`, its runner SIGKILLed from outside: the build errs, the step is gone. */
async function expectKilledRunnerTakesItsSteps(deps: ControllerDependencies, marker: string): Promise<void> {
  const running = build(deps, `echo ready; ${marker}`);
  const { runner } = await stepAndRunner(marker, 'runner.mjs');
  process.kill(runner, 'SIGKILL');
  expect((await running).state).toBe('error');
  for (let attempt = 0; attempt < 40 && (await processesRunning(marker)).length > 0; attempt++)
    await sleep(50);
  expect(await processesRunning(marker)).toEqual([]);
}

/** Lists listening sockets, then connects to every target: one line per attempt. */
const NETWORK_PROBE = `#!/bin/bash
echo "listening=$(awk 'NR>1 && $4=="0A"' /proc/net/tcp /proc/net/tcp6 2>/dev/null | wc -l)"
while read -r target; do
  if timeout 5 bash -c "exec 3<>/dev/tcp/\${target%:*}/\${target##*:}" 2>/dev/null; then
    echo "reached $target"
  else
    echo "refused $target"
  fi
done < targets.txt
`;

describe('the build sandbox, locally as root', () => {
  if (!requireTool('slirp4netns', 'the steps\u2019 network namespace', existsSync('/usr/bin/slirp4netns')))
    return;
  if (!requireTool('nft', 'the sandbox\u2019s host guard (nftables)')) return;

  itAsRoot(
    'a step reaches no service the host offers on 0.0.0.0, through any of its addresses',
    async () => {
      // A service of the host's (an sshd, a database) listening on every address.
      const accepted: string[] = [];
      const service = createServer((socket) => {
        accepted.push(socket.remoteAddress ?? '?');
        socket.destroy();
      });
      await new Promise<void>((resolve) => service.listen(0, '0.0.0.0', resolve));
      try {
        const port = (service.address() as AddressInfo).port;
        const addresses = Object.values(networkInterfaces())
          .flat()
          .filter((address) => address && !address.internal && address.family === 'IPv4')
          .map((address) => address?.address ?? '');
        expect(addresses.length).toBeGreaterThan(0);
        const targets = ['127.0.0.1', '10.0.2.2', ...addresses].map((host) => `${host}:${port}`);
        const { state, log } = await build(sandboxed(), 'bash probe.sh', {
          'probe.sh': NETWORK_PROBE,
          'targets.txt': targets.join('\n') + '\n',
        });
        expect(state).toBe('success');
        for (const target of targets) expect(log).toContain(`refused ${target}`);
        expect(accepted).toEqual([]);
        // The same service answers the host itself: the probe could have reached it.
        const reached = await new Promise<boolean>((resolve) => {
          const socket = connect(port, addresses[0]!, () => {
            socket.destroy();
            resolve(true);
          });
          socket.once('error', () => resolve(false));
        });
        expect(reached).toBe(true);
      } finally {
        await new Promise<void>((resolve) => service.close(() => resolve()));
      }
    },
    60_000,
  );

  itAsRoot(
    'a step sees none of the host\u2019s sockets and reaches none of the stack\u2019s ports, while the runner fetches and uploads',
    async () => {
      const targets = stackTargets();
      const { state, log } = await build(sandboxed(), 'bash probe.sh', {
        'probe.sh': NETWORK_PROBE,
        'targets.txt': targets.join('\n') + '\n',
      });
      // The build ran at all: the runner reached the tarball and the S3-compatible server.
      expect(state).toBe('success');
      expect(log).toContain('listening=0');
      for (const target of targets) expect(log).toContain(`refused ${target}`);
      expect(log).not.toContain('reached ');
      expect(log).not.toContain('the build sandbox is incomplete');
    },
    60_000,
  );

  itAsRoot(
    'a leftover of one build is gone when it ends, and meanwhile sees nothing of another build running with a secret',
    async () => {
      const secret = `sandbox-secret-${process.pid}-${Date.now()}`;
      const leftover = `sleep ${33_400 + (process.pid % 100)}`;
      const holding = `sleep ${36_400 + (process.pid % 100)}`;
      // B: a build whose step holds a secret in its environment until the test ends that process
      // (a fixed time could end before A looks, on a busy machine, and prove nothing).
      const victim = build(
        sandboxed(),
        `echo "uid=$(id -u)"; SECRET_VALUE=${secret} ${holding} || echo "woken"`,
      );
      const [holder] = await waitFor('the victim build holding its secret', async () => {
        const pids = await processesRunning(holding);
        return pids.length > 0 ? pids : undefined;
      });
      // The secret is there to find, for whoever can see the process.
      expect(readFileSync(`/proc/${holder}/environ`, 'utf8')).toContain(secret);
      // A: leaves processes behind (setsid, double fork) and looks for B's secret meanwhile.
      const attacker = await build(
        sandboxed(),
        `echo "uid=$(id -u)"; setsid ${leftover} </dev/null >/dev/null 2>&1 & (${leftover} </dev/null >/dev/null 2>&1 &); ` +
          `echo "processes=$(ls /proc | grep -c '^[0-9]')"; ` +
          `for i in 1 2 3; do grep -l ${secret} /proc/[0-9]*/environ 2>/dev/null && echo "STO""LEN"; sleep 0.5; done; echo done`,
      );
      // B still held the secret while A looked for it.
      expect(await processesRunning(holding)).toEqual([holder]);
      process.kill(holder!, 'SIGTERM');
      const done = await victim;
      expect(done.log).toContain('woken');
      expect(attacker.state).toBe('success');
      expect(done.state).toBe('success');
      expect(attacker.log).not.toContain('STOLEN');
      const processes = Number(/processes=(\d+)/.exec(attacker.log)?.[1]);
      expect(processes).toBeLessThan(20);
      const uidOf = (log: string): number => Number(/uid=(\d+)/.exec(log)?.[1]);
      expect(uidOf(attacker.log)).toBeGreaterThanOrEqual(DEFAULT_FIRST_SANDBOX_UID);
      expect(uidOf(done.log)).toBeGreaterThanOrEqual(DEFAULT_FIRST_SANDBOX_UID);
      expect(uidOf(attacker.log)).not.toBe(uidOf(done.log));
      expect(await processesRunning(leftover)).toEqual([]);
    },
    60_000,
  );

  itAsRoot(
    'with no cgroup (the fallback) every process of the build\u2019s uid still ends with it',
    async () => {
      const leftover = `sleep ${34_400 + (process.pid % 100)}`;
      const { state } = await build(
        sandboxed({ cgroup: false }),
        `setsid ${leftover} </dev/null >/dev/null 2>&1 & (${leftover} </dev/null >/dev/null 2>&1 &); echo started`,
      );
      expect(state).toBe('success');
      expect(await processesRunning(leftover)).toEqual([]);
    },
    60_000,
  );

  itAsRoot(
    'killing the runner from outside takes its steps with it',
    async () => {
      await expectKilledRunnerTakesItsSteps(sandboxed(), `sleep ${35_400 + (process.pid % 100)}`);
    },
    60_000,
  );

  itAsRoot(
    'files a step writes to /tmp stay in its build, and the build\u2019s work folder goes when it ends',
    async () => {
      const name = `lambkin-sandbox-file-${process.pid}-${Date.now()}`;
      const writer = await build(
        sandboxed(),
        `echo secret > /tmp/${name}; echo secret > /var/tmp/${name}; ls /tmp/${name}`,
      );
      expect(writer.state).toBe('success');
      expect(existsSync(`/tmp/${name}`)).toBe(false);
      expect(existsSync(`/var/tmp/${name}`)).toBe(false);
      const reader = await build(sandboxed(), `ls /tmp/${name} /var/tmp/${name} && echo "FOU""ND"; true`);
      expect(reader.state).toBe('success');
      expect(reader.log).not.toContain('FOUND');
      // Every build's work root is gone, and its slot free (an earlier test's build, killed from
      // outside, may still be in its teardown: allow it a few seconds).
      for (let attempt = 0; attempt < 50 && readdirSync(SANDBOX_WORK).length > 0; attempt++) await sleep(200);
      expect(readdirSync(SANDBOX_WORK)).toEqual([]);
      expect(readdirSync(`${STATE_DIR}/slots`)).toEqual([]);
    },
    60_000,
  );

  itAsRoot(
    'a step still reaches the npm registry (npm view)',
    async () => {
      const { state, log } = await build(sandboxed(), 'npm view is-number@7.0.0 version');
      expect(log).toMatch(/^7\.0\.0$/m);
      expect(state).toBe('success');
    },
    90_000,
  );
});

describe('the step sandbox, not as root', () => {
  it('says in the build log what does not hold, and what it claims holds does', async () => {
    const targets = stackTargets();
    const { state, log } = await build(
      await unprivileged(),
      `echo "processes=$(ls /proc | grep -c '^[0-9]')"; echo hi > /tmp/lambkin-sandbox-nobody-${process.pid}; bash probe.sh`,
      { 'probe.sh': NETWORK_PROBE, 'targets.txt': targets.join('\n') + '\n' },
    );
    expect(state).toBe('success');
    // Builds share this user, and no cgroup holds them: the log says so.
    expect(log).toMatch(/Warning: the build sandbox is incomplete.*builds share one user/);
    if (!/steps see other processes/.test(log)) {
      expect(Number(/processes=(\d+)/.exec(log)?.[1])).toBeLessThan(20);
    }
    if (!/steps share the host\u2019s \/tmp/.test(log)) {
      expect(existsSync(`/tmp/lambkin-sandbox-nobody-${process.pid}`)).toBe(false);
    }
    if (!/steps reach the host\u2019s loopback services/.test(log)) {
      expect(log).toContain('listening=0');
      expect(log).not.toContain('reached ');
    }
    // On Debian 12 user namespaces are open to every user: PID isolation and a private /tmp hold.
    if (process.env.CI === 'true')
      expect(log).not.toMatch(/steps see other processes|share the host\u2019s \/tmp/);
    // The network holds where this user may open /dev/net/tun (0600 on some machine images).
    const tunOpen = (statSync('/dev/net/tun', { throwIfNoEntry: false })?.mode ?? 0) & 0o006;
    if (asRoot && tunOpen !== 0o006) expect(log).toMatch(/\/dev\/net\/tun cannot be opened/);
    rmSync(`/tmp/lambkin-sandbox-nobody-${process.pid}`, { force: true });
  }, 60_000);

  it('killing the runner from outside takes its steps with it', async () => {
    await expectKilledRunnerTakesItsSteps(await unprivileged(), `sleep ${36_400 + (process.pid % 100)}`);
  }, 60_000);
});
