/**
 * The local CodeBuild endpoint: answers CodeBuild's JSON 1.1 API (`X-Amz-Target:
 * CodeBuild_20161006.StartBuild | BatchGetBuilds | StopBuild`) the way the service does, so the
 * controller's `@aws-sdk/client-codebuild` talks to it unchanged (AWS_ENDPOINT_URL_CODEBUILD).
 *
 * StartBuild performs the project's buildspec itself (template.yaml holds the same three steps):
 * it downloads the runner bundle from LAMBKIN_RUNNER_URL, checks its sha256 against
 * LAMBKIN_RUNNER_SHA256 (a mismatch fails the build without running anything), and runs
 * `node <bundle> --input-url $LAMBKIN_RUNNER_INPUT_URL` in a build sandbox of its own, as the
 * local Lambda runners run (src/local/sandboxed-program.ts). The build ends SUCCEEDED when the
 * program exits 0, FAILED otherwise, TIMED_OUT past its timeout, STOPPED on StopBuild; then the
 * "CodeBuild Build State Change" event goes to `onEvent`, as EventBridge would send it.
 */
import { formatCodeBuildEventTime } from '../core/codebuild-time.js';
import { createHash, randomUUID } from 'node:crypto';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import type { BuildSandboxOptions } from '../controller/build-sandbox.js';
import { LambkinError, messageOf } from '../core/errors.js';
import { RUNNER_NODE_OPTIONS } from '../core/protocol.js';
import type { Logger } from '../core/logger.js';
import { readBody } from './lambda-service.js';
import type { SignatureVerdict } from './request-signatures.js';
import { startSandboxedProgram, type SandboxedProgram } from './sandboxed-program.js';

export const CODEBUILD_TARGET_PREFIX = 'CodeBuild_20161006.';

/** The buildspec of the project (template.yaml's); the endpoint performs these steps itself. */
export const LAMBKIN_BUILDSPEC = [
  'version: 0.2',
  'phases:',
  '  build:',
  '    commands:',
  '      - curl -fsS --retry 3 -o /tmp/lambkin-runner.mjs "$LAMBKIN_RUNNER_URL"',
  '      - echo "$LAMBKIN_RUNNER_SHA256  /tmp/lambkin-runner.mjs" | sha256sum -c -',
  `      - node ${RUNNER_NODE_OPTIONS} /tmp/lambkin-runner.mjs --input-url "$LAMBKIN_RUNNER_INPUT_URL"`,
  '',
].join('\n');

export type BuildStatus = 'SUCCEEDED' | 'FAILED' | 'FAULT' | 'TIMED_OUT' | 'IN_PROGRESS' | 'STOPPED';
type FinalStatus = Exclude<BuildStatus, 'IN_PROGRESS'>;

export type BuildPhaseType =
  | 'SUBMITTED'
  | 'QUEUED'
  | 'PROVISIONING'
  | 'DOWNLOAD_SOURCE'
  | 'INSTALL'
  | 'PRE_BUILD'
  | 'BUILD'
  | 'POST_BUILD'
  | 'UPLOAD_ARTIFACTS'
  | 'FINALIZING'
  | 'COMPLETED';

export interface EnvironmentVariable {
  name: string;
  value: string;
  type: 'PLAINTEXT' | 'PARAMETER_STORE' | 'SECRETS_MANAGER';
}

/** A project the endpoint knows (template.yaml's CodeBuild projects). */
export interface LocalCodeBuildProject {
  name: string;
  /** The Docker project. Locally recorded only: the sandbox has no Docker daemon. */
  privilegedMode?: boolean;
  image?: string;
  computeType?: string;
  /** The project's own limit; StartBuild's timeoutInMinutesOverride replaces it. Default 60. */
  timeoutInMinutes?: number;
}

