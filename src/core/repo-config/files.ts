/**
 * Reads a checkout's config files. Data only: JSON is parsed, nothing is ever required or run, so a
 * `lambkin.config.js` or `.lambci.js` is noted and left alone.
 */
import { constants } from 'node:fs';
import { lstat, open, realpath } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { RepoConfigError } from './config-errors.js';
import type { RepoConfigProblem } from './config-errors.js';
import { validateLambciConfig } from './lambci.js';
import type { LambciConfig } from './lambci.js';
import { MAX_CONFIG_FILE_BYTES } from './schema.js';
import type { RepoConfigInput } from './schema.js';
import { parseJson, validateRepoConfig } from './validate.js';
import { isPlainObject } from '../values.js';

export type RepoConfigFile =
  | {
      format: 'lambkin';
      /** For the log: `.lambkin.json` or `package.json "lambkin"`. */
      source: string;
      config: RepoConfigInput;
    }
  | {
      format: 'lambci';
      source: string;
      /** The file the config is in, and the key path inside it (for messages). */
      file: string;
      prefix: string[];
      config: LambciConfig;
    };

export interface RepoConfigFiles {
  /** Lowest precedence first: package.json "lambci", .lambci.json, package.json "lambkin", .lambkin.json. */
  files: RepoConfigFile[];
  /** `package-lock.json` or `npm-shrinkwrap.json` exists (the default install is then `npm ci`). */
  hasLockfile: boolean;
  hasPackageJson: boolean;
  /** Files found and deliberately not used, for the build log. */
  notes: string[];
}

export const LAMBKIN_FILE = '.lambkin.json';
export const LAMBCI_FILE = '.lambci.json';
const LOCKFILES = ['package-lock.json', 'npm-shrinkwrap.json'];
/** Config as code, which Lambkin never runs (LambCI `require`d `.lambci.js` for trusted builds). */
const CODE_CONFIG_FILES = [
  'lambkin.config.js',
  'lambkin.config.mjs',
  'lambkin.config.cjs',
  'lambkin.config.ts',
  '.lambkin.js',
  '.lambkin.mjs',
  '.lambkin.cjs',
  '.lambci.js',
];

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}

function isMissing(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

function refuse(name: string, message: string): RepoConfigError {
  return new RepoConfigError([{ source: name, message }]);
}

function mebibytes(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}

/**
 * A config file's text, or undefined when there is none. Refuses what a config file should never be:
 * larger than 1 MiB, not a regular file (a FIFO would block), a symbolic link leading outside the
 * checkout (it could expose the reader's own files), or not UTF-8.
 */
export async function readConfigText(dir: string, name: string): Promise<string | undefined> {
  const path = join(dir, name);
  let target = path;
  try {
    if ((await lstat(path)).isSymbolicLink()) {
      const root = await realpath(dir);
      const resolved = await realpath(path).catch(() => undefined);
      if (resolved === undefined || !resolved.startsWith(root + sep)) {
        throw refuse(name, 'is a symbolic link to something outside the repository: make it a regular file');
      }
      target = resolved;
    }
  } catch (error) {
    if (isMissing(error)) return undefined;
    throw error;
  }
  const handle = await open(target, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) throw refuse(name, 'is not a regular file: make it a JSON file');
    const tooLarge = (bytes: number) =>
      refuse(name, `is ${mebibytes(bytes)}: a config file may be at most 1 MiB`);
    if (stats.size > MAX_CONFIG_FILE_BYTES) throw tooLarge(stats.size);
    // One byte more than allowed, to notice a file that grew since `stat`.
    const buffer = Buffer.alloc(Math.min(stats.size, MAX_CONFIG_FILE_BYTES) + 1);
    let length = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length === buffer.length) break;
    }
    if (length > MAX_CONFIG_FILE_BYTES) throw tooLarge(length);
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(buffer.subarray(0, length));
    } catch {
      throw refuse(name, 'is not UTF-8 text: save it as UTF-8 JSON');
    }
  } finally {
    await handle.close();
  }
}

/** The texts of a revision's config files; undefined where there is no such file. */
export interface ConfigTexts {
  packageText: string | undefined;
  lambciText: string | undefined;
  lambkinText: string | undefined;
}

