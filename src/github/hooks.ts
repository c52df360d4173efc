/**
 * Repository webhooks: the one GitHub sends Lambkin's webhook function `push` and `pull_request`
 * deliveries through. `ensureRepoWebhook` creates it, or brings an existing hook with the same URL
 * to what Lambkin needs (JSON payloads, TLS checked, the events, active), so running it again is
 * harmless. GitHub never shows a hook's secret again; an update that is not given a secret keeps
 * the hook's own, and refuses when that cannot be done without rewriting the secret.
 */
import type { Octokit } from '@octokit/rest';
import type { RepoName } from '../core/build.js';
import { splitRepoName } from './client.js';
import { GitHubApiError, GitHubNotFoundError, adviceFor, readRequestFailure } from './api-errors.js';

/** The events Lambkin builds from. */
export const LAMBKIN_HOOK_EVENTS = ['push', 'pull_request'] as const;

/** A repository webhook, as the API describes it (the secret never comes back). */
export interface RepoHook {
  id: number;
  url: string;
  events: string[];
  active: boolean;
  contentType: string | undefined;
  insecureSsl: string | undefined;
  /** Whether the hook has a secret (GitHub shows `********` for it). */
  hasSecret: boolean;
}

export interface WebhookRequest {
  /** Where GitHub delivers: the webhook function's URL. */
  url: string;
  events?: readonly string[];
  /** The secret to set. Without it an existing hook keeps its own, and a new one gets `newSecret()`. */
  secret?: string;
  /** Makes the secret of a new hook when none is given. */
  newSecret?: () => string;
}

export interface WebhookResult {
  action: 'created' | 'updated';
  hook: RepoHook;
  /** Set when the hook got a secret made by `newSecret`: shown once, GitHub never shows it again. */
  generatedSecret?: string;
  /** Whether the hook's secret was set by this call (false: the hook kept its own). */
  secretSet: boolean;
}

/** The hook exists but cannot be brought to what Lambkin needs without a secret to set. */
export class WebhookSecretNeededError extends GitHubApiError {
  constructor(repo: RepoName, url: string, problem: string) {
    super(
      `The webhook of ${repo} for ${url} ${problem}; fixing that means setting its secret again: ` +
        "re-run with the stack's webhook secret in LAMBKIN_WEBHOOK_SECRET and --secret-from-env.",
      { repo },
      'WEBHOOK_SECRET_NEEDED',
    );
  }
}

interface HookData {
  id: number;
  active: boolean;
  events: string[];
  config: { url?: string; content_type?: string; insecure_ssl?: string | number; secret?: string };
}

function toRepoHook(data: HookData): RepoHook {
  return {
    id: data.id,
    url: data.config.url ?? '',
    events: [...data.events],
    active: data.active,
    contentType: data.config.content_type,
    insecureSsl: data.config.insecure_ssl === undefined ? undefined : String(data.config.insecure_ssl),
    hasSecret: typeof data.config.secret === 'string' && data.config.secret !== '',
  };
}

/** GitHub's validation messages (`errors[].message`), which say what it refused. */
function validationMessages(error: unknown): string[] {
  const data = (error as { response?: { data?: unknown } } | null)?.response?.data;
  const errors = (data as { errors?: unknown } | undefined)?.errors;
  if (!Array.isArray(errors)) return [];
  return errors
    .map((item: unknown) => {
      if (typeof item === 'string') return item;
      const entry = item as { message?: unknown; field?: unknown; code?: unknown };
      if (typeof entry.message === 'string') return entry.message;
      return [entry.field, entry.code].filter((part) => typeof part === 'string').join(' ');
    })
    .filter(Boolean);
}

