/**
 * Where a build (or each job of it) runs: on the Lambda runner, or on AWS CodeBuild. The build's
 * config asks (`runsOn`), the operator's settings (`codebuild`) and the deployment (which projects
 * exist) allow or refuse, and the month's CodeBuild minutes are capped. Pure: the controller reads
 * the inputs and carries the decision out (src/controller/codebuild-run.ts).
 */
import picomatch from 'picomatch';
import type { RepoName } from './build.js';
import { CODEBUILD_COMPUTES, type CodeBuildCompute, type RunsOn } from './repo-config/schema.js';
import type { CodeBuildSettings } from './settings.js';

/** CodeBuild's compute types of `runsOn`'s sizes (Linux, general purpose). */
export const CODEBUILD_COMPUTE_TYPES: Record<CodeBuildCompute, string> = {
  small: 'BUILD_GENERAL1_SMALL',
  medium: 'BUILD_GENERAL1_MEDIUM',
  large: 'BUILD_GENERAL1_LARGE',
};

/** Sizes a build may ask for when the operator's settings name none: large costs 4× small. */
export const DEFAULT_CODEBUILD_COMPUTES: readonly CodeBuildCompute[] = ['small', 'medium'];
export const DEFAULT_CODEBUILD_TIMEOUT_MINUTES = 60;
/** CodeBuild's own bounds of a build's timeout. */
export const CODEBUILD_TIMEOUT_BOUNDS = { min: 5, max: 480 } as const;
/** The image a build gets when it names none: the project's own. */
export const STANDARD_IMAGE = 'standard';

/** What the deployment has: the CodeBuild projects (unset: CodeBuild is off) and their time limit. */
export interface CodeBuildPlatform {
  /** LAMBKIN_CODEBUILD_PROJECT. */
  project?: string;
  /** LAMBKIN_CODEBUILD_DOCKER_PROJECT: the privileged project, for `docker: true`. */
  dockerProject?: string;
  /** LAMBKIN_CODEBUILD_TIMEOUT_MINUTES. */
  timeoutMinutes: number;
}

/** A run on CodeBuild, as the controller starts it. */
export interface CodeBuildPlacement {
  project: string;
  compute: CodeBuildCompute;
  /** `BUILD_GENERAL1_…`. */
  computeType: string;
  /** An allowed image URI; absent: the project's own image. */
  image?: string;
  docker: boolean;
  timeoutMinutes: number;
}

export type Placement =
  | { kind: 'lambda' }
  | ({ kind: 'codebuild' } & CodeBuildPlacement)
  /** The build ends `error` before anything runs: `description` is its status line, `detail` its log. */
  | { kind: 'refused'; description: string; detail: string };

export interface PlacementInput {
  repo: RepoName;
  /** The resolved config's `runsOn` (`lambda` when the config could not be read). */
  runsOn: RunsOn;
  settings: CodeBuildSettings;
  platform: CodeBuildPlatform;
  /** CodeBuild minutes used this month (all builds), for the cap. */
  usedMinutes: number;
}

/**
 * The placement of a build. `auto` is Lambda here: escalationPlacement decides the second run.
 * Everything a refusal says names the setting that decides, so the reader knows what to change.
 */
export function decidePlacement(input: PlacementInput): Placement {
  const { runsOn } = input;
  if (runsOn === 'lambda' || runsOn === 'auto') return { kind: 'lambda' };
  return codeBuildPlacement(input, runsOn.codebuild);
}

/**
 * The run on CodeBuild of an `auto` build that timed out or ran out of disk on Lambda: the
 * default size and image. Undefined for a build not set to `auto`.
 */
export function escalationPlacement(input: PlacementInput): Placement | undefined {
  if (input.runsOn !== 'auto') return undefined;
  return codeBuildPlacement(input, {});
}

function refused(description: string, detail: string): Placement {
  return { kind: 'refused', description: `runsOn: ${description}`, detail };
}

