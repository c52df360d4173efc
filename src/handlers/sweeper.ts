/**
 * Lambda entry point of the sweeper (`SweeperFunction`, scheduled every 5 minutes): ends the builds
 * past their deadline (src/controller/sweeper.ts). Dependencies are built once per container, on the
 * first invocation (the GitHub token comes from the cloud secret then). A sweep that could not end
 * a build or set a status fails the invocation, so it shows in the function's errors.
 */
import { loadFunctionConfig, onColdStart } from '../aws/secrets.js';
import {
  assertSweepComplete,
  sweepOverdueBuilds,
  type SweepResult,
  type SweeperDependencies,
} from '../controller/sweeper.js';
import type { LambkinConfig } from '../config.js';
import { createJsonLogger, type Logger } from '../core/logger.js';
import { codebuildSweeper, createBuildEnderDependencies } from '../wiring.js';

/** The scheduled event carries nothing the sweep needs: it always looks at the whole table. */
export function createSweeperHandler(
  dependencies: () => SweeperDependencies | Promise<SweeperDependencies>,
): (event?: unknown) => Promise<SweepResult> {
  const load = onColdStart(dependencies);
  return async () => assertSweepComplete(await sweepOverdueBuilds(await load()));
}

export function sweeperDependencies(config: LambkinConfig, logger: Logger): SweeperDependencies {
  const enders = createBuildEnderDependencies(config, logger);
  const remoteRuns = codebuildSweeper(config, logger);
  return remoteRuns ? { ...enders, remoteRuns } : enders;
}

export const handler = createSweeperHandler(async () =>
  sweeperDependencies(await loadFunctionConfig('sweeper'), createJsonLogger()),
);
