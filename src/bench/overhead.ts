/** The whole build against `npm ci` + `npm test` in a shell on the same checkout, interleaved. */

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { execa } from 'execa';
import type { GitHubStandIn } from '../local/github/index.js';
import type { LocalStack } from '../local/stack.js';
import { npmEnvironment } from './projects.js';
import { buildOnce, median, progress, round, wall, type Repo } from './shared.js';

export async function measureOverhead(
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