/** The "CodeBuild Build State Change" event, as EventBridge delivers it to a Lambda function. */
export interface CodeBuildStateChangeEvent {
  version: '0';
  id: string;
  'detail-type': 'CodeBuild Build State Change';
  source: 'aws.codebuild';
  account: string;
  time: string;
  region: string;
  resources: string[];
  detail: {
    'build-status': BuildStatus;
    'project-name': string;
    'build-id': string;
    'current-phase': BuildPhaseType;
    'current-phase-context': string;
    version: string;
    'additional-information': {
      'build-complete': boolean;
      'build-number': number;
      initiator: string;
      'build-start-time': string;
      'timeout-in-minutes': number;
      'queued-timeout-in-minutes': number;
      environment: {
        image: string;
        'privileged-mode': boolean;
        'compute-type': string;
        type: string;
        'environment-variables': EnvironmentVariable[];
        'image-pull-credentials-type': string;
      };
      source: { type: string; buildspec: string };
      logs: { 'deep-link': string };
      phases: Array<{
        'phase-context'?: string[];
        'start-time': string;
        'end-time'?: string;
        'duration-in-seconds'?: number;
        'phase-type': BuildPhaseType;
        'phase-status'?: string;
      }>;
    };
  };
}

export interface LocalCodeBuildOptions {
  projects: readonly LocalCodeBuildProject[];
  region?: string;
  accountId?: string;
  /** Checks a request's SigV4 signature (the stack's key); unset: every request is served. */
  authenticate?: (request: IncomingMessage, body: Buffer) => Promise<SignatureVerdict>;
  /** Gets every state change (IN_PROGRESS, then the final one), as the EventBridge rule would. */
  onEvent?: (event: CodeBuildStateChangeEvent) => Promise<void>;
  /** A sandbox per build (as root), as the local Lambda runners get; default off. */
  sandbox?: boolean | BuildSandboxOptions;
  /** Parent of the builds' work areas. */
  workRoot?: string;
  /**
   * Minutes are this many real minutes: tests shrink a 5-minute limit (CodeBuild's least) to
   * seconds with e.g. 0.005. Default 1.
   */
  timeScale?: number;
  /** Largest runner bundle downloaded. Default 64 MiB. */
  maxBundleBytes?: number;
  logger: Logger;
}

/** `idle()` or `close()` ran out of time with builds still running. */
export class LocalCodeBuildBusyError extends LambkinError {
  constructor(timeoutMs: number, running: readonly string[]) {
    super(
      'LOCAL_CODEBUILD_BUSY',
      `The local CodeBuild endpoint still ran ${running.length} build(s) after ${timeoutMs} ms ` +
        `(${running.join(', ')}): stop them (StopBuild or \`lambkin cancel\`) or wait longer.`,
    );
  }
}

interface ApiError {
  status: number;
  type: string;
  message: string;
}

const invalidInput = (message: string): ApiError => ({ status: 400, type: 'InvalidInputException', message });

const IDEMPOTENCY_WINDOW_MS = 5 * 60 * 1000;
const MAX_REQUEST_BYTES = 1024 * 1024;
const DEFAULT_MAX_BUNDLE_BYTES = 64 * 1024 * 1024;
const MIN_TIMEOUT_MINUTES = 5;
const MAX_TIMEOUT_MINUTES = 2160;
const COMPUTE_TYPES = new Set([
  'BUILD_GENERAL1_SMALL',
  'BUILD_GENERAL1_MEDIUM',
  'BUILD_GENERAL1_LARGE',
  'BUILD_GENERAL1_XLARGE',
  'BUILD_GENERAL1_2XLARGE',
  'BUILD_LAMBDA_1GB',
  'BUILD_LAMBDA_2GB',
  'BUILD_LAMBDA_4GB',
  'BUILD_LAMBDA_8GB',
  'BUILD_LAMBDA_10GB',
]);
const DEFAULT_IMAGE = 'aws/codebuild/standard:7.0';
const STOP_WAIT_MS = 15_000;

interface Phase {
  phaseType: BuildPhaseType;
  phaseStatus?: 'SUCCEEDED' | 'FAILED' | 'FAULT' | 'TIMED_OUT' | 'STOPPED' | 'IN_PROGRESS';
  startTime: number;
  endTime?: number;
  durationInSeconds?: number;
  contexts?: Array<{ statusCode: string; message: string }>;
}

