/**
 * The repository config's keys: TypeScript types and the JSON schema (published as
 * schema/lambkin.schema.json; a test keeps the two identical). Adding a key means adding it to the
 * interface, to `ENTRY_PROPERTIES` or `TOP_ONLY_PROPERTIES`, and to docs/configuration.md, then
 * running `npm run generate` (the validators are compiled from these schemas ahead of time).
 *
 * `errorMessage` on a schema node is the phrase used when a value fails there ("must be …"); editors
 * that understand the keyword show it too, the others ignore it.
 */

/** Whole-build limit when nothing sets `timeout`. */
export const DEFAULT_TIMEOUT_SECONDS = 600;
/**
 * Highest `timeout` accepted: CodeBuild's own limit (8 hours). On Lambda the runner's limit (840 s:
 * Lambda stops any function at 900 s) cuts a build sooner; builds that need longer set `runsOn`.
 */
export const MAX_TIMEOUT_SECONDS = 8 * 60 * 60;
/** The longest a build can run on Lambda, whatever its `timeout` says. */
export const LAMBDA_MAX_BUILD_SECONDS = 840;
/** CodeBuild's sizes as `runsOn` names them. */
export const CODEBUILD_COMPUTES = ['small', 'medium', 'large'] as const;
export type CodeBuildCompute = (typeof CODEBUILD_COMPUTES)[number];
/** Config files (and package.json) larger than this are refused unread. */
export const MAX_CONFIG_FILE_BYTES = 1024 * 1024;

/** Variables the runner sets for every build; `env` may not override them. */
export const RESERVED_ENV_NAMES: readonly string[] = [
  'CI',
  'HOME',
  'PATH',
  'PWD',
  'SHELL',
  'LAMBKIN',
  'LAMBCI',
];
/** Name prefixes of the build variables (`LAMBKIN_SHA`, `LAMBCI_COMMIT`, …); reserved as well. */
export const RESERVED_ENV_PREFIXES: readonly string[] = ['LAMBKIN_', 'LAMBCI_'];

/** Highest `parallel`: shards per matrix cell. */
export const MAX_PARALLEL = 64;
/** Most names a `matrix` may have (besides `include` and `exclude`). */
export const MAX_MATRIX_NAMES = 16;
/** Most values in one matrix list, and most entries in `include` or `exclude`. */
export const MAX_MATRIX_ITEMS = 256;
/** The matrix name that chooses the Node.js of the job; it is never exported under its own name. */
export const MATRIX_NODE_KEY = 'node';

/** A shell command (run with `bash -c`) or a list of them; `[]` skips the step. */
export type Commands = string | string[];
/** Numbers and booleans are turned into strings (`3` → `"3"`, `true` → `"true"`). */
export type EnvValue = string | number | boolean;

/** One value of a matrix list; values compare as their text (`20` and `"20"` are the same). */
export type MatrixValue = string | number | boolean;
/** One combination of matrix values, or a partial one in `include` / `exclude`. */
export type MatrixCell = Record<string, MatrixValue>;
/**
 * `matrix`: names mapped to lists of values, whose every combination is a job (first name varies
 * slowest), less the `exclude` entries, then `include` applied as GitHub Actions does.
 */
export type MatrixInput = {
  include?: MatrixCell[];
  exclude?: MatrixCell[];
} & Record<string, MatrixValue[] | MatrixCell[] | undefined>;

/** Keys allowed at the top level and in a `branches` or `pullRequests` entry. */
export interface BuildOverrides {
  install?: Commands;
  test?: Commands;
  deploy?: Commands;
  env?: Record<string, EnvValue>;
  /** Whole build, in seconds. */
  timeout?: number;
  git?: { depth?: number };
  /** A semver range the runner's Node.js must satisfy. */
  node?: string;
  /** `false` skips the build (typically in a `branches` entry). */
  build?: boolean;
  /** `false` keeps the settings store's secretEnv away from this build's commands. */
  secrets?: boolean;
  /** The dependency cache: `false` turns it off; `paths` caches folders of the checkout besides node_modules. */
  cache?: boolean | { paths?: string[] };
  /** Where the build runs: Lambda (default), CodeBuild, or Lambda then once CodeBuild (`auto`). */
  runsOn?: RunsOn;
}

