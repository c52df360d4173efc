import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLocalStack } from './src/local/stack.ts';
import { startGitHubServer, createGitRepo } from './src/local/github-stand-in.ts';
import { createMemoryLogger } from './src/logger.ts';
import { runControllerBuild } from './src/builder/controller.ts';
import { ProcessRunnerInvoker, defaultRunnerCommand } from './src/builder/runner-invoker.ts';

const root = await mkdtemp(join(tmpdir(), 'memexp-'));
const github = await startGitHubServer({ token: 't' });
const stack = await startLocalStack({ dataDir: join(root, 'stack'), port: 0, githubApiUrl: github.url, githubToken: 't', webhookSecret: 's', concurrency: 1, logger: createMemoryLogger() });
const extra = (process.argv[2] ?? '').split(' ').filter(Boolean);
for (const mib of [1, 20, 100]) {
  const repo = await createGitRepo({ '.lambkin.json': JSON.stringify({ install: [], test: `head -c ${mib * 1048576} /dev/zero | tr '\\0' 'x' | fold -w 1023` }) });
  github.addRepository({ owner: 'o', name: `m${mib}`, gitDir: repo.dir });
  const rssFile = join(root, `rss-${mib}`);
  const [node, ...rest] = defaultRunnerCommand();
  const runner = new ProcessRunnerInvoker({ command: ['/usr/bin/time', '-o', rssFile, '-f', '%M', node!, ...extra, ...rest], workRoot: join(root, 'work') });
  const builds = stack.controller.builds;
  const number = await builds.allocateNumber(`o/m${mib}`);
  await builds.putQueuedBuild({ repo: `o/m${mib}`, sha: repo.sha, event: 'push', ref: 'refs/heads/main', branch: 'main', defaultBranch: 'main', fork: false, privateRepo: false, trusted: true, author: 'x', deliveryId: `d${mib}${Date.now()}` }, number, { deadline: Date.now() + 600000 });
  const t = Date.now();
  const r = await runControllerBuild({ ...stack.controller, runner }, { kind: 'build', repo: `o/m${mib}`, number });
  console.log(mib, 'MiB', r.ran && r.build.state, Number((await readFile(rssFile, 'utf8')).trim().split('\n').pop()) / 1024, 'MiB rss', Date.now() - t, 'ms');
}
await stack.stop();
await github.close();
