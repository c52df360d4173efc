/**
 * Check runs: how a build shows on GitHub when Lambkin runs as a GitHub App. Creates and updates
 * one check run per build; annotations beyond GitHub's 50 a request follow in further updates
 * (GitHub adds them up), so a build may report any number of them.
 *
 * The client must act as an App installation with `checks: write` (see app-auth.ts): GitHub
 * refuses check runs from personal tokens.
 */
import type { Octokit } from '@octokit/rest';
import { chunkAnnotations, type CheckAnnotation } from '../core/annotations/index.js';
import { splitRepoName } from './client.js';

export type CheckRunStatus = 'queued' | 'in_progress' | 'completed';
export type CheckRunConclusion =
  'action_required' | 'cancelled' | 'failure' | 'neutral' | 'success' | 'skipped' | 'timed_out';

export interface CheckRunOutput {
  title: string;
  /** Markdown, at most 65535 characters. */
  summary: string;
  text?: string;
  /** In GitHub's own shape (src/core/annotations/). */
  annotations?: CheckAnnotation[];
}

export interface CheckRunFields {
  name?: string;
  status?: CheckRunStatus;
  /** Completes the run (GitHub sets `status` to `completed`). */
  conclusion?: CheckRunConclusion;
  /** The build's page. */
  detailsUrl?: string;
  /** Lambkin's id for the build: comes back in `check_run` webhooks (re-runs). */
  externalId?: string;
  startedAt?: Date;
  completedAt?: Date;
  output?: CheckRunOutput;
  /** Buttons on the run (at most 3; an empty list removes them). */
  actions?: CheckRunAction[];
}

/** GitHub's limits: label 20, description 40, identifier 20 characters. */
export interface CheckRunAction {
  label: string;
  description: string;
  identifier: string;
}

export interface NewCheckRun extends CheckRunFields {
  name: string;
  headSha: string;
}

export interface CheckRunRef {
  id: number;
  /** The run's page on GitHub. */
  htmlUrl: string | null;
}

/** The annotations in requests of at most 50 (none: one batch without annotations). */
function batches(annotations: readonly CheckAnnotation[] = []): CheckAnnotation[][] {
  const chunks = chunkAnnotations(annotations);
  return chunks.length > 0 ? chunks : [[]];
}

/** The request fields of `fields`, with `annotations` as the output's (one batch). */
function requestFields(fields: CheckRunFields, annotations: CheckAnnotation[]): Record<string, unknown> {
  const { output } = fields;
  return {
    ...(fields.name === undefined ? {} : { name: fields.name }),
    ...(fields.status === undefined ? {} : { status: fields.status }),
    ...(fields.conclusion === undefined ? {} : { conclusion: fields.conclusion }),
    ...(fields.detailsUrl === undefined ? {} : { details_url: fields.detailsUrl }),
    ...(fields.externalId === undefined ? {} : { external_id: fields.externalId }),
    ...(fields.startedAt === undefined ? {} : { started_at: fields.startedAt.toISOString() }),
    ...(fields.completedAt === undefined ? {} : { completed_at: fields.completedAt.toISOString() }),
    ...(fields.actions === undefined ? {} : { actions: fields.actions }),
    ...(output === undefined
      ? {}
      : {
          output: {
            title: output.title,
            summary: output.summary,
            ...(output.text === undefined ? {} : { text: output.text }),
            ...(annotations.length > 0 ? { annotations } : {}),
          },
        }),
  };
}

/**
 * Per call: `signal` aborts its requests, and with it the client's plugins do not retry (the
 * caller's delivery policy does: src/github/delivery.ts).
 */
export interface CheckRequestOptions {
  signal?: AbortSignal;
}

function requestOptions(options: CheckRequestOptions): { request?: { retries: 0; signal: AbortSignal } } {
  return options.signal ? { request: { retries: 0, signal: options.signal } } : {};
}

export class GitHubCheckRuns {
  constructor(private readonly octokit: Octokit) {}

  /** Creates the check run; annotations past the first 50 follow in updates. */
  async create(repo: string, run: NewCheckRun, options: CheckRequestOptions = {}): Promise<CheckRunRef> {
    const { owner, name } = splitRepoName(repo);
    const [first = [], ...rest] = batches(run.output?.annotations);
    const { data } = await this.octokit.rest.checks.create({
      owner,
      repo: name,
      head_sha: run.headSha,
      ...requestFields(run, first),
      name: run.name,
      ...requestOptions(options),
    });
    await this.sendRest(repo, data.id, run.output, rest, options);
    return { id: data.id, htmlUrl: data.html_url };
  }

  /** Updates the check run; annotations are added to those it has, 50 a request. */
  async update(
    repo: string,
    id: number,
    fields: CheckRunFields,
    options: CheckRequestOptions = {},
  ): Promise<CheckRunRef> {
    const { owner, name } = splitRepoName(repo);
    const [first = [], ...rest] = batches(fields.output?.annotations);
    const { data } = await this.octokit.rest.checks.update({
      owner,
      repo: name,
      check_run_id: id,
      ...requestFields(fields, first),
      ...requestOptions(options),
    });
    await this.sendRest(repo, id, fields.output, rest, options);
    return { id: data.id, htmlUrl: data.html_url };
  }

  /**
   * The id of the check run named `name` on `sha` whose external id is `externalId` (the newest,
   * should there be several), or undefined. With `appId`, only that App's runs: GitHub lists every
   * App's, and another App's run (a name and external id anyone with `checks: write` may choose)
   * cannot be updated by this one.
   */
  async find(
    repo: string,
    sha: string,
    name: string,
    externalId: string,
    options: CheckRequestOptions & { appId?: number } = {},
  ): Promise<number | undefined> {
    const { owner, name: repoName } = splitRepoName(repo);
    const { appId } = options;
    const runs = await this.octokit.paginate(this.octokit.rest.checks.listForRef, {
      owner,
      repo: repoName,
      ref: sha,
      check_name: name,
      filter: 'all',
      per_page: 100,
      ...(appId === undefined ? {} : { app_id: appId }),
      ...requestOptions(options),
    });
    return runs
      .filter((run) => run.external_id === externalId && (appId === undefined || run.app?.id === appId))
      .sort((a, b) => b.id - a.id)[0]?.id;
  }

  /** Further batches of annotations, each with the output's title, summary and text (GitHub requires the first two). */
  private async sendRest(
    repo: string,
    id: number,
    output: CheckRunOutput | undefined,
    rest: CheckAnnotation[][],
    options: CheckRequestOptions,
  ): Promise<void> {
    if (!output) return;
    const { owner, name } = splitRepoName(repo);
    for (const batch of rest) {
      await this.octokit.rest.checks.update({
        owner,
        repo: name,
        check_run_id: id,
        output: {
          title: output.title,
          summary: output.summary,
          ...(output.text === undefined ? {} : { text: output.text }),
          annotations: batch,
        },
        ...requestOptions(options),
      });
    }
  }
}
