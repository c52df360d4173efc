/**
 * Commit statuses: how a build shows on GitHub. Delivery is bounded by a policy because the two
 * callers have different budgets: the webhook must answer GitHub within 10 s in total, while the
 * builder's final status may wait out a short outage or a rate limit reset.
 */
import type { Octokit } from '@octokit/rest';
import { splitRepoName } from './client.js';
import { GitHubApiError, adviceFor, shortSha } from './api-errors.js';
import { deliver } from './delivery.js';
import type { CommitStatusUpdate, DeliveryPolicy, StatusReporter } from '../core/ports.js';

/** The webhook's pending status: ~3 s of the 10 s GitHub gives the whole delivery. */
export const INTAKE_DELIVERY: DeliveryPolicy = { deadlineMs: 3000, maxAttempts: 3, attemptTimeoutMs: 2000 };

/** The builder's final status: worth waiting for, within a minute (rate limit resets included). */
export const FINAL_DELIVERY: DeliveryPolicy = {
  deadlineMs: 60_000,
  maxAttempts: 8,
  attemptTimeoutMs: 10_000,
};

export const DEFAULT_STATUS_CONTEXT = 'lambkin';
/** GitHub answers 422 "description is too long (maximum is 140 characters)" beyond this. */
export const MAX_STATUS_DESCRIPTION_LENGTH = 140;
/** Cuts `text` to GitHub's limit, counting characters (code points) as GitHub does, marking the cut. */
export function truncateDescription(text: string, limit = MAX_STATUS_DESCRIPTION_LENGTH): string {
  const characters = [...text];
  return characters.length <= limit ? text : `${characters.slice(0, limit - 1).join('')}…`;
}

export class GitHubStatusReporter implements StatusReporter {
  private readonly clientFor: (repo: string) => Octokit;

  /** One client for every repository, or (App mode) the client for each repository's installation. */
  constructor(client: Octokit | ((repo: string) => Octokit)) {
    this.clientFor = typeof client === 'function' ? client : () => client;
  }

  async setStatus(update: CommitStatusUpdate, policy: DeliveryPolicy): Promise<void> {
    const { owner, name } = splitRepoName(update.repo);
    const context = update.context ?? DEFAULT_STATUS_CONTEXT;
    const octokit = this.clientFor(update.repo);
    const body = {
      owner,
      repo: name,
      sha: update.sha,
      state: update.state,
      description: truncateDescription(update.description),
      context,
      ...(update.targetUrl ? { target_url: update.targetUrl } : {}),
    };
    await deliver(
      policy,
      // retries: 0 keeps the client's plugins from retrying on their own schedule.
      (signal) => octokit.rest.repos.createCommitStatus({ ...body, request: { retries: 0, signal } }),
      ({ outcome, why, attempts, elapsedMs }) => {
        const status = outcome.failure?.status;
        return new GitHubApiError(
          `Could not set the ${update.state} status of ${update.repo}@${shortSha(update.sha)} ` +
            `(context "${context}"): ${outcome.reason}; ${why} after ${attempts} attempt(s) in ${elapsedMs} ms. ` +
            adviceFor(outcome.failure, `the repository ${update.repo} and commit ${update.sha}`),
          {
            repo: update.repo,
            ref: update.sha,
            attempts,
            ...(status === undefined ? {} : { status }),
            ...(outcome.failure?.requestId ? { requestId: outcome.failure.requestId } : {}),
          },
        );
      },
    );
  }
}
