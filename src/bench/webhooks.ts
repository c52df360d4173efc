/**
 * Webhook latency and throughput, and the queue latency, on the local stack.
 *
 * `intake…` figures come from a second stack whose builder function is a sink (it answers the
 * invoke and runs nothing): the webhook's intake alone, as in the cloud, where the webhook function
 * has a machine of its own. `withBuilds` sends the same webhooks to the main stack, whose builds
 * share the machine's cores with the intake. Every webhook's build number is checked afterwards:
 * none lost, none given twice.
 */

import { performance } from 'node:perf_hooks';
import type { GitHubStandIn } from '../local/github/index.js';
import type { LocalStack } from '../local/stack.js';
import { buildOnce, median, percentile, progress, quick, round, sendPush, type Repo } from './shared.js';

/** One storm: `total` webhooks from `senders` concurrent senders, each sender on its branch. */
interface Storm {
  senders: number;
  total: number;
  /** The branch of a sender's push; by default one per sender (each push supersedes its last). */
  branch?: (sender: number, index: number) => string;
}

interface StormResult {
  webhooks: number;
  perSecond: number;
  medianMs: number;
  p99Ms: number;
  numbers: number[];
}

async function storm(
  stack: LocalStack,
  github: GitHubStandIn,
  repo: Repo,
  plan: Storm,
): Promise<StormResult> {
  const latencies: number[] = [];
  const numbers: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: plan.senders }, async (_, sender) => {
      while (next < plan.total) {
        const index = next++;
        const branch = plan.branch?.(sender, index) ?? `bench-${plan.senders}-${sender}`;
        const answer = await sendPush(stack, github, repo, branch);
        latencies.push(answer.ms);
        numbers.push(answer.number);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  return {
    webhooks: plan.total,
    perSecond: round(plan.total / seconds),
    medianMs: round(median(latencies)),
    p99Ms: round(percentile(latencies, 99)),
    numbers,
  };
}

/** Whether every webhook answered has its own build recorded: lost and doubled numbers. */
async function checkDelivered(stack: LocalStack, repo: Repo, numbers: number[]) {
  const unique = new Set(numbers);
  // Each build by its number: a listing would stop at DynamoDB's 1 MB page.
  let recorded = 0;
  const pending = [...unique];
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      for (let number = pending.pop(); number !== undefined; number = pending.pop()) {
        if (await stack.controller.builds.getBuild({ repo: repo.full, number })) recorded++;
      }
    }),
  );
  return { webhooks: numbers.length, lost: numbers.length - recorded, doubled: numbers.length - unique.size };
}

const figures = ({ numbers: _numbers, ...result }: StormResult) => result;

export async function measureWebhooks(
  stack: LocalStack,
  startSinkStack: () => Promise<LocalStack>,
  github: GitHubStandIn,
  repo: Repo,
) {
  const one = quick ? 30 : 200;
  const many = quick ? 128 : 1280;

  // Intake alone: the main stack is idle, the sink stack runs no build.
  const sink = await startSinkStack();
  let intake;
  try {
    progress(`webhooks, intake alone: ${one} from one sender, each on a new branch`);
    // Warm-up, not counted: the first requests load code and open connections, and V8 compiles the
    // intake's hot paths over the first few dozen (one sender's median: ~22 ms over the first 50
    // webhooks after a start, ~14 ms over the next 150, on the 2-CPU machine of docs/performance.md).
    await storm(sink, github, repo, { senders: 1, total: 30, branch: (_, index) => `warm-${index}` });
    const oneSender = await storm(sink, github, repo, {
      senders: 1,
      total: one,
      branch: (_, index) => `one-${index}`,
    });
    progress(`webhooks, intake alone: ${one} from one sender, each superseding the one before`);
    const superseding = await storm(sink, github, repo, { senders: 1, total: one });
    progress(`webhooks, intake alone: ${many} from 64 concurrent senders`);
    const storm64 = await storm(sink, github, repo, { senders: 64, total: many });
    await sink.idle(60_000);
    intake = {
      oneSender: {
        ...figures(oneSender),
        ...(await checkDelivered(sink, repo, oneSender.numbers)),
      },
      oneSenderSuperseding: {
        ...figures(superseding),
        ...(await checkDelivered(sink, repo, superseding.numbers)),
      },
      intakeOnly: {
        senders: 64,
        ...figures(storm64),
        ...(await checkDelivered(sink, repo, storm64.numbers)),
      },
    };
  } finally {
    await sink.stop();
  }

  // The same with builds: each webhook starts a build on the main stack.
  const levels = [1, 8, 64];
  const perLevel = quick ? [10, 32, 64] : [100, 400, 1280];
  const withBuilds: Record<string, unknown> = {};
  const numbers: number[] = [];
  for (const [index, senders] of levels.entries()) {
    const total = perLevel[index] ?? 0;
    progress(`webhooks with builds running: ${total} from ${senders} concurrent senders`);
    const result = await storm(stack, github, repo, { senders, total });
    numbers.push(...result.numbers);
    withBuilds[senders === 1 ? 'oneSender' : `senders${senders}`] = { senders, ...figures(result) };
  }
  await stack.idle(10 * 60_000);
  withBuilds.delivered = await checkDelivered(stack, repo, numbers);
  return {
    what:
      'webhook → 202 on the local stack. oneSender, oneSenderSuperseding, intakeOnly: the intake ' +
      'alone (its builder a sink), as the cloud runs it on a machine of its own; withBuilds: every ' +
      'webhook also starts a build on the same machine. lost/doubled: build numbers answered but ' +
      'not recorded, or answered twice.',
    ...intake,
    withBuilds,
  };
}

/** Sequential pushes, each built alone: from the webhook's record to the builder's claim. */
export async function measureQueueLatency(
  stack: LocalStack,
  github: GitHubStandIn,
  repo: Repo,
  count: number,
) {
  progress(`queue latency: ${count} builds`);
  const waits: number[] = [];
  for (let index = 0; index < count; index++) {
    const build = await buildOnce(stack, github, repo, `queue-${index}`);
    if (build.startedAt !== undefined) waits.push(build.startedAt - build.queuedAt);
  }
  return { builds: waits.length, median: round(median(waits)), p99: round(percentile(waits, 99)) };
}
