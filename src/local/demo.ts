/**
 * `npm start`: the whole pipeline on this machine in about a minute. Starts the embedded stack and
 * a loopback GitHub stand-in, turns examples/demo-app into a git repository, sends a signed push
 * and a signed pull request webhook, and prints each commit status as the builds go, then the
 * log links. Exits 0 when both builds pass.
 */
import { appendFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { isTerminal } from '../core/state-machine.js';
import { buildPageUrl, rawLogUrl } from '../core/links.js';
import type { BuildKey, BuildRecord } from '../core/build.js';
import { TransitionRefusedError, messageOf } from '../core/errors.js';
import type { BuildStore } from '../core/ports.js';
import { createJsonLogger } from '../core/logger.js';
import {
  commitFiles,
  createGitRepoFromDirectory,
  startGitHubServer,
  type CreatedStatus,
} from './github/index.js';
import { pullRequestPayload, pushPayload, signedDelivery, type DemoRepository } from './demo-payloads.js';
import { startLocalStack } from './stack.js';

export interface DemoOptions {
  write: (line: string) => void;
  /** The example repository; default examples/demo-app of this checkout. */
  exampleDir?: string;
  /** Keep the data dir (for looking around afterwards). */
  dataDir?: string;
  timeoutMs?: number;
  /**
   * Aborted to stop the demo (Ctrl-C): its builds are cancelled and ended, the stack stopped and
   * its files removed; the demo then throws the reason.
   */
  signal?: AbortSignal;
}

const DEMO_SECRET = 'lambkin-demo-secret';
const DEMO_TOKEN = 'lambkin-demo-token';

export function defaultExampleDir(): string {
  // src/local/demo.ts (or dist/…) → the repository root's examples/demo-app
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'examples', 'demo-app');
}

export async function runDemo(options: DemoOptions): Promise<number> {
  const write = options.write;
  const dataDir = options.dataDir ? resolve(options.dataDir) : await mkdtemp(join(tmpdir(), 'lambkin-demo-'));
  const logFile = join(dataDir, 'lambkin.log');
  const started = Date.now();
  const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s`;
  const showStatus = (status: CreatedStatus) =>
    write(
      `${elapsed()}  GitHub status  ${status.repo}@${status.sha.slice(0, 7)}  ${status.state.padEnd(7)}  ${status.description ?? ''}`,
    );

  const github = await startGitHubServer({ token: DEMO_TOKEN, onStatus: showStatus });
  const cleanups: (() => Promise<unknown>)[] = [() => github.close()];
  try {
    const example = options.exampleDir ?? defaultExampleDir();
    const git = await createGitRepoFromDirectory(example, { message: 'Add the demo app', branch: 'main' });
    cleanups.push(() => rm(git.dir, { recursive: true, force: true }));
    const repo: DemoRepository = {
      owner: 'lambkin-demo',
      name: 'demo-app',
      defaultBranch: 'main',
      htmlBase: 'https://github.com',
    };
    github.addRepository({ owner: repo.owner, name: repo.name, gitDir: git.dir, defaultBranch: 'main' });
    const readme = await readFile(join(example, 'README.md'), 'utf8');
    const prSha = await commitFiles(
      git.dir,
      { 'README.md': `${readme}\nA change proposed in a pull request.\n` },
      'Improve the README',
    );

    const stack = await startLocalStack({
      dataDir,
      port: 0,
      githubApiUrl: github.url,
      githubToken: DEMO_TOKEN,
      webhookSecret: DEMO_SECRET,
      retryDelaysMs: [500, 1000],
      logger: createJsonLogger((line) => appendFileSync(logFile, line + '\n')),
    });
    cleanups.unshift(() => stack.stop());
    write('Lambkin demo: the embedded local stack is up');
    for (const [name, url] of Object.entries(stack.file.endpoints)) write(`  ${name.padEnd(9)}${url}`);
    write(`  service log ${logFile}`);
    write('');

    const deliveries: [string, string, unknown][] = [
      ['push to main', 'push', pushPayload(repo, 'main', '0'.repeat(40), git.sha, 'Add the demo app')],
      [
        'pull request #1',
        'pull_request',
        pullRequestPayload(
          repo,
          1,
          { ref: 'improve-readme', sha: prSha },
          { ref: 'main', sha: git.sha },
          'Improve the README',
        ),
      ],
    ];
    const queued: { label: string; repo: string; number: number }[] = [];
    for (const [label, event, payload] of deliveries) {
      options.signal?.throwIfAborted();
      const delivery = await signedDelivery(DEMO_SECRET, event, payload);
      const response = await fetch(stack.file.endpoints.webhook, {
        method: 'POST',
        headers: delivery.headers,
        body: delivery.body,
      });
      const answer = (await response.json()) as { number?: number; error?: string };
      write(
        `${elapsed()}  webhook ${label}: HTTP ${response.status}${answer.number ? `, build #${answer.number} queued` : ''}`,
      );
      if (response.status !== 202 || answer.number === undefined)
        throw new Error(`the webhook refused the ${label}: ${answer.error ?? response.status}`);
      queued.push({ label, repo: `${repo.owner}/${repo.name}`, number: answer.number });
    }

    const finished = await waitForBuilds(
      stack.controller.builds,
      queued,
      options.timeoutMs ?? 5 * 60_000,
      options.signal,
    ).catch(async (error: unknown) => {
      const signal = options.signal;
      if (!signal?.aborted) throw error;
      // Interrupted: the builds end as cancelled (their runners stopped) before the stack stops.
      write(`${elapsed()}  ${messageOf(signal.reason)}: cancelling the builds`);
      await cancelBuilds(stack.controller.builds, queued, messageOf(signal.reason));
      await waitForBuilds(stack.controller.builds, queued, 30_000).catch(() => undefined);
      await stack.idle(30_000).catch(() => undefined);
      throw signal.reason;
    });
    await stack.idle(30_000);
    write('');
    let passed = true;
    for (const [index, build] of finished.entries()) {
      const url = buildPageUrl(stack.file.publicUrl, build);
      const page = await fetch(url);
      write(`${queued[index]?.label}: build #${build.number} ${build.state} (${build.description ?? ''})`);
      const steps = (build.steps ?? []).map(
        (step) =>
          `${step.name} ${step.exitCode === 0 ? 'ok' : `exit ${step.exitCode ?? 'killed'}`} ${step.durationMs} ms`,
      );
      write(`  steps     ${steps.join(', ')}`);
      write(`  log page  ${url}  (HTTP ${page.status})`);
      write(`  raw log   ${rawLogUrl(url)}`);
      passed &&= build.state === 'success' && page.status === 200;
    }
    write('');
    write(passed ? `Both builds passed in ${elapsed().trim()}.` : 'A build did not pass: see its log above.');
    write('');
    for (const line of lookAgainHint(dataDir, options.dataDir !== undefined, repo)) write(line);
    return passed ? 0 : 1;
  } finally {
    for (const cleanup of cleanups) await cleanup().catch(() => undefined);
    if (!options.dataDir) await rm(dataDir, { recursive: true, force: true });
  }
}

