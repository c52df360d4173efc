/**
 * What the bench's sections share: the mode, the stand-in's credentials, the statistics, and the
 * helpers that push a signed webhook to a local stack and wait for its build.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { execa } from 'execa';
import type { BuildRecord } from '../core/build.js';
import { pushPayload, signedDelivery, type DemoRepository } from '../local/demo-payloads.js';
import type { GitHubStandIn } from '../local/github/index.js';
import type { LocalStack } from '../local/stack.js';

export const quick = process.argv.includes('--quick');
export const SECRET = 'bench-webhook-secret';
// With a token: the stand-in, like GitHub, allows anonymous callers only 60 requests an hour.
export const TOKEN = 'ghp_benchToken000000000000000000000000000';
export const OWNER = 'bench';
export const progress = (message: string): void => void process.stderr.write(`[bench] ${message}\n`);

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length === 0
    ? NaN
    : sorted.length % 2
      ? (sorted[middle] ?? NaN)
      : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
}

export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

export const round = (value: number, digits = 1): number => Number(value.toFixed(digits));

export interface Repo {
  name: string;
  full: string;
  sha: string;
  dir: string;
  gitDir: string;
}

export function cpuCount(): number {
  return availableParallelism();
}

export function demoRepository(stackGitHub: GitHubStandIn, repo: Repo): DemoRepository {
  return { owner: OWNER, name: repo.name, defaultBranch: 'main', htmlBase: stackGitHub.url };
}

/** Pushes sent so far: each push's `before` differs, as GitHub's do (identical bodies are replays). */
let pushesSent = 0;

/** Posts one signed push webhook; answers its latency and the build number the 202 named. */
export async function sendPush(
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

export async function buildOnce(
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

export const wall = (build: BuildRecord): number => (build.endedAt ?? NaN) - (build.startedAt ?? NaN);

/**
 * A checkout of `repo`'s commit (`git archive`) in a folder of its own, for the same commands in
 * bash; `remove` deletes it.
 */
export async function directCheckout(repo: Repo): Promise<{ dir: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'lambkin-bench-direct-'));
  await execa('bash', [
    '-c',
    `git -C '${repo.gitDir}' archive --format=tar ${repo.sha} | tar -x -C '${dir}'`,
  ]);
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/**
 * A build's default commands in bash on `checkout` (its node_modules removed first, as a build
 * starts without one): `npm ci` then `npm test`, with exactly `env` (npm's cache in it). Milliseconds.
 */
export async function directBuild(checkout: string, env: Record<string, string>): Promise<number> {
  await rm(join(checkout, 'node_modules'), { recursive: true, force: true });
  const started = performance.now();
  await execa('bash', ['-c', 'npm ci'], { cwd: checkout, env, extendEnv: false });
  await execa('bash', ['-c', 'npm test'], { cwd: checkout, env, extendEnv: false });
  return performance.now() - started;
}
