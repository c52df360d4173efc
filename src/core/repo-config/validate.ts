/** JSON parsing and schema validation, with problems phrased for people (file, key path, expectation). */
import type { AnySchemaObject, ErrorObject, ValidateFunction } from 'ajv/dist/2020.js';
import semver from 'semver';
import { RepoConfigError } from './config-errors.js';
import type { RepoConfigProblem } from './config-errors.js';
import { matrixProblems } from './matrix.js';
import type { BuildOverrides, RepoConfigInput, SettingsConfigInput } from './schema.js';
// Compiled ahead of time from the schemas (scripts/generate-validators.ts): compiling them in each
// process cost ~150 ms of CPU per runner, `lambkin run` and cold start.
import { validateRepoSchema, validateSettingsSchema } from './validators.generated.js';
import { isPlainObject } from '../values.js';
import { messageOf } from '../errors.js';

/** Beyond this many, problems are counted but not listed (a broken 1 MiB file can have thousands). */
const MAX_PROBLEMS = 20;

/** `"ten"`, `3`, `null`, `a list`, `an object`; long strings are shortened. */
export function describeValue(value: unknown): string {
  if (Array.isArray(value)) return 'a list';
  if (isPlainObject(value)) return 'an object';
  if (typeof value === 'string') {
    const quoted = JSON.stringify(value);
    return quoted.length > 40 ? `${quoted.slice(0, 36)}…"` : quoted;
  }
  return String(value);
}

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/** `branches['release/*'].test[1]`: dots for plain keys, brackets for list indexes and other keys. */
export function renderPath(prefix: readonly string[], segments: readonly string[], data: unknown): string {
  let path = prefix.join('.');
  let node = data;
  for (const segment of segments) {
    if (Array.isArray(node)) {
      path += `[${segment}]`;
      node = node[Number(segment)];
      continue;
    }
    // Single quotes, as the whole path is shown inside double quotes.
    const quoted = `'${segment.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
    path += IDENTIFIER.test(segment) ? `${path ? '.' : ''}${segment}` : `[${quoted}]`;
    node = isPlainObject(node) ? node[segment] : undefined;
  }
  return path;
}

function pointerSegments(pointer: string): string[] {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((segment) => segment.replace(/~1/g, '/').replace(/~0/g, '~'));
}

/** Keys people bring from LambCI or mistype in a way edit distance does not catch. */
const KEY_HINTS: Record<string, string> = {
  cmd: 'LambCI\'s "cmd" is "test" here (and "install" for the install part)',
  inheritSecrets: 'LambCI\'s "inheritSecrets" is "secrets" here',
  allowConfigOverrides: 'it can only be set in the settings store',
  secretEnv: 'secret variables belong in the settings store, never in the repository',
  timeoutSeconds: 'did you mean "timeout"?',
  matrix: '"matrix" can only be set at the top level of the config',
  parallel: '"parallel" can only be set at the top level of the config',
  failFast: '"failFast" can only be set at the top level of the config',
};

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, index) => index);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

export function unknownKeyMessage(key: string, known: readonly string[]): string {
  const hint = KEY_HINTS[key];
  if (hint && (key !== 'allowConfigOverrides' || !known.includes(key))) {
    return `is not a known key: ${hint}`;
  }
  const close = known.find(
    (candidate) => candidate.toLowerCase() === key.toLowerCase() || editDistance(candidate, key) <= 2,
  );
  if (close) return `is not a known key (did you mean "${close}"?)`;
  return `is not a known key; known keys: ${known.join(', ')}`;
}

function problemFromError(
  error: ErrorObject,
  data: unknown,
  source: string,
  prefix: readonly string[],
): RepoConfigProblem | undefined {
  // A failing `propertyNames` is also reported by the subschema that failed, with the name attached.
  if (error.keyword === 'propertyNames') return undefined;
  const segments = pointerSegments(error.instancePath);
  const parentSchema: AnySchemaObject | undefined = error.parentSchema;
  if (error.keyword === 'maxItems') {
    const count = Array.isArray(error.data) ? error.data.length : 0;
    return {
      source,
      path: renderPath(prefix, segments, data),
      message: `must be a list of at most ${String(error.params['limit'])} (got ${count})`,
    };
  }
  if (error.keyword === 'maxProperties') {
    const count = isPlainObject(error.data) ? Object.keys(error.data).length : 0;
    return {
      source,
      path: renderPath(prefix, segments, data),
      message: `must have at most ${String(error.params['limit'])} keys (got ${count})`,
    };
  }
  if (error.keyword === 'additionalProperties') {
    const key = String(error.params['additionalProperty']);
    const known = isPlainObject(parentSchema?.['properties']) ? Object.keys(parentSchema['properties']) : [];
    return {
      source,
      path: renderPath(prefix, [...segments, key], data),
      message: unknownKeyMessage(key, known),
    };
  }
  const expectation =
    typeof parentSchema?.['errorMessage'] === 'string'
      ? parentSchema['errorMessage']
      : (error.message ?? 'is not valid');
  if (error.propertyName !== undefined) {
    return {
      source,
      path: renderPath(prefix, [...segments, error.propertyName], data),
      message: expectation,
    };
  }
  const path = renderPath(prefix, segments, data);
  const got = `(got ${describeValue(error.data)})`;
  return { source, ...(path ? { path } : {}), message: `${expectation} ${got}` };
}

/** Validates `data` with a schema's validator; returns the problems, phrased and without duplicates. */
export function schemaProblems(
  validate: ValidateFunction,
  data: unknown,
  source: string,
  prefix: readonly string[] = [],
): RepoConfigProblem[] {
  if (validate(data)) return [];
  const problems = new Map<string, RepoConfigProblem>();
  for (const error of validate.errors ?? []) {
    const problem = problemFromError(error, data, source, prefix);
    if (problem) problems.set(`${problem.path ?? ''}\u0000${problem.message}`, problem);
  }
  return [...problems.values()];
}

/** Throws when there are problems: at most `MAX_PROBLEMS` listed, the rest counted. */
export function throwIfProblems(problems: readonly RepoConfigProblem[]): void {
  if (problems.length === 0) return;
  throw new RepoConfigError(problems.slice(0, MAX_PROBLEMS), {
    omitted: Math.max(0, problems.length - MAX_PROBLEMS),
  });
}

/** `/regex/` or `!/regex/` keys of `branches`: the regular expression's source, else undefined. */
export function branchRegexSource(pattern: string): string | undefined {
  return /^!?\/(.+)\/$/.exec(pattern)?.[1];
}

/** Checks a schema cannot express: semver ranges, branch regular expressions and matrix names and values. */
function semanticProblems(
  config: RepoConfigInput,
  source: string,
  prefix: readonly string[],
): RepoConfigProblem[] {
  const problems: RepoConfigProblem[] = [];
  const checkEntry = (entry: BuildOverrides, segments: string[]) => {
    if (entry.node !== undefined && semver.validRange(entry.node) === null) {
      problems.push({
        source,
        path: renderPath(prefix, [...segments, 'node'], config),
        message: `must be a semver range such as ">=20" (got ${describeValue(entry.node)})`,
      });
    }
  };
  checkEntry(config, []);
  if (config.matrix) {
    for (const problem of matrixProblems(config.matrix)) {
      problems.push({
        source,
        path: renderPath(prefix, ['matrix', ...problem.segments], config),
        message: problem.message,
      });
    }
  }
  if (config.pullRequests) checkEntry(config.pullRequests, ['pullRequests']);
  for (const [pattern, entry] of Object.entries(config.branches ?? {})) {
    checkEntry(entry, ['branches', pattern]);
    const regex = branchRegexSource(pattern);
    if (regex === undefined) continue;
    try {
      new RegExp(regex);
    } catch {
      problems.push({
        source,
        path: renderPath(prefix, ['branches', pattern], config),
        message:
          'is not a valid regular expression: write /regex/, or a name or glob without slashes around it',
      });
    }
  }
  return problems;
}

/**
 * A repository config object (`.lambkin.json`, or package.json's `"lambkin"` with prefix
 * `["lambkin"]`): returned typed when valid, else a RepoConfigError naming `source` and the key.
 */
export function validateRepoConfig(
  data: unknown,
  source: string,
  prefix: readonly string[] = [],
): RepoConfigInput {
  const problems = schemaProblems(validateRepoSchema, data, source, prefix);
  throwIfProblems(problems);
  const config = data as RepoConfigInput; // the schema just proved this shape
  throwIfProblems(semanticProblems(config, source, prefix));
  return config;
}

/** The settings store's `config` (already merged global → repository); problems name `settings`. */
export function validateSettingsConfig(data: unknown): SettingsConfigInput {
  const problems = schemaProblems(validateSettingsSchema, data, 'settings', ['config']);
  throwIfProblems(problems);
  const config = data as SettingsConfigInput; // the schema just proved this shape
  throwIfProblems(semanticProblems(config, 'settings', ['config']));
  return config;
}

/** JSON.parse with a RepoConfigError naming the file and the line and column of the mistake. */
export function parseJson(text: string, source: string): unknown {
  try {
    return JSON.parse(text.replace(/^\uFEFF/, ''));
  } catch (error) {
    const reason = messageOf(error);
    const position = / in JSON at position (\d+)/.exec(reason);
    let where = '';
    if (position?.[1] !== undefined) {
      const before = text.replace(/^\uFEFF/, '').slice(0, Number(position[1]));
      const line = before.split('\n').length;
      const column = before.length - before.lastIndexOf('\n');
      where = ` at line ${line}, column ${column}`;
    }
    const cleaned = reason.replace(/ in JSON at position \d+.*$/, '');
    throw new RepoConfigError([{ source, message: `is not valid JSON${where} (${cleaned})` }]);
  }
}
