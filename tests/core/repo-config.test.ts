import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import {
  DEFAULT_TIMEOUT_SECONDS,
  MAX_TIMEOUT_SECONDS,
  REPO_CONFIG_KEYS,
  REPO_CONFIG_SCHEMA,
  RepoConfigError,
  STATUS_DESCRIPTION_LIMIT,
  checkNodeVersion,
  readRepoConfig,
  resolveBuildConfig,
} from '../../src/core/repo-config.js';
import type { BuildContext, ResolvedBuildConfig } from '../../src/core/repo-config.js';

const roots: string[] = [];
afterAll(async () => {
  await Promise.all(roots.map((root) => rm(root, { recursive: true, force: true })));
});

/** A checkout in a temp folder; objects are written as JSON, strings as they are. */
async function checkout(files: Record<string, string | object> = {}): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'lambkin-repo-config-'));
  roots.push(root);
  for (const [name, content] of Object.entries(files)) {
    await mkdir(dirname(join(root, name)), { recursive: true });
    await writeFile(
      join(root, name),
      typeof content === 'string' ? content : JSON.stringify(content, null, 2),
    );
  }
  return root;
}

const push = (branch: string): BuildContext => ({ event: 'push', branch, defaultBranch: 'main' });
const pullRequest = (branch: string): BuildContext => ({
  event: 'pull_request',
  branch,
  pr: 7,
  defaultBranch: 'main',
});
const tagPush = (tag: string): BuildContext => ({ event: 'push', tag, defaultBranch: 'main' });

async function resolveIn(
  files: Record<string, string | object>,
  build: BuildContext = push('main'),
  settingsConfig: Record<string, unknown> = {},
): Promise<ResolvedBuildConfig> {
  const repo = await readRepoConfig(await checkout(files));
  return resolveBuildConfig({ settingsConfig, repo, build });
}

/** The RepoConfigError `run` throws (fails the test when it throws nothing or something else). */
async function configError(run: () => unknown): Promise<RepoConfigError> {
  try {
    await run();
  } catch (error) {
    if (error instanceof RepoConfigError) return error;
    throw error;
  }
  throw new Error('expected a RepoConfigError');
}

const npmProject = { 'package.json': { name: 'app', scripts: { test: 'node test.js' } } };

describe('defaults without any config', () => {
  it('runs npm ci then npm test when a package-lock.json exists, and deploys nothing', async () => {
    const resolved = await resolveIn({ ...npmProject, 'package-lock.json': '{}' });
    expect(resolved).toEqual({
      install: ['npm ci'],
      test: ['npm test'],
      deploy: [],
      env: {},
      timeoutSeconds: DEFAULT_TIMEOUT_SECONDS,
      deployBranches: ['main'],
      deployTags: [],
      git: {},
      tags: false,
      build: true,
      runsOn: 'lambda',
      secrets: true,
      cache: { enabled: true, paths: [] },
      source: ['defaults'],
      warnings: [],
    });
  });

  it('counts npm-shrinkwrap.json as a lockfile', async () => {
    expect((await resolveIn({ ...npmProject, 'npm-shrinkwrap.json': '{}' })).install).toEqual(['npm ci']);
  });

  it('runs npm install without a lockfile', async () => {
    const resolved = await resolveIn(npmProject);
    expect(resolved.install).toEqual(['npm install']);
    expect(resolved.test).toEqual(['npm test']);
  });

  it('lets the caller say whether there is a lockfile', async () => {
    const repo = await readRepoConfig(await checkout(npmProject));
    expect(repo.hasLockfile).toBe(false);
    const resolved = resolveBuildConfig({ settingsConfig: {}, repo, build: push('main'), hasLockfile: true });
    expect(resolved.install).toEqual(['npm ci']);
  });

  it('warns when the npm defaults will run in a repository without package.json', async () => {
    const resolved = await resolveIn({});
    expect(resolved.install).toEqual(['npm install']);
    expect(resolved.warnings).toEqual([expect.stringContaining('there is no package.json')]);
    const configured = await resolveIn({ '.lambkin.json': { install: [], test: 'make test' } });
    expect(configured.warnings).toEqual([]);
  });
});

