/**
 * Check runs: POST /repos/{owner}/{repo}/check-runs, PATCH and GET …/check-runs/{check_run_id},
 * GET …/check-runs/{check_run_id}/annotations and GET …/commits/{ref}/check-runs, with GitHub's
 * rules: only an App (an installation token with `checks: write`) writes them; `completed` takes a
 * conclusion and a conclusion completes the run; an output needs a title and a summary; at most 50
 * annotations a request, added up across updates; at most 3 `actions` (buttons), kept but, as on
 * GitHub, not in the answers.
 */
import { appJson } from './apps.js';
import { pageOf, requestBody, type RequestContext, type Route, type StandIn } from './context.js';
import { nodeId, notFound, RouteError, sendJson, timestamp, validationFailed } from './http.js';
import {
  repoKey,
  type CheckAnnotation,
  type CheckRunAction,
  type CheckRunConclusion,
  type CheckRunStatus,
  type Repository,
  type StoredCheckRun,
} from './records.js';
import { resolveCommit, visibleRepository } from './repositories.js';
import { isPlainObject } from '../../core/values.js';

const CREATE_DOCS = 'https://docs.github.com/rest/checks/runs#create-a-check-run';
const UPDATE_DOCS = 'https://docs.github.com/rest/checks/runs#update-a-check-run';
const GET_DOCS = 'https://docs.github.com/rest/checks/runs#get-a-check-run';
const STATUSES: readonly string[] = ['queued', 'in_progress', 'completed'];
const CONCLUSIONS: readonly string[] = [
  'action_required',
  'cancelled',
  'failure',
  'neutral',
  'success',
  'skipped',
  'timed_out',
];
const LEVELS: readonly string[] = ['notice', 'warning', 'failure'];
/** GitHub takes at most this many annotations a request. */
export const MAX_ANNOTATIONS_PER_REQUEST = 50;
const MAX_OUTPUT_LENGTH = 65_535;

const invalid = (docs: string, detail: string): RouteError =>
  new RouteError(422, `Invalid request.\n\n${detail}`, docs);
const missing = (docs: string, field: string): RouteError => invalid(docs, `"${field}" wasn't supplied.`);
const notOneOf = (docs: string, field: string, value: unknown, allowed: readonly string[]): RouteError =>
  invalid(
    docs,
    `For 'properties/${field}', ${JSON.stringify(value)} is not one of [${allowed.map((each) => `"${each}"`).join(', ')}].`,
  );

function optionalString(docs: string, fields: Record<string, unknown>, field: string): string | undefined {
  const value = fields[field];
  if (value === undefined) return undefined;
  if (typeof value !== 'string')
    throw invalid(docs, `For 'properties/${field}', ${JSON.stringify(value)} is not a string.`);
  return value;
}

function dateTime(docs: string, fields: Record<string, unknown>, field: string): string | undefined {
  const value = optionalString(docs, fields, field);
  if (value === undefined) return undefined;
  const at = Date.parse(value);
  if (!/^\d{4}-\d{2}-\d{2}T/.test(value) || Number.isNaN(at)) {
    throw invalid(docs, `For 'properties/${field}', ${JSON.stringify(value)} is not a date-time.`);
  }
  return timestamp(at);
}

