/**
 * Webhook intake: from a verified delivery to a queued build. Order matters and is fixed:
 * record the delivery and the queued build, set the `pending` status, then invoke the builder,
 * so no intake status can land after the builder's final one. What depends on no earlier step runs
 * beside it (GitHub waits for the answer): the settings and the delivery guard are read together,
 * the body guard and the build number are taken together, and the superseded builds are looked for
 * while the status is set and the builder invoked (they are cancelled once it is invoked).
 *
 * Crash safety: the delivery guard item names its build number before the build is written. A
 * redelivery of a delivery whose attempt crashed finds the guard, writes the build if missing,
 * and invokes the builder again if the guard was never marked invoked. A second invoke is
 * harmless: the builder claims a build with a conditional queued → running transition.
 *
 * Replays: a signed body can be captured and posted again under a new delivery id (the signature
 * covers the body, not the headers). Before a new delivery gets its guard, a body guard keyed by
 * the event and the body's SHA-256 is claimed naming that delivery; a later delivery id with the
 * same event and body queues and cancels nothing. The body guard is claimed first and names its
 * delivery, so a redelivery (same id) after a crash between the two guards passes it again.
 *
 * Superseded builds: once a build of a branch or pull request is queued, older builds of the same
 * branch or PR still queued or running are cancelled ("superseded by #N", `build.cancelSuperseded`).
 * A cancelled queued build is never claimed; a running one is stopped by its controller, which
 * watches its build record.
 */
import type { BuildRecord, BuildRequest } from '../core/build.js';
import { buildLabel, rebuildRequest } from '../core/build.js';
import { commitStateFor } from '../core/state-machine.js';
import { baseUrlFromRequest, buildPageUrl, newLinkToken, pageUrlOf } from '../core/links.js';
import { decideBuild } from '../core/policy.js';
import {
  installationIdOf,
  interpretEvent,
  type BuildCandidate,
  type RerunRequest,
} from '../github/events.js';
import { holdForApproval, queueApproved, type ApprovalCheck, type ApprovalOptions } from './approval.js';
import { WebhookRejectedError, type VerifiedDelivery, type WebhookVerifier } from '../github/webhook.js';
import { INTAKE_DELIVERY } from '../github/statuses.js';
import type { Logger } from '../core/logger.js';
import { jsonResponse, type HttpRequest, type HttpResponse } from '../core/http.js';
import { TransitionRefusedError, messageOf } from '../core/errors.js';
import {
  type StatusReporter,
  type ControllerInvoker,
  type BuildStore,
  type InstallationChange,
  type InstallationRegistry,
  type QueuedBuildOptions,
  type SettingsStore,
} from '../core/ports.js';
import { reportBuildStatus } from './status-reporting.js';

export interface IntakeDependencies {
  verifier: WebhookVerifier;
  builds: BuildStore;
  settings: Pick<SettingsStore, 'effective'>;
  statuses: StatusReporter;
  controller: ControllerInvoker;
  logger: Logger;
  /** Base of the links put in commit statuses; empty: the URL the request came in on. */
  publicUrl: string;
  /** How long a build may stay queued before the sweeper ends it. */
  queueTimeoutMs: number;
  /**
   * Set where the build sandbox is too weak for strangers' code (a local stack not run as root,
   * without the operator's opt-in): untrusted builds (pull requests from forks) are not built,
   * and this says why and how to change it.
   */
  refuseUntrustedBuilds?: string;
  /**
   * App mode: which repositories the App is installed on. A build for a repository it is not
   * installed on is refused: the App could neither read the code nor report on it.
   */
  installations?: InstallationCheck;
  /**
   * App mode: pull request commits held until someone with write access approves them
   * (`requireApproval`). Without it (token mode) such pull requests are not built.
   */
  approvals?: ApprovalCheck;
  clock?: () => number;
  /**
   * Stops what a cancelled (superseded) build runs on CodeBuild, which no controller watches
   * (src/controller/codebuild-run.ts stopRemoteRunsOf). Unset where CodeBuild is off.
   */
  stopRemote?: (build: BuildRecord) => Promise<void>;
}

export interface InstallationCheck {
  /** What the installation events said. */
  registry: InstallationRegistry;
  /** GitHub's own answer (the App's JWT) when the record has none: the installation id, or undefined. */
  lookUp(repo: string): Promise<number | undefined>;
}

/** Delivery and body guards outlive GitHub's redelivery window (it offers redelivery for 3 days). */
const DELIVERY_GUARD_TTL_MS = 7 * 24 * 60 * 60 * 1000;