describe('each key of .lambkin.json', () => {
  it('takes install, test and deploy as one command or a list, and [] skips a step', async () => {
    const resolved = await resolveIn({
      ...npmProject,
      '.lambkin.json': { install: [], test: ['npm run lint', 'npm test -- --ci'], deploy: 'npm publish' },
    });
    expect(resolved.install).toEqual([]);
    expect(resolved.test).toEqual(['npm run lint', 'npm test -- --ci']);
    expect(resolved.deploy).toEqual(['npm publish']);
  });

  it('turns env numbers and booleans into strings', async () => {
    const resolved = await resolveIn({
      '.lambkin.json': { env: { NODE_ENV: 'test', RETRIES: 3, VERBOSE: true, RATIO: 0.5 } },
    });
    expect(resolved.env).toEqual({ NODE_ENV: 'test', RETRIES: '3', VERBOSE: 'true', RATIO: '0.5' });
  });

  it('reads timeout in seconds, up to the runner limit', async () => {
    expect((await resolveIn({ '.lambkin.json': { timeout: 120 } })).timeoutSeconds).toBe(120);
    expect((await resolveIn({ '.lambkin.json': { timeout: MAX_TIMEOUT_SECONDS } })).timeoutSeconds).toBe(
      MAX_TIMEOUT_SECONDS,
    );
    const error = await configError(() =>
      resolveIn({ '.lambkin.json': { timeout: MAX_TIMEOUT_SECONDS + 1 } }),
    );
    expect(error.message).toBe(
      `.lambkin.json: "timeout" must be a whole number of seconds from 1 to ${MAX_TIMEOUT_SECONDS} (got ${MAX_TIMEOUT_SECONDS + 1})`,
    );
  });

  it('reads git.depth for a shallow clone', async () => {
    expect((await resolveIn({ '.lambkin.json': { git: { depth: 25 } } })).git).toEqual({ depth: 25 });
    expect((await resolveIn({ '.lambkin.json': { git: {} } })).git).toEqual({});
  });

  it('passes the node range on, and accepts a $schema key for editors', async () => {
    const resolved = await resolveIn({
      '.lambkin.json': { $schema: './node_modules/lambkin/schema/lambkin.schema.json', node: '>=20 <23' },
    });
    expect(resolved.node).toBe('>=20 <23');
    expect(resolved.source).toEqual(['defaults', '.lambkin.json']);
  });

  it('skips tag pushes unless tags is true', async () => {
    const off = await resolveIn({}, tagPush('v1.0.0'));
    expect(off.build).toBe(false);
    expect(off.skipReason).toBe('tag pushes are not built: set "tags": true in .lambkin.json');
    const on = await resolveIn({ '.lambkin.json': { tags: true } }, tagPush('v1.0.0'));
    expect(on.build).toBe(true);
    expect(on.tags).toBe(true);
    expect(on.deployTags).toEqual([]);
  });

  it('skips a build whose config says build: false, and says where', async () => {
    const resolved = await resolveIn(
      { '.lambkin.json': { branches: { 'gh-pages': { build: false } } } },
      push('gh-pages'),
    );
    expect(resolved.build).toBe(false);
    expect(resolved.skipReason).toBe('"build" is false in branches[\'gh-pages\'] (.lambkin.json)');
    expect((await resolveIn({ '.lambkin.json': { build: false } })).skipReason).toBe(
      '"build" is false in .lambkin.json',
    );
  });

  it('keeps secrets away from the build when secrets is false', async () => {
    expect((await resolveIn({ '.lambkin.json': { secrets: false } })).secrets).toBe(false);
  });
});

// Whether a build deploys is not the checkout's call: src/core/deploy-policy.ts decides, from the
// default branch's rules (tests/core/deploy-policy.test.ts). Resolving still reads the rules.
describe('deploy rules (as read; the controller decides from the default branch)', () => {
  const deploying = { '.lambkin.json': { deploy: './deploy.sh' } };

  it('defaults to the default branch and no tags', async () => {
    expect((await resolveIn(deploying, push('main'))).deployBranches).toEqual(['main']);
    expect(
      (await resolveIn(deploying, { event: 'push', branch: 'trunk', defaultBranch: 'trunk' })).deployBranches,
    ).toEqual(['trunk']);
    expect((await resolveIn(deploying, push('main'))).deployTags).toEqual([]);
  });

  it('reads deployBranches and deployTags as lists', async () => {
    const config = {
      '.lambkin.json': { deploy: './deploy.sh', deployBranches: 'release/*', deployTags: ['v*'] },
    };
    const resolved = await resolveIn(config, push('feature/x'));
    expect(resolved.deployBranches).toEqual(['release/*']);
    expect(resolved.deployTags).toEqual(['v*']);
    expect(resolved.deploy).toEqual(['./deploy.sh']);
  });

  it('has no deploy branch when the default branch is unknown', async () => {
    const resolved = await resolveIn({ ...npmProject, ...deploying }, { event: 'push', branch: 'main' });
    expect(resolved.deployBranches).toEqual([]);
  });
});

