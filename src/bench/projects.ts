/**
 * Real npm projects generated for the benchmark (and the cache tests): written into a folder,
 * their lockfile made by real npm. Nothing is copied from a third-party repository.
 *
 * - `localDependencyProject`: dependencies are tarballs inside the project (`file:vendor/…tgz`),
 *   so `npm ci` installs real packages with no registry.
 * - `registryProject`: hundreds of real packages from the registry (a dozen well-known libraries
 *   and everything they depend on) and a test suite that exercises each of them.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { create as createTar } from 'tar';

export interface GeneratedProject {
  dir: string;
  /** Top-level dependencies. */
  dependencies: string[];
}

async function writeJson(path: string, value: unknown): Promise<void> {
  await writeFile(path, JSON.stringify(value, null, 2) + '\n');
}

/** The environment npm runs in here: its own cache folder, no update or funding notices. */
export function npmEnvironment(cacheDir: string): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    HOME: process.env.HOME ?? cacheDir,
    LANG: 'C.UTF-8',
    npm_config_cache: cacheDir,
    npm_config_update_notifier: 'false',
    npm_config_fund: 'false',
    npm_config_audit: 'false',
  };
}

/**
 * A project whose `count` dependencies are packed into `vendor/` (each with `files` source files,
 * so node_modules has some weight) and a node:test suite requiring every one of them.
 */
export async function localDependencyProject(
  dir: string,
  options: { count: number; filesPerPackage?: number; name?: string; npmCache: string; version?: string },
): Promise<GeneratedProject> {
  const filesPerPackage = options.filesPerPackage ?? 3;
  await mkdir(join(dir, 'vendor'), { recursive: true });
  await mkdir(join(dir, 'test'), { recursive: true });
  const dependencies: Record<string, string> = {};
  const names: string[] = [];
  for (let index = 0; index < options.count; index++) {
    const name = `local-dep-${index}`;
    const version = options.version ?? '1.0.0';
    const staging = join(dir, '.staging', name, 'package');
    await mkdir(join(staging, 'lib'), { recursive: true });
    await writeJson(join(staging, 'package.json'), { name, version, main: 'index.js', license: 'MIT' });
    const parts: string[] = [];
    for (let file = 0; file < filesPerPackage; file++) {
      await writeFile(
        join(staging, 'lib', `part${file}.js`),
        `// ${name} part ${file}\n` + `exports.value = ${index * 1000 + file};\n` + '// padding\n'.repeat(40),
      );
      parts.push(`require('./lib/part${file}.js').value`);
    }
    await writeFile(
      join(staging, 'index.js'),
      `exports.name = ${JSON.stringify(name)};\nexports.sum = () => [${parts.join(', ')}].reduce((a, b) => a + b, 0);\n`,
    );
    const tarball = `vendor/${name}-${version}.tgz`;
    await createTar(
      { gzip: true, cwd: join(dir, '.staging', name), file: join(dir, tarball), portable: true },
      ['package'],
    );
    dependencies[name] = `file:${tarball}`;
    names.push(name);
  }
  await rm(join(dir, '.staging'), { recursive: true, force: true });
  await writeJson(join(dir, 'package.json'), {
    name: options.name ?? 'bench-local',
    version: '1.0.0',
    private: true,
    scripts: { test: 'node --test' },
    dependencies,
  });
  await writeFile(
    join(dir, 'test', 'deps.test.js'),
    "const test = require('node:test');\nconst assert = require('node:assert');\n" +
      names
        .map(
          (name, index) =>
            `test(${JSON.stringify(name)}, () => {\n  const dep = require(${JSON.stringify(name)});\n` +
            `  assert.strictEqual(dep.name, ${JSON.stringify(name)});\n  assert.strictEqual(dep.sum(), ${sumOf(index, filesPerPackage)});\n});\n`,
        )
        .join(''),
  );
  await writeLockfile(dir, options.npmCache, ['--offline']);
  return { dir, dependencies: names };
}

function sumOf(index: number, files: number): number {
  let sum = 0;
  for (let file = 0; file < files; file++) sum += index * 1000 + file;
  return sum;
}

