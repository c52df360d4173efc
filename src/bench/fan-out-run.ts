/**
 * Issue 16's fan-out: one suite split 1, 2, 4 and 8 ways (`parallel`), each split a push to its own
 * repository, built on a stack of its own with `lambkin dev`'s concurrency (one job per core, at
 * least 2), rounds interleaved. Every build must have passed as that many jobs, each test file run
 * in exactly one of them (src/bench/fan-out.ts), or the bench fails. The slowest job against the
 * one-shard build is the critical path where every job runs at once (Lambda); the wall time here is
 * bounded by the cores.
 */

import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createMemoryLogger } from '../core/logger.js';
import { createGitRepo, type GitHubStandIn } from '../local/github/index.js';
import { startLocalStack } from '../local/stack.js';
import { fanOutFigures, shardedSuiteFiles, type FanOutBuildFigures, type ShardedSuite } from './fan-out.js';
import {
  cpuCount,
  median,
  OWNER,
  progress,
  quick,
  round,
  SECRET,
  sendPush,
  TOKEN,
  type Repo,
} from './shared.js';

export const FAN_OUT_SHARDS = [1, 2, 4, 8];

export async function measureFanOut(github: GitHubStandIn, root: string, repeats: number) {
  const suite: ShardedSuite = { files: 8, perFileMs: quick ? 500 : 2000 };
  const stack = await startLocalStack({
    dataDir: join(root, 'fan-out-stack'),
    port: 0,
    githubApiUrl: github.url,
    githubToken: TOKEN,
    webhookSecret: SECRET,
    logger: createMemoryLogger(),
  });
  const folders: string[] = [];
  try {
    const repos = new Map<number, Repo>();
    for (const shards of FAN_OUT_SHARDS) {
      const name = `fan-out-${shards}`;
      const repo = await createGitRepo(shardedSuiteFiles(suite, shards));
      folders.push(repo.dir);
      github.addRepository({ owner: OWNER, name, gitDir: repo.dir });
      repos.set(shards, { name, full: `${OWNER}/${name}`, sha: repo.sha, dir: repo.dir, gitDir: repo.dir });
    }
    const figures = new Map<number, FanOutBuildFigures[]>(FAN_OUT_SHARDS.map((shards) => [shards, []]));
    for (let round = 0; round < repeats; round++) {
      for (const shards of FAN_OUT_SHARDS) {
        progress(`fan-out: ${shards} shard${shards === 1 ? '' : 's'}, round ${round + 1} of ${repeats}`);
        const repo = repos.get(shards) as Repo;
        const { number } = await sendPush(stack, github, repo, `fan-out-${round}`);
        await stack.idle(20 * 60_000);
        const build = await stack.controller.builds.getBuild({ repo: repo.full, number });
        const jobs = (await stack.controller.jobs?.listJobs({ repo: repo.full, number })) ?? [];
        const logs = new Map<string, string>();
        if (build && jobs.length === 0)
          logs.set('build', (await stack.controller.logs.readLog(build.logPrefix)) ?? '');
        for (const job of jobs) logs.set(job.id, (await stack.controller.logs.readLog(job.logPrefix)) ?? '');
        figures.get(shards)?.push(fanOutFigures({ shards, build, jobs, logs }, suite));
      }
    }
    const medianOf = (shards: number, key: keyof FanOutBuildFigures): number =>
      median((figures.get(shards) ?? []).map((figure) => figure[key]));
    const singleJobMs = medianOf(1, 'slowestJobMs');
    const splits: Record<string, unknown> = {};
    for (const shards of FAN_OUT_SHARDS) {
      splits[`shards${shards}`] = {
        jobs: shards,
        queuedToLastRunningMs: round(medianOf(shards, 'queuedToLastRunningMs')),
        slowestJobMs: round(medianOf(shards, 'slowestJobMs')),
        singleJobMs: round(singleJobMs),
        criticalPathRatio: round(medianOf(shards, 'slowestJobMs') / singleJobMs, 3),
        wallMs: round(medianOf(shards, 'wallMs')),
      };
    }
    return {
      cores: cpuCount(),
      concurrency: stack.controller.jobConcurrency,
      repeats,
      suite: {
        files: suite.files,
        perFileMs: suite.perFileMs,
        command: 'node --test --test-concurrency=1 --test-shard=INDEX/TOTAL',
      },
      ...splits,
      note: 'job = its claim to its end (one shard: the build’s own); critical path ratio = slowest job / the one-shard build’s job, the wall time where every job runs at once; wallMs = build queued → ended here, at most `concurrency` jobs at once',
    };
  } finally {
    await stack.stop();
    for (const folder of folders) await rm(folder, { recursive: true, force: true }).catch(() => undefined);
  }
}
