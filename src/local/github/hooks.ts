/**
 * Repository webhooks (`/repos/{owner}/{repo}/hooks`): listed, created and updated, kept in
 * memory and validated as GitHub.com validates them.
 */
import { pageOf, requestBody, type RequestContext, type Route } from './context.js';
import { RouteError, sendJson, timestamp, validationFailed } from './http.js';
import { repoKey, type Repository, type StoredHook } from './records.js';
import { isPlainObject } from '../../core/values.js';

const HOOKS_DOCS = 'https://docs.github.com/rest/repos/webhooks';
/** A sample of GitHub's webhook events (and `*`, all of them): others are refused as unknown. */
const HOOK_EVENTS = new Set([
  '*',
  'check_run',
  'check_suite',
  'create',
  'delete',
  'deployment',
  'deployment_status',
  'issue_comment',
  'issues',
  'label',
  'member',
  'meta',
  'ping',
  'public',
  'pull_request',
  'pull_request_review',
  'pull_request_review_comment',
  'push',
  'release',
  'repository',
  'status',
  'workflow_dispatch',
  'workflow_run',
]);
/** GitHub.com delivers webhooks over the public Internet only. */
const PRIVATE_HOSTS =
  /^(?:localhost|.*\.localhost|127(?:\.\d{1,3}){3}|10(?:\.\d{1,3}){3}|192\.168(?:\.\d{1,3}){2}|172\.(?:1[6-9]|2\d|3[01])(?:\.\d{1,3}){2}|0\.0\.0\.0|\[::1?\])$/i;

/** Webhooks are the repository's administrators' business: GitHub answers 404 to anyone else. */
function administeredRepository(
  context: RequestContext,
  owner: string,
  name: string,
  docs: string,
): Repository {
  const repository = context.standIn.repositories.get(repoKey(owner, name));
  if (!repository || !context.caller.authenticated) throw new RouteError(404, 'Not Found', docs);
  return repository;
}

function hookJson(baseUrl: string, repository: Repository, hook: StoredHook): Record<string, unknown> {
  const url = `${baseUrl}/repos/${repository.owner}/${repository.name}/hooks/${hook.id}`;
  return {
    type: 'Repository',
    id: hook.id,
    name: 'web',
    active: hook.active,
    events: [...hook.events],
    config: {
      content_type: hook.config.content_type,
      insecure_ssl: hook.config.insecure_ssl,
      // GitHub never shows a secret again: only that there is one.
      ...(hook.config.secret === undefined ? {} : { secret: '********' }),
      url: hook.config.url,
    },
    updated_at: hook.updated_at,
    created_at: hook.created_at,
    url,
    test_url: `${url}/test`,
    ping_url: `${url}/pings`,
    deliveries_url: `${url}/deliveries`,
    last_response: { code: null, status: 'unused', message: null },
  };
}

/** The request's JSON object (`{}` for no body). */
function hookBody(context: RequestContext, docs: string): Record<string, unknown> {
  const body = requestBody(context, docs);
  if (body === undefined) return {};
  if (!isPlainObject(body)) throw new RouteError(400, 'Problems parsing JSON', docs);
  return body;
}

function hookInvalid(docs: string, message: string, field?: string, code?: string): RouteError {
  return validationFailed(docs, 'Hook', message, field, code);
}

/** Validates a `config` object as GitHub.com does; the config a hook then has. */
function hookConfig(config: unknown, docs: string): StoredHook['config'] {
  if (!isPlainObject(config) || typeof config.url !== 'string' || config.url.trim() === '') {
    throw hookInvalid(docs, 'Config must contain a url', 'config');
  }
  let url: URL;
  try {
    url = new URL(config.url);
  } catch {
    throw hookInvalid(docs, 'url is not a valid URL', 'url');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw hookInvalid(docs, 'url must use http or https', 'url');
  }
  if (PRIVATE_HOSTS.test(url.hostname)) {
    throw hookInvalid(
      docs,
      `url is not supported because it isn't reachable over the public Internet (${url.hostname})`,
      'url',
    );
  }
  const contentType = config.content_type ?? 'form';
  if (contentType !== 'json' && contentType !== 'form') {
    throw hookInvalid(docs, 'content_type is not included in the list', 'content_type');
  }
  const insecure = config.insecure_ssl ?? '0';
  if (!['0', '1', 0, 1].includes(insecure as string | number)) {
    throw hookInvalid(docs, 'insecure_ssl is not included in the list', 'insecure_ssl');
  }
  if (config.secret !== undefined && config.secret !== null && typeof config.secret !== 'string') {
    throw hookInvalid(docs, 'secret must be a string', 'secret', 'invalid');
  }
  const secret = typeof config.secret === 'string' && config.secret !== '' ? config.secret : undefined;
  return {
    url: config.url,
    content_type: contentType,
    insecure_ssl: String(insecure) as '0' | '1',
    ...(secret === undefined ? {} : { secret }),
  };
}

