/**
 * The same build with the dependency cache deleted before it (cold) and left in place (warm), and
 * the restore's own speed (unpacked bytes per second) from the log line of a build that unpacked the
 * archive. Sandboxed (as root), the warm build moves in the tree the cold one handed back
 * (src/controller/dependency-handover.ts); a third build then unpacks the archive, as on a machine
 * that kept no tree of the key (`fromArchiveOverCold`).
 */

import { DeleteObjectCommand } from '@aws-sdk/client-s3';
import type { BuildRecord } from '../core/build.js';
import type { GitHubStandIn } from '../local/github/index.js';
import type { LocalStack } from '../local/stack.js';
import {
  buildOnce,
  directBuild,
  directCheckout,
  median,
  progress,
  round,
  wall,
  type Repo,
} from './shared.js';

/**
 * With `direct` (a project of the user's, which has no build-overhead section of its own), each
 * round also runs the project's default commands in bash on a checkout of the same commit, after
 * the cold build: `overheadRatio` is the cold build (which also packs and saves its archive) over
 * those.
 */
export async function measureCache(
  stack: LocalStack,
  github: GitHubStandIn,
  repo: Repo,
  repeats: number,
  direct?: { env: Record<string, string> },
) {
  const location = await stack.controller.cache?.locate({ repo: repo.full, sha: repo.sha } as BuildRecord);
  // A project without an npm lockfile (expressjs/express has none) has no key: nothing to measure.
  if (!location) return { skipped: `${repo.full} has no npm lockfile, which the cache is keyed on` };
  const checkout = direct ? await directCheckout(repo) : undefined;
  const directs: number[] = [];
  const cold: number[] = [];
  const warm: number[] = [];
  const fromArchive: number[] = [];
  let warmLines: string[] = [];
  const restoreRates: number[] = [];
  const restores: { files: number; unpackedMiB: number; downloadedMiB: number; codec: string }[] = [];
  /** The warm build's log lines about the cache, and its restore of the archive if it unpacked one. */
  const readRestore = async (build: BuildRecord): Promise<void> => {
    const log = (await stack.controller.logs.readLog(build.logPrefix)) ?? '';
    warmLines = log.split('\n').filter((line) => /^(Warning: cache|Cache):/.test(line));
    // "Cache: restored <key> (<n> files, <x> MiB unpacked from <y> MiB <codec>) in <t>, <r> MiB/s; …"
    const restored =
      /Cache: restored \S+ \((\d+) files, ([\d.]+) MiB unpacked from ([\d.]+) MiB (\w+)\) in [^,]+, ([\d.]+) MiB\/s/.exec(
        log,
      );
    if (!restored) return;
    restores.push({
      files: Number(restored[1]),
      unpackedMiB: Number(restored[2]),
      downloadedMiB: Number(restored[3]),
      codec: restored[4] ?? '',
    });
    restoreRates.push(Number(restored[5]) * 1.048576);
  };
  try {
    for (let index = 0; index < repeats; index++) {
      progress(`cache: round ${index + 1} of ${repeats}`);
      await stack.clients.s3.send(
        new DeleteObjectCommand({ Bucket: stack.config.bucket, Key: location.key }),
      );
      cold.push(wall(await buildOnce(stack, github, repo, `cold-${index}`))); // misses, installs, saves
      if (checkout && direct) directs.push(await directBuild(checkout.dir, direct.env));
      // Restores (sandboxed: moves in the tree the cold build handed back), skips the install.
      const warmBuild = await buildOnce(stack, github, repo, `warm-${index}`);
      warm.push(wall(warmBuild));
      await readRestore(warmBuild);
      if (stack.dependencyTrees) {
        // As on a machine that never built the key: the archive is unpacked.
        await stack.dependencyTrees.clear();
        const archiveBuild = await buildOnce(stack, github, repo, `archive-${index}`);
        fromArchive.push(wall(archiveBuild));
        await readRestore(archiveBuild);
      }
    }
  } finally {
    await checkout?.remove();
  }
  return {
    repeats,
    coldMedianMs: round(median(cold)),
    warmMedianMs: round(median(warm)),
    warmOverCold: round(median(warm) / median(cold), 3),
    /** The warm build on a machine that kept no tree of the key (sandboxed stacks only): it unpacks the archive. */
    ...(fromArchive.length > 0
      ? {
          fromArchiveMedianMs: round(median(fromArchive)),
          fromArchiveOverCold: round(median(fromArchive) / median(cold), 3),
        }
      : {}),
    /** Unpacked megabytes (10^6 bytes) per second, median of the warm builds' restores. */
    restoreMBps: round(median(restoreRates)),
    restore: restores.at(-1) ?? null,
    warmBuildLog: warmLines,
    /** The cold build over `npm ci` + `npm test` in bash (with `direct` only). */
    ...(directs.length > 0
      ? {
          directMedianMs: round(median(directs)),
          overheadRatio: round(median(cold) / median(directs), 3),
        }
      : {}),
  };
}
