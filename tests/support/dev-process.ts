/** `lambkin dev` as a separate process, started the way a user starts it, for end-to-end tests. */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { StackFile } from '../../src/local/stack-file.js';
import { createGitRepo, type GitFiles, type GitHubStandIn, type GitRepo } from './github-server.js';
import { pushPayload, signedDelivery } from './payloads.js';

/** The `lambkin` executable of this checkout, as `npm link` or `npx lambkin` would start it. */
export const LAMBKIN_BIN = join(process.cwd(), 'bin', 'lambkin.js');

/**
 * Where CLI processes start by default: a folder outside the checkout, as a user's own project
 * is, so that nothing can resolve through the checkout's node_modules by accident.
 */
export const OUTSIDE_CHECKOUT = tmpdir();

export interface DevProcess {
  child: ChildProcess;
  /** The stack file it wrote into its data dir. */
  stack: StackFile;
  /** What it printed on stdout up to `ready`. */
  startup: string;
  /** Everything it logged on stderr so far. */
  logs(): string;
  stop(): Promise<void>;
}

export async function startDevProcess(options: {
  dataDir: string;
  githubApi: string;
  /** Its whole environment, besides PATH and HOME. */
  env: Record<string, string>;
  /** The `lambkin` executable; default this checkout's. */
  bin?: string;
  /** Its working folder; default one outside the checkout. */
  cwd?: string;
  /** Run it as this user (the tests run as root); default the tests' own. */
  user?: { uid: number; gid: number };
}): Promise<DevProcess> {
  const child = spawn(
    process.execPath,
    [
      options.bin ?? LAMBKIN_BIN,
      'dev',
      '--port',
      '0',
      '--data-dir',
      options.dataDir,
      '--github-api',
      options.githubApi,
    ],
    {
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...options.env },
      cwd: options.cwd ?? OUTSIDE_CHECKOUT,
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(options.user ?? {}),
    },
  );
  let logs = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (logs += chunk));
  const startup = await new Promise<string>((resolve, reject) => {
    let stdout = '';
    const timer = setTimeout(() => reject(new Error(`lambkin dev did not start: ${stdout}${logs}`)), 30_000);
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      if (stdout.includes('ready')) {
        clearTimeout(timer);
        resolve(stdout);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`lambkin dev exited with ${code}: ${logs}`));
    });
  });
  const stack = JSON.parse(readFileSync(join(options.dataDir, 'stack.json'), 'utf8')) as StackFile;
  return {
    child,
    stack,
    startup,
    logs: () => logs,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/**
 * A git repository made from `files`, served by the GitHub stand-in as `repo`, and a signed push
 * of it delivered to the running `lambkin dev`; resolves with the repository and the answer.
 */
export async function pushToDev(
  dev: DevProcess,
  github: GitHubStandIn,
  secret: string,
  repo: string,
  files: GitFiles,
): Promise<{ repo: GitRepo; response: Response }> {
  const [owner = '', name = ''] = repo.split('/');
  const git = await createGitRepo(files);
  github.addRepository({ owner, name, gitDir: git.dir });
  const delivery = await signedDelivery(secret, 'push', pushPayload({ repo, branch: 'main', sha: git.sha }));
  const response = await fetch(dev.stack.endpoints.webhook, {
    method: 'POST',
    headers: delivery.headers,
    body: delivery.body,
  });
  return { repo: git, response };
}
