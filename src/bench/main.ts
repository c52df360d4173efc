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
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { createMemoryLogger } from '../core/logger.js';
import { createGitRepoFromDirectory, startGitHubServer } from '../local/github/index.js';
import { startLocalStack, type LocalStack } from '../local/stack.js';
import { measureCache } from './cache.js';
import { measureFanOut } from './fan-out-run.js';
import { measureMemory } from './memory.js';
import { measureBuild } from './overhead.js';
import { measureRun } from './run.js';
import { localDependencyProject, npmEnvironment, registryProject } from './projects.js';
import { cpuCount, OWNER, progress, quick, round, SECRET, TOKEN, type Repo } from './shared.js';
import { measureQueueLatency, measureWebhooks } from './webhooks.js';
import { execa } from 'execa';
import { messageOf } from '../core/errors.js';

/**
 * A user's repository is not ours to vouch for: a build of it that fails (a missing tool, a failing
 * test) is reported in its section, and the other figures are still printed.
 */
async function orFailure<T>(figures: Promise<T>): Promise<T | { failed: string }> {
  try {
    return await figures;
  } catch (error) {
    const failed = messageOf(error);
    progress(`LAMBKIN_BENCH_REPO: ${failed}`);
    return { failed };
  }
}

async function main(): Promise<void> {
  const loadAtStart = loadavg().map((load) => round(load, 2));
  const root = await mkdtemp(join(tmpdir(), 'lambkin-bench-'));
  const npmCache = join(root, 'npm-cache');
  // Thousands of webhooks and builds within the hour: the quota would stop the bench, not Lambkin.
  const github = await startGitHubServer({ token: TOKEN, rateLimit: 1_000_000 });
  // The controller logs each build's time breakdown here (the build section reads it).
  const logger = createMemoryLogger();
  let stack: LocalStack | undefined;
  const stackOptions = (dir: string, logger = createMemoryLogger()) => ({
    dataDir: join(root, dir),
    port: 0,
    githubApiUrl: github.url,
    githubToken: TOKEN,
    webhookSecret: SECRET,
    concurrency: 2,
    logger,
  });
  try {
    stack = await startLocalStack(stackOptions('stack', logger));
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

    const webhook = await measureWebhooks(
      stack,
      () => startLocalStack({ ...stackOptions('intake-stack'), builderSink: true }),
      github,
      smallRepo,
    );
    const queue = await measureQueueLatency(stack, github, smallRepo, quick ? 2 : 10);
    const build = await measureBuild(
      stack,
      github,
      { small: smallRepo, large: largeNoCache },
      npmCache,
      logger,
      quick ? 3 : 5,
    );
    const cache = await measureCache(stack, github, largeRepo, quick ? 1 : 5);
    const memory = await measureMemory(stack, github, root);
    // A project of the user's own (LAMBKIN_BENCH_REPO=/path/to/git/dir), cloned: its cache figures
    // here, and its cold build against its commands in bash (its overheadRatio).
    const userRepo = process.env.LAMBKIN_BENCH_REPO;
    let userRepoAdded: (Repo & { source: string }) | undefined;
    let userCache: Awaited<ReturnType<typeof measureCache>> | { failed: string } | undefined;
    if (userRepo) {
      userRepoAdded = await addUserRepository(github, userRepo, join(root, 'user-repo.git'));
      userCache = await orFailure(
        measureCache(stack, github, userRepoAdded, quick ? 1 : 3, { env: npmEnvironment(npmCache) }),
      );
    }
    await stack.stop();
    stack = undefined;
    const fanOut = await measureFanOut(github, root, quick ? 1 : 3);
    const coldStart = await measureColdStart(quick ? 3 : 15);
    const run = await measureRun('large', largeRepo.gitDir, npmCache, quick ? 1 : 3);
    const repo = userRepoAdded
      ? {
          source: userRepoAdded.source,
          sha: userRepoAdded.sha,
          cache: userCache,
          run: await orFailure(
            measureRun('LAMBKIN_BENCH_REPO', userRepoAdded.gitDir, npmCache, quick ? 1 : 3),
          ),
        }
      : null;

    const result = {
      bench: 'lambkin',
      mode: quick ? 'quick' : 'full',
      at: new Date().toISOString(),
      // Figures are this machine's: say which, and how busy it was (another process's load skews them).
      machine: {
        node: process.versions.node,
        platform: process.platform,
        arch: process.arch,
        cpus: cpuCount(),
        cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
        memoryGiB: round(totalmem() / 1024 ** 3),
        loadAverageAtStart: loadAtStart,
        loadAverageAtEnd: loadavg().map((load) => round(load, 2)),
      },
      projects: {
        small: { dependencies: small.dependencies.length, source: 'local tarballs' },
        large: {
          topLevelDependencies: large.dependencies.length,
          installedPackages: await installedPackages(large.dir),
          source: quick ? 'local tarballs' : 'registry',
        },
      },
      webhook,
      queueLatencyMs: queue,
      build,
      cache,
      run,
      repo,
      coldStart,
      memory,
      runner: memory.measured ? memory.runner : { measured: false },
      fanOut,
    };
    process.stdout.write(JSON.stringify(result, null, 2) + '\n');
  } finally {
    await stack?.stop().catch(() => undefined);
    await github.close();
    await rm(root, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** A bare clone of the user's repository, served by the stand-in as `bench/user-repo`. */
async function addUserRepository(
  github: Awaited<ReturnType<typeof startGitHubServer>>,
  source: string,
  bare: string,
): Promise<Repo & { source: string }> {
  progress(`cloning LAMBKIN_BENCH_REPO (${source})`);
  await execa('git', ['clone', '--quiet', '--bare', source, bare]);
  const { stdout } = await execa('git', ['-C', bare, 'rev-parse', 'HEAD']);
  github.addRepository({ owner: OWNER, name: 'user-repo', gitDir: bare });
  return {
    name: 'user-repo',
    full: `${OWNER}/user-repo`,
    sha: stdout.trim(),
    dir: bare,
    gitDir: bare,
    source,
  };
}

async function installedPackages(dir: string): Promise<number> {
  const lock = JSON.parse(await readFile(join(dir, 'package-lock.json'), 'utf8')) as {
    packages?: Record<string, unknown>;
  };
  return Object.keys(lock.packages ?? {}).filter((path) => path.startsWith('node_modules/')).length;
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
