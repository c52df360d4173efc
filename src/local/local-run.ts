/**
 * `lambkin run`: builds a local working copy through the same builder code and config rules as
 * the cloud (controller, runner process, S3 log), on a private embedded stack that lives as long
 * as the run. Nothing is sent to GitHub.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, readFile, readdir, realpath, rm, stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { availableParallelism, tmpdir } from 'node:os';
import { basename, join, relative, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { execFile } from 'node:child_process';
import { CreateTableCommand } from '@aws-sdk/client-dynamodb';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { create as createTar } from 'tar';
import { createAwsClients, createS3Client } from '../aws/clients.js';
import { runControllerBuild, type ControllerDependencies } from '../controller/controller.js';
import { ProcessRunnerInvoker } from '../controller/runner-invoker.js';
import { DEPENDENCY_TREES_FOLDER, DependencyHandover } from '../controller/dependency-handover.js';
import { NPM_CACHES_FOLDER, NpmCacheHandover } from '../controller/npm-cache-handover.js';
import type { BuildRecord, BuildRequest } from '../core/build.js';
import type { Logger } from '../core/logger.js';
import { DynamoBuildStore } from '../store/builds.js';
import { DynamoJobStore } from '../store/jobs.js';
import { endCrashedJob } from '../controller/job-controller.js';
import { builderInvocationFor } from '../core/protocol.js';
import { jobDurationMs } from '../core/job-record.js';
import { DEFAULT_JOB_NAME } from '../core/jobs.js';
import { nodeVersionResolver } from '../wiring.js';
import { LocalJobPool } from './job-pool.js';
import { S3LogStore } from '../store/logs.js';
import { DynamoSettingsStore } from '../store/settings.js';
import { buildsTableDefinition, settingsTableDefinition } from '../store/tables.js';
import { LambkinError, TransitionRefusedError, messageOf } from '../core/errors.js';
import { LOCAL_REGION } from './stack.js';
import { StackCredentials } from './stack-credentials.js';
import { startGuardedStorage } from './storage-proxy.js';
import { EphemeralBuildSigner } from './ephemeral-signer.js';
import { LocalDependencyCache } from './local-cache.js';
import { type StatusReporter } from '../core/ports.js';

export interface LocalRunOptions {
  /** The working copy to build. */
  path: string;
  /** Where the log goes as it streams (stdout). */
  write: (text: string) => void;
  /** Let `deploy` run (a local run never deploys unless asked). */
  deploy?: boolean;
  /** Variables for the steps (`--env NAME=value`), on top of the repository's config. */
  env?: Record<string, string>;
  logLimitBytes?: number;
  timeoutSeconds?: number;
  /** Run only this job of the build (its id: `node-22.shard-2`); default every job. */
  job?: string;
  /** Jobs at once; default one per core. */
  concurrency?: number;
  /**
   * The dependency cache's folder (src/local/local-cache.ts; the CLI gives defaultLocalCacheDir());
   * without it the build installs from scratch every time.
   */
  cacheDir?: string;
  /**
   * Where the runner works: as root, the parent of each build's sandbox and of the kept npm caches
   * (default /tmp/lambkin-builds, shared with `lambkin dev`); else its own work root (default
   * /tmp/lambkin-run-<uid>).
   */
  workRoot?: string;
  /**
   * Aborted to cancel the run (Ctrl-C): a queued or running build becomes `cancelled` with the
   * reason's message, as `lambkin cancel` would make it, its runner is stopped and the run ends
   * with the build's result; before the build is queued, the run throws the reason.
   */
  signal?: AbortSignal;
  logger: Logger;
}

/**
 * How often a local build's controller reads its record to find it cancelled: a person pressing
 * Ctrl-C waits on it (the cloud's controllers read every 3 s; a read here is a local request).
 */
const LOCAL_WATCH_INTERVAL_MS = 300;

/** One job of the run, as `lambkin run --json` prints it. */
export interface LocalJobResult {
  /** `node-22.shard-2`, as `--job` takes it. */
  id: string;
  /** The matrix combination's name (`node-22`); its shards share it. */
  name: string;
  state: BuildRecord['state'];
  matrix: Record<string, unknown>;
  shard: { index: number; total: number } | null;
  durationMs: number | null;
  description: string;
}

export interface LocalRunResult {
  repo: string;
  number: number;
  state: BuildRecord['state'];
  description: string;
  steps: NonNullable<BuildRecord['steps']>;
  durationMs: number;
  sha: string;
  branch: string;
  /** The build's jobs; a build without matrix or parallel is one job, `default`. */
  jobs: LocalJobResult[];
}

export class LocalRunError extends LambkinError {
  constructor(message: string) {
    super('LOCAL_RUN', message);
  }
}

