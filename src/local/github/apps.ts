/**
 * GitHub Apps: GET /app and GET /repos/{owner}/{repo}/installation (an App's JWT), installation
 * tokens (POST /app/installations/{installation_id}/access_tokens, scoped to repositories and
 * permissions that context.ts then enforces), and POST /app-manifests/{code}/conversions.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { requestBody, type RequestContext, type Route, type StandIn } from './context.js';
import { nodeId, notFound, RouteError, sendJson, timestamp, validationFailed } from './http.js';
import { JWT_UNDECODABLE } from './jwt.js';
import {
  repoKey,
  type AppDefinition,
  type AppPermissions,
  type AppRecord,
  type InstallationDefinition,
  type InstallationGrant,
  type InstallationRecord,
  type Repository,
} from './records.js';
import { repositoryJson, userJson } from './repositories.js';
import { isPlainObject } from '../../core/values.js';

const INSTALLATION_DOCS =
  'https://docs.github.com/rest/apps/apps#get-a-repository-installation-for-the-authenticated-app';
const TOKEN_DOCS = 'https://docs.github.com/rest/apps/apps#create-an-installation-access-token-for-an-app';
const MANIFEST_DOCS = 'https://docs.github.com/rest/apps/apps#create-a-github-app-from-a-manifest';

export const DEFAULT_APP_PERMISSIONS: AppPermissions = {
  metadata: 'read',
  checks: 'write',
  statuses: 'write',
  contents: 'read',
};
const DEFAULT_APP_EVENTS = ['check_run', 'check_suite', 'pull_request', 'push'];
const LEVELS = ['read', 'write'];

/** Ids of accounts that own Apps or have installed them, apart from repositories' owners. */
const accountId = (login: string): number =>
  200_000 + ([...login].reduce((sum, char) => (sum * 31 + char.charCodeAt(0)) % 100_000, 7) % 100_000);

export function appRecord(definition: AppDefinition): AppRecord {
  return {
    id: definition.id,
    publicKey: definition.publicKey,
    slug: definition.slug ?? `lambkin-test-app-${definition.id}`,
    name: definition.name ?? `Lambkin test App ${definition.id}`,
    owner: definition.owner ?? 'lambkin',
    clientId: definition.clientId ?? `Iv1.${randomBytes(8).toString('hex')}`,
    permissions: { ...(definition.permissions ?? DEFAULT_APP_PERMISSIONS) },
    events: [...(definition.events ?? DEFAULT_APP_EVENTS)],
    createdAt: timestamp(),
  };
}

export function installationRecord(standIn: StandIn, definition: InstallationDefinition): InstallationRecord {
  let appId = definition.appId;
  if (appId === undefined) {
    if (standIn.apps.size !== 1)
      throw new Error('Name the appId of an installation when the stand-in has several Apps.');
    appId = [...standIn.apps.keys()][0] ?? 0;
  }
  const app = standIn.apps.get(appId);
  if (!app) throw new Error(`The stand-in has no App ${appId}: add it before its installations.`);
  return {
    id: definition.id,
    appId,
    account: definition.account,
    accountType: definition.accountType ?? 'Organization',
    repositories:
      definition.repositories === 'all' ? 'all' : definition.repositories.map((repo) => repo.toLowerCase()),
    permissions: { ...(definition.permissions ?? app.permissions) },
    createdAt: timestamp(),
  };
}

export function appJson(baseUrl: string, app: AppRecord): Record<string, unknown> {
  return {
    id: app.id,
    slug: app.slug,
    node_id: nodeId('Integration', app.id),
    client_id: app.clientId,
    owner: userJson(baseUrl, app.owner, accountId(app.owner), 'Organization'),
    name: app.name,
    description: null,
    external_url: `${baseUrl}/${app.owner}`,
    html_url: `${baseUrl}/apps/${app.slug}`,
    created_at: app.createdAt,
    updated_at: app.createdAt,
    permissions: { ...app.permissions },
    events: [...app.events],
  };
}

/** Whether `installation` covers `repository`. */
function installedOn(installation: InstallationRecord, repository: Repository): boolean {
  return installation.repositories === 'all'
    ? repository.owner.toLowerCase() === installation.account.toLowerCase()
    : installation.repositories.includes(repoKey(repository.owner, repository.name));
}

