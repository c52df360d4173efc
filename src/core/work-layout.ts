/**
 * The runner's work root, as far as two sides must agree on it: the runner makes it
 * (src/runner/workspace.ts), and the controller hands the trusted npm cache from one sandboxed
 * build to the next (src/controller/npm-cache-handover.ts).
 *
 *   <work root>/trusted/npm-cache/     the trusted builds' npm cache
 *   <work root>/untrusted/npm-cache/   the untrusted builds' (never handed on)
 */
export const TRUST_CLASS_FOLDERS = { trusted: 'trusted', untrusted: 'untrusted' } as const;
export const NPM_CACHE_FOLDER = 'npm-cache';
/** An npm cache larger than this is removed rather than kept for the next build. */
export const DEFAULT_MAX_NPM_CACHE_BYTES = 1024 ** 3;
