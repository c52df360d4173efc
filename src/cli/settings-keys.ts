/**
 * Dotted keys into a settings document (src/core/settings.ts `SettingsDocument`) for
 * `lambkin config`: parsing, checking against the document's shape, reading, writing, removing,
 * validating what a write produced, and hiding secret values.
 */
import { SETTINGS_CONFIG_SCHEMA, isReservedEnvName, validateSettingsConfig } from '../core/repo-config.js';
import { describeValue, unknownKeyMessage } from '../core/repo-config/validate.js';
import type { SettingsDocument } from '../core/settings.js';
import { SettingsKeyError } from './errors.js';

export type KeyPath = readonly string[];

type Leaf = 'boolean' | 'patterns';
/** The document's shape, checked against its type so that a new key cannot be forgotten here. */
const PULL_REQUEST_SHAPE = { sameRepo: 'boolean', forks: 'boolean' } as const satisfies Record<
  keyof NonNullable<NonNullable<SettingsDocument['build']>['pullRequests']>,
  Leaf
>;
const BUILD_SHAPE = {
  branches: 'patterns',
  ignoreBranches: 'patterns',
  tags: 'boolean',
  pullRequests: PULL_REQUEST_SHAPE,
  cancelSuperseded: 'boolean',
} as const satisfies Record<keyof NonNullable<SettingsDocument['build']>, unknown>;
const SECTIONS = ['build', 'config', 'secretEnv'] as const satisfies readonly (keyof SettingsDocument)[];
type Section = (typeof SECTIONS)[number];

const CONFIG_KEYS: readonly string[] = Object.keys(SETTINGS_CONFIG_SCHEMA.properties);
const VARIABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
export const SECRET_MASK = '***';

const SEGMENT = /^[^.[\]"]+/;
const QUOTED = /^\["((?:[^"\\]|\\.)*)"\]/;

/** `build.pullRequests.forks` → segments; `["…"]` quotes a name with dots (`config.branches["v1.x"]`). */
export function parseKeyPath(key: string): string[] {
  const segments: string[] = [];
  let rest = key;
  let expectSegment = true;
  while (rest !== '') {
    const quoted = QUOTED.exec(rest);
    if (quoted) {
      segments.push(JSON.parse(`"${quoted[1] ?? ''}"`) as string);
      rest = rest.slice(quoted[0].length);
    } else if (expectSegment && SEGMENT.test(rest)) {
      const plain = SEGMENT.exec(rest)?.[0] ?? '';
      segments.push(plain);
      rest = rest.slice(plain.length);
    } else {
      throw malformed(key);
    }
    expectSegment = false;
    if (rest.startsWith('.')) {
      rest = rest.slice(1);
      expectSegment = true;
      if (rest === '') throw malformed(key);
    } else if (rest !== '' && !rest.startsWith('[')) {
      throw malformed(key);
    }
  }
  if (segments.length === 0) throw malformed(key);
  return segments;
}

function malformed(key: string): SettingsKeyError {
  return new SettingsKeyError(
    `"${key}" is not a settings key: write names with dots, such as build.tags or config.timeout ` +
      '(["…"] around a name that has dots itself)',
  );
}

