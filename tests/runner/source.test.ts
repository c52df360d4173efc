/**
 * Source fetching against real parts: a real git repository made here, `git archive` tarballs and
 * hand-built hostile ones, served by a loopback HTTP server; clones through file:// and through
 * `git http-backend`.
 */
import { tarball, type TarEntry } from '../support/tarballs.js';
import { randomBytes } from 'node:crypto';
import {
  access,
  chmod,
  lstat,
  mkdir,
  mkdtemp,
  readFile,
  readdir,
  readlink,
  rm,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { execa } from 'execa';
import {
  ArchiveLimitError,
  ArchiveNotFoundError,
  CommitNotFoundError,
  GitMissingError,
  SourceFetchError,
  SourceTimeoutError,
  UnsafeArchiveError,
} from '../../src/runner/source-errors.js';
import { cloneCommit, fetchArchive } from '../../src/runner/source.js';
import {
  firstThen,
  gitHttpBackend,
  redirectTo,
  resetAfter,
  resetAtOnce,
  serveBytes,
  stallAfter,
  startArchiveServer,
  status,
  type ArchiveServer,
} from '../support/archive-server.js';

const TOP = 'o-r-abc1234';
const gitEnv = {
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_CONFIG_GLOBAL: '/dev/null',
  GIT_AUTHOR_NAME: 'Lamb Kin',
  GIT_AUTHOR_EMAIL: 'lamb@example.com',
  GIT_COMMITTER_NAME: 'Lamb Kin',
  GIT_COMMITTER_EMAIL: 'lamb@example.com',
};
const git = async (cwd: string, ...args: string[]): Promise<string> =>
  (await execa('git', args, { cwd, env: gitEnv })).stdout.trim();

let base: string;
let repo: string;
let firstCommit: string;
let secondCommit: string;
let repoArchive: Buffer;
let server: ArchiveServer;

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'lambkin-source-test-'));
  repo = join(base, 'repos', 'o', 'r.git');
  await mkdir(join(repo, 'bin'), { recursive: true });
  await mkdir(join(repo, 'src', 'deep', 'er'), { recursive: true });
  await git(repo, 'init', '--quiet', '--initial-branch=main');
  await writeFile(join(repo, 'README.md'), '# r\n');
  await writeFile(join(repo, 'package.json'), '{"name":"r","scripts":{"test":"bin/run.sh"}}\n');
  await writeFile(join(repo, 'bin', 'run.sh'), '#!/bin/sh\necho ok\n');
  await chmod(join(repo, 'bin', 'run.sh'), 0o755);
  await writeFile(join(repo, 'src', 'deep', 'er', 'a.txt'), 'deep\n');
  await execa('ln', ['-s', '../README.md', join(repo, 'src', 'readme-link')]);
  await git(repo, 'add', '-A');
  await git(repo, 'commit', '--quiet', '-m', 'first');
  firstCommit = await git(repo, 'rev-parse', 'HEAD');
  await writeFile(join(repo, 'second.txt'), 'two\n');
  await git(repo, 'add', '-A');
  await git(repo, 'commit', '--quiet', '-m', 'second');
  secondCommit = await git(repo, 'rev-parse', 'HEAD');
  const archive = await execa('git', ['archive', '--format=tar.gz', `--prefix=${TOP}/`, firstCommit], {
    cwd: repo,
    env: gitEnv,
    encoding: 'buffer',
  });
  repoArchive = Buffer.from(archive.stdout);
  server = await startArchiveServer();
});

afterAll(async () => {
  await server?.close();
  if (base) await rm(base, { recursive: true, force: true });
});

/** A fresh folder holding `dest/`; anything else that appears in it was written outside. */
async function makeWork(): Promise<{ work: string; dest: string }> {
  const work = await mkdtemp(join(base, 'work-'));
  const dest = join(work, 'dest');
  await mkdir(dest);
  return { work, dest };
}

