/**
 * Job ids, as src/core/jobs.ts makes them: checked wherever one arrives from outside (a builder
 * invocation, a check run's external id, a link). No imports: the webhook's bundle stays small.
 */
/** A job id as planJobs makes them (slugs joined by `.`): safe in a path segment and an S3 key. */
const JOB_ID = /^[a-z0-9_][a-z0-9._-]{0,299}$/;

export function isJobId(value: unknown): value is string {
  return typeof value === 'string' && JOB_ID.test(value) && !value.includes('..');
}

/** The commit status context / check run name of a build's jobs: `lambkin`, `lambkin/node-22`. */
export const JOB_CONTEXT = 'lambkin';
