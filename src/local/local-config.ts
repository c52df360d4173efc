/**
 * Which documented variables the embedded stack (`lambkin dev`) takes from the environment, and
 * which it sets itself. Every configuration key is in exactly one of the two lists (the compiler
 * checks it), so a variable added to src/config.ts must be placed here too.
 *
 * From the environment: what means the same on a laptop as in the cloud (time limits, the log
 * limit, the Slack API, so Slack can be pointed at a stand-in or a proxy). The stack's own: the
 * names of what it creates on its own servers, its own URL, and what the cloud has and a laptop
 * does not (the runner function, Secrets Manager, KMS, the upload role).
 */
import { CONFIG_VARIABLES, describeConfig, type LambkinConfig } from '../config.js';

type Env = Readonly<Record<string, string | undefined>>;

/** Read from the environment, as the cloud's functions read them. */
const FROM_ENVIRONMENT = [
  'queueTimeoutSeconds',
  'runnerTimeoutSeconds',
  'logLimitBytes',
  'slackApiUrl',
  // `lambkin dev` reads these itself (flags, required values) and passes them as the stack's options.
  'githubApiUrl',
  'githubToken',
  'githubAppId',
  'githubAppPrivateKey',
  'githubAppPrivateKeyFile',
  'webhookSecrets',
] as const satisfies readonly (keyof LambkinConfig)[];

/**
 * Set by the stack whatever the environment says: `own`, to what it creates on its own servers
 * and its own URL; `unused`, what only the cloud has (builds run as local processes, secrets come
 * from GITHUB_TOKEN and LAMBKIN_WEBHOOK_SECRET, secret values are sealed with a key in the data
 * directory, uploads are signed with the stack's own credentials).
 */
const STACK_SETS = {
  buildsTable: 'own',
  settingsTable: 'own',
  bucket: 'own',
  builderFunction: 'own',
  publicUrl: 'own',
  runnerFunction: 'unused',
  untrustedRunnerFunction: 'unused',
  secretArn: 'unused',
  settingsKmsKey: 'unused',
  uploadRole: 'unused',
  // The local stack gives the controller its own (the Invoke API's concurrency).
  jobConcurrency: 'unused',
} as const satisfies Record<
  Exclude<keyof LambkinConfig, (typeof FROM_ENVIRONMENT)[number]>,
  'own' | 'unused'
>;

/** The options `startLocalStack` takes for these itself (flags and checks of `lambkin dev`). */
const FROM_OPTIONS: readonly (keyof LambkinConfig)[] = [
  'githubApiUrl',
  'githubToken',
  'githubAppId',
  'githubAppPrivateKey',
  'githubAppPrivateKeyFile',
  'webhookSecrets',
];

/**
 * The documented variables of `env` that apply locally (and that the stack does not take as
 * options), for `loadConfig` to read below the stack's own values.
 */
export function localEnvironment(env: Env): Record<string, string> {
  const picked: Record<string, string> = {};
  for (const key of FROM_ENVIRONMENT) {
    if (FROM_OPTIONS.includes(key)) continue;
    const name = CONFIG_VARIABLES[key];
    const value = env[name];
    if (value !== undefined && value.trim() !== '') picked[name] = value;
  }
  return picked;
}

/**
 * What `lambkin dev` prints once at start: the variables it took from the environment (when any
 * was set), those it overrides with its own values, those that do not apply locally, and which
 * of the last two the environment set in vain. Secrets are never shown.
 */
export function describeLocalConfig(config: LambkinConfig, env: Env): string[] {
  const described = describeConfig(config);
  const names = (kind: 'own' | 'unused'): string[] =>
    (Object.keys(STACK_SETS) as (keyof typeof STACK_SETS)[])
      .filter((key) => STACK_SETS[key] === kind)
      .map((key) => CONFIG_VARIABLES[key]);
  const lines: string[] = [];
  const taken = Object.keys(localEnvironment(env));
  if (taken.length > 0) {
    lines.push(`from the environment: ${taken.map((name) => `${name}=${described[name]}`).join(' ')}`);
  }
  lines.push(
    `overrides: ${names('own')
      .map((name) => `${name}=${described[name]}`)
      .join(' ')}`,
  );
  lines.push(`not used locally: ${names('unused').join(' ')}`);
  const ignored = [...names('own'), ...names('unused')].filter((name) => env[name]?.trim());
  if (ignored.length > 0) lines.push(`ignored from the environment: ${ignored.join(' ')}`);
  return lines;
}
