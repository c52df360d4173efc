/**
 * The GitHub stand-in as a GitHub App sees GitHub: App JWTs checked as GitHub checks them,
 * repository installations, installation tokens whose repositories and permissions are enforced,
 * check runs with GitHub's rules, and manifest conversion. Driven over HTTP with real JWTs signed
 * by node:crypto; every answer is checked against GitHub's OpenAPI description (the subset's
 * `appOperations`, and its shared error shapes).
 */
import { sign } from 'node:crypto';
import { rm } from 'node:fs/promises';
import {
  commitFiles,
  createGitRepo,
  startGitHubServer,
  type GitHubStandIn,
  type GitRepo,
} from '../../src/local/github/index.js';
import { schemaErrors, subset, type OperationShape, type Schema } from '../support/openapi-subset.js';
import { appKeyPair } from '../support/app-keys.js';

// --- the OpenAPI subset (tests/support/openapi-subset.ts) -----------------------------------------

function operation(id: string): OperationShape {
  const shape = subset.appOperations?.[id] ?? subset.operations[id];
  if (!shape)
    throw new Error(`The OpenAPI subset has no operation ${id}: re-run scripts/extract-github-openapi.mjs.`);
  return shape;
}

/** What the answer's shape breaks of `operationId`'s description (undefined: nothing). */
function shapeProblems(operationId: string, status: number, data: unknown): string | undefined {
  const declared = operation(operationId).responses[String(status)];
  const schema = declared?.content?.['application/json'];
  if (schema) return schemaErrors(schema, data);
  if (declared) return undefined;
  if (status < 400) return `${status} is not an answer ${operationId} lists`;
  const hasErrors = typeof data === 'object' && data !== null && 'errors' in data;
  return schemaErrors(subset.schemas[hasErrors ? 'validation-error' : 'basic-error'] as Schema, data);
}

interface Answer {
  status: number;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- JSON answers, checked by schema
  data: any;
}

/**
 * Calls `operationId` on the stand-in at `path` (its method from the description) with `auth` as
 * the bearer credential, and checks the answer's shape.
 */
