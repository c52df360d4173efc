/**
 * Deploys are the operator's decision: the controller decides from the settings and the default
 * branch's config (read through the contents API at the default branch), never the pushed
 * commit's. The deploy role is never assumed by the controller: it hands the runner a presigned
 * AssumeRole (checked here by a loopback STS), which the runner redeems only after install and
 * test passed, for the deploy step's environment alone.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import type { BuildRequest } from '../../src/core/build.js';
import type { SettingsDocument } from '../../src/core/settings.js';
import { repoScope } from '../../src/store/settings.js';
import { startControllerFixture, type ControllerFixture } from '../support/controller.js';
import { commitFiles, createGitRepo } from '../support/github-server.js';
import { startLoopbackSts, type LoopbackSts } from '../support/loopback-sts.js';

const ROLE = 'arn:aws:iam::123456789012:role/lambkin-deploy';
const OTHER_ROLE = 'arn:aws:iam::123456789012:role/not-trusting-lambkin';
const config = {
  install: [],
  test: 'echo "test sees $(env | grep -c "^AWS_") AWS variables"',
  deploy:
    'echo "deploy key=$AWS_ACCESS_KEY_ID region=$AWS_REGION token=${#AWS_SESSION_TOKEN} chars"; ' +
    'echo "deploy credentials sha256=$(printf %s "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY:$AWS_SESSION_TOKEN" | sha256sum | cut -c1-64)"',
};

let fixture: ControllerFixture;
let sts: LoopbackSts;
const folders: string[] = [];

beforeAll(async () => {
  fixture = await startControllerFixture('deploy-token');
  sts = await startLoopbackSts({ roles: [ROLE] });
});

afterAll(async () => {
  await sts.close();
  await fixture.close();
  for (const folder of folders) rmSync(folder, { recursive: true, force: true });
});

const stsRequestsFor = (sessionSuffix: string) =>
  sts.requests.filter((request) => request.includes(encodeURIComponent(sessionSuffix)));

/** A repository whose main branch holds `main`; `branches` adds branches off it with their own config. */
async function repository(
  name: string,
  main: object,
  branches: Record<string, object> = {},
  document: SettingsDocument = {},
): Promise<{ repo: `${string}/${string}`; sha: string; shas: Record<string, string> }> {
  const git = await createGitRepo({ '.lambkin.json': JSON.stringify(main) });
  folders.push(git.dir);
  const shas: Record<string, string> = {};
  for (const [branch, own] of Object.entries(branches)) {
    execFileSync('git', ['-C', git.dir, 'checkout', '--quiet', '-b', branch, 'main']);
    shas[branch] = await commitFiles(
      git.dir,
      { '.lambkin.json': JSON.stringify(own) },
      `Config of ${branch}`,
    );
  }
  execFileSync('git', ['-C', git.dir, 'checkout', '--quiet', 'main']);
  fixture.github.addRepository({ owner: 'octo', name, gitDir: git.dir });
  await fixture.settings.update(repoScope(`octo/${name}`), () => document);
  return { repo: `octo/${name}`, sha: git.sha, shas };
}

