/**
 * A hostile contributor against the controller's trust decisions, with real parts (the controller,
 * the runner as its own process, the GitHub stand-in, DynamoDB/S3-compatible servers). The builds
 * here are what the intake queues for a check suite GitHub made (event push, a branch, `trusted:
 * false`: nothing in the event proves the commit is the branch's own and not a fork's).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runControllerBuild } from '../../src/controller/controller.js';
import { TrustRoutedRunnerInvoker } from '../../src/controller/runner-invoker.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import { startLocalStack } from '../../src/local/stack.js';
import { decideDeploy, deployPrecheck, type DeployCandidate } from '../../src/core/deploy-policy.js';
import type { RunnerInput, RunnerOutcome } from '../../src/core/protocol.js';
import type { RunnerInvoker } from '../../src/core/ports.js';
import { interpretEvent } from '../../src/github/events.js';
import { createRunnerHandler } from '../../src/handlers/runner.js';
import { emptyFolder } from '../../src/runner/container-hygiene.js';
import { DeployCredentialsError, redeemDeployGrant } from '../../src/runner/deploy-credentials.js';
import { startLoopbackSts } from '../support/loopback-sts.js';
import { REPO_KEYS } from '../../src/core/protocol.js';
import { repoScope } from '../../src/store/settings.js';
import { startControllerFixture, type ControllerFixture } from '../support/controller.js';
import { testBuildRequest } from '../support/builds.js';
import { commitFiles, createGitRepo } from '../support/github-server.js';
import { checkEventPayload, fakeSha, pullRequestPayload } from '../support/payloads.js';

let fixture: ControllerFixture;
const folders: string[] = [];

beforeAll(async () => {
  fixture = await startControllerFixture('attacks-session4-token');
});

afterAll(async () => {
  await fixture.close();
  for (const folder of folders) rmSync(folder, { recursive: true, force: true });
});

async function hostileRepo(name: string, files: Record<string, string>): Promise<string> {
  const git = await createGitRepo(files);
  folders.push(git.dir);
  fixture.github.addRepository({ owner: 'octo', name, gitDir: git.dir });
  return git.sha;
}

/** A check suite's build of a commit that claims to be `main`: untrusted, not a pull request. */
const untrustedPush = { event: 'push', branch: 'main', ref: 'refs/heads/main', trusted: false } as const;

describe('an untrusted build that is not a pull request (a check suite of a fork commit)', () => {
  it("gets none of the repository's secrets, whatever its config asks", async () => {
    const secret = 'sk-attacks-session4-0123456789abcdef';
    const sha = await hostileRepo('suite-secrets', {
      '.lambkin.json': JSON.stringify({
        secrets: true,
        install: 'true',
        test: 'printf "SECRET-HEX=%s\\n" "$(printf %s "${DEPLOY_KEY:-none}" | od -An -tx1 | tr -d " \\n")"',
      }),
    });
    await fixture.settings.update(repoScope('octo/suite-secrets'), () => ({
      secretEnv: { DEPLOY_KEY: secret },
    }));
    const { done, log } = await fixture.build({ repo: 'octo/suite-secrets', sha, ...untrustedPush });
    expect(done.state).toBe('success');
    expect(log).toContain(`SECRET-HEX=${Buffer.from('none').toString('hex')}`);
    expect(log).not.toContain(Buffer.from(secret).toString('hex'));
  }, 60_000);

  it("does not become the branch's latest build, nor its badge", async () => {
    const sha = await hostileRepo('suite-badge', {
      '.lambkin.json': JSON.stringify({ install: 'true', test: 'exit 1' }),
    });
    const { done } = await fixture.build({ repo: 'octo/suite-badge', sha, ...untrustedPush });
    expect(done.state).toBe('failure');
    expect(await fixture.logs.getObjectText(REPO_KEYS.badge('octo/suite-badge', 'main'))).toBeUndefined();
    expect(
      await fixture.logs.getObjectText(REPO_KEYS.branchLatest('octo/suite-badge', 'main')),
    ).toBeUndefined();
    expect(await fixture.logs.getObjectText(REPO_KEYS.latest('octo/suite-badge'))).toBeUndefined();
  }, 60_000);
});

