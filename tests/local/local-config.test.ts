/** Which documented variables the embedded stack reads, and what `lambkin dev` says about the rest. */
import { CONFIG_VARIABLES, loadConfig } from '../../src/config.js';
import { describeLocalConfig, localEnvironment } from '../../src/local/local-config.js';

/** Every documented variable set, as in a shell that deployed a stack and also works locally. */
const EVERYTHING: Record<string, string> = {
  LAMBKIN_BUILDS_TABLE: 'cloud-builds',
  LAMBKIN_SETTINGS_TABLE: 'cloud-settings',
  LAMBKIN_BUCKET: 'cloud-logs',
  LAMBKIN_BUILDER_FUNCTION: 'cloud-builder',
  LAMBKIN_PUBLIC_URL: 'https://ci.example.com',
  GITHUB_API_URL: 'https://github.example.com/api/v3',
  GITHUB_TOKEN: 'ghp_secretToken',
  // App mode's (refused beside GITHUB_TOKEN by loadConfig; here only their names are read).
  LAMBKIN_GITHUB_APP_ID: '123456',
  LAMBKIN_GITHUB_APP_PRIVATE_KEY: '-----BEGIN RSA PRIVATE KEY-----\nsecret\n-----END RSA PRIVATE KEY-----',
  LAMBKIN_GITHUB_APP_PRIVATE_KEY_FILE: '/etc/lambkin/app.pem',
  LAMBKIN_WEBHOOK_SECRET: 'webhook-secret',
  LAMBKIN_QUEUE_TIMEOUT_SECONDS: '300',
  LAMBKIN_RUNNER_FUNCTION: 'cloud-runner',
  LAMBKIN_UNTRUSTED_RUNNER_FUNCTION: 'cloud-untrusted-runner',
  LAMBKIN_RUNNER_TIMEOUT_SECONDS: '600',
  LAMBKIN_LOG_LIMIT_BYTES: '65536',
  LAMBKIN_JOB_CONCURRENCY: '8',
  LAMBKIN_SECRET_ARN: 'arn:aws:secretsmanager:us-east-1:123456789012:secret:lambkin-AbCdEf',
  LAMBKIN_SETTINGS_KMS_KEY: '1234abcd-12ab-34cd-56ef-1234567890ab',
  LAMBKIN_UPLOAD_ROLE: 'arn:aws:iam::123456789012:role/upload',
  LAMBKIN_SLACK_API_URL: 'http://127.0.0.1:8099/api',
};

describe('the local stack and the documented variables', () => {
  it('covers every documented variable in the test', () => {
    expect(Object.keys(EVERYTHING).sort()).toEqual(Object.values(CONFIG_VARIABLES).sort());
  });

  it('takes from the environment only what applies on a laptop and is not a flag of lambkin dev', () => {
    expect(localEnvironment({ ...EVERYTHING, LAMBKIN_DEBUG: '1', PATH: '/bin' })).toEqual({
      LAMBKIN_QUEUE_TIMEOUT_SECONDS: '300',
      LAMBKIN_RUNNER_TIMEOUT_SECONDS: '600',
      LAMBKIN_LOG_LIMIT_BYTES: '65536',
      LAMBKIN_SLACK_API_URL: 'http://127.0.0.1:8099/api',
    });
    expect(localEnvironment({ LAMBKIN_SLACK_API_URL: '  ' })).toEqual({});
  });

  it('says what it took, what it overrides and what it ignored, never a secret', () => {
    const config = loadConfig(
      {
        ...localEnvironment(EVERYTHING),
        LAMBKIN_BUILDS_TABLE: 'lambkin-builds',
        LAMBKIN_SETTINGS_TABLE: 'lambkin-settings',
        LAMBKIN_BUCKET: 'lambkin-logs',
        LAMBKIN_BUILDER_FUNCTION: 'lambkin-builder',
        LAMBKIN_PUBLIC_URL: 'http://127.0.0.1:3000',
        GITHUB_TOKEN: 'ghp_secretToken',
        LAMBKIN_WEBHOOK_SECRET: 'webhook-secret',
      },
      [],
    );
    const lines = describeLocalConfig(config, EVERYTHING);
    expect(lines).toEqual([
      'from the environment: LAMBKIN_QUEUE_TIMEOUT_SECONDS=300 LAMBKIN_RUNNER_TIMEOUT_SECONDS=600 ' +
        'LAMBKIN_LOG_LIMIT_BYTES=65536 LAMBKIN_SLACK_API_URL=http://127.0.0.1:8099/api',
      'overrides: LAMBKIN_BUILDS_TABLE=lambkin-builds LAMBKIN_SETTINGS_TABLE=lambkin-settings ' +
        'LAMBKIN_BUCKET=lambkin-logs LAMBKIN_BUILDER_FUNCTION=lambkin-builder ' +
        'LAMBKIN_PUBLIC_URL=http://127.0.0.1:3000',
      'not used locally: LAMBKIN_RUNNER_FUNCTION LAMBKIN_UNTRUSTED_RUNNER_FUNCTION LAMBKIN_SECRET_ARN LAMBKIN_SETTINGS_KMS_KEY LAMBKIN_UPLOAD_ROLE LAMBKIN_JOB_CONCURRENCY',
      'ignored from the environment: LAMBKIN_BUILDS_TABLE LAMBKIN_SETTINGS_TABLE LAMBKIN_BUCKET ' +
        'LAMBKIN_BUILDER_FUNCTION LAMBKIN_PUBLIC_URL LAMBKIN_RUNNER_FUNCTION LAMBKIN_UNTRUSTED_RUNNER_FUNCTION ' +
        'LAMBKIN_SECRET_ARN ' +
        'LAMBKIN_SETTINGS_KMS_KEY LAMBKIN_UPLOAD_ROLE LAMBKIN_JOB_CONCURRENCY',
    ]);
    expect(lines.join('\n')).not.toMatch(/ghp_secretToken|webhook-secret/);
    // Nothing set: only what it overrides and what does not apply.
    expect(describeLocalConfig(config, {}).map((line) => line.split(':')[0])).toEqual([
      'overrides',
      'not used locally',
    ]);
  });
});
