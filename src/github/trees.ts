/**
 * Reads a commit's root tree (the git trees API) to learn which npm lockfile it has, and that
 * file's git blob sha, without downloading the source: the dependency cache is keyed by it.
 */
import type { Octokit } from '@octokit/rest';
import type { RepoName } from '../core/build.js';
import { NPM_LOCKFILES, type NpmLockfileName } from '../core/cache-key.js';
import { splitRepoName } from './client.js';
import {
  GitHubApiError,
  GitHubNotFoundError,
  adviceFor,
  readRequestFailure,
  shortSha,
  failureDetails,
} from './api-errors.js';

export interface LockfileBlob {
  /** Which lockfile, at the repository's root. */
  path: NpmLockfileName;
  /** Its git blob sha (sha1 of `blob <length>\0<content>`). */
  sha: string;
}

/** Picks npm's lockfile among root tree entries (regular files only: a link is not a lockfile). */
export function pickLockfile(
  entries: readonly { path: string; type: string; mode: string; sha: string }[],
): LockfileBlob | undefined {
  for (const name of NPM_LOCKFILES) {
    const entry = entries.find(
      (candidate) =>
        candidate.path === name &&
        candidate.type === 'blob' &&
        (candidate.mode === '100644' || candidate.mode === '100755'),
    );
    if (entry) return { path: name, sha: entry.sha };
  }
  return undefined;
}

/**
 * The npm lockfile at the root of `repo` at `ref` (a commit sha, branch or tag), or undefined when
 * it has none. A missing repository or commit is a GitHubNotFoundError; other failures a
 * GitHubApiError, each saying what to do.
 */
export async function readLockfileBlob(
  octokit: Octokit,
  repo: RepoName,
  ref: string,
): Promise<LockfileBlob | undefined> {
  const { owner, name } = splitRepoName(repo);
  const subject = `the file list of ${repo}@${shortSha(ref)}`;
  let data;
  try {
    // Non-recursive: only the root's entries, one small answer whatever the repository's size.
    ({ data } = await octokit.rest.git.getTree({ owner, repo: name, tree_sha: ref }));
  } catch (error) {
    const failure = readRequestFailure(error);
    const details = failureDetails(error, failure, repo, ref);
    const message = `Could not read ${subject}: ${failure.status ?? 'no answer'} ${failure.message}. ${adviceFor(failure, subject)}`;
    if (failure.status === 404) throw new GitHubNotFoundError(message, details);
    throw new GitHubApiError(message, details);
  }
  return pickLockfile(data.tree);
}
