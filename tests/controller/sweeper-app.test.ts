/**
 * The sweeper in App mode, with the reporter the composition root makes: a check run left in
 * progress by a build whose runner died is completed when the sweep ends the build, and a final
 * report GitHub did not take (check run refused with a 500) is sent again, check run included.
 */
import { rm } from 'node:fs/promises';
import { reportBuildStatus } from '../../src/controller/status-reporting.js';
import { sweepOverdueBuilds, type SweeperDependencies } from '../../src/controller/sweeper.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import { createGitHubAccess } from '../../src/github/access.js';
import { INTAKE_DELIVERY } from '../../src/github/statuses.js';
import { DynamoBuildStore } from '../../src/store/builds.js';
import { statusReporterFor } from '../../src/wiring.js';
import { pushRequest } from '../cli/helpers.js';
import {
  createGitRepo,
  startGitHubServer,
  type GitHubStandIn,
  type GitRepo,
} from '../support/github-server.js';
import { createTestStorage } from '../support/storage.js';
import { appKeyPair } from '../support/app-keys.js';

const APP_ID = 6060;
const REPO = 'acme/swept';
/** Each test's tables number builds from 1: the second test's builds are another repository's. */
const OTHER = 'acme/swept-again';
const THIRD = 'acme/swept-log';
const MINUTE = 60_000;
const { publicKey, privateKey } = appKeyPair();

let github: GitHubStandIn;
let git: GitRepo;

beforeAll(async () => {
  git = await createGitRepo({ 'README.md': '# swept\n' });
  github = await startGitHubServer({
    apps: [{ id: APP_ID, publicKey }],
    installations: [{ id: 3, account: 'acme', repositories: [REPO, OTHER, THIRD] }],
  });
  github.addRepository({ owner: 'acme', name: 'swept', gitDir: git.dir });
  github.addRepository({ owner: 'acme', name: 'swept-again', gitDir: git.dir });
  github.addRepository({ owner: 'acme', name: 'swept-log', gitDir: git.dir });
});

afterAll(async () => {
  await github.close();
  await rm(git.dir, { recursive: true, force: true });
});

async function setup() {
  const storage = await createTestStorage();
  const builds = new DynamoBuildStore(storage.clients.documents, storage.buildsTable);
  const logger = createMemoryLogger();
  const statuses = statusReporterFor(
    createGitHubAccess({ baseUrl: github.url, logger, app: { appId: String(APP_ID), privateKey } }),
  );
  const deps: SweeperDependencies = {
    builds,
    statuses,
    logger,
    publicUrl: 'https://ci.example.test',
    unreportedGraceMs: 0,
    statusDelivery: { deadlineMs: 5000, maxAttempts: 3, initialBackoffMs: 20 },
  };
  return { builds, statuses, logger, deps };
}

function runOf(number: number, repo = REPO) {
  return github.checkRunsFor(repo, git.sha).find((run) => run.external_id === `${repo}#${number}`);
}

describe('the sweeper in App mode', () => {
  it('completes the check run of a build whose runner never came back', async () => {
    const { builds, deps } = await setup();
    const number = await builds.allocateNumber(REPO);
    const queued = await builds.putQueuedBuild(
      pushRequest({ repo: REPO, sha: git.sha, deliveryId: `d-${number}` }),
      number,
      {
        deadline: Date.now() + MINUTE,
      },
    );
    const started = await builds.transition(queued, {
      from: 'queued',
      to: 'running',
      deadline: Date.now() - MINUTE,
    });
    // What the builder sent when the build started, before its runner died.
    await reportBuildStatus(deps, {
      build: started,
      status: { repo: REPO, sha: git.sha, state: 'pending', description: `Build #${number} running` },
      reports: 'running',
      policy: INTAKE_DELIVERY,
      onFailure: { level: 'warn', message: 'not sent' },
    });
    expect(runOf(number)?.status).toBe('in_progress');

    const result = await sweepOverdueBuilds(deps);
    expect(result.ended.map((ended) => ended.number)).toEqual([number]);
    const run = runOf(number);
    expect(run).toMatchObject({ status: 'completed', conclusion: 'timed_out' });
    expect(
      github.checkRunsFor(REPO, git.sha).filter((each) => each.external_id === `${REPO}#${number}`),
    ).toHaveLength(1);
    expect(github.statusesFor(REPO, git.sha)[0]?.state).toBe('error');
  });

  it('sends a final report again, check run included, when GitHub did not take it', async () => {
    const { builds, deps, logger } = await setup();
    const number = await builds.allocateNumber(OTHER);
    const queued = await builds.putQueuedBuild(
      pushRequest({ repo: OTHER, sha: git.sha, deliveryId: `e-${number}` }),
      number,
      {
        deadline: Date.now() + MINUTE,
      },
    );
    const started = await builds.transition(queued, {
      from: 'queued',
      to: 'running',
      deadline: Date.now() + MINUTE,
    });
    const ended = await builds.transition(started, { from: 'running', to: 'success', reason: 'passed' });
    github.failNext({ mode: '500', method: 'POST', path: /\/check-runs$/, times: 5 });
    const first = await reportBuildStatus(deps, {
      build: ended,
      status: { repo: OTHER, sha: git.sha, state: 'success', description: `Build #${number} passed` },
      reports: 'success',
      policy: { deadlineMs: 2000, maxAttempts: 2, initialBackoffMs: 10 },
      onFailure: { level: 'error', message: 'could not set the final status' },
    });
    expect(first.set).toBe(false);
    expect(logger.entries.some((entry) => entry.message === 'could not set the final status')).toBe(true);
    expect(runOf(number, OTHER)).toBeUndefined();
    github.clearFaults();

    const result = await sweepOverdueBuilds(deps);
    expect(result.resent.map((resent) => [resent.number, resent.statusSet])).toEqual([[number, true]]);
    expect(runOf(number, OTHER)).toMatchObject({ status: 'completed', conclusion: 'success' });
    expect((await builds.getBuild(ended))?.reportedState).toBe('success');
  });

  it('still reports, without the log, when the log cannot be read for the check run', async () => {
    const { builds, deps, logger } = await setup();
    const number = await builds.allocateNumber(THIRD);
    const queued = await builds.putQueuedBuild(
      pushRequest({ repo: THIRD, sha: git.sha, deliveryId: `f-${number}` }),
      number,
      { deadline: Date.now() + MINUTE },
    );
    const started = await builds.transition(queued, {
      from: 'queued',
      to: 'running',
      deadline: Date.now() + MINUTE,
    });
    const ended = await builds.transition(started, { from: 'running', to: 'failure', reason: 'test failed' });
    const report = await reportBuildStatus(deps, {
      build: ended,
      status: {
        repo: THIRD,
        sha: git.sha,
        state: 'failure',
        description: `Build #${number} failed: test failed`,
      },
      reports: 'failure',
      // A checkout root that is no absolute path: reading annotations against it throws.
      checkDetails: { log: 'not ok 1 - adds\n', checkoutRoot: 'relative/checkout' },
      policy: INTAKE_DELIVERY,
      onFailure: { level: 'error', message: 'could not set the final status' },
    });
    expect(report.set).toBe(true);
    expect(runOf(number, THIRD)).toMatchObject({
      status: 'completed',
      conclusion: 'failure',
      annotations: [],
    });
    expect(logger.entries.map((entry) => entry.message)).toContain(
      "could not read the build's log for its check run; reporting without it",
    );
  });
});
