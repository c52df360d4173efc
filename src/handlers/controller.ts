/**
 * Lambda entry point of the builder's controller, invoked asynchronously by the webhook with
 * `{kind: 'build', repo, number}`. Dependencies are built once per container, on the first
 * invocation: the configuration, then (in the cloud) the secret from Secrets Manager; a failed
 * build is tried again on the next invocation.
 */
import { loadFunctionConfig, onColdStart } from '../aws/secrets.js';
import {
  runControllerBuild,
  type ControllerDependencies,
  type ControllerResult,
} from '../controller/controller.js';
import { createJsonLogger } from '../core/logger.js';
import { createControllerDependencies } from '../wiring.js';
import { parseBuilderInvocation } from '../core/protocol.js';

export function createBuilderHandler(
  dependencies: () => ControllerDependencies | Promise<ControllerDependencies>,
): (event: unknown) => Promise<ControllerResult> {
  const deps = onColdStart(dependencies);
  return async (event) => runControllerBuild(await deps(), parseBuilderInvocation(event));
}

export const handler = createBuilderHandler(async () =>
  createControllerDependencies(await loadFunctionConfig('builder'), createJsonLogger()),
);
