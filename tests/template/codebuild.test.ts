/**
 * The CodeBuild part of template.yaml (docs/codebuild.md): the project and its buildspec (the
 * contract's three steps), the privileged project only with CodeBuildDocker, CodeBuild's own logs
 * off, the completion rule and its function, and all of it gone with CodeBuild=disabled. The roles'
 * grants are checked in iam.test.ts, the variables in environment.test.ts.
 */
import { parse } from 'yaml';
import { RUNNER_NODE_OPTIONS } from '../../src/core/protocol.js';
import {
  isObject,
  loadTemplate,
  properties,
  resource,
  type Json,
  type JsonObject,
} from '../support/template.js';

const template = loadTemplate();

/** The buildspec's commands, as the local endpoint (src/local/codebuild-service.ts) performs them. */
const BUILDSPEC_COMMANDS = [
  'curl -fsS --retry 3 -o /tmp/lambkin-runner.mjs "$LAMBKIN_RUNNER_URL"',
  'echo "$LAMBKIN_RUNNER_SHA256  /tmp/lambkin-runner.mjs" | sha256sum -c -',
  `node ${RUNNER_NODE_OPTIONS} /tmp/lambkin-runner.mjs --input-url "$LAMBKIN_RUNNER_INPUT_URL"`,
];

function buildspecOf(logicalId: string): JsonObject {
  const source = properties(template, logicalId).Source as JsonObject;
  expect(typeof source.BuildSpec).toBe('string');
  return parse(String(source.BuildSpec)) as JsonObject;
}

/** Every resource and output whose existence depends on a condition, by condition. */
function conditional(condition: string): string[] {
  return [
    ...Object.entries(template.Resources)
      .filter(([, item]) => item.Condition === condition)
      .map(([logicalId]) => logicalId),
    ...Object.entries(template.Outputs)
      .filter(([, output]) => (output as { Condition?: string }).Condition === condition)
      .map(([name]) => `output ${name}`),
  ].sort();
}

