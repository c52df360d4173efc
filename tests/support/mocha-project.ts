/**
 * A real mocha project for end-to-end builds that needs no package registry: the repository carries
 * mocha itself. mocha and its whole dependency closure are copied from Lambkin's own node_modules
 * (mocha is a devDependency for this) into the project's node_modules, at the same layout npm gave
 * them here, so that Node resolves each package from the project exactly as it does from this
 * checkout. The repository's config turns the install step off and runs mocha's own bin script.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, posix, relative, sep } from 'node:path';
import type { GitFiles } from './github-server.js';

/** The checkout whose node_modules holds mocha (tests run from the checkout's root). */
const LAMBKIN_ROOT = process.cwd();

/** The test file of the mocha projects, relative to the repository root. */
export const MOCHA_TEST_FILE = 'test/math.test.js';

/** The command the projects' test step runs. */
export const MOCHA_TEST_COMMAND = 'node node_modules/mocha/bin/mocha.js';

/** Files a package ships that nothing loads when mocha runs in Node: docs, source maps, types. */
const UNNEEDED_FILE = /(\.md|\.markdown|\.map|\.d\.ts|\.d\.mts|\.d\.cts)$/i;

interface PackageJson {
  name?: string;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}

const readPackageJson = (folder: string): PackageJson =>
  JSON.parse(readFileSync(join(folder, 'package.json'), 'utf8')) as PackageJson;

/**
 * The folder of package `name` as Node finds it when required from a file in `from`: the first
 * `<ancestor>/node_modules/<name>` going up from `from` (skipping ancestors that are node_modules
 * folders themselves, as Node does), not above LAMBKIN_ROOT.
 */
function resolvePackage(name: string, from: string): string | undefined {
  for (let folder = from; ; folder = dirname(folder)) {
    if (basename(folder) !== 'node_modules') {
      const candidate = join(folder, 'node_modules', ...name.split('/'));
      if (existsSync(join(candidate, 'package.json'))) return candidate;
    }
    if (folder === LAMBKIN_ROOT || dirname(folder) === folder) return undefined;
  }
}

/** The folders of `name` and every package it depends on (dependencies, optional ones if present). */
export function dependencyClosure(name: string): string[] {
  const start = resolvePackage(name, LAMBKIN_ROOT);
  if (start === undefined) {
    throw new Error(`${name} is not installed in ${LAMBKIN_ROOT}/node_modules: run \`npm ci\` first.`);
  }
  const found = new Set<string>();
  const pending = [start];
  while (pending.length > 0) {
    const folder = pending.pop() ?? '';
    if (found.has(folder)) continue;
    found.add(folder);
    const manifest = readPackageJson(folder);
    for (const dependency of Object.keys(manifest.dependencies ?? {})) {
      const resolved = resolvePackage(dependency, folder);
      if (resolved === undefined) {
        throw new Error(`${dependency}, a dependency of ${folder}, is not installed: run \`npm ci\`.`);
      }
      pending.push(resolved);
    }
    for (const dependency of Object.keys(manifest.optionalDependencies ?? {})) {
      const resolved = resolvePackage(dependency, folder);
      if (resolved !== undefined) pending.push(resolved);
    }
  }
  return [...found].sort();
}

/** The files of the package in `folder` (not its own node_modules: those are other packages). */
function packageFiles(folder: string, under = ''): string[] {
  const files: string[] = [];
  for (const entry of readdirSync(join(folder, under), { withFileTypes: true })) {
    const path = under === '' ? entry.name : join(under, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== 'node_modules') files.push(...packageFiles(folder, path));
    } else if (entry.isFile() && !UNNEEDED_FILE.test(entry.name)) {
      files.push(path);
    }
  }
  return files;
}

/** Path of `absolute` inside Lambkin's checkout, with `/` (git paths). */
const checkoutPath = (absolute: string): string =>
  relative(LAMBKIN_ROOT, absolute).split(sep).join(posix.sep);

/** mocha and its dependency closure as GitFiles under `node_modules/`, executable bits kept. */
export function mochaModules(): GitFiles {
  const files: GitFiles = {};
  for (const folder of dependencyClosure('mocha')) {
    for (const file of packageFiles(folder)) {
      const absolute = join(folder, file);
      const content = readFileSync(absolute);
      files[checkoutPath(absolute)] =
        (statSync(absolute).mode & 0o111) !== 0 ? { content, executable: true } : content;
    }
  }
  return files;
}

/** The mocha test file: one passing test and, unless `passing`, one failing assertion. */
export function mochaTestFile(options: { passing?: boolean } = {}): string {
  return [
    "const assert = require('node:assert');",
    "const { add } = require('../math.js');",
    '',
    "describe('math', () => {",
    "  it('adds', () => {",
    '    assert.strictEqual(add(2, 3), 5);',
    '  });',
    '',
    "  it('multiplies', () => {",
    `    assert.strictEqual(add(2, 2) * 2, ${options.passing ? 8 : 9});`,
    '  });',
    '});',
    '',
  ].join('\n');
}

/** The 1-based line of `test/math.test.js` holding the assertion that fails (the `* 2` one). */
export function failingAssertionLine(testFile: string): number {
  const index = testFile.split('\n').findIndex((line) => line.includes('add(2, 2) * 2'));
  if (index === -1) throw new Error('The mocha test file has no multiplying assertion.');
  return index + 1;
}

/**
 * A project whose test step runs mocha (from its own node_modules) on `test/math.test.js`: one test
 * passes and, unless `passing`, one fails. No install step, so the build needs no registry.
 */
export function mochaProject(options: { passing?: boolean } = {}): GitFiles {
  const packageJson = {
    name: 'mocha-demo',
    version: '1.0.0',
    private: true,
    scripts: { test: 'mocha' },
    lambkin: { install: [], test: MOCHA_TEST_COMMAND },
  };
  return {
    'package.json': JSON.stringify(packageJson, null, 2) + '\n',
    'math.js': 'exports.add = (a, b) => a + b;\n',
    [MOCHA_TEST_FILE]: mochaTestFile(options),
    ...mochaModules(),
  };
}
