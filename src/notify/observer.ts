/**
 * What happens after a build changes state, wherever the change is made: the repository's page of
 * recent builds is rendered again, and Slack and SNS are told (Slack when a build starts and ends,
 * SNS when it ends). `observeBuildStore` wraps a build store so that every successful transition
 * (and every queued build written) reaches the observer, without the controller, sweeper or
 * on-failure code knowing.
 *
 * Notifications never fail or hold up a build for long: each state change's work is bounded
 * (NotifierDependencies.timeoutMs), every error is logged, never thrown.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import {
  buildLabel,
  type BuildKey,
  type BuildRecord,
  type BuildRequest,
  type RepoName,
} from '../core/build.js';
import { pageUrlOf, relativePageLinks } from '../core/links.js';
import {
  resultOf,
  shouldNotify,
  slackConnectionOf,
  type NotificationSettings,
  type NotifiedBuild,
  type NotifyEvent,
  type SlackConnection,
  type SlackMessageRef,
} from '../core/notifications.js';
import type { EffectiveSettings } from '../core/settings.js';
import { isTerminal } from '../core/state-machine.js';
import { REPO_KEYS } from '../core/protocol.js';
import { REPO_PAGE_BUILDS, renderRepoPage } from '../pages/repo-page.js';
import type { Logger } from '../core/logger.js';
import { failingStepTail, type LogTail } from './log-tail.js';
import { slackMessageFor, snsNotificationFor } from './messages.js';
import { SlackError, UPDATE_NOT_POSSIBLE, type SlackClient, type SlackMessage } from './slack.js';
import type { SnsPublisher } from './sns.js';
import { type BuildStore, type LogStore, type SettingsStore } from '../core/ports.js';

export interface BuildObserver {
  /** Called after a build was written in a new state; must not throw. */
  buildChanged(build: BuildRecord): Promise<void>;
  /**
   * Several changes of one repository, oldest first, handled as one where that is the same (the
   * repository's page is written once); must not throw. Without it each goes to buildChanged.
   */
  buildsChanged?(builds: readonly BuildRecord[]): Promise<void>;
}

/**
 * The store, with `putQueuedBuild` and `transition` reporting each build they wrote to the observer
 * (after the write, and only when it succeeded). Every other method is the store's own.
 */
export function observeBuildStore<T extends BuildStore>(store: T, observer: BuildObserver): T {
  const observed = new Set<PropertyKey>(['putQueuedBuild', 'transition']);
  return new Proxy(store, {
    get(target, property, receiver) {
      const value: unknown = Reflect.get(target, property, receiver);
      if (typeof value !== 'function') return value;
      const method = value as (...args: unknown[]) => unknown;
      if (!observed.has(property)) return method.bind(target);
      return async (...args: unknown[]) => {
        const record = (await method.apply(target, args)) as BuildRecord;
        await observer.buildChanged(record);
        return record;
      };
    },
  });
}

/** How long QueuedObserver holds changes that only queue builds (see there). */
export const DEFAULT_QUEUED_HOLD_MS = 150;

/**
 * An observer that works like the cloud's stream: the write that changed a build returns at once,
 * and the changes are handed to `observer` later, one at a time per repository in the order they
 * were made (so a page rendered from an older change never lands after a newer one). Where no
 * stream exists (the local stack), the webhook's answer and a build's final status then no longer
 * wait for the page, Slack or SNS. `drained()` resolves once nothing is waiting or running.
 *
 * Changes that only queue builds are held `queuedHoldMs` first, so that a burst of webhooks writes
 * its repository's page once, not once per webhook: that page (a query of the recent builds and a
 * put) cost each webhook more CPU than its own writes, on the machine that answers the webhooks. A
 * build that starts or ends is handed on at once.
 */
export class QueuedObserver implements BuildObserver {
  /** Per repository: the changes waiting, and the run handing them on (at most one at a time). */
  private readonly queues = new Map<RepoName, { waiting: BuildRecord[]; run: Promise<void> }>();
  private readonly queuedHoldMs: number;

  constructor(
    private readonly observer: BuildObserver,
    private readonly logger: Logger,
    options: { queuedHoldMs?: number } = {},
  ) {
    this.queuedHoldMs = options.queuedHoldMs ?? DEFAULT_QUEUED_HOLD_MS;
  }

  buildChanged(build: BuildRecord): Promise<void> {
    const queue = this.queues.get(build.repo);
    if (queue) {
      queue.waiting.push(build);
    } else {
      const started = { waiting: [build], run: Promise.resolve() };
      started.run = this.handOn(build.repo, started.waiting);
      this.queues.set(build.repo, started);
    }
    return Promise.resolve();
  }

