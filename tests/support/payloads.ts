/**
 * Webhook payloads as GitHub sends them, taken from `@octokit/webhooks-examples` (recorded
 * api.github.com deliveries) and adapted to a test's repository without changing their shape, plus
 * signed deliveries carrying the headers GitHub's hookshot sends.
 */
import { createHash, createHmac, randomBytes, randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import type { WebhookDefinition } from '@octokit/webhooks-examples';
import { sign } from '@octokit/webhooks-methods';

export type ExampleEventName = WebhookDefinition['name'];
/** A payload of `event`, typed as GitHub documents it. */
export type ExamplePayload<E extends ExampleEventName> = WebhookDefinition<E>['examples'][number];
export type PushPayload = ExamplePayload<'push'>;
export type PullRequestPayload = ExamplePayload<'pull_request'>;
export type PullRequestAction = PullRequestPayload['action'];

/** Push examples by what was pushed (GitHub records no branch deletion: it is derived from a tag's). */
export type PushVariant = 'branch' | 'tag' | 'branch-deleted' | 'tag-deleted';

/**
 * Chooses an example: an `action` for events that have them, a `PushVariant` for `push`, or a
 * predicate. Without one: a branch push for `push`, the first recorded example otherwise.
 */
export type ExampleFilter<E extends ExampleEventName> =
  (E extends 'push' ? PushVariant : string) | ((example: ExamplePayload<E>) => boolean);

/** The examples' own repository and account, replaced by the builders. */
const EXAMPLE_REPO = 'Codertocat/Hello-World';
const EXAMPLE_OWNER = 'Codertocat';
const EXAMPLE_NAME = 'Hello-World';
const ZERO_SHA = '0000000000000000000000000000000000000000';

type Json = string | number | boolean | null | Json[] | JsonObject;
interface JsonObject {
  [key: string]: Json;
}

const definitions = createRequire(import.meta.url)('@octokit/webhooks-examples') as WebhookDefinition[];

function recordedExamples(event: ExampleEventName): JsonObject[] {
  const definition = definitions.find((candidate) => candidate.name === event);
  if (!definition || definition.examples.length === 0) {
    throw new Error(`@octokit/webhooks-examples has no "${event}" example; pick another event.`);
  }
  return definition.examples as unknown as JsonObject[];
}

function isPushVariant(example: JsonObject, variant: PushVariant): boolean {
  const ref = String(example.ref);
  const isTag = ref.startsWith('refs/tags/');
  const deleted = example.deleted === true;
  switch (variant) {
    case 'branch':
      return ref.startsWith('refs/heads/') && !deleted;
    case 'tag':
      return isTag && !deleted;
    case 'tag-deleted':
      return isTag && deleted;
    case 'branch-deleted':
      return false;
  }
}

/** A branch deletion is a tag deletion with a branch ref: same fields, `deleted: true`, null head. */
function branchDeletion(): JsonObject {
  const tagDeletion = recordedExamples('push').find((example) => isPushVariant(example, 'tag-deleted'));
  if (!tagDeletion) throw new Error('@octokit/webhooks-examples has no tag deletion push to derive from.');
  return { ...structuredClone(tagDeletion), ref: 'refs/heads/feature' };
}

/** A deep copy of a real payload GitHub sent for `event` (see `ExampleFilter`). */
export function examplePayload<E extends ExampleEventName>(
  event: E,
  filter?: ExampleFilter<E>,
): ExamplePayload<E> {
  const examples = recordedExamples(event);
  let chosen: JsonObject | undefined;
  if (typeof filter === 'function') {
    chosen = examples.find((example) => filter(example as unknown as ExamplePayload<E>));
  } else if (event === 'push') {
    const variant = (filter ?? 'branch') as PushVariant;
    chosen =
      variant === 'branch-deleted'
        ? branchDeletion()
        : examples.find((example) => isPushVariant(example, variant));
  } else if (filter === undefined) {
    chosen = examples[0];
  } else {
    chosen = examples.find((example) => example.action === filter);
  }
  if (!chosen) {
    const actions = [...new Set(examples.map((example) => example.action).filter(Boolean))].join(', ');
    throw new Error(
      `No recorded "${event}" example matches ${typeof filter === 'function' ? 'the predicate' : String(filter)}` +
        (actions ? `; recorded actions: ${actions}.` : '.'),
    );
  }
  return structuredClone(chosen) as unknown as ExamplePayload<E>;
}

export interface PushPayloadOptions {
  /** `owner/name`. */
  repo: string;
  /** Branch pushed (default `main`); ignored when `tag` is given. */
  branch?: string;
  /** Tag pushed: the ref becomes `refs/tags/<tag>`. */
  tag?: string;
  /** Commit pushed; for a deletion, the commit the ref pointed at. Default: derived from the ref. */
  sha?: string;
  /** Head commit message (default `Update README`). */
  message?: string;
  /** Commit the ref pointed at before (default: derived; all zeros when `created`). */
  before?: string;
  /** The push created the ref (default: true for tags, false for branches). */
  created?: boolean;
  /** The push deleted the ref: `after` is all zeros and there is no head commit. */
  deleted?: boolean;
  private?: boolean;
  /** Default `main`. */
  defaultBranch?: string;
  /** Login of whoever pushed (default: the repository owner); also the sender. */
  pusher?: string;
}

/** A real push payload adapted to `options`, every field our intake reads kept consistent. */
export function pushPayload(options: PushPayloadOptions): PushPayload {
  const { owner } = splitRepo(options.repo);
  const branch = options.branch ?? 'main';
  const ref = options.tag ? `refs/tags/${options.tag}` : `refs/heads/${branch}`;
  const variant: PushVariant = options.tag
    ? options.deleted
      ? 'tag-deleted'
      : 'tag'
    : options.deleted
      ? 'branch-deleted'
      : 'branch';
  const example = examplePayload('push', variant) as unknown as JsonObject;
  const sha = options.sha ?? fakeSha(`${options.repo}:${ref}`);
  // Pushing a tag almost always creates it; a branch push usually moves an existing branch.
  const created = !options.deleted && (options.created ?? Boolean(options.tag));
  const before = options.deleted ? sha : created ? ZERO_SHA : (options.before ?? fakeSha(`parent of ${sha}`));
  const after = options.deleted ? ZERO_SHA : sha;
  const pusherLogin = options.pusher ?? owner;

  const payload = replaceInStrings(example, EXAMPLE_REPO, options.repo) as JsonObject;
  payload.ref = ref;
  payload.before = before;
  payload.after = after;
  payload.created = created;
  payload.deleted = options.deleted ?? false;
  payload.forced = false;
  payload.base_ref = null;
  payload.compare = compareUrl(options.repo, { before, after, created, tag: options.tag });
  payload.repository = repositoryFor(objectAt(example, 'repository'), options.repo, options);
  payload.pusher = { name: pusherLogin, email: noreplyEmail(pusherLogin) };
  payload.sender = accountFor(objectAt(example, 'sender'), pusherLogin);

  const exampleHead = example.head_commit;
  if (
    options.deleted ||
    exampleHead === null ||
    typeof exampleHead !== 'object' ||
    Array.isArray(exampleHead)
  ) {
    payload.head_commit = null;
    payload.commits = [];
  } else {
    const author = { name: pusherLogin, email: noreplyEmail(pusherLogin), username: pusherLogin };
    const headCommit: JsonObject = {
      ...exampleHead,
      id: sha,
      tree_id: fakeSha(`tree of ${sha}`),
      message: options.message ?? 'Update README',
      url: `https://github.com/${options.repo}/commit/${sha}`,
      author,
      committer: { ...author },
    };
    payload.head_commit = headCommit;
    // GitHub lists no commits when a tag is created on an existing commit.
    const exampleCommits = example.commits;
    payload.commits =
      Array.isArray(exampleCommits) && exampleCommits.length > 0 ? [structuredClone(headCommit)] : [];
  }
  return withoutExampleNames(payload, options.repo) as unknown as PushPayload;
}

export interface PullRequestPayloadOptions {
  /** The base repository, `owner/name`. */
  repo: string;
  number: number;
  /** Default `opened`. Must be one GitHub recorded an example of (see `examplePayload`). */
  action?: PullRequestAction;
  /** Default: derived. */
  headSha?: string;
  /** Default `feature`. */
  headRef?: string;
  /** Default: the default branch. */
  baseRef?: string;
  /** Default: derived. */
  baseSha?: string;
  /** The head lives in a fork owned by `sender` (another owner), not in `repo`. */
  fork?: boolean;
  private?: boolean;
  /** Default `main`. */
  defaultBranch?: string;
  /** Login who opened the PR and caused this event. Default: the owner, or `outside-contributor` for forks. */
  sender?: string;
  title?: string;
  /** `closed` only: whether it was merged. */
  merged?: boolean;
  /** `labeled`/`unlabeled` only: the label's name. */
  label?: string;
  /** `synchronize` only: the head before the push. Default: derived. */
  before?: string;
}

/** A real pull_request payload adapted to `options`, base and head kept consistent. */
export function pullRequestPayload(options: PullRequestPayloadOptions): PullRequestPayload {
  const { owner, name } = splitRepo(options.repo);
  const action = options.action ?? 'opened';
  const example = examplePayload('pull_request', action) as unknown as JsonObject;
  const examplePull = objectAt(example, 'pull_request');
  const exampleNumber = Number(example.number);
  const exampleHeadSha = String(objectAt(examplePull, 'head').sha);
  const exampleBaseSha = String(objectAt(examplePull, 'base').sha);
  const defaultBranch = options.defaultBranch ?? 'main';
  const headRef = options.headRef ?? 'feature';
  const baseRef = options.baseRef ?? defaultBranch;
  const headSha = options.headSha ?? fakeSha(`${options.repo}#${options.number}:${headRef}`);
  const baseSha = options.baseSha ?? fakeSha(`${options.repo}:${baseRef}`);
  const author = options.sender ?? (options.fork ? 'outside-contributor' : owner);
  if (options.fork && author === owner) {
    throw new Error(`A fork's owner must differ from the base owner "${owner}"; pass another sender.`);
  }
  const headOwner = options.fork ? author : owner;

  // URLs of the PR, its issue, commits and statuses all embed the repository, number and shas.
  let payload = replaceInStrings(example, EXAMPLE_REPO, options.repo) as JsonObject;
  payload = replaceInStrings(
    payload,
    new RegExp(`/(pulls|pull|issues)/${exampleNumber}(?=[/.]|$)`, 'g'),
    `/$1/${options.number}`,
  ) as JsonObject;
  payload = replaceInStrings(payload, exampleHeadSha, headSha) as JsonObject;
  payload = replaceInStrings(payload, exampleBaseSha, baseSha) as JsonObject;

  const repositoryOptions = { private: options.private, defaultBranch };
  const repository = repositoryFor(objectAt(example, 'repository'), options.repo, repositoryOptions);
  const exampleAccount = objectAt(example, 'sender');
  payload.action = action;
  payload.number = options.number;
  payload.repository = repository;
  payload.sender = accountFor(exampleAccount, author);

  const pull = objectAt(payload, 'pull_request');
  pull.number = options.number;
  pull.id = fakeId(`${options.repo}#${options.number}`);
  pull.title = options.title ?? String(examplePull.title);
  pull.user = accountFor(exampleAccount, author);
  pull.head = {
    ...objectAt(pull, 'head'),
    label: `${headOwner}:${headRef}`,
    ref: headRef,
    sha: headSha,
    user: accountFor(exampleAccount, headOwner),
    // head.repo and base.repo carry more keys than `repository`: each keeps its own template.
    repo: {
      ...repositoryFor(
        objectAt(objectAt(examplePull, 'head'), 'repo'),
        `${headOwner}/${name}`,
        repositoryOptions,
      ),
      fork: Boolean(options.fork),
    },
  };
  pull.base = {
    ...objectAt(pull, 'base'),
    label: `${owner}:${baseRef}`,
    ref: baseRef,
    sha: baseSha,
    user: accountFor(exampleAccount, owner),
    repo: repositoryFor(objectAt(objectAt(examplePull, 'base'), 'repo'), options.repo, repositoryOptions),
  };
  pull.author_association = options.fork ? 'CONTRIBUTOR' : 'OWNER';

  if (action === 'closed') {
    const merged = options.merged ?? false;
    pull.state = 'closed';
    pull.merged = merged;
    pull.merged_at = merged ? (pull.closed_at ?? null) : null;
    pull.merge_commit_sha = merged ? fakeSha(`merge of ${headSha}`) : (pull.merge_commit_sha ?? null);
    pull.merged_by = merged ? accountFor(exampleAccount, owner) : null;
  }
  if (action === 'synchronize') {
    payload.before = options.before ?? fakeSha(`before ${headSha}`);
    payload.after = headSha;
  }
  if ((action === 'labeled' || action === 'unlabeled') && options.label !== undefined) {
    const label = objectAt(payload, 'label');
    const previous = String(label.name);
    const renamed = {
      name: options.label,
      url: `https://api.github.com/repos/${options.repo}/labels/${encodeURIComponent(options.label)}`,
    };
    Object.assign(label, renamed);
    const labels = pull.labels;
    if (Array.isArray(labels)) {
      pull.labels = labels.map((entry) =>
        isObject(entry) && entry.name === previous ? { ...entry, ...renamed } : entry,
      );
    }
  }
  return withoutExampleNames(payload, options.repo) as unknown as PullRequestPayload;
}

/** Whatever still names the example's owner or repository (assignees, reviewers…) follows `repo`. */
function withoutExampleNames(payload: JsonObject, repo: string): JsonObject {
  const { owner, name } = splitRepo(repo);
  const renamed = replaceInStrings(payload, EXAMPLE_NAME, name);
  return replaceInStrings(renamed, EXAMPLE_OWNER, owner) as JsonObject;
}

export interface SignedDeliveryOptions {
  /** `X-GitHub-Delivery` (default: a random UUID). */
  deliveryId?: string;
  /** How the webhook is configured to send: `json` (default) or `form` (`payload=<json>`). */
  contentType?: 'json' | 'form';
  /** `valid` (default); `wrong`: signed with another secret; `missing`: no signature headers. */
  signature?: 'valid' | 'wrong' | 'missing';
  /** `X-GitHub-Hook-ID` (default: the ping's `hook_id`, or a fixed id). */
  hookId?: number;
}

export interface SignedDelivery {
  /** Header names cased as GitHub sends them. */
  headers: Record<string, string>;
  /** The exact bytes GitHub signs and posts. */
  body: string;
  deliveryId: string;
}

const DEFAULT_HOOK_ID = 109948940;

/** Posts a signed delivery of `payload` to a webhook endpoint, as GitHub does; its answer. */
export async function postWebhook(
  url: string,
  secret: string,
  event: string,
  payload: unknown,
  options: SignedDeliveryOptions = {},
): Promise<Response> {
  const delivery = await signedDelivery(secret, event, payload, options);
  return fetch(url, { method: 'POST', headers: delivery.headers, body: delivery.body });
}

/** A delivery of `payload` as GitHub's hookshot posts it, signed with `secret`. */
export async function signedDelivery(
  secret: string,
  event: string,
  payload: unknown,
  options: SignedDeliveryOptions = {},
): Promise<SignedDelivery> {
  const json = JSON.stringify(payload);
  const form = options.contentType === 'form';
  const body = form ? new URLSearchParams({ payload: json }).toString() : json;
  const deliveryId = options.deliveryId ?? randomUUID();
  const target = installationTarget(payload);
  const signingSecret = options.signature === 'wrong' ? `not-${secret}` : secret;
  const signatures: Record<string, string> =
    options.signature === 'missing'
      ? {}
      : {
          'X-Hub-Signature': `sha1=${createHmac('sha1', signingSecret).update(body).digest('hex')}`,
          'X-Hub-Signature-256': await sign(signingSecret, body),
        };
  const hookId = options.hookId ?? (isObject(payload) ? Number(payload.hook_id) || undefined : undefined);
  return {
    deliveryId,
    body,
    headers: {
      Accept: '*/*',
      'Content-Type': form ? 'application/x-www-form-urlencoded' : 'application/json',
      'User-Agent': `GitHub-Hookshot/${randomBytes(4).toString('hex').slice(0, 7)}`,
      'X-GitHub-Delivery': deliveryId,
      'X-GitHub-Event': event,
      'X-GitHub-Hook-ID': String(hookId ?? DEFAULT_HOOK_ID),
      'X-GitHub-Hook-Installation-Target-ID': String(target.id),
      'X-GitHub-Hook-Installation-Target-Type': target.type,
      ...signatures,
    },
  };
}

/** A repository hook's target is the repository; an organization hook's, the organization. */
function installationTarget(payload: unknown): { type: string; id: number } {
  if (isObject(payload)) {
    if (isObject(payload.repository)) return { type: 'repository', id: Number(payload.repository.id) };
    if (isObject(payload.organization)) return { type: 'organization', id: Number(payload.organization.id) };
  }
  return { type: 'repository', id: 0 };
}

function splitRepo(repo: string): { owner: string; name: string } {
  const [owner, name, ...rest] = repo.split('/');
  if (!owner || !name || rest.length > 0) {
    throw new Error(`"${repo}" is not an owner/name repository; pass e.g. "octo-org/hello-world".`);
  }
  return { owner, name };
}

/** The example's repository, renamed everywhere (URLs included) and owned by `repo`'s owner. */
function repositoryFor(
  template: JsonObject,
  repo: string,
  options: { private?: boolean; defaultBranch?: string },
): JsonObject {
  const { owner, name } = splitRepo(repo);
  const renamed = replaceInStrings(template, EXAMPLE_REPO, repo) as JsonObject;
  const repository: JsonObject = {
    ...renamed,
    id: fakeId(repo),
    name,
    full_name: repo,
    private: options.private ?? false,
    owner: accountFor(objectAt(template, 'owner'), owner),
    fork: false,
    default_branch: options.defaultBranch ?? 'main',
  };
  // Present in some payloads only: keep the example's key set, with consistent values.
  if ('visibility' in renamed) repository.visibility = options.private ? 'private' : 'public';
  if ('master_branch' in renamed) repository.master_branch = options.defaultBranch ?? 'main';
  if ('description' in renamed && typeof renamed.description === 'string') {
    repository.description = renamed.description.replaceAll(EXAMPLE_NAME, name);
  }
  return repository;
}

/** The example's account (user or repository owner) as `login`, URLs and email included. */
function accountFor(template: JsonObject, login: string): JsonObject {
  const account = replaceInStrings(template, EXAMPLE_OWNER, login) as JsonObject;
  account.login = login;
  account.id = fakeId(`user:${login}`);
  if ('email' in account && account.email !== null) account.email = noreplyEmail(login);
  if ('name' in account && account.name !== null) account.name = login;
  return account;
}

function compareUrl(
  repo: string,
  push: { before: string; after: string; created: boolean; tag: string | undefined },
): string {
  if (push.created) {
    return push.tag
      ? `https://github.com/${repo}/compare/${push.tag}`
      : `https://github.com/${repo}/commit/${push.after}`;
  }
  return `https://github.com/${repo}/compare/${push.before.slice(0, 12)}...${push.after.slice(0, 12)}`;
}

function noreplyEmail(login: string): string {
  return `${fakeId(`user:${login}`)}+${login}@users.noreply.github.com`;
}

/** A stable 40-hex id for `seed`, so tests that do not care still get distinct, valid shas. */
export function fakeSha(seed: string): string {
  return createHash('sha1').update(seed).digest('hex');
}

function fakeId(seed: string): number {
  return createHash('sha1').update(seed).digest().readUInt32BE(0);
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function objectAt(parent: JsonObject, key: string): JsonObject {
  const value = parent[key];
  if (!isObject(value)) throw new Error(`The example has no "${key}" object; the examples package changed.`);
  return value;
}

/** A copy of `value` with `search` replaced in every string inside it. */
function replaceInStrings(value: Json, search: string | RegExp, replacement: string): Json {
  if (typeof value === 'string') {
    return typeof search === 'string'
      ? value.replaceAll(search, replacement)
      : value.replace(search, replacement);
  }
  if (Array.isArray(value)) return value.map((item) => replaceInStrings(item, search, replacement));
  if (isObject(value)) {
    return Object.fromEntries(
      Object.entries(value).map(([key, item]) => [key, replaceInStrings(item, search, replacement)]),
    );
  }
  return value;
}

export interface CheckEventOptions {
  repo: string;
  sha: string;
  /** The suite's (or the merge group's base) branch. Default `main`. */
  branch?: string;
  /** check_run: the run's external_id (Lambkin writes `owner/repo#number`). */
  externalId?: string;
  /** Who clicked (re-run) or caused the event. Default the owner. */
  sender?: string;
  /** merge_group: the queued pull request's number. Default 1. */
  pr?: number;
  /** check_run `requested_action`: the button's identifier. Default `approve`. */
  identifier?: string;
}

/**
 * A GitHub App's check and merge-queue events, from the recorded examples: `check_suite`
 * (`requested`, `rerequested`), `check_run` (`rerequested`, `requested_action`) and `merge_group` (`checks_requested`),
 * adapted to `options`' repository, commit and branch.
 */
export function checkEventPayload(
  event: 'check_suite' | 'check_run' | 'merge_group',
  action: string,
  options: CheckEventOptions,
): Record<string, unknown> {
  const example = recordedExamples(event).find((candidate) => candidate.action === action);
  if (!example) throw new Error(`@octokit/webhooks-examples has no ${event} "${action}" example.`);
  const exampleRepo = String(objectAt(example, 'repository').full_name);
  const branch = options.branch ?? 'main';
  const sender = options.sender ?? splitRepo(options.repo).owner;
  const payload = replaceInStrings(structuredClone(example), exampleRepo, options.repo) as JsonObject;
  payload.repository = repositoryFor(objectAt(example, 'repository'), options.repo, {});
  payload.sender = accountFor(objectAt(example, 'sender'), sender);
  if (event === 'merge_group') {
    const group = objectAt(payload, 'merge_group');
    const pr = options.pr ?? 1;
    group.head_sha = options.sha;
    group.head_ref = `refs/heads/gh-readonly-queue/${branch}/pr-${pr}-${fakeSha(`base of ${options.sha}`)}`;
    group.base_ref = `refs/heads/${branch}`;
    group.base_sha = fakeSha(`base of ${options.sha}`);
    group.head_commit = {
      ...objectAt(group, 'head_commit'),
      id: options.sha,
      message: `Merge pull request #${pr}`,
    };
  } else {
    const suite =
      event === 'check_suite'
        ? objectAt(payload, 'check_suite')
        : objectAt(objectAt(payload, 'check_run'), 'check_suite');
    suite.head_sha = options.sha;
    suite.head_branch = branch;
    if (event === 'check_run') {
      const run = objectAt(payload, 'check_run');
      run.head_sha = options.sha;
      run.external_id = options.externalId ?? '';
      if (action === 'requested_action')
        payload.requested_action = { identifier: options.identifier ?? 'approve' };
    }
  }
  return payload as unknown as Record<string, unknown>;
}

/** What a webhook handler answered a signed delivery: its status and its JSON body. */
export interface HandlerAnswer {
  statusCode: number;
  json: Record<string, unknown>;
}

/** Signs `payload` as GitHub does and posts it to a webhook handler as an HTTP API event. */
export async function deliverToHandler(
  handler: (event: {
    rawPath: string;
    headers: Record<string, string>;
    body: string;
    isBase64Encoded: boolean;
    requestContext: { http: { method: string; path: string } };
  }) => Promise<{ statusCode: number; body: string }>,
  secret: string,
  event: string,
  payload: unknown,
): Promise<HandlerAnswer> {
  const delivery = await signedDelivery(secret, event, payload);
  const result = await handler({
    rawPath: '/webhook',
    headers: delivery.headers,
    body: delivery.body,
    isBase64Encoded: false,
    requestContext: { http: { method: 'POST', path: '/webhook' } },
  });
  return { statusCode: result.statusCode, json: JSON.parse(result.body) as Record<string, unknown> };
}