async function listTree(dir: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (folder: string): Promise<void> => {
    for (const entry of await readdir(folder, { withFileTypes: true })) {
      const path = join(folder, entry.name);
      found.push(relative(dir, path) + (entry.isDirectory() ? '/' : ''));
      if (entry.isDirectory()) await walk(path);
    }
  };
  await walk(dir);
  return found.sort();
}

/** Only `dest/` and what is inside it. */
async function expectNothingOutside(work: string): Promise<void> {
  const outside = (await listTree(work)).filter((path) => path !== 'dest/' && !path.startsWith('dest/'));
  expect(outside).toEqual([]);
}

const exists = (path: string): Promise<boolean> =>
  access(path).then(
    () => true,
    () => false,
  );

const dir = (path: string): TarEntry => ({ path, type: 'Directory' });

/** Serves `archive` under a fresh path and fetches it into a fresh destination. */
async function fetchServed(
  archive: Buffer,
  options: Parameters<typeof fetchArchive>[2] = {},
): Promise<{ work: string; dest: string; result: Promise<Awaited<ReturnType<typeof fetchArchive>>> }> {
  const { work, dest } = await makeWork();
  const path = `/archive/${randomBytes(6).toString('hex')}`;
  server.route(path, serveBytes(archive));
  return { work, dest, result: fetchArchive(server.url(path), dest, options) };
}

