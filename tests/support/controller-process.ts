/**
 * A separate process running the builder's controller (`runControllerBuild`) with real
 * dependencies, configured only through the environment, so a test can kill it mid-build
 * (SIGKILL: no handler, no cleanup, like a Lambda container that dies). Builds the build named by
 * argv[2] (`owner/name#number`), prints `started` once the build is running and the result as
 * one JSON line when it ends.
 *
 * Environment: LAMBKIN_TEST_DYNAMODB_ENDPOINT, LAMBKIN_TEST_S3_ENDPOINT, TEST_BUILDS_TABLE,
 * TEST_SETTINGS_TABLE, TEST_BUCKET, GITHUB_API_URL, GITHUB_TOKEN, TEST_RUNNER_TIMEOUT_MS.
 */
import { createDynamoClients, createS3Client } from '../../src/aws/clients.js';
import { runControllerBuild } from '../../src/controller/controller.js';
import { ProcessRunnerInvoker } from '../../src/controller/runner-invoker.js';
import { resolveArchiveUrl } from '../../src/github/archive.js';
import { createGitHubClient } from '../../src/github/client.js';
import { GitHubStatusReporter } from '../../src/github/statuses.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import { DynamoBuildStore } from '../../src/store/builds.js';
import { S3LogStore } from '../../src/store/logs.js';
import { DynamoSettingsStore } from '../../src/store/settings.js';

function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`controller-process: ${name} is not set`);
  return value;
}

const [repo = '', number = ''] = (process.argv[2] ?? '').split('#');
const endpoints = { dynamodb: env('LAMBKIN_TEST_DYNAMODB_ENDPOINT'), s3: env('LAMBKIN_TEST_S3_ENDPOINT') };
const { documents } = createDynamoClients({ endpoints });
const s3 = createS3Client({ endpoints });
const builds = new DynamoBuildStore(documents, env('TEST_BUILDS_TABLE'));
const octokit = createGitHubClient({ baseUrl: env('GITHUB_API_URL'), token: env('GITHUB_TOKEN') });

// Tell the test once the build is claimed (the runner is then starting).
const poll = setInterval(() => {
  void builds.getBuild({ repo, number: Number(number) }).then((build) => {
    if (build?.state === 'running') {
      process.stdout.write('started\n');
      clearInterval(poll);
    }
  });
}, 100);

const result = await runControllerBuild(
  {
    builds,
    settings: new DynamoSettingsStore(documents, env('TEST_SETTINGS_TABLE')),
    statuses: new GitHubStatusReporter(octokit),
    logs: new S3LogStore(s3, env('TEST_BUCKET')),
    archives: { resolveArchiveUrl: (name, sha) => resolveArchiveUrl(octokit, name, sha) },
    runner: new ProcessRunnerInvoker(),
    logger: createMemoryLogger(),
    publicUrl: 'https://ci.example.test',
    runnerTimeoutMs: Number(env('TEST_RUNNER_TIMEOUT_MS')),
    logLimitBytes: 1024 * 1024,
  },
  { kind: 'build', repo, number: Number(number) },
);
clearInterval(poll);
process.stdout.write(JSON.stringify(result) + '\n');
