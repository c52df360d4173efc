/**
 * Approval of pull request code before it runs (App mode, `build.pullRequests.<source>.requireApproval`):
 *
 * - a new commit of such a pull request is held (ApprovalStore) instead of queued; its `lambkin`
 *   status says it waits, and its `Lambkin` check run ends `action_required` with an "Approve and
 *   run" button (external id `owner/repo#approval`);
 * - a click (`check_run` `requested_action`, or "Re-run" of that run) from someone with admin,
 *   maintain or write access takes the hold, atomically, and queues that commit once as untrusted
 *   code through the intake's usual path; the approval's check run then turns `neutral` and names
 *   the build. A click from anyone else is refused (403) and changes nothing.
 *
 * Token mode has no check runs, so no button: such pull requests are not built, and the answer says
 * why. Every commit asks again: a newer push holds the newer commit, the older hold is never taken.
 */
import {
  AWAITING_APPROVAL_DESCRIPTION,
  approvalGrantedReport,
  approvalRequestedReport,
  type CheckRunReport,
} from '../core/check-run.js';
import { jsonResponse, type HttpRequest, type HttpResponse } from '../core/http.js';
import { baseUrlFromRequest, repoPageUrl } from '../core/links.js';
import type { Logger } from '../core/logger.js';
import type { ApprovalStore, DeliveryPolicy, StatusReporter } from '../core/ports.js';
import { pullRequestSourceOf, type BuildPolicy } from '../core/settings.js';
import type { RepositoryRole } from '../github/collaborators.js';
import type { ApprovalRequest, BuildCandidate } from '../github/events.js';
import { INTAKE_DELIVERY } from '../github/statuses.js';
import type { VerifiedDelivery } from '../github/webhook.js';
import { messageOf } from '../core/errors.js';

/** What approving needs from GitHub and the store (App mode). */
export interface ApprovalCheck {
  store: ApprovalStore;
  /** `login`'s role in `repo`, as GitHub says it (the App's installation, metadata read). */
  roleOf(repo: string, login: string): Promise<RepositoryRole>;
  /** Sets a check run without a commit status: the approval's own run, once its build took over. */
  setCheck(
    target: { repo: string; sha: string; targetUrl?: string },
    check: CheckRunReport,
    policy: DeliveryPolicy,
  ): Promise<void>;
}

/** The intake's parts approving uses (IntakeDependencies has them). */
export interface ApprovalIntake {
  approvals?: ApprovalCheck;
  statuses: StatusReporter;
  logger: Logger;
  publicUrl: string;
  clock?: () => number;
}

/** What the intake tells queueBuild about approval. */
export interface ApprovalOptions {
  /** A new pull request event: held when its source requires approval. */
  approval?: 'ask';
  /** Approved by this login: built without asking again. */
  approvedBy?: string;
}

/** Who may approve: GitHub's roles that may push to the repository. */
const APPROVER_ROLES: readonly RepositoryRole[] = ['admin', 'maintain', 'write'];

/**
 * Holds `candidate` when it is a new pull request commit whose source requires approval, and
 * answers for it; undefined when it is to be queued as usual.
 */
/**
 * An untrusted commit that comes with no pull request (a check suite GitHub made for it) may be a
 * fork's: where forks' pull requests wait for approval, it is not built on its own, and has no pull
 * request to hold. Its pull request's own event holds it.
 */
function forkCommitRefusal(
  deps: ApprovalIntake,
  candidate: BuildCandidate,
  policy: BuildPolicy,
  delivery: VerifiedDelivery,
): HttpResponse | undefined {
  const source = candidate.privateRepo ? 'fromForkPrivateRepo' : 'fromForkPublicRepo';
  if (!policy.pullRequests[source].requireApproval) return undefined;
  const reason =
    `an untrusted commit with no pull request (it may be a fork's) is not built while pull requests ${source} ` +
    `wait for approval (build.pullRequests.${source}.requireApproval): its pull request asks for approval`;
  deps.logger.info('webhook skipped', { deliveryId: delivery.deliveryId, repo: candidate.repo, reason });
  return jsonResponse(202, { ignored: true, reason });
}

