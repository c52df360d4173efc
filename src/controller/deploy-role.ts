/**
 * The deploy step's AWS access: a role named in the repository's settings, assumed for one build.
 * The builder's own credentials never reach a build step.
 */
import { LambkinError } from '../core/errors.js';
import type { DeployCredentials } from '../core/protocol.js';

export interface DeployRoleRequest {
  roleArn: string;
  /** Becomes the session name (CloudTrail shows it); cut and cleaned to what STS accepts. */
  sessionName: string;
  durationSeconds: number;
  region?: string;
}

export interface DeployRoleAssumer {
  assume(request: DeployRoleRequest): Promise<DeployCredentials>;
}

/** The deploy role could not be assumed: the build ends `error` before any step runs. */
export class DeployRoleError extends LambkinError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('DEPLOY_ROLE', message, options);
  }
}

/** STS role session names: 2–64 characters of `[\w+=,.@-]`. */
export function roleSessionName(text: string): string {
  const cleaned = text.replace(/[^\w+=,.@-]+/g, '-').slice(0, 64);
  return cleaned.length >= 2 ? cleaned : `lambkin-${cleaned}`;
}

/** STS accepts 900 s to the role's maximum session (at most 12 h). */
export function roleDurationSeconds(seconds: number): number {
  return Math.min(Math.max(Math.ceil(seconds), 900), 12 * 3600);
}
