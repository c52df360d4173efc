import { describeConfig, loadConfig } from '../src/config.js';
import { ConfigurationError } from '../src/core/errors.js';

const complete = {
  LAMBKIN_BUILDS_TABLE: 'builds',
  LAMBKIN_SETTINGS_TABLE: 'settings',
  LAMBKIN_BUCKET: 'logs',
  LAMBKIN_BUILDER_FUNCTION: 'builder',
  LAMBKIN_PUBLIC_URL: 'https://ci.example.test/',
  LAMBKIN_WEBHOOK_SECRET: 'new-secret, old-secret',
  GITHUB_TOKEN: 'ghp_token',
};

describe('process configuration', () => {
  it('reads every variable, with defaults', () => {
    const config = loadConfig(complete, ['buildsTable', 'webhookSecrets']);
    expect(config).toEqual({
      buildsTable: 'builds',
      settingsTable: 'settings',
      bucket: 'logs',
      builderFunction: 'builder',
      publicUrl: 'https://ci.example.test',
      githubApiUrl: 'https://api.github.com',
      githubToken: 'ghp_token',
      webhookSecrets: ['new-secret', 'old-secret'],
      queueTimeoutSeconds: 1200,
      runnerFunction: '',
      untrustedRunnerFunction: '',
      runnerTimeoutSeconds: 840,
      logLimitBytes: 4194304,
      secretArn: '',
      settingsKmsKey: '',
      slackApiUrl: 'https://slack.com/api',
      uploadRole: '',
    });
  });

  it('reports every problem at once', () => {
    let error: unknown;
    try {
      loadConfig({ LAMBKIN_PUBLIC_URL: 'ftp://x', LAMBKIN_QUEUE_TIMEOUT_SECONDS: 'soon' }, [
        'buildsTable',
        'builderFunction',
        'webhookSecrets',
      ]);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigurationError);
    expect([...(error as ConfigurationError).problems].sort()).toEqual([
      'LAMBKIN_BUILDER_FUNCTION is not set',
      'LAMBKIN_BUILDS_TABLE is not set',
      'LAMBKIN_PUBLIC_URL must be an http(s) URL (got "ftp://x")',
      'LAMBKIN_QUEUE_TIMEOUT_SECONDS must be a whole number of seconds',
      'LAMBKIN_WEBHOOK_SECRET is not set',
    ]);
  });

  it('never prints secrets', () => {
    const described = describeConfig(loadConfig(complete, []));
    expect(described.GITHUB_TOKEN).toBe('***');
    expect(described.LAMBKIN_WEBHOOK_SECRET).toBe('***');
    expect(JSON.stringify(described)).not.toMatch(/secret|ghp_token/);
    expect(described.LAMBKIN_BUCKET).toBe('logs');
  });
});
