/**
 * LambCI compatibility: `.lambci.json` and package.json's `"lambci"` key are read and translated
 * into Lambkin's keys, so a LambCI repository builds without rewriting its config. Lambkin's own
 * files rank above them. `.lambci.js` is never run. docs/migrating-from-lambci.md has the mapping.
 */
import { renderPath, schemaProblems, throwIfProblems } from './validate.js';
import { UNUSED_KEYS } from './lambci-schema.js';
import { validateLambciSchema } from './validators.generated.js';
import type { BuildOverrides, EnvValue, RepoConfigInput } from './schema.js';
import { isReservedEnvName } from './schema.js';

type LambciEntryValue = boolean | LambciEntry;

/** The LambCI keys a branch or pull-request entry (and the top level) may carry. */
export interface LambciEntry {
  cmd?: string;
  env?: Record<string, EnvValue>;
  build?: boolean;
  inheritSecrets?: boolean;
  allowConfigOverrides?: boolean | string[];
  git?: { depth?: number };
  secretEnv?: unknown;
  s3Bucket?: unknown;
  s3PublicSecretNames?: unknown;
  notifications?: unknown;
  clearTmp?: unknown;
  docker?: unknown;
}

export interface LambciConfig extends LambciEntry {
  branches?: Record<string, LambciEntryValue>;
  pullRequests?:
    | boolean
    | {
        fromSelfPublicRepo?: LambciEntryValue;
        fromSelfPrivateRepo?: LambciEntryValue;
        fromForkPublicRepo?: LambciEntryValue;
        fromForkPrivateRepo?: LambciEntryValue;
      };
}

export function validateLambciConfig(
  data: unknown,
  source: string,
  prefix: readonly string[] = [],
): LambciConfig {
  throwIfProblems(schemaProblems(validateLambciSchema, data, source, prefix));
  return data as LambciConfig; // the schema just proved this shape
}

/** What a pull request build is, for picking LambCI's `pullRequests.from…` entry. */
export interface PullRequestKind {
  fork?: boolean;
  privateRepo?: boolean;
}

export interface LambciTranslation {
  config: RepoConfigInput;
  /**
   * The matching `pullRequests.from…` entry's `allowConfigOverrides`. Honoured only when the file
   * is the base branch's (trusted), and then only to narrow the operator's policy.
   */
  pullRequestOverrides?: boolean | string[];
  /** `branches` keys that are plain names: exact matches only, as in LambCI (never read as globs). */
  exactBranchKeys: Set<string>;
  /** Keys that were read but not used, and why. */
  warnings: string[];
}

/**
 * Translates LambCI keys into Lambkin's: `cmd` → `test` (with `install: []`, as LambCI's command
 * did everything), `inheritSecrets` → `secrets`, `true`/`false` entries → `{ build }`, and
 * `pullRequests.from{Self,Fork}{Public,Private}Repo` → the one `pullRequests` entry for this build.
 */
export function translateLambci(
  lambci: LambciConfig,
  source: string,
  prefix: readonly string[],
  pullRequest: PullRequestKind,
): LambciTranslation {
  const warnings: string[] = [];
  const pathOf = (segments: string[]) => renderPath(prefix, segments, lambci);

  let pullRequestOverrides: boolean | string[] | undefined;
  const translateEntry = (
    entry: LambciEntryValue,
    segments: string[],
    policyEntry = false,
  ): BuildOverrides => {
    if (typeof entry === 'boolean') return { build: entry };
    const result: BuildOverrides = {};
    if (entry.cmd !== undefined) {
      result.install = [];
      result.test = [entry.cmd];
    }
    if (entry.env !== undefined) {
      const env: Record<string, EnvValue> = {};
      for (const [name, value] of Object.entries(entry.env)) {
        if (isReservedEnvName(name)) {
          const hint = name === 'PATH' ? '; extend it in a command instead: export PATH="…:$PATH"' : '';
          warnings.push(
            `${source}: "${pathOf([...segments, 'env', name])}" was dropped: Lambkin sets it${hint}`,
          );
        } else {
          env[name] = value;
        }
      }
      result.env = env;
    }
    if (entry.build !== undefined) result.build = entry.build;
    if (entry.inheritSecrets !== undefined) result.secrets = entry.inheritSecrets;
    if (entry.git?.depth !== undefined) result.git = { depth: entry.git.depth };
    if (policyEntry && entry.allowConfigOverrides !== undefined) {
      pullRequestOverrides = entry.allowConfigOverrides;
    }
    for (const key of Object.keys(UNUSED_KEYS)) {
      if (policyEntry && key === 'allowConfigOverrides') continue;
      if (key in entry) {
        warnings.push(`${source}: "${pathOf([...segments, key])}" is not used: ${UNUSED_KEYS[key]}`);
      }
    }
    return result;
  };

  const config: RepoConfigInput = translateEntry(lambci, []);
  const exactBranchKeys = new Set<string>();
  if (lambci.branches) {
    config.branches = {};
    for (const [pattern, entry] of Object.entries(lambci.branches)) {
      config.branches[pattern] = translateEntry(entry, ['branches', pattern]);
      if (!/^!?\/.+\/$/.test(pattern)) exactBranchKeys.add(pattern);
    }
  }
  if (typeof lambci.pullRequests === 'boolean') {
    config.pullRequests = { build: lambci.pullRequests };
  } else if (lambci.pullRequests) {
    const key =
      `from${pullRequest.fork ? 'Fork' : 'Self'}${pullRequest.privateRepo ? 'Private' : 'Public'}Repo` as const;
    const entry = lambci.pullRequests[key];
    if (entry !== undefined) config.pullRequests = translateEntry(entry, ['pullRequests', key], true);
  }
  return {
    config,
    exactBranchKeys,
    warnings,
    ...(pullRequestOverrides !== undefined ? { pullRequestOverrides } : {}),
  };
}
