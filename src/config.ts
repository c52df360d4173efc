/**
 * Process configuration, read once from the environment and validated at start: every problem
 * is reported together, and secrets are never printed. None of these variables ever reaches a
 * build step (the runner gets a fixed list of build variables instead).
 */
import { readFileSync, statSync } from 'node:fs';
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
  /** GitHub token (GITHUB_TOKEN); in the cloud, from Secrets Manager. Token mode. */
  githubToken: string | undefined;
  /**
   * The GitHub App's id (LAMBKIN_GITHUB_APP_ID); in the cloud, from Secrets Manager. Set, the
   * deployment is in App mode: check runs, installation tokens per repository.
   */
  githubAppId: string;
  /** The App's private key, PEM (LAMBKIN_GITHUB_APP_PRIVATE_KEY); in the cloud, from Secrets Manager. */
  githubAppPrivateKey: string;
  /** A file holding the App's private key (LAMBKIN_GITHUB_APP_PRIVATE_KEY_FILE): read at start. */
  githubAppPrivateKeyFile: string;
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
  /** Jobs of a build the builder runs at once (its reserved concurrency); unset: all at once. */
  jobConcurrency?: number;
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
  githubAppId: 'LAMBKIN_GITHUB_APP_ID',
  githubAppPrivateKey: 'LAMBKIN_GITHUB_APP_PRIVATE_KEY',
  githubAppPrivateKeyFile: 'LAMBKIN_GITHUB_APP_PRIVATE_KEY_FILE',
  webhookSecrets: 'LAMBKIN_WEBHOOK_SECRET',
  queueTimeoutSeconds: 'LAMBKIN_QUEUE_TIMEOUT_SECONDS',
  runnerFunction: 'LAMBKIN_RUNNER_FUNCTION',
  untrustedRunnerFunction: 'LAMBKIN_UNTRUSTED_RUNNER_FUNCTION',
  runnerTimeoutSeconds: 'LAMBKIN_RUNNER_TIMEOUT_SECONDS',
  logLimitBytes: 'LAMBKIN_LOG_LIMIT_BYTES',
  jobConcurrency: 'LAMBKIN_JOB_CONCURRENCY',
  secretArn: 'LAMBKIN_SECRET_ARN',
  settingsKmsKey: 'LAMBKIN_SETTINGS_KMS_KEY',
  uploadRole: 'LAMBKIN_UPLOAD_ROLE',
  slackApiUrl: 'LAMBKIN_SLACK_API_URL',
} as const satisfies Record<keyof LambkinConfig, string>;

const SECRET_KEYS: readonly (keyof LambkinConfig)[] = [
  'githubToken',
  'webhookSecrets',
  'githubAppPrivateKey',
];

type Env = Record<string, string | undefined>;

/**
 * CodeBuild's variables. Kept apart from LambkinConfig: they concern only the functions that start
 * or finish CodeBuild runs (builder, sweeper, CodeBuild events), and each stack passes its own.
 */
export const CODEBUILD_VARIABLES = {
  project: 'LAMBKIN_CODEBUILD_PROJECT',
  dockerProject: 'LAMBKIN_CODEBUILD_DOCKER_PROJECT',
  timeoutMinutes: 'LAMBKIN_CODEBUILD_TIMEOUT_MINUTES',
} as const;

export interface CodeBuildConfig {
  /** The project of builds set to run on CodeBuild; unset: CodeBuild is off. */
  project?: string;
  /** The privileged project, for `"docker": true`; unset: Docker is refused. */
  dockerProject?: string;
  /** A CodeBuild build's time limit, 5 to 480 (default 60). */
  timeoutMinutes: number;
}

