/**
 * The same build with the dependency cache deleted before it (cold) and left in place (warm), and
 * the restore's own speed (unpacked bytes per second) from the warm build's log line.
 */

import { DeleteObjectCommand } from '@aws-sdk/client-s3';
import type { BuildRecord } from '../core/build.js';
import type { GitHubStandIn } from '../local/github/index.js';
import type { LocalStack } from '../local/stack.js';
import { buildOnce, median, progress, round, wall, type Repo } from './shared.js';

export async function measureCache(stack: LocalStack, github: GitHubStandIn, repo: Repo, repeats: number) {
  const location = await stack.controller.cache?.locate({ repo: repo.full, sha: repo.sha } as BuildRecord);
  // A project without an npm lockfile (expressjs/express has none) has no key: nothing to measure.
  if (!location) return { skipped: `${repo.full} has no npm lockfile, which the cache is keyed on` };
  const cold: number[] = [];
  const warm: number[] = [];
  let warmLines: string[] = [];
  const restoreRates: number[] = [];
  const restores: { files: number; unpackedMiB: number; downloadedMiB: number; codec: string }[] = [];
  for (let index = 0; index < repeats; index++) {
    progress(`cache: round ${index + 1} of ${repeats}`);
    await stack.clients.s3.send(new DeleteObjectCommand({ Bucket: stack.config.bucket, Key: location.key }));
    cold.push(wall(await buildOnce(stack, github, repo, `cold-${index}`))); // misses, installs, saves
    const warmBuild = await buildOnce(stack, github, repo, `warm-${index}`); // restores, skips the install
    warm.push(wall(warmBuild));
    const log = (await stack.controller.logs.readLog(warmBuild.logPrefix)) ?? '';
    warmLines = log.split('\n').filter((line) => /^(Warning: cache|Cache):/.test(line));
    // "Cache: restored <key> (<n> files, <x> MiB unpacked from <y> MiB <codec>) in <t>, <r> MiB/s; …"
    const restored =
      /Cache: restored \S+ \((\d+) files, ([\d.]+) MiB unpacked from ([\d.]+) MiB (\w+)\) in [^,]+, ([\d.]+) MiB\/s/.exec(
        log,
      );
    if (restored) {
      restores.push({
        files: Number(restored[1]),
        unpackedMiB: Number(restored[2]),
        downloadedMiB: Number(restored[3]),
        codec: restored[4] ?? '',
      });
      restoreRates.push(Number(restored[5]) * 1.048576);
    }
  }
  return {
    repeats,
    coldMedianMs: round(median(cold)),
    warmMedianMs: round(median(warm)),
    warmOverCold: round(median(warm) / median(cold), 3),
    /** Unpacked megabytes (10^6 bytes) per second, median of the warm builds' restores. */
    restoreMBps: round(median(restoreRates)),
    restore: restores.at(-1) ?? null,
    warmBuildLog: warmLines,
  };
}
