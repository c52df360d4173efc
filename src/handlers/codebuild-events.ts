/**
 * Lambda entry point of CodeBuild's completion events (EventBridge: `source: aws.codebuild`,
 * `detail-type: CodeBuild Build State Change`). Thin: adapts the event and finishes the run it names
 * (src/controller/codebuild-finish.ts), which checks the name against the run recorded on the
 * build. The local stack calls this same handler when its CodeBuild endpoint's build ends.
 */
import { loadFunctionConfig, onColdStart } from '../aws/secrets.js';
import {
  finishCodeBuildRun,
  type CodeBuildCompletion,
  type FinishResult,
} from '../controller/codebuild-finish.js';
import type { ControllerDependencies } from '../controller/controller.js';
import { CODEBUILD_ENVIRONMENT } from '../controller/codebuild-run.js';
import { parseCodeBuildEventTime } from '../core/codebuild-time.js';
import { createJsonLogger } from '../core/logger.js';
import type { RemoteBuildStatus } from '../core/ports.js';
import { createControllerDependencies } from '../wiring.js';

const STATUSES: readonly string[] = ['IN_PROGRESS', 'SUCCEEDED', 'FAILED', 'FAULT', 'STOPPED', 'TIMED_OUT'];

/** The COMPLETED phase's start (when the build ended), else the event's own time. */
function endTimeOf(event: Record<string, unknown>, info: Record<string, unknown>): number | undefined {
  const phases = Array.isArray(info['phases']) ? (info['phases'] as unknown[]) : [];
  const completed = phases.find(
    (phase): phase is Record<string, unknown> =>
      typeof phase === 'object' &&
      phase !== null &&
      (phase as { 'phase-type'?: unknown })['phase-type'] === 'COMPLETED',
  );
  return parseCodeBuildEventTime(completed?.['start-time']) ?? parseCodeBuildEventTime(event['time']);
}

/** The event's completion; undefined for an event that is not a CodeBuild state change. */
export function completionOfEvent(event: unknown): CodeBuildCompletion | undefined {
  if (typeof event !== 'object' || event === null) return undefined;
  const detail = (event as { detail?: unknown }).detail;
  if (typeof detail !== 'object' || detail === null) return undefined;
  const fields = detail as Record<string, unknown>;
  const status = fields['build-status'];
  const buildId = fields['build-id'];
  if (typeof status !== 'string' || !STATUSES.includes(status) || typeof buildId !== 'string')
    return undefined;
  const info = (fields['additional-information'] ?? {}) as Record<string, unknown>;
  const variables = ((info['environment'] as Record<string, unknown> | undefined)?.[
    'environment-variables'
  ] ?? []) as unknown[];
  const named = variables.find(
    (variable): variable is { name: string; value: string } =>
      typeof variable === 'object' &&
      variable !== null &&
      (variable as { name?: unknown }).name === CODEBUILD_ENVIRONMENT.build &&
      typeof (variable as { value?: unknown }).value === 'string',
  );
  const startTime = parseCodeBuildEventTime(info['build-start-time']);
  const complete = info['build-complete'] === true;
  const endTime = complete ? endTimeOf(event as Record<string, unknown>, info) : undefined;
  return {
    buildId,
    status: status as RemoteBuildStatus,
    complete,
    ...(named ? { build: named.value } : {}),
    ...(startTime !== undefined ? { startTime } : {}),
    ...(endTime !== undefined ? { endTime } : {}),
  };
}

export function createCodeBuildEventsHandler(
  dependencies: () => ControllerDependencies | Promise<ControllerDependencies>,
): (event: unknown) => Promise<FinishResult> {
  const deps = onColdStart(dependencies);
  return async (event) => {
    const completion = completionOfEvent(event);
    if (!completion) return { finished: false, reason: 'not final' };
    return finishCodeBuildRun(await deps(), completion);
  };
}

export const handler = createCodeBuildEventsHandler(async () => {
  // Finishing starts nothing: no job is invoked from here (this function is not the builder).
  const { jobInvoker: _none, ...deps } = createControllerDependencies(
    await loadFunctionConfig('codebuildEvents'),
    createJsonLogger(),
  );
  return deps;
});