/** Reads CODEBUILD_VARIABLES; throws a ConfigurationError naming every problem. */
export function loadCodeBuildConfig(env: Env): CodeBuildConfig {
  const project = env[CODEBUILD_VARIABLES.project]?.trim();
  const dockerProject = env[CODEBUILD_VARIABLES.dockerProject]?.trim();
  const rawTimeout = env[CODEBUILD_VARIABLES.timeoutMinutes]?.trim();
  const timeoutMinutes = rawTimeout ? Number(rawTimeout) : 60;
  const problems: string[] = [];
  if (!Number.isInteger(timeoutMinutes) || timeoutMinutes < 5 || timeoutMinutes > 480) {
    problems.push(
      `${CODEBUILD_VARIABLES.timeoutMinutes} must be a whole number of minutes from 5 to 480, CodeBuild's bounds (got "${rawTimeout ?? ''}")`,
    );
  }
  if (dockerProject && !project) {
    problems.push(
      `${CODEBUILD_VARIABLES.dockerProject} is set without ${CODEBUILD_VARIABLES.project}: set both`,
    );
  }
  if (problems.length > 0) throw new ConfigurationError(problems);
  return { ...(project ? { project } : {}), ...(dockerProject ? { dockerProject } : {}), timeoutMinutes };
}

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
  const jobConcurrency = text('jobConcurrency') ? wholeNumber('jobConcurrency', 1, 'jobs') : undefined;
  const secrets = text('webhookSecrets')
    .split(',')
    .map((secret) => secret.trim())
    .filter(Boolean);
  const app = githubApp(text, problems);
  const githubToken = text('githubToken') || undefined;
  if (githubToken && app.githubAppId) {
    problems.push(
      `${CONFIG_VARIABLES.githubToken} and ${CONFIG_VARIABLES.githubAppId} are both set: a deployment ` +
        'signs in with a token or as a GitHub App, not both; unset one',
    );
  }
  const config: LambkinConfig = {
    buildsTable: text('buildsTable'),
    settingsTable: text('settingsTable'),
    bucket: text('bucket'),
    builderFunction: text('builderFunction'),
    publicUrl: url('publicUrl', ''),
    githubApiUrl: url('githubApiUrl', DEFAULT_GITHUB_API_URL),
    githubToken,
    ...app,
    webhookSecrets: secrets,
    queueTimeoutSeconds,
    runnerFunction: text('runnerFunction'),
    untrustedRunnerFunction: text('untrustedRunnerFunction'),
    runnerTimeoutSeconds,
    logLimitBytes,
    ...(jobConcurrency !== undefined ? { jobConcurrency } : {}),
    secretArn: text('secretArn'),
    settingsKmsKey: text('settingsKmsKey'),
    uploadRole: text('uploadRole'),
    slackApiUrl: url('slackApiUrl', DEFAULT_SLACK_API_URL),
  };
  if (problems.length > 0) throw new ConfigurationError(problems);
  return config;
}

/** The App's id and private key (from the variable or the file), each checked. */
function githubApp(
  text: (key: keyof LambkinConfig) => string,
  problems: string[],
): Pick<LambkinConfig, 'githubAppId' | 'githubAppPrivateKey' | 'githubAppPrivateKeyFile'> {
  const githubAppId = text('githubAppId');
  const keyFile = text('githubAppPrivateKeyFile');
  let key = text('githubAppPrivateKey').replace(/\\n/g, '\n').trim();
  if (key && keyFile) {
    problems.push(
      `${CONFIG_VARIABLES.githubAppPrivateKey} and ${CONFIG_VARIABLES.githubAppPrivateKeyFile} are both set: use one`,
    );
  } else if (keyFile) {
    try {
      key = readFileSync(keyFile, 'utf8').trim();
      const exposed = keyFileExposure(keyFile, statSync(keyFile).mode);
      if (exposed) problems.push(`${CONFIG_VARIABLES.githubAppPrivateKeyFile} names ${exposed}`);
    } catch (error) {
      const reason = (error as NodeJS.ErrnoException).code ?? String(error);
      problems.push(
        `${CONFIG_VARIABLES.githubAppPrivateKeyFile} names ${keyFile}, which cannot be read (${reason})`,
      );
    }
  }
  if (githubAppId && !/^[0-9]+$|^Iv[0-9A-Za-z.]+$/.test(githubAppId)) {
    problems.push(`${CONFIG_VARIABLES.githubAppId} must be the App's id (a number) or client id (Iv…)`);
  }
  if (githubAppId && !key) {
    problems.push(
      `${CONFIG_VARIABLES.githubAppId} is set without the App's private key: set ` +
        `${CONFIG_VARIABLES.githubAppPrivateKey} (the PEM text) or ${CONFIG_VARIABLES.githubAppPrivateKeyFile}`,
    );
  } else if (key && !githubAppId) {
    problems.push(`the App's private key is set without ${CONFIG_VARIABLES.githubAppId}`);
  } else if (key && !/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(key)) {
    // Never quote it: part of a key is still a secret.
    problems.push(`the App's private key is not a PEM private key (-----BEGIN RSA PRIVATE KEY-----…)`);
  }
  return { githubAppId, githubAppPrivateKey: key, githubAppPrivateKeyFile: keyFile };
}