describe("the default branch's deploy rules", () => {
  it('are read from the default branch, not from a tag named like it', async () => {
    // main allows deploys of main alone (the default). Someone who may push tags but not main
    // pushes a tag named "main" whose config allows every branch, then pushes a topic branch.
    const deploy = 'echo "DEPLOY-RAN-$((6*7))"';
    const git = await createGitRepo({
      '.lambkin.json': JSON.stringify({ install: 'true', test: 'true', deploy }),
    });
    folders.push(git.dir);
    execFileSync('git', ['-C', git.dir, 'checkout', '--quiet', '-b', 'topic', 'main']);
    const topic = await commitFiles(
      git.dir,
      { '.lambkin.json': JSON.stringify({ install: 'true', test: 'true', deploy, deployBranches: ['**'] }) },
      'Every branch deploys',
    );
    execFileSync('git', ['-C', git.dir, 'tag', 'main', topic]);
    execFileSync('git', ['-C', git.dir, 'checkout', '--quiet', 'main']);
    fixture.github.addRepository({ owner: 'octo', name: 'tag-shadow', gitDir: git.dir });
    const { done, log } = await fixture.build({
      repo: 'octo/tag-shadow',
      sha: topic,
      branch: 'topic',
      ref: 'refs/heads/topic',
    });
    expect(done.state).toBe('success');
    expect(log).not.toContain('DEPLOY-RAN-42');
    // main itself still deploys.
    const main = await fixture.build({ repo: 'octo/tag-shadow', sha: git.sha });
    expect(main.log).toContain('DEPLOY-RAN-42');
  }, 60_000);
});

describe('trust from payload fields', () => {
  it("builds a pull request whose head repository differs from the base only in case as a fork's", () => {
    const payload = pullRequestPayload({ repo: 'octo/app', number: 3, headSha: fakeSha('case') });
    const pullRequest = payload.pull_request as { head: { repo: { full_name: string } } };
    pullRequest.head.repo.full_name = 'OCTO/App';
    const event = interpretEvent('pull_request', payload as unknown as Record<string, unknown>);
    expect(event).toMatchObject({ kind: 'build', candidate: { fork: true, headRepo: 'OCTO/App' } });
  });

  it("builds a pull request whose base is not the repository built (head = base = another) as a fork's", () => {
    const payload = pullRequestPayload({ repo: 'octo/app', number: 4, headSha: fakeSha('elsewhere') });
    const pullRequest = payload.pull_request as {
      head: { repo: { full_name: string } };
      base: { repo: { full_name: string } };
    };
    pullRequest.head.repo.full_name = 'stranger/app';
    pullRequest.base.repo.full_name = 'stranger/app';
    const event = interpretEvent('pull_request', payload as unknown as Record<string, unknown>);
    expect(event).toMatchObject({ kind: 'build', candidate: { repo: 'octo/app', fork: true } });
  });

  it("never takes another repository's build number from a check run's external_id", () => {
    for (const externalId of ['octo/other#1', 'OCTO/app#1', 'octo/app#1#2', 'octo/app#01', ' octo/app#1']) {
      const event = interpretEvent(
        'check_run',
        checkEventPayload('check_run', 'rerequested', { repo: 'octo/app', sha: fakeSha('x'), externalId }),
      );
      expect(event).toMatchObject({ kind: 'rerun', request: { repo: 'octo/app' } });
      expect(event.kind === 'rerun' && event.request.number).toBeFalsy();
    }
  });
});

