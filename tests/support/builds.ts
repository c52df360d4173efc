/** A build request as a push to `main` of a trusted repository; tests override what they vary. */
import { randomUUID } from 'node:crypto';
import type { BuildRequest } from '../../src/core/build.js';

export function testBuildRequest(
  request: Partial<BuildRequest> & Pick<BuildRequest, 'repo' | 'sha'>,
): BuildRequest {
  return {
    event: 'push',
    ref: 'refs/heads/main',
    branch: 'main',
    defaultBranch: 'main',
    fork: false,
    privateRepo: false,
    trusted: true,
    author: 'octocat',
    deliveryId: `delivery-${randomUUID()}`,
    ...request,
  };
}
