/**
 * A hostile deploying build: its install and test steps look for AWS credentials, and for the
 * controller's grant of the deploy role, everywhere a step can (tests/security/deploy-probe.sh:
 * environment, /proc environ, every ancestor's environ, command line and memory, the files of the
 * work area) and find none; the deploy step alone gets the role's credentials, exactly those the
 * (loopback) STS issued when the runner redeemed the grant after the tests passed. One known gap
 * is recorded below: the grant itself can be read from the runner's memory where that is readable.
 * Runs as root on CI, where the runner and its steps run as nobody in a PID namespace of their own.
 */
import { createHash } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ControllerDependencies } from '../../src/controller/controller.js';
import { ProcessRunnerInvoker } from '../../src/controller/runner-invoker.js';
import type { DeployCredentialGrant } from '../../src/core/protocol.js';
import type { DeployRoleGrants } from '../../src/core/ports.js';
import { repoScope } from '../../src/store/settings.js';
import { startControllerFixture, type ControllerFixture } from '../support/controller.js';
import { createGitRepo } from '../support/github-server.js';
import { startLoopbackSts, type LoopbackSts } from '../support/loopback-sts.js';

const PROBE = readFileSync(fileURLToPath(new URL('./deploy-probe.sh', import.meta.url)), 'utf8');
const ROLE = 'arn:aws:iam::123456789012:role/lambkin-deploy';
const asRoot = process.getuid?.() === 0;

let fixture: ControllerFixture;
let sts: LoopbackSts;
const folders: string[] = [];

beforeAll(async () => {
  fixture = await startControllerFixture('deploy-security-token');
  sts = await startLoopbackSts({ roles: [ROLE] });
});

afterAll(async () => {
  await sts.close();
  await fixture.close();
  for (const folder of folders) rmSync(folder, { recursive: true, force: true });
});

/** The lines a phase's probe printed: what it found. */
function found(log: string, phase: string): string[] {
  return log.split('\n').filter((line) => line.startsWith(`FOUND[${phase}] `));
}

/** A repository `octo/<name>` of `files` whose settings give its deploys the role; its commit. */
async function deployingRepository(name: string, files: Record<string, string>): Promise<string> {
  const git = await createGitRepo(files);
  folders.push(git.dir);
  fixture.github.addRepository({ owner: 'octo', name, gitDir: git.dir });
  await fixture.settings.update(repoScope(`octo/${name}`), () => ({
    deploy: { roleArn: ROLE, region: 'eu-west-1' },
  }));
  return git.sha;
}

