/**
 * A build's own time: the small project's overhead (running → final status, minus its steps), the
 * large project's whole build against `npm ci` + `npm test` in a shell on the same checkout,
 * interleaved, and where each build's time went (the breakdown the controller appends to every
 * log and logs as `build time`).
 */

import type { BuildRecord } from '../core/build.js';
import type { MemoryLogger } from '../core/logger.js';
import type { PhaseTiming } from '../core/protocol.js';
import type { GitHubStandIn } from '../local/github/index.js';
import type { LocalStack } from '../local/stack.js';
import { npmEnvironment } from './projects.js';
import { buildOnce, directBuild, directCheckout, median, progress, round, type Repo } from './shared.js';

/** The controller's `build time` entry of one build. */
interface BuildTime {
  untilStatus: PhaseTiming[];
  totalMs: number;
  after: PhaseTiming[];
}

export async function measureBuild(
  stack: LocalStack,
  github: GitHubStandIn,
  projects: { small: Repo; large: Repo },
  npmCache: string,
  logger: MemoryLogger,
  repeats: number,
) {
  const checkout = await directCheckout(projects.large);
  const small: BuildTime[] = [];
  const large: BuildTime[] = [];
  const direct: number[] = [];
  const timeOf = (build: BuildRecord): BuildTime => buildTime(logger, build);
  try {
    // The small project's first build saves its cache; the measured ones restore it, as a
    // project's builds do between two lockfile changes.
    await buildOnce(stack, github, projects.small, 'overhead-warm-up');
    for (let index = 0; index < repeats; index++) {
      progress(`build overhead: round ${index + 1} of ${repeats}`);
      small.push(timeOf(await buildOnce(stack, github, projects.small, `overhead-small-${index}`)));
      large.push(timeOf(await buildOnce(stack, github, projects.large, `overhead-${index}`)));
      direct.push(await directBuild(checkout.dir, npmEnvironment(npmCache)));
    }
  } finally {
    await checkout.remove();
  }
  const largeMs = median(large.map((time) => time.totalMs));
  return {
    repeats,
    smallOverheadMs: round(median(small.map(overheadOf))),
    overheadRatio: round(largeMs / median(direct), 3),
    largeBuildMedianMs: round(largeMs),
    directMedianMs: round(median(direct)),
    breakdown: breakdownOf(small),
    largeBreakdown: breakdownOf(large),
    note:
      'smallOverheadMs = running → final status minus the steps (small project, cache restored); ' +
      'overheadRatio = the large project’s running → final status ÷ npm ci + npm test in bash; ' +
      'breakdown = median ms per phase, "after" = after the final status (cache save, cleanup)',
  };
}

function buildTime(logger: MemoryLogger, build: BuildRecord): BuildTime {
  const label = `${build.repo}#${build.number}`;
  const entry = logger.entries.find(
    (candidate) => candidate.message === 'build time' && candidate.fields.build === label,
  );
  if (!entry) throw new Error(`no time breakdown was logged for ${label}`);
  return entry.fields as unknown as BuildTime;
}

/** Running → final status, minus the steps' own time. */
function overheadOf(time: BuildTime): number {
  const steps = time.untilStatus.filter((phase) => phase.name.startsWith('step '));
  return time.totalMs - steps.reduce((sum, phase) => sum + phase.ms, 0);
}

/** The median of each phase over the builds, in the order the phases came. */
function breakdownOf(times: BuildTime[]) {
  const medians = (pick: (time: BuildTime) => PhaseTiming[]): Record<string, number> => {
    const byName = new Map<string, number[]>();
    for (const time of times) {
      for (const phase of pick(time)) byName.set(phase.name, [...(byName.get(phase.name) ?? []), phase.ms]);
    }
    return Object.fromEntries([...byName].map(([name, values]) => [name, round(median(values))]));
  };
  return {
    untilStatus: medians((time) => time.untilStatus),
    totalMs: round(median(times.map((time) => time.totalMs))),
    after: medians((time) => time.after),
  };
}
