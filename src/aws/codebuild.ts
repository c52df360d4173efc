/**
 * The CodeBuild adapter of the RemoteRunner port: StartBuild with the overrides the contract fixes
 * (compute, image, timeout, four plain variables, never a secret), StopBuild, BatchGetBuilds.
 */
import {
  BatchGetBuildsCommand,
  StartBuildCommand,
  StopBuildCommand,
  type Build,
  type CodeBuildClient,
  type ComputeType,
} from '@aws-sdk/client-codebuild';
import { LambkinError } from '../core/errors.js';
import type {
  RemoteBuildReport,
  RemoteBuildStatus,
  RemoteRunner,
  RemoteStartRequest,
} from '../core/ports.js';

export class CodeBuildError extends LambkinError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('CODEBUILD', message, options);
  }
}

const STATUSES: readonly RemoteBuildStatus[] = [
  'IN_PROGRESS',
  'SUCCEEDED',
  'FAILED',
  'FAULT',
  'STOPPED',
  'TIMED_OUT',
];

function describeError(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** A CodeBuild build as the port reports it; CodeBuild's dates become epoch ms. */
export function reportOf(build: Build): RemoteBuildReport | undefined {
  if (!build.id || !build.arn) return undefined;
  const status = STATUSES.includes(build.buildStatus as RemoteBuildStatus)
    ? (build.buildStatus as RemoteBuildStatus)
    : 'IN_PROGRESS';
  const environment: Record<string, string> = {};
  for (const variable of build.environment?.environmentVariables ?? []) {
    if (variable.name && variable.type !== 'SECRETS_MANAGER' && variable.type !== 'PARAMETER_STORE') {
      environment[variable.name] = variable.value ?? '';
    }
  }
  return {
    buildId: build.id,
    arn: build.arn,
    project: build.projectName ?? build.id.split(':')[0] ?? '',
    status,
    complete: build.buildComplete ?? status !== 'IN_PROGRESS',
    ...(build.startTime ? { startTime: build.startTime.getTime() } : {}),
    ...(build.endTime ? { endTime: build.endTime.getTime() } : {}),
    environment,
  };
}

export class CodeBuildRemoteRunner implements RemoteRunner {
  constructor(private readonly client: CodeBuildClient) {}

  async start(request: RemoteStartRequest): Promise<{ buildId: string; arn: string }> {
    let build: Build | undefined;
    try {
      ({ build } = await this.client.send(
        new StartBuildCommand({
          projectName: request.project,
          idempotencyToken: request.idempotencyToken,
          computeTypeOverride: request.computeType as ComputeType,
          ...(request.image !== undefined ? { imageOverride: request.image } : {}),
          timeoutInMinutesOverride: request.timeoutMinutes,
          environmentVariablesOverride: Object.entries(request.environment).map(([name, value]) => ({
            name,
            value,
            type: 'PLAINTEXT' as const,
          })),
        }),
      ));
    } catch (error) {
      throw new CodeBuildError(
        `CodeBuild refused to start a build of the project ${request.project} (${describeError(error)}). ` +
          'Check that the project exists (LAMBKIN_CODEBUILD_PROJECT) and that the controller may start it.',
        { cause: error },
      );
    }
    if (!build?.id || !build.arn) {
      throw new CodeBuildError(`CodeBuild answered StartBuild of ${request.project} without a build id`);
    }
    return { buildId: build.id, arn: build.arn };
  }

  async stop(buildId: string): Promise<void> {
    try {
      await this.client.send(new StopBuildCommand({ id: buildId }));
    } catch (error) {
      // Already ended or unknown: nothing to stop.
      const name = error instanceof Error ? error.name : '';
      if (name === 'ResourceNotFoundException' || name === 'InvalidInputException') return;
      throw new CodeBuildError(`could not stop the CodeBuild build ${buildId} (${describeError(error)})`, {
        cause: error,
      });
    }
  }

  async describe(buildIds: readonly string[]): Promise<RemoteBuildReport[]> {
    if (buildIds.length === 0) return [];
    const reports: RemoteBuildReport[] = [];
    // BatchGetBuilds takes at most 100 ids.
    for (let start = 0; start < buildIds.length; start += 100) {
      const { builds } = await this.client.send(
        new BatchGetBuildsCommand({ ids: buildIds.slice(start, start + 100) }),
      );
      for (const build of builds ?? []) {
        const report = reportOf(build);
        if (report) reports.push(report);
      }
    }
    return reports;
  }
}