describe('precedence, lowest first', () => {
  it('settings beat the built-in defaults', async () => {
    const resolved = await resolveIn(npmProject, push('main'), { test: 'make check', timeout: 300 });
    expect(resolved.test).toEqual(['make check']);
    expect(resolved.timeoutSeconds).toBe(300);
    expect(resolved.source).toEqual(['defaults', 'settings']);
  });

  it('package.json "lambci" beats settings', async () => {
    const resolved = await resolveIn(
      { 'package.json': { lambci: { cmd: 'from-package-lambci' } } },
      push('main'),
      {
        test: 'from-settings',
      },
    );
    expect(resolved.test).toEqual(['from-package-lambci']);
  });

  it('.lambci.json beats package.json "lambci"', async () => {
    const resolved = await resolveIn({
      'package.json': { lambci: { cmd: 'from-package-lambci' } },
      '.lambci.json': { cmd: 'from-lambci-file' },
    });
    expect(resolved.test).toEqual(['from-lambci-file']);
  });

  it('package.json "lambkin" beats .lambci.json (ours wins over LambCI)', async () => {
    const resolved = await resolveIn({
      'package.json': { lambkin: { test: 'from-package-lambkin' } },
      '.lambci.json': { cmd: 'from-lambci-file' },
    });
    expect(resolved.test).toEqual(['from-package-lambkin']);
  });

  it('.lambkin.json beats package.json "lambkin"', async () => {
    const resolved = await resolveIn({
      'package.json': { lambkin: { test: 'from-package-lambkin', timeout: 100 } },
      '.lambkin.json': { test: 'from-lambkin-file' },
    });
    expect(resolved.test).toEqual(['from-lambkin-file']);
    expect(resolved.timeoutSeconds).toBe(100);
    expect(resolved.source).toEqual(['defaults', 'package.json "lambkin"', '.lambkin.json']);
  });

  it('the matching branches entry beats .lambkin.json', async () => {
    const files = { '.lambkin.json': { test: 'top', branches: { main: { test: 'for-main' } } } };
    expect((await resolveIn(files, push('main'))).test).toEqual(['for-main']);
    expect((await resolveIn(files, push('other'))).test).toEqual(['top']);
  });

  it('the pullRequests entry beats .lambkin.json', async () => {
    const resolved = await resolveIn(
      { '.lambkin.json': { test: 'top', pullRequests: { test: 'for-prs' } } },
      pullRequest('feature'),
    );
    expect(resolved.test).toEqual(['for-prs']);
    expect(resolved.source).toEqual(['defaults', '.lambkin.json', 'pullRequests (.lambkin.json)']);
  });

  it('merges env and git key by key across every layer', async () => {
    const resolved = await resolveIn(
      {
        'package.json': { lambkin: { env: { FROM_PACKAGE: 'p', SHARED: 'package' } } },
        '.lambkin.json': {
          env: { FROM_FILE: 'f', SHARED: 'file' },
          branches: { main: { env: { FROM_BRANCH: 'b', SHARED: 'branch' } } },
        },
      },
      push('main'),
      { env: { FROM_SETTINGS: 's', SHARED: 'settings' }, git: { depth: 3 } },
    );
    expect(resolved.env).toEqual({
      FROM_SETTINGS: 's',
      FROM_PACKAGE: 'p',
      FROM_FILE: 'f',
      FROM_BRANCH: 'b',
      SHARED: 'branch',
    });
    expect(resolved.git).toEqual({ depth: 3 });
    expect(resolved.source).toEqual([
      'defaults',
      'settings',
      'package.json "lambkin"',
      '.lambkin.json',
      'branches.main (.lambkin.json)',
    ]);
  });
});

describe('branches entries', () => {
  const branches = {
    '/^release\\/1\\./': { test: 'regex' },
    'release/*': { test: 'glob' },
    'release/1.0': { test: 'exact' },
    '!/^(main|release\\/.*)$/': { test: 'negated regex' },
  };

  it('prefers the exact name, then the first matching glob or /regex/ in file order', async () => {
    const files = { '.lambkin.json': { test: 'top', branches } };
    expect((await resolveIn(files, push('release/1.0'))).test).toEqual(['exact']);
    expect((await resolveIn(files, push('release/1.5'))).test).toEqual(['regex']);
    expect((await resolveIn(files, push('release/2.0'))).test).toEqual(['glob']);
    expect((await resolveIn(files, push('feature/x'))).test).toEqual(['negated regex']);
    expect((await resolveIn(files, push('main'))).test).toEqual(['top']);
  });

  it('supports negated globs, and globs do not cross "/" unless written **', async () => {
    const files = {
      '.lambkin.json': { branches: { 'feature/*': { test: 'one level' }, '!main': { test: 'not main' } } },
    };
    expect((await resolveIn(files, push('feature/x'))).test).toEqual(['one level']);
    expect((await resolveIn(files, push('feature/x/y'))).test).toEqual(['not main']);
    expect((await resolveIn(files, push('main'))).test).toEqual(['npm test']);
  });

  it('tries the patterns of higher layers first', async () => {
    const resolved = await resolveIn(
      { '.lambkin.json': { branches: { 'release/*': { test: 'from file' } } } },
      push('release/3'),
      { branches: { '/^release/': { test: 'from settings' } } },
    );
    expect(resolved.test).toEqual(['from file']);
  });

  it('merges an entry defined in several layers', async () => {
    const resolved = await resolveIn(
      { '.lambkin.json': { branches: { main: { test: 'file test' } } } },
      push('main'),
      { branches: { main: { deploy: 'settings deploy', test: 'settings test' } } },
    );
    expect(resolved.test).toEqual(['file test']);
    expect(resolved.deploy).toEqual(['settings deploy']);
    expect(resolved.source).toContain('branches.main (settings, .lambkin.json)');
  });

  it('applies no branches entry to pull requests or tags', async () => {
    const files = { '.lambkin.json': { tags: true, branches: { '**': { test: 'branch entry' } } } };
    expect((await resolveIn(files, pullRequest('feature'))).test).toEqual(['npm test']);
    expect((await resolveIn(files, tagPush('v1'))).test).toEqual(['npm test']);
    expect((await resolveIn(files, push('feature'))).test).toEqual(['branch entry']);
  });
});

