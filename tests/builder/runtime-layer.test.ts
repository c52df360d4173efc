import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { layerEnvironment } from '../../src/builder/runtime-layer.js';

describe('runtime layer environment', () => {
  it('is empty without a layer', () => {
    const root = mkdtempSync(join(tmpdir(), 'lambkin-layer-'));
    try {
      expect(layerEnvironment(root)).toEqual({});
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it("points git at the layer's helpers, templates and libraries", () => {
    const root = mkdtempSync(join(tmpdir(), 'lambkin-layer-'));
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

describe('the layer recipe (runtime-layer/collect.sh)', () => {
  it('lays out a git that works from the layer folder alone, with the runner layer variables', async () => {
    const { execFileSync } = await import('node:child_process');
    const root = mkdtempSync(join(tmpdir(), 'lambkin-layer-build-'));
    try {
      execFileSync('bash', ['runtime-layer/collect.sh', root], { stdio: 'pipe' });
      const env = { ...layerEnvironment(root), PATH: '/usr/bin:/bin', HOME: root };
      const version = execFileSync(join(root, 'bin', 'git'), ['--version'], { env, encoding: 'utf8' });
      expect(version).toMatch(/^git version /);
      // A helper from the layer's libexec is found through GIT_EXEC_PATH.
      const exec = execFileSync(join(root, 'bin', 'git'), ['--exec-path'], { env, encoding: 'utf8' }).trim();
      expect(exec).toBe(join(root, 'libexec', 'git-core'));
      execFileSync(join(root, 'bin', 'git'), ['init', '-q', join(root, 'repo')], { env });
      expect(execFileSync(join(root, 'bin', 'bash'), ['-c', 'echo layer-bash'], { encoding: 'utf8' })).toBe(
        'layer-bash\n',
      );
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('has build scripts bash can parse', async () => {
    const { execFileSync } = await import('node:child_process');
    for (const script of ['runtime-layer/build.sh', 'runtime-layer/collect.sh']) {
      expect(() => execFileSync('bash', ['-n', script])).not.toThrow();
    }
  });
});
