/**
 * Every function's environment in template.yaml is exactly what FUNCTION_CONFIG (src/config.ts)
 * says it reads, each variable set from the right resource or parameter, and never a secret: the
 * GitHub token and the webhook secret come from the Secrets Manager secret LAMBKIN_SECRET_ARN names.
 */
import {
  CLOUD_SECRET_KEYS,
  CODEBUILD_VARIABLES,
  CONFIG_VARIABLES,
  FUNCTION_CONFIG,
  type FunctionName,
  type LambkinConfig,
} from '../../src/config.js';
import { CONTAINER_HYGIENE_VARIABLE } from '../../src/runner/container-hygiene.js';
import { RUNNER_NODE_OPTIONS } from '../../src/core/protocol.js';
import { RUNNER_TRUST_VARIABLE } from '../../src/handlers/runner.js';
import {
  CODEBUILD_FUNCTIONS,
  FUNCTION_RESOURCES,
  RUNNER_FUNCTIONS,
  environmentOf,
  isObject,
  loadTemplate,
  resource,
  type Json,
} from '../support/template.js';

const template = loadTemplate();

/** Where each configuration value comes from in the template. */
/** The cloud secret's (CLOUD_SECRET_KEYS): never in the template. */
type FromSecret =
  'githubToken' | 'githubAppId' | 'githubAppPrivateKey' | 'githubAppPrivateKeyFile' | 'webhookSecrets';
const SOURCE_OF: Record<Exclude<keyof LambkinConfig, FromSecret>, Json> = {
  buildsTable: { Ref: 'BuildsTable' },
  settingsTable: { Ref: 'SettingsTable' },
  bucket: { Ref: 'LogsBucket' },
  builderFunction: { Ref: 'BuilderFunction' },
  runnerFunction: { Ref: 'RunnerFunction' },
  untrustedRunnerFunction: { Ref: 'UntrustedRunnerFunction' },
  publicUrl: { Ref: 'PublicUrl' },
  githubApiUrl: { Ref: 'GitHubApiUrl' },
  queueTimeoutSeconds: { Ref: 'QueueTimeoutSeconds' },
  runnerTimeoutSeconds: { Ref: 'RunnerTimeout' },
  logLimitBytes: { Ref: 'LogLimitBytes' },
  jobConcurrency: {
    'Fn::If': ['HasBuilderConcurrency', { Ref: 'BuilderConcurrency' }, { Ref: 'AWS::NoValue' }],
  },
  secretArn: { Ref: 'SecretArn' },
  settingsKmsKey: { Ref: 'SettingsKey' },
  uploadRole: { 'Fn::GetAtt': ['UploadRole', 'Arn'] },
  slackApiUrl: 'https://slack.com/api',
};

/** CodeBuild's variables (read apart from LambkinConfig): unset unless the operator enables them. */
const CODEBUILD_SOURCE_OF: Record<keyof typeof CODEBUILD_VARIABLES, Json> = {
  project: { 'Fn::If': ['HasCodeBuild', { Ref: 'CodeBuildProject' }, { Ref: 'AWS::NoValue' }] },
  dockerProject: {
    'Fn::If': ['HasCodeBuildDocker', { Ref: 'CodeBuildDockerProject' }, { Ref: 'AWS::NoValue' }],
  },
  timeoutMinutes: { Ref: 'CodeBuildTimeoutMinutes' },
};

/**
 * The source a function gets: in a function that exists only under a condition (the CodeBuild
 * events function), a value set only under that same condition is set plainly (cfn-lint: the
 * other branch is unreachable).
 */
function sourceIn(logicalId: string, source: Json): Json {
  const condition = resource(template, logicalId).Condition;
  const branches = isObject(source) ? source['Fn::If'] : undefined;
  if (condition && Array.isArray(branches) && branches[0] === condition) return branches[1] ?? null;
  return source;
}

const functions = Object.keys(FUNCTION_CONFIG) as FunctionName[];