interface LocalBuild {
  id: string;
  arn: string;
  buildNumber: number;
  project: LocalCodeBuildProject;
  startTime: number;
  endTime?: number;
  status: BuildStatus;
  phases: Phase[];
  environmentVariables: EnvironmentVariable[];
  image: string;
  computeType: string;
  timeoutInMinutes: number;
  initiator: string;
  /** Why it ended, once it has (the reason a stop or a timeout gave). */
  ending?: { status: FinalStatus; message: string };
  /** Ends the run early (StopBuild, the timeout, close). */
  stop: AbortController;
  /** Resolves when the build is complete and its event delivered. */
  done: Promise<void>;
}

const nowSeconds = (): number => Date.now() / 1000;

export class LocalCodeBuildService {
  readonly region: string;
  readonly accountId: string;
  private readonly projects = new Map<string, LocalCodeBuildProject>();
  private readonly builds = new Map<string, LocalBuild>();
  private readonly idempotency = new Map<string, { request: string; buildId: string; at: number }>();
  private readonly buildNumbers = new Map<string, number>();
  private readonly running = new Set<LocalBuild>();
  private readonly timeScale: number;
  private closing = false;

  constructor(private readonly options: LocalCodeBuildOptions) {
    this.region = options.region ?? 'us-east-1';
    this.accountId = options.accountId ?? '123456789012';
    this.timeScale = options.timeScale ?? 1;
    for (const project of options.projects) this.projects.set(project.name, project);
  }

  projectArn(name: string): string {
    return `arn:aws:codebuild:${this.region}:${this.accountId}:project/${name}`;
  }

  /**
   * Node http handler (mount it in any server): true when the request is a CodeBuild call (by its
   * `X-Amz-Target`), false to let the caller route it elsewhere. Bound.
   */
  readonly handle = (request: IncomingMessage, response: ServerResponse): boolean => {
    const target = request.headers['x-amz-target'];
    if (typeof target !== 'string' || !target.startsWith(CODEBUILD_TARGET_PREFIX)) return false;
    this.serve(request, response, target.slice(CODEBUILD_TARGET_PREFIX.length)).catch((error: unknown) => {
      this.options.logger.error('local CodeBuild failed to answer a request', { target, error });
      if (response.headersSent) response.destroy();
      else writeError(response, { status: 500, type: 'InternalFailure', message: 'internal error' });
    });
    return true;
  };

  /** Builds running now. */
  get runningBuilds(): number {
    return this.running.size;
  }

  /** Resolves once no build runs (and every event is delivered). */
  async idle(timeoutMs = 30_000): Promise<void> {
    const pending = [...this.running];
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    const result = await Promise.race([Promise.all(pending.map((build) => build.done)), timedOut]);
    clearTimeout(timer);
    if (result === 'timeout') {
      throw new LocalCodeBuildBusyError(
        timeoutMs,
        [...this.running].map((build) => build.id),
      );
    }
    if (this.running.size > 0) await this.idle(timeoutMs);
  }

  /** Refuses new builds and stops the running ones (STOPPED, their sandboxes torn down). */
  async close(): Promise<void> {
    this.closing = true;
    for (const build of this.running) this.end(build, 'STOPPED', 'The local stack stopped.');
    await Promise.all([...this.running].map((build) => build.done));
  }

  private async serve(request: IncomingMessage, response: ServerResponse, operation: string): Promise<void> {
    const body = await readBody(request, MAX_REQUEST_BYTES);
    if (body === undefined) return; // the caller went away
    if (body === 'too large') {
      writeError(response, {
        status: 413,
        type: 'RequestEntityTooLargeException',
        message: 'Request too large',
      });
      return;
    }
    if (this.options.authenticate) {
      const verdict = await this.options.authenticate(request, body);
      if (!verdict.ok) {
        writeError(response, {
          status: 400,
          type: 'InvalidSignatureException',
          message: `Refused by the Lambkin local stack: ${verdict.reason}.`,
        });
        return;
      }
    }
    let input: Record<string, unknown>;
    try {
      const parsed: unknown = JSON.parse(body.length === 0 ? '{}' : body.toString('utf8'));
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
        throw new Error('not an object');
      input = parsed as Record<string, unknown>;
    } catch {
      writeError(response, {
        status: 400,
        type: 'SerializationException',
        message: 'The body is not a JSON object',
      });
      return;
    }
    const answer =
      operation === 'StartBuild'
        ? this.startBuild(input, body.toString('utf8'))
        : operation === 'BatchGetBuilds'
          ? this.batchGetBuilds(input)
          : operation === 'StopBuild'
            ? await this.stopBuild(input)
            : ({
                status: 400,
                type: 'UnknownOperationException',
                message: `The local CodeBuild endpoint does not implement ${operation}`,
              } satisfies ApiError);
    if ('type' in answer) writeError(response, answer);
    else writeJson(response, 200, answer.body);
  }