function installationJson(standIn: StandIn, installation: InstallationRecord): Record<string, unknown> {
  const app = standIn.apps.get(installation.appId);
  const { baseUrl } = standIn;
  const id = accountId(installation.account);
  return {
    id: installation.id,
    account: userJson(baseUrl, installation.account, id, installation.accountType),
    repository_selection: installation.repositories === 'all' ? 'all' : 'selected',
    access_tokens_url: `${baseUrl}/app/installations/${installation.id}/access_tokens`,
    repositories_url: `${baseUrl}/installation/repositories`,
    html_url: `${baseUrl}/organizations/${installation.account}/settings/installations/${installation.id}`,
    app_id: installation.appId,
    app_slug: app?.slug ?? '',
    client_id: app?.clientId ?? '',
    target_id: id,
    target_type: installation.accountType,
    permissions: { ...installation.permissions },
    events: [...(app?.events ?? [])],
    created_at: installation.createdAt,
    updated_at: installation.createdAt,
    single_file_name: null,
    has_multiple_single_files: false,
    single_file_paths: [],
    suspended_by: null,
    suspended_at: null,
  };
}

function callingApp(context: RequestContext): AppRecord {
  if (context.caller.kind !== 'app') throw new RouteError(401, JWT_UNDECODABLE);
  return context.caller.app;
}

async function getApp(context: RequestContext): Promise<void> {
  const app = callingApp(context);
  const installations = [...context.standIn.installations.values()].filter((each) => each.appId === app.id);
  sendJson(context.response, 200, context.headers, {
    ...appJson(context.standIn.baseUrl, app),
    installations_count: installations.length,
  });
}

async function getRepositoryInstallation(
  context: RequestContext,
  owner: string,
  name: string,
): Promise<void> {
  const app = callingApp(context);
  const repository = context.standIn.repositories.get(repoKey(owner, name));
  const installation =
    repository &&
    [...context.standIn.installations.values()].find(
      (candidate) => candidate.appId === app.id && installedOn(candidate, repository),
    );
  if (!installation) throw new RouteError(404, 'Not Found', INSTALLATION_DOCS);
  sendJson(context.response, 200, context.headers, installationJson(context.standIn, installation));
}

function newInstallationToken(): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  return `ghs_${[...randomBytes(36)].map((byte) => alphabet[byte % alphabet.length]).join('')}`;
}

const INACCESSIBLE_REPOSITORY =
  'There is at least one repository that does not exist or is not accessible to the parent installation.';

