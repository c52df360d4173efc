import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { localRun } from '../support/local-run.js';
import { createGitRepo, type GitFiles } from '../support/github-server.js';
import { failingProject, npmProject, passingProject } from '../support/npm-projects.js';

const folders: string[] = [];
afterAll(() => folders.forEach((folder) => rmSync(folder, { recursive: true, force: true })));

function plainFolder(files: GitFiles): string {
  const dir = mkdtempSync(join(tmpdir(), 'lambkin-plain-'));
  folders.push(dir);
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(dir, path, '..'), { recursive: true });
    writeFileSync(join(dir, path), typeof content === 'string' ? content : '');
  }
  return dir;
}

describe('lambkin run (the local build)', () => {
  it('builds a git working copy, its uncommitted changes included, and streams the log', async () => {
    const repo = await createGitRepo(passingProject());
    folders.push(repo.dir);
    writeFileSync(
      join(repo.dir, 'test', 'extra.test.js'),
      "require('node:test')('uncommitted', () => {});\n",
    );
    writeFileSync(join(repo.dir, '.gitignore'), 'ignored.txt\n');
    writeFileSync(join(repo.dir, 'ignored.txt'), 'must not be sent\n');
    // An uncommitted config, used as is; it reports whether the ignored file reached the build.
    const check =
      'node --test && if [ -e ignored.txt ]; then echo IGNORED-$((1+1))-SENT; else echo IGNORED-$((1+1))-ABSENT; fi';
    writeFileSync(join(repo.dir, '.lambkin.json'), JSON.stringify({ test: check }));
    const { result, output } = await localRun(repo.dir);
    expect(result).toMatchObject({ state: 'success', sha: repo.sha, branch: repo.branch, number: 1 });
    expect(result.steps.map((step) => step.name)).toEqual(['install', 'test']);
    expect(output).toContain('▶ step test');
    expect(output).toMatch(/# pass 2/); // the committed test and the uncommitted one
    expect(output).toContain('IGNORED-2-ABSENT');
    expect(output).not.toContain('IGNORED-2-SENT');
    expect(output).toMatch(/■ build passed/);
  });

  it('reports a failing project as failure', async () => {
    const { result, output } = await localRun(plainFolder(failingProject()));
    expect(result).toMatchObject({
      state: 'failure',
      description: 'test failed (exit 1): npm test',
      branch: 'local',
    });
    expect(output).toMatch(/# fail 1/);
  });

  it('reports a broken config as error, naming the file and key', async () => {
    const dir = plainFolder(
      npmProject({ test: 'echo ok' }, { '.lambkin.json': '{"test": "echo hi", "install": 5}' }),
    );
    const { result, output } = await localRun(dir);
    expect(result.state).toBe('error');
    expect(result.description).toMatch(/\.lambkin\.json.*install/);
    expect(output).toMatch(/install/);
  });

  it('deploys only when asked', async () => {
    const files = npmProject(
      { test: 'echo ok' },
      { '.lambkin.json': JSON.stringify({ deploy: 'echo DEPLOY-$((40+2))' }) },
    );
    const without = await localRun(plainFolder(files));
    expect(without.result.steps.map((step) => step.name)).toEqual(['install', 'test']);
    expect(without.output).not.toContain('DEPLOY-42');
    const withDeploy = await localRun(plainFolder(files), { deploy: true });
    expect(withDeploy.result.steps.map((step) => step.name)).toEqual(['install', 'test', 'deploy']);
    expect(withDeploy.output).toContain('DEPLOY-42');
  });

  it('refuses a path that is not a folder with one clear line', async () => {
    await expect(localRun('/nonexistent/project')).rejects.toThrow(
      '/nonexistent/project is not a folder: give the path of a working copy.',
    );
  });
});