  private startBuild(input: Record<string, unknown>, requestText: string): ApiError | { body: unknown } {
    if (this.closing)
      return { status: 503, type: 'ServiceUnavailableException', message: 'The local stack is stopping' };
    const projectName = input.projectName;
    if (typeof projectName !== 'string' || projectName.length === 0)
      return invalidInput(
        "1 validation error detected: Value null at 'projectName' failed to satisfy constraint: Member must not be null",
      );
    const project = this.projects.get(projectName);
    if (!project)
      return {
        status: 400,
        type: 'ResourceNotFoundException',
        message: `Project cannot be found: ${this.projectArn(projectName)}`,
      };

    const token = input.idempotencyToken;
    if (token !== undefined) {
      if (typeof token !== 'string' || token.length === 0 || token.length > 512)
        return invalidInput('idempotencyToken must be a string of 1 to 512 characters');
      this.forgetOldTokens();
      const earlier = this.idempotency.get(token);
      if (earlier) {
        if (earlier.request !== requestText)
          return invalidInput(
            'The idempotency token was used with different parameters within the last 5 minutes',
          );
        const build = this.builds.get(earlier.buildId);
        if (build) return { body: { build: this.describe(build) } };
      }
    }

    const variables = parseVariables(input.environmentVariablesOverride);
    if (typeof variables === 'string') return invalidInput(variables);
    const computeType = input.computeTypeOverride ?? project.computeType ?? 'BUILD_GENERAL1_SMALL';
    if (typeof computeType !== 'string' || !COMPUTE_TYPES.has(computeType))
      return invalidInput(`Invalid compute type: ${String(computeType)}`);
    const image = input.imageOverride ?? project.image ?? DEFAULT_IMAGE;
    if (typeof image !== 'string' || image.length === 0)
      return invalidInput('imageOverride must be a string');
    const timeout = input.timeoutInMinutesOverride ?? project.timeoutInMinutes ?? 60;
    if (
      typeof timeout !== 'number' ||
      !Number.isInteger(timeout) ||
      timeout < MIN_TIMEOUT_MINUTES ||
      timeout > MAX_TIMEOUT_MINUTES
    ) {
      return invalidInput(
        `1 validation error detected: Value '${String(timeout)}' at 'timeoutInMinutesOverride' failed to ` +
          `satisfy constraint: Member must have value between ${MIN_TIMEOUT_MINUTES} and ${MAX_TIMEOUT_MINUTES}`,
      );
    }

    const uuid = randomUUID();
    const id = `${project.name}:${uuid}`;
    const buildNumber = (this.buildNumbers.get(project.name) ?? 0) + 1;
    this.buildNumbers.set(project.name, buildNumber);
    const startTime = nowSeconds();
    const build: LocalBuild = {
      id,
      arn: `arn:aws:codebuild:${this.region}:${this.accountId}:build/${id}`,
      buildNumber,
      project,
      startTime,
      status: 'IN_PROGRESS',
      phases: [
        {
          phaseType: 'SUBMITTED',
          phaseStatus: 'SUCCEEDED',
          startTime,
          endTime: startTime,
          durationInSeconds: 0,
        },
        { phaseType: 'QUEUED', startTime },
      ],
      environmentVariables: variables,
      image,
      computeType,
      timeoutInMinutes: timeout,
      initiator: 'lambkin-local',
      stop: new AbortController(),
      done: Promise.resolve(),
    };
    this.builds.set(id, build);
    if (token !== undefined)
      this.idempotency.set(token as string, { request: requestText, buildId: id, at: Date.now() });
    this.running.add(build);
    build.done = this.run(build).finally(() => this.running.delete(build));
    return { body: { build: this.describe(build) } };
  }

