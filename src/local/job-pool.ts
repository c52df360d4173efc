/**
 * `lambkin run`'s stand-in for the builder function invoking itself once per job: the jobs of a
 * build run in this process, at most `concurrency` at once (one per core), the rest queued in
 * order. A job whose controller throws ends `error`, as the cloud's on-failure destination ends it.
 */
import type { BuildKey } from '../core/build.js';
import type { Logger } from '../core/logger.js';
import type { ControllerInvoker } from '../core/ports.js';
import { messageOf } from '../core/errors.js';

export class LocalJobPool implements ControllerInvoker {
  private readonly waiting: (() => Promise<void>)[] = [];
  private running = 0;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly runJob: (build: BuildKey, job: string) => Promise<unknown>,
    private readonly crashed: (build: BuildKey, job: string, reason: string) => Promise<unknown>,
    private readonly concurrency: number,
    private readonly logger: Logger,
  ) {
    if (!Number.isSafeInteger(concurrency) || concurrency < 1) {
      throw new RangeError(`a job pool runs at least one job at once (got ${concurrency})`);
    }
  }

  /** Queues the job; resolves at once, as an asynchronous invoke is accepted before it runs. */
  invoke(build: BuildKey, job?: string): Promise<void> {
    if (job === undefined) return Promise.reject(new Error('the local job pool runs jobs only'));
    this.waiting.push(async () => {
      try {
        await this.runJob(build, job);
      } catch (error) {
        const reason = `the job's controller failed: ${messageOf(error)}`;
        this.logger.error('a job failed to run', { build: `${build.repo}#${build.number}/${job}`, error });
        await this.crashed(build, job, reason).catch((cause: unknown) =>
          this.logger.error('could not end a crashed job', { job, error: cause }),
        );
      }
    });
    this.pump();
    return Promise.resolve();
  }

  /** Resolves once no job runs or waits. */
  idle(): Promise<void> {
    if (this.running === 0 && this.waiting.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private pump(): void {
    while (this.running < this.concurrency && this.waiting.length > 0) {
      const next = this.waiting.shift();
      if (!next) break;
      this.running++;
      void next().finally(() => {
        this.running--;
        this.pump();
        if (this.running === 0 && this.waiting.length === 0) {
          const waiters = this.idleWaiters;
          this.idleWaiters = [];
          for (const resolve of waiters) resolve();
        }
      });
    }
  }
}