/**
 * Why a file holding the App's key may not be used, or undefined: other users may read or change
 * it (group or other bits set, as ssh refuses a key). Locally a build step runs as a user of its
 * own, which could otherwise read the key and act as the App on every repository it is installed on.
 */
export function keyFileExposure(file: string, mode: number): string | undefined {
  if (process.platform === 'win32' || (mode & 0o077) === 0) return undefined;
  const octal = (mode & 0o777).toString(8).padStart(4, '0');
  return (
    `${file}, which other users may read or change (mode ${octal}): a build step running as another ` +
    `user could take the App's key. Make it yours alone: chmod 600 ${file}`
  );
}

/** How a deployment signs in to GitHub: as an App, with a token, or not at all. */
export type GitHubMode = 'app' | 'token' | 'anonymous';

export function githubModeOf(config: Pick<LambkinConfig, 'githubAppId' | 'githubToken'>): GitHubMode {
  return config.githubAppId ? 'app' : config.githubToken ? 'token' : 'anonymous';
}

/** One line for `lambkin dev` and the docs: which mode, and what GitHub is told in it. */
export function describeGitHubMode(config: Pick<LambkinConfig, 'githubAppId' | 'githubToken'>): string {
  switch (githubModeOf(config)) {
    case 'app':
      return `GitHub: App ${config.githubAppId} (check runs and commit statuses, installation tokens per repository)`;
    case 'token':
      return 'GitHub: token (commit statuses)';
    case 'anonymous':
      return 'GitHub: no token (statuses are not sent)';
  }
}

/** How a function signs in to GitHub: a token, or an App's id and key (one or the other). */
const GITHUB_CREDENTIAL_KEYS = [
  'githubToken',
  'githubAppId',
  'githubAppPrivateKey',
  'githubAppPrivateKeyFile',
] as const satisfies readonly (keyof LambkinConfig)[];

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
      ...GITHUB_CREDENTIAL_KEYS,
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
      'jobConcurrency',
      'secretArn',
      ...GITHUB_CREDENTIAL_KEYS,
      'settingsKmsKey',
      'uploadRole',
    ],
  },
  runner: { required: [], optional: [] },
  sweeper: {
    required: ['buildsTable'],
    optional: ['publicUrl', 'githubApiUrl', 'secretArn', ...GITHUB_CREDENTIAL_KEYS],
  },
  failure: {
    required: ['buildsTable'],
    optional: ['publicUrl', 'githubApiUrl', 'secretArn', ...GITHUB_CREDENTIAL_KEYS],
  },
  logs: { required: ['buildsTable', 'bucket'], optional: [] },
  // CodeBuild's completion events (src/handlers/codebuild-events.ts): finishes builds as the builder does.
  codebuildEvents: {
    required: ['buildsTable', 'settingsTable', 'bucket'],
    optional: [
      'publicUrl',
      'githubApiUrl',
      'logLimitBytes',
      'secretArn',
      ...GITHUB_CREDENTIAL_KEYS,
      'settingsKmsKey',
    ],
  },
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
export const CLOUD_SECRET_KEYS: readonly (keyof LambkinConfig)[] = [
  ...GITHUB_CREDENTIAL_KEYS,
  'webhookSecrets',
];

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
