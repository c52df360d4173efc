/**
 * `lambkin run` as a real child process, its stdout a pipe: with --json stdout holds the summary
 * alone (what `lambkin run --json . | jq .state` reads) and the log goes to stderr; colours follow
 * NO_COLOR, FORCE_COLOR and whether the stream is a terminal.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { GitFiles } from '../support/github-server.js';
import { failingProject, passingProject } from '../support/npm-projects.js';
import { childTestTimeout, runProcess } from './helpers.js';

const ESC = '\u001b';
/** The builder's step header, as it writes it (src/builder/logs/format.ts). */
const COLOURED_HEADER = `${ESC}[1;36m▶ step install`;

const folders: string[] = [];
afterAll(() => folders.forEach((folder) => rmSync(folder, { recursive: true, force: true })));

/** Where these runs keep their dependency cache: never the home of the user running the tests. */
const cacheHome = mkdtempSync(join(tmpdir(), 'lambkin-run-xdg-'));
folders.push(cacheHome);
const runCli = (argv: string[], env: Record<string, string> = {}) =>
  runProcess(argv, { XDG_CACHE_HOME: cacheHome, ...env });

function folder(files: GitFiles): string {
  const dir = mkdtempSync(join(tmpdir(), 'lambkin-run-json-'));
  folders.push(dir);
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(dir, path, '..'), { recursive: true });
    writeFileSync(join(dir, path), typeof content === 'string' ? content : '');
  }
  return dir;
}

interface Summary {
  state: string;
  description: string;
  steps: { name: string }[];
}

describe('lambkin run --json', () => {
  it(
    'writes exactly one JSON object to stdout and the plain log to stderr',
    async () => {
      const run = await runCli(['run', '--json', folder(passingProject())], {});
      expect(run.code).toBe(0);
      const summary = JSON.parse(run.stdout) as Summary;
      expect(summary).toMatchObject({ state: 'success', steps: [{ name: 'install' }, { name: 'test' }] });
      expect(run.stdout.trimEnd().split('\n').at(-1)).toBe('}');
      expect(run.stderr).toContain('▶ step install');
      expect(run.stderr).toMatch(/■ build passed/);
      // A pipe is no terminal: no colour.
      expect(run.stderr).not.toContain(ESC);
    },
    childTestTimeout(),
  );

  it(
    'still writes the summary alone to stdout when the build fails, and keeps colour when forced',
    async () => {
      const run = await runCli(['run', '--json', folder(failingProject())], { FORCE_COLOR: '1' });
      expect(run.code).toBe(1);
      expect(JSON.parse(run.stdout) as Summary).toMatchObject({ state: 'failure' });
      expect(run.stderr).toContain(COLOURED_HEADER);
      expect(run.stderr.trimEnd().split('\n').at(-1)).toBe(
        'lambkin: build failure: test failed (exit 1): npm test',
      );
    },
    childTestTimeout(),
  );
});

describe('lambkin run without --json', () => {
  it(
    'streams the log to stdout, without colour under NO_COLOR',
    async () => {
      const run = await runCli(['run', folder(passingProject())], { NO_COLOR: '1' });
      expect(run.code).toBe(0);
      expect(run.stdout).toContain('▶ step install');
      expect(run.stdout).not.toContain(ESC);
      expect(run.stderr).toBe('');
    },
    childTestTimeout(),
  );

  it(
    'streams the log with its colours under FORCE_COLOR',
    async () => {
      const run = await runCli(['run', folder(passingProject())], { FORCE_COLOR: '1' });
      expect(run.code).toBe(0);
      expect(run.stdout).toContain(COLOURED_HEADER);
    },
    childTestTimeout(),
  );

  it(
    'keeps its dependency cache under XDG_CACHE_HOME (0700), and --no-cache neither reads nor writes it',
    async () => {
      const home = mkdtempSync(join(tmpdir(), 'lambkin-run-xdg-'));
      folders.push(home);
      const cached = await runProcess(['run', '--json', folder(passingProject())], { XDG_CACHE_HOME: home });
      expect(cached.code).toBe(0);
      expect(cached.stderr).toMatch(/Cache: .*cache\/local\//);
      expect(statSync(join(home, 'lambkin')).mode & 0o777).toBe(0o700);

      const other = mkdtempSync(join(tmpdir(), 'lambkin-run-xdg-'));
      folders.push(other);
      const uncached = await runProcess(['run', '--json', '--no-cache', folder(passingProject())], {
        XDG_CACHE_HOME: other,
      });
      expect(uncached.code).toBe(0);
      expect(uncached.stderr).not.toMatch(/Cache:/);
      expect(existsSync(join(other, 'lambkin'))).toBe(false);
    },
    childTestTimeout(2),
  );
});
