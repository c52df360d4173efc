/**
 * The composition root: builds the clients and services once per process from one validated
 * config and hands them to the core. Handlers and the local stack call these; nothing else
 * creates clients.
 */
import type { LambkinConfig } from './config.js';
import { createAwsClients, createDynamoClients, createLambdaClient, type AwsClients } from './aws/clients.js';
import { LambdaBuilderQueue } from './aws/builder-queue.js';
import type { ControllerDependencies } from './builder/controller.js';
import { LambdaRunnerInvoker, type RunnerInvoker } from './builder/runner-invoker.js';
import { resolveArchiveUrl } from './github/archive.js';
import { S3LogStore } from './store/logs.js';
import { createGitHubClient, type GitHubClient } from './github/client.js';
import { GitHubStatusReporter } from './github/statuses.js';
import { WebhookVerifier } from './github/webhook.js';
import { DynamoBuildStore } from './store/builds.js';
import { DynamoSettingsStore } from './store/settings.js';
import { KmsSecretCipher, type SecretCipher } from './store/secret-cipher.js';
import type { IntakeDependencies } from './core/intake.js';
import type { Logger } from './logger.js';

export function createIntakeDependencies(
  config: LambkinConfig,
  logger: Logger,
  // Only the clients the webhook uses: the S3 client alone would add ~100 KB to its bundle.
  clients: Pick<AwsClients, 'documents' | 'lambda'> = {
    ...createDynamoClients(),
    lambda: createLambdaClient(),
  },
): IntakeDependencies {
  const octokit = githubClientFor(config, logger);
  return {
    verifier: new WebhookVerifier(config.webhookSecrets),
    builds: new DynamoBuildStore(clients.documents, config.buildsTable),
    // No cipher: the webhook reads only the build policy, and never decrypts a secret value.
    settings: new DynamoSettingsStore(clients.documents, config.settingsTable),
    statuses: new GitHubStatusReporter(octokit),
    queue: new LambdaBuilderQueue(clients.lambda, config.builderFunction),
    logger,
    publicUrl: config.publicUrl,
    queueTimeoutMs: config.queueTimeoutSeconds * 1000,
  };
}

function githubClientFor(config: LambkinConfig, logger: Logger): GitHubClient {
  return createGitHubClient({
    baseUrl: config.githubApiUrl,
    ...(config.githubToken ? { token: config.githubToken } : {}),
    logger,
  });
}

/**
 * The cipher that opens the settings' `secretEnv` values for the controller: KMS with
 * LAMBKIN_SETTINGS_KMS_KEY when set (its client is made on the first value opened), else none.
 */
export function settingsCipherFor(config: LambkinConfig): SecretCipher | undefined {
  return config.settingsKmsKey ? new KmsSecretCipher(config.settingsKmsKey) : undefined;
}

export function createControllerDependencies(
  config: LambkinConfig,
  logger: Logger,
  clients: Pick<AwsClients, 'documents' | 's3' | 'lambda'> = createAwsClients(),
  runner: RunnerInvoker = new LambdaRunnerInvoker(clients.lambda, config.runnerFunction),
  cipher: SecretCipher | undefined = settingsCipherFor(config),
): ControllerDependencies {
  const octokit = githubClientFor(config, logger);
  return {
    builds: new DynamoBuildStore(clients.documents, config.buildsTable),
    settings: new DynamoSettingsStore(clients.documents, config.settingsTable, cipher),
    statuses: new GitHubStatusReporter(octokit),
    logs: new S3LogStore(clients.s3, config.bucket),
    archives: { resolveArchiveUrl: (repo, sha) => resolveArchiveUrl(octokit, repo, sha) },
    runner,
    logger,
    publicUrl: config.publicUrl,
    runnerTimeoutMs: config.runnerTimeoutSeconds * 1000,
    logLimitBytes: config.logLimitBytes,
  };
}

/**
 * What the functions that end builds outside the builder need (the sweeper, the on-failure
 * destination): the builds table and the commit statuses.
 */
export function createBuildEnderDependencies(
  config: LambkinConfig,
  logger: Logger,
): { builds: DynamoBuildStore; statuses: GitHubStatusReporter; logger: Logger; publicUrl: string } {
  const { documents } = createDynamoClients();
  return {
    builds: new DynamoBuildStore(documents, config.buildsTable),
    statuses: new GitHubStatusReporter(githubClientFor(config, logger)),
    logger,
    publicUrl: config.publicUrl,
  };
}