function annotationOf(docs: string, value: unknown, index: number): CheckAnnotation {
  if (!isPlainObject(value)) throw invalid(docs, `For 'items', ${JSON.stringify(value)} is not an object.`);
  for (const field of ['path', 'start_line', 'end_line', 'annotation_level', 'message']) {
    if (value[field] === undefined) throw missing(docs, field);
  }
  const integer = (field: string): number | undefined => {
    const number = value[field];
    if (number === undefined) return undefined;
    if (typeof number !== 'number' || !Number.isInteger(number)) {
      throw invalid(docs, `For 'properties/${field}', ${JSON.stringify(number)} is not an integer.`);
    }
    return number;
  };
  const text = (field: string): string | undefined => optionalString(docs, value, field);
  if (!LEVELS.includes(String(value.annotation_level))) {
    throw notOneOf(docs, 'annotation_level', value.annotation_level, LEVELS);
  }
  const annotation: CheckAnnotation = {
    path: text('path') ?? '',
    start_line: integer('start_line') ?? 0,
    end_line: integer('end_line') ?? 0,
    annotation_level: value.annotation_level as CheckAnnotation['annotation_level'],
    message: text('message') ?? '',
  };
  const startColumn = integer('start_column');
  const endColumn = integer('end_column');
  if (
    (startColumn !== undefined || endColumn !== undefined) &&
    annotation.start_line !== annotation.end_line
  ) {
    throw validationFailed(
      docs,
      'CheckRun',
      `Annotation ${index}: start_column and end_column may only be given when start_line and end_line are the same.`,
      'annotations',
      'invalid',
    );
  }
  if (annotation.end_line < annotation.start_line) {
    throw validationFailed(
      docs,
      'CheckRun',
      `Annotation ${index}: end_line is before start_line.`,
      'annotations',
      'invalid',
    );
  }
  const title = text('title');
  const rawDetails = text('raw_details');
  return {
    ...annotation,
    ...(startColumn === undefined ? {} : { start_column: startColumn }),
    ...(endColumn === undefined ? {} : { end_column: endColumn }),
    ...(title === undefined ? {} : { title }),
    ...(rawDetails === undefined ? {} : { raw_details: rawDetails }),
  };
}

interface OutputFields {
  title: string;
  summary: string;
  text: string | undefined;
  annotations: CheckAnnotation[];
}

function outputOf(docs: string, value: unknown): OutputFields | undefined {
  if (value === undefined) return undefined;
  if (!isPlainObject(value))
    throw invalid(docs, `For 'properties/output', ${JSON.stringify(value)} is not an object.`);
  for (const field of ['title', 'summary']) if (value[field] === undefined) throw missing(docs, field);
  const title = optionalString(docs, value, 'title') ?? '';
  const summary = optionalString(docs, value, 'summary') ?? '';
  const text = optionalString(docs, value, 'text');
  for (const [field, content] of [
    ['summary', summary],
    ['text', text ?? ''],
  ] as const) {
    if (content.length > MAX_OUTPUT_LENGTH) {
      throw validationFailed(
        docs,
        'CheckRun',
        `Only ${MAX_OUTPUT_LENGTH} characters are allowed; ${content.length} were supplied.`,
        `output.${field}`,
        'invalid',
      );
    }
  }
  const annotations = value.annotations ?? [];
  if (!Array.isArray(annotations)) {
    throw invalid(docs, `For 'properties/annotations', ${JSON.stringify(annotations)} is not an array.`);
  }
  if (annotations.length > MAX_ANNOTATIONS_PER_REQUEST) {
    throw invalid(
      docs,
      `For 'properties/annotations', the array has ${annotations.length} items; the maximum is ${MAX_ANNOTATIONS_PER_REQUEST}.`,
    );
  }
  return {
    title,
    summary,
    text,
    annotations: annotations.map((item, index) => annotationOf(docs, item, index)),
  };
}

/** GitHub's limits on a check run's buttons. */
const MAX_ACTIONS = 3;
const ACTION_LIMITS = { label: 20, description: 40, identifier: 20 } as const;

/** The `actions` of a request (undefined: not sent), checked as GitHub checks them. */
function actionsOf(docs: string, value: unknown): CheckRunAction[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value)) {
    throw invalid(docs, `For 'properties/actions', ${JSON.stringify(value)} is not an array.`);
  }
  if (value.length > MAX_ACTIONS) {
    throw invalid(
      docs,
      `For 'properties/actions', the array has ${value.length} items; the maximum is ${MAX_ACTIONS}.`,
    );
  }
  return value.map((item: unknown) => {
    if (!isPlainObject(item)) throw invalid(docs, `For 'items', ${JSON.stringify(item)} is not an object.`);
    const action: Record<string, string> = {};
    for (const [field, max] of Object.entries(ACTION_LIMITS)) {
      if (item[field] === undefined) throw missing(docs, field);
      const text = optionalString(docs, item, field) ?? '';
      if (text.length > max) {
        throw invalid(
          docs,
          `For 'properties/${field}', ${JSON.stringify(text)} is longer than ${max} characters.`,
        );
      }
      action[field] = text;
    }
    return {
      label: action.label ?? '',
      description: action.description ?? '',
      identifier: action.identifier ?? '',
    };
  });
}

