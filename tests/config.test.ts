import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  describeConfig,
  describeGitHubMode,
  githubModeOf,
  loadCodeBuildConfig,
  loadConfig,
} from '../src/config.js';
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
      githubAppId: '',
      githubAppPrivateKey: '',
      githubAppPrivateKeyFile: '',
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

describe('GitHub App mode', () => {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pem = privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
  const { GITHUB_TOKEN: _token, ...withoutToken } = complete;
  const problemsOf = (env: Record<string, string>): string[] => {
    try {
      loadConfig(env, []);
    } catch (error) {
      if (error instanceof ConfigurationError) return [...error.problems];
      throw error;
    }
    return [];
  };

  it('takes the App id and the key from the variable, its \\n escapes included, or from a file', () => {
    const fromText = loadConfig(
      {
        ...withoutToken,
        LAMBKIN_GITHUB_APP_ID: '42',
        LAMBKIN_GITHUB_APP_PRIVATE_KEY: pem.replace(/\n/g, '\\n'),
      },
      [],
    );
    expect(fromText.githubAppPrivateKey).toBe(pem.trim());
    expect(fromText.githubAppPrivateKey).toContain('\n');
    expect(githubModeOf(fromText)).toBe('app');
    expect(describeGitHubMode(fromText)).toMatch(/^GitHub: App 42 \(check runs/);
    const folder = mkdtempSync(join(tmpdir(), 'lambkin-config-'));
    try {
      const file = join(folder, 'app.pem');
      writeFileSync(file, pem, { mode: 0o600 });
      const fromFile = loadConfig(
        { ...withoutToken, LAMBKIN_GITHUB_APP_ID: '42', LAMBKIN_GITHUB_APP_PRIVATE_KEY_FILE: file },
        [],
      );
      expect(fromFile.githubAppPrivateKey).toBe(pem.trim());
      expect(describeConfig(fromFile).LAMBKIN_GITHUB_APP_PRIVATE_KEY).toBe('***');
      expect(JSON.stringify(describeConfig(fromFile))).not.toContain('PRIVATE KEY-----');
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  });

  it('says which mode a deployment is in', () => {
    expect(describeGitHubMode(loadConfig(complete, []))).toBe('GitHub: token (commit statuses)');
    expect(describeGitHubMode(loadConfig(withoutToken, []))).toBe('GitHub: no token (statuses are not sent)');
  });

  it('refuses a token and an App together, a half-set App, an unreadable key file and a key that is no PEM', () => {
    expect(
      problemsOf({ ...complete, LAMBKIN_GITHUB_APP_ID: '42', LAMBKIN_GITHUB_APP_PRIVATE_KEY: pem }),
    ).toEqual([
      'GITHUB_TOKEN and LAMBKIN_GITHUB_APP_ID are both set: a deployment signs in with a token or as a GitHub App, not both; unset one',
    ]);
    expect(problemsOf({ ...withoutToken, LAMBKIN_GITHUB_APP_ID: '42' })).toEqual([
      "LAMBKIN_GITHUB_APP_ID is set without the App's private key: set LAMBKIN_GITHUB_APP_PRIVATE_KEY (the PEM text) or LAMBKIN_GITHUB_APP_PRIVATE_KEY_FILE",
    ]);
    expect(problemsOf({ ...withoutToken, LAMBKIN_GITHUB_APP_PRIVATE_KEY: pem })).toEqual([
      "the App's private key is set without LAMBKIN_GITHUB_APP_ID",
    ]);
    expect(
      problemsOf({
        ...withoutToken,
        LAMBKIN_GITHUB_APP_ID: '42',
        LAMBKIN_GITHUB_APP_PRIVATE_KEY_FILE: '/nonexistent/app.pem',
      }),
    ).toEqual([
      'LAMBKIN_GITHUB_APP_PRIVATE_KEY_FILE names /nonexistent/app.pem, which cannot be read (ENOENT)',
      "LAMBKIN_GITHUB_APP_ID is set without the App's private key: set LAMBKIN_GITHUB_APP_PRIVATE_KEY (the PEM text) or LAMBKIN_GITHUB_APP_PRIVATE_KEY_FILE",
    ]);
    const shown = problemsOf({
      ...withoutToken,
      LAMBKIN_GITHUB_APP_ID: '42',
      LAMBKIN_GITHUB_APP_PRIVATE_KEY: 'Sup3rS3cret',
    });
    expect(shown).toEqual([
      "the App's private key is not a PEM private key (-----BEGIN RSA PRIVATE KEY-----…)",
    ]);
    expect(
      problemsOf({ ...withoutToken, LAMBKIN_GITHUB_APP_ID: 'my app', LAMBKIN_GITHUB_APP_PRIVATE_KEY: pem }),
    ).toEqual(["LAMBKIN_GITHUB_APP_ID must be the App's id (a number) or client id (Iv…)"]);
  });
});

describe('loadCodeBuildConfig', () => {
  it('is off without a project, 60 minutes by default', () => {
    expect(loadCodeBuildConfig({})).toEqual({ timeoutMinutes: 60 });
    expect(
      loadCodeBuildConfig({
        LAMBKIN_CODEBUILD_PROJECT: 'lambkin-builds',
        LAMBKIN_CODEBUILD_DOCKER_PROJECT: 'lambkin-docker',
        LAMBKIN_CODEBUILD_TIMEOUT_MINUTES: '120',
      }),
    ).toEqual({ project: 'lambkin-builds', dockerProject: 'lambkin-docker', timeoutMinutes: 120 });
  });

  it("refuses a timeout outside CodeBuild's bounds and a Docker project alone, naming every problem", () => {
    expect(() => loadCodeBuildConfig({ LAMBKIN_CODEBUILD_TIMEOUT_MINUTES: '481' })).toThrow(
      ConfigurationError,
    );
    let thrown: unknown;
    try {
      loadCodeBuildConfig({ LAMBKIN_CODEBUILD_DOCKER_PROJECT: 'd', LAMBKIN_CODEBUILD_TIMEOUT_MINUTES: '4' });
    } catch (error) {
      thrown = error;
    }
    expect((thrown as ConfigurationError).problems).toEqual([
      'LAMBKIN_CODEBUILD_TIMEOUT_MINUTES must be a whole number of minutes from 5 to 480, CodeBuild\'s bounds (got "4")',
      'LAMBKIN_CODEBUILD_DOCKER_PROJECT is set without LAMBKIN_CODEBUILD_PROJECT: set both',
    ]);
  });
});
