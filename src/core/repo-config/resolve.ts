/**
 * Merges the config layers into what one build runs. Lowest precedence first: built-in defaults,
 * the settings store (global, then repository), package.json "lambci", .lambci.json, package.json
 * "lambkin", .lambkin.json; then the matching `branches` entry, or the `pullRequests` entry.
 * Objects (`env`, `git`, `cache`) merge key by key; every other value, and `matrix`, replaces the
 * one below.
 */
import picomatch from 'picomatch';
import semver from 'semver';
import { RepoConfigError } from './config-errors.js';
import type { RepoConfigFile, RepoConfigFiles } from './files.js';
import { LAMBKIN_FILE } from './files.js';
import { translateLambci } from './lambci.js';
import { DEFAULT_TIMEOUT_SECONDS } from './schema.js';
import type { BuildOverrides, Commands, EnvValue, MatrixInput, RepoConfigInput, RunsOn } from './schema.js';
import { branchRegexSource, renderPath, validateSettingsConfig } from './validate.js';
import { isPlainObject } from '../values.js';

/** What resolving needs to know about the build; a BuildRequest fits. */
export interface BuildContext {
  event: 'push' | 'pull_request';
  /** Branch pushed, or the pull request's head branch. */
  branch?: string;
  pr?: number;
  tag?: string;
  /** The repository's default branch: where deploys go unless `deployBranches` says otherwise. */
  defaultBranch?: string;
  /** Pull requests from forks and private repositories pick LambCI's matching `pullRequests.from…` entry. */
  fork?: boolean;
  privateRepo?: boolean;
}

export interface ResolveInput {
  /** `EffectiveSettings.config`: the settings store's config, merged global → repository. */
  settingsConfig: Record<string, unknown>;
  /** What readRepoConfig found in the checkout. */
  repo: RepoConfigFiles;
  /**
   * Pull requests: the base branch's config files (read through the contents API), the trusted
   * layer below the checkout's. The checkout's files are then the pull request's own.
   */
  base?: { ref: string; files: readonly RepoConfigFile[] };
  /**
   * Pull requests: which keys the pull request's own files may change (its source's
   * `allowConfigOverrides`); `"cmd"` stands for `install` and `test`. Unset: every key.
   */
  pullRequestOverrides?: boolean | readonly string[];
  build: BuildContext;
  /** Whether an npm lockfile exists; defaults to what readRepoConfig saw. */
  hasLockfile?: boolean;
}

export interface ResolvedBuildConfig {
  /** Commands, each run with `bash -c`, in order. */
  install: string[];
  test: string[];
  deploy: string[];
  /** The config's variables (values as strings); the build variables and secrets come on top. */
  env: Record<string, string>;
  /** The whole build's time limit. */
  timeoutSeconds: number;
  /**
   * Branch globs whose pushes deploy, as these layers say. Only the controller's reading of the
   * default branch's config decides deploys (src/core/deploy-policy.ts); a checkout's own are not used.
   */
  deployBranches: string[];
  /** Tag globs whose pushes deploy, likewise only as the default branch's config says. */
  deployTags: string[];
  /** `depth`: a shallow git clone instead of a tarball. */
  git: { depth?: number };
  /** A semver range the runner's Node.js must satisfy (see checkNodeVersion). */
  node?: string;
  /** Tag pushes build. */
  tags: boolean;
  /** False: skip this build (`skipReason` says why). */
  build: boolean;
  skipReason?: string;
  /** The settings store's secretEnv may be given to this build (untrusted builds never get it). */
  secrets: boolean;
  /** The dependency cache: whether it is used, and folders cached besides node_modules. */
  cache: { enabled: boolean; paths: string[] };
  /** The build's jobs, as `matrix` says (src/core/jobs.ts plans them); absent: one job. */
  matrix?: MatrixInput;
  /** Where the build (each of its jobs) runs; the controller's placement decides with the operator's settings. */
  runsOn: RunsOn;
  /** Shards per matrix cell; absent: 1. */
  parallel?: number;
  /** The first failed job cancels the others; absent: false. */
  failFast?: boolean;
  /** Which files, settings and entries contributed, lowest first, for the build log. */
  source: string[];
  /** Things that were read but not used, for the build log. */
  warnings: string[];
}