const run = promisify(execFile);
const SKIPPED = new Set(['node_modules', '.git', '.lambkin']);

/** GitHub never sees a local run: statuses go nowhere. */
const NO_STATUSES: StatusReporter = { setStatus: async () => undefined };

export async function runLocalBuild(options: LocalRunOptions): Promise<LocalRunResult> {
  const path = resolve(options.path);
  if (!(await stat(path).catch(() => undefined))?.isDirectory()) {
    throw new LocalRunError(`${options.path} is not a folder: give the path of a working copy.`);
  }
  const work = await mkdtemp(join(tmpdir(), 'lambkin-run-'));
  const cleanups: (() => Promise<unknown>)[] = [() => rm(work, { recursive: true, force: true })];
  try {
    const asRoot = process.getuid?.() === 0;
    const workRoot =
      options.workRoot ??
      join(tmpdir(), asRoot ? 'lambkin-builds' : `lambkin-run-${process.getuid?.() ?? 'user'}`);
    const scope = await realpath(path);
    const runner = new ProcessRunnerInvoker({
      sandbox: asRoot,
      workRoot,
      // Sandboxed, this working copy's npm cache and unpacked dependencies go from run to run
      // (never to another copy's).
      ...(asRoot
        ? {
            npmCaches: {
              handover: new NpmCacheHandover({ dir: join(workRoot, NPM_CACHES_FOLDER), scope }),
              logger: options.logger,
            },
            dependencies: {
              handover: new DependencyHandover({ dir: join(workRoot, DEPENDENCY_TREES_FOLDER), scope }),
              logger: options.logger,
            },
          }
        : {}),
    });
    // Its sandbox and process boot while the servers start and the working copy is packed.
    runner.prepare();
    cleanups.unshift(() => runner.close());
    const archive = join(work, 'source.tar.gz');
    // The build's steps run on this machine while these servers do: as in `lambkin dev`, they answer
    // only requests signed with this run's key (src/local/storage-proxy.ts). They start while the
    // working copy is packed: neither waits for the other.
    const credentials = new StackCredentials();
    const startingStorage = startGuardedStorage({ credentials, s3Directory: join(work, 's3') });
    const startingCache = options.cacheDir
      ? LocalDependencyCache.start({ dir: options.cacheDir, projectPath: path })
      : undefined;
    const packing = (async () => {
      const source = await describeSource(path);
      // Level 1: the archive only crosses the loopback; level 6 took three times as long for 10 % less.
      await createTar(
        { gzip: { level: 1 }, cwd: path, prefix: 'local/', portable: true, file: archive },
        await listFiles(path),
      );
      return source;
    })();
    const [storageStarted, cacheStarted, packed] = await Promise.allSettled([
      startingStorage,
      startingCache,
      packing,
    ]);
    if (storageStarted.status === 'fulfilled') cleanups.unshift(storageStarted.value.stop);
    if (cacheStarted.status === 'fulfilled' && cacheStarted.value) {
      const started = cacheStarted.value;
      cleanups.unshift(() => started.close());
    }
    if (storageStarted.status === 'rejected') throw storageStarted.reason;
    if (packed.status === 'rejected') throw packed.reason;
    const storage = storageStarted.value;
    const source = packed.value;
    let localCache: LocalDependencyCache | undefined;
    if (cacheStarted.status === 'rejected') {
      options.logger.warn(`the dependency cache is off for this run: ${messageOf(cacheStarted.reason)}`);
    } else {
      localCache = cacheStarted.value;
    }
    const served = await serveFile(archive);
    cleanups.unshift(served.close);
    const { dynamodb: dynamo, s3 } = storage;
    const clients = createAwsClients({
      region: LOCAL_REGION,
      credentials: credentials.stack,
      endpoints: { dynamodb: dynamo.endpoint, s3: s3.endpoint },
    });
    await Promise.all([
      clients.dynamodb.send(new CreateTableCommand(buildsTableDefinition('builds'))),
      clients.dynamodb.send(new CreateTableCommand(settingsTableDefinition('settings'))),
      clients.s3.send(new CreateBucketCommand({ Bucket: 'logs' })),
    ]);
    const builds = new DynamoBuildStore(clients.documents, 'builds');
    const settings = new DynamoSettingsStore(clients.documents, 'settings');
    if (options.env && Object.keys(options.env).length > 0) {
      await settings.update({ kind: 'global' }, () => ({ config: { env: options.env } }));
    }
    const logs = new S3LogStore(clients.s3, 'logs');
    const jobs = new DynamoJobStore(clients.documents, 'builds');
    const concurrency = options.concurrency ?? availableParallelism();
    const pool = new LocalJobPool(
      (build, job) => runControllerBuild(deps, builderInvocationFor(build, job)),
      (build, job, reason) => endCrashedJob(deps, { ...build, job }, reason),
      concurrency,
      options.logger,
    );
    const deps: ControllerDependencies = {
      builds,
      settings,
      statuses: NO_STATUSES,
      logs,
      archives: { resolveArchiveUrl: async () => served.url },
      runner,
      // The runner's forms and URLs are signed with a key made for this build only.
      signer: new EphemeralBuildSigner(credentials, (buildKey) =>
        createS3Client({ region: LOCAL_REGION, credentials: buildKey, endpoints: { s3: s3.endpoint } }),
      ),
      // The folder's config plans the jobs; with `--deploy` (the operator asked for it) it is also
      // the deploy rules' "default branch" (the controller reads them as it reads a repository's).
      repoFiles: { readFile: (_repo, file) => readLocalFile(path, file) },
      ...(localCache ? { cache: localCache } : {}),
      jobs,
      jobInvoker: pool,
      jobConcurrency: concurrency,
      nodeVersions: nodeVersionResolver(),
      logger: options.logger,
      publicUrl: `file://${work}`,
      runnerTimeoutMs: ((options.timeoutSeconds ?? 840) + 60) * 1000,
      watchIntervalMs: LOCAL_WATCH_INTERVAL_MS,
      logLimitBytes: options.logLimitBytes ?? 4 * 1024 * 1024,
    };
    const request: BuildRequest = {
      repo: `local/${basename(path).replace(/[^A-Za-z0-9._-]/g, '-') || 'project'}`,
      event: 'push',
      ref: `refs/heads/${source.branch}`,
      sha: source.sha,
      branch: source.branch,
      // Deploys go to the default branch only: a local run deploys only when asked.
      ...(options.deploy ? { defaultBranch: source.branch } : {}),
      fork: false,
      privateRepo: true,
      trusted: true,
      author: process.env.USER ?? 'local',
      deliveryId: `local-${Date.now()}`,
      ...(options.job !== undefined ? { jobs: [options.job] } : {}),
    };
    options.signal?.throwIfAborted();
    const number = await builds.allocateNumber(request.repo);
    const queued = await builds.putQueuedBuild(request, number, {
      deadline: Date.now() + deps.runnerTimeoutMs,
    });
    const started = Date.now();
    const buildFollower = followLog(logs, queued.logPrefix, options.write);
    const cancelling = cancelOnAbort(builds, queued, options.signal, options.logger);
    const result = await runControllerBuild(deps, { kind: 'build', repo: request.repo, number });
    // A build of several jobs has fanned out: each job's log, its lines marked with the job.
    const planned = await jobs.listJobs(queued);
    const jobFollowers = planned.map((job) =>
      followLog(logs, job.logPrefix, linePrefixer(`[${job.title}] `, options.write)),
    );
    await pool.idle();
    await cancelling.stop();
    for (const follower of jobFollowers) await follower.stop();
    await buildFollower.stop();
    // Cancelled before the controller claimed it: the record says so.
    if (!result.ran && !options.signal?.aborted) {
      throw new LocalRunError(`The build did not run: ${result.reason}.`);
    }
    const build = (await builds.getBuild(queued)) ?? (result.ran ? result.build : queued);
    const ended = await jobs.listJobs(queued);
    const durationMs = Date.now() - started;
    return {
      repo: request.repo,
      number,
      state: build.state,
      description: build.description ?? build.state,
      steps: build.steps ?? [],
      durationMs,
      sha: source.sha,
      branch: source.branch,
      jobs:
        ended.length > 0
          ? ended.map((job) => ({
              id: job.id,
              name: job.name,
              state: job.state,
              matrix: job.matrix,
              shard: job.shard,
              durationMs: jobDurationMs(job) ?? null,
              description: job.description ?? job.state,
            }))
          : [
              {
                id: DEFAULT_JOB_NAME,
                name: DEFAULT_JOB_NAME,
                state: build.state,
                matrix: {},
                shard: null,
                durationMs:
                  build.startedAt !== undefined ? (build.endedAt ?? Date.now()) - build.startedAt : null,
                description: build.description ?? build.state,
              },
            ],
    };
  } finally {
    for (const cleanup of cleanups) await cleanup().catch(() => undefined);
  }
}

