/**
 * The GitHub stand-in, driven through a real Octokit client, answers in the shapes GitHub's
 * OpenAPI description gives (tests/fixtures/github/openapi-subset.json, made by
 * scripts/extract-github-openapi.mjs), and its faults and token rules behave as GitHub's.
 */
import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { promisify } from 'node:util';
import { Octokit } from '@octokit/rest';
import {
  commitFiles,
  createGitRepo,
  readTarGz,
  startGitHubServer,
  type GitHubStandIn,
  type GitRepo,
} from './github-server.js';
import { schemaErrors, subset, subsetText, type OperationShape, type Schema } from './openapi-subset.js';

// --- the OpenAPI subset (tests/support/openapi-subset.ts) -----------------------------------------

function operation(id: string): OperationShape {
  const shape = subset.operations[id];
  if (!shape)
    throw new Error(`The OpenAPI subset has no operation ${id}: re-run scripts/extract-github-openapi.mjs.`);
  return shape;
}

function operationFor(method: string, urlTemplate: string): OperationShape | undefined {
  return Object.values(subset.operations).find(
    (shape) => shape.method === method.toUpperCase() && shape.path === urlTemplate,
  );
}

// --- a real Octokit whose every answer is checked against the subset ---------------------------

interface CheckedResponse {
  operation: string;
  status: number;
  problems?: string;
}

interface OctokitFailure {
  status?: number;
  response?: { status: number; headers: Record<string, string | number | undefined>; data: unknown };
}

function checkAnswer(
  method: string,
  url: string,
  status: number,
  headers: Record<string, string | number | undefined>,
  data: unknown,
): CheckedResponse {
  const shape = operationFor(method, url);
  const name = `${method} ${url}`;
  if (!shape) return { operation: name, status, problems: 'not an operation of the OpenAPI subset' };
  const declared = shape.responses[String(status)];
  const contentType = String(headers['content-type'] ?? '');
  const isJson = contentType.startsWith('application/json');
  const problems: string[] = [];
  if (declared) {
    for (const [header, schema] of Object.entries(declared.headers ?? {})) {
      if (header === 'link' && headers.link === undefined) continue; // only sent when there are more pages
      const error = schemaErrors(schema, headers[header]);
      if (error) problems.push(`header ${header}: ${error}`);
    }
    const schema = declared.content?.['application/json'];
    if (schema && isJson) {
      const error = schemaErrors(schema, data);
      if (error) problems.push(error);
    } else if (schema && !contentType.startsWith('application/vnd.github.raw')) {
      // The raw media type (asked for with `accept`) is documented in prose only: bytes, no schema.
      problems.push(`expected JSON, got ${contentType}`);
    }
  } else if (status >= 400 && isJson) {
    // Answers an operation does not list (401, 429, 5xx) come in GitHub's common error shapes.
    const hasErrors = typeof data === 'object' && data !== null && 'errors' in data;
    const shared = subset.schemas[hasErrors ? 'validation-error' : 'basic-error'] as Schema;
    const error = schemaErrors(shared, data);
    if (error) problems.push(error);
  }
  return { operation: name, status, ...(problems.length > 0 ? { problems: problems.join('\n') } : {}) };
}

function checkedOctokit(baseUrl: string, token?: string): { octokit: Octokit; checked: CheckedResponse[] } {
  const octokit = new Octokit({ baseUrl, ...(token ? { auth: token } : {}), log: quietLog });
  const checked: CheckedResponse[] = [];
  octokit.hook.after('request', (response, options) => {
    checked.push(checkAnswer(options.method, options.url, response.status, response.headers, response.data));
  });
  octokit.hook.error('request', (error, options) => {
    const failure = error as OctokitFailure;
    if (failure.response) {
      const { status, headers, data } = failure.response;
      checked.push(checkAnswer(options.method, options.url, status, headers, data));
    }
    throw error;
  });
  return { octokit, checked };
}

const quietLog = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
};

function expectAllValid(checked: CheckedResponse[], count: number): void {
  expect(checked.filter((entry) => entry.problems !== undefined)).toEqual([]);
  expect(checked).toHaveLength(count);
}

async function failureOf(promise: Promise<unknown>): Promise<OctokitFailure & { message: string }> {
  try {
    await promise;
  } catch (error) {
    return error as OctokitFailure & { message: string };
  }
  throw new Error('Expected the request to fail, but it succeeded.');
}

// --- fixtures ---------------------------------------------------------------------------------

const TOKEN = 'ghp_standInToken0000000000000000000000';
let server: GitHubStandIn;
let publicRepo: GitRepo;
let privateRepo: GitRepo;
let secondSha: string;