interface Layer {
  label: string;
  config: RepoConfigInput;
  /** `branches` keys matched only as exact names (LambCI's plain keys). */
  exactBranchKeys?: Set<string>;
}

interface BranchEntry {
  pattern: string;
  overrides: BuildOverrides;
  labels: string[];
  exactOnly: boolean;
}

interface Merged {
  top: RepoConfigInput;
  /** Who last set each top-level key, for messages. */
  setBy: Map<string, string>;
  /** Higher layers' patterns first, then each layer's in file order. */
  branches: BranchEntry[];
  pullRequests?: { overrides: BuildOverrides; labels: string[] };
}

/**
 * Object values that replace the one below whole: a matrix is one design (its lists, include and
 * exclude belong together), so a higher layer's matrix is never mixed with a lower one's; a
 * `runsOn` is one choice of machine, never half one layer's and half another's.
 */
const REPLACED_WHOLE = new Set(['matrix', 'runsOn']);

function mergeOverrides<T extends BuildOverrides>(base: T, over: T): T {
  const result: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  for (const [key, value] of Object.entries(over)) {
    if (value === undefined) continue;
    const previous = result[key];
    result[key] =
      isPlainObject(previous) && isPlainObject(value) && !REPLACED_WHOLE.has(key)
        ? { ...previous, ...value }
        : value;
  }
  return result as T; // keys and value types all come from T
}

function mergeLayers(layers: readonly Layer[]): Merged {
  const merged: Merged = { top: {}, setBy: new Map(), branches: [] };
  for (const { label, config, exactBranchKeys } of layers) {
    const { branches, pullRequests, $schema: _schema, ...rest } = config;
    merged.top = mergeOverrides(merged.top, rest);
    for (const key of Object.keys(rest)) merged.setBy.set(key, label);
    if (pullRequests) {
      const below = merged.pullRequests;
      merged.pullRequests = {
        overrides: mergeOverrides(below?.overrides ?? {}, pullRequests),
        labels: [...(below?.labels ?? []), label],
      };
    }
    if (branches) {
      const fromThisLayer = Object.entries(branches).map(([pattern, overrides]): BranchEntry => {
        const below = merged.branches.find((entry) => entry.pattern === pattern);
        return {
          pattern,
          overrides: mergeOverrides(below?.overrides ?? {}, overrides),
          labels: [...(below?.labels ?? []), label],
          exactOnly: exactBranchKeys?.has(pattern) ?? false,
        };
      });
      const patterns = new Set(Object.keys(branches));
      merged.branches = [
        ...fromThisLayer,
        ...merged.branches.filter((entry) => !patterns.has(entry.pattern)),
      ];
    }
  }
  return merged;
}

/**
 * Whether `name` matches a `branches` key: a glob, or `/regex/`; a leading `!` negates either.
 * Regular expressions come from the repository's own config and only see branch names, so a slow
 * one can only slow that repository's builds.
 */
export function branchPatternMatches(pattern: string, name: string): boolean {
  const negated = pattern.startsWith('!');
  const regex = branchRegexSource(pattern);
  const matches =
    regex !== undefined
      ? new RegExp(regex).test(name)
      : picomatch.isMatch(name, negated ? pattern.slice(1) : pattern, { dot: true });
  return negated ? !matches : matches;
}

/** Exact name first, then the first matching pattern. */
function findBranchEntry(branch: string, entries: readonly BranchEntry[]): BranchEntry | undefined {
  return (
    entries.find((entry) => entry.pattern === branch) ??
    entries.find((entry) => !entry.exactOnly && branchPatternMatches(entry.pattern, branch))
  );
}

function toList(value: Commands | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  return typeof value === 'string' ? [value] : [...value];
}

function envStrings(env: Record<string, EnvValue> | undefined): Record<string, string> {
  return Object.fromEntries(Object.entries(env ?? {}).map(([name, value]) => [name, String(value)]));
}

/** `"cmd"` (LambCI's one command) is `install` and `test`. */
function expandKeys(keys: readonly string[]): string[] {
  return keys.flatMap((key) => (key === 'cmd' ? ['install', 'test'] : [key]));
}

