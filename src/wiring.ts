/**
 * The composition root: builds the clients and services once per process from one validated
 * config and hands them to the services. The handlers and the local stack call these. Clients are
 * made only through aws/clients.ts: here, in the logs function (handlers/logs.ts: S3 and DynamoDB
 * only), and by the CLI and the local stack for the endpoints they are pointed at.
 */
import { readFile } from 'node:fs/promises';
import {
  describeGitHubMode,
  loadCodeBuildConfig,
  type CodeBuildConfig,
  type LambkinConfig,
} from './config.js';
import {
  createAwsClients,
  createCodeBuildClient,
  createDynamoClients,
  createLambdaClient,
  createS3Client,
  type AwsClients,
} from './aws/clients.js';
import { LambdaControllerInvoker } from './aws/controller-invoker.js';
import type { ControllerDependencies } from './controller/controller.js';
import { LambdaRunnerInvoker, TrustRoutedRunnerInvoker } from './controller/runner-invoker.js';
import { resolveArchiveUrl } from './github/archive.js';
import { readRepoFile } from './github/contents.js';
import { readLockfileBlob } from './github/trees.js';
import { StsBuildSigner, StsDeployRoleGrants, createStsClient } from './aws/sts.js';
import { S3CachePlanner } from './store/cache.js';
import { S3LogStore } from './store/logs.js';
import {
  CONTENTS_PERMISSIONS,
  METADATA_PERMISSIONS,
  REPORTING_PERMISSIONS,
  createGitHubAccess,
  type GitHubAccess,
} from './github/access.js';
import { AppBuildReporter } from './github/build-reporter.js';
import { GitHubStatusReporter } from './github/statuses.js';
import { WebhookVerifier } from './github/webhook.js';
import { DynamoBuildStore } from './store/builds.js';
import { DynamoSettingsStore } from './store/settings.js';
import { KmsSecretCipher, type SecretCipher } from './store/secret-cipher.js';
import type { InstallationCheck, IntakeDependencies } from './controller/intake.js';
import { DynamoInstallationRegistry } from './store/installations.js';
import { DynamoApprovalStore } from './store/approvals.js';
import type { ApprovalCheck } from './controller/approval.js';
import { repositoryRoleOf } from './github/collaborators.js';
import type { GitHubApp } from './github/app-auth.js';
import { readRequestFailure } from './github/api-errors.js';
import { BuildNotifier, observeBuildStore, type BuildObserver } from './notify/observer.js';
import { SlackClient } from './notify/slack.js';
import { AwsSnsPublisher } from './notify/sns.js';
import type { BuildStreamDependencies } from './notify/stream.js';
import type { Logger } from './core/logger.js';
import type { BuildRecord } from './core/build.js';
import {
  type InstallationRegistry,
  type NodeVersionResolver,
  type RunnerInvoker,
  type StatusReporter,
} from './core/ports.js';
import { DynamoJobStore } from './store/jobs.js';
import { CodeBuildRemoteRunner } from './aws/codebuild.js';
import type { CodeBuildDependencies } from './controller/controller-dependencies.js';
import { stopRemoteRun, stopRemoteRunsOf } from './controller/codebuild-run.js';
import { sweepRemoteRun } from './controller/codebuild-finish.js';
import type { SweeperDependencies } from './controller/sweeper.js';
import { DynamoRemoteUsage, S3RemoteRunObjects, type RunnerBundleSource } from './store/remote-runs.js';
import { nodeArchOf, npmRegistryUrl, resolveNodeVersion } from './runner/node-registry.js';

export function createIntakeDependencies(
  config: LambkinConfig,
  logger: Logger,
  // Only the clients the webhook uses: the S3 client alone would add ~100 KB to its bundle.
  clients: Pick<AwsClients, 'documents' | 'lambda'> = {
    ...createDynamoClients(),
    lambda: createLambdaClient(),
  },
  // Only where the table has no stream (the local stack): in the cloud the notifier function
  // hears every change from the builds table's stream.
  observer?: BuildObserver,
): IntakeDependencies {
  const installations = new DynamoInstallationRegistry(clients.documents, config.settingsTable);
  const github = githubAccessFor(config, logger, installations);
  const builds = new DynamoBuildStore(clients.documents, config.buildsTable);
  const statuses = statusReporterFor(github);
  const stopRemote = remoteStopperFor(config, logger, clients.documents);
  return {
    ...(stopRemote ? { stopRemote } : {}),
    verifier: new WebhookVerifier(config.webhookSecrets),
    builds: observer ? observeBuildStore(builds, observer) : builds,
    // No cipher: the webhook reads only the build policy, and never decrypts a secret value.
    settings: new DynamoSettingsStore(clients.documents, config.settingsTable),
    statuses,
    controller: new LambdaControllerInvoker(clients.lambda, config.builderFunction),
    ...(github.app ? { installations: installationCheckFor(github.app, installations) } : {}),
    // Approving needs check runs (the button), so App mode only.
    ...(github.app && statuses instanceof AppBuildReporter
      ? {
          approvals: approvalCheckFor(
            github,
            statuses,
            new DynamoApprovalStore(clients.documents, config.settingsTable),
          ),
        }
      : {}),
    logger,
    publicUrl: config.publicUrl,
    queueTimeoutMs: config.queueTimeoutSeconds * 1000,
  };
}

