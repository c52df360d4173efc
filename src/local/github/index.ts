/**
 * A loopback stand-in for the GitHub REST API: the few endpoints Lambkin calls, answered the way
 * GitHub answers them (status codes, headers, error bodies, the tarball redirect to a short-lived
 * download URL). Used by the local demo, the benchmark and the tests; never by deployed code.
 * Shapes follow @octokit/fixtures and are checked against GitHub's OpenAPI description in
 * tests/support/github-server.test.ts. Repositories are real git repositories (git.ts); commit
 * statuses, check runs and webhooks are kept in memory. Callers authenticate and are rate-limited
 * as on GitHub (callers.ts), personal tokens as GitHub Apps (JWTs, installation tokens: apps.ts). One module a resource; server.ts routes requests to them.
 */
export {
  commitFiles,
  createGitRepo,
  createGitRepoFromDirectory,
  type GitFile,
  type GitFiles,
  type GitRepo,
} from './git.js';
export type { RecordedRequest } from './context.js';
export type { Fault, FaultMode } from './faults.js';
export type {
  AppDefinition,
  AppPermissions,
  CheckAnnotation,
  CheckRunAction,
  CollaboratorRole,
  CommitStatusRecord,
  CreatedStatus,
  InstallationDefinition,
  ManifestDefinition,
  MintedToken,
  RepositoryDefinition,
  StoredCheckRun,
  StoredHook,
} from './records.js';
export { startGitHubServer, type GitHubServerOptions, type GitHubStandIn } from './server.js';
