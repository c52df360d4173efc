/** `lambkin dev` as a separate process, started the way a user starts it, for end-to-end tests. */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { StackFile } from '../../src/local/stack.js';

/** What `--import tsx` loads, by path: the child's working folder may lack node_modules. */
export const TSX_LOADER = pathToFileURL(join(process.cwd(), 'node_modules/tsx/dist/loader.mjs')).href;

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
}): Promise<DevProcess> {
  const child = spawn(
    process.execPath,
    [
      '--import',
      TSX_LOADER,
      'src/cli/main.ts',
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
      stdio: ['ignore', 'pipe', 'pipe'],
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
    child.once('exit', (code) => reject(new Error(`lambkin dev exited with ${code}: ${logs}`)));
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