/**
 * One access per configuration in a process: where one process holds the intake and the builder
 * (the local stack), they share their installation tokens rather than mint each their own.
 */
const accessByConfig = new WeakMap<LambkinConfig, GitHubAccess>();

/** The deployment's way into GitHub: its token, or (App mode) the App's installation per repository. */
export function githubAccessFor(
  config: LambkinConfig,
  logger: Logger,
  // Where installation ids are known without asking GitHub (the webhook's record of them).
  installations?: InstallationRegistry,
): GitHubAccess {
  const made = accessByConfig.get(config);
  if (made) return made;
  // Once per cold start, in the function's log: which mode this deployment is in.
  logger.info(describeGitHubMode(config), { githubApiUrl: config.githubApiUrl });
  const access = createGitHubAccess({
    baseUrl: config.githubApiUrl,
    logger,
    ...(installations ? { knownInstallation: (repo: string) => installations.installationOf(repo) } : {}),
    ...(config.githubAppId
      ? { app: { appId: config.githubAppId, privateKey: config.githubAppPrivateKey } }
      : config.githubToken
        ? { token: config.githubToken }
        : {}),
  });
  accessByConfig.set(config, access);
  return access;
}

/** The App's installations: the record first, then GitHub (404: not installed). */
function installationCheckFor(app: GitHubApp, registry: InstallationRegistry): InstallationCheck {
  return {
    registry,
    async lookUp(repo) {
      try {
        return await app.installationId(repo);
      } catch (error) {
        if (readRequestFailure(error).status === 404) return undefined;
        throw error;
      }
    },
  };
}

/** App mode: held commits, who may approve them (metadata read), and the approval's check run. */
function approvalCheckFor(
  github: GitHubAccess,
  reporter: AppBuildReporter,
  store: DynamoApprovalStore,
): ApprovalCheck {
  return {
    store,
    roleOf: (repo, login) => repositoryRoleOf(github.forRepo(repo, METADATA_PERMISSIONS), repo, login),
    setCheck: (target, check, policy) => reporter.setCheck(target, check, policy),
  };
}

/** Commit statuses; in App mode with the build's check run beside each. */
export function statusReporterFor(github: GitHubAccess): StatusReporter {
  // Statuses are bounded and retried by their reporter: no plugin queues (GitHubAccess.directForRepo).
  const statuses = new GitHubStatusReporter((repo) => github.directForRepo(repo, REPORTING_PERMISSIONS));
  return github.mode === 'app'
    ? new AppBuildReporter(
        statuses,
        (repo) => github.forRepo(repo, REPORTING_PERMISSIONS),
        github.app ? numericAppId(github.app) : undefined,
      )
    : statuses;
}