describe('deploy decisions a pushed ref cannot game', () => {
  const rules = { deployBranches: ['main', 'release/*'], deployTags: ['v*'], source: 'test' };
  const push: DeployCandidate = { event: 'push', branch: 'main', trusted: true, defaultBranch: 'main' };
  const allowed = (build: Partial<DeployCandidate>, settings = {}) =>
    decideDeploy({ ...push, ...build } as DeployCandidate, settings, rules).allowed;

  it('matches branch and tag names literally: case, braces, extglobs and negations do not widen', () => {
    expect(allowed({})).toBe(true);
    for (const branch of [
      'MAIN',
      'Main',
      'main/x',
      '{main,x}',
      '@(main)',
      '!(x)',
      '+(main)',
      'release',
      'release/a/b',
    ]) {
      expect([branch, allowed({ branch })]).toEqual([branch, false]);
    }
    expect(allowed({ branch: undefined, tag: 'V1' })).toBe(false);
    expect(allowed({ branch: undefined, tag: 'x-v1' })).toBe(false);
    expect(allowed({ branch: undefined, tag: 'v1' })).toBe(true);
  });

  it('never deploys untrusted code, pull requests, or without a known default branch', () => {
    expect(allowed({ trusted: false })).toBe(false);
    expect(allowed({ trusted: 'true' as unknown as boolean })).toBe(true); // truthy: only the intake sets it
    expect(allowed({ event: 'pull_request' })).toBe(false);
    expect(allowed({ pr: 1 })).toBe(false);
    expect(allowed({ defaultBranch: undefined })).toBe(false);
    expect(allowed({ defaultBranch: '' })).toBe(false);
    expect(deployPrecheck({ ...push, branch: undefined }, {})).toMatchObject({ allowed: false });
  });

  it("deploys no merge queue's commit under the default rules (only a `**`-like deployBranches would)", () => {
    const queue = 'gh-readonly-queue/main/pr-4-0123456789abcdef0123456789abcdef01234567';
    expect(allowed({ branch: queue })).toBe(false);
    expect(
      decideDeploy({ ...push, branch: queue }, {}, { ...rules, deployBranches: ['main', '**'] }).allowed,
    ).toBe(true);
  });

  it("lets the operator's settings only narrow", () => {
    expect(allowed({}, { branches: ['**'] })).toBe(true);
    expect(allowed({ branch: 'feature' }, { branches: ['**'] })).toBe(false);
    expect(allowed({}, { branches: ['release/*'] })).toBe(false);
    expect(allowed({ branch: undefined, tag: 'v1' }, { tags: [] })).toBe(false);
  });
});

describe('routing builds by trust', () => {
  class Recording implements RunnerInvoker {
    readonly seen: unknown[] = [];
    constructor(private readonly name: string) {}
    run(input: RunnerInput): Promise<RunnerOutcome> {
      this.seen.push(input.build.trusted);
      return Promise.resolve({
        state: 'success',
        description: this.name,
        steps: [],
      } as unknown as RunnerOutcome);
    }
  }
  const input = (trusted: unknown) =>
    ({ kind: 'run', build: { repo: 'octo/app', number: 1, trusted } }) as unknown as RunnerInput;

  it('sends only `trusted: true` to the trusted function; the handlers refuse the other kind', async () => {
    const trusted = new Recording('trusted');
    const untrusted = new Recording('untrusted');
    const router = new TrustRoutedRunnerInvoker(trusted, untrusted);
    for (const value of [undefined, 'true', 1, null, {}, false]) await router.run(input(value));
    await router.run(input(true));
    expect(trusted.seen).toEqual([true]);
    expect(untrusted.seen).toHaveLength(6);
    const trustedHandler = createRunnerHandler({ trust: 'trusted', hygiene: { kind: 'off' } });
    for (const value of [undefined, 'true', 1, null]) {
      await expect(trustedHandler(input(value))).rejects.toThrow(/runs trusted builds only/);
    }
    const unconfigured = createRunnerHandler({ trust: undefined, hygiene: { kind: 'off' } });
    await expect(unconfigured(input(false))).rejects.toThrow(/runs no build/);
  });
});

describe("a build's leftovers in the tmp root", () => {
  it('are removed, or reported (so the container ends), never silently left: hidden, looping, deeper than PATH_MAX', async () => {
    const root = mkdtempSync(join(tmpdir(), 'attack-hygiene-'));
    folders.push(root);
    const tmp = join(root, 'tmp');
    const outside = join(root, 'outside');
    mkdirSync(tmp);
    mkdirSync(outside);
    writeFileSync(join(outside, 'keep-me'), 'x');
    writeFileSync(join(tmp, '.hidden'), 'x');
    mkdirSync(join(tmp, '...'));
    symlinkSync('loop', join(tmp, 'loop'));
    symlinkSync(outside, join(tmp, 'out'));
    // A tree whose paths exceed PATH_MAX (4096): made by relative steps, as a build can.
    let deep = join(tmp, 'deep');
    mkdirSync(deep);
    const part = 'd'.repeat(250);
    for (let depth = 0; depth < 20; depth++) {
      deep = join(deep, part);
      try {
        mkdirSync(deep);
      } catch {
        break; // the test's own absolute paths stop at PATH_MAX: deep enough
      }
    }
    const result = await emptyFolder(tmp);
    const left = readdirSync(tmp);
    expect(readdirSync(outside)).toEqual(['keep-me']);
    expect(left.filter((name) => name !== 'deep')).toEqual([]);
    // Whatever is left is reported: the sweep is then not clean and the handler ends the container.
    for (const name of left) expect(result.problems.join('\n')).toContain(join(tmp, name));
    rmSync(tmp, { recursive: true, force: true });
  });
});

