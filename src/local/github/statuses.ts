/** Commit statuses: POST /repos/{owner}/{repo}/statuses/{sha} and GET …/commits/{ref}/statuses. */
import { pageOf, requestBody, type RequestContext, type Route, type StandIn } from './context.js';
import { nodeId, notFound, RouteError, sendJson, timestamp, validationFailed } from './http.js';
import type { CommitStatusRecord, Repository } from './records.js';
import { resolveCommit, userJson, visibleRepository } from './repositories.js';
import { isPlainObject } from '../../core/values.js';

const STATUS_DOCS = 'https://docs.github.com/rest/commits/statuses#create-a-commit-status';
const STATUS_STATES = ['error', 'failure', 'pending', 'success'] as const;
/** GitHub refuses longer descriptions with 422. */
const MAX_DESCRIPTION_LENGTH = 140;

async function createStatus(
  context: RequestContext,
  owner: string,
  name: string,
  sha: string,
): Promise<void> {
  const { standIn } = context;
  if (!context.caller.authenticated) throw new RouteError(401, 'Requires authentication', STATUS_DOCS);
  const repository = visibleRepository(standIn, owner, name, context.caller);
  const fields = requestBody(context, STATUS_DOCS);
  if (!isPlainObject(fields)) {
    throw new RouteError(422, 'Invalid request.\n\n"state" wasn\'t supplied.', STATUS_DOCS);
  }
  const invalid = (field: string, message: string, code?: string): RouteError =>
    validationFailed(STATUS_DOCS, 'Status', message, field, code);
  if (!(STATUS_STATES as readonly unknown[]).includes(fields.state)) {
    throw invalid('state', 'state is not included in the list');
  }
  for (const field of ['description', 'target_url', 'context']) {
    const value = fields[field];
    if (value !== undefined && value !== null && typeof value !== 'string') {
      throw invalid(field, `${field} must be a string`, 'invalid');
    }
  }
  const description = (fields.description as string | null | undefined) ?? null;
  if (description !== null && [...description].length > MAX_DESCRIPTION_LENGTH) {
    throw invalid('description', `description is too long (maximum is ${MAX_DESCRIPTION_LENGTH} characters)`);
  }
  const commit = /^[0-9a-f]{40}$/i.test(sha) ? await resolveCommit(repository, sha) : undefined;
  if (commit === undefined) throw new RouteError(422, `No commit found for SHA: ${sha}`, STATUS_DOCS);
  const id = standIn.nextStatusId++;
  const now = timestamp();
  const status: CommitStatusRecord = {
    url: `${standIn.baseUrl}/repos/${repository.owner}/${repository.name}/statuses/${commit}`,
    avatar_url: `${standIn.baseUrl}/_avatars/u/1`,
    id,
    node_id: nodeId('StatusContext', id),
    state: fields.state as CommitStatusRecord['state'],
    description,
    target_url: (fields.target_url as string | null | undefined) ?? null,
    context: (fields.context as string | undefined) ?? 'default',
    created_at: now,
    updated_at: now,
    creator: userJson(standIn.baseUrl, standIn.login, 1, 'User'),
  };
  const list = repository.statuses.get(commit) ?? [];
  list.unshift(status);
  repository.statuses.set(commit, list);
  notifyStatus(standIn, repository, commit, status);
  sendJson(context.response, 201, { ...context.headers, location: status.url }, status);
}

function notifyStatus(
  standIn: StandIn,
  repository: Repository,
  sha: string,
  status: CommitStatusRecord,
): void {
  if (!standIn.onStatus) return;
  try {
    standIn.onStatus({
      repo: `${repository.owner}/${repository.name}`,
      sha,
      state: status.state,
      description: status.description,
      target_url: status.target_url,
      context: status.context,
    });
  } catch (error) {
    // The status exists now: a listener's bug must not turn into GitHub's answer.
    console.error("The GitHub stand-in's onStatus listener failed:", error);
  }
}

async function listStatuses(
  context: RequestContext,
  owner: string,
  name: string,
  ref: string,
): Promise<void> {
  const repository = visibleRepository(context.standIn, owner, name, context.caller);
  const commit = await resolveCommit(repository, ref);
  if (commit === undefined) throw notFound();
  const page = pageOf(
    context,
    repository.statuses.get(commit) ?? [],
    `${context.standIn.baseUrl}/repos/${repository.owner}/${repository.name}/commits/${encodeURIComponent(ref)}/statuses`,
  );
  sendJson(context.response, 200, page.headers, page.items);
}

export const statusRoutes: Route[] = [
  {
    method: 'POST',
    path: 'statuses/{sha}',
    access: { permission: 'statuses', level: 'write' },
    handle: createStatus,
  },
  {
    method: 'GET',
    path: 'commits/{ref+}/statuses',
    access: { permission: 'statuses', level: 'read' },
    handle: listStatuses,
  },
];
