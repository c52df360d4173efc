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
      'settings: "config.timeout" must be a whole number of seconds from 1 to 840 (got "ten")',
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
      '.lambkin.json: "timeout" must be a whole number of seconds from 1 to 840 (got "ten")',
    );
    expect(error.code).toBe('REPO_CONFIG');
    expect(error.problems).toEqual([
      {
        source: '.lambkin.json',
        path: 'timeout',
        message: 'must be a whole number of seconds from 1 to 840 (got "ten")',
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
      '  - .lambkin.json: "timeout" must be a whole number of seconds from 1 to 840 (got 0)',
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
