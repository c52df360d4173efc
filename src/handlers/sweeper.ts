/**
 * Lambda entry point of the sweeper (`SweeperFunction`, scheduled every 5 minutes): ends the builds
 * past their deadline (src/builder/sweeper.ts). Dependencies are built once per container, on the
 * first invocation (the GitHub token comes from the cloud secret then). A sweep that could not end
 * a build or set a status fails the invocation, so it shows in the function's errors.
 */
import { createDynamoClients } from '../aws/clients.js';
import { loadFunctionConfig, onColdStart } from '../aws/secrets.js';
import {
  assertSweepComplete,
  sweepOverdueBuilds,
  type SweepResult,
  type SweeperDependencies,
} from '../builder/sweeper.js';
import type { LambkinConfig } from '../config.js';
import { createGitHubClient } from '../github/client.js';
import { GitHubStatusReporter } from '../github/statuses.js';
import { createJsonLogger, type Logger } from '../logger.js';
import { DynamoBuildStore } from '../store/builds.js';

/** The scheduled event carries nothing the sweep needs: it always looks at the whole table. */
export function createSweeperHandler(
  dependencies: () => SweeperDependencies | Promise<SweeperDependencies>,
): (event?: unknown) => Promise<SweepResult> {
  const load = onColdStart(dependencies);
  return async () => assertSweepComplete(await sweepOverdueBuilds(await load()));
}

export function sweeperDependencies(config: LambkinConfig, logger: Logger): SweeperDependencies {
  const { documents } = createDynamoClients();
  return {
    builds: new DynamoBuildStore(documents, config.buildsTable),
    statuses: new GitHubStatusReporter(
      createGitHubClient({
        baseUrl: config.githubApiUrl,
        ...(config.githubToken ? { token: config.githubToken } : {}),
        logger,
      }),
    ),
    logger,
    publicUrl: config.publicUrl,
  };
}

export const handler = createSweeperHandler(async () =>
  sweeperDependencies(await loadFunctionConfig('sweeper'), createJsonLogger()),
);