  /**
   * Hands on what waits, all at once (changes made while a page was written are written in one
   * page, not one each: a burst of webhooks would otherwise queue a page per webhook), until none.
   */
  private async handOn(repo: RepoName, waiting: BuildRecord[]): Promise<void> {
    while (waiting.length > 0) {
      if (this.queuedHoldMs > 0 && waiting.every((build) => build.state === 'queued')) {
        await sleep(this.queuedHoldMs);
      }
      const batch = waiting.splice(0);
      try {
        if (this.observer.buildsChanged) await this.observer.buildsChanged(batch);
        else for (const build of batch) await this.observer.buildChanged(build);
      } catch (error) {
        // BuildObserver must not throw; should one do so anyway, later changes still go through.
        this.logger.warn('build changes were not handed on', { builds: batch.map(buildLabel), error });
      }
    }
    this.queues.delete(repo);
  }

  /** Resolves once every change handed in so far (and any handed in meanwhile) was handled. */
  async drained(): Promise<void> {
    while (this.queues.size > 0) await Promise.all([...this.queues.values()].map((queue) => queue.run));
  }
}

/** What the notifier needs of the builds table beyond the BuildStore: optional, for test doubles. */
export interface NotifierBuildLookup extends Pick<BuildStore, 'listBuilds'> {
  previousFinishedBuildOf?(
    repo: RepoName,
    target: Pick<BuildRequest, 'branch' | 'pr' | 'tag'>,
    below: number,
  ): Promise<BuildRecord | undefined>;
  recordSlackMessage?(key: BuildKey, message: SlackMessageRef): Promise<void>;
}

export interface NotifierDependencies {
  /** Read with `decryptSecrets`: the notifier needs the Slack secrets (never the build). */
  settings: Pick<SettingsStore, 'effective'>;
  /** The unobserved store. */
  builds: NotifierBuildLookup;
  /** Where the page goes and the failure tail comes from; without it neither happens. */
  logs?: Pick<LogStore, 'readLog' | 'putPage'>;
  slack?: SlackClient;
  sns?: SnsPublisher;
  logger: Logger;
  publicUrl: string;
  /** Longest time the work of one state change may take; default DEFAULT_NOTIFY_TIMEOUT_MS. */
  timeoutMs?: number;
  /** Lines of the failing step in a failure message; default 20. */
  tailLines?: number;
  clock?: () => number;
}

export const DEFAULT_NOTIFY_TIMEOUT_MS = 10_000;

export class BuildNotifier implements BuildObserver {
  private readonly clock: () => number;
  private readonly timeoutMs: number;

  constructor(private readonly deps: NotifierDependencies) {
    this.clock = deps.clock ?? Date.now;
    this.timeoutMs = deps.timeoutMs ?? DEFAULT_NOTIFY_TIMEOUT_MS;
  }

  buildChanged(build: BuildRecord): Promise<void> {
    return this.buildsChanged([build]);
  }

