/**
 * A user's permission in a repository: GET /repos/{owner}/{repo}/collaborators/{username}/permission,
 * answered as GitHub answers it: `permission` folds the roles into admin, write, read or none
 * (`maintain` is write, `triage` read), `role_name` names the role, `user` is the collaborator.
 * Roles come from the repository's definition (`collaborators`); unlisted users are the owner
 * (admin), or anyone else (read on a public repository, none on a private one). Any authenticated
 * caller may ask (an installation needs only metadata, which every installation has).
 */
import { createHash } from 'node:crypto';
import type { RequestContext, Route } from './context.js';
import { notFound, PRIVATE_CACHE, RouteError, sendJson } from './http.js';
import type { CollaboratorRole, Repository } from './records.js';
import { userJson, visibleRepository } from './repositories.js';

const DOCS = 'https://docs.github.com/rest/collaborators/collaborators#get-repository-permissions-for-a-user';
/** GitHub logins: letters, digits and single hyphens, at most 39 characters. */
const LOGIN = /^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}$/;

type Permission = 'admin' | 'write' | 'read' | 'none';

const PERMISSION_OF: Record<CollaboratorRole | 'none', Permission> = {
  admin: 'admin',
  maintain: 'write',
  write: 'write',
  triage: 'read',
  read: 'read',
  none: 'none',
};

/** Which of GitHub's `permissions` flags a role has (each role has those of the roles below it). */
const RANKS: readonly CollaboratorRole[] = ['read', 'triage', 'write', 'maintain', 'admin'];

export function roleIn(repository: Repository, login: string): CollaboratorRole | 'none' {
  const listed = repository.collaborators[login.toLowerCase()];
  if (listed) return listed;
  if (login.toLowerCase() === repository.owner.toLowerCase()) return 'admin';
  return repository.private ? 'none' : 'read';
}

/** A stable id per login, as users have on GitHub. */
function userId(login: string): number {
  return createHash('sha1').update(`user:${login.toLowerCase()}`).digest().readUInt32BE(0) % 100_000_000;
}

async function getPermission(
  context: RequestContext,
  owner: string,
  name: string,
  username: string,
): Promise<void> {
  if (!context.caller.authenticated) throw new RouteError(401, 'Requires authentication', DOCS);
  const repository = visibleRepository(context.standIn, owner, name, context.caller);
  if (!LOGIN.test(username)) throw notFound();
  const role = roleIn(repository, username);
  const rank = role === 'none' ? -1 : RANKS.indexOf(role);
  const flag = (of: CollaboratorRole): boolean => rank >= RANKS.indexOf(of);
  const user = {
    ...userJson(context.standIn.baseUrl, username, userId(username), 'User'),
    permissions: {
      pull: flag('read'),
      triage: flag('triage'),
      push: flag('write'),
      maintain: flag('maintain'),
      admin: flag('admin'),
    },
    role_name: role,
  };
  sendJson(
    context.response,
    200,
    { ...context.headers, 'cache-control': PRIVATE_CACHE },
    { permission: PERMISSION_OF[role], role_name: role, user },
  );
}

export const collaboratorRoutes: Route[] = [
  { method: 'GET', path: 'collaborators/{username}/permission', handle: getPermission },
];