function codeBuildPlacement(
  { repo, settings, platform, usedMinutes }: PlacementInput,
  request: { compute?: CodeBuildCompute; image?: string; docker?: boolean },
): Placement {
  if (!platform.project) {
    return refused(
      'the operator has not enabled CodeBuild',
      'This build is set to run on CodeBuild ("runsOn"), but this deployment has no CodeBuild project ' +
        '(LAMBKIN_CODEBUILD_PROJECT is unset). Ask the operator to enable it, or set "runsOn": "lambda".',
    );
  }
  const patterns = settings.repos ?? [];
  if (!patterns.some((pattern) => picomatch.isMatch(repo, pattern, { nocase: true, dot: true }))) {
    return refused(
      `CodeBuild is not allowed for ${repo}`,
      `This build is set to run on CodeBuild ("runsOn"), but the operator's settings do not allow ${repo} ` +
        `there: its codebuild.repos (${patterns.join(', ') || 'none'}) must match it. Ask the operator, or set "runsOn": "lambda".`,
    );
  }
  const compute = request.compute ?? 'small';
  const computes = settings.computes ?? DEFAULT_CODEBUILD_COMPUTES;
  if (!computes.includes(compute)) {
    return refused(
      `compute "${compute}" is not allowed (allowed: ${computes.join(', ') || 'none'})`,
      `This build asks for CodeBuild compute "${compute}"; the operator's codebuild.computes allows ` +
        `${computes.join(', ') || 'none'}. Ask for one of those in "runsOn".`,
    );
  }
  const image = request.image === undefined || request.image === STANDARD_IMAGE ? undefined : request.image;
  if (image !== undefined && !(settings.images ?? []).includes(image)) {
    return refused(
      'the image is not one the operator allows',
      `This build asks for the CodeBuild image ${image}, which is not in the operator's codebuild.images ` +
        `(${(settings.images ?? []).join(', ') || 'none'}). Use "image": "standard" or one of those.`,
    );
  }
  const docker = request.docker ?? false;
  if (docker && (!settings.docker || !platform.dockerProject)) {
    return refused(
      'Docker is not enabled',
      !settings.docker
        ? 'This build asks for Docker on CodeBuild; the operator\'s settings do not allow it (codebuild.docker). Remove "docker" from "runsOn" or ask the operator.'
        : 'This build asks for Docker on CodeBuild; this deployment has no privileged project (LAMBKIN_CODEBUILD_DOCKER_PROJECT is unset). Ask the operator.',
    );
  }
  const cap = settings.monthlyMinutes;
  if (cap !== undefined && usedMinutes >= cap) {
    return refused(
      `this month's CodeBuild minutes are used up (${Math.round(usedMinutes)} of ${cap})`,
      `The operator's monthly CodeBuild cap (codebuild.monthlyMinutes: ${cap}) is reached: ` +
        `${Math.round(usedMinutes)} minutes were used this month (UTC). Builds set to CodeBuild are refused until the month ends or the operator raises it.`,
    );
  }
  const timeoutMinutes = Math.min(
    CODEBUILD_TIMEOUT_BOUNDS.max,
    Math.max(CODEBUILD_TIMEOUT_BOUNDS.min, Math.round(platform.timeoutMinutes)),
  );
  return {
    kind: 'codebuild',
    project: docker ? (platform.dockerProject ?? platform.project) : platform.project,
    compute,
    computeType: CODEBUILD_COMPUTE_TYPES[compute],
    ...(image !== undefined ? { image } : {}),
    docker,
    timeoutMinutes,
  };
}

/** The month the CodeBuild cap counts in: `2026-12` (UTC). */
export function usageMonth(at: number): string {
  return new Date(at).toISOString().slice(0, 7);
}

/** Billed CodeBuild minutes of a run: CodeBuild bills by the started minute. */
export function billedMinutes(startMs: number, endMs: number): number {
  return Math.max(1, Math.ceil(Math.max(0, endMs - startMs) / 60_000));
}

/** Whether a text names a CodeBuild size (for the settings' checks). */
export function isCodeBuildCompute(value: unknown): value is CodeBuildCompute {
  return typeof value === 'string' && (CODEBUILD_COMPUTES as readonly string[]).includes(value);
}
