/**
 * The deploy step's AWS access: only the role the repository's settings name, assumed through STS
 * (moto_server here) for the build; install and test never see AWS credentials, and the builder's
 * own never reach any step.
 */
import { rmSync } from 'node:fs';
import { StsDeployRoleAssumer, createStsClient } from '../../src/aws/sts.js';
import type { SettingsDocument } from '../../src/core/settings.js';
import { repoScope } from '../../src/store/settings.js';
import { startControllerFixture, type ControllerFixture } from '../support/controller.js';
import { createGitRepo } from '../support/github-server.js';
import { requireTool } from '../support/tools.js';

const moto = process.env.LAMBKIN_TEST_MOTO_ENDPOINT;
const ROLE = 'arn:aws:iam::123456789012:role/lambkin-deploy';
const config = {
  install: [],
  test: 'echo "test sees $(env | grep -c "^AWS_") AWS variables"',
  deploy: 'echo "deploy key=$AWS_ACCESS_KEY_ID region=$AWS_REGION token=${#AWS_SESSION_TOKEN} chars"',
};

let fixture: ControllerFixture;
const folders: string[] = [];

beforeAll(async () => {
  fixture = await startControllerFixture('deploy-token');
});

afterAll(async () => {
  await fixture.close();
  for (const folder of folders) rmSync(folder, { recursive: true, force: true });
});

async function deployBuild(name: string, document: SettingsDocument, options: { withSts: boolean }) {
  const repo = await createGitRepo({ '.lambkin.json': JSON.stringify(config) });
  folders.push(repo.dir);
  fixture.github.addRepository({ owner: 'octo', name, gitDir: repo.dir });
  await fixture.settings.update(repoScope(`octo/${name}`), () => document);
  const deployRoles =
    options.withSts && moto
      ? new StsDeployRoleAssumer(createStsClient({ endpoint: moto, region: 'us-east-1' }), 'us-east-1')
      : undefined;
  return fixture.build(
    { repo: `octo/${name}`, sha: repo.sha },
    deployRoles ? { ...fixture.deps, deployRoles } : fixture.deps,
  );
}

describe('the deploy role', () => {
  const hasSts = requireTool('moto_server', 'STS AssumeRole for the deploy role', moto !== undefined);

  (hasSts ? it : it.skip)(
    'gives the deploy step, and only it, the assumed role (masked in the log)',
    async () => {
      const { done, log } = await deployBuild(
        'deploys',
        { deploy: { roleArn: ROLE, region: 'eu-west-1' } },
        { withSts: true },
      );
      expect(done.state).toBe('success');
      expect(log).toContain('test sees 0 AWS variables');
      expect(log).toContain(`Deploy runs as the role ${ROLE}`);
      expect(log).toMatch(/deploy key=\*\*\* region=eu-west-1 token=\d{2,} chars/);
      // The builder's own (the test process's) credentials are nowhere.
      for (const name of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN']) {
        const value = process.env[name];
        if (value) expect(log).not.toContain(value);
      }
    },
    60_000,
  );

  it('runs the deploy step without AWS credentials when the settings name no role', async () => {
    const { done, log } = await deployBuild('no-role', {}, { withSts: false });
    expect(done.state).toBe('success');
    expect(log).toContain('Deploy runs without AWS credentials (no deploy.roleArn in the settings)');
    expect(log).toContain('deploy key= region= token=0 chars');
  }, 60_000);

  it('ends the build `error` before any step when the role cannot be assumed', async () => {
    const { done, log } = await deployBuild(
      'cannot-assume',
      { deploy: { roleArn: ROLE } },
      { withSts: false },
    );
    expect(done.state).toBe('error');
    expect(done.description).toMatch(/settings name a deploy role .* but this builder cannot assume roles/);
    expect(log).not.toContain('test sees');
  }, 60_000);
});
