/**
 * The build sandbox's cost (docs/design/build-sandbox.md), medians of 20: an empty build sandbox
 * (slot, cgroup, work root, namespaces, runner = /bin/true) started and torn down, the teardown of a
 * build that left 10 processes, and one step `true` with and without the step sandbox. Run as root:
 * `npx tsx scripts/measure-sandbox.ts`.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { acquireBuildSandbox } from '../src/controller/build-sandbox.js';
import { runStep } from '../src/runner/steps.js';
import { stepSandboxFor, type StepSandbox } from '../src/runner/step-sandbox.js';

const ROUNDS = 20;
const median = (values: number[]): string => {
  const sorted = [...values].sort((a, b) => a - b);
  return (sorted[Math.floor(sorted.length / 2)] ?? NaN).toFixed(1);
};

if (process.getuid?.() !== 0) throw new Error('Run as root: the build sandbox needs it.');
const workParent = join(tmpdir(), 'lambkin-measure-builds');
const stateDir = '/run/lambkin-measure';

async function buildSandboxes(command: string[]): Promise<{ start: number[]; teardown: number[] }> {
  const start: number[] = [];
  const teardown: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const began = performance.now();
    const sandbox = await acquireBuildSandbox(workParent, { stateDir });
    const [file, ...args] = sandbox.wrap(command);
    spawnSync(file ?? 'false', args);
    const ran = performance.now();
    await sandbox.teardown();
    start.push(ran - began);
    teardown.push(performance.now() - ran);
  }
  return { start, teardown };
}

const empty = await buildSandboxes(['/bin/true']);
console.log(`empty build sandbox: start ${median(empty.start)} ms, teardown ${median(empty.teardown)} ms`);
const leaving = await buildSandboxes([
  '/bin/sh',
  '-c',
  'for i in 1 2 3 4 5 6 7 8 9 10; do setsid sleep 100 & done',
]);
console.log(`teardown of a build that left 10 processes: ${median(leaving.teardown)} ms`);

const work = mkdtempSync(join(tmpdir(), 'lambkin-measure-step-'));
for (const folder of ['checkout', 'tmp']) mkdirSync(join(work, folder));
async function steps(sandbox: StepSandbox | undefined): Promise<string> {
  const times: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const began = performance.now();
    const run = await runStep(
      {
        name: 'true',
        command: 'true',
        cwd: join(work, 'checkout'),
        env: { PATH: '/usr/bin:/bin' },
        timeoutMs: 20_000,
      },
      { onOutput: () => undefined, maxProcesses: 256, ...(sandbox ? { sandbox } : {}) },
    );
    if (run.exitCode !== 0) throw new Error(`the step failed: ${JSON.stringify(run)}`);
    times.push(performance.now() - began);
  }
  return median(times);
}
const sandbox = stepSandboxFor({ tmp: join(work, 'tmp'), keep: [work] });
console.log(`one step, no sandbox: ${await steps(undefined)} ms`);
if (sandbox) {
  console.log(`one step, step sandbox with slirp4netns: ${await steps(sandbox)} ms`);
  const { slirp: _slirp, ...hostNetwork } = sandbox;
  console.log(`one step, step sandbox without a network of its own: ${await steps(hostNetwork)} ms`);
}
rmSync(work, { recursive: true, force: true });
rmSync(workParent, { recursive: true, force: true });
