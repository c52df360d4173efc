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
import { createJsonLogger } from '../core/logger.js';
import type { RemoteBuildStatus } from '../core/ports.js';
import { createControllerDependencies } from '../wiring.js';

const STATUSES: readonly string[] = ['IN_PROGRESS', 'SUCCEEDED', 'FAILED', 'FAULT', 'STOPPED', 'TIMED_OUT'];

/**
 * CodeBuild writes its dates as `Dec 6, 2026 11:45:09 PM` (UTC, in Lambda's UTC zone) or ISO 8601;
 * epoch ms, or undefined when unreadable (the completion then counts from the recorded start).
 */
function timeOf(value: unknown): number | undefined {
  if (typeof value === 'number') return value;
  if (typeof value !== 'string') return undefined;
  const parsed = Date.parse(value);
  return Number.isNaN(parsed) ? undefined : parsed;
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
  const startTime = timeOf(info['start-time']);
  const endTime = timeOf(info['end-time']);
  return {
    buildId,
    status: status as RemoteBuildStatus,
    complete: info['build-complete'] === true,
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
