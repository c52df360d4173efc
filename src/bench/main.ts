/**
 * `npm run bench [-- --quick]`: Lambkin's figures on this machine, printed as ONE JSON object on
 * stdout (progress goes to stderr). Everything runs on the embedded local stack (the same code as
 * the cloud, with local DynamoDB-/S3-compatible servers and the GitHub stand-in), with real npm
 * projects generated here. Compared runs are interleaved and repeated; figures are medians.
 *
 * `--quick` (CI): small generated projects whose dependencies are local tarballs (no registry),
 * few repetitions; it keeps the bench working, its numbers are not the ones to quote.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { DeleteObjectCommand } from '@aws-sdk/client-s3';
import { execa } from 'execa';
import { runControllerBuild } from '../controller/controller.js';
import { ProcessRunnerInvoker } from '../controller/runner-invoker.js';
import { runnerProgram } from '../controller/runner-program.js';
import type { BuildRecord } from '../core/build.js';
import { createMemoryLogger } from '../core/logger.js';
import { pushPayload, signedDelivery, type DemoRepository } from '../local/demo-payloads.js';
import {
  createGitRepo,
  createGitRepoFromDirectory,
  startGitHubServer,
  type GitHubStandIn,
} from '../local/github/index.js';
import { startLocalStack, type LocalStack } from '../local/stack.js';
import { fanOutFigures, shardedSuiteFiles, type FanOutBuildFigures, type ShardedSuite } from './fan-out.js';
import { localDependencyProject, npmEnvironment, registryProject } from './projects.js';

const quick = process.argv.includes('--quick');
const SECRET = 'bench-webhook-secret';
// With a token: the stand-in, like GitHub, allows anonymous callers only 60 requests an hour.
const TOKEN = 'ghp_benchToken000000000000000000000000000';
const OWNER = 'bench';
const progress = (message: string): void => void process.stderr.write(`[bench] ${message}\n`);

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length === 0
    ? NaN
    : sorted.length % 2
      ? (sorted[middle] ?? NaN)
      : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

const round = (value: number, digits = 1): number => Number(value.toFixed(digits));

interface Repo {
  name: string;
  full: string;
  sha: string;
  dir: string;
  gitDir: string;
}

async function main(): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'lambkin-bench-'));
  const npmCache = join(root, 'npm-cache');
  const github = await startGitHubServer({ token: TOKEN });
  let stack: LocalStack | undefined;
  try {
    stack = await startLocalStack({
      dataDir: join(root, 'stack'),
      port: 0,
      githubApiUrl: github.url,
      githubToken: TOKEN,
      webhookSecret: SECRET,
      concurrency: 2,
      logger: createMemoryLogger(),
    });
    const added = async (name: string, dir: string): Promise<Repo> => {
      const repo = await createGitRepoFromDirectory(dir);
      github.addRepository({ owner: OWNER, name, gitDir: repo.dir });
      return { name, full: `${OWNER}/${name}`, sha: repo.sha, dir, gitDir: repo.dir };
    };

    progress('generating projects');
    const small = await localDependencyProject(join(root, 'small'), { count: 5, npmCache });
    const smallRepo = await added('small', small.dir);
    const large = quick
      ? await localDependencyProject(join(root, 'large'), { count: 60, filesPerPackage: 10, npmCache })
      : await registryProject(join(root, 'large'), { npmCache });
    const largeRepo = await added('large', large.dir);
    await writeFile(join(large.dir, '.lambkin.json'), '{ "cache": false }\n');
    const largeNoCache = await added('large-no-cache', large.dir);
    await rm(join(large.dir, '.lambkin.json'));

    const webhooks = await measureWebhooks(stack, github, smallRepo);
    const queue = await measureQueueLatency(stack, github, smallRepo, quick ? 2 : 10);
    const overhead = await measureOverhead(stack, github, largeNoCache, npmCache, quick ? 1 : 5);
    const cache = await measureCache(stack, github, largeRepo, quick ? 1 : 5);
    const memory = await measureMemory(stack, github, root);
    await stack.stop();
    stack = undefined;
    const fanOut = await measureFanOut(github, root, quick ? 1 : 3);
    const coldStart = await measureColdStart(quick ? 3 : 15);

    const result = {
      bench: 'lambkin',
      mode: quick ? 'quick' : 'full',
      at: new Date().toISOString(),
      machine: {
        node: process.versions.node,
        platform: process.platform,
        arch: process.arch,
        cpus: cpuCount(),
      },
      projects: {
        small: { dependencies: small.dependencies.length, source: 'local tarballs' },
        large: {
          topLevelDependencies: large.dependencies.length,
          installedPackages: await installedPackages(large.dir),
          source: quick ? 'local tarballs' : 'registry',
        },
      },
      webhooks,
      queueLatencyMs: queue,
      buildOverhead: overhead,
      cache,
      coldStart,
      memory,
      fanOut,
    };
    process.stdout.write(JSON.stringify(result, null, 2) + '\n');
  } finally {
    await stack?.stop().catch(() => undefined);
    await github.close();
    await rm(root, { recursive: true, force: true }).catch(() => undefined);
  }
}

function cpuCount(): number {
  return availableParallelism();
}

async function installedPackages(dir: string): Promise<number> {
  const lock = JSON.parse(await readFile(join(dir, 'package-lock.json'), 'utf8')) as {
    packages?: Record<string, unknown>;
  };
  return Object.keys(lock.packages ?? {}).filter((path) => path.startsWith('node_modules/')).length;
}

function demoRepository(stackGitHub: GitHubStandIn, repo: Repo): DemoRepository {
  return { owner: OWNER, name: repo.name, defaultBranch: 'main', htmlBase: stackGitHub.url };
}

/** Pushes sent so far: each push's `before` differs, as GitHub's do (identical bodies are replays). */
let pushesSent = 0;