describe('settings store config', () => {
  it('is validated with the same schema, and problems name settings', async () => {
    const error = await configError(() => resolveIn({}, push('main'), { timeout: 'ten' }));
    expect(error.message).toBe(
      'settings: "config.timeout" must be a whole number of seconds from 1 to 28800 (got "ten")',
    );
    expect(error.source).toBe('settings');
    expect(error.detail).toContain("Fix the settings store's config");
  });

  it('allowConfigOverrides false ignores repository files', async () => {
    const resolved = await resolveIn(
      { ...npmProject, '.lambkin.json': { test: 'from file' } },
      push('main'),
      {
        test: 'pinned',
        allowConfigOverrides: false,
      },
    );
    expect(resolved.test).toEqual(['pinned']);
    expect(resolved.source).toEqual(['defaults', 'settings']);
    expect(resolved.warnings).toEqual([expect.stringContaining('.lambkin.json was not used')]);
  });

  it('an allowConfigOverrides list lets only those keys through, in entries too', async () => {
    const resolved = await resolveIn(
      {
        ...npmProject,
        '.lambkin.json': {
          test: 'from file',
          deploy: 'sneaky',
          branches: { main: { env: { A: '1' }, deploy: 'sneakier' } },
        },
      },
      push('main'),
      { allowConfigOverrides: ['test', 'env', 'branches'] },
    );
    expect(resolved.test).toEqual(['from file']);
    expect(resolved.deploy).toEqual([]);
    expect(resolved.env).toEqual({ A: '1' });
    expect(resolved.warnings).toEqual([
      expect.stringMatching(/"deploy" not used.*permits only test, env, branches/),
    ]);
  });

  it('allowConfigOverrides may not be set by a repository file', async () => {
    const error = await configError(() => resolveIn({ '.lambkin.json': { allowConfigOverrides: true } }));
    expect(error.message).toBe(
      '.lambkin.json: "allowConfigOverrides" is not a known key: it can only be set in the settings store',
    );
  });
});

describe('config code is never executed', () => {
  it('ignores lambkin.config.js and .lambci.js, and says so in the warnings', async () => {
    const root = await checkout({ 'package.json': { name: 'app' } });
    const marker = join(root, 'executed.txt');
    const code = `require('node:fs').writeFileSync(${JSON.stringify(marker)}, 'ran');\nmodule.exports = { test: 'evil' };\n`;
    for (const name of ['lambkin.config.js', '.lambkin.js', '.lambci.js', 'lambkin.config.mjs']) {
      await writeFile(join(root, name), code);
    }
    const repo = await readRepoConfig(root);
    const resolved = resolveBuildConfig({ settingsConfig: {}, repo, build: push('main') });
    expect(existsSync(marker)).toBe(false);
    expect(resolved.test).toEqual(['npm test']);
    expect(resolved.warnings).toEqual(
      expect.arrayContaining([
        'lambkin.config.js was not run: Lambkin never executes config code; put its settings in .lambkin.json',
        '.lambci.js was not run: Lambkin never executes config code; put its settings in .lambci.json or .lambkin.json',
      ]),
    );
    // The file is live code: running it does create the marker.
    execFileSync(process.execPath, [join(root, 'lambkin.config.js')]);
    expect(await readFile(marker, 'utf8')).toBe('ran');
  });
});

