/** `lambkin config` against the real DynamoDB-compatible server, through a local stack file. */
import { rmSync } from 'node:fs';
import { DynamoSettingsStore, GLOBAL_SCOPE, repoScope } from '../../src/store/settings.js';
import { createTestStorage, type TestStorage } from '../support/storage.js';
import { expectOneLine, runInProcess, writeLocalStack, type CliRun } from './helpers.js';

const REPO = 'octo-org/hello-world';
let storage: TestStorage;
let dataDir: string;
let settings: DynamoSettingsStore;

beforeAll(async () => {
  storage = await createTestStorage();
  dataDir = writeLocalStack(storage);
  settings = new DynamoSettingsStore(storage.clients.documents, storage.settingsTable);
});

afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

/** `lambkin config …` on the test stack. */
function config(...args: string[]): Promise<CliRun> {
  return runInProcess(['config', ...args, `--local=${dataDir}`]);
}

async function expectOk(run: Promise<CliRun>): Promise<CliRun> {
  const result = await run;
  expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 0, stderr: '' });
  return result;
}

async function expectRefused(run: Promise<CliRun>, message: RegExp): Promise<void> {
  const result = await run;
  expect(result.code).toBe(1);
  expect(result.stdout).toBe('');
  expectOneLine(result.stderr);
  expect(result.stderr).toMatch(/^lambkin: /);
  expect(result.stderr).toMatch(message);
}

