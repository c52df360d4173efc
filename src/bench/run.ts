/**
 * `lambkin run` as a user runs it (the built CLI, in a fresh process) against the same commands in
 * bash (`rm -rf node_modules && npm ci && npm test`, npm's cache warm), interleaved on two clones of
 * one project: cold (its dependency cache folder emptied first) and warm (restored from the run
 * before). Each side has run once before the rounds, so npm's caches (the shell's and the runner's
 * own) are warm for both.
 */
import { access, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { execa } from 'execa';
import { npmEnvironment } from './projects.js';
import { median, progress, round } from './shared.js';

const BUILT_CLI = join(process.cwd(), 'dist', 'cli', 'lambkin.mjs');

/**
 * The packed CLI users install (bin/lambkin.js runs the TypeScript sources in a checkout: slower to
 * start), built from this checkout first so the figures are of this code, not of an older build.
 */
export async function builtCli(): Promise<string> {
  progress('run: building the CLI (scripts/build.mjs)');
  await execa(process.execPath, ['scripts/build.mjs'], { stdio: ['ignore', 'ignore', 'inherit'] });
  await access(BUILT_CLI);
  return BUILT_CLI;
}

export async function measureRun(
  label: string,
  gitDir: string,
  npmCache: string,
  repeats: number,
): Promise<Record<string, unknown>> {
  const root = await mkdtemp(join(tmpdir(), 'lambkin-bench-run-'));
  const cli = await builtCli();
  const rawCopy = join(root, 'raw');
  const runCopy = join(root, 'run');
  const cacheHome = join(root, 'xdg-cache');
  const env = npmEnvironment(npmCache);
  try {
    await execa('git', ['clone', '--quiet', gitDir, rawCopy]);
    await execa('git', ['clone', '--quiet', gitDir, runCopy]);
    // `npm ci` needs a lockfile; without one (expressjs/express has none) `npm install`, as Lambkin's default does.
    const hasLockfile = await Promise.any(
      ['npm-shrinkwrap.json', 'package-lock.json'].map((name) => access(join(rawCopy, name))),
    ).then(
      () => true,
      () => false,
    );
    const rawCommand = `rm -rf node_modules && npm ${hasLockfile ? 'ci' : 'install'} && npm test`;
    const raw = async (): Promise<number> => {
      const started = performance.now();
      await execa('bash', ['-c', rawCommand], {
        cwd: rawCopy,
        env,
        extendEnv: false,
      });
      return performance.now() - started;
    };
    const lambkin = async (): Promise<{ ms: number; state: string; restored: boolean }> => {
      const started = performance.now();
      const result = await execa(process.execPath, [cli, 'run', runCopy, '--json'], {
        env: { ...env, XDG_CACHE_HOME: cacheHome },
        extendEnv: false,
        reject: false,
      });
      const ms = performance.now() - started;
      const summary = JSON.parse(result.stdout || '{}') as { state?: string };
      return {
        ms,
        state: summary.state ?? `exit ${result.exitCode}`,
        restored: /Cache: restored/.test(result.stderr),
      };
    };
    const clearCache = () => rm(join(cacheHome, 'lambkin'), { recursive: true, force: true });

    progress(`run (${label}): warming npm's caches`);
    await raw();
    await clearCache();
    await lambkin();
    const raws: number[] = [];
    const colds: number[] = [];
    const warms: number[] = [];
    const states = new Set<string>();
    let warmRestored = 0;
    for (let index = 0; index < repeats; index++) {
      progress(`run (${label}): round ${index + 1} of ${repeats}`);
      raws.push(await raw());
      await clearCache();
      const cold = await lambkin();
      colds.push(cold.ms);
      const warm = await lambkin();
      warms.push(warm.ms);
      states.add(cold.state).add(warm.state);
      if (warm.restored) warmRestored++;
    }
    return {
      repeats,
      rawMedianMs: round(median(raws)),
      coldMedianMs: round(median(colds)),
      warmMedianMs: round(median(warms)),
      coldOverRaw: round(median(colds) / median(raws), 3),
      warmOverRaw: round(median(warms) / median(raws), 3),
      states: [...states],
      warmRunsRestored: warmRestored,
      raw: rawCommand,
      note: 'raw = the command above in bash; cold/warm = the built `lambkin run --json` with its dependency cache emptied / kept',
    };
  } finally {
    await rm(root, { recursive: true, force: true }).catch(() => undefined);
  }
}