async function api(operationId: string, path: string, auth?: string, body?: unknown): Promise<Answer> {
  const shape = operation(operationId);
  const response = await fetch(`${server.url}${path}`, {
    method: shape.method,
    headers: {
      accept: 'application/vnd.github+json',
      ...(auth === undefined ? {} : { authorization: `Bearer ${auth}` }),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  const data: unknown = text === '' ? undefined : JSON.parse(text);
  expect({
    operationId,
    status: response.status,
    problems: shapeProblems(operationId, response.status, data),
  }).toEqual({
    operationId,
    status: response.status,
    problems: undefined,
  });
  return { status: response.status, data };
}

// --- JWTs -------------------------------------------------------------------------------------

const newKeyPair = (): { publicKey: string; privateKey: string } => appKeyPair('pkcs8');

const base64url = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');
const nowSeconds = (): number => Math.floor(Date.now() / 1000);

function jwt(
  privateKey: string,
  claims: Record<string, unknown>,
  header: Record<string, unknown> = { alg: 'RS256', typ: 'JWT' },
): string {
  const unsigned = `${base64url(header)}.${base64url(claims)}`;
  return `${unsigned}.${sign('RSA-SHA256', Buffer.from(unsigned), privateKey).toString('base64url')}`;
}

/** A JWT as @octokit/auth-app makes one: issued 30 s ago, valid 10 minutes from then. */
const appJwt = (privateKey = key.privateKey, iss: unknown = APP_ID): string =>
  jwt(privateKey, { iat: nowSeconds() - 30, exp: nowSeconds() - 30 + 600, iss });

// --- fixtures ---------------------------------------------------------------------------------

const APP_ID = 4242;
const INSTALLATION_ID = 777;
const OTHER_INSTALLATION_ID = 778;
const PERSONAL_TOKEN = 'ghp_appTestPersonal0000000000000000000000';
const key = newKeyPair();
let server: GitHubStandIn;
let widget: GitRepo;
let vault: GitRepo;
let elsewhere: GitRepo;
let secondSha: string;

beforeAll(async () => {
  widget = await createGitRepo({ 'README.md': '# widget\n', 'src/index.js': 'export {};\n' });
  secondSha = await commitFiles(widget.dir, { 'README.md': '# widget v2\n' }, 'Second');
  vault = await createGitRepo({ 'secret.txt': 'private stuff\n' });
  elsewhere = await createGitRepo({ 'README.md': '# other\n' });
  server = await startGitHubServer({
    token: PERSONAL_TOKEN,
    apps: [{ id: APP_ID, slug: 'lambkin-ci', name: 'Lambkin CI', publicKey: key.publicKey }],
    installations: [
      { id: INSTALLATION_ID, account: 'acme', repositories: ['acme/widget', 'acme/vault'] },
      {
        id: OTHER_INSTALLATION_ID,
        account: 'initech',
        repositories: 'all',
        permissions: { metadata: 'read' },
      },
    ],
  });
  server.addRepository({
    owner: 'acme',
    name: 'widget',
    gitDir: widget.dir,
    collaborators: { 'Maintainer-Mo': 'maintain', writer: 'write', triager: 'triage' },
  });
  server.addRepository({ owner: 'acme', name: 'vault', gitDir: vault.dir, private: true });
  server.addRepository({ owner: 'acme', name: 'not-installed', gitDir: elsewhere.dir });
  server.addRepository({ owner: 'initech', name: 'tps', gitDir: elsewhere.dir });
});

afterAll(async () => {
  await server?.close();
  for (const repo of [widget, vault, elsewhere])
    if (repo) await rm(repo.dir, { recursive: true, force: true });
});

/** A new installation token from the stand-in (`body`: repositories, permissions). */
async function mint(body?: unknown, installationId = INSTALLATION_ID): Promise<string> {
  const answer = await api(
    'apps/create-installation-access-token',
    `/app/installations/${installationId}/access_tokens`,
    appJwt(),
    body,
  );
  expect(answer.status).toBe(201);
  return answer.data.token as string;
}

/** A plain request (no shape check), for routes outside the App operations. */
async function plain(method: string, path: string, auth?: string, body?: unknown): Promise<Answer> {
  const response = await fetch(`${server.url}${path}`, {
    method,
    headers: {
      ...(auth === undefined ? {} : { authorization: `token ${auth}` }),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  return { status: response.status, data: text === '' ? undefined : JSON.parse(text) };
}

// --- tests ------------------------------------------------------------------------------------

describe('App JWTs', () => {
  it('accept a JWT signed with the App key: GET /app', async () => {
    const answer = await api('apps/get-authenticated', '/app', appJwt());
    expect(answer.status).toBe(200);
    expect(answer.data).toMatchObject({
      id: APP_ID,
      slug: 'lambkin-ci',
      name: 'Lambkin CI',
      installations_count: 2,
    });
    expect(answer.data.permissions).toMatchObject({ checks: 'write', metadata: 'read' });
  });

  it('accept iss as a string, and 60 s of clock drift either way', async () => {
    expect((await api('apps/get-authenticated', '/app', appJwt(key.privateKey, String(APP_ID)))).status).toBe(
      200,
    );
    const drifting = jwt(key.privateKey, {
      iat: nowSeconds() + 50,
      exp: nowSeconds() + 50 + 600,
      iss: APP_ID,
    });
    expect((await api('apps/get-authenticated', '/app', drifting)).status).toBe(200);
    const justExpired = jwt(key.privateKey, { iat: nowSeconds() - 620, exp: nowSeconds() - 20, iss: APP_ID });
    expect((await api('apps/get-authenticated', '/app', justExpired)).status).toBe(200);
  });

  it.each([
    [
      'an expired JWT',
      () => jwt(key.privateKey, { iat: nowSeconds() - 900, exp: nowSeconds() - 300, iss: APP_ID }),
      "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires",
    ],
    [
      'a JWT living more than 10 minutes',
      () => jwt(key.privateKey, { iat: nowSeconds(), exp: nowSeconds() + 601, iss: APP_ID }),
      "'Expiration time' claim ('exp') is too far in the future",
    ],
    [
      'a JWT issued in the future',
      () => jwt(key.privateKey, { iat: nowSeconds() + 120, exp: nowSeconds() + 300, iss: APP_ID }),
      "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued",
    ],
    [
      'a JWT signed with another key',
      () => appJwt(newKeyPair().privateKey),
      'A JSON web token could not be decoded',
    ],
    [
      'a JWT of another App',
      () => appJwt(key.privateKey, APP_ID + 1),
      'A JSON web token could not be decoded',
    ],
    [
      'a JWT not signed with RS256',
      () => jwt(key.privateKey, { iat: nowSeconds(), exp: nowSeconds() + 60, iss: APP_ID }, { alg: 'none' }),
      'A JSON web token could not be decoded',
    ],
    ['a personal token', () => PERSONAL_TOKEN, 'A JSON web token could not be decoded'],
  ])('refuse %s with 401 and GitHub message', async (_case, credential, message) => {
    const answer = await api('apps/get-authenticated', '/app', credential());
    expect(answer.status).toBe(401);
    expect(answer.data).toMatchObject({ message, documentation_url: expect.any(String) });
  });

  it('are for the App endpoints: a JWT reads no repository, a token no App endpoint', async () => {
    expect((await plain('GET', '/repos/acme/widget', appJwt())).status).toBe(403);
    const token = await mint();
    const answer = await api('apps/get-authenticated', '/app', token);
    expect(answer).toEqual({
      status: 401,
      data: expect.objectContaining({ message: 'A JSON web token could not be decoded' }),
    });
  });
});

describe('installations', () => {
  it("finds a repository's installation with a JWT", async () => {
    const answer = await api('apps/get-repo-installation', '/repos/acme/widget/installation', appJwt());
    expect(answer.status).toBe(200);
    expect(answer.data).toMatchObject({
      id: INSTALLATION_ID,
      app_id: APP_ID,
      app_slug: 'lambkin-ci',
      account: { login: 'acme' },
      repository_selection: 'selected',
    });
    const all = await api('apps/get-repo-installation', '/repos/initech/tps/installation', appJwt());
    expect(all.data).toMatchObject({ id: OTHER_INSTALLATION_ID, repository_selection: 'all' });
  });

  it('answers 404 for a repository the App is not installed on, 401 without a JWT', async () => {
    expect(
      (await api('apps/get-repo-installation', '/repos/acme/not-installed/installation', appJwt())).status,
    ).toBe(404);
    expect(
      (await api('apps/get-repo-installation', '/repos/acme/nothing/installation', appJwt())).status,
    ).toBe(404);
    const byToken = await api(
      'apps/get-repo-installation',
      '/repos/acme/widget/installation',
      PERSONAL_TOKEN,
    );
    expect(byToken).toEqual({
      status: 401,
      data: expect.objectContaining({ message: 'A JSON web token could not be decoded' }),
    });
  });
});

describe('installation tokens', () => {
  it('are minted with a JWT for the repositories and permissions asked, for an hour', async () => {
    const before = Date.now();
    const answer = await api(
      'apps/create-installation-access-token',
      `/app/installations/${INSTALLATION_ID}/access_tokens`,
      appJwt(),
      { repositories: ['widget'], permissions: { checks: 'write', contents: 'read' } },
    );
    expect(answer.status).toBe(201);
    expect(answer.data).toMatchObject({
      token: expect.stringMatching(/^ghs_[A-Za-z0-9]{36}$/),
      permissions: { checks: 'write', contents: 'read', metadata: 'read' },
      repository_selection: 'selected',
      repositories: [expect.objectContaining({ full_name: 'acme/widget' })],
    });
    const lifetime = Date.parse(answer.data.expires_at as string) - before;
    expect(lifetime).toBeGreaterThan(3_590_000);
    expect(lifetime).toBeLessThanOrEqual(3_601_000);
    expect(server.mintedTokens().at(-1)).toMatchObject({
      token: answer.data.token,
      installationId: INSTALLATION_ID,
      repositories: ['acme/widget'],
    });
  });

  it('reach their repositories only: 404 elsewhere, as if the repository did not exist', async () => {
    const token = await mint({ repositories: ['widget'] });
    expect((await plain('GET', '/repos/acme/widget', token)).status).toBe(200);
    expect((await plain('GET', '/repos/acme/vault', token)).status).toBe(404);
    expect((await plain('GET', '/repos/initech/tps', token)).status).toBe(404);
    const whole = await mint(); // every repository of the installation
    expect((await plain('GET', '/repos/acme/vault', whole)).status).toBe(200);
    expect((await plain('GET', '/repos/acme/not-installed', whole)).status).toBe(404);
    const byId = await mint({ repository_ids: [(await plain('GET', '/repos/acme/vault', whole)).data.id] });
    expect((await plain('GET', '/repos/acme/vault', byId)).status).toBe(200);
    expect((await plain('GET', '/repos/acme/widget', byId)).status).toBe(404);
  });

  it('carry their permissions only: 403 without them', async () => {
    const readChecks = await mint({ repositories: ['widget'], permissions: { checks: 'read' } });
    const create = await api('checks/create', '/repos/acme/widget/check-runs', readChecks, {
      name: 'lambkin',
      head_sha: widget.sha,
    });
    expect(create).toEqual({
      status: 403,
      data: expect.objectContaining({ message: 'Resource not accessible by integration' }),
    });
    expect(
      (await api('checks/list-for-ref', `/repos/acme/widget/commits/${widget.sha}/check-runs`, readChecks))
        .status,
    ).toBe(200);
    expect((await plain('GET', `/repos/acme/widget/contents/README.md`, readChecks)).status).toBe(403);
    expect(
      (await plain('POST', `/repos/acme/widget/statuses/${widget.sha}`, readChecks, { state: 'pending' }))
        .status,
    ).toBe(403);
    const statuses = await mint({
      repositories: ['widget'],
      permissions: { statuses: 'write', contents: 'read' },
    });
    expect(
      (await plain('POST', `/repos/acme/widget/statuses/${widget.sha}`, statuses, { state: 'pending' }))
        .status,
    ).toBe(201);
    expect((await plain('GET', `/repos/acme/widget/contents/README.md`, statuses)).status).toBe(200);
    expect((await plain('GET', '/repos/acme/widget/hooks', statuses)).status).toBe(403);
  });

  it('are refused for repositories or permissions the installation lacks, and without a JWT', async () => {
    const path = `/app/installations/${INSTALLATION_ID}/access_tokens`;
    const notInstalled = await api('apps/create-installation-access-token', path, appJwt(), {
      repositories: ['not-installed'],
    });
    expect(notInstalled.status).toBe(422);
    const ungranted = await api('apps/create-installation-access-token', path, appJwt(), {
      permissions: { administration: 'write' },
    });
    expect(ungranted).toEqual({
      status: 422,
      data: expect.objectContaining({
        message: 'The permissions requested are not granted to this installation.',
      }),
    });
    const tooMuch = await api('apps/create-installation-access-token', path, appJwt(), {
      permissions: { contents: 'write' },
    });
    expect(tooMuch.status).toBe(422);
    expect(
      (await api('apps/create-installation-access-token', '/app/installations/1/access_tokens', appJwt()))
        .status,
    ).toBe(404);
    expect((await api('apps/create-installation-access-token', path, PERSONAL_TOKEN)).status).toBe(401);
  });

  it('stop working once expired (401 Bad credentials)', async () => {
    const shortLived = await startGitHubServer({
      installationTokenTtlMs: 50,
      apps: [{ id: APP_ID, publicKey: key.publicKey }],
      installations: [{ id: INSTALLATION_ID, account: 'acme', repositories: 'all' }],
    });
    try {
      shortLived.addRepository({ owner: 'acme', name: 'widget', gitDir: widget.dir });
      const minted = await fetch(`${shortLived.url}/app/installations/${INSTALLATION_ID}/access_tokens`, {
        method: 'POST',
        headers: { authorization: `Bearer ${appJwt()}` },
      });
      const { token } = (await minted.json()) as { token: string };
      await new Promise((resolve) => setTimeout(resolve, 80));
      const answer = await fetch(`${shortLived.url}/repos/acme/widget`, {
        headers: { authorization: `token ${token}` },
      });
      expect(answer.status).toBe(401);
      expect(await answer.json()).toMatchObject({ message: 'Bad credentials' });
    } finally {
      await shortLived.close();
    }
  });

  it('leave personal tokens as they were', async () => {
    expect((await plain('GET', '/repos/acme/vault', PERSONAL_TOKEN)).status).toBe(200);
    expect((await plain('GET', '/repos/acme/vault', 'ghp_wrong')).status).toBe(401);
    expect((await plain('GET', '/repos/acme/widget')).status).toBe(200); // anonymous, public
    expect((await plain('GET', '/repos/acme/widget', 'ghs_notMintedHere000000000000000000000')).status).toBe(
      401,
    );
  });
});

describe('check runs', () => {
  let token: string;
  const annotation = (line: number): Record<string, unknown> => ({
    path: 'src/index.js',
    start_line: line,
    end_line: line,
    annotation_level: 'warning',
    message: `Warning on line ${line}`,
  });
  const annotations = (count: number, from = 1): Record<string, unknown>[] =>
    Array.from({ length: count }, (_, index) => annotation(from + index));

  beforeAll(async () => {
    token = await mint({ repositories: ['widget'], permissions: { checks: 'write', contents: 'read' } });
  });

  it('are created, updated and completed, annotations adding up', async () => {
    const created = await api('checks/create', '/repos/acme/widget/check-runs', token, {
      name: 'lambkin',
      head_sha: widget.sha,
      external_id: 'build-1',
      details_url: 'http://127.0.0.1:1/builds/1',
    });
    expect(created.status).toBe(201);
    expect(created.data).toMatchObject({
      name: 'lambkin',
      head_sha: widget.sha,
      status: 'queued',
      conclusion: null,
      completed_at: null,
      external_id: 'build-1',
      details_url: 'http://127.0.0.1:1/builds/1',
      app: { id: APP_ID },
      output: { title: null, summary: null, text: null, annotations_count: 0 },
    });
    const id = created.data.id as number;
    const running = await api('checks/update', `/repos/acme/widget/check-runs/${id}`, token, {
      status: 'in_progress',
      output: { title: 'Running', summary: 'Step 1 of 2', annotations: annotations(30) },
    });
    expect(running.data).toMatchObject({
      status: 'in_progress',
      output: { title: 'Running', annotations_count: 30 },
    });
    const done = await api('checks/update', `/repos/acme/widget/check-runs/${id}`, token, {
      conclusion: 'failure',
      output: {
        title: 'Failed',
        summary: '2 tests failed',
        text: 'details',
        annotations: annotations(20, 31),
      },
    });
    expect(done.data).toMatchObject({
      status: 'completed',
      conclusion: 'failure',
      completed_at: expect.any(String),
      output: { title: 'Failed', summary: '2 tests failed', text: 'details', annotations_count: 50 },
    });
    const fetched = await api('checks/get', `/repos/acme/widget/check-runs/${id}`, token);
    expect(fetched.data).toEqual(done.data);
    const listed = await api(
      'checks/list-annotations',
      `/repos/acme/widget/check-runs/${id}/annotations?per_page=100`,
      token,
    );
    expect(listed.data).toHaveLength(50);
    expect(listed.data[49]).toMatchObject({
      start_line: 50,
      annotation_level: 'warning',
      blob_href: expect.stringContaining(widget.sha),
    });
    const [stored] = server.checkRunsFor('acme/widget', widget.sha).filter((run) => run.id === id);
    expect(stored).toMatchObject({ status: 'completed', conclusion: 'failure', annotationBatches: [30, 20] });
  });

  it('refuse more than 50 annotations in one request (422), and keep the rest', async () => {
    const created = await api('checks/create', '/repos/acme/widget/check-runs', token, {
      name: 'many',
      head_sha: widget.sha,
      output: { title: 'Lint', summary: 'Too many', annotations: annotations(51) },
    });
    expect(created.status).toBe(422);
    const ok = await api('checks/create', '/repos/acme/widget/check-runs', token, {
      name: 'many',
      head_sha: widget.sha,
      output: { title: 'Lint', summary: 'Fifty', annotations: annotations(50) },
    });
    expect(ok.data.output.annotations_count).toBe(50);
    const more = await api('checks/update', `/repos/acme/widget/check-runs/${ok.data.id}`, token, {
      output: { title: 'Lint', summary: 'More', annotations: annotations(51) },
    });
    expect(more.status).toBe(422);
    expect(
      server.checkRunsFor('acme/widget', widget.sha).find((run) => run.id === ok.data.id)?.annotations,
    ).toHaveLength(50);
  });

  it.each([
    ['no name', { head_sha: 'SHA' }, '"name" wasn\'t supplied'],
    [
      'completed without a conclusion',
      { name: 'x', head_sha: 'SHA', status: 'completed' },
      '"conclusion" wasn\'t supplied',
    ],
    [
      'an output without a summary',
      { name: 'x', head_sha: 'SHA', output: { title: 'T' } },
      '"summary" wasn\'t supplied',
    ],
    [
      'an output without a title',
      { name: 'x', head_sha: 'SHA', output: { summary: 'S' } },
      '"title" wasn\'t supplied',
    ],
    ['an unknown status', { name: 'x', head_sha: 'SHA', status: 'done' }, "'properties/status'"],
    ['an unknown conclusion', { name: 'x', head_sha: 'SHA', conclusion: 'ok' }, "'properties/conclusion'"],
    [
      'an annotation without a message',
      {
        name: 'x',
        head_sha: 'SHA',
        output: {
          title: 'T',
          summary: 'S',
          annotations: [{ path: 'a', start_line: 1, end_line: 1, annotation_level: 'notice' }],
        },
      },
      '"message" wasn\'t supplied',
    ],
    ['a commit that does not exist', { name: 'x', head_sha: '0'.repeat(40) }, 'No commit found for SHA'],
  ])('refuse %s with 422', async (_case, fields, message) => {
    const body = JSON.parse(
      JSON.stringify(fields).replaceAll('"SHA"', JSON.stringify(widget.sha)),
    ) as unknown;
    const answer = await api('checks/create', '/repos/acme/widget/check-runs', token, body);
    expect(answer.status).toBe(422);
    expect(answer.data.message).toContain(message);
  });

  it('are completed by a conclusion alone', async () => {
    const answer = await api('checks/create', '/repos/acme/widget/check-runs', token, {
      name: 'quick',
      head_sha: widget.sha,
      conclusion: 'success',
    });
    expect(answer.data).toMatchObject({
      status: 'completed',
      conclusion: 'success',
      completed_at: expect.any(String),
    });
    const reopened = await api('checks/update', `/repos/acme/widget/check-runs/${answer.data.id}`, token, {
      status: 'in_progress',
    });
    expect(reopened.data).toMatchObject({ status: 'in_progress', conclusion: null, completed_at: null });
  });

  it('are listed for a ref: the latest of each name, or all', async () => {
    const first = await api('checks/create', '/repos/acme/widget/check-runs', token, {
      name: 'unit',
      head_sha: secondSha,
    });
    const second = await api('checks/create', '/repos/acme/widget/check-runs', token, {
      name: 'unit',
      head_sha: secondSha,
    });
    await api('checks/create', '/repos/acme/widget/check-runs', token, {
      name: 'lint',
      head_sha: secondSha,
      conclusion: 'success',
    });
    const latest = await api('checks/list-for-ref', '/repos/acme/widget/commits/main/check-runs', token);
    expect(latest.data.total_count).toBe(2);
    expect(latest.data.check_runs.map((run: { id: number }) => run.id)).toContain(second.data.id);
    expect(latest.data.check_runs.map((run: { id: number }) => run.id)).not.toContain(first.data.id);
    const all = await api(
      'checks/list-for-ref',
      `/repos/acme/widget/commits/${secondSha}/check-runs?filter=all`,
      token,
    );
    expect(all.data.total_count).toBe(3);
    const named = await api(
      'checks/list-for-ref',
      `/repos/acme/widget/commits/${secondSha}/check-runs?check_name=lint`,
      token,
    );
    expect(named.data.check_runs).toEqual([expect.objectContaining({ name: 'lint', conclusion: 'success' })]);
    expect(server.checkRunsFor('acme/widget', secondSha).map((run) => run.name)).toEqual([
      'lint',
      'unit',
      'unit',
    ]);
  });

  it("take up to 3 actions (buttons) within GitHub's limits, kept but not answered, as on GitHub", async () => {
    const approve = {
      label: 'Approve and run',
      identifier: 'approve',
      description: 'Build this commit once, without secrets',
    };
    const created = await api('checks/create', '/repos/acme/widget/check-runs', token, {
      name: 'approval',
      head_sha: widget.sha,
      conclusion: 'action_required',
      actions: [approve],
    });
    expect(created.status).toBe(201);
    expect(created.data).not.toHaveProperty('actions');
    const stored = () =>
      server.checkRunsFor('acme/widget', widget.sha).find((run) => run.id === created.data.id);
    expect(stored()?.actions).toEqual([approve]);

    for (const actions of [
      [approve, approve, approve, approve],
      [{ ...approve, label: 'A label longer than 20' }],
      [{ ...approve, description: 'x'.repeat(41) }],
      [{ label: 'No identifier', description: 'd' }],
    ]) {
      const refused = await api('checks/update', `/repos/acme/widget/check-runs/${created.data.id}`, token, {
        actions,
      });
      expect(refused.status).toBe(422);
    }
    expect(stored()?.actions).toEqual([approve]);
    const cleared = await api('checks/update', `/repos/acme/widget/check-runs/${created.data.id}`, token, {
      conclusion: 'neutral',
      actions: [],
    });
    expect(cleared.data).toMatchObject({ status: 'completed', conclusion: 'neutral' });
    expect(stored()?.actions).toEqual([]);
  });

  it('are written by Apps only: a personal token gets 403, but may read them', async () => {
    const answer = await api('checks/create', '/repos/acme/widget/check-runs', PERSONAL_TOKEN, {
      name: 'lambkin',
      head_sha: widget.sha,
    });
    expect(answer).toEqual({
      status: 403,
      data: expect.objectContaining({ message: 'You must authenticate via a GitHub App.' }),
    });
    expect(
      (
        await api(
          'checks/list-for-ref',
          `/repos/acme/widget/commits/${widget.sha}/check-runs`,
          PERSONAL_TOKEN,
        )
      ).status,
    ).toBe(200);
  });
});

/**
 * GET /repos/{owner}/{repo}/collaborators/{username}/permission. The OpenAPI subset has no entry
 * for it (scripts/extract-github-openapi.mjs would need the network to add one), so its shape is
 * written here by hand from GitHub's description (`repository-collaborator-permission`, whose
 * `user` is a `nullable-collaborator`).
 */
const COLLABORATOR_PERMISSION_SHAPE: Schema = {
  type: 'object',
  required: ['permission', 'role_name', 'user'],
  properties: {
    permission: { type: 'string' },
    role_name: { type: 'string' },
    user: {
      type: ['object', 'null'],
      required: [
        'login',
        'id',
        'node_id',
        'avatar_url',
        'url',
        'html_url',
        'type',
        'site_admin',
        'role_name',
      ],
      properties: {
        login: { type: 'string' },
        id: { type: 'integer' },
        node_id: { type: 'string' },
        avatar_url: { type: 'string' },
        url: { type: 'string' },
        html_url: { type: 'string' },
        type: { type: 'string' },
        site_admin: { type: 'boolean' },
        role_name: { type: 'string' },
        permissions: {
          type: 'object',
          required: ['pull', 'push', 'admin'],
          properties: {
            pull: { type: 'boolean' },
            triage: { type: 'boolean' },
            push: { type: 'boolean' },
            maintain: { type: 'boolean' },
            admin: { type: 'boolean' },
          },
        },
      },
    },
  },
};

describe("collaborators' permissions", () => {
  let metadataToken: string;

  beforeAll(async () => {
    metadataToken = await mint({ repositories: ['widget', 'vault'], permissions: { metadata: 'read' } });
  });

  async function permission(repo: string, login: string, auth: string | undefined = metadataToken) {
    const answer = await plain('GET', `/repos/${repo}/collaborators/${login}/permission`, auth);
    if (answer.status === 200)
      expect(schemaErrors(COLLABORATOR_PERMISSION_SHAPE, answer.data)).toBeUndefined();
    return answer;
  }

  it('answer the role set on the repository, folded into permission as GitHub folds it', async () => {
    const expected: [string, string, string][] = [
      ['acme', 'admin', 'admin'],
      ['maintainer-mo', 'write', 'maintain'],
      ['writer', 'write', 'write'],
      ['triager', 'read', 'triage'],
      ['passer-by', 'read', 'read'],
    ];
    for (const [login, perm, role] of expected) {
      const answer = await permission('acme/widget', login);
      expect([login, answer.status, answer.data.permission, answer.data.role_name]).toEqual([
        login,
        200,
        perm,
        role,
      ]);
      expect(answer.data.user).toMatchObject({ login, role_name: role });
    }
    const maintainer = await permission('acme/widget', 'maintainer-mo');
    expect(maintainer.data.user.permissions).toEqual({
      pull: true,
      triage: true,
      push: true,
      maintain: true,
      admin: false,
    });
  });

  it('give no access to strangers on a private repository; 404 for a name no user can have', async () => {
    const stranger = await permission('acme/vault', 'passer-by');
    expect(stranger.data).toMatchObject({ permission: 'none', role_name: 'none' });
    expect((await permission('acme/widget', '-not-a-login')).status).toBe(404);
  });

  it('need an installation that reaches the repository (metadata is enough), or a user token', async () => {
    expect((await permission('acme/not-installed', 'acme')).status).toBe(404);
    expect((await permission('acme/widget', 'acme', PERSONAL_TOKEN)).status).toBe(200);
    expect((await plain('GET', '/repos/acme/widget/collaborators/acme/permission')).status).toBe(401);
    expect((await permission('acme/widget', 'acme', appJwt())).status).toBe(403);
  });
});

describe('manifest conversion', () => {
  it('returns the App made from a registered code, whose key then signs JWTs; once', async () => {
    server.addManifestCode('a1b2c3', { name: 'Lambkin (acme)', url: 'https://lambkin.example/acme' });
    const answer = await api('apps/create-from-manifest', '/app-manifests/a1b2c3/conversions');
    expect(answer.status).toBe(201);
    expect(answer.data).toMatchObject({
      id: expect.any(Number),
      slug: 'lambkin-acme',
      name: 'Lambkin (acme)',
      external_url: 'https://lambkin.example/acme',
      client_id: expect.any(String),
      client_secret: expect.any(String),
      webhook_secret: expect.any(String),
      pem: expect.stringContaining('-----BEGIN RSA PRIVATE KEY-----'),
    });
    const me = await api('apps/get-authenticated', '/app', appJwt(answer.data.pem as string, answer.data.id));
    expect(me.data).toMatchObject({ id: answer.data.id, slug: 'lambkin-acme' });
    expect((await api('apps/create-from-manifest', '/app-manifests/a1b2c3/conversions')).status).toBe(404);
    expect((await api('apps/create-from-manifest', '/app-manifests/never-made/conversions')).status).toBe(
      404,
    );
  });
});