export async function handleWebhook(deps: IntakeDependencies, request: HttpRequest): Promise<HttpResponse> {
  if (request.method !== 'POST') return jsonResponse(405, { error: 'Webhooks are delivered with POST.' });
  try {
    const delivery = await deps.verifier.verify(request);
    const interpretation = interpretEvent(delivery.event, delivery.payload);
    const context = { deliveryId: delivery.deliveryId, event: delivery.event };
    switch (interpretation.kind) {
      case 'ping':
        deps.logger.info('webhook ping', context);
        return jsonResponse(200, { ok: true, message: 'pong' });
      case 'ignore':
        deps.logger.info('webhook ignored', {
          ...context,
          repo: interpretation.repo,
          reason: interpretation.reason,
        });
        return jsonResponse(202, { ignored: true, reason: interpretation.reason });
      case 'skip':
        deps.logger.info('webhook skipped', {
          ...context,
          repo: interpretation.candidate.repo,
          reason: interpretation.reason,
        });
        return jsonResponse(202, { ignored: true, reason: interpretation.reason });
      case 'build': {
        const refusal = await installationRefusal(deps, interpretation.candidate.repo, delivery.payload);
        if (refusal) return refusal;
        if (interpretation.unlessBuilt) {
          const earlier = await buildOfSameCommit(deps, interpretation.candidate, !interpretation.untrusted);
          if (earlier) {
            const reason = `already built as #${earlier.number} (${earlier.state})`;
            deps.logger.info('webhook ignored', { ...context, repo: earlier.repo, reason });
            return jsonResponse(202, { ignored: true, reason });
          }
        }
        return await queueBuild(deps, interpretation.candidate, delivery, request, {
          ...(interpretation.untrusted ? { untrusted: true } : {}),
          // A new pull request commit: held when its source requires approval.
          // An untrusted commit of no pull request (a check suite's) may be a fork's: asked too.
          ...(interpretation.candidate.event === 'pull_request' || interpretation.untrusted
            ? { approval: 'ask' as const }
            : {}),
        });
      }
      case 'approve': {
        const refusal = await installationRefusal(deps, interpretation.request.repo, delivery.payload);
        if (refusal) return refusal;
        return await queueApproved(deps, interpretation.request, delivery, (candidate, options) =>
          queueBuild(deps, candidate, delivery, request, options),
        );
      }
      case 'rerun': {
        const refusal = await installationRefusal(deps, interpretation.request.repo, delivery.payload);
        if (refusal) return refusal;
        return await queueRerun(deps, interpretation.request, delivery, request);
      }
      case 'installation':
        return await recordInstallation(deps, interpretation.change, context);
    }
  } catch (error) {
    if (error instanceof WebhookRejectedError) {
      deps.logger.warn('webhook rejected', { status: error.statusCode, reason: error.message });
      return jsonResponse(error.statusCode, { error: error.message });
    }
    deps.logger.error('webhook failed', { error });
    // Nothing half-done is lost: the delivery guard lets a redelivery finish the job.
    return jsonResponse(500, {
      error: 'Internal error while queueing the build; redeliver this webhook to retry.',
    });
  }
}

/** App mode: notes which repositories an installation reaches now. Elsewhere there is nothing to note. */
async function recordInstallation(
  deps: IntakeDependencies,
  change: Omit<InstallationChange, 'at'>,
  context: { deliveryId: string; event: string },
): Promise<HttpResponse> {
  if (!deps.installations) {
    return jsonResponse(202, {
      ignored: true,
      reason: 'not running as a GitHub App: installations are not used',
    });
  }
  await deps.installations.registry.apply({ ...change, at: (deps.clock ?? Date.now)() });
  deps.logger.info('installation recorded', {
    ...context,
    installation: change.installationId,
    account: change.account,
    added: change.added.length,
    removed: change.removed.length,
    ...(change.suspended !== undefined ? { suspended: change.suspended } : {}),
    ...(change.deleted ? { deleted: true } : {}),
  });
  return jsonResponse(200, {
    recorded: true,
    installation: change.installationId,
    added: change.added,
    removed: change.removed,
  });
}

/**
 * App mode: a clear refusal for a repository the App is not installed on (a webhook added by hand
 * to a repository, or an installation removed since). A delivery that names its installation came
 * from the App itself (its signature is the App's): it needs no lookup.
 */
