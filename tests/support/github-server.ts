/**
 * The GitHub stand-in for tests. The stand-in itself lives in src/local/github/ (the
 * local demo runs it too); this module re-exports it and adds what only tests need.
 */
import { Parser, type ReadEntry } from 'tar';

export {
  commitFiles,
  createGitRepo,
  createGitRepoFromDirectory,
  startGitHubServer,
  type CommitStatusRecord,
  type CreatedStatus,
  type Fault,
  type FaultMode,
  type GitFile,
  type GitFiles,
  type GitHubServerOptions,
  type GitHubStandIn,
  type GitRepo,
  type RecordedRequest,
  type RepositoryDefinition,
} from '../../src/local/github/index.js';

export interface ArchiveEntry {
  type: string;
  mode: number;
  content: Buffer;
  /** Symbolic links: where they point. */
  linkpath?: string;
}

/** Reads a `.tar.gz` (as the archive URL serves it) into path → entry. */
export async function readTarGz(archive: Uint8Array): Promise<Map<string, ArchiveEntry>> {
  const entries = new Map<string, ArchiveEntry>();
  await new Promise<void>((resolve, reject) => {
    const parser = new Parser({
      onReadEntry: (entry: ReadEntry) => {
        const chunks: Buffer[] = [];
        entry.on('data', (chunk: Buffer) => chunks.push(chunk));
        entry.on('end', () =>
          entries.set(entry.path, {
            type: entry.type,
            mode: entry.mode ?? 0,
            content: Buffer.concat(chunks),
            ...(entry.linkpath ? { linkpath: entry.linkpath } : {}),
          }),
        );
      },
    });
    parser.on('end', () => resolve());
    parser.on('error', reject);
    parser.end(Buffer.from(archive));
  });
  return entries;
}
