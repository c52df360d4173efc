/** Small real npm projects (no dependencies, so `npm ci` needs no registry) for builder tests. */
import type { GitFiles } from './github-server.js';

export function npmProject(
  scripts: Record<string, string>,
  extra: GitFiles = {},
  options: { name?: string; lockfile?: boolean; lambkin?: unknown } = {},
): GitFiles {
  const name = options.name ?? 'demo';
  const packageJson: Record<string, unknown> = { name, version: '1.0.0', private: true, scripts };
  if (options.lambkin !== undefined) packageJson.lambkin = options.lambkin;
  const files: GitFiles = { 'package.json': JSON.stringify(packageJson, null, 2) + '\n', ...extra };
  if (options.lockfile !== false) {
    files['package-lock.json'] =
      JSON.stringify(
        {
          name,
          version: '1.0.0',
          lockfileVersion: 3,
          requires: true,
          packages: { '': { name, version: '1.0.0' } },
        },
        null,
        2,
      ) + '\n';
  }
  return files;
}

/** A project whose `npm test` runs real tests with node's test runner. */
export const passingProject = (): GitFiles =>
  npmProject(
    { test: 'node --test' },
    {
      'index.js': 'exports.add = (a, b) => a + b;\n',
      'test/add.test.js':
        "const test = require('node:test');\nconst assert = require('node:assert');\nconst { add } = require('../index.js');\n" +
        "test('adds', () => assert.strictEqual(add(2, 3), 5));\n",
    },
  );

export const failingProject = (): GitFiles =>
  npmProject(
    { test: 'node --test' },
    {
      'index.js': 'exports.add = (a, b) => a - b;\n',
      'test/add.test.js':
        "const test = require('node:test');\nconst assert = require('node:assert');\nconst { add } = require('../index.js');\n" +
        "test('adds', () => assert.strictEqual(add(2, 3), 5));\n",
    },
  );
