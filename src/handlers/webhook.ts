/**
 * Lambda entry point of the webhook function (function URL / HTTP API). Adapts the event to the
 * core intake. Dependencies are built once per container, on the first request: the configuration,
 * then (in the cloud) the secret from Secrets Manager; a failed build is tried again next request.
 * The local stack makes its handler with createWebhookHandler from the intake it wires itself.
 */
import { loadFunctionConfig, onColdStart } from '../aws/secrets.js';
import { CONFIG_VARIABLES, type LambkinConfig } from '../config.js';
import { handleWebhook, type IntakeDependencies } from '../controller/intake.js';
import { ConfigurationError } from '../core/errors.js';
import { createJsonLogger } from '../core/logger.js';
import { createIntakeDependencies } from '../wiring.js';
import { toHttpRequest, toLambdaResult, type LambdaHttpEvent, type LambdaHttpResult } from './http-event.js';

export function createWebhookHandler(
  dependencies: () => IntakeDependencies | Promise<IntakeDependencies>,
): (event: LambdaHttpEvent) => Promise<LambdaHttpResult> {
  const deps = onColdStart(dependencies);
  return async (event) => toLambdaResult(await handleWebhook(await deps(), toHttpRequest(event)));
}

/** The webhook cannot check a delivery's signature without a secret, from either source. */
export function requireWebhookSecrets(config: LambkinConfig): LambkinConfig {
  if (config.webhookSecrets.length > 0) return config;
  throw new ConfigurationError([
    `no webhook secret: set ${CONFIG_VARIABLES.secretArn} (the cloud: a Secrets Manager secret with ` +
      `"webhookSecret") or ${CONFIG_VARIABLES.webhookSecrets} (local)`,
  ]);
}

export const handler = createWebhookHandler(async () =>
  createIntakeDependencies(requireWebhookSecrets(await loadFunctionConfig('webhook')), createJsonLogger()),
);
