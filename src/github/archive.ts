/**
 * The source archive of a commit. GitHub answers the tarball endpoint with a redirect to a
 * short-lived download URL that needs no token (for private repositories it carries its own), so
 * the trusted side resolves it and the runner, which holds no credentials, downloads it.
 */
import type { Octokit } from '@octokit/rest';
import type { RepoName } from '../core/build.js';
import { splitRepoName } from './client.js';
import {
  GitHubApiError,
  GitHubNotFoundError,
  adviceFor,
  readRequestFailure,
  shortSha,
  failureDetails,
} from './api-errors.js';

/** The download URL of the `.tar.gz` of `repo` at commit `sha` (valid for a few minutes). */
export async function resolveArchiveUrl(octokit: Octokit, repo: RepoName, sha: string): Promise<string> {
  const { owner, name } = splitRepoName(repo);
  const subject = `the commit ${shortSha(sha)} of ${repo}`;
  let response;
  try {
    response = await octokit.rest.repos.downloadTarballArchive({
      owner,
      repo: name,
      ref: sha,
      // Read the Location instead of downloading: the runner downloads it.
      request: { redirect: 'manual' },
    });
  } catch (error) {
    const failure = readRequestFailure(error);
    const details = failureDetails(error, failure, repo, sha);
    if (failure.status === 404) {
      throw new GitHubNotFoundError(
        `GitHub has no archive of ${subject}. ${adviceFor(failure, subject)}`,
        details,
      );
    }
    throw new GitHubApiError(
      `Could not get the archive URL of ${subject}: ${failure.status ?? 'no answer'} ${failure.message}. ${adviceFor(failure, subject)}`,
      details,
    );
  }
  const location = response.headers.location;
  if (response.status !== 302 || !location) {
    throw new GitHubApiError(
      `GitHub answered the archive request for ${subject} with ${response.status} instead of a redirect to the archive: ` +
        'check that GITHUB_API_URL points at the GitHub REST API.',
      { repo, ref: sha, status: response.status },
    );
  }
  // Location is absolute on GitHub; resolve it anyway so a relative one (a proxy) still works.
  return (response.url ? new URL(location, response.url) : new URL(location)).toString();
}