describe('a deploying build', () => {
  it('keeps the deploy role from install and test, and gives the deploy step working credentials', async () => {
    const sha = await deployingRepository('hostile-deploy', {
      'deploy-probe.sh': PROBE,
      '.lambkin.json': JSON.stringify({
        install: 'bash deploy-probe.sh install',
        test: 'bash deploy-probe.sh test',
        deploy: 'bash deploy-probe.sh deploy',
        timeout: 120,
      }),
    });
    // The grants the controller hands the runner, to look for them in what the steps found.
    const grants: DeployCredentialGrant[] = [];
    const inner = sts.grants();
    const deployRoles: DeployRoleGrants = {
      grant: async (request) => {
        const grant = await inner.grant(request);
        grants.push(grant);
        return grant;
      },
    };
    const deps: ControllerDependencies = {
      ...fixture.deps,
      deployRoles,
      ...(asRoot
        ? {
            // As the local stack runs as root: the build's own uid, steps in their own namespaces.
            runner: new ProcessRunnerInvoker({ sandbox: true, workRoot: '/tmp/lambkin-deploy-test-builds' }),
          }
        : {}),
    };
    const stsRequestsBefore = sts.requests.length;
    const { done, log } = await fixture.build({ repo: 'octo/hostile-deploy', sha }, deps);
    expect(done.state).toBe('success');
    expect(grants).toHaveLength(1);
    expect(sts.requests.length - stsRequestsBefore).toBe(1);
    const grant = grants[0]!;
    const signature = new URL(grant.url).searchParams.get('X-Amz-Signature')!;
    const issued = sts.issued.at(-1)!;

    for (const phase of ['install', 'test', 'deploy']) {
      for (const probe of ['env', 'ancestors', 'memory', 'files']) {
        expect(log).toContain(`##DEPLOY-PROBE-${phase}-${probe}-42`);
      }
    }
    if (asRoot) expect(log).toMatch(/deploy probe install: uid=[1-9]\d*/);

    for (const phase of ['install', 'test']) {
      const lines = found(log, phase);
      // No AWS credential variable in the step's environment, its /proc environ, or its work area.
      expect(lines.filter((line) => / (env|self-environ|files): /.test(line))).toEqual([]);
      if (asRoot) {
        // Its ancestors (the runner, in a PID namespace of its own) have none in environ or command line.
        expect(lines.filter((line) => / (environ|cmdline)-\d+: /.test(line))).toEqual([]);
      }
      // The deploy role's credentials are nowhere: they did not exist before the tests passed.
      for (const secret of [issued.accessKeyId, issued.secretAccessKey, issued.sessionToken]) {
        expect(lines.filter((line) => line.includes(secret))).toEqual([]);
      }
      // Nor the grant, in the environment, command lines or files (a part of its signature is enough).
      const grantLines = lines.filter(
        (line) => line.includes(signature.slice(0, 16)) || line.includes(grant.url),
      );
      expect(grantLines.filter((line) => !/ mem-\d+: /.test(line))).toEqual([]);
      // KNOWN GAP: the grant is a bearer token in the runner's memory, and a step running as the
      // runner's user reads /proc/<runner>/mem where the runner is dumpable (here: the runner and its
      // steps are both nobody in one PID namespace; in Lambda both are the sandbox's user). Such a
      // step can redeem the grant itself. This records the gap; it closes only with privilege
      // separation between the runner and its steps (a non-dumpable runner, or steps in a PID
      // namespace of their own), at which point the probe finds it no more and this flips.
      const memoryReadable = /maps-\d+: readable/.test(log);
      // As root each step runs in a PID namespace of its own: the runner is not there to read.
      if (asRoot) expect(memoryReadable).toBe(false);
      if (!memoryReadable) expect(grantLines).toEqual([]);
      else if (grantLines.length > 0) {
        console.warn(
          `KNOWN GAP (tests/security/deploy.test.ts): the ${phase} step read the deploy grant from the runner's memory`,
        );
      }
    }

    // The deploy step found its credentials (masked in the log), and they are the ones STS issued.
    const deployLines = found(log, 'deploy');
    expect(deployLines).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^FOUND\[deploy\] env: AWS_ACCESS_KEY_ID=\*\*\*$/),
        expect.stringMatching(/^FOUND\[deploy\] env: AWS_SESSION_TOKEN=\*\*\*$/),
      ]),
    );
    const hash = createHash('sha256')
      .update(`${issued.accessKeyId}:${issued.secretAccessKey}:${issued.sessionToken}`)
      .digest('hex');
    expect(log).toContain(`deploy credentials sha256=${hash}`);
    for (const secret of [issued.accessKeyId, issued.secretAccessKey, issued.sessionToken]) {
      expect(log).not.toContain(secret);
    }
  }, 120_000);

  it('never deploys a build whose test filled the disk past its quota in its last moment', async () => {
    // 24 MiB in two files (no one file may pass the 20 MiB quota) just before the test step
    // exits: the quota watcher (every second) never sees them; the check after the step must, and
    // before the deploy step starts or its role is assumed.
    const sha = await deployingRepository('fills-then-deploys', {
      '.lambkin.json': JSON.stringify({
        install: 'true',
        test: 'head -c 12582912 /dev/zero > filled-1; head -c 12582912 /dev/zero > filled-2',
        deploy: 'echo "deploy $((1 + 1)) ran"',
        timeout: 60,
      }),
    });
    const stsRequestsBefore = sts.requests.length;
    const { done, log } = await fixture.build(
      { repo: 'octo/fills-then-deploys', sha },
      { ...fixture.deps, deployRoles: sts.grants(), diskQuotaBytes: 20 * 1024 * 1024 },
    );
    expect(done).toMatchObject({
      state: 'error',
      description: 'disk quota exceeded: the build wrote more than 20 MiB under its work area (in test)',
    });
    expect(log).not.toContain('deploy 2 ran');
    expect(log).not.toContain('Deploy runs as the role');
    expect(sts.requests.length - stsRequestsBefore).toBe(0);
  }, 120_000);
});
