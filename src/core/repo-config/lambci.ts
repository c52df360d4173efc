/**
 * LambCI compatibility: `.lambci.json` and package.json's `"lambci"` key are read and translated
 * into Lambkin's keys, so a LambCI repository builds without rewriting its config. Lambkin's own
 * files rank above them. `.lambci.js` is never run. docs/migrating-from-lambci.md has the mapping.
 */
import { renderPath, schemaProblems, throwIfProblems } from './validate.js';
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

/** LambCI keys Lambkin accepts but does not use, and why (shown as a warning in the build log). */
const UNUSED_KEYS: Record<string, string> = {
  secretEnv: 'secret variables belong in the settings store, never in the repository',
  s3Bucket: "build logs always go to the stack's bucket",
  s3PublicSecretNames: 'log pages are served by the stack, not by public S3 names',
  notifications: 'notifications are configured in the settings store',
  clearTmp: 'the runner cleans up between builds itself',
  docker: 'Lambkin has no ECS/Docker builds',
  allowConfigOverrides:
    'it has no effect in a repository file (nor had it in LambCI); operators set it in the settings store',
};

const entryProperties = {
  cmd: {
    type: 'string',
    pattern: '\\S',
    not: { type: 'string', pattern: '\\u0000' },
    errorMessage: 'must be a command (a non-empty string)',
  },
  env: {
    type: 'object',
    propertyNames: {
      type: 'string',
      pattern: '^[A-Za-z_][A-Za-z0-9_]*$',
      errorMessage: 'must be a variable name: letters, digits and _, not starting with a digit',
    },
    additionalProperties: {
      type: ['string', 'number', 'boolean'],
      not: { type: 'string', pattern: '\\u0000' },
      errorMessage: 'must be a string, a number or true/false',
    },
    errorMessage: 'must be an object of variable names to values',
  },
  build: { type: 'boolean', errorMessage: 'must be true or false' },
  inheritSecrets: { type: 'boolean', errorMessage: 'must be true or false' },
  git: {
    type: 'object',
    properties: {
      depth: { type: 'integer', minimum: 1, errorMessage: 'must be a whole number of commits, 1 or more' },
    },
    errorMessage: 'must be an object such as {"depth": 5}',
  },
  ...Object.fromEntries(Object.keys(UNUSED_KEYS).map((key) => [key, true])),
};

const entryOrBoolean = {
  type: ['boolean', 'object'],
  properties: entryProperties,
  additionalProperties: false,
  errorMessage: 'must be true, false or an object of overrides',
};

/** LambCI's config as far as Lambkin reads it (internal; the published schema is Lambkin's own). */
export const LAMBCI_CONFIG_SCHEMA = {
  type: 'object',
  properties: {
    ...entryProperties,
    branches: {
      type: 'object',
      additionalProperties: entryOrBoolean,
      errorMessage: 'must be an object of branch names or /regex/ to true, false or overrides',
    },
    pullRequests: {
      type: ['boolean', 'object'],
      properties: {
        fromSelfPublicRepo: entryOrBoolean,
        fromSelfPrivateRepo: entryOrBoolean,
        fromForkPublicRepo: entryOrBoolean,
        fromForkPrivateRepo: entryOrBoolean,
      },
      additionalProperties: false,
      errorMessage: 'must be true, false or an object with fromSelfPublicRepo … fromForkPrivateRepo',
    },
  },
  additionalProperties: false,
  errorMessage: 'must be a JSON object of LambCI settings',
};

export function validateLambciConfig(
  data: unknown,
  source: string,
  prefix: readonly string[] = [],
): LambciConfig {
  throwIfProblems(schemaProblems(LAMBCI_CONFIG_SCHEMA, data, source, prefix));
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