/**
 * Parses and validates config files, lowest precedence first. Problems are added to `problems`
 * (the caller reports them all at once); `onOmitted` hears of problems left out for brevity.
 */
export function collectConfigFiles(
  { packageText, lambciText, lambkinText }: ConfigTexts,
  problems: RepoConfigProblem[],
  onOmitted: (error: RepoConfigError) => void = () => undefined,
): RepoConfigFile[] {
  const collect = <T>(read: () => T): T | undefined => {
    try {
      return read();
    } catch (error) {
      if (!(error instanceof RepoConfigError)) throw error;
      problems.push(...error.problems);
      onOmitted(error);
      return undefined;
    }
  };
  const files: RepoConfigFile[] = [];
  let packageLambkin: RepoConfigFile | undefined;
  if (packageText !== undefined) {
    const packageJson = collect(() => parseJson(packageText, 'package.json'));
    if (packageJson !== undefined && !isPlainObject(packageJson)) {
      problems.push({ source: 'package.json', message: 'must be a JSON object' });
    } else if (packageJson !== undefined) {
      if (packageJson['lambci'] !== undefined) {
        const config = collect(() => validateLambciConfig(packageJson['lambci'], 'package.json', ['lambci']));
        if (config) {
          files.push({
            format: 'lambci',
            source: 'package.json "lambci"',
            file: 'package.json',
            prefix: ['lambci'],
            config,
          });
        }
      }
      if (packageJson['lambkin'] !== undefined) {
        const config = collect(() => validateRepoConfig(packageJson['lambkin'], 'package.json', ['lambkin']));
        if (config) packageLambkin = { format: 'lambkin', source: 'package.json "lambkin"', config };
      }
    }
  }
  if (lambciText !== undefined) {
    const config = collect(() => validateLambciConfig(parseJson(lambciText, LAMBCI_FILE), LAMBCI_FILE));
    if (config) files.push({ format: 'lambci', source: LAMBCI_FILE, file: LAMBCI_FILE, prefix: [], config });
  }
  if (packageLambkin) files.push(packageLambkin);
  if (lambkinText !== undefined) {
    const config = collect(() => validateRepoConfig(parseJson(lambkinText, LAMBKIN_FILE), LAMBKIN_FILE));
    if (config) files.push({ format: 'lambkin', source: LAMBKIN_FILE, config });
  }
  return files;
}

/**
 * Reads `.lambkin.json`, `.lambci.json` and package.json's `"lambkin"` and `"lambci"` keys from a
 * checkout and validates them. Every problem of every file is reported in one RepoConfigError.
 */
export async function readRepoConfig(checkoutDir: string): Promise<RepoConfigFiles> {
  const problems: RepoConfigProblem[] = [];
  let omitted = 0;
  const readText = async (name: string): Promise<string | undefined> => {
    try {
      return await readConfigText(checkoutDir, name);
    } catch (error) {
      if (!(error instanceof RepoConfigError)) throw error;
      problems.push(...error.problems);
      omitted += error.omitted;
      return undefined;
    }
  };

  const [packageText, lambciText, lambkinText] = await Promise.all([
    readText('package.json'),
    readText(LAMBCI_FILE),
    readText(LAMBKIN_FILE),
  ]);
  const files = collectConfigFiles({ packageText, lambciText, lambkinText }, problems, (error) => {
    omitted += error.omitted;
  });
  if (problems.length > 0) throw new RepoConfigError(problems, { omitted });

  const [lockfiles, codeConfigs] = await Promise.all([
    Promise.all(LOCKFILES.map((name) => exists(join(checkoutDir, name)))),
    Promise.all(CODE_CONFIG_FILES.map((name) => exists(join(checkoutDir, name)))),
  ]);
  const notes = CODE_CONFIG_FILES.filter((_, index) => codeConfigs[index]).map(
    (name) =>
      `${name} was not run: Lambkin never executes config code; put its settings in ${
        name.startsWith('.lambci') ? `${LAMBCI_FILE} or ` : ''
      }${LAMBKIN_FILE}`,
  );
  return {
    files,
    hasLockfile: lockfiles.some(Boolean),
    hasPackageJson: packageText !== undefined,
    notes,
  };
}