/** What a build asks of CodeBuild; the operator's settings say which of these it may have. */
export interface CodeBuildRequest {
  /** Default `small`. */
  compute?: CodeBuildCompute;
  /** `standard` (the project's image, the default) or an image URI the operator allows. */
  image?: string;
  /** Docker in the build (the privileged project). Default false. */
  docker?: boolean;
}

/**
 * `lambda`: the runner function (default). `{"codebuild": {...}}`: an AWS CodeBuild build.
 * `auto`: Lambda, and a build that timed out or ran out of disk there is rebuilt once on CodeBuild.
 */
export type RunsOn = 'lambda' | 'auto' | { codebuild: CodeBuildRequest };

/** What to write, said by every part of the `runsOn` schema (so its messages are one). */
const RUNS_ON_MESSAGE =
  'must be "lambda", "auto" or {"codebuild": {"compute": "small" | "medium" | "large", "image": "standard" or an image URI the operator allows, "docker": true | false}}';

/** What a `.lambkin.json` file (or the `"lambkin"` key of package.json) may contain. */
export interface RepoConfigInput extends BuildOverrides {
  /** Lets editors find the schema; ignored by Lambkin. */
  $schema?: string;
  /** Per-branch overrides; keys are exact names, globs or `/regex/` (a leading `!` negates). */
  branches?: Record<string, BuildOverrides>;
  /** Overrides for pull request builds. */
  pullRequests?: BuildOverrides;
  /**
   * Branches whose pushes run `deploy` (globs). Default: the repository's default branch. Only the
   * default branch's value counts (src/core/deploy-policy.ts); a pushed commit's is ignored.
   */
  deployBranches?: string | string[];
  /** Tags whose pushes run `deploy` (globs). Default: none. Only the default branch's value counts. */
  deployTags?: string | string[];
  /** Build tag pushes. Default off. */
  tags?: boolean;
  /** Jobs of the build: one per combination (src/core/jobs.ts). Top level only. */
  matrix?: MatrixInput;
  /** Shards per matrix cell, 1 to MAX_PARALLEL. Top level only. */
  parallel?: number;
  /** The first failed job cancels the others. Default false. Top level only. */
  failFast?: boolean;
}

/** The settings store's `config`: the repository keys plus the operator-only `allowConfigOverrides`. */
export interface SettingsConfigInput extends RepoConfigInput {
  /** `false`: repository files are ignored; a list: only these keys may come from them. */
  allowConfigOverrides?: boolean | string[];
}

const commandsRef = (description: string) => ({ $ref: '#/$defs/commands', description });