  private batchGetBuilds(input: Record<string, unknown>): ApiError | { body: unknown } {
    const ids = input.ids;
    if (
      !Array.isArray(ids) ||
      ids.length === 0 ||
      ids.length > 100 ||
      !ids.every((id) => typeof id === 'string')
    )
      return invalidInput('ids must be a list of 1 to 100 build ids');
    const builds: unknown[] = [];
    const buildsNotFound: string[] = [];
    for (const id of ids as string[]) {
      const build = this.find(id);
      if (build) builds.push(this.describe(build));
      else buildsNotFound.push(id);
    }
    return { body: { builds, buildsNotFound } };
  }

  private async stopBuild(input: Record<string, unknown>): Promise<ApiError | { body: unknown }> {
    const id = input.id;
    if (typeof id !== 'string' || id.length === 0) return invalidInput('id is required');
    const build = this.find(id);
    if (!build)
      return { status: 400, type: 'ResourceNotFoundException', message: `Build ${id} does not exist` };
    if (build.status === 'IN_PROGRESS') {
      this.end(build, 'STOPPED', 'Build was stopped by a StopBuild request.');
      // Answered once the sandbox is gone: whoever stopped it may count on nothing of it still running.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([build.done, new Promise((resolve) => (timer = setTimeout(resolve, STOP_WAIT_MS)))]);
      clearTimeout(timer);
    }
    return { body: { build: this.describe(build) } };
  }

  private find(idOrArn: string): LocalBuild | undefined {
    const prefix = `arn:aws:codebuild:${this.region}:${this.accountId}:build/`;
    return this.builds.get(idOrArn.startsWith(prefix) ? idOrArn.slice(prefix.length) : idOrArn);
  }

  private forgetOldTokens(): void {
    const oldest = Date.now() - IDEMPOTENCY_WINDOW_MS;
    for (const [token, entry] of this.idempotency) if (entry.at < oldest) this.idempotency.delete(token);
  }

  /** Ends a running build early (the run notices through its signal). First reason wins. */
  private end(build: LocalBuild, status: FinalStatus, message: string): void {
    if (build.ending || build.status !== 'IN_PROGRESS') return;
    build.ending = { status, message };
    build.stop.abort(new Error(message));
  }

  /** Closes the current phase and opens the next one. */
  private enter(build: LocalBuild, next: BuildPhaseType): void {
    const now = nowSeconds();
    const current = build.phases[build.phases.length - 1];
    if (current && current.endTime === undefined) closePhase(current, 'SUCCEEDED', now);
    build.phases.push({ phaseType: next, startTime: now });
  }

