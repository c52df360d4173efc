/**
 * The composition root: builds the clients and services once per process from one validated
 * config and hands them to the core. Handlers and the local stack call these; nothing else
 * creates clients.
 */
import type { LambkinConfig } from './config.js';
import { createAwsClients, type AwsClients } from './aws/clients.js';
import { LambdaBuilderQueue } from './aws/builder-queue.js';
import { createGitHubClient } from './github/client.js';
import { GitHubStatusReporter } from './github/statuses.js';
import { WebhookVerifier } from './github/webhook.js';
import { DynamoBuildStore } from './store/builds.js';
import { DynamoSettingsStore } from './store/settings.js';
import type { IntakeDependencies } from './core/intake.js';
import type { Logger } from './logger.js';

export function createIntakeDependencies(
  config: LambkinConfig,
  logger: Logger,
  clients: Pick<AwsClients, 'documents' | 'lambda'> = createAwsClients(),
): IntakeDependencies {
  const octokit = createGitHubClient({
    baseUrl: config.githubApiUrl,
    ...(config.githubToken ? { token: config.githubToken } : {}),
  });
  return {
    verifier: new WebhookVerifier(config.webhookSecrets),
    builds: new DynamoBuildStore(clients.documents, config.buildsTable),
    settings: new DynamoSettingsStore(clients.documents, config.settingsTable),
    statuses: new GitHubStatusReporter(octokit),
    queue: new LambdaBuilderQueue(clients.lambda, config.builderFunction),
    logger,
    publicUrl: config.publicUrl,
    queueTimeoutMs: config.queueTimeoutSeconds * 1000,
  };
}
