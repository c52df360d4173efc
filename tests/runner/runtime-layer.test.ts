import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  copyFileSync,
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { layerEnvironment } from '../../src/runner/runtime-layer.js';
import { requireTool } from '../support/tools.js';

/** Lambda's limits, as package.sh states them. */
const MAX_ZIP = 50 * 1024 * 1024;
const MAX_UNPACKED = 250 * 1024 * 1024;

function scratch(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

function bash(args: string[], env: NodeJS.ProcessEnv = process.env) {
  const result = spawnSync('bash', args, { encoding: 'utf8', env, maxBuffer: 16 * 1024 * 1024 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** The figures package.sh prints. */
function sizes(stdout: string): { zip: number; unpacked: number; links: number } {
  const figure = (label: string): number => {
    const match = new RegExp(`^${label}:\\s+(\\d+)`, 'm').exec(stdout);
    if (!match) throw new Error(`no "${label}" line in:\n${stdout}`);
    return Number(match[1]);
  };
  return { zip: figure('layer zip'), unpacked: figure('layer unpacked'), links: figure('symbolic links') };
}

describe('runtime layer environment', () => {
  it('is empty without a layer', () => {
    const root = scratch('lambkin-layer-');
    try {
      expect(layerEnvironment(root)).toEqual({});
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it("points git at the layer's helpers, templates and libraries", () => {
    const root = scratch('lambkin-layer-');
    try {
      mkdirSync(join(root, 'libexec', 'git-core'), { recursive: true });
      const env = layerEnvironment(root);
      expect(env.GIT_EXEC_PATH).toBe(join(root, 'libexec', 'git-core'));
      expect(env.GIT_TEMPLATE_DIR).toBe(join(root, 'share', 'git-core', 'templates'));
      expect(env.LD_LIBRARY_PATH?.split(':')[0]).toBe(join(root, 'lib'));
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('the layer recipe (runtime-layer/)', () => {
  const haveZip = requireTool('zip', 'packaging the runtime layer');
  const haveUnzip = requireTool('unzip', 'measuring and unpacking the runtime layer');
  const run = haveZip && haveUnzip ? it : it.skip;

  run(
    "check.sh (CI's command) collects, packages within Lambda's limits and runs git from the unpacked zip",
    () => {
      const { status, stdout, stderr } = bash(['runtime-layer/check.sh']);
      expect({ status, stderr }).toEqual({ status: 0, stderr: '' });
      const measured = sizes(stdout);
      expect(measured.zip).toBeLessThanOrEqual(MAX_ZIP);
      expect(measured.unpacked).toBeLessThanOrEqual(MAX_UNPACKED - 10 * 1024 * 1024);
      // git-core's helpers that are git itself, plus bin/git.
      expect(measured.links).toBeGreaterThan(100);
      expect(stdout).toMatch(/^git from the layer: git version \S+; init, commit, shallow clone/m);
    },
    120_000,
  );

  run(
    'makes hard links, copies and absolute links of git into relative links, as git installs them elsewhere',
    () => {
      const work = scratch('lambkin-layer-hardlinks-');
      try {
        // A git installed the other ways: this machine's git-core, with every link to git made a
        // hard link, two of them full copies and one an absolute link, and bin/git a hard link.
        const systemCore = execFileSync('git', ['--exec-path'], { encoding: 'utf8' }).trim();
        const core = join(work, 'install', 'git-core');
        const bin = join(work, 'install', 'bin');
        mkdirSync(bin, { recursive: true });
        execFileSync('cp', ['-a', `${systemCore}/.`, core]);
        const gitLinks = readdirSync(core).filter((name) => {
          const path = join(core, name);
          return lstatSync(path).isSymbolicLink() && readlinkSync(path) === 'git';
        });
        expect(gitLinks.length).toBeGreaterThan(10);
        const [copied1, copied2, absolute, ...hardLinked] = gitLinks;
        for (const name of gitLinks) unlinkSync(join(core, name));
        for (const name of hardLinked) linkSync(join(core, 'git'), join(core, name));
        copyFileSync(join(core, 'git'), join(core, copied1!));
        copyFileSync(join(core, 'git'), join(core, copied2!));
        execFileSync('chmod', ['755', join(core, copied1!), join(core, copied2!)]);
        symlinkSync(join(core, 'git'), join(core, absolute!));
        linkSync(join(core, 'git'), join(bin, 'git'));

        const layer = join(work, 'layer');
        const env = { ...process.env, PATH: `${bin}:${process.env.PATH}`, GIT_EXEC_PATH: core };
        const collected = bash(['runtime-layer/collect.sh', layer], env);
        expect({ status: collected.status, stderr: collected.stderr }).toEqual({ status: 0, stderr: '' });
        for (const name of gitLinks) {
          expect([name, readlinkSync(join(layer, 'libexec', 'git-core', name))]).toEqual([name, 'git']);
        }
        expect(readlinkSync(join(layer, 'bin', 'git'))).toBe('../libexec/git-core/git');
        expect(lstatSync(join(layer, 'libexec', 'git-core', 'git')).isFile()).toBe(true);

        const packaged = bash(['runtime-layer/package.sh', layer, join(work, 'layer.zip')]);
        expect({ status: packaged.status, stderr: packaged.stderr }).toEqual({ status: 0, stderr: '' });
        expect(sizes(packaged.stdout).links).toBeGreaterThanOrEqual(gitLinks.length + 1);
        expect(sizes(packaged.stdout).zip).toBeLessThanOrEqual(MAX_ZIP);
      } finally {
        rmSync(work, { recursive: true, force: true });
      }
    },
    120_000,
  );

  run('package.sh fails, naming the limit and by how much, when the zip is over 50 MiB', () => {
    const work = scratch('lambkin-layer-big-');
    try {
      mkdirSync(join(work, 'layer', 'lib'), { recursive: true });
      // Random bytes do not compress: the zip is as large as the file.
      writeFileSync(join(work, 'layer', 'lib', 'big'), randomBytes(MAX_ZIP + 1024 * 1024));
      const { status, stdout, stderr } = bash([
        'runtime-layer/package.sh',
        join(work, 'layer'),
        join(work, 'l.zip'),
      ]);
      expect(status).toBe(1);
      const over = sizes(stdout).zip - MAX_ZIP;
      expect(over).toBeGreaterThan(0);
      expect(stderr).toContain(`the zip is ${over} bytes`);
      expect(stderr).toContain(
        `over Lambda's limit of ${MAX_ZIP} bytes (50.0 MiB) for a layer uploaded directly`,
      );
      expect(stderr).not.toContain('unpacked');
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });

  run(
    'package.sh fails when, unpacked, the layer leaves less than the reserved room for the function',
    () => {
      const work = scratch('lambkin-layer-reserved-');
      try {
        mkdirSync(join(work, 'layer'));
        writeFileSync(join(work, 'layer', 'data'), Buffer.alloc(3000, 'a'));
        // Reserving all but 1000 bytes of Lambda's 250 MiB for the function leaves the layer 1000.
        const env = { ...process.env, LAMBKIN_LAYER_RESERVED_BYTES: String(MAX_UNPACKED - 1000) };
        const { status, stdout, stderr } = bash(
          ['runtime-layer/package.sh', join(work, 'layer'), join(work, 'l.zip')],
          env,
        );
        expect(status).toBe(1);
        expect(sizes(stdout).unpacked).toBe(3000);
        expect(stderr).toContain('unpacked, the layer is 2000 bytes (0.0 MiB) over its limit of 1000 bytes');
        expect(stderr).not.toContain('the zip is');
      } finally {
        rmSync(work, { recursive: true, force: true });
      }
    },
  );

  run('package.sh refuses a link that would dangle under /opt', () => {
    const work = scratch('lambkin-layer-links-');
    try {
      mkdirSync(join(work, 'layer', 'bin'), { recursive: true });
      symlinkSync('/usr/bin/env', join(work, 'layer', 'bin', 'env'));
      const { status, stderr } = bash(['runtime-layer/package.sh', join(work, 'layer'), join(work, 'l.zip')]);
      expect(status).toBe(1);
      expect(stderr).toContain('the link bin/env -> /usr/bin/env is absolute');
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });

  it('has scripts bash can parse', () => {
    for (const script of ['build.sh', 'collect.sh', 'package.sh', 'check.sh']) {
      expect(() => execFileSync('bash', ['-n', join('runtime-layer', script)])).not.toThrow();
    }
  });
});
