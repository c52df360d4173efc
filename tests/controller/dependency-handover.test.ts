/**
 * The trusted builds' unpacked dependency trees kept from one sandboxed build to the next of the
 * same cache key (src/controller/dependency-handover.ts): real folders chowned to build uids, the
 * trees and notes a hostile build would leave, and, in real build sandboxes, stand-in runners that
 * take and hand back their tree, one of them hostile. Root only: handing a folder from uid to uid
 * is root's job.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import {
  chmod,
  chown,
  link,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rm,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_FIRST_SANDBOX_UID } from '../../src/controller/build-sandbox.js';
import { DependencyHandover } from '../../src/controller/dependency-handover.js';
import type { SandboxOwner } from '../../src/controller/kept-trees.js';
import { ProcessRunnerInvoker } from '../../src/controller/runner-invoker.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import type { RunnerInput, RunnerOutcome } from '../../src/core/protocol.js';
import { waitFor } from '../support/wait.js';

const asRoot = process.getuid?.() === 0;
const describeAsRoot = asRoot ? describe : describe.skip;

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'lambkin-dependency-handover-'));
  await chmod(scratch, 0o755);
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

// Below the build sandbox's range and the npm cache tests' uids, never a real build's.
const FIRST_UID = DEFAULT_FIRST_SANDBOX_UID - 200;
let nextUid = FIRST_UID;

const KEY = 'cache/o/r/node20-linux-x64/0123456789abcdef.tar.br';

/**
 * A work root as a sandbox has it (the build's uid's) with a tree handed back by its runner:
 * `<work root>/trusted/kept-dependencies/{node_modules,kept.json}`.
 */
async function sandboxWithTree(
  options: { key?: string; files?: Record<string, string> } = {},
): Promise<{ sandbox: SandboxOwner; folder: string; tree: string }> {
  const uid = nextUid++;
  const workRoot = await mkdtemp(join(scratch, 'sandbox-'));
  const folder = join(workRoot, 'trusted', 'kept-dependencies');
  const tree = join(folder, 'node_modules');
  const files = options.files ?? {
    'pkg/index.js': 'module.exports = 1;',
    'pkg/bin.js': '#!/usr/bin/env node',
  };
  for (const [name, content] of Object.entries(files)) {
    await mkdir(join(tree, name, '..'), { recursive: true });
    await writeFile(join(tree, name), content);
  }
  await writeFile(join(folder, 'kept.json'), JSON.stringify({ key: options.key ?? KEY, files: 0, bytes: 0 }));
  execFileSync('chown', ['-R', '-h', `${uid}:${uid}`, workRoot]);
  return { sandbox: { uid, gid: uid, workRoot }, folder, tree };
}

async function emptySandbox(): Promise<SandboxOwner> {
  const uid = nextUid++;
  const workRoot = await mkdtemp(join(scratch, 'sandbox-'));
  await chown(workRoot, uid, uid);
  return { uid, gid: uid, workRoot };
}

const handoverIn = async (
  name: string,
  options: { keep?: number; maxEntries?: number; scope?: string } = {},
) =>
  new DependencyHandover({
    dir: join(await mkdtemp(join(scratch, `${name}-`)), 'dependency-trees'),
    ...options,
  });

const lentFolder = (sandbox: SandboxOwner) => join(sandbox.workRoot, 'trusted', 'kept-dependencies');

