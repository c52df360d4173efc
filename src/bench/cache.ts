/** The same build with the dependency cache deleted before it (cold) and left in place (warm). */

import { DeleteObjectCommand } from '@aws-sdk/client-s3';
import type { BuildRecord } from '../core/build.js';
import type { GitHubStandIn } from '../local/github/index.js';
import type { LocalStack } from '../local/stack.js';
import { buildOnce, median, progress, round, wall, type Repo } from './shared.js';

export async function measureCache(stack: LocalStack, github: GitHubStandIn, repo: Repo, repeats: number) {
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