/** Posts one signed push webhook; answers its latency and the build number the 202 named. */
async function sendPush(
  stack: LocalStack,
  github: GitHubStandIn,
  repo: Repo,
  branch = 'main',
): Promise<{ ms: number; number: number }> {
  const delivery = await signedDelivery(
    SECRET,
    'push',
    pushPayload(
      demoRepository(github, repo),
      branch,
      (++pushesSent).toString(16).padStart(40, '0'),
      repo.sha,
      'bench',
    ),
  );
  const started = performance.now();
  const response = await fetch(stack.file.endpoints.webhook, {
    method: 'POST',
    headers: delivery.headers,
    body: delivery.body,
  });
  const ms = performance.now() - started;
  const body = (await response.json()) as { number?: number };
  if (response.status !== 202 || typeof body.number !== 'number') {
    throw new Error(`the webhook answered ${response.status}: ${JSON.stringify(body)}`);
  }
  return { ms, number: body.number };
}

async function measureWebhooks(stack: LocalStack, github: GitHubStandIn, repo: Repo) {
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
async function measureQueueLatency(stack: LocalStack, github: GitHubStandIn, repo: Repo, count: number) {
  progress(`queue latency: ${count} builds`);
  const waits: number[] = [];
  for (let index = 0; index < count; index++) {
    const build = await buildOnce(stack, github, repo, `queue-${index}`);
    if (build.startedAt !== undefined) waits.push(build.startedAt - build.queuedAt);
  }
  return { builds: waits.length, median: round(median(waits)), p99: round(percentile(waits, 99)) };
}

async function buildOnce(
  stack: LocalStack,
  github: GitHubStandIn,
  repo: Repo,
  branch: string,
): Promise<BuildRecord> {
  const { number } = await sendPush(stack, github, repo, branch);
  await stack.idle(20 * 60_000);
  const build = await stack.controller.builds.getBuild({ repo: repo.full, number });
  if (!build || build.state !== 'success') {
    throw new Error(
      `build ${repo.full}#${number} ended ${build?.state ?? 'missing'}: ${build?.description ?? ''}`,
    );
  }
  return build;
}

const wall = (build: BuildRecord): number => (build.endedAt ?? NaN) - (build.startedAt ?? NaN);

/** The whole build against `npm ci` + `npm test` in a shell on the same checkout, interleaved. */
async function measureOverhead(
  stack: LocalStack,
  github: GitHubStandIn,
  repo: Repo,
  npmCache: string,
  repeats: number,
) {
  const checkout = await mkdtemp(join(tmpdir(), 'lambkin-bench-direct-'));
  const builds: number[] = [];
  const direct: number[] = [];
  try {
    await execa('bash', [
      '-c',
      `git -C '${repo.gitDir}' archive --format=tar ${repo.sha} | tar -x -C '${checkout}'`,
    ]);
    for (let index = 0; index < repeats; index++) {
      progress(`build overhead: round ${index + 1} of ${repeats}`);
      builds.push(wall(await buildOnce(stack, github, repo, `overhead-${index}`)));
      await rm(join(checkout, 'node_modules'), { recursive: true, force: true });
      const started = performance.now();
      const env = npmEnvironment(npmCache);
      await execa('bash', ['-c', 'npm ci'], { cwd: checkout, env, extendEnv: false });
      await execa('bash', ['-c', 'npm test'], { cwd: checkout, env, extendEnv: false });
      direct.push(performance.now() - started);
    }
  } finally {
    await rm(checkout, { recursive: true, force: true });
  }
  return {
    repeats,
    buildMedianMs: round(median(builds)),
    directMedianMs: round(median(direct)),
    ratio: round(median(builds) / median(direct), 3),
    note: 'build = the builder’s claim to its end (source fetch, config, steps, log); direct = npm ci + npm test in bash',
  };
}

/** The same build with the dependency cache deleted before it (cold) and left in place (warm). */
async function measureCache(stack: LocalStack, github: GitHubStandIn, repo: Repo, repeats: number) {
  const location = await stack.controller.cache?.locate({ repo: repo.full, sha: repo.sha } as BuildRecord);
  if (!location) throw new Error(`${repo.full} has no cache key`);
  const cold: number[] = [];
  const warm: number[] = [];
  let warmLines: string[] = [];
  for (let index = 0; index < repeats; index++) {
    progress(`cache: round ${index + 1} of ${repeats}`);
    await stack.clients.s3.send(new DeleteObjectCommand({ Bucket: stack.config.bucket, Key: location.key }));
    cold.push(wall(await buildOnce(stack, github, repo, `cold-${index}`))); // misses, installs, saves
    const warmBuild = await buildOnce(stack, github, repo, `warm-${index}`); // restores, skips the install
    warm.push(wall(warmBuild));
    const log = (await stack.controller.logs.readLog(warmBuild.logPrefix)) ?? '';
    warmLines = log.split('\n').filter((line) => /^(Warning: cache|Cache):/.test(line));
  }
  return {
    repeats,
    coldMedianMs: round(median(cold)),
    warmMedianMs: round(median(warm)),
    warmOverCold: round(median(warm) / median(cold), 3),
    warmBuildLog: warmLines,
  };
}

/**
 * The runner's peak RSS (GNU time's %M: the largest of the runner and its descendants; the printer
 * is `head | tr | fold`, a few MiB) for builds printing 1, 20 and 100 MiB; and the largest again
 * with the runner's heap capped at HEAP_CAP_MIB: it passes only if the runner keeps nothing of the
 * log beyond its bounded buffers (a rising RSS alone can be the collector freeing lazily).
 */
const HEAP_CAP_MIB = 96;

async function measureMemory(stack: LocalStack, github: GitHubStandIn, root: string) {
  const timeBinary = '/usr/bin/time';
  const available = await execa(timeBinary, ['-f', '%M', 'true'], { reject: false }).then(
    (r) => r.exitCode === 0,
  );
  if (!available) return { measured: false, reason: 'GNU time (/usr/bin/time) is not installed' };
  const sizes = quick ? [1, 20] : [1, 20, 100];
  const figures: Record<string, number> = {};
  const run = async (mib: number, nodeOptions: string[]) => {
    const name = `log-${mib}${nodeOptions.length > 0 ? '-capped' : ''}`;
    const printer = `head -c ${mib * 1024 * 1024} /dev/zero | tr '\\0' x | fold -w 1023`;
    const repo = await createGitRepo({ '.lambkin.json': JSON.stringify({ install: [], test: printer }) });
    github.addRepository({ owner: OWNER, name, gitDir: repo.dir });
    const rssFile = join(root, `rss-${name}.txt`);
    const [node, ...runnerArgs] = (await runnerProgram()).command;
    const runner = new ProcessRunnerInvoker({
      command: [
        timeBinary,
        '-o',
        rssFile,
        '-f',
        '%M',
        node ?? process.execPath,
        ...nodeOptions,
        ...runnerArgs,
      ],
      workRoot: join(root, 'memory-work'),
    });
    const builds = stack.controller.builds;
    const full = `${OWNER}/${name}`;
    const number = await builds.allocateNumber(full);
    await builds.putQueuedBuild(
      {
        repo: full,
        sha: repo.sha,
        event: 'push',
        ref: 'refs/heads/main',
        branch: 'main',
        defaultBranch: 'main',
        fork: false,
        privateRepo: false,
        trusted: true,
        author: 'bench',
        deliveryId: `bench-memory-${name}-${Date.now()}`,
      },
      number,
      { deadline: Date.now() + 10 * 60_000 },
    );
    const result = await runControllerBuild(
      { ...stack.controller, runner },
      { kind: 'build', repo: full, number },
    );
    const state = result.ran ? result.build.state : 'not run';
    const rss = round(Number((await readFile(rssFile, 'utf8')).trim().split('\n').pop()) / 1024);
    return { state, rss };
  };
  for (const mib of sizes) {
    progress(`memory: a ${mib} MiB log`);
    const { state, rss } = await run(mib, []);
    if (state !== 'success') throw new Error(`the ${mib} MiB log build ended ${state}`);
    figures[`log${mib}MiB`] = rss;
  }
  const largest = sizes[sizes.length - 1] ?? 1;
  progress(`memory: a ${largest} MiB log with the runner's heap capped at ${HEAP_CAP_MIB} MiB`);
  const capped = await run(largest, [`--max-old-space-size=${HEAP_CAP_MIB}`]);
  return {
    measured: true,
    peakRssMiB: figures,
    heapCapped: { maxOldSpaceMiB: HEAP_CAP_MIB, [`log${largest}MiB`]: capped },
  };
}

/**
 * Issue 16's fan-out: one suite split 1, 2, 4 and 8 ways (`parallel`), each split a push to its own
 * repository, built on a stack of its own with `lambkin dev`'s concurrency (one job per core, at
 * least 2), rounds interleaved. Every build must have passed as that many jobs, each test file run
 * in exactly one of them (src/bench/fan-out.ts), or the bench fails. The slowest job against the
 * one-shard build is the critical path where every job runs at once (Lambda); the wall time here is
 * bounded by the cores.
 */
const FAN_OUT_SHARDS = [1, 2, 4, 8];

async function measureFanOut(github: GitHubStandIn, root: string, repeats: number) {
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

/** scripts/measure-bundles.mjs: each handler's bundle size and module init time. */
async function measureColdStart(runs: number) {
  progress('cold start: bundling and timing each handler');
  const { stdout } = await execa(process.execPath, ['scripts/measure-bundles.mjs', '--runs', String(runs)]);
  return JSON.parse(stdout) as unknown;
}

main().catch((error: unknown) => {
  process.stderr.write(
    `[bench] failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exitCode = 1;
});
