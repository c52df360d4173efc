/**
 * Dotted keys into a settings document (src/core/settings.ts `SettingsDocument`) for
 * `lambkin config`: parsing, checking against the document's shape, reading, writing, removing,
 * validating what a write produced, and hiding secret values.
 */
import { MAX_JOBS_LIMIT } from '../core/jobs.js';
import { SETTINGS_CONFIG_SCHEMA, isReservedEnvName, validateSettingsConfig } from '../core/repo-config.js';
import { describeValue, unknownKeyMessage } from '../core/repo-config/validate.js';
import { CODEBUILD_COMPUTES } from '../core/repo-config/schema.js';
import {
  PULL_REQUEST_SOURCES,
  type CodeBuildSettings,
  type DeploySettings,
  type PullRequestPolicy,
  type SettingsDocument,
} from '../core/settings.js';
import {
  NOTIFICATION_SECRET_PATHS,
  NOTIFY_EVENTS,
  SLACK_SECRET_KEYS,
  type NotificationSettings,
  type SlackSettings,
  type SnsSettings,
} from '../core/notifications.js';
import { SettingsKeyError } from './cli-errors.js';

export type KeyPath = readonly string[];

/**
 * `keys`: true, false or a list of repository-config keys; `arn`: an IAM role ARN; `secret`: text
 * sealed in the store and shown as `***`; `events`: notification events; `topicArn`: an SNS topic.
 */
type Leaf =
  | 'boolean'
  | 'patterns'
  | 'keys'
  | 'text'
  | 'arn'
  | 'secret'
  | 'events'
  | 'topicArn'
  | 'jobLimit'
  | 'images'
  | 'computes'
  | 'minutes';
