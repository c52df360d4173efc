/**
 * The runner's peak RSS (GNU time's %M: the largest of the runner and its descendants; the printer
 * is `head | tr | fold`, a few MiB) for builds printing 1, 20 and 100 MiB, the median of three
 * interleaved rounds (quick: 1 and 20 MiB, one round); and the largest again
 * with the runner's heap capped at HEAP_CAP_MIB: it passes only if the runner keeps nothing of the
 * log beyond its bounded buffers (a rising RSS alone can be the collector freeing lazily).
 */

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { runControllerBuild } from '../controller/controller.js';
import { ProcessRunnerInvoker } from '../controller/runner-invoker.js';
import { runnerProgram } from '../controller/runner-program.js';
import { createGitRepo, type GitHubStandIn } from '../local/github/index.js';
import type { LocalStack } from '../local/stack.js';
import { median, OWNER, progress, quick, round } from './shared.js';

export const HEAP_CAP_MIB = 96;

export async function measureMemory(stack: LocalStack, github: GitHubStandIn, root: string) {
  const timeBinary = '/usr/bin/time';
  const available = await execa(timeBinary, ['-f', '%M', 'true'], { reject: false }).then(
    (r) => r.exitCode === 0,
  );
  if (!available) return { measured: false, reason: 'GNU time (/usr/bin/time) is not installed' };
  const sizes = quick ? [1, 20] : [1, 20, 100];
  const rounds = quick ? 1 : 3;
  let runs = 0;
  const run = async (mib: number, nodeOptions: string[]) => {
    const name = `log-${mib}${nodeOptions.length > 0 ? '-capped' : ''}-${++runs}`;
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
  // Interleaved rounds, the median of each size: one run's peak varies by several MiB.
  const peaks = new Map<number, number[]>(sizes.map((mib) => [mib, []]));
  for (let index = 1; index <= rounds; index++) {
    for (const mib of sizes) {
      progress(`memory: a ${mib} MiB log, round ${index} of ${rounds}`);
      const { state, rss } = await run(mib, []);
      if (state !== 'success') throw new Error(`the ${mib} MiB log build ended ${state}`);
      peaks.get(mib)?.push(rss);
    }
  }
  const figures: Record<string, number> = Object.fromEntries(
    sizes.map((mib) => [`log${mib}MiB`, round(median(peaks.get(mib) ?? []))]),
  );
  const largest = sizes[sizes.length - 1] ?? 1;
  progress(`memory: a ${largest} MiB log with the runner's heap capped at ${HEAP_CAP_MIB} MiB`);
  const capped = await run(largest, [`--max-old-space-size=${HEAP_CAP_MIB}`]);
  const ratio = round((figures[`log${largest}MiB`] ?? NaN) / (figures.log1MiB ?? NaN), 2);
  return {
    measured: true,
    rounds,
    peakRssMiB: figures,
    heapCapped: { maxOldSpaceMiB: HEAP_CAP_MIB, [`log${largest}MiB`]: capped },
    // The goal's figure: the runner's peak RSS for 100 MiB of log over that for 1 MiB.
    runner:
      largest === 100
        ? { rss100OverRss1: ratio }
        : {
            [`rss${largest}OverRss1`]: ratio,
            note: `quick mode: ${largest} MiB is the largest log measured`,
          },
  };
}
