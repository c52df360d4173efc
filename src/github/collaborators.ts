/**
 * Who may do what in a repository: a user's permission as GitHub reports it
 * (`GET /repos/{owner}/{repo}/collaborators/{username}/permission`). An App's installation needs
 * only `metadata: read`, which every installation has.
 */
import { readRequestFailure } from './api-errors.js';
import { splitRepoName, type GitHubClient } from './client.js';

/** GitHub's roles, strongest first; `none`: no access (or no such user). */
export type RepositoryRole = 'admin' | 'maintain' | 'write' | 'triage' | 'read' | 'none';

const ROLES: readonly RepositoryRole[] = ['admin', 'maintain', 'write', 'triage', 'read', 'none'];

function asRole(value: unknown): RepositoryRole | undefined {
  return ROLES.find((role) => role === value);
}

/**
 * `login`'s role in `repo`: `role_name` when GitHub names one of its roles (it says `maintain` and
 * `triage`, which `permission` folds into `write` and `read`), else `permission`. A user GitHub
 * does not know (404) has none.
 */
export async function repositoryRoleOf(
  client: GitHubClient,
  repo: string,
  login: string,
): Promise<RepositoryRole> {
  const { owner, name } = splitRepoName(repo);
  try {
    const { data } = await client.rest.repos.getCollaboratorPermissionLevel({
      owner,
      repo: name,
      username: login,
    });
    return asRole(data.role_name) ?? asRole(data.permission) ?? 'none';
  } catch (error) {
    if (readRequestFailure(error).status === 404) return 'none';
    throw error;
  }
}