async function installationRefusal(
  deps: IntakeDependencies,
  repo: string,
  payload: unknown,
): Promise<HttpResponse | undefined> {
  if (!deps.installations) return undefined;
  if (installationIdOf(payload) !== undefined) return undefined;
  if ((await deps.installations.registry.installationOf(repo)) !== undefined) return undefined;
  if ((await deps.installations.lookUp(repo)) !== undefined) return undefined;
  const reason =
    `Lambkin's GitHub App is not installed on ${repo}, so it can neither fetch the code nor report ` +
    "on it: install the App on the repository (its page on GitHub, 'Install App'), or remove " +
    "this repository's webhook (docs/github-app.md)";
  deps.logger.warn('webhook refused', { repo, reason });
  return jsonResponse(403, { error: reason });
}

/**
 * A build of the same commit of the same branch, if any (another event for it came first). For a
 * trusted candidate (a merge group) only a trusted build counts: a check suite's untrusted build
 * of that commit must not stand in for it.
 */
async function buildOfSameCommit(
  deps: IntakeDependencies,
  candidate: BuildCandidate,
  trusted: boolean,
): Promise<BuildRecord | undefined> {
  const builds = await deps.builds.buildsOfCommit(candidate.repo, candidate.sha);
  return builds.find(
    (build) => build.pr === undefined && build.branch === candidate.branch && (build.trusted || !trusted),
  );
}

/**
 * "Re-run" from GitHub: the build the check run names, else the commit's latest build, built
 * again as a new build of the same request (trust included), through the same guards as any
 * delivery. Nothing to re-run (no build of that commit) is answered, not failed.
 */
async function queueRerun(
  deps: IntakeDependencies,
  rerun: RerunRequest,
  delivery: VerifiedDelivery,
  http: HttpRequest,
): Promise<HttpResponse> {
  const named =
    rerun.number !== undefined
      ? await deps.builds.getBuild({ repo: rerun.repo, number: rerun.number })
      : undefined;
  const original =
    named?.sha === rerun.sha ? named : (await deps.builds.buildsOfCommit(rerun.repo, rerun.sha))[0];
  if (!original) {
    const reason = `no build of ${rerun.sha.slice(0, 7)} to run again`;
    deps.logger.info('webhook ignored', { deliveryId: delivery.deliveryId, repo: rerun.repo, reason });
    return jsonResponse(202, { ignored: true, reason });
  }
  deps.logger.info('re-run requested', {
    deliveryId: delivery.deliveryId,
    build: buildLabel(original),
    sender: rerun.sender,
    ...(rerun.job !== undefined ? { job: rerun.job } : {}),
  });
  const {
    deliveryId: _previous,
    trusted: _trusted,
    ...again
  } = rebuildRequest(original, delivery.deliveryId);
  // A job's run re-run: the new build plans the commit's jobs again and runs that one only.
  const candidate =
    rerun.job !== undefined && named?.sha === rerun.sha ? { ...again, jobs: [rerun.job] } : again;
  // A re-run of an older commit must not cancel the newer builds of its branch.
  return queueBuild(deps, candidate, delivery, http, {
    cancelsSuperseded: false,
    ...(original.trusted ? {} : { untrusted: true }),
  });
}

/** How a candidate is queued: see queueBuild. */
interface QueueOptions extends ApprovalOptions {
  cancelsSuperseded?: boolean;
  untrusted?: boolean;
}