/** The App's numeric id: as configured, or (configured by its client id, `Iv…`) asked of GitHub once. */
function numericAppId(app: GitHubApp): () => Promise<number> {
  if (/^[0-9]+$/.test(String(app.appId))) {
    const id = Number(app.appId);
    return () => Promise.resolve(id);
  }
  let asked: Promise<number> | undefined;
  return () => {
    asked ??= app.appClient.rest.apps.getAuthenticated().then(({ data }) => {
      if (!data) throw new Error('GitHub did not say which App this is (GET /app)');
      return data.id;
    });
    asked.catch(() => (asked = undefined)); // asked again next time
    return asked;
  };
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
  // Trusted builds to the trusted runner function, every other build to the untrusted one.
  runner: RunnerInvoker = new TrustRoutedRunnerInvoker(
    new LambdaRunnerInvoker(clients.lambda, config.runnerFunction),
    new LambdaRunnerInvoker(clients.lambda, config.untrustedRunnerFunction),
  ),
  cipher: SecretCipher | undefined = settingsCipherFor(config),
  // As for the intake: the local stack's notifier; the cloud's is the stream's.
  observer?: BuildObserver,
  // Runs on CodeBuild: from LAMBKIN_CODEBUILD_* in the cloud; the local stack passes its endpoint's.
  codebuild: CodeBuildDependencies | undefined = codebuildFromEnvironment(config, clients),
): ControllerDependencies {
  const github = githubAccessFor(
    config,
    logger,
    new DynamoInstallationRegistry(clients.documents, config.settingsTable),
  );
  const contents = (repo: string) => github.forRepo(repo, CONTENTS_PERMISSIONS);
  const settings = new DynamoSettingsStore(clients.documents, config.settingsTable, cipher);
  const logs = new S3LogStore(clients.s3, config.bucket);
  const builds = new DynamoBuildStore(clients.documents, config.buildsTable);
  return {
    builds: observer ? observeBuildStore(builds, observer) : builds,
    settings,
    statuses: statusReporterFor(github),
    logs,
    archives: { resolveArchiveUrl: (repo, sha) => resolveArchiveUrl(contents(repo), repo, sha) },
    repoFiles: { readFile: (repo, path, ref) => readRepoFile(contents(repo), repo, path, ref) },
    cache: new S3CachePlanner(clients.s3, config.bucket, {
      lockfiles: { readLockfileBlob: (repo, sha) => readLockfileBlob(contents(repo), repo, sha) },
    }),
    ...stsDependencies(config),
    runner,
    jobs: new DynamoJobStore(clients.documents, config.buildsTable),
    // A build's jobs each get a controller of their own: this function invoked again, one job each.
    ...(selfFunction(config) !== undefined
      ? { jobInvoker: new LambdaControllerInvoker(clients.lambda, selfFunction(config) ?? '') }
      : {}),
    nodeVersions: nodeVersionResolver(),
    ...(config.jobConcurrency !== undefined ? { jobConcurrency: config.jobConcurrency } : {}),
    ...(codebuild ? { codebuild } : {}),
    logger,
    publicUrl: config.publicUrl,
    runnerTimeoutMs: config.runnerTimeoutSeconds * 1000,
    logLimitBytes: config.logLimitBytes,
  };
}

/**
 * The runner bundle the builder uploads for CodeBuild: `runner.mjs` beside this bundle
 * (scripts/build.mjs puts it beside the builder's index.mjs).
 */
export const runnerBesideBundle: RunnerBundleSource = () =>
  readFile(new URL('./runner.mjs', import.meta.url));

/** What runs on CodeBuild need, or undefined where no project is configured (CodeBuild is off). */
export function createCodeBuildDependencies(
  codebuildConfig: CodeBuildConfig,
  config: Pick<LambkinConfig, 'bucket' | 'settingsTable'>,
  clients: Pick<AwsClients, 'documents' | 's3'> & { codebuild?: ReturnType<typeof createCodeBuildClient> },
  runnerBundle: RunnerBundleSource = runnerBesideBundle,
): CodeBuildDependencies | undefined {
  if (!codebuildConfig.project) return undefined;
  return {
    platform: codebuildConfig,
    runner: new CodeBuildRemoteRunner(clients.codebuild ?? createCodeBuildClient()),
    objects: new S3RemoteRunObjects(clients.s3, config.bucket, runnerBundle),
    usage: new DynamoRemoteUsage(clients.documents, config.settingsTable),
  };
}

function codebuildFromEnvironment(
  config: LambkinConfig,
  clients: Pick<AwsClients, 'documents' | 's3'>,
): CodeBuildDependencies | undefined {
  return createCodeBuildDependencies(loadCodeBuildConfig(process.env), config, clients);
}

/**
 * The sweeper's part in CodeBuild runs, when CodeBuild is on: with the bucket and the settings table
 * (what finishing needs) a run CodeBuild reports ended is finished as its lost event would have;
 * without them an overdue run is only stopped, and the sweep ends its record like any overdue one.
 */
export function codebuildSweeper(
  config: LambkinConfig,
  logger: Logger,
): SweeperDependencies['remoteRuns'] | undefined {
  const codebuild = loadCodeBuildConfig(process.env);
  if (!codebuild.project) return undefined;
  if (config.bucket && config.settingsTable) {
    const deps = createControllerDependencies(config, logger);
    return { sweep: (record, name) => sweepRemoteRun(deps, record, name) };
  }
  const stopping = { codebuild: { runner: new CodeBuildRemoteRunner(createCodeBuildClient()) }, logger };
  return {
    sweep: async (record, name) => {
      await stopRemoteRun(stopping, record, name);
      return false;
    },
  };
}