async function createInstallationToken(context: RequestContext, installationId: string): Promise<void> {
  const { standIn } = context;
  const app = callingApp(context);
  const installation = standIn.installations.get(Number(installationId));
  if (!/^\d+$/.test(installationId) || !installation || installation.appId !== app.id) {
    throw new RouteError(404, 'Not Found', TOKEN_DOCS);
  }
  const fields = requestBody(context, TOKEN_DOCS) ?? {};
  if (!isPlainObject(fields)) throw new RouteError(400, 'Problems parsing JSON', TOKEN_DOCS);
  const installed = [...standIn.repositories.values()].filter((repository) =>
    installedOn(installation, repository),
  );
  const accountRepositories = installed.filter(
    (repository) => repository.owner.toLowerCase() === installation.account.toLowerCase(),
  );
  let selected: Repository[] | undefined;
  for (const [field, key] of [
    ['repositories', (repository: Repository): unknown => repository.name.toLowerCase()],
    ['repository_ids', (repository: Repository): unknown => repository.id],
  ] as const) {
    const wanted = fields[field];
    if (wanted === undefined) continue;
    if (!Array.isArray(wanted)) {
      throw new RouteError(
        422,
        `Invalid request.\n\nFor 'properties/${field}', ${JSON.stringify(wanted)} is not an array.`,
        TOKEN_DOCS,
      );
    }
    for (const item of wanted) {
      const lookup = typeof item === 'string' ? item.toLowerCase() : item;
      const repository = accountRepositories.find((candidate) => key(candidate) === lookup);
      if (!repository)
        throw validationFailed(TOKEN_DOCS, 'Repository', INACCESSIBLE_REPOSITORY, field, 'invalid');
      selected = [...(selected ?? []).filter((each) => each !== repository), repository];
    }
  }
  let permissions = { ...installation.permissions };
  if (fields.permissions !== undefined) {
    if (!isPlainObject(fields.permissions)) {
      throw new RouteError(
        422,
        "Invalid request.\n\nFor 'properties/permissions', it is not an object.",
        TOKEN_DOCS,
      );
    }
    permissions = {};
    for (const [permission, level] of Object.entries(fields.permissions)) {
      const granted = installation.permissions[permission];
      if (
        !LEVELS.includes(String(level)) ||
        granted === undefined ||
        (level === 'write' && granted !== 'write')
      ) {
        throw new RouteError(
          422,
          'The permissions requested are not granted to this installation.',
          TOKEN_DOCS,
        );
      }
      permissions[permission] = level as 'read' | 'write';
    }
    permissions.metadata ??= 'read';
  }
  const now = Date.now();
  const token = newInstallationToken();
  const reach = selected ?? (installation.repositories === 'all' ? undefined : installed);
  const grant: InstallationGrant = {
    token,
    installationId: installation.id,
    appId: app.id,
    account: installation.account,
    repositories: reach
      ? new Set(reach.map((repository) => repoKey(repository.owner, repository.name)))
      : 'all',
    permissions,
    createdAt: now,
    expiresAt: now + standIn.installationTokenTtlMs,
  };
  standIn.installationTokens.set(token, grant);
  const expiresAt = timestamp(grant.expiresAt);
  standIn.mintedTokens.push({
    token,
    installationId: installation.id,
    repositories: reach ? reach.map((repository) => `${repository.owner}/${repository.name}`) : 'all',
    permissions: { ...permissions },
    expiresAt,
  });
  sendJson(context.response, 201, context.headers, {
    token,
    expires_at: expiresAt,
    permissions,
    repository_selection: reach ? 'selected' : 'all',
    ...(reach
      ? {
          repositories: reach.map((repository) =>
            repositoryJson(standIn.baseUrl, repository, context.caller),
          ),
        }
      : {}),
  });
}

async function convertManifest(context: RequestContext, code: string): Promise<void> {
  const { standIn } = context;
  const manifest = standIn.manifestCodes.get(code);
  if (!manifest) throw new RouteError(404, 'Not Found', MANIFEST_DOCS);
  standIn.manifestCodes.delete(code); // a code converts once, as on GitHub
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const id = Math.max(0, ...standIn.apps.keys()) + 1;
  const slug =
    manifest.name
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '-')
      .replace(/^-|-$/g, '') || `app-${id}`;
  const app = appRecord({
    id,
    slug,
    name: manifest.name,
    owner: manifest.owner ?? standIn.login,
    publicKey: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    ...(manifest.permissions ? { permissions: manifest.permissions } : {}),
    ...(manifest.events ? { events: manifest.events } : {}),
  });
  standIn.apps.set(id, app);
  sendJson(context.response, 201, context.headers, {
    ...appJson(standIn.baseUrl, app),
    ...(manifest.url ? { external_url: manifest.url } : {}),
    client_id: app.clientId,
    client_secret: randomBytes(20).toString('hex'),
    webhook_secret: randomBytes(20).toString('hex'),
    pem: privateKey.export({ type: 'pkcs1', format: 'pem' }).toString(),
  });
}

/** Routes under /repos/{owner}/{repo}. */
export const appRepositoryRoutes: Route[] = [
  { method: 'GET', path: 'installation', access: 'app', handle: getRepositoryInstallation },
];

/**
 * Answers the App endpoints outside /repos (`segments`: the decoded path); false when `segments`
 * is none of them.
 */
export async function routeApps(context: RequestContext, segments: string[]): Promise<boolean> {
  const method = context.request.method;
  const [first, second, third, fourth] = segments;
  if (first === 'app' && segments.length === 1 && method === 'GET') {
    await getApp(context);
    return true;
  }
  if (first === 'app' && second === 'installations' && fourth === 'access_tokens' && segments.length === 4) {
    if (method !== 'POST') throw notFound();
    await createInstallationToken(context, third ?? '');
    return true;
  }
  if (first === 'app-manifests' && third === 'conversions' && segments.length === 3 && method === 'POST') {
    await convertManifest(context, second ?? '');
    return true;
  }
  return false;
}