beforeAll(async () => {
  publicRepo = await createGitRepo(
    {
      'README.md': '# widget\n',
      'src/index.js': 'console.log("hello")\n',
      'scripts/build.sh': { content: '#!/bin/sh\necho built\n', executable: true },
      'docs/link.md': { symlink: '../README.md' },
    },
    { message: 'First commit' },
  );
  secondSha = await commitFiles(
    publicRepo.dir,
    { 'README.md': '# widget v2\n', 'src/index.js': null },
    'Second',
  );
  privateRepo = await createGitRepo({ 'secret.txt': 'private stuff\n' }, { branch: 'trunk' });
  server = await startGitHubServer({ token: TOKEN, archiveUrlTtlMs: 400 });
  server.addRepository({ owner: 'acme', name: 'widget', gitDir: publicRepo.dir, description: 'Widgets' });
  server.addRepository({
    owner: 'acme',
    name: 'vault',
    gitDir: privateRepo.dir,
    private: true,
    defaultBranch: 'trunk',
  });
});

afterAll(async () => {
  await server.close();
  await rm(publicRepo.dir, { recursive: true, force: true });
  await rm(privateRepo.dir, { recursive: true, force: true });
});

// --- tests ------------------------------------------------------------------------------------

describe('the OpenAPI subset', () => {
  it('records its source and holds every operation the stand-in serves, small enough to commit', () => {
    expect(subset.source.package).toBe('@octokit/openapi');
    expect(subset.source.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(Object.keys(subset.operations).sort()).toEqual(
      [
        'repos/create-commit-status',
        'repos/create-webhook',
        'repos/download-tarball-archive',
        'repos/get',
        'repos/get-content',
        'repos/list-commit-statuses-for-ref',
        'repos/list-webhooks',
        'repos/update-webhook',
      ]
        .concat('git/get-tree')
        .sort(),
    );
    // The GitHub App's operations (tests/local/github-app.test.ts checks the stand-in against them).
    expect(Object.keys(subset.appOperations ?? {}).sort()).toEqual(
      [
        'apps/create-from-manifest',
        'apps/create-installation-access-token',
        'apps/get-authenticated',
        'apps/get-repo-installation',
        'checks/create',
        'checks/get',
        'checks/list-annotations',
        'checks/list-for-ref',
        'checks/update',
      ].sort(),
    );
    expect(subsetText).not.toContain('"$ref"');
    expect(subsetText.length).toBeLessThan(400 * 1024);
  });

  it('rejects a wrong shape (the check can fail)', () => {
    const status = operation('repos/create-commit-status').responses['201']?.content?.[
      'application/json'
    ] as Schema;
    expect(schemaErrors(status, { id: 'one', state: 'pending' })).toMatch(
      /must have required property|must be integer/,
    );
    const requestBody = operation('repos/create-commit-status').requestBody?.content[
      'application/json'
    ] as Schema;
    expect(schemaErrors(requestBody, { state: 'bogus' })).toMatch(
      /must be equal to one of the allowed values/,
    );
    expect(schemaErrors(requestBody, { state: 'success', description: null })).toBeUndefined();
  });
});

describe('repositories', () => {
  it('answers GET /repos/{owner}/{repo} with the full repository shape and GitHub headers', async () => {
    const { octokit, checked } = checkedOctokit(server.url, TOKEN);
    const first = await octokit.rest.repos.get({ owner: 'acme', repo: 'widget' });
    const second = await octokit.rest.repos.get({ owner: 'ACME', repo: 'Widget' });
    expect(first.data).toMatchObject({
      full_name: 'acme/widget',
      private: false,
      default_branch: 'main',
      description: 'Widgets',
      permissions: { push: true },
    });
    expect(first.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(first.headers['x-github-request-id']).toMatch(/^[0-9A-F]+(:[0-9A-F]+){4}$/);
    expect(first.headers['x-github-request-id']).not.toBe(second.headers['x-github-request-id']);
    expect(first.headers['x-ratelimit-limit']).toBe('5000');
    expect(first.headers['x-ratelimit-resource']).toBe('core');
    expect(Number(second.headers['x-ratelimit-remaining'])).toBe(
      Number(first.headers['x-ratelimit-remaining']) - 1,
    );
    expect(Number(second.headers['x-ratelimit-used'])).toBe(Number(first.headers['x-ratelimit-used']) + 1);
    expect(Number(first.headers['x-ratelimit-reset'])).toBeGreaterThan(Date.now() / 1000);
    const vault = await octokit.rest.repos.get({ owner: 'acme', repo: 'vault' });
    expect(vault.data).toMatchObject({ private: true, visibility: 'private', default_branch: 'trunk' });
    expectAllValid(checked, 3);
  });

  it('takes a rate limit of its own (the bench’s), and refuses with 403 past it as GitHub does', async () => {
    const limited = await startGitHubServer({ token: TOKEN, rateLimit: 2 });
    try {
      limited.addRepository({ owner: 'acme', name: 'widget', gitDir: publicRepo.dir });
      const ask = () =>
        fetch(`${limited.url}/repos/acme/widget`, { headers: { authorization: `token ${TOKEN}` } });
      const first = await ask();
      expect(first.headers.get('x-ratelimit-limit')).toBe('2');
      expect((await ask()).status).toBe(200);
      const refused = await ask();
      expect(refused.status).toBe(403);
      expect(((await refused.json()) as { message: string }).message).toMatch(/API rate limit exceeded/);
    } finally {
      await limited.close();
    }
  });

  it('answers unknown repositories and endpoints with 404 and GitHub’s error body', async () => {
    const { octokit, checked } = checkedOctokit(server.url, TOKEN);
    const missing = await failureOf(octokit.rest.repos.get({ owner: 'acme', repo: 'nope' }));
    expect(missing.status).toBe(404);
    expect(missing.response?.data).toEqual({
      message: 'Not Found',
      documentation_url: 'https://docs.github.com/rest',
      status: '404',
    });
    const unknown = await fetch(`${server.url}/user/repos`, { headers: { authorization: `token ${TOKEN}` } });
    expect(unknown.status).toBe(404);
    expect(unknown.headers.get('content-type')).toBe('application/json; charset=utf-8');
    const body: unknown = await unknown.json();
    expect(schemaErrors(subset.schemas['basic-error'] as Schema, body)).toBeUndefined();
    expect(body).toMatchObject({ message: 'Not Found', status: '404' });
    expectAllValid(checked, 1);
  });
});

describe('commit statuses', () => {
  it('creates statuses (201 with Location) and lists them newest first, in GitHub’s shapes', async () => {
    const { octokit, checked } = checkedOctokit(server.url, TOKEN);
    const created = await octokit.rest.repos.createCommitStatus({
      owner: 'acme',
      repo: 'widget',
      sha: publicRepo.sha,
      state: 'pending',
      description: 'Build #1 queued',
      target_url: 'https://ci.example/acme/widget/1',
      context: 'lambkin',
    });
    expect(created.status).toBe(201);
    expect(created.headers.location).toBe(created.data.url);
    await octokit.rest.repos.createCommitStatus({
      owner: 'acme',
      repo: 'widget',
      sha: publicRepo.sha,
      state: 'success',
    });
    const listed = await octokit.rest.repos.listCommitStatusesForRef({
      owner: 'acme',
      repo: 'widget',
      ref: publicRepo.sha,
    });
    expect(listed.data.map((status) => [status.state, status.context, status.description])).toEqual([
      ['success', 'default', null],
      ['pending', 'lambkin', 'Build #1 queued'],
    ]);
    const byBranch = await octokit.rest.repos.listCommitStatusesForRef({
      owner: 'acme',
      repo: 'widget',
      ref: 'main~1',
    });
    expect(byBranch.data).toHaveLength(2);
    const paged = await octokit.rest.repos.listCommitStatusesForRef({
      owner: 'acme',
      repo: 'widget',
      ref: publicRepo.sha,
      per_page: 1,
    });
    expect(paged.data.map((status) => status.state)).toEqual(['success']);
    expect(paged.headers.link).toMatch(/page=2>; rel="next"/);
    expect(server.statusesFor('acme/widget', publicRepo.sha).map((status) => status.state)).toEqual([
      'success',
      'pending',
    ]);
    expectAllValid(checked, 5);
    const bodies = server.requests.filter((request) => request.method === 'POST' && request.status === 201);
    expect(bodies.length).toBeGreaterThanOrEqual(2);
    const requestSchema = operation('repos/create-commit-status').requestBody?.content[
      'application/json'
    ] as Schema;
    for (const request of bodies) expect(schemaErrors(requestSchema, request.body)).toBeUndefined();
  });

  it('refuses invalid statuses with 422 as GitHub does, agreeing with the request schema', async () => {
    const { octokit, checked } = checkedOctokit(server.url, TOKEN);
    const requestSchema = operation('repos/create-commit-status').requestBody?.content[
      'application/json'
    ] as Schema;
    const post = (body: Record<string, unknown>, sha = secondSha) =>
      // The untyped form, to send what GitHub must refuse.
      octokit.request({
        method: 'POST',
        url: '/repos/{owner}/{repo}/statuses/{sha}',
        owner: 'acme',
        repo: 'widget',
        sha,
        ...body,
      });

    const badState = await failureOf(post({ state: 'bogus' }));
    expect(badState.status).toBe(422);
    expect(badState.response?.data).toMatchObject({
      message: 'Validation Failed',
      errors: [{ resource: 'Status', field: 'state', code: 'custom' }],
      status: '422',
    });
    expect(schemaErrors(requestSchema, { state: 'bogus' })).toBeDefined();

    const tooLong = await failureOf(post({ state: 'success', description: 'x'.repeat(141) }));
    expect(tooLong.status).toBe(422);
    expect(tooLong.message).toContain('description is too long (maximum is 140 characters)');
    await post({ state: 'success', description: '✓'.repeat(140) });

    const unknownCommit = await failureOf(post({ state: 'success' }, 'f'.repeat(40)));
    expect(unknownCommit.status).toBe(422);
    expect(unknownCommit.message).toContain(`No commit found for SHA: ${'f'.repeat(40)}`);
    expect(server.statusesFor('acme/widget', secondSha)).toHaveLength(1);
    expectAllValid(checked, 4);
  });
});

describe('commits the stand-in has resolved', () => {
  it('are remembered only once found: a sha refused before its commit arrives is taken after', async () => {
    const here = await createGitRepo({ 'a.txt': 'a\n' });
    const elsewhere = await createGitRepo({ 'b.txt': 'b\n' });
    server.addRepository({ owner: 'acme', name: 'later', gitDir: here.dir });
    const octokit = new Octokit({ baseUrl: server.url, auth: TOKEN });
    const status = (sha: string) =>
      octokit.rest.repos.createCommitStatus({ owner: 'acme', repo: 'later', sha, state: 'success' });
    expect((await status(here.sha)).status).toBe(201);
    expect((await status(here.sha)).status).toBe(201);
    // A commit of another repository: not here yet, then fetched here (as a push would bring it).
    expect((await failureOf(status(elsewhere.sha))).status).toBe(422);
    await promisify(execFile)('git', ['-C', here.dir, 'fetch', '--quiet', elsewhere.dir, 'HEAD'], {
      env: { ...process.env, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null' },
    });
    expect((await status(elsewhere.sha)).status).toBe(201);
    expect(server.statusesFor('acme/later', here.sha)).toHaveLength(2);
    expect(server.statusesFor('acme/later', elsewhere.sha)).toHaveLength(1);
    await Promise.all([here.dir, elsewhere.dir].map((dir) => rm(dir, { recursive: true, force: true })));
  });
});

describe('repository webhooks', () => {
  const hookRequestSchema = (id: string): Schema =>
    operation(id).requestBody?.content['application/json'] as Schema;

  it('creates (201 with Location), lists and updates webhooks in GitHub’s shapes, hiding the secret', async () => {
    const { octokit, checked } = checkedOctokit(server.url, TOKEN);
    const created = await octokit.rest.repos.createWebhook({
      owner: 'acme',
      repo: 'widget',
      name: 'web',
      config: {
        url: 'https://ci.example.test/webhook',
        content_type: 'json',
        secret: 'hook-secret',
        insecure_ssl: '0',
      },
      events: ['push', 'pull_request'],
      active: true,
    });
    expect(created.status).toBe(201);
    expect(created.headers.location).toBe(created.data.url);
    expect(created.data).toMatchObject({
      type: 'Repository',
      name: 'web',
      active: true,
      events: ['push', 'pull_request'],
      config: {
        url: 'https://ci.example.test/webhook',
        content_type: 'json',
        insecure_ssl: '0',
        secret: '********',
      },
      last_response: { code: null, status: 'unused', message: null },
    });
    expect(created.data.url).toBe(`${server.url}/repos/acme/widget/hooks/${created.data.id}`);
    // The defaults: form payloads, push only.
    const second = await octokit.rest.repos.createWebhook({
      owner: 'acme',
      repo: 'widget',
      config: { url: 'https://other.example.test/hook' },
    });
    expect(second.data).toMatchObject({ events: ['push'], active: true, config: { content_type: 'form' } });
    expect(second.data.config).not.toHaveProperty('secret');

    const listed = await octokit.rest.repos.listWebhooks({ owner: 'acme', repo: 'widget' });
    expect(listed.data.map((hook) => [hook.id, hook.config.url])).toEqual([
      [created.data.id, 'https://ci.example.test/webhook'],
      [second.data.id, 'https://other.example.test/hook'],
    ]);
    const paged = await octokit.rest.repos.listWebhooks({ owner: 'acme', repo: 'widget', per_page: 1 });
    expect(paged.data).toHaveLength(1);
    expect(paged.headers.link).toMatch(/page=2>; rel="next"/);

    // Without a config the hook keeps its own, secret included; events can be added and removed.
    const updated = await octokit.rest.repos.updateWebhook({
      owner: 'acme',
      repo: 'widget',
      hook_id: created.data.id,
      add_events: ['release'],
      remove_events: ['push'],
      active: false,
    });
    expect(updated.status).toBe(200);
    expect(updated.data).toMatchObject({
      active: false,
      events: ['pull_request', 'release'],
      config: { secret: '********' },
    });
    expect(server.hooksOf('acme/widget')[0]?.config.secret).toBe('hook-secret');
    // A new config replaces the old one whole: a secret not sent again is gone, as on GitHub.
    const replaced = await octokit.rest.repos.updateWebhook({
      owner: 'acme',
      repo: 'widget',
      hook_id: created.data.id,
      config: { url: 'https://ci.example.test/webhook', content_type: 'json' },
    });
    expect(replaced.data.config).not.toHaveProperty('secret');
    expect(server.hooksOf('acme/widget')[0]).toMatchObject({
      id: created.data.id,
      config: { url: 'https://ci.example.test/webhook', content_type: 'json', insecure_ssl: '0' },
    });
    expect(server.hooksOf('acme/widget')[0]?.config).not.toHaveProperty('secret');
    expectAllValid(checked, 6);

    const sent = server.requests.filter(
      (request) => /\/hooks(\/\d+)?$/.test(request.path) && request.method !== 'GET',
    );
    expect(sent.map((request) => request.method)).toEqual(['POST', 'POST', 'PATCH', 'PATCH']);
    for (const request of sent) {
      const id = request.method === 'POST' ? 'repos/create-webhook' : 'repos/update-webhook';
      expect(schemaErrors(hookRequestSchema(id), request.body)).toBeUndefined();
    }
  });

  it('refuses what GitHub refuses: 422 for duplicates and invalid hooks, 404 for unknown hooks and outsiders', async () => {
    const { octokit, checked } = checkedOctokit(server.url, TOKEN);
    const create = (body: Record<string, unknown>) =>
      // The untyped form, to send what GitHub must refuse.
      octokit.request({
        method: 'POST',
        url: '/repos/{owner}/{repo}/hooks',
        owner: 'acme',
        repo: 'vault',
        ...body,
      });
    const hook = await octokit.rest.repos.createWebhook({
      owner: 'acme',
      repo: 'vault',
      config: { url: 'https://ci.example.test/vault', content_type: 'json', secret: 's' },
      events: ['push'],
    });

    const duplicate = await failureOf(create({ config: { url: 'https://ci.example.test/vault' } }));
    expect(duplicate.status).toBe(422);
    expect(duplicate.response?.data).toMatchObject({
      message: 'Validation Failed',
      errors: [{ resource: 'Hook', code: 'custom', message: 'Hook already exists on this repository' }],
      status: '422',
    });
    const loopback = await failureOf(create({ config: { url: 'http://127.0.0.1:3000/webhook' } }));
    expect(loopback.status).toBe(422);
    expect(loopback.message).toContain("isn't reachable over the public Internet");
    const badEvent = await failureOf(
      create({ config: { url: 'https://x.example.test/' }, events: ['pushh'] }),
    );
    expect(badEvent.status).toBe(422);
    expect(badEvent.response?.data).toMatchObject({
      errors: [{ resource: 'Hook', field: 'events', message: '"pushh" is not a valid event name' }],
    });
    const noUrl = await failureOf(create({ config: { content_type: 'json' } }));
    expect(noUrl.status).toBe(422);
    expect(schemaErrors(hookRequestSchema('repos/create-webhook'), { config: {}, extra: 1 })).toMatch(
      /must NOT have additional properties/,
    );

    const missing = await failureOf(
      octokit.rest.repos.updateWebhook({
        owner: 'acme',
        repo: 'vault',
        hook_id: hook.data.id + 1000,
        active: true,
      }),
    );
    expect(missing.status).toBe(404);
    const refusedUpdate = await failureOf(
      octokit.rest.repos.updateWebhook({
        owner: 'acme',
        repo: 'vault',
        hook_id: hook.data.id,
        config: { url: 'https://ci.example.test/vault', content_type: 'xml' },
      }),
    );
    expect(refusedUpdate.status).toBe(422);
    expect(server.hooksOf('acme/vault')[0]?.config).toMatchObject({ content_type: 'json', secret: 's' });
    const unknownRepo = await failureOf(octokit.rest.repos.listWebhooks({ owner: 'acme', repo: 'nope' }));
    expect(unknownRepo.status).toBe(404);
    expectAllValid(checked, 8);

    // Webhooks are for the repository's administrators: anonymous callers see 404.
    const anonymous = checkedOctokit(server.url);
    const hidden = await failureOf(
      anonymous.octokit.rest.repos.listWebhooks({ owner: 'acme', repo: 'widget' }),
    );
    expect(hidden.status).toBe(404);
    expectAllValid(anonymous.checked, 1);
    expect(server.hooksOf('acme/vault')).toHaveLength(1);
  });
});

describe('archives', () => {
  it('redirects the tarball endpoint to a download of git archive with GitHub’s prefix', async () => {
    const { octokit, checked } = checkedOctokit(server.url);
    const redirect = await octokit.rest.repos.downloadTarballArchive({
      owner: 'acme',
      repo: 'widget',
      ref: publicRepo.sha,
      request: { redirect: 'manual' },
    });
    expect(redirect.status).toBe(302);
    const location = String(redirect.headers.location);
    expect(new URL(location).origin).toBe(server.url);
    const download = await fetch(location);
    expect(download.status).toBe(200);
    expect(download.headers.get('content-type')).toBe('application/x-gzip');
    const prefix = `acme-widget-${publicRepo.sha.slice(0, 7)}`;
    expect(download.headers.get('content-disposition')).toBe(`attachment; filename=${prefix}.tar.gz`);
    const entries = await readTarGz(new Uint8Array(await download.arrayBuffer()));
    expect(entries.get(`${prefix}/README.md`)?.content.toString()).toBe('# widget\n');
    expect(entries.get(`${prefix}/src/index.js`)?.content.toString()).toBe('console.log("hello")\n');
    expect((entries.get(`${prefix}/scripts/build.sh`)?.mode ?? 0) & 0o111).not.toBe(0);
    expect(entries.get(`${prefix}/docs/link.md`)).toMatchObject({
      type: 'SymbolicLink',
      linkpath: '../README.md',
    });

    const followed = await octokit.rest.repos.downloadTarballArchive({
      owner: 'acme',
      repo: 'widget',
      ref: 'main',
    });
    const latest = await readTarGz(new Uint8Array(followed.data as ArrayBuffer));
    const latestPrefix = `acme-widget-${secondSha.slice(0, 7)}`;
    expect(latest.get(`${latestPrefix}/README.md`)?.content.toString()).toBe('# widget v2\n');
    expect(latest.has(`${latestPrefix}/src/index.js`)).toBe(false);
    expectAllValid(checked, 2);
  });

  it('keeps private archives behind the token, and their download URL works briefly without it', async () => {
    const anonymous = checkedOctokit(server.url);
    const hidden = await failureOf(
      anonymous.octokit.rest.repos.downloadTarballArchive({
        owner: 'acme',
        repo: 'vault',
        ref: 'trunk',
        request: { redirect: 'manual' },
      }),
    );
    expect(hidden.status).toBe(404);

    const bearer = await fetch(`${server.url}/repos/acme/vault/tarball/trunk`, {
      headers: { authorization: `Bearer ${TOKEN}` },
      redirect: 'manual',
    });
    expect(bearer.status).toBe(302);
    const authorized = checkedOctokit(server.url, TOKEN);
    const redirect = await authorized.octokit.rest.repos.downloadTarballArchive({
      owner: 'acme',
      repo: 'vault',
      ref: 'trunk',
      request: { redirect: 'manual' },
    });
    const location = new URL(String(redirect.headers.location));
    expect(location.searchParams.get('token')).toMatch(/^[0-9A-F]{40}$/);

    const download = await fetch(location); // no Authorization header
    expect(download.status).toBe(200);
    const entries = await readTarGz(new Uint8Array(await download.arrayBuffer()));
    expect(entries.get(`acme-vault-${privateRepo.sha.slice(0, 7)}/secret.txt`)?.content.toString()).toBe(
      'private stuff\n',
    );

    const tampered = new URL(location);
    tampered.searchParams.set('token', 'F'.repeat(40));
    expect((await fetch(tampered)).status).toBe(404);
    const withoutToken = new URL(location);
    withoutToken.search = '';
    expect((await fetch(withoutToken)).status).toBe(404);
    await new Promise((resolve) => setTimeout(resolve, 500)); // the stand-in's URLs last 400 ms
    const expired = await fetch(location);
    expect(expired.status).toBe(404);
    expect(await expired.text()).toBe('404: Not Found');
    expectAllValid([...anonymous.checked, ...authorized.checked], 2);
  });
});

describe('contents', () => {
  it('serves files (base64), directories, symlinks and raw content in GitHub’s shapes', async () => {
    const { octokit, checked } = checkedOctokit(server.url, TOKEN);
    const file = await octokit.rest.repos.getContent({
      owner: 'acme',
      repo: 'widget',
      path: 'README.md',
      ref: publicRepo.sha,
    });
    expect(file.data).toMatchObject({ type: 'file', encoding: 'base64', name: 'README.md', size: 9 });
    const content = (file.data as { content: string }).content;
    expect(Buffer.from(content, 'base64').toString()).toBe('# widget\n');

    const latest = await octokit.rest.repos.getContent({ owner: 'acme', repo: 'widget', path: 'README.md' });
    expect(Buffer.from((latest.data as { content: string }).content, 'base64').toString()).toBe(
      '# widget v2\n',
    );

    const directory = await octokit.rest.repos.getContent({
      owner: 'acme',
      repo: 'widget',
      path: 'src',
      ref: publicRepo.sha,
    });
    expect(
      (directory.data as { path: string; type: string }[]).map((entry) => [entry.path, entry.type]),
    ).toEqual([['src/index.js', 'file']]);
    const root = await octokit.rest.repos.getContent({
      owner: 'acme',
      repo: 'widget',
      path: '',
      ref: publicRepo.sha,
    });
    expect((root.data as { name: string }[]).map((entry) => entry.name).sort()).toEqual([
      'README.md',
      'docs',
      'scripts',
      'src',
    ]);
    const link = await octokit.rest.repos.getContent({
      owner: 'acme',
      repo: 'widget',
      path: 'docs/link.md',
      ref: publicRepo.sha,
    });
    expect(link.data).toMatchObject({ type: 'symlink', target: '../README.md' });

    const raw = await octokit.rest.repos.getContent({
      owner: 'acme',
      repo: 'widget',
      path: 'src/index.js',
      ref: publicRepo.sha,
      mediaType: { format: 'raw' },
    });
    expect(raw.data).toBe('console.log("hello")\n');

    const missing = await failureOf(
      octokit.rest.repos.getContent({ owner: 'acme', repo: 'widget', path: 'nope.txt' }),
    );
    expect(missing.status).toBe(404);
    const removed = await failureOf(
      octokit.rest.repos.getContent({ owner: 'acme', repo: 'widget', path: 'src/index.js' }),
    );
    expect(removed.status).toBe(404);
    expectAllValid(checked, 8);
  });
});

describe('git trees', () => {
  it('serves a commit’s root tree, a tree by sha and recursive listings in GitHub’s shape', async () => {
    const { octokit, checked } = checkedOctokit(server.url, TOKEN);
    const root = await octokit.rest.git.getTree({ owner: 'acme', repo: 'widget', tree_sha: publicRepo.sha });
    expect(root.data.truncated).toBe(false);
    expect(root.data.url).toBe(`${server.url}/repos/acme/widget/git/trees/${root.data.sha}`);
    const byPath = new Map(root.data.tree.map((entry) => [entry.path, entry]));
    expect([...byPath.keys()].sort()).toEqual(['README.md', 'docs', 'scripts', 'src']);
    expect(byPath.get('README.md')).toEqual({
      path: 'README.md',
      mode: '100644',
      type: 'blob',
      sha: expect.stringMatching(/^[0-9a-f]{40}$/),
      size: 9,
      url: expect.stringMatching(/\/repos\/acme\/widget\/git\/blobs\/[0-9a-f]{40}$/),
    });
    expect(byPath.get('src')).toMatchObject({ type: 'tree', mode: '040000' });
    expect(byPath.get('src')).not.toHaveProperty('size');

    const folder = await octokit.rest.git.getTree({
      owner: 'acme',
      repo: 'widget',
      tree_sha: byPath.get('scripts')?.sha ?? '',
    });
    expect(folder.data.tree).toEqual([expect.objectContaining({ path: 'build.sh', mode: '100755' })]);
    const recursive = await octokit.rest.git.getTree({
      owner: 'acme',
      repo: 'widget',
      tree_sha: 'main',
      recursive: 'true',
    });
    expect(recursive.data.tree.map((entry) => entry.path).sort()).toEqual([
      'README.md',
      'docs',
      'docs/link.md',
      'scripts',
      'scripts/build.sh',
    ]);
    expect(recursive.data.tree.find((entry) => entry.path === 'docs/link.md')).toMatchObject({
      mode: '120000',
    });

    const missing = await failureOf(
      octokit.rest.git.getTree({ owner: 'acme', repo: 'widget', tree_sha: 'f'.repeat(40) }),
    );
    expect(missing.status).toBe(404);
    expectAllValid(checked, 4);
  });

  it('hides private repositories’ trees from anonymous callers', async () => {
    const anonymous = checkedOctokit(server.url);
    const hidden = await failureOf(
      anonymous.octokit.rest.git.getTree({ owner: 'acme', repo: 'vault', tree_sha: privateRepo.sha }),
    );
    expect(hidden.status).toBe(404);
    const authorized = checkedOctokit(server.url, TOKEN);
    const tree = await authorized.octokit.rest.git.getTree({
      owner: 'acme',
      repo: 'vault',
      tree_sha: 'trunk',
    });
    expect(tree.data.tree.map((entry) => entry.path)).toEqual(['secret.txt']);
    expectAllValid([...anonymous.checked, ...authorized.checked], 2);
  });
});

describe('tokens', () => {
  it('refuses a wrong token with 401 Bad credentials, even for public repositories', async () => {
    const { octokit, checked } = checkedOctokit(server.url, 'ghp_wrong');
    const failure = await failureOf(octokit.rest.repos.get({ owner: 'acme', repo: 'widget' }));
    expect(failure.status).toBe(401);
    expect(failure.response?.data).toMatchObject({ message: 'Bad credentials', status: '401' });
    expectAllValid(checked, 1);
  });

  it('lets anonymous callers read public repositories only, and write nothing', async () => {
    const { octokit, checked } = checkedOctokit(server.url);
    const widget = await octokit.rest.repos.get({ owner: 'acme', repo: 'widget' });
    expect(widget.headers['x-ratelimit-limit']).toBe('60');
    expect(widget.data).not.toHaveProperty('permissions');
    expect((await failureOf(octokit.rest.repos.get({ owner: 'acme', repo: 'vault' }))).status).toBe(404);
    expect(
      (await failureOf(octokit.rest.repos.getContent({ owner: 'acme', repo: 'vault', path: 'secret.txt' })))
        .status,
    ).toBe(404);
    const write = await failureOf(
      octokit.rest.repos.createCommitStatus({
        owner: 'acme',
        repo: 'widget',
        sha: publicRepo.sha,
        state: 'success',
      }),
    );
    expect(write.status).toBe(401);
    expect(write.message).toContain('Requires authentication');
    expectAllValid(checked, 4);
  });
});

describe('faults', () => {
  it('fails the next matching requests with 500 and 502, then answers normally', async () => {
    const { octokit, checked } = checkedOctokit(server.url, TOKEN);
    server.failNext({ mode: '500', method: 'GET', path: /\/repos\/acme\/widget$/ });
    server.failNext({ mode: '502', path: /\/repos\/acme\/widget$/ });
    // Not matching: another path and another method go through.
    expect((await octokit.rest.repos.get({ owner: 'acme', repo: 'vault' })).status).toBe(200);
    const serverError = await failureOf(octokit.rest.repos.get({ owner: 'acme', repo: 'widget' }));
    expect(serverError.status).toBe(500);
    const badGateway = await failureOf(octokit.rest.repos.get({ owner: 'acme', repo: 'widget' }));
    expect(badGateway.status).toBe(502);
    expect(badGateway.response?.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(server.pendingFaults()).toBe(0);
    expect((await octokit.rest.repos.get({ owner: 'acme', repo: 'widget' })).status).toBe(200);
    expectAllValid(checked, 4);
  });

  it('answers the primary rate limit with 403, remaining 0 and a reset a moment ahead', async () => {
    const { octokit, checked } = checkedOctokit(server.url, TOKEN);
    server.failNext({ mode: 'rate-limit', times: 2 });
    for (let attempt = 0; attempt < 2; attempt += 1) {
      const failure = await failureOf(octokit.rest.repos.get({ owner: 'acme', repo: 'widget' }));
      expect(failure.status).toBe(403);
      const headers = failure.response?.headers ?? {};
      expect(headers['x-ratelimit-remaining']).toBe('0');
      const resetIn = Number(headers['x-ratelimit-reset']) * 1000 - Date.now();
      expect(resetIn).toBeGreaterThan(0);
      expect(resetIn).toBeLessThanOrEqual(2000);
      expect(failure.message).toMatch(/^API rate limit exceeded for user ID \d+\. .*request ID [0-9A-F:]+/);
    }
    expect((await octokit.rest.repos.get({ owner: 'acme', repo: 'widget' })).status).toBe(200);
    expectAllValid(checked, 3);
  });

  it('answers the secondary rate limit with 429 and retry-after', async () => {
    const { octokit, checked } = checkedOctokit(server.url, TOKEN);
    server.failNext({ mode: '429', retryAfterSeconds: 7 });
    const failure = await failureOf(octokit.rest.repos.get({ owner: 'acme', repo: 'widget' }));
    expect(failure.status).toBe(429);
    expect(failure.response?.headers['retry-after']).toBe('7');
    expect(failure.message).toContain('secondary rate limit');
    expectAllValid(checked, 1);
  });

  it('answers slowly, or resets the connection without answering', async () => {
    const { octokit } = checkedOctokit(server.url, TOKEN);
    server.failNext({ mode: 'slow', delayMs: 300 });
    const started = Date.now();
    expect((await octokit.rest.repos.get({ owner: 'acme', repo: 'widget' })).status).toBe(200);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);

    server.failNext({ mode: 'reset', method: 'POST' });
    const before = server.requests.length;
    const reset = await failureOf(
      octokit.rest.repos.createCommitStatus({
        owner: 'acme',
        repo: 'widget',
        sha: publicRepo.sha,
        state: 'error',
      }),
    );
    // No answer: Octokit reports a network failure as status 500 without a response.
    expect(reset.response).toBeUndefined();
    expect(reset.status).toBe(500);
    const recorded = server.requests.slice(before);
    expect(recorded).toHaveLength(1);
    expect(recorded[0]).toMatchObject({ method: 'POST', body: { state: 'error' } });
    expect(recorded[0]?.status).toBeUndefined();
  });

  it('closes open connections when closed, so a slow answer cannot hold the test', async () => {
    const standIn = await startGitHubServer();
    const repo = await createGitRepo({ 'a.txt': 'a' });
    standIn.addRepository({ owner: 'o', name: 'r', gitDir: repo.dir });
    standIn.failNext({ mode: 'slow', delayMs: 60_000 });
    const pending = fetch(`${standIn.url}/repos/o/r`).then(
      () => 'answered',
      () => 'failed',
    );
    while (standIn.requests.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
    const started = Date.now();
    await standIn.close();
    expect(await pending).toBe('failed');
    expect(Date.now() - started).toBeLessThan(1000);
    await rm(repo.dir, { recursive: true, force: true });
  });
});

describe('recording', () => {
  it('records method, path, query, headers, parsed body and time of each request', async () => {
    const before = server.requests.length;
    const sent = Date.now();
    await fetch(`${server.url}/repos/acme/widget/statuses/${secondSha}?via=test`, {
      method: 'POST',
      headers: { authorization: `token ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ state: 'failure', context: 'record' }),
    });
    const [recorded] = server.requests.slice(before);
    expect(recorded).toMatchObject({
      method: 'POST',
      path: `/repos/acme/widget/statuses/${secondSha}`,
      query: { via: 'test' },
      body: { state: 'failure', context: 'record' },
      status: 201,
    });
    expect(recorded?.headers.authorization).toBe(`token ${TOKEN}`);
    expect(recorded?.time).toBeGreaterThanOrEqual(sent);
  });
});
