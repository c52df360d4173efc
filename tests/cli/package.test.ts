/**
 * `lambkin` as a package: `npm pack` of a copy of this checkout, `npm install -g` of the tarball into
 * a temporary prefix, then the installed command with no checkout anywhere in reach: `--help`,
 * `lambkin run` of a project, and `lambkin dev` building a signed push.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pushToDev, startDevProcess, type DevProcess } from '../support/dev-process.js';
import { startGitHubServer, type GitHubStandIn } from '../support/github-server.js';
import { checkoutInto, runLambkinBin, whoAmIProject, writeProject } from './helpers.js';

const run = promisify(execFile);
const asRoot = process.getuid?.() === 0;
/** The step's uid: as root a build sandbox's own (1879048192 + slot, src/controller/build-sandbox.ts). */
const STEP_UID = stepUidPattern();
function stepUidPattern(): RegExp {
  return asRoot ? /step uid=18790\d{5}\b/ : new RegExp(`step uid=${process.getuid?.()}\\b`);
}
const folders: string[] = [];
let prefix: string;
let bin: string;
let installed: string;

function scratch(prefixName: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefixName));
  folders.push(dir);
  return dir;
}

beforeAll(async () => {
  // Packed from a copy, so `prepack` (npm run build) writes into the copy, not this checkout.
  const copy = checkoutInto(scratch('lambkin-pack-'), 'symlink');
  const packed = scratch('lambkin-tarball-');
  const npmEnv = { ...process.env, npm_config_update_notifier: 'false' };
  await run('npm', ['pack', '--silent', '--pack-destination', packed], { cwd: copy, env: npmEnv });
  const [tarball] = readdirSync(packed).filter((name) => name.endsWith('.tgz'));
  if (!tarball) throw new Error(`npm pack wrote no tarball into ${packed}`);
  prefix = scratch('lambkin-prefix-');
  await run(
    'npm',
    [
      'install',
      '-g',
      '--prefix',
      prefix,
      '--prefer-offline',
      '--no-audit',
      '--no-fund',
      join(packed, tarball),
    ],
    { cwd: packed, env: npmEnv, timeout: 240_000 },
  );
  bin = join(prefix, 'bin', 'lambkin');
  installed = join(prefix, 'lib', 'node_modules', 'lambkin');
  // Nothing of the copy is needed any more: the installed command must stand alone.
  rmSync(copy, { recursive: true, force: true });
}, 300_000);

afterAll(() => folders.forEach((folder) => rmSync(folder, { recursive: true, force: true })));

describe('the packed lambkin package', () => {
  it('installs the built CLI and the runner program, no sources and no development dependencies', () => {
    expect(existsSync(bin)).toBe(true);
    expect(existsSync(join(installed, 'dist', 'cli', 'lambkin.mjs'))).toBe(true);
    expect(existsSync(join(installed, 'dist', 'cli', 'runner.mjs'))).toBe(true);
    expect(existsSync(join(installed, 'src'))).toBe(false);
    expect(existsSync(join(installed, 'dist', 'functions'))).toBe(false);
    for (const development of ['tsx', 'jest', 'esbuild', 'typescript']) {
      expect(existsSync(join(installed, 'node_modules', development))).toBe(false);
    }
  });

  it('answers --help and --version from any folder', async () => {
    const cwd = scratch('lambkin-anywhere-');
    const help = await runLambkinBin(bin, ['--help'], { cwd });
    expect(help).toMatchObject({ code: 0, stderr: '' });
    expect(help.stdout).toMatch(/^Usage: lambkin/);
    for (const command of ['dev', 'run', 'builds', 'logs', 'config']) expect(help.stdout).toContain(command);
    const version = await runLambkinBin(bin, ['--version'], { cwd });
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('builds the user’s project with `lambkin run .`', async () => {
    const project = writeProject(scratch('lambkin-installed-app-'), whoAmIProject());
    const result = await runLambkinBin(bin, ['run', '.'], { cwd: project });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(STEP_UID);
    expect(result.stdout).toMatch(/■ build passed/);
  }, 100_000);

  describe('lambkin dev', () => {
    const SECRET = 'package-dev-secret';
    const TOKEN = 'package-dev-token';
    let github: GitHubStandIn;
    let dev: DevProcess;

    beforeAll(async () => {
      github = await startGitHubServer({ token: TOKEN });
      const home = scratch('lambkin-installed-dev-');
      dev = await startDevProcess({
        bin,
        cwd: home,
        dataDir: join(home, '.lambkin'),
        githubApi: github.url,
        env: { LAMBKIN_WEBHOOK_SECRET: SECRET, GITHUB_TOKEN: TOKEN },
      });
    }, 60_000);

    afterAll(async () => {
      await dev?.stop();
      await github?.close();
    });

    it('builds a signed push to a success status', async () => {
      const { repo, response } = await pushToDev(dev, github, SECRET, 'octo/installed', whoAmIProject());
      folders.push(repo.dir);
      expect(response.status).toBe(202);
      for (let attempt = 0; attempt < 240; attempt++) {
        const state = github.statusesFor('octo/installed', repo.sha)[0]?.state;
        if (state === 'success' || state === 'failure' || state === 'error') break;
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      expect(github.statusesFor('octo/installed', repo.sha)[0]).toMatchObject({ state: 'success' });
      const log = await fetch(`${dev.stack.publicUrl}/builds/octo/installed/1/log.txt`);
      expect(await log.text()).toMatch(STEP_UID);
    }, 90_000);
  });
});