function hookEvents(value: unknown, field: string, docs: string): string[] {
  if (!Array.isArray(value) || value.some((event) => typeof event !== 'string')) {
    throw hookInvalid(docs, `${field} must be an array of strings`, field, 'invalid');
  }
  const unknown = (value as string[]).find((event) => !HOOK_EVENTS.has(event));
  if (unknown !== undefined) throw hookInvalid(docs, `"${unknown}" is not a valid event name`, field);
  return [...new Set(value as string[])];
}

function refuseDuplicateUrl(repository: Repository, url: string, docs: string, except?: number): void {
  for (const hook of repository.hooks.values()) {
    if (hook.id !== except && hook.config.url === url) {
      throw hookInvalid(docs, 'Hook already exists on this repository');
    }
  }
}

async function listHooks(context: RequestContext, owner: string, name: string): Promise<void> {
  const docs = `${HOOKS_DOCS}#list-repository-webhooks`;
  const repository = administeredRepository(context, owner, name, docs);
  const page = pageOf(
    context,
    [...repository.hooks.values()],
    `${context.standIn.baseUrl}/repos/${repository.owner}/${repository.name}/hooks`,
  );
  sendJson(
    context.response,
    200,
    page.headers,
    page.items.map((hook) => hookJson(context.standIn.baseUrl, repository, hook)),
  );
}

async function createHook(context: RequestContext, owner: string, name: string): Promise<void> {
  const docs = `${HOOKS_DOCS}#create-a-repository-webhook`;
  const repository = administeredRepository(context, owner, name, docs);
  const body = hookBody(context, docs);
  if (body.name !== undefined && body.name !== 'web') {
    throw hookInvalid(docs, 'name must be "web"', 'name');
  }
  const config = hookConfig(body.config, docs);
  const events = body.events === undefined ? ['push'] : hookEvents(body.events, 'events', docs);
  if (body.active !== undefined && typeof body.active !== 'boolean') {
    throw hookInvalid(docs, 'active must be a boolean', 'active', 'invalid');
  }
  refuseDuplicateUrl(repository, config.url, docs);
  const now = timestamp();
  const hook: StoredHook = {
    id: context.standIn.nextHookId++,
    active: body.active ?? true,
    events,
    config,
    created_at: now,
    updated_at: now,
  };
  repository.hooks.set(hook.id, hook);
  const json = hookJson(context.standIn.baseUrl, repository, hook);
  sendJson(context.response, 201, { ...context.headers, location: String(json.url) }, json);
}

async function updateHook(context: RequestContext, owner: string, name: string, id: string): Promise<void> {
  const docs = `${HOOKS_DOCS}#update-a-repository-webhook`;
  const repository = administeredRepository(context, owner, name, docs);
  const hook = /^\d+$/.test(id) ? repository.hooks.get(Number(id)) : undefined;
  if (!hook) throw new RouteError(404, 'Not Found', docs);
  const body = hookBody(context, docs);
  // Everything is checked before anything changes: a refused update changes nothing.
  // A new config replaces the old one whole: a secret not sent again is removed, as on GitHub.
  const config = body.config === undefined ? hook.config : hookConfig(body.config, docs);
  let events = body.events === undefined ? hook.events : hookEvents(body.events, 'events', docs);
  if (body.add_events !== undefined) {
    events = [...new Set([...events, ...hookEvents(body.add_events, 'add_events', docs)])];
  }
  if (body.remove_events !== undefined) {
    const removed = new Set(hookEvents(body.remove_events, 'remove_events', docs));
    events = events.filter((event) => !removed.has(event));
  }
  if (body.active !== undefined && typeof body.active !== 'boolean') {
    throw hookInvalid(docs, 'active must be a boolean', 'active', 'invalid');
  }
  refuseDuplicateUrl(repository, config.url, docs, hook.id);
  hook.config = config;
  hook.events = events;
  if (body.active !== undefined) hook.active = body.active;
  hook.updated_at = timestamp();
  sendJson(context.response, 200, context.headers, hookJson(context.standIn.baseUrl, repository, hook));
}

export const hookRoutes: Route[] = [
  {
    method: 'GET',
    path: 'hooks',
    access: { permission: 'repository_hooks', level: 'read' },
    handle: listHooks,
  },
  {
    method: 'POST',
    path: 'hooks',
    access: { permission: 'repository_hooks', level: 'write' },
    handle: createHook,
  },
  {
    method: 'PATCH',
    path: 'hooks/{id}',
    access: { permission: 'repository_hooks', level: 'write' },
    handle: updateHook,
  },
];
