/**
 * The embedded local stack (`lambkin dev`): a DynamoDB-compatible and an S3-compatible server with
 * their data under the data dir, and one HTTP server that answers the webhook, the Lambda Invoke
 * API and the log viewer. The handlers are the cloud's: the webhook and log functions' own handlers
 * get API Gateway events (src/local/api-gateway-event.ts), the webhook invokes the builder through
 * `@aws-sdk/client-lambda` against this server, the builder function runs the controller, and the
 * controller starts the runner as a separate process with a clean environment. Every storage and
 * Invoke API request must be signed with the stack's key (src/local/stack-credentials.ts), which
 * only this process and `<data-dir>/stack.json` hold. The same server answers CodeBuild's API
 * (src/local/codebuild-service.ts) for builds set to run there: they run the same runner in the
 * same sandbox, and their completion events go to the CodeBuild events function, as EventBridge's
 * rule sends them in the cloud.
 */
import { availableParallelism } from 'node:os';
import { mkdir, readFile, writeFile, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { CreateTableCommand, ResourceInUseException } from '@aws-sdk/client-dynamodb';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { createAwsClients, createCodeBuildClient, createS3Client, type AwsClients } from '../aws/clients.js';
import { runControllerBuild, type ControllerDependencies } from '../controller/controller.js';
import { endFailedBuild } from '../controller/on-failure.js';
import { endCrashedJob } from '../controller/job-controller.js';
import { ProcessRunnerInvoker, TrustRoutedRunnerInvoker } from '../controller/runner-invoker.js';
import { DEPENDENCY_TREES_FOLDER, DependencyHandover } from '../controller/dependency-handover.js';
import { NPM_CACHES_FOLDER, NpmCacheHandover } from '../controller/npm-cache-handover.js';
import { loadCodeBuildConfig, loadConfig, type LambkinConfig } from '../config.js';
import { stopRemoteRunsOf } from '../controller/codebuild-run.js';
import { runnerProgram } from '../controller/runner-program.js';
import type { BuildRecord } from '../core/build.js';
import { createCodeBuildEventsHandler } from '../handlers/codebuild-events.js';
import { localEnvironment } from './local-config.js';
import type { IntakeDependencies } from '../controller/intake.js';
import { createWebhookHandler } from '../handlers/webhook.js';
import { LambkinError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { buildsTableDefinition, settingsTableDefinition } from '../store/tables.js';
import { DynamoSettingsStore, GLOBAL_SCOPE } from '../store/settings.js';
import { LocalSecretCipher } from '../store/secret-cipher.js';
import {
  createBuildNotifier,
  createCodeBuildDependencies,
  createControllerDependencies,
  createIntakeDependencies,
} from '../wiring.js';
import { InvokeCommand } from '@aws-sdk/client-lambda';
import { LocalLambdaService } from './lambda-service.js';
import { LocalCodeBuildService, type CodeBuildStateChangeEvent } from './codebuild-service.js';
import { createLogViewer } from './log-viewer.js';
import { answerWithHandler } from './api-gateway-event.js';
import { EphemeralBuildSigner } from './ephemeral-signer.js';
import { verifyHeaderSignature } from './request-signatures.js';
import { parseBuilderInvocation } from '../core/protocol.js';
import { type RemoteRunObjects, type RunnerInvoker, type SettingsStore } from '../core/ports.js';
import type { RunnerInput } from '../core/protocol.js';
import { STACK_FILE_NAME, STACK_FILE_VERSION, type StackFile } from './stack-file.js';
import { StackCredentials } from './stack-credentials.js';
import { startGuardedStorage } from './storage-proxy.js';
import { QueuedObserver } from '../notify/observer.js';

export const LOCAL_NAMES = {
  buildsTable: 'lambkin-builds',
  settingsTable: 'lambkin-settings',
  bucket: 'lambkin-logs',
  builderFunction: 'lambkin-builder',
  /** The CodeBuild projects (template.yaml's): the plain one and the privileged (Docker) one. */
  codebuildProject: 'lambkin-codebuild',
  codebuildDockerProject: 'lambkin-codebuild-docker',
  /** The function the CodeBuild completion events go to (src/handlers/codebuild-events.ts). */
  codebuildEventsFunction: 'lambkin-codebuild-events',
} as const;
export const LOCAL_REGION = 'us-east-1';

/** The stack's port is taken (another `lambkin dev`, another server): the CLI prints this line. */
export class PortInUseError extends LambkinError {
  constructor(
    readonly port: number,
    readonly host: string,
  ) {
    super(
      'PORT_IN_USE',
      `port ${port} on ${host} is in use (another \`lambkin dev\`?): stop that or pick a free port with --port, e.g. --port ${port === 65535 ? port - 1 : port + 1}`,
    );
  }
}

export interface LocalStackOptions {
  dataDir: string;
  /** Port of the webhook / Lambda / log viewer server; 0 picks a free one. Default 3000. */
  port?: number;
  host?: string;
  githubApiUrl: string;
  githubToken?: string;
  /** App mode: the App's id and its private key (PEM text, or a file holding it). */
  githubApp?: { appId: string; privateKey?: string; privateKeyFile?: string };
  webhookSecret: string;
  /** Async builds running at once. */
  concurrency?: number;
  /**
   * A sandbox per build (a uid, cgroup and PID namespace of its own: src/controller/build-sandbox.ts);
   * default: when started as root. Not as root, steps still get the runner's step sandbox.
   */
  buildSandbox?: boolean;
  /**
   * Build pull requests from forks even without the build sandbox (not run as root: every build
   * runs as the operator's own user). Off by default: such builds are refused, saying why.
   */
  allowUnsandboxedForks?: boolean;
  /** Async retry delays of the local Lambda service (Lambda: 1 min and 2 min; locally short). */
  retryDelaysMs?: number[];
  runnerTimeoutSeconds?: number;
  /**
   * The process environment: its documented variables that apply on a laptop (such as
   * LAMBKIN_SLACK_API_URL) are read, under the stack's own values (src/local/local-config.ts).
   */
  environment?: Readonly<Record<string, string | undefined>>;
  /**
   * The builder function answers every invoke and runs nothing, so no build ever starts: the
   * bench measures the webhook's intake alone this way (in the cloud it has a machine of its own).
   */
  builderSink?: boolean;
  /**
   * A CodeBuild minute is this many real minutes (tests: 0.01 makes CodeBuild's least timeout, 5
   * minutes, 3 s). Default 1.
   */
  codebuildTimeScale?: number;
  logger: Logger;
}

export interface LocalStack {
  file: StackFile;
  config: LambkinConfig;
  clients: AwsClients;
  controller: ControllerDependencies;
  intake: IntakeDependencies;
  /** The unpacked dependency trees kept between sandboxed builds (as root); undefined unsandboxed. */
  dependencyTrees: DependencyHandover | undefined;
  /** Resolves once no build is queued or running in the local Lambda service, nor a notification. */
  idle(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export async function startLocalStack(options: LocalStackOptions): Promise<LocalStack> {
  // The documented variables that apply locally, then the stack's own values on top. Checked once
  // before any server starts: a wrong LAMBKIN_SLACK_API_URL or GITHUB_API_URL would otherwise fail
  // with the servers already running.
  const environmentFor = (base: string): Record<string, string | undefined> => ({
    ...localEnvironment(options.environment ?? {}),
    LAMBKIN_BUILDS_TABLE: LOCAL_NAMES.buildsTable,
    LAMBKIN_SETTINGS_TABLE: LOCAL_NAMES.settingsTable,
    LAMBKIN_BUCKET: LOCAL_NAMES.bucket,
    LAMBKIN_BUILDER_FUNCTION: LOCAL_NAMES.builderFunction,
    LAMBKIN_CODEBUILD_PROJECT: LOCAL_NAMES.codebuildProject,
    LAMBKIN_CODEBUILD_DOCKER_PROJECT: LOCAL_NAMES.codebuildDockerProject,
    LAMBKIN_PUBLIC_URL: base,
    GITHUB_API_URL: options.githubApiUrl,
    ...(options.githubToken ? { GITHUB_TOKEN: options.githubToken } : {}),
    ...(options.githubApp
      ? {
          LAMBKIN_GITHUB_APP_ID: options.githubApp.appId,
          ...(options.githubApp.privateKey
            ? { LAMBKIN_GITHUB_APP_PRIVATE_KEY: options.githubApp.privateKey }
            : {}),
          ...(options.githubApp.privateKeyFile
            ? { LAMBKIN_GITHUB_APP_PRIVATE_KEY_FILE: options.githubApp.privateKeyFile }
            : {}),
        }
      : {}),
    LAMBKIN_WEBHOOK_SECRET: options.webhookSecret,
    ...(options.runnerTimeoutSeconds
      ? { LAMBKIN_RUNNER_TIMEOUT_SECONDS: String(options.runnerTimeoutSeconds) }
      : {}),
    // A CodeBuild build's limit, as the operator sets it for the cloud's functions.
    LAMBKIN_CODEBUILD_TIMEOUT_MINUTES: options.environment?.LAMBKIN_CODEBUILD_TIMEOUT_MINUTES,
  });
  const configFor = (base: string): LambkinConfig => loadConfig(environmentFor(base), ['webhookSecrets']);
  configFor('http://127.0.0.1');
  const codebuildConfig = loadCodeBuildConfig(environmentFor('http://127.0.0.1'));
  const dataDir = resolve(options.dataDir);
  const host = options.host ?? '127.0.0.1';
  // The data dir holds the stack's key (stack.json) and the secretEnv key: its owner's alone.
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  await mkdir(join(dataDir, 's3'), { recursive: true });
  await mkdir(join(dataDir, 'dynamodb'), { recursive: true });
  // Made anew at every start: only this process and the stack file (0600) hold it, never a build.
  const credentials = new StackCredentials();
  const storage = await startGuardedStorage({
    credentials,
    dynamoPath: join(dataDir, 'dynamodb'),
    s3Directory: join(dataDir, 's3'),
    host,
  });
  const stopAll = () => storage.stop();
  const dynamo = storage.dynamodb;
  const s3 = storage.s3;

  const http: Server = createServer();
  await new Promise<void>((resolveListen, reject) => {
    http.once('error', reject);
    http.listen(options.port ?? 3000, host, () => resolveListen());
  }).catch(async (error: NodeJS.ErrnoException) => {
    await stopAll();
    throw error.code === 'EADDRINUSE' ? new PortInUseError(options.port ?? 3000, host) : error;
  });
  const base = `http://${host}:${(http.address() as AddressInfo).port}`;

  const config = configFor(base);
  const clients = createAwsClients({
    region: LOCAL_REGION,
    credentials: credentials.stack,
    endpoints: { dynamodb: dynamo.endpoint, s3: s3.endpoint, lambda: base },
    ...(storage.dynamodbSocket !== undefined ? { dynamodbSocketPath: storage.dynamodbSocket } : {}),
  });
  await ensureStorage(clients, config);

  const buildSandbox = options.buildSandbox ?? process.getuid?.() === 0;
  // Builds and jobs at once: one per core (at least 2), as a machine of its own would run them.
  const concurrency = options.concurrency ?? Math.max(2, availableParallelism());
  const refusal = options.allowUnsandboxedForks ? undefined : untrustedBuildRefusal(buildSandbox);
  const runnerWorkRoot = join(
    '/tmp',
    buildSandbox ? 'lambkin-builds' : `lambkin-runner-${process.getuid?.() ?? 'user'}`,
  );
  // A runner is kept booted for the next build, as a warm Lambda container would be.
  // Sandboxed, each repository's trusted npm cache goes from build to build, as a warm runner's does,
  // and each cache key's unpacked dependency tree to the next build of the key.
  const dependencyHandover = buildSandbox
    ? new DependencyHandover({ dir: join(runnerWorkRoot, DEPENDENCY_TREES_FOLDER) })
    : undefined;
  const processRunner = new ProcessRunnerInvoker({
    sandbox: buildSandbox,
    workRoot: runnerWorkRoot,
    spare: true,
    ...(dependencyHandover
      ? {
          npmCaches: {
            handover: new NpmCacheHandover({ dir: join(runnerWorkRoot, NPM_CACHES_FOLDER) }),
            logger: options.logger,
          },
          dependencies: { handover: dependencyHandover, logger: options.logger },
        }
      : {}),
  });
  // The intake refuses untrusted builds here; so does the runner, for those that come another way
  // (`lambkin rebuild` of a fork's build queued while the stack ran as root or allowed them).
  const refusingRunner: RunnerInvoker = {
    run: () => Promise.reject(new Error(`untrusted build refused: ${refusal ?? ''}`)),
  };
  const runner =
    refusal === undefined ? processRunner : new TrustRoutedRunnerInvoker(processRunner, refusingRunner);
  // secretEnv values are sealed with a key kept in the data dir (src/store/secret-cipher.ts).
  const cipher = new LocalSecretCipher(dataDir);
  // No stream here: every store that changes builds (the intake's, the controller's, which the
  // on-failure hook uses too) tells the notifier itself, queued as the cloud's stream would be, so
  // that no webhook answer or final status waits for the page, Slack or SNS.
  const notifier = new QueuedObserver(
    createBuildNotifier(config, options.logger, clients, cipher),
    options.logger,
  );
  // Runs on CodeBuild go to this stack's endpoint; the bundle they fetch is the local runners' program.
  const codebuildBase = createCodeBuildDependencies(
    codebuildConfig,
    config,
    {
      ...clients,
      codebuild: createCodeBuildClient({
        region: LOCAL_REGION,
        credentials: credentials.stack,
        endpoints: { codebuild: base },
      }),
    },
    async () => readFile((await runnerProgram()).file),
  );
  // Without the sandbox, CodeBuild runs refuse untrusted builds as the runner processes do.
  const codebuildDeps =
    codebuildBase && refusal !== undefined
      ? { ...codebuildBase, objects: refusingUntrustedInputs(codebuildBase.objects, refusal) }
      : codebuildBase;
  const controller = {
    ...createControllerDependencies(config, options.logger, clients, runner, cipher, notifier, codebuildDeps),
    // Jobs queue in the local Lambda service: as many run at once as it runs invocations.
    jobConcurrency: concurrency,
    signer: new EphemeralBuildSigner(credentials, (buildKey) =>
      createS3Client({ region: LOCAL_REGION, credentials: buildKey, endpoints: { s3: s3.endpoint } }),
    ),
  };
  await defaultForksOff(new DynamoSettingsStore(clients.documents, config.settingsTable));
  const intake = {
    ...createIntakeDependencies(config, options.logger, clients, notifier),
    // A superseded or cancelled build's CodeBuild runs are stopped at this stack's endpoint.
    ...(codebuildDeps
      ? {
          stopRemote: (build: BuildRecord) =>
            stopRemoteRunsOf(
              { codebuild: codebuildDeps, logger: options.logger, jobs: controller.jobs },
              build,
            ),
        }
      : {}),
    ...(refusal !== undefined ? { refuseUntrustedBuilds: refusal } : {}),
  };

  /** A request to the stack's own APIs: signed with the stack's key, for this service. */
  const signedBy = (service: 'lambda' | 'codebuild') => (request: IncomingMessage, body: Uint8Array) =>
    verifyHeaderSignature(
      { method: request.method ?? 'POST', url: request.url ?? '/', headers: request.headers },
      body,
      { credentials, service },
    );
  const lambda = new LocalLambdaService({
    concurrency,
    ...(options.retryDelaysMs ? { retryDelaysMs: options.retryDelaysMs } : {}),
    logger: options.logger,
    onFailure: async (failure) =>
      void (await endFailedBuild(
        {
          ...controller,
          jobController: {
            endCrashedJob: async (build, job, reason) => {
              const ended = await endCrashedJob(controller, { ...build, job }, reason);
              const record = ended ? await controller.builds.getBuild(build) : undefined;
              return record ? { build: record } : undefined;
            },
          },
        },
        failure,
      )),
    // The webhook's (and the CLI's) Lambda client signs with the stack's key; nothing else invokes.
    authenticate: signedBy('lambda'),
  });
  // CodeBuild's API on the same server: builds set to run there get the same sandbox as the runner
  // processes; their state changes go to the events function as the EventBridge rule's async invoke.
  const codebuild = new LocalCodeBuildService({
    projects: [
      { name: LOCAL_NAMES.codebuildProject },
      // Recorded as privileged; the local sandbox has no Docker daemon.
      { name: LOCAL_NAMES.codebuildDockerProject, privilegedMode: true },
    ],
    region: LOCAL_REGION,
    accountId: lambda.accountId,
    authenticate: signedBy('codebuild'),
    sandbox: buildSandbox,
    workRoot: runnerWorkRoot,
    ...(options.codebuildTimeScale !== undefined ? { timeScale: options.codebuildTimeScale } : {}),
    onEvent: async (event: CodeBuildStateChangeEvent) => {
      if (!lambda.has(LOCAL_NAMES.codebuildEventsFunction)) return;
      await clients.lambda.send(
        new InvokeCommand({
          FunctionName: LOCAL_NAMES.codebuildEventsFunction,
          InvocationType: 'Event',
          Payload: new TextEncoder().encode(JSON.stringify(event)),
        }),
      );
    },
    logger: options.logger,
  });
  // The EventBridge rule's target: the cloud's handler, given this stack's controller.
  lambda.register(
    LOCAL_NAMES.codebuildEventsFunction,
    createCodeBuildEventsHandler(() => {
      // As in the cloud: finishing a run starts no job (the events function is not the builder).
      const { jobInvoker: _none, ...deps } = controller;
      return deps;
    }),
  );
  lambda.register(
    LOCAL_NAMES.builderFunction,
    options.builderSink
      ? async (payload) => ({ sunk: parseBuilderInvocation(payload) })
      : async (payload) => runControllerBuild(controller, parseBuilderInvocation(payload)),
  );

  // The API's routes: the webhook function at /webhook, the log function for the rest.
  const webhook = createWebhookHandler(() => intake);
  const logViewer = createLogViewer({
    builds: controller.builds,
    logs: controller.logs,
    s3: clients.s3,
    bucket: config.bucket,
    logger: options.logger,
  });
  http.on('request', (request: IncomingMessage, response: ServerResponse) => {
    if (lambda.handle(request, response)) return;
    if (codebuild.handle(request, response)) return;
    // The raw path, as API Gateway matches routes: `/builds/../webhook` is not the webhook.
    const path = (request.url ?? '/').split('?')[0];
    if (path === '/webhook') {
      void answerWithHandler(webhook, request, response, { logger: options.logger });
      return;
    }
    logViewer(request, response);
  });

  const file: StackFile = {
    version: STACK_FILE_VERSION,
    pid: process.pid,
    endpoints: {
      webhook: `${base}/webhook`,
      dynamodb: dynamo.endpoint,
      s3: s3.endpoint,
      lambda: base,
      logs: `${base}/builds`,
    },
    tables: { builds: config.buildsTable, settings: config.settingsTable },
    bucket: config.bucket,
    builderFunction: config.builderFunction,
    publicUrl: base,
    region: LOCAL_REGION,
    credentials: credentials.stack,
  };
  // It holds the stack's key: readable by its owner only. A file left by an earlier stack is removed
  // first, as writing into it would keep its old mode.
  const stackFilePath = join(dataDir, STACK_FILE_NAME);
  await rm(stackFilePath, { force: true });
  await writeFile(stackFilePath, JSON.stringify(file, null, 2) + '\n', { mode: 0o600, flag: 'wx' });

  return {
    file,
    config,
    clients,
    controller,
    intake,
    dependencyTrees: dependencyHandover,
    idle: async (timeoutMs) => {
      // A builder may start a CodeBuild build, whose end invokes the events function: both quiet.
      do {
        await lambda.idle(timeoutMs);
        await codebuild.idle(timeoutMs);
        await lambda.idle(timeoutMs);
      } while (codebuild.runningBuilds > 0);
      await notifier.drained();
    },
    stop: async () => {
      // CodeBuild builds first: their STOPPED events still reach the events function.
      await codebuild.close();
      // Running builds' runners are stopped; their controllers, which the local Lambda waits for,
      // then record how they ended.
      await processRunner.close();
      await lambda.close();
      await notifier.drained();
      http.closeAllConnections();
      await new Promise<void>((done) => http.close(() => done()));
      await stopAll();
      await rm(join(dataDir, STACK_FILE_NAME), { force: true });
    },
  };
}

/**
 * On a laptop, pull requests from forks would run strangers' code on the owner's machine: off
 * unless the user turned them on (the setting is written, so `lambkin config get` shows it).
 */
async function defaultForksOff(store: SettingsStore): Promise<void> {
  const global = await store.get(GLOBAL_SCOPE);
  if (global?.build?.pullRequests?.forks !== undefined) return;
  await store.update(GLOBAL_SCOPE, (current) => ({
    ...current,
    build: { ...current.build, pullRequests: { ...current.build?.pullRequests, forks: false } },
  }));
}

/**
 * Why untrusted builds are refused on this stack, or undefined where its sandbox holds. Without the
 * build sandbox (not run as root) every build runs as the operator's own user: a fork's steps could
 * read the operator's files (docs/security.md lists what holds where).
 */
export function untrustedBuildRefusal(buildSandbox: boolean): string | undefined {
  if (buildSandbox) return undefined;
  return (
    'pull requests from forks are not built by a stack that is not run as root: every build would ' +
    "run as your own user, able to read your files and other builds'. Run 'lambkin dev' as " +
    "root, or accept that with 'lambkin dev --allow-unsandboxed-forks' (docs/security.md)"
  );
}

/**
 * The run objects of a stack that refuses untrusted builds: an untrusted build's input is never
 * written, so its CodeBuild run never starts (the controller ends the build `error`, saying why).
 */
export function refusingUntrustedInputs(objects: RemoteRunObjects, refusal: string): RemoteRunObjects {
  return {
    putInput: async (key, body) => {
      const input = JSON.parse(body) as Partial<RunnerInput>;
      if (input.build?.trusted !== true) throw new Error(`untrusted build refused: ${refusal}`);
      await objects.putInput(key, body);
    },
    presignInput: (key, expiresIn) => objects.presignInput(key, expiresIn),
    presignOutcome: (key, expiresIn) => objects.presignOutcome(key, expiresIn),
    readOutcome: (key) => objects.readOutcome(key),
    remove: (keys) => objects.remove(keys),
    runnerBundle: (expiresIn) => objects.runnerBundle(expiresIn),
  };
}

async function ensureStorage(clients: AwsClients, config: LambkinConfig): Promise<void> {
  for (const definition of [
    buildsTableDefinition(config.buildsTable),
    settingsTableDefinition(config.settingsTable),
  ]) {
    try {
      await clients.dynamodb.send(new CreateTableCommand(definition));
    } catch (error) {
      if (!(error instanceof ResourceInUseException) && (error as Error).name !== 'ResourceInUseException')
        throw error;
    }
  }
  try {
    await clients.s3.send(new CreateBucketCommand({ Bucket: config.bucket }));
  } catch (error) {
    const name = (error as Error).name;
    if (name !== 'BucketAlreadyOwnedByYou' && name !== 'BucketAlreadyExists') throw error;
  }
}
