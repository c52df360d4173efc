/**
 * Process configuration, read once from the environment and validated at start: every problem
 * is reported together, and secrets are never printed. None of these variables ever reaches a
 * build step (the runner gets a fixed list of build variables instead).
 */
import { ConfigurationError } from './core/errors.js';

export interface LambkinConfig {
  /** DynamoDB table of builds (LAMBKIN_BUILDS_TABLE). */
  buildsTable: string;
  /** DynamoDB table of settings (LAMBKIN_SETTINGS_TABLE). */
  settingsTable: string;
  /** S3 bucket for logs and caches (LAMBKIN_BUCKET). */
  bucket: string;
  /** Name or ARN of the builder (controller) function (LAMBKIN_BUILDER_FUNCTION). */
  builderFunction: string;
  /** Base URL of Lambkin's own HTTP endpoint; log links are built from it (LAMBKIN_PUBLIC_URL). */
  publicUrl: string;
  /** GitHub REST API base URL (GITHUB_API_URL). */
  githubApiUrl: string;
  /** GitHub token (GITHUB_TOKEN); in the cloud, from Secrets Manager. */
  githubToken: string | undefined;
  /** Webhook secrets (LAMBKIN_WEBHOOK_SECRET, comma-separated while rotating: new first). */
  webhookSecrets: string[];
  /** How long a queued build may wait for the builder before the sweeper ends it (seconds). */
  queueTimeoutSeconds: number;
  /** Name or ARN of the runner function for trusted builds (LAMBKIN_RUNNER_FUNCTION). */
  runnerFunction: string;
  /**
   * Name or ARN of the runner function for untrusted builds (fork pull requests): a container of
   * it never runs a trusted build (LAMBKIN_UNTRUSTED_RUNNER_FUNCTION).
   */
  untrustedRunnerFunction: string;
  /** The runner's own time limit; the controller's is longer (LAMBKIN_RUNNER_TIMEOUT_SECONDS). */
  runnerTimeoutSeconds: number;
  /** Build log size limit; past it the middle is cut (LAMBKIN_LOG_LIMIT_BYTES). */
  logLimitBytes: number;
  /**
   * In the cloud: the Secrets Manager secret (ARN) holding `githubToken` and `webhookSecret`,
   * read at cold start instead of GITHUB_TOKEN / LAMBKIN_WEBHOOK_SECRET (LAMBKIN_SECRET_ARN).
   */
  secretArn: string;
  /** KMS key that encrypts `secretEnv` values in the settings table (LAMBKIN_SETTINGS_KMS_KEY). */
  settingsKmsKey: string;
  /**
   * Role the builder assumes per build, with a session policy naming only that build's keys, to
   * sign the runner's upload form and cache URLs (LAMBKIN_UPLOAD_ROLE).
   */
  uploadRole: string;
  /** Slack Web API base URL for notifications (LAMBKIN_SLACK_API_URL; a stand-in in tests). */
  slackApiUrl: string;
}

export const DEFAULT_GITHUB_API_URL = 'https://api.github.com';
export const DEFAULT_SLACK_API_URL = 'https://slack.com/api';

/** Environment variable of each config key. */
export const CONFIG_VARIABLES = {
  buildsTable: 'LAMBKIN_BUILDS_TABLE',
  settingsTable: 'LAMBKIN_SETTINGS_TABLE',
  bucket: 'LAMBKIN_BUCKET',
  builderFunction: 'LAMBKIN_BUILDER_FUNCTION',
  publicUrl: 'LAMBKIN_PUBLIC_URL',
  githubApiUrl: 'GITHUB_API_URL',
  githubToken: 'GITHUB_TOKEN',
  webhookSecrets: 'LAMBKIN_WEBHOOK_SECRET',
  queueTimeoutSeconds: 'LAMBKIN_QUEUE_TIMEOUT_SECONDS',
  runnerFunction: 'LAMBKIN_RUNNER_FUNCTION',
  untrustedRunnerFunction: 'LAMBKIN_UNTRUSTED_RUNNER_FUNCTION',
  runnerTimeoutSeconds: 'LAMBKIN_RUNNER_TIMEOUT_SECONDS',
  logLimitBytes: 'LAMBKIN_LOG_LIMIT_BYTES',
  secretArn: 'LAMBKIN_SECRET_ARN',
  settingsKmsKey: 'LAMBKIN_SETTINGS_KMS_KEY',
  uploadRole: 'LAMBKIN_UPLOAD_ROLE',
  slackApiUrl: 'LAMBKIN_SLACK_API_URL',
} as const satisfies Record<keyof LambkinConfig, string>;

const SECRET_KEYS: readonly (keyof LambkinConfig)[] = ['githubToken', 'webhookSecrets'];

type Env = Record<string, string | undefined>;

/**
 * Reads the configuration a function needs. `required` names the keys this function cannot run
 * without; the rest get defaults or stay empty.
 */
