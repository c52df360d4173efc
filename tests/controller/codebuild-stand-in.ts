/**
 * A loopback CodeBuild for the pipeline's tests, until the local stack's endpoint
 * (src/local/codebuild-service.ts) replaces it: CodeBuild's JSON 1.1 protocol (StartBuild,
 * BatchGetBuilds, StopBuild) answered in AWS's shapes, and for each StartBuild the buildspec's three
 * steps done for real: the runner bundle downloaded from LAMBKIN_RUNNER_URL, its sha256 checked,
 * `node <bundle> --input-url $LAMBKIN_RUNNER_INPUT_URL` run as a process. When it ends (or its
 * timeout passes, or StopBuild stops it) the completion event, as EventBridge delivers it, goes to
 * `onEvent`.
 */
import { formatCodeBuildEventTime } from '../../src/core/codebuild-time.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface StandInBuild {
  id: string;
  arn: string;
  projectName: string;
  buildStatus: string;
  buildComplete: boolean;
  startTime: number;
  endTime?: number;
  computeType: string;
  image?: string;
  timeoutInMinutes: number;
  environment: Record<string, string>;
  idempotencyToken?: string;
  /** What the buildspec's steps printed. */
  output: string;
  exitCode?: number | null;
  process?: ChildProcess;
}

export interface StartBuildBody {
  projectName: string;
  idempotencyToken?: string;
  computeTypeOverride?: string;
  imageOverride?: string;
  timeoutInMinutesOverride?: number;
  environmentVariablesOverride?: { name: string; value: string; type?: string }[];
}

export interface CodeBuildStandIn {
  url: string;
  builds: StandInBuild[];
  requests: { target: string; body: unknown }[];
  /** Every completion event sent. */
  events: unknown[];
  /** Resolves when the build has ended and its event was handled. */
  ended(id: string): Promise<StandInBuild>;
  close(): Promise<void>;
}

export interface StandInOptions {
  /** Called with each completion event (the test hands it to the events handler). */
  onEvent: (event: unknown) => Promise<unknown>;
  /** A build's time limit in ms instead of its minutes (tests cannot wait minutes). */
  timeoutMs?: (build: StandInBuild) => number | undefined;
  /** Variables of the runner's process besides CodeBuild's own (the runner's work root). */
  runnerEnv?: Record<string, string>;
  /** Do not run anything: StartBuild only records (the events are the test's). */
  dryRun?: boolean;
}

const ACCOUNT = '123456789012';

function awsShape(build: StandInBuild): Record<string, unknown> {
  return {
    id: build.id,
    arn: build.arn,
    projectName: build.projectName,
    buildStatus: build.buildStatus,
    buildComplete: build.buildComplete,
    startTime: build.startTime / 1000,
    ...(build.endTime !== undefined ? { endTime: build.endTime / 1000 } : {}),
    timeoutInMinutes: build.timeoutInMinutes,
    environment: {
      type: 'LINUX_CONTAINER',
      computeType: build.computeType,
      image: build.image ?? 'aws/codebuild/standard:7.0',
      environmentVariables: Object.entries(build.environment).map(([name, value]) => ({
        name,
        value,
        type: 'PLAINTEXT',
      })),
    },
  };
}

/** The event EventBridge delivers for a build's state change. */
export function stateChangeEvent(build: StandInBuild, overrides: Record<string, unknown> = {}): unknown {
  return {
    version: '0',
    id: randomUUID(),
    'detail-type': 'CodeBuild Build State Change',
    source: 'aws.codebuild',
    account: ACCOUNT,
    region: 'us-east-1',
    detail: {
      'build-status': build.buildStatus,
      'project-name': build.projectName,
      'build-id': build.arn,
      'additional-information': {
        'build-complete': build.buildComplete,
        'build-start-time': formatCodeBuildEventTime(build.startTime),
        'timeout-in-minutes': build.timeoutInMinutes,
        environment: {
          'compute-type': build.computeType,
          'environment-variables': Object.entries(build.environment).map(([name, value]) => ({
            name,
            value,
            type: 'PLAINTEXT',
          })),
        },
        phases:
          build.endTime !== undefined
            ? [{ 'phase-type': 'COMPLETED', 'start-time': formatCodeBuildEventTime(build.endTime) }]
            : [],
        logs: {},
      },
      ...overrides,
    },
  };
}