describe('fetchArchive', () => {
  test('unpacks a git archive without its top folder, keeping the executable bit and links', async () => {
    const { work, dest, result } = await fetchServed(repoArchive);
    await expect(result).resolves.toEqual({ files: 5, bytes: expect.any(Number) });
    expect(await listTree(dest)).toEqual([
      'README.md',
      'bin/',
      'bin/run.sh',
      'package.json',
      'src/',
      'src/deep/',
      'src/deep/er/',
      'src/deep/er/a.txt',
      'src/readme-link',
    ]);
    expect(await readFile(join(dest, 'src', 'deep', 'er', 'a.txt'), 'utf8')).toBe('deep\n');
    expect((await lstat(join(dest, 'bin', 'run.sh'))).mode & 0o111).not.toBe(0);
    expect((await lstat(join(dest, 'README.md'))).mode & 0o111).toBe(0);
    expect(await readlink(join(dest, 'src', 'readme-link'))).toBe('../README.md');
    expect(await readFile(join(dest, 'src', 'readme-link'), 'utf8')).toBe('# r\n');
    await expectNothingOutside(work);
  });

  test('follows the redirect GitHub answers the tarball endpoint with', async () => {
    const { dest } = await makeWork();
    server.route('/codeload/o/r/legacy.tar.gz', serveBytes(repoArchive));
    server.route(
      '/repos/o/r/tarball',
      redirectTo(server.url(`/codeload/o/r/legacy.tar.gz/${firstCommit}?token=t`)),
    );
    await fetchArchive(server.url(`/repos/o/r/tarball/${firstCommit}`), dest);
    expect(await readFile(join(dest, 'README.md'), 'utf8')).toBe('# r\n');
  });

  test('a 404 says the archive was not found and why that may be', async () => {
    const { dest } = await makeWork();
    server.route('/missing', status(404));
    const failure = fetchArchive(server.url('/missing/archive?token=secret-token'), dest);
    await expect(failure).rejects.toBeInstanceOf(ArchiveNotFoundError);
    await expect(failure).rejects.toThrow(/not found.*Is the commit pushed\?.*private repository/s);
    // The query of an archive URL carries a token: never in messages.
    await expect(failure).rejects.not.toThrow(/secret-token/);
    expect(server.requestCount('/missing/archive')).toBe(1);
  });

  test('a server error is retried once, and a second success unpacks', async () => {
    const { dest } = await makeWork();
    server.route('/flaky', firstThen(status(503), serveBytes(repoArchive)));
    await expect(fetchArchive(server.url('/flaky/a.tar.gz'), dest)).resolves.toMatchObject({ files: 5 });
    expect(server.requestCount('/flaky/a.tar.gz')).toBe(2);
  });

  test('a server error twice is a typed, retryable error', async () => {
    const { dest } = await makeWork();
    server.route('/broken', status(500));
    const failure = fetchArchive(server.url('/broken/a.tar.gz'), dest);
    await expect(failure).rejects.toMatchObject({ code: 'ARCHIVE_HTTP_ERROR', retryable: true });
    await expect(failure).rejects.toThrow(/HTTP 500/);
    expect(server.requestCount('/broken/a.tar.gz')).toBe(2);
  });

  test('a connection reset before anything was unpacked is retried', async () => {
    const { dest } = await makeWork();
    server.route('/reset-first', firstThen(resetAtOnce(), serveBytes(repoArchive)));
    await expect(fetchArchive(server.url('/reset-first/a.tar.gz'), dest)).resolves.toMatchObject({
      files: 5,
    });
    expect(server.requestCount('/reset-first/a.tar.gz')).toBe(2);
  });

  test('a reset mid-stream, after files were unpacked, fails without a retry', async () => {
    const { work, dest } = await makeWork();
    const files = Array.from({ length: 20 }, (_, index) => ({
      path: `${TOP}/file-${index}.bin`,
      body: randomBytes(20_000), // incompressible, so half the download is half the files
    }));
    const archive = tarball([dir(`${TOP}/`), ...files]);
    server.route('/cut', resetAfter(archive, Math.floor(archive.length / 2)));
    const failure = fetchArchive(server.url('/cut/a.tar.gz'), dest);
    await expect(failure).rejects.toBeInstanceOf(SourceFetchError);
    await expect(failure).rejects.toMatchObject({ code: 'ARCHIVE_DOWNLOAD_FAILED' });
    await expect(failure).rejects.toThrow(/broke off after \d+ bytes/);
    expect(server.requestCount('/cut/a.tar.gz')).toBe(1);
    const unpacked = await readdir(dest);
    expect(unpacked.length).toBeGreaterThan(0);
    expect(unpacked.length).toBeLessThan(20);
    await expectNothingOutside(work);
  });

  test('the timeout is honoured while the server sends nothing more', async () => {
    const { dest } = await makeWork();
    server.route('/slow', stallAfter(repoArchive, 0));
    const started = Date.now();
    const failure = fetchArchive(server.url('/slow/a.tar.gz'), dest, { timeoutMs: 400 });
    await expect(failure).rejects.toBeInstanceOf(SourceTimeoutError);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  test('the timeout is honoured while the server does not answer at all', async () => {
    const { dest } = await makeWork();
    server.route('/silent', () => undefined);
    await expect(
      fetchArchive(server.url('/silent/a.tar.gz'), dest, { timeoutMs: 300 }),
    ).rejects.toMatchObject({
      code: 'SOURCE_TIMEOUT',
    });
  });

  test('a cancelled signal stops the fetch', async () => {
    const { dest } = await makeWork();
    server.route('/cancel', stallAfter(repoArchive, 10));
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    await expect(
      fetchArchive(server.url('/cancel/a.tar.gz'), dest, { signal: controller.signal }),
    ).rejects.toMatchObject({ code: 'SOURCE_CANCELLED' });
  });

  test('a body that is not gzip is refused with a clear error', async () => {
    const { result } = await fetchServed(Buffer.from('<html>hello</html>'.repeat(100)));
    await expect(result).rejects.toMatchObject({ code: 'ARCHIVE_INVALID' });
  });

  test('setuid, setgid and sticky bits are dropped', async () => {
    const { dest, result } = await fetchServed(
      tarball([dir(`${TOP}/`), { path: `${TOP}/tool`, body: 'x', mode: 0o6755 }]),
    );
    await result;
    expect((await lstat(join(dest, 'tool'))).mode & 0o7000).toBe(0);
  });

  describe('hostile archives are refused, naming the entry, with nothing written outside', () => {
    const outsideDir = (): Promise<string> => mkdtemp(join(base, 'outside-'));

    test('a path with ..', async () => {
      const { work, result } = await fetchServed(
        tarball([dir(`${TOP}/`), { path: `${TOP}/../escape`, body: 'pwned' }]),
      );
      await expect(result).rejects.toBeInstanceOf(UnsafeArchiveError);
      await expect(result).rejects.toThrow(/"o-r-abc1234\/..\/escape" has a '..' path segment/);
      await expectNothingOutside(work);
      expect(await exists(join(work, 'escape'))).toBe(false);
    });

    test('an absolute path', async () => {
      const target = join(await outsideDir(), 'abs-pwned');
      const { work, dest, result } = await fetchServed(
        tarball([dir(`${TOP}/`), { path: target, body: 'pwned' }]),
      );
      await expect(result).rejects.toMatchObject({ code: 'UNSAFE_ARCHIVE', entry: target });
      await expect(result).rejects.toThrow(/has an absolute path/);
      expect(await exists(target)).toBe(false);
      expect(await listTree(dest)).toEqual([]);
      await expectNothingOutside(work);
    });

    test('a symlink to /etc, then a file written through it', async () => {
      const name = `lambkin-test-${randomBytes(6).toString('hex')}`;
      const { work, dest, result } = await fetchServed(
        tarball([
          dir(`${TOP}/`),
          { path: `${TOP}/etc`, type: 'SymbolicLink', linkpath: '/etc' },
          { path: `${TOP}/etc/${name}`, body: 'pwned' },
        ]),
      );
      await expect(result).rejects.toThrow(
        /"o-r-abc1234\/etc" is a symbolic link to the absolute path "\/etc"/,
      );
      expect(await exists(join('/etc', name))).toBe(false);
      expect(await listTree(dest)).toEqual([]);
      await expectNothingOutside(work);
    });

    test('a relative symlink leading outside, then a file written through it', async () => {
      const outside = await outsideDir();
      const { work, dest, result } = await fetchServed(
        tarball([
          dir(`${TOP}/`),
          { path: `${TOP}/README.md`, body: 'fine' },
          { path: `${TOP}/out`, type: 'SymbolicLink', linkpath: `../../${relative(base, outside)}` },
          { path: `${TOP}/out/pwned`, body: 'pwned' },
        ]),
      );
      await expect(result).rejects.toThrow(
        /"o-r-abc1234\/out" is a symbolic link to .* resolves outside the checkout/,
      );
      expect(await readdir(outside)).toEqual([]);
      expect(await listTree(dest)).toEqual(['README.md']);
      await expectNothingOutside(work);
    });

    test('a file written through a symlink that stays inside', async () => {
      const { work, dest, result } = await fetchServed(
        tarball([
          dir(`${TOP}/`),
          dir(`${TOP}/real/`),
          { path: `${TOP}/alias`, type: 'SymbolicLink', linkpath: 'real' },
          { path: `${TOP}/alias/file`, body: 'sneaky' },
        ]),
      );
      await expect(result).rejects.toThrow(
        /"o-r-abc1234\/alias\/file" would be written through the symbolic link "alias"/,
      );
      expect(await exists(join(dest, 'real', 'file'))).toBe(false);
      await expectNothingOutside(work);
    });

    test('a symlink that escapes only through another link, in either order', async () => {
      const links: TarEntry[] = [
        { path: `${TOP}/a/s`, type: 'SymbolicLink', linkpath: '..' }, // a/s → the checkout itself
        { path: `${TOP}/e`, type: 'SymbolicLink', linkpath: 'a/s/..' }, // looks like a/, is its parent
      ];
      for (const order of [links, [...links].reverse()]) {
        const { work, result } = await fetchServed(tarball([dir(`${TOP}/`), dir(`${TOP}/a/`), ...order]));
        await expect(result).rejects.toThrow(
          /"o-r-abc1234\/e" is a symbolic link to "a\/s\/..", which resolves outside/,
        );
        await expectNothingOutside(work);
      }
    });

    test('a hard link to a file outside', async () => {
      const outside = await outsideDir();
      await writeFile(join(outside, 'secret'), 'secret');
      for (const linkpath of [
        `${TOP}/../../${relative(base, outside)}/secret`,
        join(outside, 'secret'),
        '/etc/passwd',
      ]) {
        const { work, dest, result } = await fetchServed(
          tarball([
            dir(`${TOP}/`),
            { path: `${TOP}/hl`, type: 'Link', linkpath },
            { path: `${TOP}/hl`, body: 'overwrite' },
          ]),
        );
        await expect(result).rejects.toThrow(
          /"o-r-abc1234\/hl" is a hard link to (a '\.\.' path segment|an absolute path)/,
        );
        expect(await listTree(dest)).toEqual([]);
        await expectNothingOutside(work);
      }
      expect(await readFile(join(outside, 'secret'), 'utf8')).toBe('secret');
    });

    test('a hard link to a path that is not an earlier file', async () => {
      const { result } = await fetchServed(
        tarball([
          dir(`${TOP}/`),
          dir(`${TOP}/d/`),
          { path: `${TOP}/hl`, type: 'Link', linkpath: `${TOP}/d` },
        ]),
      );
      await expect(result).rejects.toThrow(/hard link to "o-r-abc1234\/d", which is not a file earlier/);
    });

    test('a hard link to an earlier file in the archive is fine', async () => {
      const { dest, result } = await fetchServed(
        tarball([
          dir(`${TOP}/`),
          { path: `${TOP}/a.txt`, body: 'same' },
          { path: `${TOP}/b.txt`, type: 'Link', linkpath: `${TOP}/a.txt` },
        ]),
      );
      await expect(result).resolves.toEqual({ files: 2, bytes: 4 });
      expect((await lstat(join(dest, 'b.txt'))).ino).toBe((await lstat(join(dest, 'a.txt'))).ino);
    });

    test('a FIFO, a device and an unsupported entry type', async () => {
      for (const type of ['FIFO', 'CharacterDevice', 'SparseFile'] as const) {
        const { work, dest, result } = await fetchServed(
          tarball([dir(`${TOP}/`), { path: `${TOP}/odd`, type }]),
        );
        await expect(result).rejects.toBeInstanceOf(UnsafeArchiveError);
        await expect(result).rejects.toThrow(
          new RegExp(`"o-r-abc1234/odd" (is a |has an unsupported entry type \\()${type}`),
        );
        expect(await listTree(dest)).toEqual([]);
        await expectNothingOutside(work);
      }
    });

    test('an entry outside the top folder, or twice in the archive', async () => {
      const stray = await fetchServed(tarball([dir(`${TOP}/`), { path: 'other/x', body: 'x' }]));
      await expect(stray.result).rejects.toThrow(/"other\/x" has a path outside the archive's top folder/);
      const twice = await fetchServed(
        tarball([dir(`${TOP}/`), { path: `${TOP}/x`, body: 'a' }, { path: `${TOP}/x`, body: 'b' }]),
      );
      await expect(twice.result).rejects.toThrow(/"o-r-abc1234\/x" appears twice/);
    });

    test('a tar bomb of many entries stops at maxEntries', async () => {
      const entries = Array.from({ length: 3000 }, (_, index) => ({ path: `${TOP}/f${index}`, body: 'x' }));
      const { work, dest, result } = await fetchServed(tarball([dir(`${TOP}/`), ...entries]), {
        limits: { maxEntries: 100 },
      });
      await expect(result).rejects.toBeInstanceOf(ArchiveLimitError);
      await expect(result).rejects.toMatchObject({ limit: 'maxEntries', value: 100 });
      expect((await readdir(dest)).length).toBeLessThan(100);
      await expectNothingOutside(work);
    });

    test('a tar bomb of large declared sizes stops at maxBytes before writing the entry', async () => {
      const { work, dest, result } = await fetchServed(
        tarball([
          dir(`${TOP}/`),
          { path: `${TOP}/small`, body: 'x'.repeat(1000) },
          { path: `${TOP}/huge`, body: 'x'.repeat(1000), size: 5 * 1024 ** 3 },
        ]),
        { limits: { maxBytes: 1024 * 1024 } },
      );
      await expect(result).rejects.toMatchObject({ code: 'ARCHIVE_TOO_LARGE', limit: 'maxBytes' });
      await expect(result).rejects.toThrow(/"o-r-abc1234\/huge" \(5368709120 bytes\)/);
      expect(await listTree(dest)).toEqual(['small']);
      await expectNothingOutside(work);
    });

    test('the limits stop the download while it streams, not after it', async () => {
      const entries = Array.from({ length: 200 }, (_, index) => ({
        path: `${TOP}/f${index}`,
        body: randomBytes(10_000),
      }));
      const archive = tarball([dir(`${TOP}/`), ...entries]);
      const { dest } = await makeWork();
      // Sends most of the archive, then never finishes: only stopping early can end the fetch.
      server.route('/bomb', stallAfter(archive, Math.floor(archive.length * 0.8)));
      const started = Date.now();
      const failure = fetchArchive(server.url('/bomb/a.tar.gz'), dest, {
        limits: { maxBytes: 500_000 },
        timeoutMs: 20_000,
      });
      await expect(failure).rejects.toMatchObject({ limit: 'maxBytes' });
      expect(Date.now() - started).toBeLessThan(5000);
      const written = await readdir(dest);
      expect(written.length).toBeLessThanOrEqual(50);
    });

    test('maxCompressedBytes limits the download', async () => {
      const archive = tarball([dir(`${TOP}/`), { path: `${TOP}/noise`, body: randomBytes(100_000) }]);
      const { result } = await fetchServed(archive, { limits: { maxCompressedBytes: 10_000 } });
      await expect(result).rejects.toMatchObject({ limit: 'maxCompressedBytes' });
    });
  });
});

describe('cloneCommit', () => {
  const fileUrl = (): string => `file://${repo}`;

  test('clones exactly the commit asked for, shallow', async () => {
    const { dest } = await makeWork();
    const cloned = await cloneCommit({
      url: fileUrl(),
      sha: firstCommit,
      destination: dest,
      depth: 1,
      allowedProtocols: ['file'],
    });
    expect(cloned).toEqual({ sha: firstCommit });
    expect(await git(dest, 'rev-parse', 'HEAD')).toBe(firstCommit);
    expect(await git(dest, 'rev-list', '--count', 'HEAD')).toBe('1');
    expect(await git(dest, 'rev-parse', '--is-shallow-repository')).toBe('true');
    expect(await exists(join(dest, 'second.txt'))).toBe(false);
    expect((await lstat(join(dest, 'bin', 'run.sh'))).mode & 0o111).not.toBe(0);
    expect(await readlink(join(dest, 'src', 'readme-link'))).toBe('../README.md');
    expect(await git(dest, 'status', '--porcelain')).toBe('');
    expect(await git(dest, 'remote', 'get-url', 'origin')).toBe(fileUrl());
  });

  test('fetches the depth asked for', async () => {
    const { dest } = await makeWork();
    await cloneCommit({
      url: fileUrl(),
      sha: secondCommit,
      destination: dest,
      depth: 2,
      allowedProtocols: ['file'],
    });
    expect(await git(dest, 'rev-list', '--count', 'HEAD')).toBe('2');
    expect(await readFile(join(dest, 'second.txt'), 'utf8')).toBe('two\n');
  });

  test('a commit the remote does not have is a CommitNotFoundError', async () => {
    const { dest } = await makeWork();
    const missing = 'f'.repeat(40);
    const failure = cloneCommit({
      url: fileUrl(),
      sha: missing,
      destination: dest,
      depth: 1,
      allowedProtocols: ['file'],
    });
    await expect(failure).rejects.toBeInstanceOf(CommitNotFoundError);
    await expect(failure).rejects.toThrow(/Is the commit pushed/);
  });

  test('a missing git binary says to add the runtime layer', async () => {
    const { dest } = await makeWork();
    const failure = cloneCommit({
      url: fileUrl(),
      sha: firstCommit,
      destination: dest,
      depth: 1,
      gitBinary: join(base, 'no-such-git'),
    });
    await expect(failure).rejects.toBeInstanceOf(GitMissingError);
    await expect(failure).rejects.toThrow(/Add the runtime layer/);
  });

  test('only https is allowed unless other transports are asked for', async () => {
    const { dest } = await makeWork();
    await expect(
      cloneCommit({ url: fileUrl(), sha: firstCommit, destination: dest, depth: 1 }),
    ).rejects.toMatchObject({
      code: 'GIT_TRANSPORT_REFUSED',
    });
  });

  test('a URL that looks like an option is never read as one', async () => {
    const { work, dest } = await makeWork();
    const marker = join(work, 'injected');
    const failure = cloneCommit({
      url: `--upload-pack=touch ${marker}`,
      sha: firstCommit,
      destination: dest,
      depth: 1,
      allowedProtocols: ['file'],
    });
    await expect(failure).rejects.toBeInstanceOf(SourceFetchError);
    expect(await exists(marker)).toBe(false);
  });

  test('a malformed commit id or depth is refused before git runs', async () => {
    const { dest } = await makeWork();
    await expect(
      cloneCommit({ url: fileUrl(), sha: '--upload-pack=x', destination: dest, depth: 1 }),
    ).rejects.toThrow(/not a full 40-character id/);
    await expect(
      cloneCommit({ url: fileUrl(), sha: firstCommit, destination: dest, depth: 0 }),
    ).rejects.toThrow(/depth must be a whole number/);
  });

  describe('over HTTP', () => {
    let http: ArchiveServer;
    beforeAll(async () => {
      http = await startArchiveServer();
      http.route('/git', gitHttpBackend(join(base, 'repos'), '/git'));
      http.route('/private', (_request, response) => {
        response.writeHead(401, { 'www-authenticate': 'Basic realm="private"' }).end();
      });
      http.route('/hang', () => undefined);
    });
    afterAll(() => http.close());

    test('clones through git http-backend', async () => {
      const { dest } = await makeWork();
      await cloneCommit({
        url: http.url('/git/o/r.git'),
        sha: firstCommit,
        destination: dest,
        depth: 1,
        allowedProtocols: ['http'],
      });
      expect(await git(dest, 'rev-parse', 'HEAD')).toBe(firstCommit);
      expect(await readFile(join(dest, 'README.md'), 'utf8')).toBe('# r\n');
      expect(http.requests.some((path) => path.endsWith('/git-upload-pack'))).toBe(true);
    });

    test('never prompts for credentials', async () => {
      const { dest } = await makeWork();
      const started = Date.now();
      await expect(
        cloneCommit({
          url: http.url('/private/o/r.git'),
          sha: firstCommit,
          destination: dest,
          depth: 1,
          allowedProtocols: ['http'],
          timeoutMs: 60_000,
        }),
      ).rejects.toMatchObject({ code: 'GIT_AUTH_REQUIRED' });
      // Well before the timeout a prompt would wait for (git and its http-backend are slow on a
      // busy machine: 10 s of 20 s left too little room).
      expect(Date.now() - started).toBeLessThan(30_000);
    }, 90_000);

    test('the timeout ends a clone the server never answers', async () => {
      const { dest } = await makeWork();
      const started = Date.now();
      await expect(
        cloneCommit({
          url: http.url('/hang/o/r.git'),
          sha: firstCommit,
          destination: dest,
          depth: 1,
          allowedProtocols: ['http'],
          timeoutMs: 1000,
        }),
      ).rejects.toBeInstanceOf(SourceTimeoutError);
      // It waited for its timeout (the code's own wait), and did not hang: ten times that at most.
      expect(Date.now() - started).toBeGreaterThanOrEqual(990);
      expect(Date.now() - started).toBeLessThan(10_000);
    });
  });
});