/**
 * Cancels the build when `signal` is aborted, until stopped: one conditional transition, which the
 * controller's watch finds (a build that ended first keeps its state).
 */
function cancelOnAbort(
  builds: DynamoBuildStore,
  build: BuildRecord,
  signal: AbortSignal | undefined,
  logger: Logger,
): { stop(): Promise<void> } {
  let cancelling: Promise<void> = Promise.resolve();
  const cancel = (): void => {
    const reason = messageOf(signal?.reason ?? 'interrupted');
    cancelling = builds.transition(build, { from: ['queued', 'running'], to: 'cancelled', reason }).then(
      () => undefined,
      (error: unknown) => {
        if (!(error instanceof TransitionRefusedError)) logger.warn('could not cancel the build', { error });
      },
    );
  };
  if (signal?.aborted) cancel();
  else signal?.addEventListener('abort', cancel, { once: true });
  return {
    stop: async () => {
      signal?.removeEventListener('abort', cancel);
      await cancelling;
    },
  };
}

/** Writes whole lines only, each after `prefix`; what is left of a line is written once it ends. */
function linePrefixer(prefix: string, write: (text: string) => void): (text: string) => void {
  let partial = '';
  return (text) => {
    const lines = (partial + text).split('\n');
    partial = lines.pop() ?? '';
    if (lines.length > 0) write(lines.map((line) => `${prefix}${line}\n`).join(''));
  };
}

