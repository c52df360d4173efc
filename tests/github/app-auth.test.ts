/**
 * Lambkin as a GitHub App (src/github/app-auth.ts) against the GitHub stand-in: the installation
 * token is minted once per repository and permissions and reused, minted anew near its expiry,
 * and reaches its one repository only.
 */
import { rm } from 'node:fs/promises';
import { createGitHubApp, createInstallationClient, type GitHubApp } from '../../src/github/app-auth.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import {
  createGitRepo,
  startGitHubServer,
  type GitHubStandIn,
  type GitRepo,
} from '../support/github-server.js';
import { appKeyPair } from '../support/app-keys.js';

const APP_ID = 31337;
const INSTALLATION_ID = 99;
const { publicKey, privateKey } = appKeyPair('pkcs8');
const PERMISSIONS = { checks: 'write', contents: 'read' } as const;

let server: GitHubStandIn;
let repo: GitRepo;
let clock: number;

beforeAll(async () => {
  repo = await createGitRepo({ 'README.md': '# widget\n' });
  server = await startGitHubServer({
    apps: [{ id: APP_ID, publicKey }],
    installations: [{ id: INSTALLATION_ID, account: 'acme', repositories: 'all' }],
  });
  server.addRepository({ owner: 'acme', name: 'widget', gitDir: repo.dir });
  server.addRepository({ owner: 'acme', name: 'gadget', gitDir: repo.dir, private: true });
});

afterAll(async () => {
  await server?.close();
  if (repo) await rm(repo.dir, { recursive: true, force: true });
});

function newApp(): GitHubApp {
  clock = Date.now();
  return createGitHubApp(
    { appId: APP_ID, privateKey },
    { baseUrl: server.url, logger: createMemoryLogger(), now: () => clock },
  );
}

const mintsSince = (before: number) => server.mintedTokens().slice(before);
const lookups = () => server.requests.filter((request) => request.path.endsWith('/installation')).length;

describe('createGitHubApp', () => {
  it('authenticates as the App with a JWT', async () => {
    const { data } = await newApp().appClient.rest.apps.getAuthenticated();
    expect(data?.id).toBe(APP_ID);
  });

  it('mints one installation token, for the one repository and the permissions named, and reuses it', async () => {
    const app = newApp();
    const before = server.mintedTokens().length;
    const lookupsBefore = lookups();
    const client = createInstallationClient(app, 'acme/widget', PERMISSIONS);
    await Promise.all([
      client.rest.repos.get({ owner: 'acme', repo: 'widget' }),
      client.rest.repos.get({ owner: 'acme', repo: 'widget' }),
    ]);
    await client.rest.checks.listForRef({ owner: 'acme', repo: 'widget', ref: repo.sha });
    await createInstallationClient(app, 'acme/widget', { contents: 'read', checks: 'write' }).rest.repos.get({
      owner: 'acme',
      repo: 'widget',
    });
    expect(mintsSince(before)).toEqual([
      expect.objectContaining({
        installationId: INSTALLATION_ID,
        repositories: ['acme/widget'],
        permissions: { checks: 'write', contents: 'read', metadata: 'read' },
      }),
    ]);
    expect(lookups() - lookupsBefore).toBe(1);
    const [minted] = mintsSince(before);
    const sent = server.requests
      .filter((request) => request.path === '/repos/acme/widget')
      .map((request) => request.headers.authorization);
    expect(sent.slice(-3)).toEqual(Array(3).fill(`token ${minted?.token}`));
  });

  it('mints a new token when the cached one has less than 5 minutes left', async () => {
    const app = newApp();
    const before = server.mintedTokens().length;
    const client = app.installationClient('acme/widget', PERMISSIONS);
    await client.rest.repos.get({ owner: 'acme', repo: 'widget' });
    const first = await app.installationToken('acme/widget', PERMISSIONS);
    clock = first.expiresAt - 6 * 60_000; // still 6 minutes left: kept
    await client.rest.repos.get({ owner: 'acme', repo: 'widget' });
    expect(mintsSince(before)).toHaveLength(1);
    clock = first.expiresAt - 4 * 60_000; // 4 minutes left: replaced
    await client.rest.repos.get({ owner: 'acme', repo: 'widget' });
    const mints = mintsSince(before);
    expect(mints).toHaveLength(2);
    expect(mints[1]?.token).not.toBe(first.token);
    expect(server.requests.at(-1)?.headers.authorization).toBe(`token ${mints[1]?.token}`);
    clock = Date.now(); // the new token is an hour from expiry again: kept
    await client.rest.repos.get({ owner: 'acme', repo: 'widget' });
    expect(mintsSince(before)).toHaveLength(2);
  });

  it('limits each token to its repository: another repository of the installation answers 404', async () => {
    const app = newApp();
    const widget = app.installationClient('acme/widget', PERMISSIONS);
    await expect(widget.rest.repos.get({ owner: 'acme', repo: 'gadget' })).rejects.toMatchObject({
      status: 404,
    });
    const gadget = app.installationClient('acme/gadget', PERMISSIONS);
    const { data } = await gadget.rest.repos.get({ owner: 'acme', repo: 'gadget' });
    expect(data.full_name).toBe('acme/gadget');
    expect((await app.installationToken('acme/gadget', PERMISSIONS)).token).not.toBe(
      (await app.installationToken('acme/widget', PERMISSIONS)).token,
    );
  });

  it('limits each token to its permissions: 403 beyond them', async () => {
    const client = newApp().installationClient('acme/widget', { contents: 'read' });
    await expect(
      client.rest.checks.create({ owner: 'acme', repo: 'widget', name: 'lambkin', head_sha: repo.sha }),
    ).rejects.toMatchObject({ status: 403 });
  });

  it('fails plainly for a repository the App is not installed on, and looks again next time', async () => {
    const app = newApp();
    await expect(app.installationToken('initech/tps', PERMISSIONS)).rejects.toMatchObject({ status: 404 });
    const lookupsBefore = lookups();
    await expect(app.installationToken('initech/tps', PERMISSIONS)).rejects.toMatchObject({ status: 404 });
    expect(lookups() - lookupsBefore).toBe(1);
  });
});