describe('lambkin config set and get', () => {
  it('round-trips values of each type, parsed as JSON when they parse', async () => {
    const scope = ['--repo', 'octo-org/round-trip'];
    await expectOk(config('set', 'build.branches', '["main", "release/*"]', ...scope));
    await expectOk(config('set', 'build.pullRequests.forks', 'false', ...scope));
    await expectOk(config('set', 'config.timeout', '600', ...scope));
    await expectOk(config('set', 'config.test', 'npm test -- --ci', ...scope));
    await expectOk(config('set', 'config.env', '{"NODE_ENV":"test"}', ...scope));
    await expectOk(config('set', 'config.branches["release/1.x"].test', 'make test', ...scope));

    const stored = await settings.get(repoScope('octo-org/round-trip'));
    expect(stored).toEqual({
      build: { branches: ['main', 'release/*'], pullRequests: { forks: false } },
      config: {
        timeout: 600,
        test: 'npm test -- --ci',
        env: { NODE_ENV: 'test' },
        branches: { 'release/1.x': { test: 'make test' } },
      },
    });
    expect(JSON.parse((await expectOk(config('get', ...scope))).stdout)).toEqual(stored);
    expect((await expectOk(config('get', 'build.pullRequests.forks', ...scope))).stdout).toBe('false\n');
    expect((await expectOk(config('get', 'config.timeout', ...scope))).stdout).toBe('600\n');
    expect(JSON.parse((await expectOk(config('get', 'build.branches', ...scope))).stdout)).toEqual([
      'main',
      'release/*',
    ]);
    expect((await expectOk(config('get', 'config.branches["release/1.x"].test', ...scope))).stdout).toBe(
      '"make test"\n',
    );
    // What the webhook and the builder read: the repository's merged settings.
    const effective = await settings.effective('octo-org/round-trip');
    expect(effective.build.branches).toEqual(['main', 'release/*']);
    expect(effective.build.pullRequests.fromForkPublicRepo.build).toBe(false);
    expect(effective.build.pullRequests.fromForkPrivateRepo.build).toBe(false);
    expect(effective.build.pullRequests.fromSelfPublicRepo.build).toBe(true);
  });

  it('sets the pull-request policy per source and the deploy role', async () => {
    const scope = ['--repo', 'octo-org/policy'];
    await expectOk(config('set', 'build.pullRequests.fromForkPublicRepo.inheritSecrets', 'true', ...scope));
    await expectOk(
      config('set', 'build.pullRequests.fromForkPublicRepo.allowConfigOverrides', '["cmd","env"]', ...scope),
    );
    await expectOk(config('set', 'build.pullRequests.fromForkPrivateRepo', 'true', ...scope));
    await expectOk(config('set', 'build.pullRequests.fromForkPublicRepo.requireApproval', 'true', ...scope));
    await expectOk(config('set', 'deploy.roleArn', 'arn:aws:iam::123456789012:role/site-deploy', ...scope));
    const effective = await settings.effective('octo-org/policy');
    expect(effective.build.pullRequests.fromForkPublicRepo).toEqual({
      build: true,
      inheritSecrets: true,
      allowConfigOverrides: ['cmd', 'env'],
      requireApproval: true,
    });
    expect(effective.build.pullRequests.fromForkPrivateRepo.build).toBe(true);
    expect(effective.deploy).toEqual({ roleArn: 'arn:aws:iam::123456789012:role/site-deploy' });
  });

  it("sets the operator's CodeBuild consent, sizes, images and minutes, and refuses other values", async () => {
    const scope = ['--repo', 'octo-org/codebuild'];
    await expectOk(config('set', 'codebuild.repos', 'octo-org/*', ...scope));
    await expectOk(config('set', 'codebuild.computes', '["small","large"]', ...scope));
    await expectOk(
      config('set', 'codebuild.images', '123456789012.dkr.ecr.us-east-1.amazonaws.com/ci:22', ...scope),
    );
    await expectOk(config('set', 'codebuild.docker', 'true', ...scope));
    await expectOk(config('set', 'codebuild.monthlyMinutes', '3000', ...scope));
    expect((await settings.effective('octo-org/codebuild')).codebuild).toEqual({
      repos: ['octo-org/*'],
      computes: ['small', 'large'],
      images: ['123456789012.dkr.ecr.us-east-1.amazonaws.com/ci:22'],
      docker: true,
      monthlyMinutes: 3000,
    });
    await expectRefused(config('set', 'codebuild.computes', '["huge"]', ...scope), /small, medium, large/);
    await expectRefused(
      config('set', 'codebuild.monthlyMinutes', '1.5', ...scope),
      /whole number of minutes/,
    );
    await expectRefused(config('set', 'codebuild.docker', 'yes', ...scope), /true or false/);
    await expectRefused(config('set', 'codebuild.regions', '[]', ...scope), /not a known key/);
  });

  it('confirms a set on stdout, and takes a single glob for a list of them', async () => {
    const result = await expectOk(config('set', 'build.ignoreBranches', 'wip/*', '--repo', REPO));
    expect(result.stdout).toBe(`set build.ignoreBranches = ["wip/*"] (${REPO})\n`);
    expect((await settings.get(repoScope(REPO)))?.build?.ignoreBranches).toEqual(['wip/*']);
  });

  it('keeps global and repository documents apart', async () => {
    await expectOk(config('set', 'build.tags', 'true'));
    await expectOk(config('set', 'build.tags', 'false', '--repo', 'octo-org/scoped'));
    expect((await settings.get(GLOBAL_SCOPE))?.build?.tags).toBe(true);
    expect((await settings.get(repoScope('octo-org/scoped')))?.build?.tags).toBe(false);
    expect((await expectOk(config('get', 'build.tags'))).stdout).toBe('true\n');
    expect((await expectOk(config('get', 'build.tags', '--repo', 'octo-org/scoped'))).stdout).toBe('false\n');
  });

  it('--effective shows defaults, then global, then the repository', async () => {
    const repo = 'octo-org/effective';
    await expectOk(config('set', 'config.timeout', '300'));
    await expectOk(config('set', 'config.install', 'npm ci', '--repo', repo));
    const effective = JSON.parse((await expectOk(config('get', '--effective', '--repo', repo))).stdout) as {
      build: { branches: string[] };
      config: Record<string, unknown>;
    };
    expect(effective.build.branches).toEqual(['**']);
    expect(effective.config).toMatchObject({ timeout: 300, install: 'npm ci' });
    expect((await expectOk(config('get', 'config.timeout', '--effective', '--repo', repo))).stdout).toBe(
      '300\n',
    );
  });

  it('hides secret values unless --show-secrets, and keeps them as text', async () => {
    const repo = 'octo-org/secrets';
    const set = await expectOk(config('set', 'secretEnv.NPM_TOKEN', 'npm_s3cr3t', '--repo', repo));
    expect(set.stdout).toBe(`set secretEnv.NPM_TOKEN = *** (${repo})\n`);
    expect(set.stdout).not.toContain('s3cr3t');
    await expectOk(config('set', 'secretEnv.PIN', '0123', '--repo', repo));

    const whole = await expectOk(config('get', '--repo', repo));
    expect(JSON.parse(whole.stdout)).toEqual({ secretEnv: { NPM_TOKEN: '***', PIN: '***' } });
    expect((await expectOk(config('get', 'secretEnv.PIN', '--repo', repo))).stdout).toBe('"***"\n');
    const effective = await expectOk(config('get', '--effective', '--repo', repo));
    expect(effective.stdout).not.toContain('s3cr3t');
    const shown = await expectOk(config('get', 'secretEnv', '--show-secrets', '--repo', repo));
    expect(JSON.parse(shown.stdout)).toEqual({ NPM_TOKEN: 'npm_s3cr3t', PIN: '0123' });
  });

  it('prints {} for a scope with no settings yet', async () => {
    expect((await expectOk(config('get', '--repo', 'octo-org/empty'))).stdout).toBe('{}\n');
  });
});