/** Stops a cancelled build's CodeBuild runs (the webhook's supersede); undefined where CodeBuild is off. */
function remoteStopperFor(
  config: LambkinConfig,
  logger: Logger,
  documents: AwsClients['documents'],
): ((build: BuildRecord) => Promise<void>) | undefined {
  const codebuild = loadCodeBuildConfig(process.env);
  if (!codebuild.project) return undefined;
  const runner = new CodeBuildRemoteRunner(createCodeBuildClient());
  const jobs = new DynamoJobStore(documents, config.buildsTable);
  // Only StopBuild is used: the objects and the minutes are the completion's business.
  const deps = { codebuild: { runner }, logger, jobs };
  return (build) => stopRemoteRunsOf(deps, build);
}

/** The builder function's own name (Lambda sets it), else the configured one (the local stack's). */
function selfFunction(config: LambkinConfig): string | undefined {
  return process.env.AWS_LAMBDA_FUNCTION_NAME ?? (config.builderFunction || undefined);
}

/**
 * A matrix's `node` values to exact versions, from the registry npm would use (asked once per
 * process; a failure is asked again next time).
 */
export function nodeVersionResolver(): NodeVersionResolver {
  let registry: Promise<string> | undefined;
  return {
    async resolve(spec) {
      registry ??= npmRegistryUrl();
      const registryUrl = await registry.catch((error: unknown) => {
        registry = undefined;
        throw error;
      });
      return resolveNodeVersion(spec, { registryUrl, arch: nodeArchOf() });
    },
  };
}

/**
 * What follows a build's state change: the repository's page of recent builds is written again,
 * and Slack and SNS are told (src/notify/observer.ts). The notifier function runs it for each
 * change on the builds table's stream; the local stack, which has no stream, observes its stores
 * with it.
 */
export function createBuildNotifier(
  config: LambkinConfig,
  logger: Logger,
  clients: Pick<AwsClients, 'documents' | 's3'>,
  // Slack's token and webhook URL are sealed in the settings like secretEnv.
  cipher: SecretCipher | undefined = settingsCipherFor(config),
): BuildNotifier {
  return new BuildNotifier({
    settings: new DynamoSettingsStore(clients.documents, config.settingsTable, cipher),
    builds: new DynamoBuildStore(clients.documents, config.buildsTable),
    logs: new S3LogStore(clients.s3, config.bucket),
    slack: new SlackClient({ apiUrl: config.slackApiUrl }),
    sns: new AwsSnsPublisher(),
    logger,
    publicUrl: config.publicUrl,
  });
}

/** The notifier function's: the notifier, and the builds table for what a stream image lacks. */
export function createNotifierDependencies(
  config: LambkinConfig,
  logger: Logger,
  clients: Pick<AwsClients, 'documents' | 's3'> = { ...createDynamoClients(), s3: createS3Client() },
): BuildStreamDependencies {
  return {
    notifier: createBuildNotifier(config, logger, clients),
    builds: new DynamoBuildStore(clients.documents, config.buildsTable),
    logger,
  };
}

/**
 * What the functions that end builds outside the builder need (the sweeper, the on-failure
 * destination): the builds table and the commit statuses.
 */
export function createBuildEnderDependencies(
  config: LambkinConfig,
  logger: Logger,
): {
  builds: DynamoBuildStore;
  jobs: DynamoJobStore;
  statuses: StatusReporter;
  logger: Logger;
  publicUrl: string;
} {
  const { documents } = createDynamoClients();
  return {
    builds: new DynamoBuildStore(documents, config.buildsTable),
    jobs: new DynamoJobStore(documents, config.buildsTable),
    statuses: statusReporterFor(githubAccessFor(config, logger)),
    logger,
    publicUrl: config.publicUrl,
  };
}

/**
 * In AWS: the deploy role's assumer, and per-build upload credentials when the template names the
 * upload role. The local stack has no STS; it passes its own signer (src/local/stack.ts).
 */
function stsDependencies(config: LambkinConfig): Pick<ControllerDependencies, 'deployRoles' | 'signer'> {
  if (!process.env.AWS_LAMBDA_FUNCTION_NAME && !config.uploadRole) return {};
  const sts = createStsClient();
  const region = process.env.AWS_REGION ?? 'us-east-1';
  return {
    deployRoles: new StsDeployRoleGrants(sts, region),
    ...(config.uploadRole
      ? {
          signer: new StsBuildSigner(sts, {
            roleArn: config.uploadRole,
            bucket: config.bucket,
            s3: (credentials) => createS3Client({ credentials, region }),
          }),
        }
      : {}),
  };
}
