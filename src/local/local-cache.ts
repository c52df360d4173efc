/**
 * `lambkin run`'s dependency cache: the cloud's (src/store/cache.ts) on local disk. The same keys
 * (runtime, lockfile blob sha, codec), the same runner code restoring and saving through URLs, and
 * the same trust rule (the controller grants a PUT only to a trusted build, only for a key not
 * stored yet). The archives live in a folder of the user's own, 0700:
 *
 *   $XDG_CACHE_HOME/lambkin/deps/local/<folder name>-<hash of its path>/node22-linux-x64/<sha>.tar.br
 *
 * (`~/.cache/lambkin` without XDG_CACHE_HOME). The project part is the working copy's real path,
 * hashed: a working copy can only ever read or write its own entries, never poison another
 * project's. One entry per project and runtime is kept: saving a new lockfile's entry removes the
 * older ones. The runner reaches the folder through a loopback server that answers only URLs with
 * this run's random token and only for the keys the controller granted (the presigned URLs' part),
 * so the folder itself never has to be open to the build's user.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { chmod, link, lstat, mkdir, readdir, readFile, realpath, rm, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { homedir } from 'node:os';
import { basename, dirname, isAbsolute, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { RepoName } from '../core/build.js';
import { CACHE_PREFIX, NPM_LOCKFILES, cacheKeyOf, currentRuntime, gitBlobSha } from '../core/cache-key.js';
import { LambkinError } from '../core/errors.js';
import type { CacheAccess } from '../core/protocol.js';
import type { CacheLocation, CachePlanner } from '../core/ports.js';
import { DEFAULT_CACHE_MAX_BYTES } from '../store/cache.js';

export class LocalCacheError extends LambkinError {
  constructor(message: string) {
    super('LOCAL_CACHE', message);
  }
}

/** `$XDG_CACHE_HOME/lambkin` (an absolute XDG_CACHE_HOME only, as the spec says), else `~/.cache/lambkin`. */
export function defaultLocalCacheDir(
  env: Readonly<Record<string, string | undefined>> = process.env,
  home = env.HOME ?? homedir(),
): string {
  const xdg = env.XDG_CACHE_HOME;
  return join(xdg && isAbsolute(xdg) ? xdg : join(home, '.cache'), 'lambkin');
}

/** The folder of the dependency archives inside the cache folder. */
export const DEPENDENCY_FOLDER = 'deps';

export interface LocalDependencyCacheOptions {
  /** The cache folder (defaultLocalCacheDir()); made 0700 when missing. */
  dir: string;
  /** The working copy being built: its real path names its entries. */
  projectPath: string;
  maxBytes?: number;
}

export class LocalDependencyCache implements CachePlanner {
  private readonly token = randomBytes(24).toString('hex');
  private readonly readable = new Set<string>();
  private readonly writable = new Set<string>();
  private readonly root: string;

  private constructor(
    private readonly project: { path: string; repo: RepoName },
    dir: string,
    private readonly maxBytes: number,
    private readonly url: string,
    private readonly server: ReturnType<typeof createServer>,
  ) {
    this.root = join(dir, DEPENDENCY_FOLDER);
    server.on('request', (request: IncomingMessage, response: ServerResponse) => {
      this.answer(request, response).catch(() => {
        if (!response.headersSent) response.writeHead(500);
        response.end();
      });
    });
  }

  /** Checks (or makes) the folder and starts the loopback server. */
  static async start(options: LocalDependencyCacheOptions): Promise<LocalDependencyCache> {
    await ownFolder(options.dir);
    await ownFolder(join(options.dir, DEPENDENCY_FOLDER));
    const path = await realpath(options.projectPath);
    const name = basename(path).replace(/[^A-Za-z0-9._-]/g, '-') || 'project';
    const hash = createHash('sha256').update(path).digest('hex').slice(0, 16);
    const server = createServer();
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    const { port } = server.address() as AddressInfo;
    return new LocalDependencyCache(
      { path, repo: `local/${name}-${hash}` },
      options.dir,
      options.maxBytes ?? DEFAULT_CACHE_MAX_BYTES,
      `http://127.0.0.1:${port}`,
      server,
    );
  }

  /** The working copy's lockfile (npm's order), as the runner will find it in the checkout. */
  async locate(_build: unknown, options: { nodeVersion?: string } = {}): Promise<CacheLocation | undefined> {
    for (const name of NPM_LOCKFILES) {
      const content = await readFile(join(this.project.path, name)).catch(() => undefined);
      if (content === undefined) continue;
      const lockfileSha = gitBlobSha(content);
      const key = cacheKeyOf(this.project.repo, currentRuntime(), lockfileSha, options.nodeVersion);
      const exists = await stat(this.fileOf(key)).then(
        (stats) => stats.isFile(),
        () => false,
      );
      return { key, lockfileSha, exists };
    }
    return undefined;
  }

