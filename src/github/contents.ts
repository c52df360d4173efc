/** Reads single files from a repository at a commit (the repository's build configuration). */
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

/**
 * The text (UTF-8) of `path` in `repo` at `ref`, or undefined when there is no such file.
 * A missing commit is an error, not an absent file; so is a directory at `path`.
 */
export async function readRepoFile(
  octokit: Octokit,
  repo: RepoName,
  path: string,
  ref: string,
): Promise<string | undefined> {
  const { owner, name } = splitRepoName(repo);
  const subject = `${path} in ${repo}@${shortSha(ref)}`;
  const fail = (error: unknown): never => {
    const failure = readRequestFailure(error);
    const details = failureDetails(error, failure, repo, ref);
    if (failure.status === 404) {
      throw new GitHubNotFoundError(
        `Could not read ${subject}: ${failure.message}. ${adviceFor(failure, subject)}`,
        details,
      );
    }
    throw new GitHubApiError(
      `Could not read ${subject}: ${failure.status ?? 'no answer'} ${failure.message}. ${adviceFor(failure, subject)}`,
      details,
    );
  };

  let data;
  try {
    ({ data } = await octokit.rest.repos.getContent({ owner, repo: name, path, ref }));
  } catch (error) {
    const failure = readRequestFailure(error);
    // GitHub says "No commit found for the ref …" for a bad ref and "Not Found" for a missing path.
    if (failure.status === 404 && !/no commit found/i.test(failure.message)) return undefined;
    return fail(error);
  }
  if (Array.isArray(data) || data.type !== 'file') {
    const kind = Array.isArray(data) ? 'a directory' : `a ${data.type}`;
    throw new GitHubApiError(`${subject} is ${kind}, not a file: make it a regular file.`, { repo, ref });
  }
  if ('encoding' in data && data.encoding === 'base64' && 'content' in data) {
    return Buffer.from(data.content, 'base64').toString('utf8');
  }
  // Files over 1 MB come without content; their raw form has it.
  try {
    const raw = await octokit.rest.repos.getContent({
      owner,
      repo: name,
      path,
      ref,
      mediaType: { format: 'raw' },
    });
    // The raw media type answers the bytes as text; Octokit's types still describe the JSON form.
    return raw.data as unknown as string;
  } catch (error) {
    return fail(error);
  }
}
