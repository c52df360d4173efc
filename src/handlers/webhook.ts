/**
 * Lambda entry point of the webhook function (function URL / HTTP API). Adapts the event to the
 * core intake; dependencies are built once per container, on the first request.
 */
import { FUNCTION_CONFIG, loadConfig } from '../config.js';
import { handleWebhook, type IntakeDependencies } from '../core/intake.js';
import { createJsonLogger } from '../logger.js';
import { createIntakeDependencies } from '../wiring.js';
import { toHttpRequest, toLambdaResult, type LambdaHttpEvent, type LambdaHttpResult } from './http-event.js';

export function createWebhookHandler(
  dependencies: () => IntakeDependencies,
): (event: LambdaHttpEvent) => Promise<LambdaHttpResult> {
  let deps: IntakeDependencies | undefined;
  return async (event) => {
    deps ??= dependencies();
    return toLambdaResult(await handleWebhook(deps, toHttpRequest(event)));
  };
}

export const handler = createWebhookHandler(() =>
  createIntakeDependencies(
    loadConfig(process.env, [...FUNCTION_CONFIG.webhook.required, 'webhookSecrets']),
    createJsonLogger(),
  ),
);