/** Keys shared by the top level and the `branches` / `pullRequests` entries. */
const ENTRY_PROPERTIES = {
  install: commandsRef(
    'Commands that install dependencies. Default: `npm ci` (`npm install` without a lockfile).',
  ),
  test: commandsRef('Commands that test the build. Default: `npm test`.'),
  deploy: commandsRef(
    'Commands run after a successful test, only on pushes the controller lets deploy (deployBranches / deployTags of the default branch). Default: none.',
  ),
  env: { $ref: '#/$defs/env' },
  timeout: {
    description: `Time limit of the whole build in seconds (1 to ${MAX_TIMEOUT_SECONDS}). Default: ${DEFAULT_TIMEOUT_SECONDS}.`,
    type: 'integer',
    minimum: 1,
    maximum: MAX_TIMEOUT_SECONDS,
    errorMessage: `must be a whole number of seconds from 1 to ${MAX_TIMEOUT_SECONDS}`,
  },
  git: {
    description: 'How the source is fetched. Default: a tarball of the commit, without history.',
    type: 'object',
    properties: {
      depth: {
        description: 'Clone with git, keeping this many commits of history, instead of fetching a tarball.',
        type: 'integer',
        minimum: 1,
        errorMessage: 'must be a whole number of commits, 1 or more',
      },
    },
    additionalProperties: false,
    errorMessage: 'must be an object such as {"depth": 50}',
  },
  node: {
    description: 'Semver range the Node.js of the runner must satisfy, such as ">=20". Default: any.',
    type: 'string',
    minLength: 1,
    maxLength: 256,
    errorMessage: 'must be a semver range such as ">=20"',
  },
  build: {
    description: 'Set false to skip the build (usually in a branches or pullRequests entry). Default: true.',
    type: 'boolean',
    errorMessage: 'must be true or false',
  },
  secrets: {
    description:
      "Set false to keep the settings store's secret variables away from this build. Untrusted builds never get them. Default: true.",
    type: 'boolean',
    errorMessage: 'must be true or false',
  },
  cache: {
    description:
      'The dependency cache (node_modules, kept on S3 by lockfile). false turns it off; {"paths": [...]} also caches these folders of the checkout. Default: on.',
    type: ['boolean', 'object'],
    properties: {
      paths: {
        description: 'Folders inside the checkout to cache with node_modules, such as ".cache/tool".',
        type: 'array',
        maxItems: 32,
        items: {
          type: 'string',
          minLength: 1,
          maxLength: 256,
          // Relative, and never out of the checkout: no leading `/`, no `..` segment, no NUL.
          pattern: '^(?!/)(?!(.*/)?\\.\\.(/|$))[^\\u0000]+$',
          errorMessage: 'must be a relative path inside the checkout, without ".." segments',
        },
        errorMessage: 'must be a list of relative paths',
      },
    },
    additionalProperties: false,
    errorMessage: 'must be true, false or an object such as {"paths": [".cache/tool"]}',
  },
  runsOn: {
    description:
      'Where the build runs: "lambda" (default), {"codebuild": {"compute", "image", "docker"}} for builds that outgrow Lambda (longer than 14 minutes, more memory or disk, Docker), or "auto": Lambda, and a build that timed out or ran out of disk space there is rebuilt once on CodeBuild. CodeBuild needs the operator\'s consent (settings "codebuild"); see docs/configuration.md.',
    anyOf: [
      { type: 'string', enum: ['lambda', 'auto'], errorMessage: RUNS_ON_MESSAGE },
      {
        type: 'object',
        properties: {
          codebuild: {
            type: 'object',
            properties: {
              compute: {
                description:
                  'small (3 GB, 2 vCPUs), medium (7 GB, 4 vCPUs) or large (15 GB, 8 vCPUs). Default: small.',
                enum: [...CODEBUILD_COMPUTES],
                errorMessage: 'must be "small", "medium" or "large"',
              },
              image: {
                description:
                  '"standard" (the default) or an image URI the operator allows in the settings\' codebuild.images.',
                type: 'string',
                minLength: 1,
                maxLength: 512,
                pattern: '^[^\\s\\u0000]+$',
                errorMessage:
                  'must be "standard" or an image URI such as "public.ecr.aws/docker/library/node:22"',
              },
              docker: {
                description:
                  'Docker in the build (a privileged project); the operator must allow it. Default: false.',
                type: 'boolean',
                errorMessage: 'must be true or false',
              },
            },
            additionalProperties: false,
            errorMessage: 'must be an object such as {"compute": "medium"}',
          },
        },
        required: ['codebuild'],
        additionalProperties: false,
        errorMessage: RUNS_ON_MESSAGE,
      },
    ],
    errorMessage: RUNS_ON_MESSAGE,
  },
} as const;

