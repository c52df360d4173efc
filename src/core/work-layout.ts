/**
 * The runner's work root, as far as two sides must agree on it: the runner makes it
 * (src/runner/workspace.ts), and the controller hands what it keeps from one sandboxed build to the
 * next (src/controller/npm-cache-handover.ts, src/controller/dependency-handover.ts).
 *
 *   <work root>/trusted/npm-cache/                     the trusted builds' npm cache
 *   <work root>/trusted/kept-dependencies/node_modules  a dependency tree lent to, or handed back by,
 *   <work root>/trusted/kept-dependencies/kept.json     a trusted build (KeptDependenciesNote)
 *   <work root>/untrusted/npm-cache/                   the untrusted builds' (never handed on)
 */
export const TRUST_CLASS_FOLDERS = { trusted: 'trusted', untrusted: 'untrusted' } as const;
export const NPM_CACHE_FOLDER = 'npm-cache';
/** An npm cache larger than this is removed rather than kept for the next build. */
export const DEFAULT_MAX_NPM_CACHE_BYTES = 1024 ** 3;
export const KEPT_DEPENDENCIES_FOLDER = 'kept-dependencies';
export const KEPT_DEPENDENCIES_NOTE = 'kept.json';

/** What kept.json says of the tree beside it: the cache key it is the unpacked archive of. */
export interface KeptDependenciesNote {
  key: string;
  /** Counted by the controller when it kept the tree (for the build log); 0 in a runner's note. */
  files: number;
  bytes: number;
}