  /** Changes of one repository, oldest first: the page written once, each change notified in order. */
  async buildsChanged(builds: readonly BuildRecord[]): Promise<void> {
    const build = builds[builds.length - 1];
    if (!build) return;
    const deadline = this.clock() + this.timeoutMs;
    const abort = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timed out'>((resolve) => {
      timer = setTimeout(() => {
        abort.abort();
        resolve('timed out');
      }, this.timeoutMs);
    });
    const work = Promise.allSettled([
      this.guard('refresh the recent builds page', build, () => this.refreshPage(...builds)),
      (async () => {
        // In order: a build's start message must exist before its end updates it.
        for (const changed of builds) {
          await this.guard('send notifications', changed, () => this.notify(changed, deadline, abort.signal));
        }
      })(),
    ]);
    try {
      if ((await Promise.race([work, timedOut])) === 'timed out') {
        this.deps.logger.warn('notifications took too long and were left behind; the build goes on', {
          build: buildLabel(build),
          state: build.state,
          timeoutMs: this.timeoutMs,
        });
      }
    } finally {
      clearTimeout(timer);
    }
  }

  private async guard(what: string, build: BuildRecord, run: () => Promise<void>): Promise<void> {
    try {
      await run();
    } catch (error) {
      this.deps.logger.warn(`could not ${what}`, { build: buildLabel(build), state: build.state, error });
    }
  }

  /**
   * Renders `logs/<owner>/<repo>/index.html` from the latest builds and the builds just written
   * (of one repository, oldest first).
   */
  async refreshPage(...changes: BuildRecord[]): Promise<void> {
    const logs = this.deps.logs;
    const changed = changes[changes.length - 1];
    if (!logs || !changed) return;
    const listed = await this.deps.builds.listBuilds(changed.repo, { limit: REPO_PAGE_BUILDS });
    // The query may not show the writes just made yet: the changed builds are known for sure (the
    // latest write of each).
    const latest = new Map(changes.map((build) => [build.number, build]));
    const builds = [...latest.values(), ...listed.filter((build) => !latest.has(build.number))]
      .sort((a, b) => b.number - a.number)
      .slice(0, REPO_PAGE_BUILDS);
    const html = renderRepoPage({
      repo: changed.repo,
      builds,
      // Relative (`app/7`): the stored page links right wherever it is served.
      linkOf: (build) => relativePageLinks(pageUrlOf(build as BuildRecord, this.deps.publicUrl)).fromRepoPage,
      now: this.clock(),
    });
    await logs.putPage(REPO_KEYS.page(changed.repo).slice(0, -'index.html'.length), html);
  }

  private async notify(build: NotifiedBuild, deadline: number, signal: AbortSignal): Promise<void> {
    if (build.state !== 'running' && !isTerminal(build.state)) return;
    const { slack: slackClient, sns } = this.deps;
    if (!slackClient && !sns) return;
    const settings = await this.deps.settings.effective(build.repo, { decryptSecrets: true });
    const notifications: NotificationSettings = settings.notifications ?? {};
    const connection = slackClient ? slackConnectionOf(notifications.slack) : undefined;
    const topicArn = sns && notifications.sns?.enabled !== false ? notifications.sns?.topicArn : undefined;
    if (!connection && !topicArn) return;
    const url = pageUrlOf(build, this.deps.publicUrl);

    if (build.state === 'running') {
      if (connection && slackClient && shouldNotify(notifications.slack ?? {}, build, 'started')) {
        await this.postStart(slackClient, connection, build, url, deadline);
      }
      return;
    }

    const result = resultOf(build, await this.previousBuild(build));
    if (!result) return;
    const work: Promise<void>[] = [];
    if (connection && slackClient) {
      work.push(
        this.guard('notify Slack', build, () =>
          this.postEnd(slackClient, connection, build, result, url, settings, deadline),
        ),
      );
    }
    if (topicArn && sns && shouldNotify(notifications.sns ?? {}, build, result)) {
      const notification = snsNotificationFor({ build, result, url });
      work.push(this.guard('publish to SNS', build, () => sns.publish(topicArn, notification, signal)));
    }
    await Promise.all(work);
  }

  /** The previous finished build of the same branch or PR, only when it matters (a success). */
  private async previousBuild(build: BuildRecord): Promise<BuildRecord | undefined> {
    if (build.state !== 'success' || !this.deps.builds.previousFinishedBuildOf) return undefined;
    return this.deps.builds.previousFinishedBuildOf(build.repo, build, build.number);
  }

  private async postStart(
    slack: SlackClient,
    connection: SlackConnection,
    build: BuildRecord,
    url: string,
    deadline: number,
  ): Promise<void> {
    const message = slackMessageFor({ build, event: 'started', url });
    if (connection.kind === 'webhook') {
      await slack.postToWebhook(connection.webhookUrl, message, deadline);
      return;
    }
    const ref = await slack.postMessage(connection.token, connection.channel, message, deadline);
    await this.deps.builds.recordSlackMessage?.(build, ref);
  }

  private async postEnd(
    slack: SlackClient,
    connection: SlackConnection,
    build: NotifiedBuild,
    result: Exclude<NotifyEvent, 'started'>,
    url: string,
    settings: EffectiveSettings,
    deadline: number,
  ): Promise<void> {
    const started = connection.kind === 'bot' ? build.slackMessage : undefined;
    const wanted = shouldNotify(settings.notifications?.slack ?? {}, build, result);
    // A start message is always brought up to date, so that it never says "started" for ever.
    if (!started && !wanted) return;
    const tail = await this.tailOf(build, settings);
    const message = slackMessageFor({ build, event: result, url, ...(tail ? { tail } : {}) });
    if (connection.kind === 'webhook') {
      // Incoming webhooks cannot change what they posted: the result is a follow-up message.
      await slack.postToWebhook(connection.webhookUrl, message, deadline);
      return;
    }
    if (started) {
      try {
        await slack.updateMessage(connection.token, started, message, deadline);
        return;
      } catch (error) {
        if (!(error instanceof SlackError) || !UPDATE_NOT_POSSIBLE.has(error.slackError ?? '')) throw error;
        this.deps.logger.info('the Slack message could not be updated; posting the result instead', {
          build: buildLabel(build),
          slackError: error.slackError,
        });
      }
    }
    await this.postNew(slack, connection, message, deadline);
  }

  private async postNew(
    slack: SlackClient,
    connection: Extract<SlackConnection, { kind: 'bot' }>,
    message: SlackMessage,
    deadline: number,
  ): Promise<void> {
    await slack.postMessage(connection.token, connection.channel, message, deadline);
  }

  /** The failing step's last lines (failure, error, timed out), masked for every secret known. */
  private async tailOf(build: BuildRecord, settings: EffectiveSettings): Promise<LogTail | undefined> {
    if (!this.deps.logs || !['failure', 'error', 'timed_out'].includes(build.state)) return undefined;
    try {
      const log = await this.deps.logs.readLog(build.logPrefix);
      if (log === undefined) return undefined;
      const slack = settings.notifications?.slack;
      const secrets = [
        ...Object.values(settings.secretEnv),
        ...(slack?.token ? [slack.token] : []),
        ...(slack?.webhookUrl ? [slack.webhookUrl] : []),
      ];
      return failingStepTail(log, secrets, this.deps.tailLines ? { lines: this.deps.tailLines } : {});
    } catch (error) {
      this.deps.logger.warn('could not read the log for the failure message', {
        build: buildLabel(build),
        error,
      });
      return undefined;
    }
  }
}
