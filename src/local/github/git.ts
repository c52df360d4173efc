/**
 * The git repositories the stand-in serves: made in temporary folders from files or from a
 * folder, and read with the git command line (a git that ignores the developer's own config).
 */
import { execFile } from 'node:child_process';
import {
  chmod,
  lstat,
  mkdir,
  mkdtemp,
  readFile,
  readdir,
  readlink,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, posix } from 'node:path';

/** A file to commit: its text or bytes, an executable file, or a symbolic link. */
export type GitFile =
  string | Uint8Array | { content: string | Uint8Array; executable: true } | { symlink: string };
/** Files to write (path → content) or delete (path → null) before committing. */
export type GitFiles = Record<string, GitFile | null>;

export interface GitRepo {
  dir: string;
  sha: string;
  branch: string;
}

/** This git must not read the developer's config, hooks or signing keys. */
const GIT_ENV = {
  ...process.env,
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_CONFIG_GLOBAL: '/dev/null',
  GIT_AUTHOR_NAME: 'Lambkin Test',
  GIT_AUTHOR_EMAIL: 'test@lambkin.invalid',
  GIT_COMMITTER_NAME: 'Lambkin Test',
  GIT_COMMITTER_EMAIL: 'test@lambkin.invalid',
  GIT_TERMINAL_PROMPT: '0',
};

export function runGit(dir: string, args: string[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    execFile(
      'git',
      ['-C', dir, ...args],
      { env: GIT_ENV, encoding: 'buffer', maxBuffer: 512 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error) {
          reject(
            new Error(`git ${args.join(' ')} failed in ${dir}: ${stderr.toString().trim() || error.message}`),
          );
        } else {
          resolve(stdout);
        }
      },
    );
  });
}

export async function gitText(dir: string, args: string[]): Promise<string> {
  return (await runGit(dir, args)).toString('utf8').trim();
}

/** Writes `files` into the work tree of `dir`, commits everything and returns the new commit's sha. */
export async function commitFiles(dir: string, files: GitFiles, message = 'Update files'): Promise<string> {
  for (const [path, file] of Object.entries(files)) {
    const target = join(dir, path);
    await rm(target, { force: true, recursive: true });
    if (file === null) continue;
    await mkdir(dirname(target), { recursive: true });
    if (typeof file === 'string' || file instanceof Uint8Array) {
      await writeFile(target, file);
    } else if ('symlink' in file) {
      await symlink(file.symlink, target);
    } else {
      await writeFile(target, file.content);
      await chmod(target, 0o755);
    }
  }
  await runGit(dir, ['add', '--all']);
  await runGit(dir, ['commit', '--quiet', '--allow-empty', '--no-gpg-sign', '-m', message]);
  return gitText(dir, ['rev-parse', 'HEAD']);
}

/** Makes a git repository in a new temporary folder with one commit of `files`. */
export async function createGitRepo(
  files: GitFiles,
  options: { message?: string; branch?: string } = {},
): Promise<GitRepo> {
  const branch = options.branch ?? 'main';
  const dir = await mkdtemp(join(tmpdir(), 'lambkin-git-'));
  await runGit(dir, ['init', '--quiet', `--initial-branch=${branch}`]);
  const sha = await commitFiles(dir, files, options.message ?? 'Initial commit');
  return { dir, sha, branch };
}

/** Never copied into a repository made from a folder: installed packages and another repository. */
const SKIPPED_FOLDER_NAMES = new Set(['node_modules', '.git']);

/** Reads the files under `root` as GitFiles (keeping executable bits and symbolic links). */
async function readDirectoryFiles(root: string, under = ''): Promise<GitFiles> {
  const files: GitFiles = {};
  const entries = await readdir(join(root, under), { withFileTypes: true });
  for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    // Git paths use `/` whatever the platform.
    const path = under === '' ? entry.name : posix.join(under, entry.name);
    const source = join(root, path);
    if (entry.isDirectory()) {
      if (!SKIPPED_FOLDER_NAMES.has(entry.name)) Object.assign(files, await readDirectoryFiles(root, path));
    } else if (entry.isSymbolicLink()) {
      files[path] = { symlink: await readlink(source) };
    } else if (entry.isFile()) {
      const content = await readFile(source);
      files[path] = ((await lstat(source)).mode & 0o111) !== 0 ? { content, executable: true } : content;
    }
  }
  return files;
}

/**
 * Makes a git repository in a new temporary folder with one commit of the files under `dir`
 * (without `node_modules` and `.git` folders); `dir` itself is left as it is.
 */
export async function createGitRepoFromDirectory(
  dir: string,
  options: { message?: string; branch?: string } = {},
): Promise<GitRepo> {
  const files = await readDirectoryFiles(dir);
  if (Object.keys(files).length === 0) throw new Error(`${dir} has no files to commit.`);
  return createGitRepo(files, options);
}