async function queueBuild(
  deps: IntakeDependencies,
  candidate: BuildCandidate,
  delivery: VerifiedDelivery,
  http: HttpRequest,
  options: QueueOptions = {},
): Promise<HttpResponse> {
  const { deliveryId } = delivery;
  const now = (deps.clock ?? Date.now)();
  // Independent reads, at once: the guard is only used once the build is decided (and it is read
  // again by the conditional claims below, so reading it early loses no race).
  const [settings, earlierGuard] = await Promise.all([
    deps.settings.effective(candidate.repo),
    deps.builds.getDelivery(deliveryId),
  ]);
  const decision = decideBuild(candidate, settings.build);
  if (!decision.build) {
    deps.logger.info('webhook ignored', { deliveryId, repo: candidate.repo, reason: decision.reason });
    return jsonResponse(202, { ignored: true, reason: decision.reason });
  }
  const request: BuildRequest = { ...candidate, deliveryId, trusted: !candidate.fork && !options.untrusted };
  if (!request.trusted && deps.refuseUntrustedBuilds !== undefined) {
    const reason = deps.refuseUntrustedBuilds;
    deps.logger.warn('webhook ignored', { deliveryId, repo: candidate.repo, reason });
    return jsonResponse(202, { ignored: true, reason });
  }
  const held = await holdForApproval(deps, candidate, settings.build, delivery, http, options);
  if (held) return held;
  const base = deps.publicUrl || baseUrlFromRequest(http.headers) || '';
  const logToken = request.privateRepo ? newLinkToken() : undefined;
  const queuedOptions: QueuedBuildOptions = {
    deadline: now + deps.queueTimeoutMs,
    at: now,
    ...(logToken ? { logToken } : {}),
    pageUrl: (number) => buildPageUrl(base, { repo: request.repo, number }, logToken),
  };

  let guard = earlierGuard;
  let build: BuildRecord | undefined;
  if (!guard) {
    // The number is taken beside the body guard, not after it: a replay then leaves a gap in the
    // numbers, which they may have (BuildStore.allocateNumber), and every other delivery is faster.
    const [body, number] = await Promise.all([
      deps.builds.claimBody(delivery, deliveryId, now + DELIVERY_GUARD_TTL_MS),
      deps.builds.allocateNumber(request.repo),
    ]);
    // Claimed under this id already: a copy or redelivery of this delivery, whose attempt may have
    // died before its delivery guard. Under another id: the same signed body replayed.
    if (!body.claimed && body.record.deliveryId !== deliveryId) {
      const reason = `replay of delivery ${body.record.deliveryId}`;
      deps.logger.warn('webhook replay ignored', { deliveryId, repo: request.repo, reason });
      return jsonResponse(202, { ignored: true, reason });
    }
    const claim = await deps.builds.claimDelivery(
      deliveryId,
      { repo: request.repo, number },
      now + DELIVERY_GUARD_TTL_MS,
    );
    if (claim.claimed) {
      build = await deps.builds.putQueuedBuild(request, number, queuedOptions);
    } else {
      guard = claim.record; // a concurrent copy of this delivery got there first
    }
  }
  if (guard) {
    build =
      (await deps.builds.getBuild(guard.build)) ??
      (await writeMissingBuild(deps, request, guard.build.number, queuedOptions));
    if (guard.invokedAt !== undefined || build.state !== 'queued') {
      deps.logger.info('webhook redelivered: build already queued', { deliveryId, build: buildLabel(build) });
      return jsonResponse(202, {
        duplicate: true,
        repo: build.repo,
        number: build.number,
        state: build.state,
      });
    }
    deps.logger.warn('resuming a delivery whose earlier attempt did not finish', {
      deliveryId,
      build: buildLabel(build),
    });
  }
  if (!build) throw new Error('unreachable: no build after intake');
  return startBuild(
    deps,
    build,
    deliveryId,
    settings.build.cancelSuperseded && options.cancelsSuperseded !== false,
  );
}

/** The guard exists but its build does not: the earlier attempt crashed in between. */
async function writeMissingBuild(
  deps: IntakeDependencies,
  request: BuildRequest,
  number: number,
  options: QueuedBuildOptions,
): Promise<BuildRecord> {
  try {
    return await deps.builds.putQueuedBuild(request, number, options);
  } catch (error) {
    const written = await deps.builds.getBuild({ repo: request.repo, number });
    if (written) return written; // a concurrent attempt wrote it
    throw error;
  }
}

async function startBuild(
  deps: IntakeDependencies,
  build: BuildRecord,
  deliveryId: string,
  cancelSuperseded: boolean,
): Promise<HttpResponse> {
  const url = pageUrlOf(build, deps.publicUrl);
  const label = buildLabel(build);
  // Looked for while the status is set and the builder invoked; cancelled only once it is invoked.
  const superseded = cancelSuperseded ? supersededBuilds(deps, build) : Promise.resolve([]);
  // Failing here is no failure: the builder sets the status again when it claims the build. Not
  // recorded as acknowledged (no store given): only a terminal status GitHub missed is ever sent
  // again (the sweeper), and the record would cost a write between this status and the invoke.
  await reportBuildStatus(
    { ...deps, builds: {} },
    {
      build,
      status: {
        repo: build.repo,
        sha: build.sha,
        state: 'pending',
        description: `Build #${build.number} queued`,
        targetUrl: url,
      },
      reports: 'queued',
      policy: INTAKE_DELIVERY,
      onFailure: {
        level: 'warn',
        message: 'could not set the pending status; the builder will set it when the build starts',
      },
    },
  );
  try {
    await deps.controller.invoke(build);
  } catch (error) {
    await superseded; // never rejects; nothing is cancelled for a build that did not start
    return failToStart(deps, build, url, error);
  }
  // Both settle before the answer (a function's work stops with it); cancelling never rejects.
  const [marked, cancelling] = await Promise.allSettled([
    deps.builds.markDeliveryInvoked(deliveryId),
    superseded.then((older) => cancelBuilds(deps, build, older)),
  ]);
  if (marked.status === 'rejected') throw marked.reason;
  deps.logger.info('build queued', { deliveryId, build: label, sha: build.sha });
  const cancelled = cancelling.status === 'fulfilled' ? cancelling.value : [];
  return jsonResponse(202, {
    queued: true,
    repo: build.repo,
    number: build.number,
    url,
    ...(cancelled.length > 0 ? { cancelled } : {}),
  });
}