/** The keys both allow (`true`: every key; `false`: none; unset: every key). */
export function narrowOverrides(
  current: boolean | readonly string[] | undefined,
  narrower: boolean | readonly string[],
): boolean | string[] {
  if (current === undefined || current === true)
    return narrower === true ? true : narrower === false ? false : [...narrower];
  if (current === false || narrower === false) return false;
  if (narrower === true) return [...current];
  const allowed = new Set(expandKeys(narrower));
  return expandKeys(current).filter((key) => allowed.has(key));
}

/** Keeps what the operator lets repository files set (`allowConfigOverrides` in the settings store). */
function restrictLayer(
  layer: Layer,
  allowed: boolean | readonly string[] | undefined,
  warnings: string[],
  rule = `the settings store's "allowConfigOverrides"`,
): Layer | undefined {
  if (allowed === undefined || allowed === true) return layer;
  if (allowed === false) {
    warnings.push(`${layer.label} was not used: ${rule} is false`);
    return undefined;
  }
  // LambCI's "cmd" was its one command: Lambkin's install and test.
  const permitted = new Set(expandKeys(allowed));
  const dropped = new Set<string>();
  const pick = (overrides: BuildOverrides): BuildOverrides =>
    Object.fromEntries(
      Object.entries(overrides).filter(([key]) => permitted.has(key) || (dropped.add(key), false)),
    );
  const kept: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(layer.config)) {
    if (key === '$schema') continue;
    if (!permitted.has(key)) {
      dropped.add(key);
    } else if (key === 'branches' && isPlainObject(value)) {
      kept[key] = Object.fromEntries(
        Object.entries(value).map(([pattern, entry]) => [pattern, pick(entry as BuildOverrides)]),
      );
    } else if (key === 'pullRequests' && isPlainObject(value)) {
      kept[key] = pick(value);
    } else {
      kept[key] = value;
    }
  }
  if (dropped.size > 0) {
    warnings.push(
      `${layer.label}: ${[...dropped].map((key) => `"${key}"`).join(', ')} not used: ${rule} permits only ${[...permitted].join(', ') || 'nothing'}`,
    );
  }
  return { ...layer, config: kept as RepoConfigInput }; // a subset of a valid RepoConfigInput
}