/** Who may write check runs: an App's installation, never a person's token. */
function writingApp(context: RequestContext): number {
  const { caller } = context;
  if (caller.kind === 'installation') return caller.grant.appId;
  if (caller.kind === 'anonymous') throw new RouteError(401, 'Requires authentication', CREATE_DOCS);
  throw new RouteError(403, 'You must authenticate via a GitHub App.', CREATE_DOCS);
}

function checkRunJson(
  standIn: StandIn,
  repository: Repository,
  run: StoredCheckRun,
): Record<string, unknown> {
  const api = `${standIn.baseUrl}/repos/${repository.owner}/${repository.name}`;
  const app = standIn.apps.get(run.appId);
  return {
    id: run.id,
    head_sha: run.head_sha,
    node_id: nodeId('CheckRun', run.id),
    external_id: run.external_id ?? '',
    url: `${api}/check-runs/${run.id}`,
    html_url: `${standIn.baseUrl}/${repository.owner}/${repository.name}/runs/${run.id}`,
    details_url: run.details_url ?? (app ? `${standIn.baseUrl}/apps/${app.slug}` : null),
    status: run.status,
    conclusion: run.conclusion,
    started_at: run.started_at,
    completed_at: run.completed_at,
    output: {
      ...run.output,
      annotations_count: run.annotations.length,
      annotations_url: `${api}/check-runs/${run.id}/annotations`,
    },
    name: run.name,
    check_suite: { id: run.checkSuiteId },
    app: app ? appJson(standIn.baseUrl, app) : null,
    pull_requests: [],
  };
}

function annotationJson(
  standIn: StandIn,
  repository: Repository,
  run: StoredCheckRun,
  annotation: CheckAnnotation,
): unknown {
  return {
    path: annotation.path,
    start_line: annotation.start_line,
    end_line: annotation.end_line,
    start_column: annotation.start_column ?? null,
    end_column: annotation.end_column ?? null,
    annotation_level: annotation.annotation_level,
    title: annotation.title ?? null,
    message: annotation.message,
    raw_details: annotation.raw_details ?? null,
    blob_href: `${standIn.baseUrl}/${repository.owner}/${repository.name}/blob/${run.head_sha}/${encodeURI(annotation.path)}`,
  };
}

/** The status and conclusion after a request: a conclusion completes the run; completing takes one. */
function settle(
  docs: string,
  fields: Record<string, unknown>,
  current: { status: CheckRunStatus; conclusion: CheckRunConclusion | null },
): { status: CheckRunStatus; conclusion: CheckRunConclusion | null } {
  if (fields.status !== undefined && !STATUSES.includes(String(fields.status))) {
    throw notOneOf(docs, 'status', fields.status, STATUSES);
  }
  if (fields.conclusion !== undefined && !CONCLUSIONS.includes(String(fields.conclusion))) {
    throw notOneOf(docs, 'conclusion', fields.conclusion, CONCLUSIONS);
  }
  const conclusion = (fields.conclusion as CheckRunConclusion | undefined) ?? null;
  if (conclusion !== null) return { status: 'completed', conclusion };
  const status = (fields.status as CheckRunStatus | undefined) ?? current.status;
  if (status === 'completed' && current.conclusion === null) {
    throw invalid(docs, 'No subschema in "anyOf" matched.\n"conclusion" wasn\'t supplied.');
  }
  return { status, conclusion: status === 'completed' ? current.conclusion : null };
}

function checkSuiteId(standIn: StandIn, repository: Repository, sha: string, appId: number): number {
  const key = `${repoKey(repository.owner, repository.name)}@${sha}@${appId}`;
  let id = standIn.checkSuites.get(key);
  if (id === undefined) {
    id = standIn.checkSuites.size + 1;
    standIn.checkSuites.set(key, id);
  }
  return id;
}

