/** The commit statuses the GitHub stand-in holds, as the tests read them. */
import type { GitHubStandIn } from './github-server.js';

export interface LatestStatus {
  state: string;
  description: string;
  url: string;
}

/** The latest status of each context of the commit (GitHub lists them newest first). */
export function latestByContext(
  standIn: GitHubStandIn,
  repo: string,
  sha: string,
): Map<string, LatestStatus> {
  const latest = new Map<string, LatestStatus>();
  for (const status of standIn.statusesFor(repo, sha)) {
    if (!latest.has(status.context)) {
      latest.set(status.context, {
        state: status.state,
        description: status.description ?? '',
        url: status.target_url ?? '',
      });
    }
  }
  return latest;
}
