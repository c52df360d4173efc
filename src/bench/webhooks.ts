/** Webhook latency and throughput, and the queue latency, on the local stack. */

import { performance } from 'node:perf_hooks';
import type { GitHubStandIn } from '../local/github/index.js';
import type { LocalStack } from '../local/stack.js';
import { buildOnce, median, percentile, progress, quick, round, sendPush, type Repo } from './shared.js';

export async function measureWebhooks(stack: LocalStack, github: GitHubStandIn, repo: Repo) {
  const levels = [1, 8, 64];
  const perLevel = quick ? [10, 32, 64] : [100, 400, 1280];
  const result: Record<string, unknown> = {};
  const numbers: number[] = [];
  let sent = 0;
  for (const [index, senders] of levels.entries()) {
    const total = perLevel[index] ?? 0;
    progress(`webhooks: ${total} from ${senders} concurrent senders`);
    const latencies: number[] = [];
    let next = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: senders }, async () => {
        while (next < total) {
          next++;
          // Each sender pushes its own branch: superseding cancels older builds of a branch only.
          const answer = await sendPush(
            stack,
            github,
            repo,
            `bench-${senders}-${latencies.length % senders}`,
          );
          latencies.push(answer.ms);
          numbers.push(answer.number);
        }
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    sent += total;
    result[`senders${senders}`] = {
      webhooks: total,
      perSecond: round(total / seconds),
      medianMs: round(median(latencies)),
      p99Ms: round(percentile(latencies, 99)),
    };
  }
  await stack.idle(10 * 60_000);
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
  result.builds = {
    webhooks: sent,
    distinctNumbers: unique.size,
    recorded,
    lost: sent - recorded,
    duplicated: numbers.length - unique.size,
  };
  return result;
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