/**
 * The older builds of the same branch or pull request that are still queued or running (never a
 * tag's: each tag is its own release; never a trusted one for an untrusted build). Best effort: a
 * failure to look is logged and finds none (the older builds then simply run to their end).
 */
async function supersededBuilds(deps: IntakeDependencies, build: BuildRecord): Promise<BuildRecord[]> {
  if (build.tag !== undefined || (build.pr === undefined && build.branch === undefined)) return [];
  try {
    const older = await deps.builds.unfinishedBuildsOf(build.repo, build, build.number);
    // Untrusted code (a check suite's commit, which may be a fork's named like the branch) never
    // stops the branch's own trusted builds: only a trusted build supersedes those.
    return build.trusted ? older : older.filter((previous) => !previous.trusted);
  } catch (error) {
    deps.logger.warn('could not look for superseded builds', { build: buildLabel(build), error });
    return [];
  }
}

/**
 * Cancels `older`, superseded by `build`, each with a status saying so. Never throws: a failure is
 * logged and never fails the webhook. Returns the numbers cancelled.
 */
async function cancelBuilds(
  deps: IntakeDependencies,
  build: BuildRecord,
  older: BuildRecord[],
): Promise<number[]> {
  const reason = `superseded by #${build.number}`;
  const results = await Promise.all(
    older.map(async (previous): Promise<number | undefined> => {
      const label = buildLabel(previous);
      let cancelled: BuildRecord;
      try {
        cancelled = await deps.builds.transition(previous, {
          from: ['queued', 'running'],
          to: 'cancelled',
          reason,
        });
      } catch (error) {
        // Ended meanwhile: its own state stands.
        if (!(error instanceof TransitionRefusedError)) {
          deps.logger.warn('could not cancel a superseded build', { build: label, error });
        }
        return undefined;
      }
      deps.logger.info('superseded build cancelled', { build: label, by: build.number });
      if (deps.stopRemote) {
        await deps
          .stopRemote(cancelled)
          .catch((error: unknown) =>
            deps.logger.warn('could not stop the superseded build on CodeBuild', { build: label, error }),
          );
      }
      // Not taken: the sweeper re-sends it (the build stays unreported).
      await reportBuildStatus(deps, {
        build: cancelled,
        status: {
          repo: cancelled.repo,
          sha: cancelled.sha,
          state: commitStateFor(cancelled.state),
          description: `Build #${cancelled.number} cancelled: ${reason}`,
          targetUrl: pageUrlOf(cancelled, deps.publicUrl),
        },
        reports: 'cancelled',
        policy: INTAKE_DELIVERY,
        onFailure: { level: 'warn', message: 'could not set the cancelled status' },
      });
      return cancelled.number;
    }),
  );
  return results.filter((number): number is number => number !== undefined);
}

/** Notes which state's status GitHub took; a failure to note it only means the sweeper may re-send. */
/** The builder could not be invoked: end the build as `error` so nothing stays pending forever. */
async function failToStart(
  deps: IntakeDependencies,
  build: BuildRecord,
  url: string,
  cause: unknown,
): Promise<HttpResponse> {
  const label = buildLabel(build);
  const reason = `could not start the builder: ${messageOf(cause)}`;
  deps.logger.error('builder invoke failed; build marked error', { build: label, error: cause });
  try {
    await deps.builds.transition(build, { from: 'queued', to: 'error', reason });
  } catch (error) {
    if (!(error instanceof TransitionRefusedError)) throw error;
    // The invoke reached the builder after all and it claimed the build: it reports the result.
    deps.logger.warn('build was claimed despite the invoke error', { build: label });
    return jsonResponse(202, { queued: true, repo: build.repo, number: build.number, url });
  }
  // Not taken: the sweeper re-sends it (the build stays unreported).
  await reportBuildStatus(deps, {
    build,
    status: {
      repo: build.repo,
      sha: build.sha,
      state: 'error',
      description: `Build #${build.number} ${reason}`,
      targetUrl: url,
    },
    reports: 'error',
    policy: INTAKE_DELIVERY,
    onFailure: { level: 'error', message: 'could not set the error status' },
  });
  return jsonResponse(502, { error: reason, repo: build.repo, number: build.number, state: 'error' });
}
