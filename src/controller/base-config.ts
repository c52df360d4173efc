/**
 * The config of the branch a pull request merges into, read by the controller through the
 * contents API (never from the pull request's checkout): the trusted layer of a pull request's
 * config, which the pull request's own files change only as far as its policy allows. Pushes read
 * the default branch's the same way: its deployBranches / deployTags decide whether they deploy.
 */
import type { RepoName } from '../core/build.js';
import { RepoConfigError, type RepoConfigProblem } from '../core/repo-config/config-errors.js';
import {
  LAMBCI_FILE,
  LAMBKIN_FILE,
  collectConfigFiles,
  type RepoConfigFile,
  type RepoConfigFiles,
} from '../core/repo-config/files.js';
import { MAX_CONFIG_FILE_BYTES } from '../core/repo-config/schema.js';
import type { BaseConfig } from '../core/protocol.js';

/** Reads one file of a repository at a ref; undefined when there is none. */
export interface RepoFileReader {
  readFile(repo: RepoName, path: string, ref: string): Promise<string | undefined>;
}

/**
 * `.lambkin.json`, `.lambci.json` and package.json's keys of the branch `ref`, validated like a
 * checkout's. Read at `refs/heads/<ref>`, never at the bare name: a tag named like the branch
 * (which whoever may push tags can make) would otherwise be what the name resolves to.
 */
export async function readBaseConfig(
  reader: RepoFileReader,
  repo: RepoName,
  ref: string,
  options: { hint?: string } = {},
): Promise<BaseConfig> {
  const files = await readConfigFiles(reader, repo, `refs/heads/${ref}`, ref, {
    hint: options.hint ?? `Pull requests take their config from ${ref}: fix it there.`,
  });
  return { ref, files, notes: [] };
}

/**
 * The config files of the build's own commit (`sha`), as the runner will read them from its
 * checkout: what the controller plans a build's jobs from before any runner starts.
 */
export async function readCommitConfig(
  reader: RepoFileReader,
  repo: RepoName,
  sha: string,
): Promise<RepoConfigFiles> {
  const packageText = await reader.readFile(repo, 'package.json', sha);
  const files = await readConfigFiles(reader, repo, sha, sha.slice(0, 7), {
    hint: 'Fix the config in the commit, then push again.',
    packageText,
  });
  return { files, hasLockfile: false, hasPackageJson: packageText !== undefined, notes: [] };
}

async function readConfigFiles(
  reader: RepoFileReader,
  repo: RepoName,
  gitRef: string,
  ref: string,
  options: { hint: string; packageText?: string | undefined },
): Promise<RepoConfigFile[]> {
  const [packageText, lambciText, lambkinText] = await Promise.all([
    'packageText' in options ? options.packageText : reader.readFile(repo, 'package.json', gitRef),
    reader.readFile(repo, LAMBCI_FILE, gitRef),
    reader.readFile(repo, LAMBKIN_FILE, gitRef),
  ]);
  const problems: RepoConfigProblem[] = [];
  const sized = (name: string, text: string | undefined): string | undefined => {
    if (text !== undefined && Buffer.byteLength(text) > MAX_CONFIG_FILE_BYTES) {
      problems.push({ source: name, message: 'is larger than 1 MiB: a config file may be at most 1 MiB' });
      return undefined;
    }
    return text;
  };
  let omitted = 0;
  const files = collectConfigFiles(
    {
      packageText: sized('package.json', packageText),
      lambciText: sized(LAMBCI_FILE, lambciText),
      lambkinText: sized(LAMBKIN_FILE, lambkinText),
    },
    problems,
    (error) => (omitted += error.omitted),
  );
  if (problems.length > 0) {
    throw new RepoConfigError(
      problems.map((problem) => ({ ...problem, source: `${ref}: ${problem.source ?? 'config'}` })),
      {
        omitted,
        hint: options.hint,
      },
    );
  }
  return files;
}