  private async run(build: LocalBuild): Promise<void> {
    const { logger } = this.options;
    const timeoutMs = build.timeoutInMinutes * 60_000 * this.timeScale;
    const timer = setTimeout(
      () => this.end(build, 'TIMED_OUT', `Build timed out after ${build.timeoutInMinutes} minutes.`),
      timeoutMs,
    );
    await this.emit(build);
    let status: FinalStatus;
    let failure: string | undefined;
    try {
      const exit = await this.perform(build);
      status = exit === 0 ? 'SUCCEEDED' : 'FAILED';
      if (exit !== 0)
        failure =
          `Error while executing command: node ${RUNNER_NODE_OPTIONS} /tmp/lambkin-runner.mjs --input-url "$LAMBKIN_RUNNER_INPUT_URL". ` +
          `Reason: exit status ${exit}`;
    } catch (error) {
      status = 'FAILED';
      failure = messageOf(error);
      if (!(error instanceof BuildCommandError) && !build.ending) {
        status = 'FAULT';
        logger.error('local CodeBuild could not run a build', { build: build.id, error });
      }
    } finally {
      clearTimeout(timer);
    }
    // A stop or a timeout decides, whatever the killed program answered.
    if (build.ending) {
      status = build.ending.status;
      failure = build.ending.message;
    }
    const now = nowSeconds();
    const current = build.phases[build.phases.length - 1];
    if (current && current.endTime === undefined) {
      closePhase(current, status === 'SUCCEEDED' ? 'SUCCEEDED' : status, now, failure);
    }
    for (const phase of ['POST_BUILD', 'UPLOAD_ARTIFACTS', 'FINALIZING'] as const) {
      if (status === 'SUCCEEDED' || status === 'FAILED') {
        build.phases.push({
          phaseType: phase,
          phaseStatus: 'SUCCEEDED',
          startTime: now,
          endTime: now,
          durationInSeconds: 0,
        });
      }
    }
    build.phases.push({ phaseType: 'COMPLETED', startTime: now });
    build.endTime = now;
    build.status = status;
    logger.info('local CodeBuild build ended', {
      build: build.id,
      status,
      ...(failure ? { reason: failure } : {}),
    });
    await this.emit(build);
  }