async function createCheckRun(context: RequestContext, owner: string, name: string): Promise<void> {
  const { standIn } = context;
  const appId = writingApp(context);
  const repository = visibleRepository(standIn, owner, name, context.caller);
  const fields = requestBody(context, CREATE_DOCS);
  if (!isPlainObject(fields)) throw missing(CREATE_DOCS, 'name');
  for (const field of ['name', 'head_sha'])
    if (fields[field] === undefined) throw missing(CREATE_DOCS, field);
  const runName = optionalString(CREATE_DOCS, fields, 'name') ?? '';
  const headSha = optionalString(CREATE_DOCS, fields, 'head_sha') ?? '';
  const detailsUrl = optionalString(CREATE_DOCS, fields, 'details_url');
  const externalId = optionalString(CREATE_DOCS, fields, 'external_id');
  const startedAt = dateTime(CREATE_DOCS, fields, 'started_at');
  const completedAt = dateTime(CREATE_DOCS, fields, 'completed_at');
  const { status, conclusion } = settle(CREATE_DOCS, fields, { status: 'queued', conclusion: null });
  const output = outputOf(CREATE_DOCS, fields.output);
  const actions = actionsOf(CREATE_DOCS, fields.actions);
  if (runName.trim() === '')
    throw validationFailed(CREATE_DOCS, 'CheckRun', "name can't be blank", 'name', 'missing_field');
  const commit = /^[0-9a-f]{40}$/i.test(headSha) ? await resolveCommit(repository, headSha) : undefined;
  if (commit === undefined) throw new RouteError(422, `No commit found for SHA: ${headSha}`, CREATE_DOCS);
  const now = timestamp();
  const id = standIn.nextCheckRunId++;
  const run: StoredCheckRun = {
    id,
    appId,
    checkSuiteId: checkSuiteId(standIn, repository, commit, appId),
    repo: `${repository.owner}/${repository.name}`,
    name: runName,
    head_sha: commit,
    status,
    conclusion,
    details_url: detailsUrl ?? null,
    external_id: externalId ?? null,
    started_at: startedAt ?? now,
    completed_at: status === 'completed' ? (completedAt ?? now) : null,
    output: {
      title: output?.title ?? null,
      summary: output?.summary ?? null,
      text: output?.text ?? null,
    },
    annotations: [...(output?.annotations ?? [])],
    annotationBatches: output && output.annotations.length > 0 ? [output.annotations.length] : [],
    actions: actions ?? [],
  };
  repository.checkRuns.set(id, run);
  const body = checkRunJson(standIn, repository, run);
  sendJson(context.response, 201, { ...context.headers, location: String(body.url) }, body);
}

function storedRun(repository: Repository, id: string): StoredCheckRun {
  const run = /^\d+$/.test(id) ? repository.checkRuns.get(Number(id)) : undefined;
  if (!run) throw notFound();
  return run;
}

async function updateCheckRun(
  context: RequestContext,
  owner: string,
  name: string,
  id: string,
): Promise<void> {
  const { standIn } = context;
  const appId = writingApp(context);
  const repository = visibleRepository(standIn, owner, name, context.caller);
  const run = storedRun(repository, id);
  if (run.appId !== appId)
    throw new RouteError(
      403,
      'Invalid app_id `' + appId + '` - check run can only be modified by the GitHub App that created it.',
      UPDATE_DOCS,
    );
  const fields = requestBody(context, UPDATE_DOCS) ?? {};
  if (!isPlainObject(fields)) throw new RouteError(400, 'Problems parsing JSON', UPDATE_DOCS);
  const runName = optionalString(UPDATE_DOCS, fields, 'name');
  const detailsUrl = optionalString(UPDATE_DOCS, fields, 'details_url');
  const externalId = optionalString(UPDATE_DOCS, fields, 'external_id');
  const startedAt = dateTime(UPDATE_DOCS, fields, 'started_at');
  const completedAt = dateTime(UPDATE_DOCS, fields, 'completed_at');
  const settled = settle(UPDATE_DOCS, fields, run);
  const output = outputOf(UPDATE_DOCS, fields.output);
  const actions = actionsOf(UPDATE_DOCS, fields.actions);
  if (runName !== undefined && runName.trim() === '') {
    throw validationFailed(UPDATE_DOCS, 'CheckRun', "name can't be blank", 'name', 'missing_field');
  }
  const wasCompleted = run.status === 'completed';
  if (runName !== undefined) run.name = runName;
  if (detailsUrl !== undefined) run.details_url = detailsUrl;
  if (externalId !== undefined) run.external_id = externalId;
  if (startedAt !== undefined) run.started_at = startedAt;
  if (actions !== undefined) run.actions = actions;
  run.status = settled.status;
  run.conclusion = settled.conclusion;
  if (run.status === 'completed') {
    run.completed_at = completedAt ?? (wasCompleted ? run.completed_at : null) ?? timestamp();
  } else {
    run.completed_at = null;
  }
  if (output) {
    run.output = { title: output.title, summary: output.summary, text: output.text ?? run.output.text };
    if (output.annotations.length > 0) {
      run.annotations.push(...output.annotations);
      run.annotationBatches.push(output.annotations.length);
    }
  }
  sendJson(context.response, 200, context.headers, checkRunJson(standIn, repository, run));
}

