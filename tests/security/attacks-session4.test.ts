/**
 * A hostile contributor against the controller's trust decisions, with real parts (the controller,
 * the runner as its own process, the GitHub stand-in, DynamoDB/S3-compatible servers). The builds
 * here are what the intake queues for a check suite GitHub made (event push, a branch, `trusted:
 * false`: nothing in the event proves the commit is the branch's own and not a fork's).
 */
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { REPO_KEYS } from '../../src/core/protocol.js';
import { repoScope } from '../../src/store/settings.js';
import { startControllerFixture, type ControllerFixture } from '../support/controller.js';
import { commitFiles, createGitRepo } from '../support/github-server.js';

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
