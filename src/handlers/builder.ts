/**
 * Lambda entry point of the builder's controller, invoked asynchronously by the webhook with
 * `{kind: 'build', repo, number}`. Dependencies are built once per container.
 */
import { parseBuilderInvocation } from '../aws/builder-queue.js';
import { FUNCTION_CONFIG, loadConfig } from '../config.js';
import {
  runControllerBuild,
  type ControllerDependencies,
  type ControllerResult,
} from '../builder/controller.js';
import { createJsonLogger } from '../logger.js';
import { createControllerDependencies } from '../wiring.js';

export function createBuilderHandler(
  dependencies: () => ControllerDependencies,
): (event: unknown) => Promise<ControllerResult> {
  let deps: ControllerDependencies | undefined;
  return async (event) => {
    deps ??= dependencies();
    return runControllerBuild(deps, parseBuilderInvocation(event));
  };
}

export const handler = createBuilderHandler(() =>
  createControllerDependencies(loadConfig(process.env, FUNCTION_CONFIG.builder.required), createJsonLogger()),
);