interface Shape {
  [key: string]: Leaf | Shape;
}
/** The document's shape, checked against its type so that a new key cannot be forgotten here. */
const PULL_REQUEST_POLICY_SHAPE = {
  build: 'boolean',
  inheritSecrets: 'boolean',
  allowConfigOverrides: 'keys',
  requireApproval: 'boolean',
} as const satisfies Record<keyof PullRequestPolicy, Leaf>;
const PULL_REQUEST_SHAPE = {
  sameRepo: 'boolean',
  forks: 'boolean',
  ...Object.fromEntries(PULL_REQUEST_SOURCES.map((source) => [source, PULL_REQUEST_POLICY_SHAPE])),
} as Record<keyof NonNullable<NonNullable<SettingsDocument['build']>['pullRequests']>, Leaf | Shape>;
const BUILD_SHAPE = {
  branches: 'patterns',
  ignoreBranches: 'patterns',
  tags: 'boolean',
  pullRequests: PULL_REQUEST_SHAPE,
  cancelSuperseded: 'boolean',
  maxJobs: 'jobLimit',
} as const satisfies Record<keyof NonNullable<SettingsDocument['build']>, unknown>;
const DEPLOY_SHAPE = {
  roleArn: 'arn',
  region: 'text',
  branches: 'patterns',
  tags: 'patterns',
} as const satisfies Record<keyof DeploySettings, Leaf>;
const NOTIFICATIONS_SHAPE = {
  slack: {
    webhookUrl: 'secret',
    token: 'secret',
    channel: 'text',
    on: 'events',
    branches: 'patterns',
    enabled: 'boolean',
  } satisfies Record<keyof SlackSettings, Leaf>,
  sns: {
    topicArn: 'topicArn',
    on: 'events',
    branches: 'patterns',
    enabled: 'boolean',
  } satisfies Record<keyof SnsSettings, Leaf>,
} as const satisfies Record<keyof NotificationSettings, Shape>;
/** Which builds may run on CodeBuild, on what, and how many minutes a month (src/core/placement.ts). */
const CODEBUILD_SHAPE = {
  repos: 'patterns',
  images: 'images',
  computes: 'computes',
  docker: 'boolean',
  monthlyMinutes: 'minutes',
} as const satisfies Record<keyof CodeBuildSettings, Leaf>;
/** Sections whose keys are all known here (`config` and `secretEnv` are checked otherwise). */
const SHAPED_SECTIONS: Record<string, Shape> = {
  build: BUILD_SHAPE,
  deploy: DEPLOY_SHAPE,
  notifications: NOTIFICATIONS_SHAPE,
  codebuild: CODEBUILD_SHAPE,
};
const SECTIONS = [
  'build',
  'config',
  'secretEnv',
  'deploy',
  'notifications',
  'codebuild',
] as const satisfies readonly (keyof SettingsDocument)[];
const TOPIC_ARN = /^arn:aws[\w-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$/;
const ROLE_ARN = /^arn:aws[\w-]*:iam::\d{12}:role\/[\w+=,.@/-]+$/;
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
  const sectionShape = SHAPED_SECTIONS[section];
  if (sectionShape) {
    let shape: Shape = sectionShape;
    for (let index = 1; index < path.length; index++) {
      const segment = path[index] ?? '';
      const next = shape[segment];
      if (next === undefined) throw unknownKey(path, index, Object.keys(shape));
      if (typeof next === 'string' && index < path.length - 1) {
        throw new SettingsKeyError(
          `"${formatKeyPath(path.slice(0, index + 1))}" is ${describeLeaf(next as Leaf)}: it has no keys`,
        );
      }
      if (typeof next === 'object') shape = next;
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
  switch (leaf) {
    case 'boolean':
      return 'true or false';
    case 'patterns':
      return 'a list of names or globs';
    case 'keys':
      return 'true, false or a list of config keys';
    case 'arn':
      return 'an IAM role ARN';
    case 'secret':
      return 'a secret (text)';
    case 'events':
      return `a list of notification events (${NOTIFY_EVENTS.join(', ')})`;
    case 'topicArn':
      return 'an SNS topic ARN';
    case 'jobLimit':
      return `a whole number of jobs per build, 1 to ${MAX_JOBS_LIMIT}`;
    case 'images':
      return 'a list of image URIs';
    case 'computes':
      return `a list of sizes (${CODEBUILD_COMPUTES.join(', ')})`;
    case 'minutes':
      return 'a whole number of minutes';
    default:
      return 'text';
  }
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
    isNotificationSecretPath(path) ||
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
  const section = path[0] ?? '';
  const shape = SHAPED_SECTIONS[section];
  if (shape) {
    const value = (document as Record<string, unknown>)[section];
    if (section === 'build' && isPlainObject(value)) {
      for (const key of ['branches', 'ignoreBranches'] as const) {
        if (typeof value[key] === 'string') value[key] = [value[key]];
      }
    }
    if (section === 'codebuild' && isPlainObject(value)) {
      for (const key of ['repos', 'images', 'computes'] as const) {
        if (typeof value[key] === 'string') value[key] = [value[key]];
      }
    }
    if (section === 'notifications' && isPlainObject(value)) {
      for (const channel of Object.values(value)) {
        if (!isPlainObject(channel)) continue;
        for (const key of ['on', 'branches'] as const) {
          if (typeof channel[key] === 'string') channel[key] = [channel[key]];
        }
      }
    }
    const problem = shapeProblem(value, shape, section);
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

const REPO_CONFIG_KEYS: readonly string[] = [
  ...CONFIG_KEYS.filter((key) => key !== 'allowConfigOverrides'),
  'cmd',
];

function leafProblem(value: unknown, leaf: Leaf, where: string): string | undefined {
  const got = `(got ${describeValue(value)})`;
  switch (leaf) {
    case 'patterns': {
      const valid = Array.isArray(value) && value.every((item) => typeof item === 'string' && item !== '');
      return valid ? undefined : `"${where}" must be a name or glob, or a list of them ${got}`;
    }
    case 'boolean':
      return typeof value === 'boolean' ? undefined : `"${where}" must be true or false ${got}`;
    case 'keys': {
      if (typeof value === 'boolean') return undefined;
      if (!Array.isArray(value)) return `"${where}" must be true, false or a list of config keys ${got}`;
      const unknown = value.find((key) => typeof key !== 'string' || !REPO_CONFIG_KEYS.includes(key));
      return unknown === undefined
        ? undefined
        : `"${where}" lists ${describeValue(unknown)}, which is not a repository config key (${REPO_CONFIG_KEYS.join(', ')})`;
    }
    case 'arn':
      return typeof value === 'string' && ROLE_ARN.test(value)
        ? undefined
        : `"${where}" must be an IAM role ARN such as arn:aws:iam::123456789012:role/deploy ${got}`;
    case 'topicArn':
      return typeof value === 'string' && TOPIC_ARN.test(value)
        ? undefined
        : `"${where}" must be an SNS topic ARN such as arn:aws:sns:us-east-1:123456789012:builds ${got}`;
    case 'jobLimit':
      return Number.isInteger(value) && (value as number) >= 1 && (value as number) <= MAX_JOBS_LIMIT
        ? undefined
        : `"${where}" must be a whole number of jobs per build from 1 to ${MAX_JOBS_LIMIT} ${got}`;
    case 'images': {
      // Registry URIs (`123456789012.dkr.ecr.us-east-1.amazonaws.com/ci:1`, `node:22`): no spaces.
      const valid =
        Array.isArray(value) && value.every((item) => typeof item === 'string' && /^\S+$/.test(item));
      return valid ? undefined : `"${where}" must be an image URI, or a list of them ${got}`;
    }
    case 'computes': {
      const valid =
        Array.isArray(value) &&
        value.every((item) => (CODEBUILD_COMPUTES as readonly unknown[]).includes(item));
      return valid ? undefined : `"${where}" must be a list of ${CODEBUILD_COMPUTES.join(', ')} ${got}`;
    }
    case 'minutes':
      return Number.isInteger(value) && (value as number) >= 0
        ? undefined
        : `"${where}" must be a whole number of minutes, 0 or more ${got}`;
    case 'events': {
      const valid =
        Array.isArray(value) && value.every((item) => (NOTIFY_EVENTS as readonly unknown[]).includes(item));
      return valid ? undefined : `"${where}" must be a list of ${NOTIFY_EVENTS.join(', ')} ${got}`;
    }
    case 'secret':
      // Never quote the value: it is a secret.
      return typeof value === 'string' && value !== '' ? undefined : `"${where}" must be text`;
    default:
      return typeof value === 'string' && value !== '' ? undefined : `"${where}" must be text ${got}`;
  }
}

function shapeProblem(value: unknown, shape: Shape, where: string): string | undefined {
  if (!isPlainObject(value)) return `"${where}" must be an object (got ${describeValue(value)})`;
  for (const [key, child] of Object.entries(value)) {
    const expected = shape[key];
    const path = `${where}.${key}`;
    if (expected === undefined) return `settings key "${path}" ${unknownKeyMessage(key, Object.keys(shape))}`;
    // A pull-request source may also be just true or false (shorthand for its `build`).
    if (typeof expected === 'object' && typeof child === 'boolean' && 'inheritSecrets' in expected) continue;
    const problem =
      typeof expected === 'string' ? leafProblem(child, expected, path) : shapeProblem(child, expected, path);
    if (problem) return problem;
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
export function maskSecrets<
  T extends { secretEnv?: Record<string, string>; notifications?: NotificationSettings },
>(document: T): T {
  const copy = structuredClone(document);
  if (isPlainObject(copy.secretEnv)) {
    for (const name of Object.keys(copy.secretEnv)) copy.secretEnv[name] = SECRET_MASK;
  }
  const slack: unknown = copy.notifications?.slack;
  if (isPlainObject(slack)) {
    for (const key of SLACK_SECRET_KEYS) if (slack[key] !== undefined) slack[key] = SECRET_MASK;
  }
  return copy;
}

/** True for a key whose value is a notification secret (`notifications.slack.token`, …). */
export function isNotificationSecretPath(path: KeyPath): boolean {
  return NOTIFICATION_SECRET_PATHS.some(
    (secret) => secret.length === path.length && secret.every((segment, index) => segment === path[index]),
  );
}

/** True for a key whose value is or holds a secret (shown as `***` when set). */
export function holdsSecrets(path: KeyPath): boolean {
  if (path[0] === 'secretEnv') return true;
  return NOTIFICATION_SECRET_PATHS.some((secret) =>
    path.every((segment, index) => segment === secret[index]),
  );
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