describe('lambkin config unset', () => {
  it('removes the key and the objects it leaves empty', async () => {
    const repo = 'octo-org/unset';
    await expectOk(config('set', 'build.pullRequests.forks', 'false', '--repo', repo));
    await expectOk(config('set', 'config.timeout', '120', '--repo', repo));
    const result = await expectOk(config('unset', 'build.pullRequests.forks', '--repo', repo));
    expect(result.stdout).toBe(`unset build.pullRequests.forks (${repo})\n`);
    expect(await settings.get(repoScope(repo))).toEqual({ config: { timeout: 120 } });
    await expectOk(config('unset', 'config', '--repo', repo));
    expect(await settings.get(repoScope(repo))).toEqual({});
  });

  it('changes nothing, and says so, for a key that is not set', async () => {
    const result = await config('unset', 'build.tags', '--repo', 'octo-org/never-set');
    expect(result).toEqual({
      code: 0,
      stdout: '',
      stderr: 'build.tags was not set (octo-org/never-set); nothing changed\n',
    });
  });

  it('removes a stray key the settings shape does not know', async () => {
    const repo = 'octo-org/stray';
    await settings.update(repoScope(repo), () => ({ build: { tags: true }, legacy: 1 }) as never);
    await expectOk(config('unset', 'legacy', '--repo', repo));
    expect(await settings.get(repoScope(repo))).toEqual({ build: { tags: true } });
  });
});

describe('lambkin config refuses, in one line, and stores nothing', () => {
  const repo = 'octo-org/refused';

  afterEach(async () => {
    expect(await settings.get(repoScope(repo))).toBeUndefined();
  });

  it.each([
    [['set', 'build.tgas', 'true'], /settings key "build.tgas" is not a known key \(did you mean "tags"\?\)/],
    [['set', 'builds.tags', 'true'], /settings key "builds" is not a known key \(did you mean "build"\?\)/],
    [['set', 'build.tags', 'yes'], /"build.tags" must be true or false \(got "yes"\)/],
    [['set', 'build.tags.on', 'true'], /"build.tags" is true or false: it has no keys/],
    [['set', 'build.branches', '3'], /"build.branches" must be a name or glob, or a list of them \(got 3\)/],
    [['set', 'config.timeout', 'ten'], /settings: "config.timeout" must be a whole number of seconds/],
    [
      ['set', 'config.tset', 'npm test'],
      /settings key "config.tset" is not a known key \(did you mean "test"\?\)/,
    ],
    [['set', 'config.env.PATH', '/bin'], /"config.env.PATH" is reserved/],
    [['set', 'secretEnv.LAMBKIN_TOKEN', 'x'], /"secretEnv.LAMBKIN_TOKEN" is reserved/],
    [['set', 'secretEnv.1TOKEN', 'x'], /"secretEnv.1TOKEN" is not a variable name/],
    [['set', 'secretEnv', '{"TOKEN": 3}'], /"secretEnv.TOKEN" must be text/],
    [['set', 'build..tags', 'true'], /"build..tags" is not a settings key/],
    [
      ['set', 'build.pullRequests.fromForkPublicRepo.inheritSecret', 'true'],
      /settings key "build.pullRequests.fromForkPublicRepo.inheritSecret" is not a known key \(did you mean "inheritSecrets"\?\)/,
    ],
    [
      ['set', 'build.pullRequests.fromForkPublicRepo.allowConfigOverrides', '["test","secretEnv"]'],
      /"build.pullRequests.fromForkPublicRepo.allowConfigOverrides" lists "secretEnv", which is not a repository config key/,
    ],
    [['set', 'deploy.roleArn', 'deployer'], /"deploy.roleArn" must be an IAM role ARN/],
    [['get', 'build.tags'], /build.tags is not set \(octo-org\/refused\); --effective shows what applies/],
    [['get', 'nonsense'], /settings key "nonsense" is not a known key/],
    [['unset', 'nonsense'], /settings key "nonsense" is not a known key/],
  ])('config %j', async (args, message) => {
    await expectRefused(config(...args, '--repo', repo), message);
  });

  it('does not quote a secret value it refuses', async () => {
    const result = await config('set', 'secretEnv', '{"TOKEN": 12345}', '--repo', repo);
    expect(result.code).toBe(1);
    expect(result.stderr).not.toContain('12345');
  });

  it('leaves a usage error to commander: exit 2', async () => {
    const result = await config('set', 'build.tags', '--repo', repo);
    expect(result.code).toBe(2);
    expectOneLine(result.stderr);
    expect(result.stderr).toMatch(/missing required argument 'value'/);
  });
});