describe('CodeBuild in template.yaml', () => {
  it('has the parameters: on by default, Docker off by default, the time limit within 5..50 minutes (the upload role’s hour)', () => {
    expect(template.Parameters.CodeBuild).toMatchObject({
      Default: 'enabled',
      AllowedValues: ['enabled', 'disabled'],
    });
    expect(template.Parameters.CodeBuildDocker).toMatchObject({
      Default: 'disabled',
      AllowedValues: ['enabled', 'disabled'],
    });
    expect(template.Parameters.CodeBuildTimeoutMinutes).toMatchObject({
      Type: 'Number',
      Default: 50,
      MinValue: 5,
      MaxValue: 50,
    });
    expect(template.Conditions?.HasCodeBuild).toEqual({ 'Fn::Equals': [{ Ref: 'CodeBuild' }, 'enabled'] });
    expect(template.Conditions?.HasCodeBuildDocker).toEqual({
      'Fn::And': [{ Condition: 'HasCodeBuild' }, { 'Fn::Equals': [{ Ref: 'CodeBuildDocker' }, 'enabled'] }],
    });
  });

  it('makes nothing of CodeBuild when it is disabled, and the privileged project only with Docker', () => {
    expect(conditional('HasCodeBuild')).toEqual([
      'CodeBuildEventsFunction',
      'CodeBuildEventsLogGroup',
      'CodeBuildProject',
      'CodeBuildRole',
      'output CodeBuildProjectName',
    ]);
    expect(conditional('HasCodeBuildDocker')).toEqual([
      'CodeBuildDockerProject',
      'output CodeBuildDockerProjectName',
    ]);
    // Everything that names a CodeBuild resource outside those is itself under the condition
    // (statements and variables: `!If [HasCodeBuild...]`), checked in iam.test.ts and environment.test.ts.
  });

  it.each(['CodeBuildProject', 'CodeBuildDockerProject'])(
    '%s: no source, no artifacts, logs off in CodeBuild, the standard image, small by default, the time limit parameter',
    (logicalId) => {
      const project = properties(template, logicalId);
      expect(resource(template, logicalId).Type).toBe('AWS::CodeBuild::Project');
      expect(project.Source).toEqual({ Type: 'NO_SOURCE', BuildSpec: expect.any(String) });
      expect(project.Artifacts).toEqual({ Type: 'NO_ARTIFACTS' });
      expect(project.LogsConfig).toEqual({
        CloudWatchLogs: { Status: 'DISABLED' },
        S3Logs: { Status: 'DISABLED' },
      });
      expect(project.Environment).toEqual({
        Type: 'LINUX_CONTAINER',
        ComputeType: 'BUILD_GENERAL1_SMALL',
        Image: 'aws/codebuild/standard:7.0',
        ImagePullCredentialsType: 'CODEBUILD',
        PrivilegedMode: logicalId === 'CodeBuildDockerProject',
      });
      expect(project.TimeoutInMinutes).toEqual({ Ref: 'CodeBuildTimeoutMinutes' });
      // Nothing that would hold or reach anything: no cache, no VPC, no secrets, no webhook, no name
      // (CloudFormation names it, so two stacks never collide).
      for (const absent of [
        'Cache',
        'VpcConfig',
        'SecondarySources',
        'Triggers',
        'FileSystemLocations',
        'Name',
      ]) {
        expect([logicalId, absent, project[absent]]).toEqual([logicalId, absent, undefined]);
      }
      expect((project.Environment as JsonObject).EnvironmentVariables).toBeUndefined();
    },
  );

  it("runs the contract's three steps: fetch the runner bundle, check its hash, run it on its input URL", () => {
    const spec = buildspecOf('CodeBuildProject');
    expect(spec.version).toBe(0.2);
    expect(spec.phases).toEqual({
      install: { 'runtime-versions': { nodejs: 22 } },
      build: { commands: BUILDSPEC_COMMANDS },
    });
    // No environment of its own: the variables are the builder's overrides, all of them URLs or
    // names (the input itself is never in the environment).
    expect(spec.env).toEqual({ shell: 'bash' });
    // Both projects run the same steps (CloudFormation has no YAML aliases: written twice).
    expect(buildspecOf('CodeBuildDockerProject')).toEqual(spec);
    const { PrivilegedMode: _a, ...plain } = properties(template, 'CodeBuildProject')
      .Environment as JsonObject;
    const { PrivilegedMode: _b, ...docker } = properties(template, 'CodeBuildDockerProject')
      .Environment as JsonObject;
    expect(docker).toEqual(plain);
  });

  it("sends this stack's completed builds, and only those, to the CodeBuild events function", () => {
    const fn = properties(template, 'CodeBuildEventsFunction');
    expect(fn.CodeUri).toBe('dist/functions/codebuildEvents/');
    const events = fn.Events as Record<string, { Type: string; Properties: JsonObject }>;
    expect(Object.keys(events)).toEqual(['BuildCompleted']);
    expect(events.BuildCompleted?.Type).toBe('EventBridgeRule');
    expect(events.BuildCompleted?.Properties.Pattern).toEqual({
      source: ['aws.codebuild'],
      'detail-type': ['CodeBuild Build State Change'],
      detail: {
        'project-name': {
          'Fn::If': [
            'HasCodeBuildDocker',
            [{ Ref: 'CodeBuildProject' }, { Ref: 'CodeBuildDockerProject' }],
            [{ Ref: 'CodeBuildProject' }],
          ],
        },
        'build-status': ['SUCCEEDED', 'FAILED', 'FAULT', 'STOPPED', 'TIMED_OUT'],
      },
    });
  });

  it("expires a CodeBuild run input the builder did not delete (it holds a trusted build's secrets)", () => {
    const bucket = properties(template, 'LogsBucket');
    const rules = (
      isObject(bucket.LifecycleConfiguration) ? bucket.LifecycleConfiguration.Rules : []
    ) as Json[];
    expect(rules).toContainEqual({
      Id: 'ExpireRunnerInputs',
      Status: 'Enabled',
      Prefix: 'runner-input/',
      ExpirationInDays: 1,
    });
  });
});
