/**
 * docs/github-app.md against what it describes: the `lambkin setup app` commands use options the
 * command has (and one place to store the App each), the permission and event tables are the
 * manifest's, the functions restarted after a secret change are the ones that read the secret, and
 * the shell snippets do what the page says when run as written (the key rotation; `lambkin dev`
 * with the App of github-app.json, its webhook secret included).
 */
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LAMBKIN_APP_EVENTS, LAMBKIN_APP_PERMISSIONS } from '../../src/github/app-manifest.js';
import { loadTemplate } from '../support/template.js';
import { runInProcess } from './helpers.js';
import { pushToDev, startDevProcess } from '../support/dev-process.js';
import { startGitHubServer } from '../support/github-server.js';

const PAGE = readFileSync(join(process.cwd(), 'docs/github-app.md'), 'utf8');
const CONFIGURATION = readFileSync(join(process.cwd(), 'docs/configuration.md'), 'utf8');

/** The text of each ```sh block of the page, continued lines joined. */
function shellBlocks(): string[] {
  return [...PAGE.matchAll(/```sh\n([\s\S]*?)```/g)].map((match) => (match[1] ?? '').replace(/\\\n\s*/g, ''));
}

/** The rows of the Markdown table whose header row starts with `| <first>`: cells, trimmed. */
function tableRows(text: string, first: string): string[][] {
  const start = text.search(new RegExp(`^\\| ${first} +\\|`, 'm'));
  if (start === -1) throw new Error(`no table headed "${first}"`);
  const lines = text.slice(start).split('\n');
  const end = lines.findIndex((line) => !line.startsWith('|'));
  return lines.slice(2, end === -1 ? undefined : end).map((line) =>
    line
      .slice(1, -1)
      .split(' | ')
      .map((cell) => cell.trim()),
  );
}

function run(program: string[], stdin: string, cwd?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(process.execPath, program, { ...(cwd ? { cwd } : {}) }, (error, stdout) =>
      error ? reject(error) : resolve(stdout),
    );
    child.stdin?.end(stdin);
  });
}

const folders: string[] = [];
afterAll(() => {
  for (const folder of folders) rmSync(folder, { recursive: true, force: true });
});