export async function holdForApproval(
  deps: ApprovalIntake,
  candidate: BuildCandidate,
  policy: BuildPolicy,
  delivery: VerifiedDelivery,
  http: HttpRequest,
  options: ApprovalOptions,
): Promise<HttpResponse | undefined> {
  if (options.approval !== 'ask') return undefined;
  if (candidate.event !== 'pull_request') return forkCommitRefusal(deps, candidate, policy, delivery);
  const source = pullRequestSourceOf(candidate);
  if (!policy.pullRequests[source].requireApproval) return undefined;
  const context = { deliveryId: delivery.deliveryId, repo: candidate.repo, sha: candidate.sha };
  if (!deps.approvals) {
    const reason =
      `pull requests ${source} wait for a maintainer's approval (build.pullRequests.${source}.requireApproval), ` +
      'and approving needs Lambkin to run as a GitHub App (docs/github-app.md): not built. Run as an ' +
      'App, or set requireApproval to false';
    deps.logger.info('webhook skipped', { ...context, reason });
    return jsonResponse(202, { ignored: true, reason });
  }
  const now = (deps.clock ?? Date.now)();
  await deps.approvals.store.hold(candidate, now);
  const base = deps.publicUrl || baseUrlFromRequest(http.headers) || '';
  // A private repository's page of builds is not served: the public URL then.
  const targetUrl = base ? (candidate.privateRepo ? base : repoPageUrl(base, candidate.repo)) : undefined;
  try {
    await deps.statuses.setStatus(
      {
        repo: candidate.repo,
        sha: candidate.sha,
        state: 'pending',
        description: AWAITING_APPROVAL_DESCRIPTION,
        ...(targetUrl ? { targetUrl } : {}),
        check: approvalRequestedReport({
          repo: candidate.repo,
          ...(candidate.pr !== undefined ? { pr: candidate.pr } : {}),
          author: candidate.author,
          at: now,
        }),
      },
      INTAKE_DELIVERY,
    );
  } catch (error) {
    // Without its check run nobody can approve: let GitHub show the failure, and a redelivery retry.
    deps.logger.error('could not ask for approval', { ...context, error });
    return jsonResponse(502, {
      error:
        `Held ${candidate.repo}@${candidate.sha.slice(0, 7)} for approval, but could not set its ` +
        `check run (${messageOf(error)}); redeliver this webhook to retry.`,
      awaitingApproval: true,
    });
  }
  deps.logger.info('build held for approval', { ...context, pr: candidate.pr, source });
  return jsonResponse(202, {
    awaitingApproval: true,
    repo: candidate.repo,
    sha: candidate.sha,
    ...(candidate.pr !== undefined ? { pr: candidate.pr } : {}),
    reason: `pull requests ${source} are built once someone with write access approves them`,
  });
}

/**
 * "Approve and run": checks that the sender may approve, takes the commit's hold and queues it
 * once, as untrusted code, with `queue` (the intake's queueBuild for this delivery).
 */
export async function queueApproved(
  deps: ApprovalIntake,
  request: ApprovalRequest,
  delivery: VerifiedDelivery,
  queue: (candidate: BuildCandidate, options: ApprovalOptions & { untrusted: true }) => Promise<HttpResponse>,
): Promise<HttpResponse> {
  const { repo, sha, sender } = request;
  const context = { deliveryId: delivery.deliveryId, repo, sha, sender };
  if (!deps.approvals) {
    const reason = 'not running as a GitHub App: nothing is held for approval';
    deps.logger.info('webhook ignored', { ...context, reason });
    return jsonResponse(202, { ignored: true, reason });
  }
  const role = await deps.approvals.roleOf(repo, sender);
  if (!APPROVER_ROLES.includes(role)) {
    const error =
      `@${sender} may not approve builds of ${repo}: approving takes admin, maintain or write access ` +
      `(GitHub says: ${role}), and a pull request's author without it may not approve their own code. ` +
      'Ask a maintainer to click "Approve and run", or give this user write access.';
    deps.logger.warn('approval refused', { ...context, role });
    return jsonResponse(403, { error });
  }
  const now = (deps.clock ?? Date.now)();
  const held = await deps.approvals.store.take(repo, sha, now);
  if (!held) {
    const reason =
      `nothing held for approval at ${sha.slice(0, 7)}: already approved, expired, or a newer ` +
      'commit was pushed (approve that one)';
    deps.logger.info('webhook ignored', { ...context, reason });
    return jsonResponse(202, { ignored: true, reason });
  }
  let answer: HttpResponse;
  try {
    answer = await queue(held, { untrusted: true, approvedBy: sender });
  } catch (error) {
    // Not queued: hold it again so that another click (or this delivery again) can build it.
    await deps.approvals.store.hold(held, now).catch((holdError: unknown) => {
      deps.logger.error('could not hold the approved build again', { ...context, error: holdError });
    });
    throw error;
  }
  const body = JSON.parse(answer.body) as Record<string, unknown>;
  const number = typeof body.number === 'number' ? body.number : undefined;
  deps.logger.info('build approved', { ...context, role, ...(number !== undefined ? { number } : {}) });
  if (number !== undefined) {
    try {
      await deps.approvals.setCheck(
        { repo, sha, ...(typeof body.url === 'string' ? { targetUrl: body.url } : {}) },
        approvalGrantedReport({ repo, approver: sender, number, at: now }),
        INTAKE_DELIVERY,
      );
    } catch (error) {
      // The build runs all the same; its own check run reports it.
      deps.logger.warn('could not mark the approval check run approved', { ...context, error });
    }
  }
  return jsonResponse(answer.statusCode, { ...body, approvedBy: sender });
}