/** A file of the folder being built, or undefined when there is none. */
async function readLocalFile(folder: string, file: string): Promise<string | undefined> {
  try {
    return await readFile(join(folder, file), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** The commit and branch of a git working copy; for anything else a content hash and `local`. */
async function describeSource(path: string): Promise<{ sha: string; branch: string }> {
  try {
    const [{ stdout: sha }, { stdout: branch }] = await Promise.all([
      run('git', ['-C', path, 'rev-parse', 'HEAD']),
      run('git', ['-C', path, 'rev-parse', '--abbrev-ref', 'HEAD']),
    ]);
    return { sha: sha.trim(), branch: branch.trim() === 'HEAD' ? 'local' : branch.trim() };
  } catch {
    const hash = createHash('sha1').update(path).update(String(Date.now())).digest('hex');
    return { sha: hash, branch: 'local' };
  }
}

/**
 * What a clone would hold plus the working changes: git's tracked and untracked-but-not-ignored
 * files in a git working copy; otherwise every file but node_modules and .git.
 */
async function listFiles(path: string): Promise<string[]> {
  try {
    const { stdout } = await run(
      'git',
      ['-C', path, 'ls-files', '-z', '--cached', '--others', '--exclude-standard'],
      {
        maxBuffer: 64 * 1024 * 1024,
      },
    );
    const files = stdout.split('\0').filter(Boolean);
    const present = await Promise.all(
      files.map(async (file) => ((await stat(join(path, file)).catch(() => undefined)) ? file : '')),
    );
    return present.filter(Boolean);
  } catch {
    const files: string[] = [];
    const walk = async (dir: string): Promise<void> => {
      for (const entry of await readdir(dir, { withFileTypes: true })) {
        if (SKIPPED.has(entry.name)) continue;
        const full = join(dir, entry.name);
        if (entry.isDirectory()) await walk(full);
        else files.push(relative(path, full));
      }
    };
    await walk(path);
    return files;
  }
}

async function serveFile(file: string): Promise<{ url: string; close: () => Promise<void> }> {
  const server = createServer((request, response) => {
    if (request.url !== '/source.tar.gz') {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { 'content-type': 'application/gzip' });
    createReadStream(file).pipe(response);
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/source.tar.gz`,
    close: () =>
      new Promise<void>((done) => {
        server.closeAllConnections();
        server.close(() => done());
      }),
  };
}

/** Prints the log as it reaches S3 (the runner uploads every two seconds while steps run). */
export function followLog(
  logs: Pick<S3LogStore, 'readLog'>,
  prefix: string,
  write: (text: string) => void,
  intervalMs = 300,
): { stop(): Promise<void> } {
  let printed = '';
  // Stopping ends the wait between reads at once: the run's end never waits out an interval.
  const stopping = new AbortController();
  const print = async (): Promise<void> => {
    const text = (await logs.readLog(prefix).catch(() => undefined)) ?? '';
    if (text.startsWith(printed)) {
      write(text.slice(printed.length));
    } else {
      // The kept tail was rewritten (a log past its limit): show the new tail after a marker.
      const common = commonPrefixLength(printed, text);
      write(`\n[… log truncated …]\n${text.slice(common)}`);
    }
    printed = text;
  };
  const loop = (async () => {
    while (!stopping.signal.aborted) {
      await print();
      await sleep(intervalMs, undefined, { signal: stopping.signal }).catch(() => undefined);
    }
  })();
  return {
    stop: async () => {
      stopping.abort();
      await loop;
      await print();
    },
  };
}

function commonPrefixLength(a: string, b: string): number {
  let index = 0;
  while (index < a.length && index < b.length && a[index] === b[index]) index++;
  return index;
}