const TOP_ONLY_PROPERTIES = {
  $schema: {
    description: 'Where editors find this schema; ignored by Lambkin.',
    type: 'string',
    errorMessage: 'must be a string',
  },
  branches: {
    description:
      'Overrides for pushes to matching branches: an exact name first, else the first matching glob or /regex/ (a leading ! negates).',
    type: 'object',
    propertyNames: {
      type: 'string',
      minLength: 1,
      maxLength: 256,
      errorMessage: 'must be a branch name, glob or /regex/ of at most 256 characters',
    },
    additionalProperties: { $ref: '#/$defs/entry' },
    errorMessage: 'must be an object of branch patterns to overrides',
  },
  pullRequests: {
    $ref: '#/$defs/entry',
    description: 'Overrides for pull request builds.',
  },
  deployBranches: {
    $ref: '#/$defs/patterns',
    description:
      "Branches (names or globs) whose pushes deploy. Default: the repository's default branch. Only the default branch's config counts (read by the controller); a pushed commit's own value is ignored.",
  },
  deployTags: {
    $ref: '#/$defs/patterns',
    description:
      'Tags (names or globs) whose pushes deploy; needs "tags": true. Default: none. Only the default branch\'s config counts (read by the controller); a tagged commit\'s own value is ignored.',
  },
  tags: {
    description: 'Build tag pushes. Default: false.',
    type: 'boolean',
    errorMessage: 'must be true or false',
  },
  matrix: {
    description:
      'Runs the build as one job per combination of values, such as {"node": ["20", "22"], "DB": ["a", "b"]}, with include and exclude as GitHub Actions has them. Each value is in the job\'s environment as LAMBKIN_MATRIX_<NAME> and, except for node, as <NAME> (upper-cased). "node" chooses the Node.js of the job. Top level only.',
    type: 'object',
    maxProperties: MAX_MATRIX_NAMES + 2,
    propertyNames: { $ref: '#/$defs/matrixName' },
    properties: {
      node: {
        description:
          'Node.js versions, one job each: a major such as "22" or an exact version such as "22.11.0".',
        type: 'array',
        minItems: 1,
        maxItems: MAX_MATRIX_ITEMS,
        items: { $ref: '#/$defs/nodeVersion' },
        errorMessage: 'must be a non-empty list of Node.js versions such as ["20", "22"]',
      },
      include: {
        description:
          'Combinations to extend or add: an entry whose matrix values match existing combinations adds its other values to them, else it is a combination of its own.',
        type: 'array',
        maxItems: MAX_MATRIX_ITEMS,
        items: { $ref: '#/$defs/matrixCell' },
        errorMessage: 'must be a list of objects of matrix names to values',
      },
      exclude: {
        description: 'Combinations (or partial ones) removed before include is applied.',
        type: 'array',
        maxItems: MAX_MATRIX_ITEMS,
        items: { $ref: '#/$defs/matrixCell' },
        errorMessage: 'must be a list of objects of matrix names to values',
      },
    },
    additionalProperties: {
      type: 'array',
      minItems: 1,
      maxItems: MAX_MATRIX_ITEMS,
      items: { $ref: '#/$defs/matrixValue' },
      errorMessage: 'must be a non-empty list of values (strings, numbers or true/false)',
    },
    errorMessage: 'must be an object of names to lists of values, such as {"node": ["20", "22"]}',
  },
  parallel: {
    description: `Runs every matrix cell (or the one job) as this many shards, 1 to ${MAX_PARALLEL}; each sees LAMBKIN_SHARD_INDEX (1..N) and LAMBKIN_SHARD_TOTAL. Default: 1. Top level only.`,
    type: 'integer',
    minimum: 1,
    maximum: MAX_PARALLEL,
    errorMessage: `must be a whole number of shards from 1 to ${MAX_PARALLEL}`,
  },
  failFast: {
    description: 'The first failed job cancels the other jobs of the build. Default: false. Top level only.',
    type: 'boolean',
    errorMessage: 'must be true or false',
  },
} as const;

/** `ci` → `[Cc][Ii]`: a regular expression source matching `text` in any case. */
function anyCase(text: string): string {
  return text.replace(/[A-Za-z]/g, (letter) => `[${letter.toUpperCase()}${letter.toLowerCase()}]`);
}

const NOT_CONTAINING_NUL = { not: { type: 'string', pattern: '\\u0000' } } as const;

