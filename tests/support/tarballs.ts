/**
 * Tarballs that say whatever a test tells them: built block by block with node-tar's header
 * encoder, hostile entries included (escaping paths, links, devices, set-uid modes, sizes that lie).
 */
import { gzipSync } from 'node:zlib';
import { Header } from 'tar';

export interface TarEntry {
  path: string;
  type?: 'File' | 'Directory' | 'SymbolicLink' | 'Link' | 'FIFO' | 'CharacterDevice' | 'SparseFile';
  body?: string | Buffer;
  /** Declared size when it differs from the body's. */
  size?: number;
  linkpath?: string;
  mode?: number;
}

/** A tar.gz (or, with `gzip: false`, a plain tar) of `entries`, in order. */
export function tarball(entries: TarEntry[], { gzip = true } = {}): Buffer {
  const blocks: Buffer[] = [];
  for (const entry of entries) {
    const type = entry.type ?? 'File';
    const body = Buffer.from(entry.body ?? '');
    const header = new Header({
      path: entry.path,
      type: type as never, // 'SparseFile' is a valid tar type node-tar can encode but does not name in its types
      size: entry.size ?? body.length,
      mode: entry.mode ?? (type === 'Directory' ? 0o755 : 0o644),
      linkpath: entry.linkpath,
      uid: 0,
      gid: 0,
      mtime: new Date('2024-01-01T00:00:00Z'),
    });
    const block = Buffer.alloc(512);
    header.encode(block, 0);
    blocks.push(block);
    if (body.length > 0) blocks.push(body, Buffer.alloc((512 - (body.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  const tar = Buffer.concat(blocks);
  return gzip ? gzipSync(tar) : tar;
}