  /** The buildspec's three steps; the program's exit code. Throws BuildCommandError when a step fails. */
  private async perform(build: LocalBuild): Promise<number | null> {
    const signal = build.stop.signal;
    const variable = (name: string): string =>
      build.environmentVariables.find((entry) => entry.name === name)?.value ?? '';
    this.enter(build, 'PROVISIONING');
    this.enter(build, 'DOWNLOAD_SOURCE');
    this.enter(build, 'INSTALL');
    this.enter(build, 'PRE_BUILD');
    this.enter(build, 'BUILD');
    const bundle = await this.download(variable('LAMBKIN_RUNNER_URL'), signal);
    const digest = createHash('sha256').update(bundle).digest('hex');
    if (digest !== variable('LAMBKIN_RUNNER_SHA256').trim().toLowerCase()) {
      throw new BuildCommandError(
        'Error while executing command: echo "$LAMBKIN_RUNNER_SHA256  /tmp/lambkin-runner.mjs" | sha256sum -c -. ' +
          `Reason: exit status 1 (the runner bundle's sha256 is ${digest})`,
      );
    }
    if (signal.aborted) return null;
    // Root's, readable by the build's user, changeable by nobody else: the build runs what was checked.
    const dir = await mkdtemp(join('/tmp', 'lambkin-codebuild-'));
    let program: SandboxedProgram | undefined;
    try {
      const file = join(dir, 'lambkin-runner.mjs');
      await writeFile(file, bundle, { mode: 0o444 });
      await chmod(dir, 0o755);
      if (signal.aborted) return null;
      program = await startSandboxedProgram(
        [process.execPath, RUNNER_NODE_OPTIONS, file, '--input-url', variable('LAMBKIN_RUNNER_INPUT_URL')],
        {
          cwd: dir,
          ...(this.options.sandbox !== undefined ? { sandbox: this.options.sandbox } : {}),
          ...(this.options.workRoot !== undefined ? { workRoot: this.options.workRoot } : {}),
        },
      );
      const started = program;
      const onAbort = (): void => void started.kill();
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
      const { code, signal: exitSignal } = await started.exit.finally(() =>
        signal.removeEventListener('abort', onAbort),
      );
      await started.kill(); // whatever it left running goes with its sandbox
      if (code !== 0 && !signal.aborted) {
        this.options.logger.warn('local CodeBuild runner exited unsuccessfully', {
          build: build.id,
          code,
          signal: exitSignal,
          output: started.output().slice(-2000),
        });
      }
      return code ?? 128;
    } finally {
      await program?.kill();
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** `curl -fsS --retry 3`: an HTTP error or a broken connection fails the step. */
  private async download(url: string, signal: AbortSignal): Promise<Buffer> {
    const limit = this.options.maxBundleBytes ?? DEFAULT_MAX_BUNDLE_BYTES;
    const step =
      'Error while executing command: curl -fsS --retry 3 -o /tmp/lambkin-runner.mjs "$LAMBKIN_RUNNER_URL".';
    if (!/^https?:\/\//.test(url))
      throw new BuildCommandError(`${step} Reason: exit status 3 (no valid URL)`);
    let lastError = '';
    for (let attempt = 0; attempt < 4; attempt++) {
      if (signal.aborted) throw new BuildCommandError(`${step} Reason: stopped`);
      try {
        const response = await fetch(url, { signal, redirect: 'error' });
        if (!response.ok) {
          await response.body?.cancel();
          // curl -f fails at once on an HTTP error; --retry repeats only transient ones (5xx, 408, 429).
          lastError = `exit status 22 (HTTP ${response.status})`;
          if (response.status < 500 && response.status !== 408 && response.status !== 429) break;
          continue;
        }
        const declared = Number(response.headers.get('content-length') ?? '0');
        if (declared > limit)
          throw new BuildCommandError(`${step} Reason: the bundle is over ${limit} bytes`);
        const bytes = Buffer.from(await response.arrayBuffer());
        if (bytes.length > limit)
          throw new BuildCommandError(`${step} Reason: the bundle is over ${limit} bytes`);
        return bytes;
      } catch (error) {
        if (error instanceof BuildCommandError) throw error;
        lastError = `exit status 7 (${messageOf(error)})`;
      }
    }
    throw new BuildCommandError(`${step} Reason: ${lastError}`);
  }

  private async emit(build: LocalBuild): Promise<void> {
    if (!this.options.onEvent) return;
    try {
      await this.options.onEvent(this.event(build));
    } catch (error) {
      this.options.logger.error('the CodeBuild state change event was not delivered', {
        build: build.id,
        status: build.status,
        error,
      });
    }
  }

  /** BatchGetBuilds' (and StartBuild's, StopBuild's) shape of a build. */
  private describe(build: LocalBuild): Record<string, unknown> {
    const current = build.phases[build.phases.length - 1];
    return {
      id: build.id,
      arn: build.arn,
      buildNumber: build.buildNumber,
      startTime: build.startTime,
      ...(build.endTime !== undefined ? { endTime: build.endTime } : {}),
      currentPhase: current?.phaseType ?? 'SUBMITTED',
      buildStatus: build.status,
      projectName: build.project.name,
      phases: build.phases.map((phase) => ({ ...phase })),
      source: { type: 'NO_SOURCE', buildspec: LAMBKIN_BUILDSPEC, insecureSsl: false },
      secondarySources: [],
      secondarySourceVersions: [],
      artifacts: { location: '' },
      secondaryArtifacts: [],
      cache: { type: 'NO_CACHE' },
      environment: {
        type: 'LINUX_CONTAINER',
        image: build.image,
        computeType: build.computeType,
        environmentVariables: build.environmentVariables.map((entry) => ({ ...entry })),
        privilegedMode: build.project.privilegedMode === true,
        imagePullCredentialsType: 'CODEBUILD',
      },
      serviceRole: `arn:aws:iam::${this.accountId}:role/${build.project.name}-role`,
      // The project's logs are off in CodeBuild itself: the build's log goes to Lambkin's bucket.
      logs: {
        deepLink: '',
        cloudWatchLogs: { status: 'DISABLED' },
        s3Logs: { status: 'DISABLED', encryptionDisabled: false },
      },
      timeoutInMinutes: build.timeoutInMinutes,
      queuedTimeoutInMinutes: 480,
      buildComplete: build.status !== 'IN_PROGRESS',
      initiator: build.initiator,
      encryptionKey: `arn:aws:kms:${this.region}:${this.accountId}:alias/aws/s3`,
    };
  }

  private event(build: LocalBuild): CodeBuildStateChangeEvent {
    const current = build.phases[build.phases.length - 1];
    return {
      version: '0',
      id: randomUUID(),
      'detail-type': 'CodeBuild Build State Change',
      source: 'aws.codebuild',
      account: this.accountId,
      time: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
      region: this.region,
      resources: [build.arn],
      detail: {
        'build-status': build.status,
        'project-name': build.project.name,
        'build-id': build.arn,
        'current-phase': current?.phaseType ?? 'SUBMITTED',
        'current-phase-context': '[]',
        version: '1',
        'additional-information': {
          'build-complete': build.status !== 'IN_PROGRESS',
          'build-number': build.buildNumber,
          initiator: build.initiator,
          'build-start-time': formatCodeBuildEventTime(build.startTime * 1000),
          'timeout-in-minutes': build.timeoutInMinutes,
          'queued-timeout-in-minutes': 480,
          environment: {
            image: build.image,
            'privileged-mode': build.project.privilegedMode === true,
            'compute-type': build.computeType,
            type: 'LINUX_CONTAINER',
            'environment-variables': build.environmentVariables.map((entry) => ({ ...entry })),
            'image-pull-credentials-type': 'CODEBUILD',
          },
          source: { type: 'NO_SOURCE', buildspec: LAMBKIN_BUILDSPEC },
          logs: { 'deep-link': '' },
          phases: build.phases.map((phase) => ({
            ...(phase.contexts
              ? { 'phase-context': phase.contexts.map((c) => `${c.statusCode}: ${c.message}`) }
              : {}),
            'start-time': formatCodeBuildEventTime(phase.startTime * 1000),
            ...(phase.endTime !== undefined
              ? { 'end-time': formatCodeBuildEventTime(phase.endTime * 1000) }
              : {}),
            ...(phase.durationInSeconds !== undefined
              ? { 'duration-in-seconds': phase.durationInSeconds }
              : {}),
            'phase-type': phase.phaseType,
            ...(phase.phaseStatus ? { 'phase-status': phase.phaseStatus } : {}),
          })),
        },
      },
    };
  }
}

/** A buildspec command failed: the build is FAILED (not FAULT), with CodeBuild's phase context. */
class BuildCommandError extends Error {}

function closePhase(
  phase: Phase,
  status: NonNullable<Phase['phaseStatus']>,
  now: number,
  message?: string,
): void {
  phase.phaseStatus = status;
  phase.endTime = now;
  phase.durationInSeconds = Math.max(0, Math.round(now - phase.startTime));
  if (message)
    phase.contexts = [{ statusCode: status === 'SUCCEEDED' ? '' : `COMMAND_EXECUTION_ERROR`, message }];
}

/** environmentVariablesOverride, checked; a message when it is not CodeBuild's shape. */
function parseVariables(value: unknown): EnvironmentVariable[] | string {
  if (value === undefined) return [];
  if (!Array.isArray(value)) return 'environmentVariablesOverride must be a list';
  const variables: EnvironmentVariable[] = [];
  for (const entry of value as unknown[]) {
    const { name, value: text, type = 'PLAINTEXT' } = (entry ?? {}) as Record<string, unknown>;
    if (typeof name !== 'string' || name.length === 0 || typeof text !== 'string')
      return 'Each environment variable needs a name and a value';
    if (name.startsWith('CODEBUILD_')) return `Invalid environment variable name: ${name}`;
    if (type !== 'PLAINTEXT' && type !== 'PARAMETER_STORE' && type !== 'SECRETS_MANAGER')
      return `Invalid environment variable type: ${String(type)}`;
    // Parameter Store and Secrets Manager have no local counterpart; Lambkin sends none (contract).
    if (type !== 'PLAINTEXT')
      return `The local CodeBuild endpoint supports only PLAINTEXT variables (${name})`;
    variables.push({ name, value: text, type });
  }
  return variables;
}

function writeJson(response: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  response.writeHead(status, {
    'Content-Type': 'application/x-amz-json-1.1',
    'Content-Length': Buffer.byteLength(text),
    'x-amzn-RequestId': randomUUID(),
  });
  response.end(text);
}

function writeError(response: ServerResponse, error: ApiError): void {
  const text = JSON.stringify({ __type: error.type, message: error.message });
  response.writeHead(error.status, {
    'Content-Type': 'application/x-amz-json-1.1',
    'Content-Length': Buffer.byteLength(text),
    'x-amzn-RequestId': randomUUID(),
    'x-amzn-ErrorType': error.type,
  });
  response.end(text);
}