describe('docs/github-app.md', () => {
  it('runs `lambkin setup app` with options it has, each with one place for the App', async () => {
    const help = await runInProcess(['setup', 'app', '--help']);
    const options = new Set(help.stdout.match(/--[a-z-]+/g));
    const lines = shellBlocks()
      .flatMap((block) => block.split('\n'))
      .filter((line) => line.includes('npm run lambkin -- setup app'));
    expect(lines.length).toBeGreaterThanOrEqual(3);
    for (const line of lines) {
      const command = line.replace(/\s+#.*$/, '');
      const used = command.match(/(?<=\s)--[a-z-]+/g) ?? [];
      expect({ line, unknown: used.filter((option) => !options.has(option)) }).toEqual({ line, unknown: [] });
      const places = used.filter((option) => ['--stack', '--secret-arn', '--local'].includes(option));
      expect({ line, places: places.length }).toEqual({ line, places: 1 });
      expect(used).toContain('--webhook-url');
    }
  });

  it("lists exactly the manifest's permissions and events", () => {
    const names: Record<string, string> = {
      Checks: 'checks',
      'Commit statuses': 'statuses',
      Contents: 'contents',
      'Pull requests': 'pull_requests',
      Metadata: 'metadata',
    };
    const permissions = Object.fromEntries(
      tableRows(PAGE, 'permission').map(([name, access]) => [names[name ?? ''] ?? name, access]),
    );
    expect(permissions).toEqual({ ...LAMBKIN_APP_PERMISSIONS });
    const events = tableRows(PAGE, 'event').map(([name]) => name?.replace(/`/g, ''));
    expect(events).toEqual([...LAMBKIN_APP_EVENTS, 'installation']);
  });

  it('restarts exactly the functions that read the secret', () => {
    const template = loadTemplate();
    const readers = Object.entries(template.Resources)
      .filter(([, resource]) => JSON.stringify(resource.Properties ?? {}).includes('"LAMBKIN_SECRET_ARN"'))
      .map(([name]) => name)
      .sort();
    const loop = shellBlocks().find((block) => block.includes('update-function-configuration'));
    const named = /for fn in ([A-Za-z ]+); do/
      .exec(loop ?? '')?.[1]
      ?.trim()
      .split(/\s+/);
    expect(named?.sort()).toEqual(readers);
  });

  it("puts a new private key into the secret as written, keeping the secret's other keys", async () => {
    const rotation = shellBlocks().find((block) => block.includes('githubAppPrivateKey'));
    const program = /node -e '([^']*)'/.exec(rotation ?? '')?.[1];
    expect(program).toBeDefined();
    const folder = mkdtempSync(join(tmpdir(), 'lambkin-app-doc-'));
    folders.push(folder);
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const pem = privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
    const keyFile = join(folder, 'app.private-key.pem');
    writeFileSync(keyFile, pem);
    const current = {
      githubAppId: '123456',
      githubAppPrivateKey: '-----BEGIN RSA PRIVATE KEY-----\nold\n-----END RSA PRIVATE KEY-----\n',
      webhookSecret: 'new-secret,old-secret',
    };
    const output = await run(['-e', program ?? '', keyFile], JSON.stringify(current) + '\n');
    expect(JSON.parse(output)).toEqual({ ...current, githubAppPrivateKey: pem });
  });

  it('runs `lambkin dev` as written: the App and its webhook secret from github-app.json', async () => {
    const dev = shellBlocks().find((block) => block.includes('npm run lambkin -- dev'));
    expect(dev).toBeDefined();
    expect(dev).not.toContain('LAMBKIN_WEBHOOK_SECRET');
    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const github = await startGitHubServer({
      apps: [{ id: 4242, publicKey: publicKey.export({ type: 'spki', format: 'pem' }).toString() }],
      installations: [{ id: 77, account: 'acme', repositories: ['acme/widget'] }],
    });
    const dataDir = mkdtempSync(join(tmpdir(), 'lambkin-app-doc-'));
    folders.push(dataDir);
    const appFile = join(dataDir, 'github-app.json');
    writeFileSync(
      appFile,
      JSON.stringify({
        appId: 4242,
        slug: 'lambkin-dev',
        privateKey: privateKey.export({ type: 'pkcs1', format: 'pem' }).toString(),
        webhookSecret: 'the-app-secret',
      }),
      { mode: 0o600 },
    );
    const devProcess = await startDevProcess({ dataDir, githubApi: github.url, env: {} });
    try {
      expect(devProcess.startup).toContain(
        `GitHub: App 4242 (check runs and commit statuses, installation tokens per repository) from ${appFile}`,
      );
      const { repo, response } = await pushToDev(devProcess, github, 'the-app-secret', 'acme/widget', {
        'README.md': 'hello\n',
      });
      folders.push(repo.dir);
      expect(response.status).toBe(202);
      expect(await response.json()).toMatchObject({ queued: true, repo: 'acme/widget' });
      expect(github.checkRunsFor('acme/widget', repo.sha).map((run) => run.name)).toContain('Lambkin');
    } finally {
      await devProcess.stop();
      await github.close();
    }
  }, 60_000);
});

describe('docs/configuration.md, the stack secret', () => {
  it('shows the two shapes with the keys `lambkin setup app` writes', () => {
    const shapes = Object.fromEntries(
      tableRows(CONFIGURATION, 'mode').map(([mode, secret]) => [
        mode,
        Object.keys(JSON.parse((secret ?? '').replace(/^`|`$/g, '')) as Record<string, unknown>),
      ]),
    );
    expect(shapes).toEqual({
      token: ['githubToken', 'webhookSecret'],
      App: ['githubAppId', 'githubAppPrivateKey', 'webhookSecret'],
    });
    for (const variable of [
      'LAMBKIN_GITHUB_APP_ID',
      'LAMBKIN_GITHUB_APP_PRIVATE_KEY',
      'LAMBKIN_GITHUB_APP_PRIVATE_KEY_FILE',
    ]) {
      expect(CONFIGURATION).toContain(`| \`${variable}\``);
    }
  });
});