/** One clear sentence for a failed call: what was tried (`list the webhooks of o/r`), what GitHub said, what to do. */
function hookError(error: unknown, repo: RepoName, what: string): GitHubApiError {
  const failure = readRequestFailure(error);
  const details = {
    repo,
    cause: error,
    ...(failure.status === undefined ? {} : { status: failure.status }),
    ...(failure.requestId ? { requestId: failure.requestId } : {}),
  };
  const said =
    failure.status === undefined
      ? `the request failed (${failure.message})`
      : `GitHub answered ${failure.status} ${[failure.message, ...validationMessages(error)].join(': ')}`;
  const subject = `the webhooks of ${repo}`;
  if (failure.status === 404) {
    return new GitHubNotFoundError(
      `Could not ${what}: ${said}. The repository does not exist, or GITHUB_TOKEN cannot ` +
        'administer its webhooks: it needs admin rights on the repository (the admin:repo_hook scope, ' +
        'or the fine-grained "Webhooks: read and write" permission).',
      details,
    );
  }
  const advice =
    failure.status === 422
      ? 'Check the webhook URL: GitHub must be able to reach it over the public Internet.'
      : adviceFor(failure, subject);
  return new GitHubApiError(`Could not ${what}: ${said}. ${advice}`, details);
}

export async function listRepoHooks(octokit: Octokit, repo: RepoName): Promise<RepoHook[]> {
  const { owner, name } = splitRepoName(repo);
  try {
    const hooks = await octokit.paginate(octokit.rest.repos.listWebhooks, {
      owner,
      repo: name,
      per_page: 100,
    });
    return hooks.map((hook) => toRepoHook(hook as HookData));
  } catch (error) {
    throw hookError(error, repo, `list the webhooks of ${repo}`);
  }
}

/** Creates Lambkin's webhook, or updates the hook that already delivers to `request.url`. */
export async function ensureRepoWebhook(
  octokit: Octokit,
  repo: RepoName,
  request: WebhookRequest,
): Promise<WebhookResult> {
  const { owner, name } = splitRepoName(repo);
  const events = [...(request.events ?? LAMBKIN_HOOK_EVENTS)];
  const existing = (await listRepoHooks(octokit, repo)).find((hook) => hook.url === request.url);

  if (!existing) {
    const generated = request.secret === undefined ? request.newSecret?.() : undefined;
    const secret = request.secret ?? generated;
    if (secret === undefined || secret === '') {
      throw new WebhookSecretNeededError(repo, request.url, 'does not exist yet and no secret was given');
    }
    try {
      const created = await octokit.rest.repos.createWebhook({
        owner,
        repo: name,
        name: 'web',
        config: { url: request.url, content_type: 'json', secret, insecure_ssl: '0' },
        events,
        active: true,
      });
      return {
        action: 'created',
        hook: toRepoHook(created.data as HookData),
        secretSet: true,
        ...(generated === undefined ? {} : { generatedSecret: generated }),
      };
    } catch (error) {
      throw hookError(error, repo, `create the webhook of ${repo}`);
    }
  }

  if (request.secret === undefined) {
    // GitHub replaces a hook's whole config, secret included: without the secret, leave it alone.
    const problems = [
      ...(existing.hasSecret ? [] : ['has no secret (Lambkin refuses unsigned deliveries)']),
      ...(existing.contentType === 'json'
        ? []
        : [`sends ${existing.contentType ?? 'form'} payloads, not json`]),
      ...(existing.insecureSsl === '0' ? [] : ['does not check TLS certificates']),
    ];
    if (problems.length > 0) throw new WebhookSecretNeededError(repo, request.url, problems.join(', '));
  }
  try {
    const updated = await octokit.rest.repos.updateWebhook({
      owner,
      repo: name,
      hook_id: existing.id,
      ...(request.secret === undefined
        ? {}
        : {
            config: { url: request.url, content_type: 'json', secret: request.secret, insecure_ssl: '0' },
          }),
      events,
      active: true,
    });
    return {
      action: 'updated',
      hook: toRepoHook(updated.data as HookData),
      secretSet: request.secret !== undefined,
    };
  } catch (error) {
    throw hookError(error, repo, `update webhook ${existing.id} of ${repo}`);
  }
}