describe('broken configs', () => {
  it('bad JSON names the file, line and column', async () => {
    const root = await checkout({ '.lambkin.json': '{\n  "test": "npm test",\n}\n' });
    const error = await configError(() => readRepoConfig(root));
    expect(error.message).toMatch(/^\.lambkin\.json is not valid JSON at line 3, column 1 \(/);
    expect(error.source).toBe('.lambkin.json');
  });

  it('an empty file is not valid JSON', async () => {
    const error = await configError(async () => readRepoConfig(await checkout({ '.lambkin.json': '' })));
    expect(error.message).toMatch(/^\.lambkin\.json is not valid JSON \(/);
  });

  it('a wrong type names file, key and expectation', async () => {
    const error = await configError(async () =>
      readRepoConfig(await checkout({ '.lambkin.json': { timeout: 'ten' } })),
    );
    expect(error.message).toBe(
      '.lambkin.json: "timeout" must be a whole number of seconds from 1 to 28800 (got "ten")',
    );
    expect(error.code).toBe('REPO_CONFIG');
    expect(error.problems).toEqual([
      {
        source: '.lambkin.json',
        path: 'timeout',
        message: 'must be a whole number of seconds from 1 to 28800 (got "ten")',
      },
    ]);
  });

  it('an unknown key is named, with a suggestion', async () => {
    const error = await configError(async () =>
      readRepoConfig(await checkout({ '.lambkin.json': { tset: 'x' } })),
    );
    expect(error.message).toBe('.lambkin.json: "tset" is not a known key (did you mean "test"?)');
    const far = await configError(async () =>
      readRepoConfig(await checkout({ '.lambkin.json': { colour: 1 } })),
    );
    expect(far.message).toMatch(
      /^\.lambkin\.json: "colour" is not a known key; known keys: install, test, deploy/,
    );
  });

  it('names the key path inside package.json and inside entries', async () => {
    const error = await configError(async () =>
      readRepoConfig(
        await checkout({
          'package.json': { lambkin: { branches: { 'release/*': { install: ['npm ci', 42] } } } },
        }),
      ),
    );
    expect(error.message).toBe(
      `package.json: "lambkin.branches['release/*'].install[1]" must be a command (a non-empty string) (got 42)`,
    );
  });

  it('lists every problem of every file in the detail, and keeps the message short', async () => {
    const error = await configError(async () =>
      readRepoConfig(
        await checkout({
          '.lambkin.json': {
            timeout: 0,
            env: { PATH: '/opt/bin', 'BAD=NAME': 'x', LAMBKIN_SHA: 'x', CI: 'no' },
          },
          '.lambci.json': { cmd: 42 },
        }),
      ),
    );
    expect(error.message.length).toBeLessThanOrEqual(STATUS_DESCRIPTION_LIMIT);
    expect(error.message).toMatch(
      /^\.lambci\.json: "cmd" must be a command \(a non-empty string\) \(got 42\) \(\+5 more\)$/,
    );
    expect(error.detail.split('\n')).toEqual([
      'The build config cannot be used:',
      '  - .lambci.json: "cmd" must be a command (a non-empty string) (got 42)',
      '  - .lambkin.json: "env.PATH" is reserved: Lambkin sets it for every build',
      `  - .lambkin.json: "env['BAD=NAME']" must be a variable name: letters, digits and _, not starting with a digit`,
      '  - .lambkin.json: "env.LAMBKIN_SHA" is reserved: Lambkin sets it for every build',
      '  - .lambkin.json: "env.CI" is reserved: Lambkin sets it for every build',
      '  - .lambkin.json: "timeout" must be a whole number of seconds from 1 to 28800 (got 0)',
      expect.stringContaining('Fix the file and push again'),
    ]);
  });

  it('shortens a long problem to fit a commit status', async () => {
    const key = `x${'y'.repeat(200)}`;
    const error = await configError(async () =>
      readRepoConfig(await checkout({ '.lambkin.json': { [key]: 1 } })),
    );
    expect(error.message.length).toBe(STATUS_DESCRIPTION_LIMIT);
    expect(error.message.endsWith('…')).toBe(true);
    expect(error.detail).toContain(key);
  });

  it('lists at most 20 problems and counts the rest', async () => {
    const install = Array.from({ length: 150 }, (_, index) => index);
    const error = await configError(async () =>
      readRepoConfig(await checkout({ '.lambkin.json': { install } })),
    );
    expect(error.problems).toHaveLength(20);
    expect(error.omitted).toBe(131);
    expect(error.message).toMatch(/ \(\+150 more\)$/);
    expect(error.detail).toContain('.lambkin.json: "install" must be a list of at most 100 (got 150)');
    expect(error.detail).toContain('  - and 131 more');
  });

  it('refuses a config file over 1 MiB without parsing it', async () => {
    const huge = JSON.stringify({ env: { BIG: 'x'.repeat(1024 * 1024) } });
    const error = await configError(async () => readRepoConfig(await checkout({ '.lambkin.json': huge })));
    expect(error.message).toBe('.lambkin.json is 1.0 MiB: a config file may be at most 1 MiB');
  });

  it('refuses a symbolic link out of the checkout, and follows one inside it', async () => {
    const outside = await checkout({ 'secret.json': { test: 'leaked' } });
    const root = await checkout({ 'ci/lambkin.json': { test: 'linked' } });
    await symlink(join(outside, 'secret.json'), join(root, '.lambkin.json'));
    const error = await configError(() => readRepoConfig(root));
    expect(error.message).toBe(
      '.lambkin.json is a symbolic link to something outside the repository: make it a regular file',
    );
    await rm(join(root, '.lambkin.json'));
    await symlink('ci/lambkin.json', join(root, '.lambkin.json'));
    const resolved = resolveBuildConfig({
      settingsConfig: {},
      repo: await readRepoConfig(root),
      build: push('main'),
    });
    expect(resolved.test).toEqual(['linked']);
  });

  it('refuses a directory where a config file should be', async () => {
    const root = await checkout();
    await mkdir(join(root, '.lambkin.json'));
    expect((await configError(() => readRepoConfig(root))).message).toBe(
      '.lambkin.json is not a regular file: make it a JSON file',
    );
  });

  it('rejects invalid node ranges and branch regular expressions', async () => {
    const error = await configError(async () =>
      readRepoConfig(
        await checkout({ '.lambkin.json': { node: 'banana', branches: { '/[/': { test: 'x' } } } }),
      ),
    );
    expect(error.detail).toContain(
      '.lambkin.json: "node" must be a semver range such as ">=20" (got "banana")',
    );
    expect(error.detail).toContain(`.lambkin.json: "branches['/[/']" is not a valid regular expression`);
  });

  it('suggests the Lambkin key for a LambCI key in .lambkin.json', async () => {
    const error = await configError(async () =>
      readRepoConfig(await checkout({ '.lambkin.json': { cmd: 'make' } })),
    );
    expect(error.message).toBe(
      '.lambkin.json: "cmd" is not a known key: LambCI\'s "cmd" is "test" here (and "install" for the install part)',
    );
  });
});

describe('checkNodeVersion', () => {
  it('passes when the runtime satisfies the range, or when there is none', () => {
    expect(() => checkNodeVersion('>=20', '20.11.1')).not.toThrow();
    expect(() => checkNodeVersion(undefined, '4.0.0')).not.toThrow();
    expect(() => checkNodeVersion(`^${process.versions.node}`)).not.toThrow();
  });

  it('throws a RepoConfigError that says what was asked and what the runner has', () => {
    let thrown: unknown;
    try {
      checkNodeVersion('>=22 <23', '20.11.1');
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(RepoConfigError);
    const error = thrown as RepoConfigError;
    expect(error.message).toBe('"node" asks for Node.js >=22 <23, but the runner has 20.11.1');
    expect(error.detail).toContain('Change "node" to a range that includes 20.11.1');
  });

  it('throws for a range that is not semver', () => {
    expect(() => checkNodeVersion('latest', '20.0.0')).toThrow(
      '"node" must be a semver range such as ">=20"',
    );
  });
});

describe('the published schema', () => {
  it('schema/lambkin.schema.json is REPO_CONFIG_SCHEMA (regenerate the file from it when this fails)', async () => {
    const published: unknown = JSON.parse(await readFile('schema/lambkin.schema.json', 'utf8'));
    expect(published).toEqual(JSON.parse(JSON.stringify(REPO_CONFIG_SCHEMA)));
  });

  it('docs/configuration.md documents every key', async () => {
    const docs = await readFile('docs/configuration.md', 'utf8');
    for (const key of REPO_CONFIG_KEYS) expect(docs).toContain(`\`${key}\``);
    expect(docs).toContain('`allowConfigOverrides`');
    expect(docs).toContain('## Settings store and environment');
  });
});

describe('matrix, parallel and failFast', () => {
  /** The problems of a config in .lambkin.json, as "path message" lines. */
  async function problemsOf(config: object): Promise<string[]> {
    const error = await configError(async () => readRepoConfig(await checkout({ '.lambkin.json': config })));
    return error.problems.map((problem) => `${problem.path ?? ''} ${problem.message}`);
  }

  it('are read from the top level and passed on; a build without them resolves as before', async () => {
    const matrix = {
      node: ['20', 22],
      DB: ['a', 'b'],
      include: [{ node: '22', DB: 'c' }],
      exclude: [{ DB: 'b' }],
    };
    const resolved = await resolveIn({
      ...npmProject,
      '.lambkin.json': { matrix, parallel: 4, failFast: true },
    });
    expect(resolved.matrix).toEqual(matrix);
    expect(resolved.parallel).toBe(4);
    expect(resolved.failFast).toBe(true);
    const plain = await resolveIn(npmProject);
    expect(plain).not.toHaveProperty('matrix');
    expect(plain).not.toHaveProperty('parallel');
    expect(plain).not.toHaveProperty('failFast');
  });

  it('resolve without a warning: the controller fans the jobs out', async () => {
    const resolved = await resolveIn({
      ...npmProject,
      '.lambkin.json': { matrix: { node: [22] }, parallel: 2 },
    });
    expect(resolved.warnings).toEqual([]);
    expect((await resolveIn({ ...npmProject, '.lambkin.json': { failFast: true } })).warnings).toEqual([]);
  });

  it('a higher layer replaces the matrix whole, never merging its lists', async () => {
    const resolved = await resolveIn(
      { ...npmProject, '.lambkin.json': { matrix: { DB: ['a'] } } },
      push('main'),
      { matrix: { node: ['20', '22'] }, parallel: 2 },
    );
    expect(resolved.matrix).toEqual({ DB: ['a'] });
    expect(resolved.parallel).toBe(2);
  });

  it('are top level only: a branches or pullRequests entry may not set them', async () => {
    expect(
      await problemsOf({
        branches: { main: { matrix: { node: [22] } } },
        pullRequests: { parallel: 2, failFast: true },
      }),
    ).toEqual([
      `branches.main.matrix is not a known key: "matrix" can only be set at the top level of the config`,
      `pullRequests.parallel is not a known key: "parallel" can only be set at the top level of the config`,
      `pullRequests.failFast is not a known key: "failFast" can only be set at the top level of the config`,
    ]);
  });

  it('may be limited by allowConfigOverrides like any key', async () => {
    const resolved = await resolveIn(
      { ...npmProject, '.lambkin.json': { matrix: { node: [22] }, parallel: 8, test: 'x' } },
      push('main'),
      { allowConfigOverrides: ['test'] },
    );
    expect(resolved).not.toHaveProperty('matrix');
    expect(resolved).not.toHaveProperty('parallel');
  });

  it('refuse a parallel outside 1 to 64 and a failFast that is not a boolean', async () => {
    expect(await problemsOf({ parallel: 0, failFast: 'yes' })).toEqual([
      'parallel must be a whole number of shards from 1 to 64 (got 0)',
      'failFast must be true or false (got "yes")',
    ]);
    expect(await problemsOf({ parallel: 65 })).toEqual([
      'parallel must be a whole number of shards from 1 to 64 (got 65)',
    ]);
    expect(await problemsOf({ parallel: 2.5 })).toEqual([
      'parallel must be a whole number of shards from 1 to 64 (got 2.5)',
    ]);
  });

  it('refuse a matrix that is not an object of non-empty lists of scalars', async () => {
    expect(await problemsOf({ matrix: ['20', '22'] })).toEqual([
      'matrix must be an object of names to lists of values, such as {"node": ["20", "22"]} (got a list)',
    ]);
    expect(await problemsOf({ matrix: { a: [], b: 'x', c: [{ d: 1 }], e: [''], f: [null] } })).toEqual([
      'matrix.a must be a non-empty list of values (strings, numbers or true/false) (got a list)',
      'matrix.b must be a non-empty list of values (strings, numbers or true/false) (got "x")',
      'matrix.c[0] must be a string of 1 to 100 characters, a number or true/false (got an object)',
      'matrix.e[0] must be a string of 1 to 100 characters, a number or true/false (got "")',
      'matrix.f[0] must be a string of 1 to 100 characters, a number or true/false (got null)',
    ]);
    expect(await problemsOf({ matrix: {} })).toEqual([
      'matrix needs at least one list of values, such as {"node": ["20", "22"]}, or an include entry',
    ]);
    expect(await problemsOf({ matrix: { include: [], exclude: [] } })).toEqual([
      'matrix needs at least one list of values, such as {"node": ["20", "22"]}, or an include entry',
    ]);
  });

  it('refuse bad include and exclude entries', async () => {
    expect(await problemsOf({ matrix: { a: [1], include: [{}, 'x', { b: [1] }], exclude: {} } })).toEqual([
      'matrix.include[0] must be an object of matrix names to values, such as {"node": "22", "DB": "a"} (got an object)',
      'matrix.include[1] must be an object of matrix names to values, such as {"node": "22", "DB": "a"} (got "x")',
      'matrix.include[2].b must be a string of 1 to 100 characters, a number or true/false (got a list)',
      'matrix.exclude must be a list of objects of matrix names to values (got an object)',
    ]);
    expect(await problemsOf({ matrix: { a: [1], exclude: [{ b: 1 }] } })).toEqual([
      "matrix.exclude[0].b is not one of the matrix's lists (a): exclude removes combinations of the lists",
    ]);
  });

  it('refuse names that are not variable names, reserved once upper-cased, or equal but for case', async () => {
    expect(
      await problemsOf({
        matrix: { '1x': [1], 'a-b': [1], ci: [1], Path: [1], lambkin_debug: [1], LAMBCI_X: [1] },
      }),
    ).toEqual([
      "matrix['1x'] must be a matrix name: letters, digits and _, not starting with a digit, at most 64 characters",
      "matrix['a-b'] must be a matrix name: letters, digits and _, not starting with a digit, at most 64 characters",
      'matrix.ci is reserved: upper-cased it is a variable Lambkin sets for every build (CI, HOME, PATH, PWD, SHELL, LAMBKIN*, LAMBCI*)',
      'matrix.Path is reserved: upper-cased it is a variable Lambkin sets for every build (CI, HOME, PATH, PWD, SHELL, LAMBKIN*, LAMBCI*)',
      'matrix.lambkin_debug is reserved: upper-cased it is a variable Lambkin sets for every build (CI, HOME, PATH, PWD, SHELL, LAMBKIN*, LAMBCI*)',
      'matrix.LAMBCI_X is reserved: upper-cased it is a variable Lambkin sets for every build (CI, HOME, PATH, PWD, SHELL, LAMBKIN*, LAMBCI*)',
    ]);
    expect(await problemsOf({ matrix: { a: [1], include: [{ home: 'x' }] } })).toEqual([
      'matrix.include[0].home is reserved: upper-cased it is a variable Lambkin sets for every build (CI, HOME, PATH, PWD, SHELL, LAMBKIN*, LAMBCI*)',
    ]);
    expect(await problemsOf({ matrix: { db: ['a'], DB: ['b'], include: [{ Db: 'c' }] } })).toEqual([
      'matrix.DB is the same variable as "db" once upper-cased (DB): matrix names must differ in more than case',
      'matrix.include[0].Db is the same variable as "db" once upper-cased (DB): matrix names must differ in more than case',
    ]);
    // Names close to reserved ones are fine.
    await expect(
      readRepoConfig(await checkout({ '.lambkin.json': { matrix: { cis: [1], lambkinx: [1] } } })),
    ).resolves.toBeDefined();
  });

  it('refuse node in another case, and node values that are not a major or an exact version', async () => {
    expect(await problemsOf({ matrix: { NODE: ['22'], include: [{ Node: '20' }] } })).toEqual([
      'matrix.NODE is not "node": only "node", in lower case, chooses the Node.js version; rename it',
      'matrix.include[0].Node is not "node": only "node", in lower case, chooses the Node.js version; rename it',
    ]);
    const versionMessage = 'must be a Node.js major such as "22" or an exact version such as "22.11.0"';
    expect(
      await problemsOf({
        matrix: { node: ['v22', '22.1', '>=20', 0, 20.5, '022', true], include: [{ node: 'lts' }] },
      }),
    ).toEqual([
      `matrix.node[0] ${versionMessage} (got "v22")`,
      `matrix.node[1] ${versionMessage} (got "22.1")`,
      `matrix.node[2] ${versionMessage} (got ">=20")`,
      `matrix.node[3] ${versionMessage} (got 0)`,
      `matrix.node[4] ${versionMessage} (got 20.5)`,
      `matrix.node[5] ${versionMessage} (got "022")`,
      `matrix.node[6] ${versionMessage} (got true)`,
      `matrix.include[0].node ${versionMessage} (got "lts")`,
    ]);
    await expect(
      readRepoConfig(
        await checkout({ '.lambkin.json': { matrix: { node: ['20', 22, '22.11.0', '24.0.0'] } } }),
      ),
    ).resolves.toBeDefined();
  });

  it('refuse a value repeated in a list, comparing values as text', async () => {
    expect(await problemsOf({ matrix: { node: [20, '20'], DB: ['a', 'b', 'a'] } })).toEqual([
      'matrix.node[1] repeats the value "20" (values compare as text, so 20 and "20" are the same)',
      'matrix.DB[2] repeats the value "a" (values compare as text, so 20 and "20" are the same)',
    ]);
  });

  it('refuse too many names or values', async () => {
    const names = Object.fromEntries(Array.from({ length: 19 }, (_, index) => [`n${index}`, [1]]));
    expect(await problemsOf({ matrix: names })).toEqual(['matrix must have at most 18 keys (got 19)']);
    const values = Array.from({ length: 257 }, (_, index) => index);
    expect(await problemsOf({ matrix: { a: values } })).toEqual([
      'matrix.a must be a list of at most 256 (got 257)',
    ]);
  });

  it('name the key path inside package.json and in the settings store', async () => {
    const error = await configError(async () =>
      readRepoConfig(await checkout({ 'package.json': { lambkin: { matrix: { node: ['x'] } } } })),
    );
    expect(error.message).toBe(
      'package.json: "lambkin.matrix.node[0]" must be a Node.js major such as "22" or an exact version such as "22.11.0" (got "x")',
    );
    const fromSettings = await configError(() => resolveIn({}, push('main'), { matrix: { DB: ['a', 'a'] } }));
    expect(fromSettings.message).toBe(
      'settings: "config.matrix.DB[1]" repeats the value "a" (values compare as text, so 20 and "20" are the same)',
    );
  });
});