/** `build.branches`, `config.branches["v1.x"]`: for messages. */
export function formatKeyPath(path: KeyPath): string {
  return path
    .map((segment, index) =>
      /^[^.[\]"]+$/.test(segment) ? `${index === 0 ? '' : '.'}${segment}` : `[${JSON.stringify(segment)}]`,
    )
    .join('');
}

export type KeyUse = 'get' | 'set' | 'unset';

/**
 * Refuses keys the settings document does not have. Below `config`, only the first key is checked
 * here; a write is validated as a whole (`validateWrite`). `unset` accepts any key the document
 * holds (so a stray one can be removed), and `get` any key below `config`.
 */
export function checkKeyPath(path: KeyPath, use: KeyUse, document: SettingsDocument = {}): void {
  if (use === 'unset' && getAtPath(document, path) !== undefined) return;
  const [section, ...rest] = path;
  if (!isSection(section)) throw unknownKey(path, 0, SECTIONS);
  if (section === 'build') {
    let shape: Record<string, unknown> = BUILD_SHAPE;
    for (let index = 1; index < path.length; index++) {
      const segment = path[index] ?? '';
      const next = shape[segment];
      if (next === undefined) throw unknownKey(path, index, Object.keys(shape));
      if (typeof next === 'string' && index < path.length - 1) {
        throw new SettingsKeyError(
          `"${formatKeyPath(path.slice(0, index + 1))}" is ${describeLeaf(next as Leaf)}: it has no keys`,
        );
      }
      if (typeof next === 'object' && next !== null) shape = next as Record<string, unknown>;
    }
    return;
  }
  if (section === 'config') {
    const [key] = rest;
    if (key !== undefined && use !== 'get' && !CONFIG_KEYS.includes(key))
      throw unknownKey(path, 1, CONFIG_KEYS);
    return;
  }
  // secretEnv: one level of variable names.
  if (rest.length > 1) {
    throw new SettingsKeyError(`"${formatKeyPath(path.slice(0, 2))}" is a secret's value: it has no keys`);
  }
  const [name] = rest;
  if (name !== undefined && use === 'set') checkSecretName(name);
}

function isSection(value: string | undefined): value is Section {
  return (SECTIONS as readonly (string | undefined)[]).includes(value);
}

function unknownKey(path: KeyPath, index: number, known: readonly string[]): SettingsKeyError {
  const shown = formatKeyPath(path.slice(0, index + 1));
  return new SettingsKeyError(`settings key "${shown}" ${unknownKeyMessage(path[index] ?? '', known)}`);
}

function describeLeaf(leaf: Leaf): string {
  return leaf === 'boolean' ? 'true or false' : 'a list of names or globs';
}

function checkSecretName(name: string): void {
  if (!VARIABLE_NAME.test(name)) {
    throw new SettingsKeyError(
      `"secretEnv.${name}" is not a variable name: letters, digits and _, not starting with a digit`,
    );
  }
  if (isReservedEnvName(name)) {
    throw new SettingsKeyError(`"secretEnv.${name}" is reserved: Lambkin sets it for every build`);
  }
}

/**
 * The value of `lambkin config set KEY VALUE`: JSON when it parses (`true`, `600`, `["main"]`),
 * else the text itself. A secret's value and a `node` range are always text (`123` stays "123").
 */
export function parseValue(path: KeyPath, raw: string): unknown {
  const last = path[path.length - 1];
  const textOnly =
    (path[0] === 'secretEnv' && path.length === 2) ||
    (path[0] === 'config' && path.length >= 2 && (last === 'node' || last === '$schema'));
  if (textOnly) return raw;
  try {
    return JSON.parse(raw) as unknown;
  } catch {
    return raw;
  }
}

export function getAtPath(document: unknown, path: KeyPath): unknown {
  let current: unknown = document;
  for (const segment of path) {
    if (!isPlainObject(current) || !Object.hasOwn(current, segment)) return undefined;
    current = current[segment];
  }
  return current;
}

/** Sets the value, making the objects on the way; refuses to go through a value that is not one. */
export function setAtPath(document: SettingsDocument, path: KeyPath, value: unknown): SettingsDocument {
  let current = document as Record<string, unknown>;
  for (let index = 0; index < path.length - 1; index++) {
    const segment = path[index] ?? '';
    const next = current[segment];
    if (next === undefined) {
      current[segment] = {};
    } else if (!isPlainObject(next)) {
      throw new SettingsKeyError(
        `"${formatKeyPath(path.slice(0, index + 1))}" is ${describeValue(next)}, not an object: ` +
          `set or unset it as a whole first`,
      );
    }
    current = current[segment] as Record<string, unknown>;
  }
  current[path[path.length - 1] ?? ''] = value;
  return document;
}

/** Removes the key, and the objects it leaves empty; false when it was not there. */
export function unsetAtPath(document: SettingsDocument, path: KeyPath): boolean {
  const parents: Record<string, unknown>[] = [];
  let current: unknown = document;
  for (const segment of path.slice(0, -1)) {
    if (!isPlainObject(current)) return false;
    parents.push(current);
    current = current[segment];
  }
  const last = path[path.length - 1] ?? '';
  if (!isPlainObject(current) || !Object.hasOwn(current, last)) return false;
  delete current[last];
  // An empty object means the same as none: drop it so `get` shows what is really set.
  for (let index = parents.length - 1; index >= 0; index--) {
    const parent = parents[index];
    const segment = path[index] ?? '';
    const child = parent?.[segment];
    if (parent && isPlainObject(child) && Object.keys(child).length === 0) delete parent[segment];
    else break;
  }
  return true;
}

/**
 * After `set`: a single name for a list of names becomes a one-element list, then the section
 * written is validated; the first problem is the error, in one line.
 */
export function normalizeAndValidate(document: SettingsDocument, path: KeyPath): SettingsDocument {
  const section = path[0];
  if (section === 'build') {
    const build = document.build as unknown;
    if (isPlainObject(build)) {
      for (const key of ['branches', 'ignoreBranches'] as const) {
        if (typeof build[key] === 'string') build[key] = [build[key]];
      }
    }
    const problem = buildProblem(build);
    if (problem) throw new SettingsKeyError(problem);
  } else if (section === 'config') {
    // Throws RepoConfigError: `settings: "config.timeout" must be … (got "ten")`, one line.
    validateSettingsConfig(document.config ?? {});
  } else if (section === 'secretEnv') {
    const problem = secretEnvProblem(document.secretEnv as unknown);
    if (problem) throw new SettingsKeyError(problem);
  }
  return document;
}

function buildProblem(build: unknown): string | undefined {
  if (!isPlainObject(build)) return `"build" must be an object (got ${describeValue(build)})`;
  for (const [key, value] of Object.entries(build)) {
    const shape = (BUILD_SHAPE as Record<string, unknown>)[key];
    const where = `build.${key}`;
    if (shape === undefined)
      return `settings key "${where}" ${unknownKeyMessage(key, Object.keys(BUILD_SHAPE))}`;
    if (shape === 'patterns') {
      const valid = Array.isArray(value) && value.every((item) => typeof item === 'string' && item !== '');
      if (!valid) return `"${where}" must be a name or glob, or a list of them (got ${describeValue(value)})`;
    } else if (shape === 'boolean') {
      if (typeof value !== 'boolean') return `"${where}" must be true or false (got ${describeValue(value)})`;
    } else {
      if (!isPlainObject(value)) return `"${where}" must be an object (got ${describeValue(value)})`;
      for (const [name, flag] of Object.entries(value)) {
        if (!(name in PULL_REQUEST_SHAPE)) {
          return `settings key "${where}.${name}" ${unknownKeyMessage(name, Object.keys(PULL_REQUEST_SHAPE))}`;
        }
        if (typeof flag !== 'boolean') {
          return `"${where}.${name}" must be true or false (got ${describeValue(flag)})`;
        }
      }
    }
  }
  return undefined;
}

function secretEnvProblem(secretEnv: unknown): string | undefined {
  if (!isPlainObject(secretEnv)) {
    return `"secretEnv" must be an object of variable names to values (got ${describeValue(secretEnv)})`;
  }
  for (const [name, value] of Object.entries(secretEnv)) {
    try {
      checkSecretName(name);
    } catch (error) {
      return (error as Error).message;
    }
    // Never quote the value: it is a secret.
    if (typeof value !== 'string') return `"secretEnv.${name}" must be text`;
  }
  return undefined;
}

/** A copy of a settings document (or its merged form) with every secret value as `***`. */
export function maskSecrets<T extends { secretEnv?: Record<string, string> }>(document: T): T {
  const copy = structuredClone(document);
  if (isPlainObject(copy.secretEnv)) {
    for (const name of Object.keys(copy.secretEnv)) copy.secretEnv[name] = SECRET_MASK;
  }
  return copy;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
