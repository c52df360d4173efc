/**
 * The deploy step's AWS access: only the role the repository's settings name, assumed through STS
 * (moto_server here) for the build; install and test never see AWS credentials, and the builder's
 * own never reach any step.
 */
import { rmSync } from 'node:fs';
import { runControllerBuild, type ControllerDependencies } from '../../src/builder/controller.js';
import { ProcessRunnerInvoker } from '../../src/builder/runner-invoker.js';
import { StsDeployRoleAssumer, createStsClient } from '../../src/aws/sts.js';
import type { SettingsDocument } from '../../src/core/settings.js';
import { resolveArchiveUrl } from '../../src/github/archive.js';
import { createGitHubClient } from '../../src/github/client.js';
import { GitHubStatusReporter } from '../../src/github/statuses.js';
import { createMemoryLogger } from '../../src/logger.js';
import { DynamoBuildStore } from '../../src/store/builds.js';
import { S3LogStore } from '../../src/store/logs.js';
import { DynamoSettingsStore, repoScope } from '../../src/store/settings.js';
import { testBuildRequest } from '../support/builds.js';
import { createGitRepo, startGitHubServer, type GitHubStandIn } from '../support/github-server.js';
import { createTestStorage } from '../support/storage.js';
import { requireTool } from '../support/tools.js';

const moto = process.env.LAMBKIN_TEST_MOTO_ENDPOINT;
const ROLE = 'arn:aws:iam::123456789012:role/lambkin-deploy';
const config = {
  install: [],
  test: 'echo "test sees $(env | grep -c "^AWS_") AWS variables"',
  deploy: 'echo "deploy key=$AWS_ACCESS_KEY_ID region=$AWS_REGION token=${#AWS_SESSION_TOKEN} chars"',
};

let github: GitHubStandIn;
let builds: DynamoBuildStore;
let settings: DynamoSettingsStore;
let logs: S3LogStore;
let deps: ControllerDependencies;
const folders: string[] = [];

beforeAll(async () => {
  const storage = await createTestStorage();
  github = await startGitHubServer({ token: 'deploy-token' });
  builds = new DynamoBuildStore(storage.clients.documents, storage.buildsTable);
  settings = new DynamoSettingsStore(storage.clients.documents, storage.settingsTable);
  logs = new S3LogStore(storage.clients.s3, storage.bucket);
  const octokit = createGitHubClient({ baseUrl: github.url, token: 'deploy-token' });
  deps = {
    builds,
    settings,
    statuses: new GitHubStatusReporter(octokit),
    logs,
    archives: { resolveArchiveUrl: (repo, sha) => resolveArchiveUrl(octokit, repo, sha) },
    runner: new ProcessRunnerInvoker(),
    logger: createMemoryLogger(),
    publicUrl: 'https://ci.example.test',
    runnerTimeoutMs: 60_000,
    logLimitBytes: 1024 * 1024,
  };
});

afterAll(async () => {
  await github.close();
  for (const folder of folders) rmSync(folder, { recursive: true, force: true });
});

async function deployBuild(name: string, document: SettingsDocument, options: { withSts: boolean }) {
  const repo = await createGitRepo({ '.lambkin.json': JSON.stringify(config) });
  folders.push(repo.dir);
  github.addRepository({ owner: 'octo', name, gitDir: repo.dir });
  await settings.update(repoScope(`octo/${name}`), () => document);
  const request = testBuildRequest({ repo: `octo/${name}`, sha: repo.sha });
  const number = await builds.allocateNumber(request.repo);
  await builds.putQueuedBuild(request, number, { deadline: Date.now() + 60_000 });
  const withRoles: ControllerDependencies =
    options.withSts && moto
      ? {
          ...deps,
          deployRoles: new StsDeployRoleAssumer(
            createStsClient({ endpoint: moto, region: 'us-east-1' }),
            'us-east-1',
          ),
        }
      : deps;
  const result = await runControllerBuild(withRoles, { kind: 'build', repo: request.repo, number });
  if (!result.ran) throw new Error(`build did not run: ${result.reason}`);
  return { done: result.build, log: (await logs.readLog(result.build.logPrefix)) ?? '' };
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
