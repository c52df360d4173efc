/**
 * The dependency cache's unpacker for the common case: the cached paths do not exist yet, so every
 * folder and file is new. Entries pass the same checks as everywhere (the caller's `admit`, an
 * ArchiveEntryGate); what differs is how they are written. node-tar's unpacker makes about twenty
 * system calls per file (stat of every parent, mkdir of every parent, unlink, chmod, utimes, chown);
 * here a file is one exclusive create, one write and one close, each folder one mkdir, and small
 * files are written a few at a time on libuv's threads while the next ones are decompressed.
 * Measured on a 7 700-file node_modules here: 159 000 system calls against 24 000.
 *
 * Safe because nothing is written where anything was: a file is created with O_EXCL (never through
 * or over an existing path, link or not), a folder with a plain mkdir that fails if the path exists,
 * and the gate refuses entries under the archive's own links. Modification times are not restored:
 * no install or build tool depends on a dependency's mtime, and it saves one call per file.
 */
import { once } from 'node:events';
import { closeSync, mkdirSync, openSync, symlinkSync, writeSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Parser, type ReadEntry } from 'tar';
import { MAX_PATH_DEPTH, type GuardedUnpackOptions } from './archive-tree.js';

/** Files at most this large are buffered and written on libuv's threads; larger ones stream. */
const BUFFERED_FILE_MAX = 4 * 1024 * 1024;
/** Writes in flight at once (libuv has four threads by default) and the bytes they may hold. */
const MAX_WRITES_IN_FLIGHT = 8;
const MAX_BYTES_IN_FLIGHT = 32 * 1024 * 1024;

export interface FreshUnpackOptions<E extends Error> extends GuardedUnpackOptions<E> {
  /** Folders (relative, `/`-separated) that exist already and may hold new entries: the parents of the cached paths. */
  existingFolders: readonly string[];
}

/** The same contract as GuardedUnpack (feed, stop, fail, cutOffEarly, finish) for fresh paths. */
export class FreshUnpack<E extends Error> {
  readonly stop = new AbortController();
  failure: E | undefined;
  private cutOff = false;
  private readonly parser: Parser;
  /** Folders known to exist: the given parents and those made here. */
  private readonly folders: Set<string>;
  private readonly writes = new Set<Promise<void>>();
  private bytesInFlight = 0;
  /** The descriptor of a large file being streamed, closed on finish whatever happened. */
  private streamingFd: number | undefined;
  private readonly settled: Promise<void>;

  constructor(private readonly options: FreshUnpackOptions<E>) {
    this.folders = new Set(['', ...options.existingFolders]);
    this.parser = new Parser({
      strict: true,
      // The stream arriving here is already decompressed; never sniff for other compressions.
      zstd: false,
      brotli: false,
    });
    this.parser.on('entry', (entry: ReadEntry) => this.onEntry(entry));
    this.parser.on('error', (error: unknown) => {
      if (!this.cutOff) this.fail(options.asError(error));
    });
    // Only a metadata header too large for the parser is ignored: refused like an unsupported entry.
    this.parser.on('ignoredEntry', (entry: ReadEntry) => {
      if (!this.failure) this.fail(options.unsupported(entry));
    });
    this.settled = new Promise<void>((resolve) => {
      this.parser.once('end', resolve);
      this.parser.once('abort', resolve);
    });
  }

  fail(error: E): void {
    this.failure ??= error;
    this.stop.abort(error);
  }

  /** The pipeline's last stage: parses the tar stream, waiting while too many writes are in flight. */
  readonly feed = async (source: AsyncIterable<Buffer>): Promise<void> => {
    for await (const chunk of source) {
      if (!this.parser.write(chunk)) await once(this.parser, 'drain', { signal: this.stop.signal });
      while (this.writes.size >= MAX_WRITES_IN_FLIGHT || this.bytesInFlight > MAX_BYTES_IN_FLIGHT) {
        await Promise.race(this.writes);
      }
      if (this.failure) throw this.failure;
    }
  };

  cutOffEarly(): void {
    this.cutOff = true;
  }

  /** Ends the parser and waits for every write, so nothing is written after it returns. */
  async finish(): Promise<void> {
    this.parser.end();
    await this.settled;
    await Promise.all(this.writes);
    this.closeStreaming();
  }

  private onEntry(entry: ReadEntry): void {
    try {
      if (this.failure || !this.options.admit(entry)) {
        entry.resume();
        return;
      }
      // The gate rewrote the path to where the entry goes, relative to cwd.
      const relative = entry.path;
      const target = join(this.options.cwd, relative);
      if (entry.type === 'Directory') {
        this.makeFolder(relative, ((entry.mode ?? 0o755) & 0o777) | 0o700);
        entry.resume();
      } else if (entry.type === 'SymbolicLink') {
        this.makeFolder(parentOf(relative));
        symlinkSync(entry.linkpath ?? '', target);
        entry.resume();
      } else {
        this.makeFolder(parentOf(relative));
        this.writeFileEntry(entry, target, (entry.mode ?? 0o644) & 0o777);
      }
    } catch (error) {
      this.fail(this.options.asError(error));
      entry.resume();
    }
  }

  /** Makes a folder and the missing folders above it, each with one mkdir that fails if it exists. */
  private makeFolder(relative: string, mode = 0o755): void {
    if (this.folders.has(relative)) return;
    if (relative.split('/').length > MAX_PATH_DEPTH) throw new Error(`${relative} is nested too deep`);
    this.makeFolder(parentOf(relative));
    mkdirSync(join(this.options.cwd, relative), { mode });
    this.folders.add(relative);
  }

  private writeFileEntry(entry: ReadEntry, target: string, mode: number): void {
    if (entry.size > BUFFERED_FILE_MAX) {
      const fd = openSync(target, 'wx', mode);
      this.streamingFd = fd;
      entry.on('data', (chunk: Buffer) => {
        if (this.streamingFd !== fd) return;
        try {
          writeSync(fd, chunk);
        } catch (error) {
          this.fail(this.options.asError(error));
          this.closeStreaming();
        }
      });
      entry.on('end', () => {
        if (this.streamingFd === fd) this.closeStreaming();
      });
      return;
    }
    const chunks: Buffer[] = [];
    entry.on('data', (chunk: Buffer) => chunks.push(chunk));
    entry.on('end', () => {
      if (this.failure) return;
      const data = chunks.length === 1 ? (chunks[0] ?? Buffer.alloc(0)) : Buffer.concat(chunks);
      this.bytesInFlight += data.length;
      const write: Promise<void> = writeFile(target, data, { flag: 'wx', mode }).then(
        () => undefined,
        (error: unknown) => this.fail(this.options.asError(error)),
      );
      const tracked = write.finally(() => {
        this.bytesInFlight -= data.length;
        this.writes.delete(tracked);
      });
      this.writes.add(tracked);
    });
  }

  private closeStreaming(): void {
    const fd = this.streamingFd;
    this.streamingFd = undefined;
    if (fd === undefined) return;
    try {
      closeSync(fd);
    } catch (error) {
      this.fail(this.options.asError(error));
    }
  }
}

function parentOf(relative: string): string {
  return relative.slice(0, Math.max(0, relative.lastIndexOf('/')));
}
