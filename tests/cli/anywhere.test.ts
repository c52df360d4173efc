/**
 * A newcomer's first commands, run as users run them: `lambkin run .` inside their own project,
 * Lambkin itself checked out into a root user's `0700` home, and Lambkin run by a user who is not
 * root. Each starts the real `bin/lambkin.js` as a process.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import { LAMBKIN_BIN, startDevProcess } from '../support/dev-process.js';
import { itAsRoot } from '../support/tools.js';
import { scratchFolders } from '../support/scratch.js';
import { checkoutInto, runLambkinBin as lambkin, whoAmIProject, writeProject } from './helpers.js';

const asRoot = process.getuid?.() === 0;
const NOBODY = 65534;
/** As root each build runs as a uid of its own (src/controller/build-sandbox.ts): 1879048192 + slot. */
const SANDBOX_UID = /step uid=18790\d{5}\b/;
const scratch = scratchFolders();

describe('lambkin from any folder', () => {
  it('`lambkin run .` inside the user’s own project, outside the checkout', async () => {
    const project = writeProject(scratch('lambkin-my-app-'), whoAmIProject());
    const run = await lambkin(LAMBKIN_BIN, ['run', '.'], { cwd: project });
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/■ build passed/);
    if (asRoot) expect(run.stdout).toMatch(SANDBOX_UID);
    else expect(run.stdout).toContain(`step uid=${process.getuid?.()}`);
  }, 100_000);

  itAsRoot(
    "root with Lambkin checked out in its 0700 home: the steps still run unprivileged (the build's own uid) and pass",
    async () => {
      const home = scratch('lambkin-root-home-');
      chmodSync(home, 0o700);
      const checkout = checkoutInto(home, 'symlink');
      const project = writeProject(join(home, 'my-app'), whoAmIProject());
      const run = await lambkin(join(checkout, 'bin', 'lambkin.js'), ['run', '.'], { cwd: project });
      expect(run.stderr).toBe('');
      expect(run.code).toBe(0);
      expect(run.stdout).toMatch(SANDBOX_UID);
      expect(run.stdout).toMatch(/■ build passed/);
    },
    100_000,
  );

  /** Lambkin readable by everyone, as a shared checkout is (made once for this file). */
  let sharedCheckout: string | undefined;
  const shared = (): string => {
    if (sharedCheckout) return sharedCheckout;
    const folder = scratch('lambkin-shared-');
    chmodSync(folder, 0o755);
    return (sharedCheckout = checkoutInto(folder, 'hardlink'));
  };

  itAsRoot(
    'a user who is not root: no privilege drop, the steps run as that user',
    async () => {
      // The user's own home and project.
      const checkout = shared();
      const home = scratch('lambkin-user-home-');
      const project = writeProject(join(home, 'my-app'), whoAmIProject());
      execFileSync('chown', ['-R', `${NOBODY}:${NOBODY}`, home]);
      const run = await lambkin(join(checkout, 'bin', 'lambkin.js'), ['run', '.', '--json'], {
        cwd: project,
        uid: NOBODY,
        gid: NOBODY,
      });
      expect(run.code).toBe(0);
      // With --json the log streams to stderr and stdout holds only the summary.
      expect(run.stderr).toContain(`step uid=${NOBODY}`);
      expect(JSON.parse(run.stdout)).toMatchObject({ state: 'success' });
    },
    100_000,
  );

  itAsRoot(
    'a user who is not root: `lambkin dev` refuses pull requests from forks and says so at start',
    async () => {
      const home = scratch('lambkin-dev-home-');
      execFileSync('chown', [`${NOBODY}:${NOBODY}`, home]);
      const dev = await startDevProcess({
        bin: join(shared(), 'bin', 'lambkin.js'),
        cwd: home,
        dataDir: join(home, '.lambkin'),
        githubApi: 'http://127.0.0.1:9',
        env: { HOME: home, LAMBKIN_WEBHOOK_SECRET: 'dev-secret' },
        user: { uid: NOBODY, gid: NOBODY },
      });
      try {
        expect(dev.startup).toMatch(/^forks refused: .*not run as root.*--allow-unsandboxed-forks/m);
      } finally {
        await dev.stop();
      }
    },
    100_000,
  );
});