async function getCheckRun(context: RequestContext, owner: string, name: string, id: string): Promise<void> {
  const repository = visibleRepository(context.standIn, owner, name, context.caller);
  const run = storedRun(repository, id);
  sendJson(context.response, 200, context.headers, checkRunJson(context.standIn, repository, run));
}

async function listAnnotations(
  context: RequestContext,
  owner: string,
  name: string,
  id: string,
): Promise<void> {
  const repository = visibleRepository(context.standIn, owner, name, context.caller);
  const run = storedRun(repository, id);
  const page = pageOf(
    context,
    run.annotations,
    `${context.standIn.baseUrl}/repos/${repository.owner}/${repository.name}/check-runs/${run.id}/annotations`,
  );
  sendJson(
    context.response,
    200,
    page.headers,
    page.items.map((annotation) => annotationJson(context.standIn, repository, run, annotation)),
  );
}

async function listForRef(context: RequestContext, owner: string, name: string, ref: string): Promise<void> {
  const { standIn, query } = context;
  const repository = visibleRepository(standIn, owner, name, context.caller);
  const commit = await resolveCommit(repository, ref);
  if (commit === undefined) throw new RouteError(422, `No commit found for SHA: ${ref}`, GET_DOCS);
  const filter = query.get('filter') ?? 'latest';
  if (filter !== 'latest' && filter !== 'all') throw notOneOf(GET_DOCS, 'filter', filter, ['latest', 'all']);
  let runs = [...repository.checkRuns.values()]
    .filter((run) => run.head_sha === commit)
    .sort((a, b) => b.id - a.id);
  const checkName = query.get('check_name');
  if (checkName !== null) runs = runs.filter((run) => run.name === checkName);
  const status = query.get('status');
  if (status !== null) runs = runs.filter((run) => run.status === status);
  const appId = query.get('app_id');
  if (appId !== null) runs = runs.filter((run) => String(run.appId) === appId);
  if (filter === 'latest') {
    const seen = new Set<string>();
    runs = runs.filter((run) => {
      const key = `${run.appId}/${run.name}`;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
  }
  const page = pageOf(
    context,
    runs,
    `${standIn.baseUrl}/repos/${repository.owner}/${repository.name}/commits/${encodeURIComponent(ref)}/check-runs`,
  );
  sendJson(context.response, 200, page.headers, {
    total_count: runs.length,
    check_runs: page.items.map((run) => checkRunJson(standIn, repository, run)),
  });
}

const CHECKS_READ: Route['access'] = { permission: 'checks', level: 'read' };
const CHECKS_WRITE: Route['access'] = { permission: 'checks', level: 'write' };

export const checkRoutes: Route[] = [
  { method: 'POST', path: 'check-runs', access: CHECKS_WRITE, handle: createCheckRun },
  { method: 'PATCH', path: 'check-runs/{id}', access: CHECKS_WRITE, handle: updateCheckRun },
  { method: 'GET', path: 'check-runs/{id}', access: CHECKS_READ, handle: getCheckRun },
  { method: 'GET', path: 'check-runs/{id}/annotations', access: CHECKS_READ, handle: listAnnotations },
  { method: 'GET', path: 'commits/{ref+}/check-runs', access: CHECKS_READ, handle: listForRef },
];