  async presign(
    location: CacheLocation,
    _signer: unknown,
    options: { write: boolean; expiresInSeconds: number },
  ): Promise<CacheAccess> {
    if (!location.key.startsWith(`${CACHE_PREFIX}${this.project.repo}/`) || location.key.includes('..')) {
      throw new LocalCacheError(`Refused to grant ${JSON.stringify(location.key)}: not this project's key.`);
    }
    this.readable.add(location.key);
    const url = `${this.url}/${this.token}/${location.key}`;
    const access: CacheAccess = {
      key: location.key,
      lockfileSha: location.lockfileSha,
      getUrl: url,
      stored: location.exists,
      maxBytes: this.maxBytes,
    };
    if (!options.write || location.exists) return access;
    this.writable.add(location.key);
    return { ...access, putUrl: url, putHeaders: { 'if-none-match': '*' } };
  }

  async close(): Promise<void> {
    await new Promise<void>((done) => {
      this.server.closeAllConnections();
      this.server.close(() => done());
    });
  }

  private fileOf(key: string): string {
    return join(this.root, key.slice(CACHE_PREFIX.length));
  }

  private async answer(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const key = this.grantedKey(request.url ?? '');
    if (key === undefined) {
      response.writeHead(403).end();
      return;
    }
    const file = this.fileOf(key);
    if (request.method === 'GET' && this.readable.has(key)) {
      const stats = await stat(file).catch(() => undefined);
      if (!stats?.isFile()) {
        response.writeHead(404).end();
        return;
      }
      response.writeHead(200, { 'content-length': stats.size });
      await pipeline(createReadStream(file), response);
      return;
    }
    if (request.method === 'PUT' && this.writable.has(key)) {
      await this.store(request, response, key, file);
      return;
    }
    response.writeHead(403).end();
  }

  /** The key of a URL carrying this run's token, or undefined. */
  private grantedKey(url: string): string | undefined {
    const path = decodeURIComponent(url.split('?')[0] ?? '');
    const token = path.slice(1, 1 + this.token.length);
    if (
      token.length !== this.token.length ||
      !timingSafeEqual(Buffer.from(token), Buffer.from(this.token)) ||
      path[1 + this.token.length] !== '/'
    ) {
      return undefined;
    }
    return path.slice(2 + this.token.length);
  }

  /** As S3 with `If-None-Match: *`: written once (412 when stored meanwhile), whole or not at all. */
  private async store(
    request: IncomingMessage,
    response: ServerResponse,
    key: string,
    file: string,
  ): Promise<void> {
    const length = Number(request.headers['content-length'] ?? NaN);
    if (request.headers['if-none-match'] !== '*' || !Number.isSafeInteger(length) || length > this.maxBytes) {
      response.writeHead(400).end();
      return;
    }
    await mkdir(dirname(file), { recursive: true, mode: 0o700 });
    const partial = `${file}.${randomBytes(6).toString('hex')}.partial`;
    try {
      let received = 0;
      await pipeline(
        request,
        async function* bounded(source: AsyncIterable<Buffer>) {
          for await (const chunk of source) {
            received += chunk.length;
            if (received > length) throw new LocalCacheError('more bytes than the declared length');
            yield chunk;
          }
        },
        createWriteStream(partial, { mode: 0o600 }),
      );
      if (received !== length) throw new LocalCacheError('fewer bytes than the declared length');
      // link() fails when the key exists: a concurrent run stored it first, as S3's 412.
      const stored = await link(partial, file).then(
        () => true,
        (error: NodeJS.ErrnoException) => {
          if (error.code === 'EEXIST') return false;
          throw error;
        },
      );
      if (stored) await this.pruneSiblings(file);
      response.writeHead(stored ? 200 : 412).end();
    } finally {
      await rm(partial, { force: true });
    }
    this.writable.delete(key);
  }

  /** One entry per project and runtime: the other lockfiles' entries go once a new one is stored. */
  private async pruneSiblings(file: string): Promise<void> {
    const folder = dirname(file);
    for (const name of await readdir(folder)) {
      const sibling = join(folder, name);
      if (sibling !== file && !name.endsWith('.partial')) await rm(sibling, { force: true });
    }
  }
}

/**
 * Makes a folder of this user's, 0700, or checks the one there: a real folder (not a link), this
 * user's, closed to others (its mode is narrowed to 0700 if it was wider).
 */
async function ownFolder(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const stats = await lstat(dir);
  if (!stats.isDirectory()) throw new LocalCacheError(`${dir} is not a folder: remove it or choose another.`);
  const uid = process.getuid?.();
  if (uid !== undefined && stats.uid !== uid) {
    throw new LocalCacheError(`${dir} belongs to another user (uid ${stats.uid}): the cache is not used.`);
  }
  if ((stats.mode & 0o077) !== 0) await chmod(dir, 0o700);
}
