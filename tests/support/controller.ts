/**
 * A controller wired to the test servers, as the builder suites use it: fresh tables and bucket,
 * the GitHub stand-in, the runner as its own process. Suites override what they vary.
 */
import { runControllerBuild, type ControllerDependencies } from '../../src/controller/controller.js';
import { ProcessRunnerInvoker } from '../../src/controller/runner-invoker.js';
import type { BuildRecord, BuildRequest } from '../../src/core/build.js';
import { resolveArchiveUrl } from '../../src/github/archive.js';
import { createGitHubClient } from '../../src/github/client.js';
import { readRepoFile } from '../../src/github/contents.js';
import { GitHubStatusReporter } from '../../src/github/statuses.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import { DynamoBuildStore } from '../../src/store/builds.js';
import { S3LogStore } from '../../src/store/logs.js';
import { DynamoSettingsStore } from '../../src/store/settings.js';
import { testBuildRequest } from './builds.js';
import { startGitHubServer, type GitHubStandIn } from './github-server.js';
import { createTestStorage, type TestStorage } from './storage.js';

export interface ControllerFixture {
  storage: TestStorage;
  github: GitHubStandIn;
  builds: DynamoBuildStore;
  settings: DynamoSettingsStore;
  logs: S3LogStore;
  deps: ControllerDependencies;
  /** Queues the build and runs it through the controller; the build and its log. */
  build(
    request: Partial<BuildRequest> & Pick<BuildRequest, 'repo' | 'sha'>,
    deps?: ControllerDependencies,
  ): Promise<{ done: BuildRecord; log: string }>;
  close(): Promise<void>;
}

export async function startControllerFixture(token: string): Promise<ControllerFixture> {
  const storage = await createTestStorage();
  const github = await startGitHubServer({ token });
  const builds = new DynamoBuildStore(storage.clients.documents, storage.buildsTable);
  const settings = new DynamoSettingsStore(storage.clients.documents, storage.settingsTable);
  const logs = new S3LogStore(storage.clients.s3, storage.bucket);
  const octokit = createGitHubClient({ baseUrl: github.url, token });
  const deps: ControllerDependencies = {
    builds,
    settings,
    statuses: new GitHubStatusReporter(octokit),
    logs,
    archives: { resolveArchiveUrl: (repo, sha) => resolveArchiveUrl(octokit, repo, sha) },
    repoFiles: { readFile: (repo, path, ref) => readRepoFile(octokit, repo, path, ref) },
    runner: new ProcessRunnerInvoker(),
    logger: createMemoryLogger(),
    publicUrl: 'https://ci.example.test',
    runnerTimeoutMs: 60_000,
    logLimitBytes: 1024 * 1024,
  };
  return {
    storage,
    github,
    builds,
    settings,
    logs,
    deps,
    async build(request, using = deps) {
      const full = testBuildRequest(request);
      const number = await builds.allocateNumber(full.repo);
      await builds.putQueuedBuild(full, number, { deadline: Date.now() + 60_000 });
      const result = await runControllerBuild(using, { kind: 'build', repo: full.repo, number });
      if (!result.ran) throw new Error(`build did not run: ${result.reason}`);
      return { done: result.build, log: (await logs.readLog(result.build.logPrefix)) ?? '' };
    },
    close: () => github.close(),
  };
}
