/**
 * A file descriptor the operator's process inherited without close-on-exec (a shell's
 * `exec 5>>file`, a CI harness's pipe) must not reach a build's steps: through Lambkin, the sandbox
 * and the privilege drop it would let the step write where its own user may not.
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { passingProject } from '../support/npm-projects.js';
import { scratchFolders } from '../support/scratch.js';
import { CHILD_TIMEOUT_MS, childTestTimeout, writeProject } from '../cli/helpers.js';
import { LAMBKIN_BIN } from '../support/dev-process.js';

const scratch = scratchFolders();
/**
 * The descriptor number `lambkin run` inherits the file as: a high one, as a shell or a harness
 * leaves them (low ones happened to be closed on the way, high ones were not).
 */
const INHERITED_FD = 200;

/** Runs `lambkin run .` in `project` from a shell that opened `file` for appending as INHERITED_FD. */
function runWithInheritedFd(project: string, file: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      'bash',
      ['-c', `exec ${INHERITED_FD}>>"$1"; exec "$2" "$3" run .`, 'bash', file, process.execPath, LAMBKIN_BIN],
      {
        cwd: project,
        env: { PATH: process.env.PATH ?? '', HOME: project, XDG_CACHE_HOME: join(project, '.cache') },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), CHILD_TIMEOUT_MS);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

describe('descriptors the operator’s process inherited', () => {
  it(
    'never reach a step: it can neither see nor write to them',
    async () => {
      const dir = scratch('lambkin-inherited-fd-');
      const secretFile = join(dir, 'operator-only.log');
      writeFileSync(secretFile, 'operator line\n', { mode: 0o600 });
      const project = writeProject(join(dir, 'project'), {
        ...passingProject(),
        '.lambkin.json': JSON.stringify({
          test:
            'for f in /proc/self/fd/*; do echo "open fd ${f##*/} -> $(readlink "$f")"; done; ' +
            // Printed as WROTE-5: the command line the log shows holds no such text.
            `{ echo pwned >&${INHERITED_FD}; } 2>/dev/null && echo "WROTE-$((2+3))"; echo "probe done"`,
        }),
      });
      const run = await runWithInheritedFd(project, secretFile);
      expect(run.output).toContain('probe done');
      expect(run.code).toBe(0);
      expect(run.output).not.toContain('WROTE-5');
      expect(run.output).not.toMatch(new RegExp(`^open fd ${INHERITED_FD} `, 'm'));
      expect(run.output).not.toContain(secretFile);
      expect(readFileSync(secretFile, 'utf8')).toBe('operator line\n');
    },
    childTestTimeout(),
  );
});