export async function startCodeBuildStandIn(options: StandInOptions): Promise<CodeBuildStandIn> {
  const scratch = await mkdtemp(join(tmpdir(), 'lambkin-codebuild-stand-in-'));
  const builds: StandInBuild[] = [];
  const requests: { target: string; body: unknown }[] = [];
  const events: unknown[] = [];
  const endings = new Map<string, Promise<StandInBuild>>();

  const finish = async (build: StandInBuild, status: string): Promise<StandInBuild> => {
    if (build.buildComplete) return build;
    build.buildStatus = status;
    build.buildComplete = true;
    build.endTime = Date.now();
    const event = stateChangeEvent(build);
    events.push(event);
    await options.onEvent(event);
    return build;
  };

  /** The buildspec's three steps. */
  const run = async (build: StandInBuild): Promise<StandInBuild> => {
    const env = build.environment;
    const bundle = join(scratch, `${build.id.replace(/[^A-Za-z0-9]/g, '_')}.mjs`);
    const response = await fetch(env['LAMBKIN_RUNNER_URL'] ?? '');
    if (!response.ok) {
      build.output += `curl: (22) The requested URL returned error: ${response.status}\n`;
      return finish(build, 'FAILED');
    }
    const code = Buffer.from(await response.arrayBuffer());
    await writeFile(bundle, code);
    if (createHash('sha256').update(code).digest('hex') !== env['LAMBKIN_RUNNER_SHA256']) {
      build.output += `${bundle}: FAILED\nsha256sum: WARNING: 1 computed checksum did NOT match\n`;
      return finish(build, 'FAILED');
    }
    const child = spawn(process.execPath, [bundle, '--input-url', env['LAMBKIN_RUNNER_INPUT_URL'] ?? ''], {
      // CodeBuild's environment holds its variables: the runner must not pass them on.
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        LANG: 'C.UTF-8',
        ...env,
        ...(options.runnerEnv ?? {}),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
      cwd: scratch,
    });
    build.process = child;
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (build.output += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (build.output += chunk));
    const limit = options.timeoutMs?.(build) ?? build.timeoutInMinutes * 60_000;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, limit);
    const exitCode = await new Promise<number | null>((resolve) =>
      child.once('close', (code) => resolve(code)),
    );
    clearTimeout(timer);
    build.exitCode = exitCode;
    if (build.buildComplete) return build; // stopped
    return finish(build, timedOut ? 'TIMED_OUT' : exitCode === 0 ? 'SUCCEEDED' : 'FAILED');
  };

  const handle = (target: string, body: Record<string, unknown>): [number, unknown] => {
    switch (target) {
      case 'CodeBuild_20161006.StartBuild': {
        const request = body as unknown as StartBuildBody;
        const again = builds.find(
          (build) =>
            request.idempotencyToken !== undefined && build.idempotencyToken === request.idempotencyToken,
        );
        if (again) return [200, { build: awsShape(again) }];
        const id = `${request.projectName}:${randomUUID()}`;
        const build: StandInBuild = {
          id,
          arn: `arn:aws:codebuild:us-east-1:${ACCOUNT}:build/${id}`,
          projectName: request.projectName,
          buildStatus: 'IN_PROGRESS',
          buildComplete: false,
          startTime: Date.now(),
          computeType: request.computeTypeOverride ?? 'BUILD_GENERAL1_SMALL',
          ...(request.imageOverride !== undefined ? { image: request.imageOverride } : {}),
          timeoutInMinutes: request.timeoutInMinutesOverride ?? 60,
          environment: Object.fromEntries(
            (request.environmentVariablesOverride ?? []).map((variable) => [variable.name, variable.value]),
          ),
          ...(request.idempotencyToken !== undefined ? { idempotencyToken: request.idempotencyToken } : {}),
          output: '',
        };
        builds.push(build);
        if (!options.dryRun) {
          const ending = run(build);
          ending.catch(() => undefined);
          endings.set(id, ending);
        }
        return [200, { build: awsShape(build) }];
      }
      case 'CodeBuild_20161006.BatchGetBuilds': {
        const ids = (body['ids'] ?? []) as string[];
        const found = builds.filter((build) => ids.includes(build.id) || ids.includes(build.arn));
        return [
          200,
          {
            builds: found.map(awsShape),
            buildsNotFound: ids.filter((id) => !found.some((build) => build.id === id || build.arn === id)),
          },
        ];
      }
      case 'CodeBuild_20161006.StopBuild': {
        const build = builds.find((candidate) => candidate.id === body['id'] || candidate.arn === body['id']);
        if (!build) {
          return [
            400,
            { __type: 'ResourceNotFoundException', message: `Build ${String(body['id'])} not found` },
          ];
        }
        if (!build.buildComplete) {
          build.process?.kill('SIGTERM');
          const stopped = finish(build, 'STOPPED');
          stopped.catch(() => undefined);
          endings.set(build.id, stopped);
        }
        return [200, { build: awsShape(build) }];
      }
      default:
        return [400, { __type: 'UnknownOperationException', message: target }];
    }
  };

  const server: Server = createServer((request, response) => {
    let text = '';
    request.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
    request.on('end', () => {
      const target = String(request.headers['x-amz-target'] ?? '');
      const body = (text ? JSON.parse(text) : {}) as Record<string, unknown>;
      requests.push({ target, body });
      const [status, answer] = handle(target, body);
      response.writeHead(status, { 'content-type': 'application/x-amz-json-1.1' });
      response.end(JSON.stringify(answer));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    builds,
    requests,
    events,
    ended: async (id) => {
      const ending = endings.get(id);
      if (!ending) throw new Error(`no build ${id} runs`);
      return ending;
    },
    close: async () => {
      for (const build of builds) build.process?.kill('SIGKILL');
      await Promise.allSettled([...endings.values()]);
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(scratch, { recursive: true, force: true });
    },
  };
}