/** Well-known libraries with small, checkable behaviour; with their dependencies, hundreds of packages. */
const REGISTRY_LIBRARIES: Record<string, { version: string; check: string }> = {
  lodash: { version: '4.17.21', check: 'assert.deepStrictEqual(m.chunk([1, 2, 3], 2), [[1, 2], [3]]);' },
  semver: { version: '7.6.3', check: "assert.ok(m.gt('1.2.3', '1.2.0'));" },
  chalk: { version: '4.1.2', check: "assert.strictEqual(typeof m.red, 'function');" },
  commander: { version: '11.1.0', check: "assert.strictEqual(typeof m.Command, 'function');" },
  yargs: { version: '17.7.2', check: "assert.strictEqual(typeof m, 'function');" },
  express: { version: '4.19.2', check: "assert.strictEqual(typeof m().listen, 'function');" },
  ajv: { version: '8.17.1', check: "assert.ok(new m().validate({ type: 'string' }, 'x'));" },
  uuid: { version: '9.0.1', check: 'assert.match(m.v4(), /^[0-9a-f-]{36}$/);' },
  'date-fns': {
    version: '3.6.0',
    check: 'assert.strictEqual(m.addDays(new Date(0), 1).getTime(), 86400000);',
  },
  glob: { version: '10.4.5', check: "assert.strictEqual(typeof m.globSync, 'function');" },
  minimatch: { version: '9.0.5', check: "assert.ok(m.minimatch('a.js', '*.js'));" },
  'fs-extra': { version: '11.2.0', check: "assert.strictEqual(typeof m.copy, 'function');" },
  jsdom: {
    version: '24.1.1',
    check:
      "assert.strictEqual(new m.JSDOM('<p>hi</p>').window.document.querySelector('p').textContent, 'hi');",
  },
  eslint: { version: '8.57.0', check: "assert.strictEqual(typeof m.ESLint, 'function');" },
  typescript: {
    version: '5.5.4',
    check: "assert.match(m.transpileModule('let a: number = 1', {}).outputText, /var a = 1/);",
  },
  webpack: { version: '5.93.0', check: "assert.strictEqual(typeof m, 'function');" },
  '@babel/core': {
    version: '7.25.2',
    check: "assert.match(m.transformSync('const a = 1', {}).code, /const a = 1/);",
  },
  mocha: { version: '10.7.0', check: "assert.strictEqual(typeof m, 'function');" },
  prettier: { version: '3.3.3', check: "assert.strictEqual(typeof m.format, 'function');" },
  axios: { version: '1.7.3', check: "assert.strictEqual(typeof m.get, 'function');" },
};

/** Hundreds of real packages from the registry and a suite testing each library. Needs the registry. */
export async function registryProject(dir: string, options: { npmCache: string }): Promise<GeneratedProject> {
  await mkdir(join(dir, 'test'), { recursive: true });
  const names = Object.keys(REGISTRY_LIBRARIES);
  await writeJson(join(dir, 'package.json'), {
    name: 'bench-large',
    version: '1.0.0',
    private: true,
    scripts: { test: 'node --test' },
    dependencies: Object.fromEntries(
      names.map((name) => [name, REGISTRY_LIBRARIES[name]?.version ?? 'latest']),
    ),
  });
  for (const [index, name] of names.entries()) {
    const check = REGISTRY_LIBRARIES[name]?.check ?? '';
    await writeFile(
      join(dir, 'test', `lib${String(index).padStart(2, '0')}.test.js`),
      "const test = require('node:test');\nconst assert = require('node:assert');\n" +
        `test(${JSON.stringify(name)}, () => {\n  const m = require(${JSON.stringify(name)});\n  ${check}\n});\n`,
    );
  }
  await writeLockfile(dir, options.npmCache, []);
  return { dir, dependencies: names };
}

/** `npm install --package-lock-only`: the lockfile, without node_modules. */
async function writeLockfile(dir: string, npmCache: string, extra: string[]): Promise<void> {
  await execa(
    'npm',
    ['install', '--package-lock-only', '--ignore-scripts', '--no-audit', '--no-fund', ...extra],
    {
      cwd: dir,
      env: npmEnvironment(npmCache),
      extendEnv: false,
    },
  );
}