describe("the deploy role's grant in a thief's hands", () => {
  const ROLE = 'arn:aws:iam::123456789012:role/lambkin-deploy';
  const ADMIN = 'arn:aws:iam::123456789012:role/admin';

  it('names one role, session and duration: changed or added parameters break its signature; it expires', async () => {
    const sts = await startLoopbackSts({ roles: [ROLE, ADMIN] });
    try {
      const grants = sts.grants();
      const request = { roleArn: ROLE, sessionName: 'lambkin-1-octo/app', durationSeconds: 900 };
      const grant = await grants.grant({ ...request, expiresInSeconds: 60 });
      const tampered = (change: (url: URL) => void) => {
        const url = new URL(grant.url);
        change(url);
        return fetch(url).then((response) => response.status);
      };
      expect(await tampered((url) => url.searchParams.set('RoleArn', ADMIN))).toBe(403);
      expect(await tampered((url) => url.searchParams.set('DurationSeconds', '43200'))).toBe(403);
      expect(await tampered((url) => url.searchParams.set('RoleSessionName', 'admin'))).toBe(403);
      expect(await tampered((url) => url.searchParams.append('Policy', '{"Statement":[]}'))).toBe(403);
      expect(await tampered((url) => url.searchParams.set('X-Amz-Expires', '604800'))).toBe(403);
      expect(sts.issued).toEqual([]);

      // Past its expiry STS refuses it too (not only the runner, which checks before sending).
      const short = await grants.grant({ ...request, expiresInSeconds: 1 });
      await new Promise((resolve) => setTimeout(resolve, 2100));
      expect((await fetch(short.url)).status).toBe(403);
      const refused = await redeemDeployGrant(short, { timeoutMs: 5000 }).catch((error: unknown) => error);
      expect(refused).toBeInstanceOf(DeployCredentialsError);
      // What the runner says of a refusal names neither the grant nor its signature.
      const denied = await redeemDeployGrant(
        { ...grant, url: grant.url.replace(encodeURIComponent(ROLE), encodeURIComponent(ADMIN)) },
        { timeoutMs: 5000 },
      ).catch((error: unknown) => error as Error);
      expect(denied).toBeInstanceOf(DeployCredentialsError);
      const signature = new URL(grant.url).searchParams.get('X-Amz-Signature') ?? '';
      expect(signature).not.toBe('');
      expect((denied as Error).message).not.toContain(signature);
      expect((denied as Error).message).not.toContain('X-Amz-Credential');
    } finally {
      await sts.close();
    }
  }, 20_000);
});

describe('a local stack not run as root', () => {
  it('runs no fork build that reaches its builder without the intake (a rebuild of one queued earlier)', async () => {
    const sha = await hostileRepo('local-fork', {
      '.lambkin.json': JSON.stringify({ install: 'true', test: 'echo FORK-STEP-RAN-$((6*7))' }),
    });
    const dataDir = mkdtempSync(join(tmpdir(), 'attack-local-stack-'));
    folders.push(dataDir);
    const stack = await startLocalStack({
      dataDir,
      port: 0,
      host: '127.0.0.1',
      githubApiUrl: fixture.github.url,
      githubToken: 'attacks-session4-token',
      webhookSecret: 'attacks-session4-secret',
      buildSandbox: false,
      logger: createMemoryLogger(),
    });
    try {
      expect(stack.intake.refuseUntrustedBuilds).toBeDefined();
      const { builds, logs } = stack.controller;
      const request = testBuildRequest({
        repo: 'octo/local-fork',
        sha,
        event: 'pull_request',
        ref: 'refs/pull/5/head',
        branch: 'feature',
        pr: 5,
        baseBranch: 'main',
        headRepo: 'stranger/local-fork',
        fork: true,
        trusted: false,
      });
      const number = await builds.allocateNumber(request.repo);
      await builds.putQueuedBuild(request, number, { deadline: Date.now() + 60_000 });
      const result = await runControllerBuild(stack.controller, {
        kind: 'build',
        repo: request.repo,
        number,
      });
      if (!result.ran) throw new Error(`build did not run: ${result.reason}`);
      expect(result.build.state).toBe('error');
      expect(result.build.description).toMatch(
        /untrusted build refused: pull requests from forks are not built/,
      );
      expect((await logs.readLog(result.build.logPrefix)) ?? '').not.toContain('FORK-STEP-RAN-42');
    } finally {
      await stack.stop();
    }
  }, 60_000);
});