/** Where `lambkin dev` serves pages unless told otherwise (src/cli/commands/dev.ts). */
const DEV_DEFAULT_BASE = 'http://127.0.0.1:3000';

/**
 * The links above die with the demo's stack. How to see the builds again: the exact command that
 * reopens kept data (its pages link relatively, so they work on the new port), or how to keep it.
 */
export function lookAgainHint(dataDir: string, kept: boolean, repo: DemoRepository): string[] {
  const list = `${DEV_DEFAULT_BASE}/builds/${repo.owner}/${repo.name}`;
  if (!kept) {
    return [
      'The stack and its builds are gone now. To look at them again afterwards, keep the data:',
      '  npm start -- --keep-data .lambkin',
      `then reopen it with \`${reopenCommand('.lambkin')}\` and open ${list}`,
    ];
  }
  return [
    `The stack's data is kept in ${dataDir}. To look at these builds again:`,
    `  ${reopenCommand(dataDir)}`,
    `then open ${list} (add --port N to the command if 3000 is taken).`,
  ];
}

/** `lambkin dev` needs a webhook secret: the demo's, so the demo's own deliveries still verify. */
function reopenCommand(dataDir: string): string {
  return `LAMBKIN_WEBHOOK_SECRET=${DEMO_SECRET} npm run lambkin -- dev --data-dir ${shellWord(dataDir)}`;
}

/** A path as one shell word: as is when it holds nothing the shell would change, else single-quoted. */
function shellWord(text: string): string {
  return /^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replace(/'/g, "'\\''")}'`;
}

async function waitForBuilds(
  builds: Pick<BuildStore, 'getBuild'>,
  keys: BuildKey[],
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<BuildRecord[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const current = await Promise.all(keys.map((key) => builds.getBuild(key)));
    if (current.every((build) => build && isTerminal(build.state))) return current as BuildRecord[];
    if (Date.now() > deadline) throw new Error(`the builds did not finish within ${timeoutMs / 1000} s`);
    await sleep(250, undefined, signal ? { signal } : {});
  }
}

/** Cancels those of `keys` still queued or running (one conditional transition each). */
async function cancelBuilds(builds: Pick<BuildStore, 'transition'>, keys: BuildKey[], reason: string) {
  await Promise.all(
    keys.map((key) =>
      builds
        .transition(key, { from: ['queued', 'running'], to: 'cancelled', reason })
        .catch((error: unknown) => {
          if (!(error instanceof TransitionRefusedError)) throw error;
        }),
    ),
  );
}