function readsOf(name: FunctionName): (keyof LambkinConfig)[] {
  const config = FUNCTION_CONFIG[name];
  return [...config.required, ...config.optional];
}

describe('function environments', () => {
  it.each(functions)('%s: exactly the variables FUNCTION_CONFIG names, secrets excepted', (name) => {
    const expected = readsOf(name)
      .filter((key) => !CLOUD_SECRET_KEYS.includes(key))
      .map((key): string => CONFIG_VARIABLES[key])
      // The runner loads no configuration; it reads which builds it runs and whether it sweeps.
      .concat(name === 'runner' ? [RUNNER_TRUST_VARIABLE, CONTAINER_HYGIENE_VARIABLE, 'NODE_OPTIONS'] : [])
      // Those that start, stop or finish CodeBuild runs read CodeBuild's variables besides.
      .concat(CODEBUILD_FUNCTIONS.includes(name) ? Object.values(CODEBUILD_VARIABLES) : [])
      .sort();
    expect(Object.keys(environmentOf(template, FUNCTION_RESOURCES[name])).sort()).toEqual(expected);
  });

  it.each(functions)('%s: each variable from the right resource or parameter', (name) => {
    const environment = environmentOf(template, FUNCTION_RESOURCES[name]);
    for (const key of readsOf(name)) {
      if (CLOUD_SECRET_KEYS.includes(key)) continue;
      const source = sourceIn(FUNCTION_RESOURCES[name], SOURCE_OF[key as keyof typeof SOURCE_OF]);
      expect([CONFIG_VARIABLES[key], environment[CONFIG_VARIABLES[key]]]).toEqual([
        CONFIG_VARIABLES[key],
        source,
      ]);
    }
  });

  it.each(CODEBUILD_FUNCTIONS)(
    '%s: CodeBuild variables from the projects and the time limit parameter',
    (name) => {
      const environment = environmentOf(template, FUNCTION_RESOURCES[name]);
      for (const [key, variable] of Object.entries(CODEBUILD_VARIABLES)) {
        const source = sourceIn(
          FUNCTION_RESOURCES[name],
          CODEBUILD_SOURCE_OF[key as keyof typeof CODEBUILD_VARIABLES],
        );
        expect([variable, environment[variable]]).toEqual([variable, source]);
      }
    },
  );

  it.each(functions)('%s: reads secrets only through LAMBKIN_SECRET_ARN', (name) => {
    const environment = environmentOf(template, FUNCTION_RESOURCES[name]);
    const secrets = readsOf(name).filter((key) => CLOUD_SECRET_KEYS.includes(key));
    for (const key of CLOUD_SECRET_KEYS) expect(environment[CONFIG_VARIABLES[key]]).toBeUndefined();
    if (secrets.length > 0) expect(environment.LAMBKIN_SECRET_ARN).toEqual({ Ref: 'SecretArn' });
  });

  it('sets no variable for every function at once (Globals); the runners get their kind and the hygiene', () => {
    expect(template.Globals?.Function?.Environment).toBeUndefined();
    for (const [trust, logicalId] of Object.entries(RUNNER_FUNCTIONS)) {
      expect([logicalId, environmentOf(template, logicalId)]).toEqual([
        logicalId,
        {
          [RUNNER_TRUST_VARIABLE]: trust,
          [CONTAINER_HYGIENE_VARIABLE]: '1',
          NODE_OPTIONS: RUNNER_NODE_OPTIONS,
        },
      ]);
    }
  });

  it('never gives a function the API URL (a dependency cycle): links come from the request host', () => {
    const text = JSON.stringify(functions.map((name) => environmentOf(template, FUNCTION_RESOURCES[name])));
    expect(text).not.toContain('HttpApi');
    expect(template.Parameters.PublicUrl?.Default).toBe('');
  });

  it('names every secret variable nowhere in the template', () => {
    const text = JSON.stringify(template);
    for (const key of CLOUD_SECRET_KEYS) expect(text).not.toContain(CONFIG_VARIABLES[key]);
  });
});