export function loadConfig(env: Env, required: readonly (keyof LambkinConfig)[]): LambkinConfig {
  const problems: string[] = [];
  const text = (key: keyof LambkinConfig): string => {
    const value = env[CONFIG_VARIABLES[key]]?.trim() ?? '';
    if (!value && required.includes(key)) problems.push(`${CONFIG_VARIABLES[key]} is not set`);
    return value;
  };
  const url = (key: keyof LambkinConfig, fallback: string): string => {
    const value = text(key) || fallback;
    if (!value) return value;
    try {
      const parsed = new URL(value);
      if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new Error('not http');
    } catch {
      problems.push(`${CONFIG_VARIABLES[key]} must be an http(s) URL (got "${value}")`);
    }
    return value.replace(/\/+$/, '');
  };
  const wholeNumber = (key: keyof LambkinConfig, fallback: number, unit: string): number => {
    const raw = text(key);
    const value = raw ? Number(raw) : fallback;
    if (!Number.isInteger(value) || value <= 0) {
      problems.push(`${CONFIG_VARIABLES[key]} must be a whole number of ${unit}`);
    }
    return value;
  };
  const queueTimeoutSeconds = wholeNumber('queueTimeoutSeconds', 20 * 60, 'seconds');
  const runnerTimeoutSeconds = wholeNumber('runnerTimeoutSeconds', 14 * 60, 'seconds');
  const logLimitBytes = wholeNumber('logLimitBytes', 4 * 1024 * 1024, 'bytes');
  const secrets = text('webhookSecrets')
    .split(',')
    .map((secret) => secret.trim())
    .filter(Boolean);
  const config: LambkinConfig = {
    buildsTable: text('buildsTable'),
    settingsTable: text('settingsTable'),
    bucket: text('bucket'),
    builderFunction: text('builderFunction'),
    publicUrl: url('publicUrl', ''),
    githubApiUrl: url('githubApiUrl', DEFAULT_GITHUB_API_URL),
    githubToken: text('githubToken') || undefined,
    webhookSecrets: secrets,
    queueTimeoutSeconds,
    runnerFunction: text('runnerFunction'),
    untrustedRunnerFunction: text('untrustedRunnerFunction'),
    runnerTimeoutSeconds,
    logLimitBytes,
    secretArn: text('secretArn'),
    settingsKmsKey: text('settingsKmsKey'),
    uploadRole: text('uploadRole'),
    slackApiUrl: url('slackApiUrl', DEFAULT_SLACK_API_URL),
  };
  if (problems.length > 0) throw new ConfigurationError(problems);
  return config;
}

/**
 * The deployed functions and the configuration each reads from its environment: `required` it
 * cannot start without, `optional` it reads when set. The template must set every one of them
 * (tests/template checks it), and the handlers load exactly these.
 */
export const FUNCTION_CONFIG = {
  webhook: {
    required: ['buildsTable', 'settingsTable', 'builderFunction'],
    optional: [
      'publicUrl',
      'githubApiUrl',
      'queueTimeoutSeconds',
      'secretArn',
      'githubToken',
      'webhookSecrets',
    ],
  },
  builder: {
    required: ['buildsTable', 'settingsTable', 'bucket', 'runnerFunction', 'untrustedRunnerFunction'],
    optional: [
      'publicUrl',
      'githubApiUrl',
      'runnerTimeoutSeconds',
      'logLimitBytes',
      'secretArn',
      'githubToken',
      'settingsKmsKey',
      'uploadRole',
    ],
  },
  runner: { required: [], optional: [] },
  sweeper: {
    required: ['buildsTable'],
    optional: ['publicUrl', 'githubApiUrl', 'secretArn', 'githubToken'],
  },
  failure: {
    required: ['buildsTable'],
    optional: ['publicUrl', 'githubApiUrl', 'secretArn', 'githubToken'],
  },
  logs: { required: ['buildsTable', 'bucket'], optional: [] },
  // The builds table's stream: the page of recent builds, Slack and SNS (src/notify/stream.ts).
  notifier: {
    required: ['buildsTable', 'settingsTable', 'bucket'],
    optional: ['publicUrl', 'settingsKmsKey', 'slackApiUrl'],
  },
} as const satisfies Record<
  string,
  { required: readonly (keyof LambkinConfig)[]; optional: readonly (keyof LambkinConfig)[] }
>;
export type FunctionName = keyof typeof FUNCTION_CONFIG;

/** Secrets come from Secrets Manager in the cloud; locally from these variables. */
export const CLOUD_SECRET_KEYS: readonly (keyof LambkinConfig)[] = ['githubToken', 'webhookSecrets'];

/** The configuration as text for logs and `lambkin dev`, with secrets shown as `***`. */
export function describeConfig(config: LambkinConfig): Record<string, string> {
  const described: Record<string, string> = {};
  for (const key of Object.keys(CONFIG_VARIABLES) as (keyof LambkinConfig)[]) {
    const value = config[key];
    const empty = value === undefined || value === '' || (Array.isArray(value) && value.length === 0);
    described[CONFIG_VARIABLES[key]] = empty
      ? '(not set)'
      : SECRET_KEYS.includes(key)
        ? '***'
        : String(value);
  }
  return described;
}