/** The commands, variables and rules of one build, from every config layer. */
export function resolveBuildConfig(input: ResolveInput): ResolvedBuildConfig {
  const { allowConfigOverrides, ...settingsConfig } = validateSettingsConfig(input.settingsConfig);
  const { build: context, repo } = input;
  const warnings = [...repo.notes];

  const layers: Layer[] = [{ label: 'settings', config: settingsConfig }];
  let pullRequestOverrides = input.pullRequestOverrides;
  const toLayer = (file: RepoConfigFile, label: string, trusted: boolean): Layer => {
    if (file.format !== 'lambci') return { label, config: file.config };
    const translated = translateLambci(file.config, file.file, file.prefix, context);
    warnings.push(...translated.warnings);
    if (translated.pullRequestOverrides !== undefined) {
      // The base branch's LambCI policy may narrow what the pull request changes, never widen it.
      if (trusted)
        pullRequestOverrides = narrowOverrides(pullRequestOverrides, translated.pullRequestOverrides);
      else warnings.push(`${label}: a pull request's own "allowConfigOverrides" is not used`);
    }
    return { label, config: translated.config, exactBranchKeys: translated.exactBranchKeys };
  };
  for (const file of input.base?.files ?? []) {
    const restricted = restrictLayer(
      toLayer(file, `${file.source} of ${input.base?.ref}`, true),
      allowConfigOverrides,
      warnings,
    );
    if (restricted) layers.push(restricted);
  }
  const pullRequest = input.base !== undefined || input.pullRequestOverrides !== undefined;
  for (const file of repo.files) {
    const label = pullRequest ? `${file.source} of the pull request` : file.source;
    let layer = restrictLayer(toLayer(file, label, !pullRequest), allowConfigOverrides, warnings);
    if (layer && pullRequest) {
      layer = restrictLayer(
        layer,
        pullRequestOverrides,
        warnings,
        `the pull request policy's "allowConfigOverrides"`,
      );
    }
    if (layer) layers.push(layer);
  }
  const used = layers.filter((layer) => Object.keys(layer.config).some((key) => key !== '$schema'));
  const merged = mergeLayers(used);
  const source = ['defaults', ...used.map((layer) => layer.label)];

  let entry: { overrides: BuildOverrides; label: string } | undefined;
  if (context.event === 'pull_request') {
    if (merged.pullRequests) {
      entry = {
        overrides: merged.pullRequests.overrides,
        label: `pullRequests (${merged.pullRequests.labels.join(', ')})`,
      };
    }
  } else if (context.tag === undefined && context.branch !== undefined) {
    const found = findBranchEntry(context.branch, merged.branches);
    if (found) {
      entry = {
        overrides: found.overrides,
        label: `${renderPath([], ['branches', found.pattern], undefined)} (${found.labels.join(', ')})`,
      };
    }
  }
  if (entry) source.push(entry.label);
  const effective = entry ? mergeOverrides<BuildOverrides>(merged.top, entry.overrides) : merged.top;

  const hasLockfile = input.hasLockfile ?? repo.hasLockfile;
  const install = toList(effective.install) ?? [hasLockfile ? 'npm ci' : 'npm install'];
  const test = toList(effective.test) ?? ['npm test'];
  const deploy = toList(effective.deploy) ?? [];
  if (!repo.hasPackageJson && (effective.install === undefined || effective.test === undefined)) {
    warnings.push(
      `there is no package.json, yet the default npm commands will run: set "install" and "test" in ${LAMBKIN_FILE}`,
    );
  }

  const tags = merged.top.tags ?? false;
  const deployBranches =
    toList(merged.top.deployBranches) ?? (context.defaultBranch ? [context.defaultBranch] : []);
  const deployTags = toList(merged.top.deployTags) ?? [];

  let skipReason: string | undefined;
  if (context.event === 'push' && context.tag !== undefined && !tags) {
    skipReason = `tag pushes are not built: set "tags": true in ${LAMBKIN_FILE}`;
  } else if (effective.build === false) {
    const where =
      entry && entry.overrides.build === false ? entry.label : (merged.setBy.get('build') ?? 'config');
    skipReason = `"build" is false in ${where}`;
  }
  const build = skipReason === undefined;

  return {
    install,
    test,
    deploy,
    env: envStrings(effective.env),
    timeoutSeconds: effective.timeout ?? DEFAULT_TIMEOUT_SECONDS,
    deployBranches,
    deployTags,
    git: effective.git?.depth !== undefined ? { depth: effective.git.depth } : {},
    ...(effective.node !== undefined ? { node: effective.node } : {}),
    tags,
    build,
    ...(skipReason !== undefined ? { skipReason } : {}),
    secrets: effective.secrets ?? true,
    cache: {
      enabled: effective.cache !== false,
      paths: typeof effective.cache === 'object' ? [...(effective.cache.paths ?? [])] : [],
    },
    runsOn: effective.runsOn ?? 'lambda',
    // Top level only: no branches or pullRequests entry can set them.
    ...(merged.top.matrix !== undefined ? { matrix: merged.top.matrix } : {}),
    ...(merged.top.parallel !== undefined ? { parallel: merged.top.parallel } : {}),
    ...(merged.top.failFast !== undefined ? { failFast: merged.top.failFast } : {}),
    source,
    warnings,
  };
}

/**
 * Throws a RepoConfigError when the runner's Node.js (`actual`) does not satisfy the config's
 * `node` range; does nothing without a range.
 */
export function checkNodeVersion(range: string | undefined, actual: string = process.versions.node): void {
  if (range === undefined) return;
  if (semver.validRange(range) === null) {
    throw new RepoConfigError(
      [{ path: 'node', message: `must be a semver range such as ">=20" (got ${JSON.stringify(range)})` }],
      { hint: 'Fix "node" in the repository config and push again.' },
    );
  }
  if (semver.satisfies(actual, range, { includePrerelease: true })) return;
  throw new RepoConfigError(
    [{ path: 'node', message: `asks for Node.js ${range}, but the runner has ${actual}` }],
    {
      hint: `Change "node" to a range that includes ${actual}, or run the build on a runner with a matching Node.js.`,
    },
  );
}