function build(request: Partial<BuildRequest> & Pick<BuildRequest, 'repo' | 'sha'>, withSts = true) {
  return fixture.build(request, withSts ? { ...fixture.deps, deployRoles: sts.grants() } : fixture.deps);
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

describe('the deploy role', () => {
  it('gives the deploy step, and only it, the role, assumed after the tests passed (masked in the log)', async () => {
    const target = await repository(
      'deploys',
      config,
      {},
      { deploy: { roleArn: ROLE, region: 'eu-west-1' } },
    );
    const before = sts.issued.length;
    const { done, log } = await build(target);
    expect(done.state).toBe('success');
    expect(log).toContain('test sees 0 AWS variables');
    expect(log).toContain(
      'Deploy allowed: main matches deployBranches of the config of the default branch main',
    );
    expect(log).toContain(`Deploy runs as the role ${ROLE}`);
    expect(log).toMatch(/deploy key=\*\*\* region=eu-west-1 token=\d{2,} chars/);
    // Exactly the credentials STS issued for this build reached the deploy step.
    expect(sts.issued).toHaveLength(before + 1);
    const issued = sts.issued.at(-1)!;
    expect(issued.roleArn).toBe(ROLE);
    expect(issued.sessionName).toMatch(/^lambkin-\d+-octo-deploys$/);
    expect(log).toContain(
      `deploy credentials sha256=${sha256(`${issued.accessKeyId}:${issued.secretAccessKey}:${issued.sessionToken}`)}`,
    );
    for (const secret of [issued.accessKeyId, issued.secretAccessKey, issued.sessionToken]) {
      expect(log).not.toContain(secret);
    }
    // The builder's own (the test process's) credentials are nowhere.
    for (const name of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN']) {
      const value = process.env[name];
      if (value) expect(log).not.toContain(value);
    }
  }, 60_000);

  it('runs the deploy step without AWS credentials when the settings name no role', async () => {
    const target = await repository('no-role', config);
    const { done, log } = await build(target, false);
    expect(done.state).toBe('success');
    expect(log).toContain('Deploy runs without AWS credentials (no deploy.roleArn in the settings)');
    expect(log).toContain('deploy key= region= token=0 chars');
  }, 60_000);

  it('ends the build `error` before any step when the builder cannot grant the role', async () => {
    const target = await repository('cannot-assume', config, {}, { deploy: { roleArn: ROLE } });
    const { done, log } = await build(target, false);
    expect(done.state).toBe('error');
    expect(done.description).toMatch(/settings name a deploy role .* but this builder cannot assume roles/);
    expect(log).not.toContain('test sees');
  }, 60_000);

  it('never fetches the grant when the tests fail', async () => {
    const target = await repository(
      'tests-fail',
      { ...config, test: 'echo failing; exit 3' },
      {},
      { deploy: { roleArn: ROLE } },
    );
    const { done, log } = await build(target);
    expect(done.state).toBe('failure');
    expect(log).not.toContain('Deploy runs as the role');
    expect(stsRequestsFor('octo-tests-fail')).toEqual([]);
  }, 60_000);

  it('ends the build `error`, naming the role and STS’s answer, when the role cannot be assumed', async () => {
    const target = await repository('refused', config, {}, { deploy: { roleArn: OTHER_ROLE } });
    const { done, log } = await build(target);
    expect(done.state).toBe('error');
    expect(done.description).toContain(
      `could not assume the deploy role ${OTHER_ROLE}: STS answered 403 AccessDenied`,
    );
    expect(log).toContain('test sees 0 AWS variables');
    expect(log).not.toContain('deploy key=');
    expect(stsRequestsFor('octo-refused')).toHaveLength(1);
  }, 60_000);
});

describe("the default branch's config decides, never the pushed commit's", () => {
  const main = { ...config, tags: true, deployBranches: ['main'] };

  it('does not deploy a feature branch whose own config says deployBranches ["**"]', async () => {
    const target = await repository(
      'feature-deploy',
      main,
      { 'feature/anything': { ...config, deployBranches: ['**'] } },
      { deploy: { roleArn: ROLE } },
    );
    const { done, log } = await build({
      repo: target.repo,
      sha: target.shas['feature/anything']!,
      branch: 'feature/anything',
      ref: 'refs/heads/feature/anything',
    });
    expect(done.state).toBe('success');
    expect(log).toContain(
      'Note: deployBranches ["**"] in this commit\'s .lambkin.json is ignored: whether a push deploys is decided by ' +
        ".lambkin.json of the default branch main and the operator's settings, never by the pushed commit",
    );
    expect(log).toContain(
      'Deploy skipped: feature/anything is not a deploy branch (deployBranches of .lambkin.json of the default branch main: main)',
    );
    expect(log).not.toContain('deploy key=');
    expect(stsRequestsFor('octo-feature-deploy')).toEqual([]);
    // The rules were read through the contents API, at the default branch.
    expect(
      fixture.github.requests.some(
        (request) =>
          request.path === '/repos/octo/feature-deploy/contents/.lambkin.json' &&
          request.query.ref === 'refs/heads/main',
      ),
    ).toBe(true);

    // A push to main deploys.
    const onMain = await build({ repo: target.repo, sha: target.sha });
    expect(onMain.done.state).toBe('success');
    expect(onMain.log).toMatch(/deploy key=\*\*\* region=\S+ token=\d+ chars/);
    expect(stsRequestsFor('octo-feature-deploy')).toHaveLength(1);
  }, 90_000);

  it("does not deploy a tag that only the tagged commit's deployTags name", async () => {
    const target = await repository(
      'tag-deploy',
      main,
      { tagged: { ...config, tags: true, deployTags: ['v*'] } },
      { deploy: { roleArn: ROLE } },
    );
    const { done, log } = await build({
      repo: target.repo,
      sha: target.shas.tagged!,
      ref: 'refs/tags/v1.0.0',
      branch: undefined,
      tag: 'v1.0.0',
    } as Partial<BuildRequest> & Pick<BuildRequest, 'repo' | 'sha'>);
    expect(done.state).toBe('success');
    expect(log).toContain('deployTags ["v*"] in this commit\'s .lambkin.json is ignored');
    expect(log).toContain('Deploy skipped: tag v1.0.0 is not a deploy tag');
    expect(log).not.toContain('deploy key=');
    expect(stsRequestsFor('octo-tag-deploy')).toEqual([]);
  }, 60_000);

  it("narrows deploys to the operator's deploy.branches without reading the default branch", async () => {
    const target = await repository(
      'operator-narrows',
      { ...config, deployBranches: ['**'] },
      { staging: { ...config, deployBranches: ['**'] } },
      { deploy: { roleArn: ROLE, branches: ['main'] } },
    );
    const { done, log } = await build({
      repo: target.repo,
      sha: target.shas.staging!,
      branch: 'staging',
      ref: 'refs/heads/staging',
    });
    expect(done.state).toBe('success');
    expect(log).toContain("Deploy skipped: staging is not in the settings' deploy.branches");
    expect(stsRequestsFor('octo-operator-narrows')).toEqual([]);
    expect(
      fixture.github.requests.some((request) =>
        request.path.startsWith('/repos/octo/operator-narrows/contents/'),
      ),
    ).toBe(false);
  }, 60_000);

  it("does not deploy when the default branch's config cannot be read, and says why", async () => {
    const target = await repository('unreadable', config, {}, { deploy: { roleArn: ROLE } });
    fixture.github.failNext({ mode: '500', times: 20, path: /^\/repos\/octo\/unreadable\/contents\// });
    const { done, log } = await build(target);
    fixture.github.clearFaults();
    expect(done.state).toBe('success');
    expect(log).toMatch(
      /Deploy skipped: the default branch's config \(main\) could not be read, so nothing may deploy: /,
    );
    expect(log).not.toContain('deploy key=');
    expect(stsRequestsFor('octo-unreadable')).toEqual([]);
  }, 90_000);

  it('never deploys untrusted pushes, and grants nothing for them', async () => {
    const target = await repository(
      'untrusted',
      { ...config, deployBranches: ['**'] },
      {},
      { deploy: { roleArn: ROLE } },
    );
    const { done, log } = await build({ ...target, trusted: false });
    expect(done.state).toBe('success');
    expect(log).toContain('Deploy skipped: untrusted builds never deploy');
    expect(stsRequestsFor('octo-untrusted')).toEqual([]);
  }, 60_000);
});