describeAsRoot('the dependency tree handover', () => {
  it("keeps a build's tree as root's, then lends it whole to the next build of the key as that build's", async () => {
    const store = join(await mkdtemp(join(scratch, 'round-')), 'dependency-trees');
    const handover = new DependencyHandover({ dir: store });
    const first = await sandboxWithTree();
    await chmod(join(first.tree, 'pkg/bin.js'), 0o4775); // the setuid bit and the group's write go
    await mkdir(join(first.tree, '.bin'));
    await symlink('../pkg/bin.js', join(first.tree, '.bin/tool'));
    execFileSync('chown', ['-R', '-h', `${first.sandbox.uid}:${first.sandbox.uid}`, first.tree]);
    expect(await handover.keep('o/r', KEY, first.sandbox)).toEqual({ kept: true, bytes: 38, entries: 6 });
    expect(existsSync(first.folder)).toBe(false);

    // Between builds: root's, in a folder only root may enter; links stay links; no setuid bit.
    expect((await stat(store)).mode & 0o777).toBe(0o700);
    const [key] = await readdir(store);
    const kept = join(store, key ?? '');
    const bin = await stat(join(kept, 'node_modules/pkg/bin.js'));
    expect([bin.uid, bin.mode & 0o7777]).toEqual([0, 0o755]);
    expect((await lstat(join(kept, 'node_modules/.bin/tool'))).uid).toBe(0);
    // The note is the controller's: it counted the files.
    expect(JSON.parse(await readFile(join(kept, 'kept.json'), 'utf8'))).toEqual({
      key: KEY,
      files: 2,
      bytes: 38,
    });

    // Another key, another repository: nothing. The next build of this one: the tree, as its uid.
    expect(await handover.lend('o/r', `${KEY}.other`, await emptySandbox())).toBe(false);
    expect(await handover.lend('o/other', KEY, await emptySandbox())).toBe(false);
    const next = await emptySandbox();
    expect(await handover.lend('o/r', KEY, next)).toBe(true);
    const lent = lentFolder(next);
    for (const path of [lent, join(lent, 'kept.json'), join(lent, 'node_modules/pkg/index.js')]) {
      expect((await lstat(path)).uid).toBe(next.uid);
    }
    expect((await lstat(join(lent, 'node_modules/.bin/tool'))).uid).toBe(next.uid);
    expect(await readlink(join(lent, 'node_modules/.bin/tool'))).toBe('../pkg/bin.js');
    // Each kept tree serves one build.
    expect(await handover.lend('o/r', KEY, await emptySandbox())).toBe(false);
  });

  it('gives a lambkin run scope its own trees', async () => {
    const dir = join(await mkdtemp(join(scratch, 'scopes-')), 'dependency-trees');
    const one = new DependencyHandover({ dir, scope: '/work/one' });
    const two = new DependencyHandover({ dir, scope: '/work/two' });
    expect((await one.keep('local/p', KEY, (await sandboxWithTree()).sandbox)).kept).toBe(true);
    expect(await two.lend('local/p', KEY, await emptySandbox())).toBe(false);
    expect(await one.lend('local/p', KEY, await emptySandbox())).toBe(true);
  });

  it.each([
    [
      'a link to an absolute path',
      async (tree: string): Promise<void> => symlink('/etc/shadow', join(tree, 'pkg/shadow')),
      /pkg\/shadow links to an absolute path/,
    ],
    [
      'a hard link to a file elsewhere',
      async (tree: string): Promise<void> => {
        const outside = join(tree, '..', '..', 'outside');
        await writeFile(outside, 'x');
        await link(outside, join(tree, 'pkg/hard'));
      },
      /has 2 links/,
    ],
    [
      'a FIFO',
      async (tree: string): Promise<void> => {
        execFileSync('mkfifo', [join(tree, 'pkg/fifo')]);
      },
      /pkg\/fifo is neither a folder nor a plain file/,
    ],
    [
      "a file of root's",
      async (tree: string): Promise<string> => {
        await writeFile(join(tree, 'pkg/root-owned'), 'x');
        return 'root';
      },
      /root-owned is not the build's \(uid 0\)/,
    ],
  ] as const)('keeps nothing of a tree with %s', async (_what, plant, reason) => {
    const handover = await handoverIn('refuse');
    const { sandbox, tree } = await sandboxWithTree();
    const owner = await plant(tree);
    if (owner !== 'root') execFileSync('chown', ['-R', '-h', `${sandbox.uid}:${sandbox.uid}`, tree]);
    const result = await handover.keep('o/r', KEY, sandbox);
    expect(result).toEqual({ kept: false, reason: expect.stringMatching(reason) });
    expect(await handover.lend('o/r', KEY, await emptySandbox())).toBe(false);
    const shadow = await lstat('/etc/shadow').catch(() => undefined);
    if (shadow) expect(shadow.uid).toBe(0);
  });

  it('keeps nothing when the note names another key, is a link, or the folder holds more than the tree', async () => {
    const handover = await handoverIn('notes');
    const otherKey = await sandboxWithTree({ key: `${KEY}.other` });
    expect(await handover.keep('o/r', KEY, otherKey.sandbox)).toEqual({
      kept: false,
      reason: expect.stringMatching(/the tree is of .*\.other, not of this build's key/),
    });

    const linkedNote = await sandboxWithTree();
    await rm(join(linkedNote.folder, 'kept.json'));
    await symlink('/etc/passwd', join(linkedNote.folder, 'kept.json'));
    execFileSync('chown', [
      '-h',
      `${linkedNote.sandbox.uid}:${linkedNote.sandbox.uid}`,
      join(linkedNote.folder, 'kept.json'),
    ]);
    expect(await handover.keep('o/r', KEY, linkedNote.sandbox)).toEqual({
      kept: false,
      reason: expect.stringMatching(/kept.json is not a note of the runner's/),
    });

    const extra = await sandboxWithTree();
    await writeFile(join(extra.folder, 'payload'), 'x');
    await chown(join(extra.folder, 'payload'), extra.sandbox.uid, extra.sandbox.uid);
    expect(await handover.keep('o/r', KEY, extra.sandbox)).toEqual({
      kept: false,
      reason: expect.stringMatching(/holds payload beside the tree/),
    });

    const swapped = await sandboxWithTree();
    const real = `${swapped.folder}.real`;
    await rm(real, { force: true });
    execFileSync('mv', [swapped.folder, real]);
    await symlink(real, swapped.folder);
    expect(await handover.keep('o/r', KEY, swapped.sandbox)).toEqual({
      kept: false,
      reason: expect.stringMatching(/kept-dependencies is not a folder of the build's uid/),
    });
    expect(await handover.lend('o/r', KEY, await emptySandbox())).toBe(false);
  });

  it('keeps the most recently kept trees only, and removes the others and the trees they replace', async () => {
    const dir = join(await mkdtemp(join(scratch, 'evict-')), 'dependency-trees');
    const handover = new DependencyHandover({ dir, keep: 2 });
    for (const key of ['a', 'b', 'c', 'c']) {
      expect((await handover.keep('o/r', key, (await sandboxWithTree({ key })).sandbox)).kept).toBe(true);
    }
    // The evicted tree (a) and the one the second c replaced go in the background.
    await waitFor('the store to hold two trees and nothing else', async () => {
      const names = await readdir(dir);
      return names.length === 2 && names.every((name) => /^[0-9a-f]{32}$/.test(name)) ? true : undefined;
    });
    expect(await handover.lend('o/r', 'a', await emptySandbox())).toBe(false);
    expect(await handover.lend('o/r', 'b', await emptySandbox())).toBe(true);
    expect(await handover.lend('o/r', 'c', await emptySandbox())).toBe(true);
  });

  it('refuses a tree with more entries than its limit', async () => {
    const handover = await handoverIn('many', { maxEntries: 3 });
    const many = await sandboxWithTree({ files: { a: '1', b: '2', c: '3', d: '4' } });
    expect(await handover.keep('o/r', KEY, many.sandbox)).toEqual({
      kept: false,
      reason: 'it holds more than 3 entries',
    });
  });
});

/**
 * A stand-in runner in a real build sandbox: answers with what its lent tree held (`marker`'s
 * content, "empty" when nothing was lent) and whether the input asked for the tree back, then
 * hands back a tree of its own id when asked. A hostile one leaves a link to /etc/shadow and a
 * process that keeps writing into the tree after the runner has answered.
 */
const STAND_IN = [
  'sh',
  '-c',
  `input=$(cat)
id=$(printf '%s' "$input" | sed -n 's/.*"id":"\\([a-z0-9-]*\\)".*/\\1/p')
key=$(printf '%s' "$input" | sed -n 's/.*"key":"\\([^"]*\\)".*/\\1/p')
kept="$LAMBKIN_WORK_ROOT/trusted/kept-dependencies"
seen=$(cat "$kept/node_modules/marker" 2>/dev/null || echo empty)
case "$input" in *'"keepTree":true'*) asked=asked;; *) asked=not-asked;; esac
rm -rf "$kept"
if [ $asked = asked ]; then
  mkdir -p "$kept/node_modules" && printf '%s' "$id" > "$kept/node_modules/marker"
  printf '{"key":"%s"}' "$key" > "$kept/kept.json"
  case "$input" in *'"hostile":true'*)
    ln -s /etc/shadow "$kept/node_modules/shadow"
    (while :; do printf x >> "$kept/node_modules/growing"; done) >/dev/null 2>&1 &;;
  esac
fi
printf '{"kind":"outcome","state":"success","description":"%s %s","steps":[],"log":{}}\\n' "$seen" "$asked"`,
];

const input = (
  id: string,
  build: { repo: string; trusted: boolean },
  cache: { key?: string; stored: boolean } | undefined,
  extra: Record<string, unknown> = {},
) =>
  ({
    deadlineAt: Date.now() + 60_000,
    id,
    build: { number: 1, ...build },
    ...(cache
      ? {
          cache: {
            key: cache.key ?? KEY,
            lockfileSha: 'abc',
            getUrl: 'http://x',
            maxBytes: 1,
            stored: cache.stored,
          },
        }
      : {}),
    ...extra,
  }) as unknown as RunnerInput;

async function sandboxedInvoker() {
  const workRoot = await mkdtemp(join(scratch, 'work-'));
  await chmod(workRoot, 0o711);
  const logger = createMemoryLogger();
  const invoker = new ProcessRunnerInvoker({
    command: STAND_IN,
    sandbox: true,
    workRoot,
    dependencies: { handover: new DependencyHandover({ dir: join(workRoot, 'dependency-trees') }), logger },
  });
  return { invoker, logger };
}

const seen = (outcome: RunnerOutcome): string => outcome.description;

describeAsRoot('sandboxed builds with the dependency tree handover', () => {
  it('lends a trusted build the tree of its key while the archive is stored, and untrusted builds nothing', async () => {
    const { invoker, logger } = await sandboxedInvoker();
    const trusted = { repo: 'o/r', trusted: true };
    expect(seen(await invoker.run(input('one', trusted, { stored: false })))).toBe('empty asked');
    expect(seen(await invoker.run(input('two', trusted, { stored: true })))).toBe('one asked');
    // Untrusted builds are never lent a tree nor asked for theirs.
    expect(seen(await invoker.run(input('fork', { repo: 'o/r', trusted: false }, { stored: true })))).toBe(
      'empty not-asked',
    );
    // The archive at the key is gone (a cache deleted): the kept tree is not lent, and is replaced.
    expect(seen(await invoker.run(input('three', trusted, { stored: false })))).toBe('empty asked');
    expect(seen(await invoker.run(input('four', trusted, { stored: true })))).toBe('three asked');
    expect(seen(await invoker.run(input('other-key', trusted, { key: `${KEY}.x`, stored: true })))).toBe(
      'empty asked',
    );
    expect(seen(await invoker.run(input('no-cache', trusted, undefined)))).toBe('empty not-asked');
    expect(logger.entries.filter((entry) => entry.level !== 'info')).toEqual([]);
  }, 30_000);

  it('keeps nothing of a hostile build: the next build unpacks, and root’s files stay root’s', async () => {
    const { invoker, logger } = await sandboxedInvoker();
    const trusted = { repo: 'o/r', trusted: true };
    const shadowBefore = await lstat('/etc/shadow').catch(() => undefined);
    expect(seen(await invoker.run(input('one', trusted, { stored: false })))).toBe('empty asked');
    expect(seen(await invoker.run(input('evil', trusted, { stored: true }, { hostile: true })))).toBe(
      'one asked',
    );
    expect(logger.entries.map((entry) => entry.message)).toContainEqual(
      expect.stringMatching(/dependencies: tree not kept: .*shadow links to an absolute path/),
    );
    expect(seen(await invoker.run(input('after', trusted, { stored: true })))).toBe('empty asked');
    const shadowAfter = await lstat('/etc/shadow').catch(() => undefined);
    expect(shadowAfter?.uid).toBe(shadowBefore?.uid);
    expect(shadowAfter?.mode).toBe(shadowBefore?.mode);
  }, 30_000);
});

describe('runners without the build sandbox (not run as root)', () => {
  it('are never asked for their tree, and nothing is kept', async () => {
    const workRoot = await mkdtemp(join(scratch, 'unsandboxed-'));
    const store = join(workRoot, 'dependency-trees');
    const invoker = new ProcessRunnerInvoker({
      command: STAND_IN,
      workRoot,
      dependencies: { handover: new DependencyHandover({ dir: store }) },
    });
    const trusted = { repo: 'o/r', trusted: true };
    expect(seen(await invoker.run(input('one', trusted, { stored: false })))).toBe('empty not-asked');
    expect(seen(await invoker.run(input('two', trusted, { stored: true })))).toBe('empty not-asked');
    expect(existsSync(store)).toBe(false);
  });
});