/** The published JSON schema of `.lambkin.json` (and of the `"lambkin"` key of package.json). */
export const REPO_CONFIG_SCHEMA = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  title: 'Lambkin repository config',
  description:
    'Build settings of a repository: .lambkin.json, or the "lambkin" key of package.json. See docs/configuration.md.',
  type: 'object',
  properties: { ...ENTRY_PROPERTIES, ...TOP_ONLY_PROPERTIES },
  additionalProperties: false,
  errorMessage: 'must be a JSON object of settings',
  $defs: {
    commands: {
      type: ['string', 'array'],
      pattern: '\\S',
      ...NOT_CONTAINING_NUL,
      maxItems: 100,
      items: {
        type: 'string',
        pattern: '\\S',
        ...NOT_CONTAINING_NUL,
        errorMessage: 'must be a command (a non-empty string)',
      },
      errorMessage: 'must be a command or a list of commands',
    },
    env: {
      description:
        'Variables for every command. Numbers and true/false become strings. CI, HOME, PATH, PWD, SHELL, LAMBKIN*, LAMBCI* are reserved.',
      type: 'object',
      propertyNames: {
        type: 'string',
        allOf: [
          {
            pattern: '^[A-Za-z_][A-Za-z0-9_]*$',
            maxLength: 256,
            errorMessage: 'must be a variable name: letters, digits and _, not starting with a digit',
          },
          {
            not: {
              anyOf: [
                { enum: [...RESERVED_ENV_NAMES] },
                { pattern: `^(${RESERVED_ENV_PREFIXES.join('|')})` },
              ],
            },
            errorMessage: 'is reserved: Lambkin sets it for every build',
          },
        ],
      },
      additionalProperties: {
        type: ['string', 'number', 'boolean'],
        ...NOT_CONTAINING_NUL,
        errorMessage: 'must be a string, a number or true/false',
      },
      errorMessage: 'must be an object of variable names to values',
    },
    matrixName: {
      type: 'string',
      allOf: [
        {
          pattern: '^[A-Za-z_][A-Za-z0-9_]*$',
          maxLength: 64,
          errorMessage:
            'must be a matrix name: letters, digits and _, not starting with a digit, at most 64 characters',
        },
        {
          not: {
            anyOf: [
              { pattern: `^(${RESERVED_ENV_NAMES.map(anyCase).join('|')})$` },
              { pattern: `^(${RESERVED_ENV_PREFIXES.map(anyCase).join('|')})` },
            ],
          },
          errorMessage:
            'is reserved: upper-cased it is a variable Lambkin sets for every build (CI, HOME, PATH, PWD, SHELL, LAMBKIN*, LAMBCI*)',
        },
      ],
    },
    matrixValue: {
      type: ['string', 'number', 'boolean'],
      minLength: 1,
      maxLength: 100,
      ...NOT_CONTAINING_NUL,
      errorMessage: 'must be a string of 1 to 100 characters, a number or true/false',
    },
    nodeVersion: {
      type: ['string', 'integer'],
      pattern: '^[1-9][0-9]*(\\.(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*))?$',
      minimum: 1,
      errorMessage: 'must be a Node.js major such as "22" or an exact version such as "22.11.0"',
    },
    matrixCell: {
      type: 'object',
      minProperties: 1,
      maxProperties: MAX_MATRIX_NAMES * 2,
      propertyNames: { $ref: '#/$defs/matrixName' },
      properties: { node: { $ref: '#/$defs/nodeVersion' } },
      additionalProperties: { $ref: '#/$defs/matrixValue' },
      errorMessage: 'must be an object of matrix names to values, such as {"node": "22", "DB": "a"}',
    },
    patterns: {
      type: ['string', 'array'],
      minLength: 1,
      items: { type: 'string', minLength: 1, errorMessage: 'must be a name or glob (a non-empty string)' },
      errorMessage: 'must be a name or glob, or a list of them',
    },
    entry: {
      type: 'object',
      properties: ENTRY_PROPERTIES,
      additionalProperties: false,
      errorMessage: `must be an object of overrides (${Object.keys(ENTRY_PROPERTIES).join(', ')})`,
    },
  },
} as const;

/** Keys a `branches` or `pullRequests` entry may set. */
export const ENTRY_KEYS: readonly string[] = Object.keys(ENTRY_PROPERTIES);
/** Keys of a repository config file. */
export const REPO_CONFIG_KEYS: readonly string[] = Object.keys(REPO_CONFIG_SCHEMA.properties);

/** The settings store's variant: the same schema plus `allowConfigOverrides`. */
export const SETTINGS_CONFIG_SCHEMA = {
  ...REPO_CONFIG_SCHEMA,
  title: 'Lambkin settings store config',
  properties: {
    ...REPO_CONFIG_SCHEMA.properties,
    allowConfigOverrides: {
      description:
        'false: repository config files are ignored; a list of keys: only those keys may come from them. Default: true.',
      type: ['boolean', 'array'],
      items: {
        enum: REPO_CONFIG_KEYS.filter((key) => key !== '$schema'),
        errorMessage: 'must be a config key such as "test"',
      },
      errorMessage: 'must be true, false or a list of config keys',
    },
  },
} as const;

export function isReservedEnvName(name: string): boolean {
  return RESERVED_ENV_NAMES.includes(name) || RESERVED_ENV_PREFIXES.some((prefix) => name.startsWith(prefix));
}
