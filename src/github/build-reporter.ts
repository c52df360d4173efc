/**
 * App mode's reporter: every commit status goes out with the build's check run saying the same
 * (queued, in progress, completed with its conclusion, output and annotations), so statuses and
 * checks agree and branch protection that requires the `lambkin` status keeps working. Both are
 * sent at once within the caller's delivery policy; the report succeeds only when both did, so a
 * final report that failed stays unreported and the sweeper sends both again.
 *
 * The check run is found by its external id (`owner/repo#number`) among this App's runs of the
 * commit, then remembered by this process: no table holds check run ids, and a run made by another
 * process (the webhook made it queued, the builder completes it) is found all the same.
 */
import type { Octokit } from '@octokit/rest';
import { GitHubApiError, adviceFor, shortSha } from './api-errors.js';
import { GitHubCheckRuns, type CheckRunFields } from './checks.js';
import { deliver } from './delivery.js';
import type { CheckRunReport } from '../core/check-run.js';
import type { CommitStatusUpdate, DeliveryPolicy, StatusReporter } from '../core/ports.js';

/** Check run ids this process made or found; a handful per build, dropped oldest first. */
const REMEMBERED_RUNS = 1000;

export class AppBuildReporter implements StatusReporter {
  private readonly runIds = new Map<string, number>();

  constructor(
    private readonly statuses: StatusReporter,
    /** The client of the App's installation on a repository, with `checks: write`. */
    private readonly clientFor: (repo: string) => Octokit,
    /**
     * The App's numeric id: the run is looked for among this App's runs only (another App may
     * name a run `Lambkin` with the build's external id; this App could not update it).
     */
    private readonly appId?: () => Promise<number>,
  ) {}

  async setStatus(update: CommitStatusUpdate, policy: DeliveryPolicy): Promise<void> {
    const { check } = update;
    await Promise.all([
      this.statuses.setStatus(update, policy),
      check ? this.reportCheck(update, check, policy) : undefined,
    ]);
  }

  /** Sets a check run alone, without a commit status (an approval's run, beside a build's). */
  async setCheck(
    target: Pick<CommitStatusUpdate, 'repo' | 'sha' | 'targetUrl'>,
    check: CheckRunReport,
    policy: DeliveryPolicy,
  ): Promise<void> {
    await this.reportCheck(target, check, policy);
  }

  private async reportCheck(
    update: Pick<CommitStatusUpdate, 'repo' | 'sha' | 'targetUrl'>,
    check: CheckRunReport,
    policy: DeliveryPolicy,
  ): Promise<void> {
    const runs = new GitHubCheckRuns(this.clientFor(update.repo));
    const key = `${update.repo.toLowerCase()}|${update.sha}|${check.externalId}`;
    const fields: CheckRunFields = {
      status: check.status,
      ...(check.conclusion ? { conclusion: check.conclusion } : {}),
      ...(update.targetUrl ? { detailsUrl: update.targetUrl } : {}),
      externalId: check.externalId,
      ...(check.startedAt !== undefined ? { startedAt: new Date(check.startedAt) } : {}),
      ...(check.completedAt !== undefined ? { completedAt: new Date(check.completedAt) } : {}),
      output: check.output,
      ...(check.actions !== undefined ? { actions: check.actions } : {}),
    };
    await deliver(
      policy,
      async (signal) => {
        const known =
          this.runIds.get(key) ??
          (await runs.find(update.repo, update.sha, check.name, check.externalId, {
            signal,
            ...(this.appId ? { appId: await this.appId() } : {}),
          }));
        const run = known
          ? await runs.update(update.repo, known, fields, { signal })
          : await runs.create(update.repo, { ...fields, name: check.name, headSha: update.sha }, { signal });
        this.remember(key, run.id);
      },
      ({ outcome, why, attempts, elapsedMs }) => {
        const status = outcome.failure?.status;
        return new GitHubApiError(
          `Could not set the ${check.status}${check.conclusion ? ` (${check.conclusion})` : ''} check run ` +
            `"${check.name}" of ${update.repo}@${shortSha(update.sha)}: ${outcome.reason}; ${why} after ` +
            `${attempts} attempt(s) in ${elapsedMs} ms. ` +
            adviceFor(outcome.failure, `the repository ${update.repo} and commit ${update.sha}`) +
            (status === 403
              ? ' The App needs the "checks: write" permission, accepted on its installation.'
              : ''),
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

  private remember(key: string, id: number): void {
    this.runIds.delete(key);
    this.runIds.set(key, id);
    if (this.runIds.size > REMEMBERED_RUNS) {
      const oldest = this.runIds.keys().next().value;
      if (oldest !== undefined) this.runIds.delete(oldest);
    }
  }
}
