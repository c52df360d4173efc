/**
 * The functions' roles in template.yaml: least privilege read statically (every statement names
 * resources of this stack that the function's configuration uses, no wildcards), and the mapping
 * from SDK commands to IAM actions that scripts/check-iam.ts and the bundle checks rely on.
 */
import { FUNCTION_CONFIG, type FunctionName, type LambkinConfig } from '../../src/config.js';
import {
  actionsOfCommand,
  actionsOfCommandLog,
  actionsOfImport,
  coverage,
  sdkUseOf,
  UnknownSdkCommandError,
} from '../../scripts/iam-actions.js';
import {
  CODEBUILD_ACTIONS_OF,
  CODEBUILD_FUNCTIONS,
  FUNCTION_RESOURCES,
  actionCovers,
  grantsOf,
  loadTemplate,
  properties,
  referencedNames,
  resource,
  type Grant,
  type Json,
} from '../support/template.js';

const template = loadTemplate();
const functions = Object.keys(FUNCTION_CONFIG) as FunctionName[];
const grants = Object.fromEntries(
  functions.map((name) => [name, grantsOf(template, FUNCTION_RESOURCES[name])]),
) as Record<FunctionName, Grant[]>;

/** The template names a configuration key lets a function's role refer to, and their service. */
const RESOURCE_OF: Partial<Record<keyof LambkinConfig, { name: string; service: string }>> = {
  buildsTable: { name: 'BuildsTable', service: 'dynamodb' },
  settingsTable: { name: 'SettingsTable', service: 'dynamodb' },
  bucket: { name: 'LogsBucket', service: 's3' },
  builderFunction: { name: 'BuilderFunction', service: 'lambda' },
  runnerFunction: { name: 'RunnerFunction', service: 'lambda' },
  untrustedRunnerFunction: { name: 'UntrustedRunnerFunction', service: 'lambda' },
  secretArn: { name: 'SecretArn', service: 'secretsmanager' },
  settingsKmsKey: { name: 'SettingsKey', service: 'kms' },
  uploadRole: { name: 'UploadRole', service: 'sts' },
};

function readsOf(name: FunctionName): (keyof LambkinConfig)[] {
  return [...FUNCTION_CONFIG[name].required, ...FUNCTION_CONFIG[name].optional];
}

function statementsOn(name: FunctionName, action: string): Grant[] {
  return grants[name].filter((grant) => grant.actions.some((pattern) => actionCovers(pattern, action)));
}

/** What every function is expected to hold: `expected`'s entries, nothing for the others. */
function onlyFor<T>(expected: Partial<Record<FunctionName, T[]>>): Record<FunctionName, T[]> {
  return Object.fromEntries(functions.map((name) => [name, expected[name] ?? []])) as Record<
    FunctionName,
    T[]
  >;
}

describe('function roles', () => {
  it.each(functions)('%s: allow statements only, no wildcard action, no "*" or literal resource', (name) => {
    for (const grant of grants[name]) {
      expect([grant.sid, grant.effect]).toEqual([grant.sid, 'Allow']);
      for (const action of grant.actions) expect(action).toMatch(/^[a-z0-9-]+:[A-Za-z0-9]+$/);
      expect(grant.resources.length).toBeGreaterThan(0);
      for (const entry of grant.resources) {
        expect([grant.sid, referencedNames(entry).length]).not.toEqual([grant.sid, 0]);
      }
    }
  });

  it.each(functions)('%s: only the resources its configuration names, each with its own service', (name) => {
    const allowed = new Map(
      readsOf(name)
        .map((key) => RESOURCE_OF[key])
        .filter((entry) => entry !== undefined)
        .map((entry) => [entry.name, entry.service]),
    );
    // The runner's role writes its own log group; it is checked on its own below.
    if (name === 'runner') allowed.set('RunnerLogGroup', 'logs');
    // The builder assumes the deploy roles the operator lists, for deploy steps.
    if (name === 'builder') allowed.set('DeployRoleArns', 'sts');
    // The builder invokes itself once per job of a build of several (by its own name, which Lambda gives it).
    if (name === 'builder') allowed.set('BuilderFunction', 'lambda');
    // The notifier publishes build results to the SNS topics the operator lists, and only those.
    if (name === 'notifier') allowed.set('NotificationTopicArns', 'sns');
    // CodeBuild's projects, named by CODEBUILD_VARIABLES (read apart from LambkinConfig).
    if (CODEBUILD_FUNCTIONS.includes(name)) {
      allowed.set('CodeBuildProject', 'codebuild');
      allowed.set('CodeBuildDockerProject', 'codebuild');
    }
    for (const grant of grants[name]) {
      for (const referenced of referencedNames(grant.resources as Json)) {
        expect([grant.sid, referenced, allowed.has(referenced)]).toEqual([grant.sid, referenced, true]);
        for (const action of grant.actions) {
          expect([grant.sid, action.split(':')[0]]).toEqual([grant.sid, allowed.get(referenced)]);
        }
      }
    }
  });

  it.each(functions)('%s: a DynamoDB Query is granted on the table indexes too', (name) => {
    for (const grant of statementsOn(name, 'dynamodb:Query')) {
      for (const table of referencedNames(grant.resources as Json)) {
        expect(grant.resources).toContainEqual({ 'Fn::Sub': `\${${table}.Arn}/index/*` });
      }
    }
  });

  /** The S3 object grants each function may hold outside logs/: prefix → function → actions. */
  const OBJECTS_ELSEWHERE: Record<string, Partial<Record<FunctionName, string[]>>> = {
    // Only the builder looks a cache entry up; the runner's access goes through UploadRole.
    'cache/*': { builder: ['s3:GetObject'] },
    // A CodeBuild run's input and outcome: the builder writes them and presigns the runner's GET,
    // DELETE and PUT; the events function reads the outcome and deletes what is left.
    'runner-input/*': {
      builder: ['s3:GetObject', 's3:PutObject', 's3:DeleteObject'],
      codebuildEvents: ['s3:GetObject', 's3:DeleteObject'],
    },
    // The runner bundle a CodeBuild build fetches: the builder uploads it and presigns its GET.
    'runner/*': { builder: ['s3:GetObject', 's3:PutObject'] },
  };

  it.each(functions)(
    '%s: S3 objects under logs/ (read and write), elsewhere only as OBJECTS_ELSEWHERE says; listing logs/ and cache/',
    (name) => {
      for (const grant of grants[name].filter((g) => g.actions.some((action) => action.startsWith('s3:')))) {
        const listing = grant.actions.filter((action) => action === 's3:ListBucket');
        if (listing.length > 0) {
          expect(grant.actions).toEqual(['s3:ListBucket']);
          expect(grant.resources).toEqual([{ 'Fn::GetAtt': ['LogsBucket', 'Arn'] }]);
          const prefixes = (grant.condition as { StringLike?: { 's3:prefix'?: unknown } }).StringLike?.[
            's3:prefix'
          ];
          expect([prefixes].flat().every((prefix) => prefix === 'logs/*' || prefix === 'cache/*')).toBe(true);
          continue;
        }
        const prefix = Object.keys(OBJECTS_ELSEWHERE).find((key) =>
          grant.resources.some((entry) => JSON.stringify(entry).includes(`/${key}`)),
        );
        if (prefix) {
          expect([name, grant.sid, grant.resources]).toEqual([
            name,
            grant.sid,
            [{ 'Fn::Sub': `\${LogsBucket.Arn}/${prefix}` }],
          ]);
          expect([name, grant.sid, grant.actions]).toEqual([
            name,
            grant.sid,
            OBJECTS_ELSEWHERE[prefix]?.[name],
          ]);
        } else {
          expect(grant.resources).toEqual([{ 'Fn::Sub': '${LogsBucket.Arn}/logs/*' }]);
          for (const action of grant.actions) expect(['s3:GetObject', 's3:PutObject']).toContain(action);
        }
      }
    },
  );

  it('grants every S3 object grant OBJECTS_ELSEWHERE lists (none of them is stale)', () => {
    for (const [prefix, holders] of Object.entries(OBJECTS_ELSEWHERE)) {
      for (const [name, actions] of Object.entries(holders) as [FunctionName, string[]][]) {
        const held = grants[name]
          .filter((grant) => JSON.stringify(grant.resources).includes(`/${prefix}`))
          .flatMap((grant) => grant.actions);
        expect([prefix, name, held]).toEqual([prefix, name, actions]);
      }
    }
  });

  it('lets the builder assume only the upload role and the deploy roles the operator lists', () => {
    const assumed = Object.fromEntries(
      functions.map((name) => [
        name,
        statementsOn(name, 'sts:AssumeRole').flatMap((grant) => grant.resources),
      ]),
    );
    expect(assumed).toEqual(
      onlyFor({
        // The upload role's grant is its own policy resource (BuilderAssumesUploadRole), read last.
        builder: [{ Ref: 'DeployRoleArns' }, { 'Fn::GetAtt': ['UploadRole', 'Arn'] }],
      }),
    );
    // The upload role's own grant: objects of the bucket's logs/ and cache/ prefixes, nothing else
    // (each build's session policy narrows it to that build's keys: src/aws/sts.ts).
    const upload = properties(template, 'UploadRole') as {
      Policies: { PolicyDocument: { Statement: { Action: unknown; Resource: unknown }[] } }[];
    };
    const statements = upload.Policies.flatMap((policy) => policy.PolicyDocument.Statement);
    expect(statements.map(({ Action, Resource }) => ({ Action, Resource }))).toEqual([
      {
        Action: 's3:PutObject',
        Resource: [{ 'Fn::Sub': '${LogsBucket.Arn}/logs/*' }, { 'Fn::Sub': '${LogsBucket.Arn}/cache/*' }],
      },
      { Action: 's3:GetObject', Resource: { 'Fn::Sub': '${LogsBucket.Arn}/cache/*' } },
    ]);
  });

  it("lets only the builder's own role assume the upload role, not the account", () => {
    const trust = properties(template, 'UploadRole').AssumeRolePolicyDocument;
    // The role SAM makes for BuilderFunction (it has no Role of its own): any account-wide
    // principal (the root, a wildcard) would let whoever may sts:AssumeRole on "*" take it.
    expect(properties(template, 'BuilderFunction').Role).toBeUndefined();
    expect(trust).toEqual({
      Version: '2012-10-17',
      Statement: [
        {
          Effect: 'Allow',
          Principal: { AWS: { 'Fn::GetAtt': ['BuilderFunctionRole', 'Arn'] } },
          Action: 'sts:AssumeRole',
        },
      ],
    });
    // The builder's grant to assume it is attached to that role and to no other.
    const attachments = Object.values(template.Resources)
      .filter((entry) => entry.Type === 'AWS::IAM::Policy')
      .filter((entry) => JSON.stringify(entry.Properties?.PolicyDocument).includes('"UploadRole"'))
      .map((entry) => entry.Properties?.Roles);
    expect(attachments).toEqual([[{ Ref: 'BuilderFunctionRole' }]]);
  });

  it('lets only the webhook (and the builder itself, per job) invoke the builder and only the builder invoke the runner', () => {
    const invokes = Object.fromEntries(
      functions.map((name) => [
        name,
        statementsOn(name, 'lambda:InvokeFunction').flatMap((grant) => grant.resources),
      ]),
    );
    expect(invokes).toEqual(
      onlyFor({
        webhook: [{ 'Fn::GetAtt': ['BuilderFunction', 'Arn'] }],
        builder: [
          { 'Fn::GetAtt': ['RunnerFunction', 'Arn'] },
          { 'Fn::GetAtt': ['UntrustedRunnerFunction', 'Arn'] },
          { 'Fn::GetAtt': ['BuilderFunction', 'Arn'] },
        ],
      }),
    );
  });

  it('lets only the notifier publish to SNS, and only to the topics the operator lists', () => {
    const published = Object.fromEntries(
      functions.map((name) => [name, statementsOn(name, 'sns:Publish').flatMap((grant) => grant.resources)]),
    );
    expect(published).toEqual(onlyFor({ notifier: [{ Ref: 'NotificationTopicArns' }] }));
    const statement = (properties(template, 'NotifierFunction').Policies as Json[])
      .flatMap((policy) => (policy as { Statement: Json[] }).Statement)
      .find((entry) => JSON.stringify(entry).includes('sns:Publish'));
    // Granted only when the operator lists topics.
    expect(statement).toEqual({
      'Fn::If': [
        'HasNotificationTopics',
        expect.objectContaining({ Action: 'sns:Publish' }),
        { Ref: 'AWS::NoValue' },
      ],
    });
  });

  it.each(functions)('%s: reads the GitHub secret if and only if it reads secrets', (name) => {
    const resources = statementsOn(name, 'secretsmanager:GetSecretValue').flatMap((grant) => grant.resources);
    expect(resources).toEqual(readsOf(name).includes('secretArn') ? [{ Ref: 'SecretArn' }] : []);
  });

  it.each(functions)(
    '%s: decrypts with the settings key if and only if it reads secretEnv; never encrypts',
    (name) => {
      const resources = statementsOn(name, 'kms:Decrypt').flatMap((grant) => grant.resources);
      expect(resources).toEqual(
        readsOf(name).includes('settingsKmsKey') ? [{ 'Fn::GetAtt': ['SettingsKey', 'Arn'] }] : [],
      );
      expect(statementsOn(name, 'kms:Encrypt')).toEqual([]);
    },
  );

  it.each([
    ['RunnerFunction', 'RunnerRole', 'RunnerLogGroup'],
    ['UntrustedRunnerFunction', 'UntrustedRunnerRole', 'UntrustedRunnerLogGroup'],
  ])(
    'gives %s a role of its own (%s) that can write its own log group and nothing else',
    (fn, role, group) => {
      expect(properties(template, fn).Role).toEqual({ 'Fn::GetAtt': [role, 'Arn'] });
      expect(properties(template, fn).Policies).toBeUndefined();
      const roleProperties = resource(template, role).Properties ?? {};
      expect(roleProperties.ManagedPolicyArns).toBeUndefined();
      expect(roleProperties.PermissionsBoundary).toBeUndefined();
      expect(roleProperties.AssumeRolePolicyDocument).toEqual({
        Version: '2012-10-17',
        Statement: [
          { Effect: 'Allow', Principal: { Service: 'lambda.amazonaws.com' }, Action: 'sts:AssumeRole' },
        ],
      });
      expect(
        grantsOf(template, fn).map(({ effect, actions, resources, condition }) => ({
          effect,
          actions,
          resources,
          condition,
        })),
      ).toEqual([
        {
          effect: 'Allow',
          actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
          resources: [{ 'Fn::GetAtt': [group, 'Arn'] }],
          condition: undefined,
        },
      ]);
      // No other statement or policy is attached to the runners' roles.
      for (const [logicalId, entry] of Object.entries(template.Resources)) {
        if (entry.Type !== 'AWS::IAM::Policy') continue;
        expect([logicalId, JSON.stringify(entry.Properties?.Roles)]).not.toEqual([
          logicalId,
          expect.stringContaining(role),
        ]);
      }
    },
  );

  it("lets only CODEBUILD_FUNCTIONS use CodeBuild, each what it needs, on this stack's projects", () => {
    const both = [
      { 'Fn::GetAtt': ['CodeBuildProject', 'Arn'] },
      { 'Fn::GetAtt': ['CodeBuildDockerProject', 'Arn'] },
    ];
    for (const action of ['codebuild:StartBuild', 'codebuild:StopBuild', 'codebuild:BatchGetBuilds']) {
      const holders = Object.fromEntries(
        functions.map((name) => [name, statementsOn(name, action).flatMap((grant) => grant.resources)]),
      );
      const expected = CODEBUILD_FUNCTIONS.filter((name) => CODEBUILD_ACTIONS_OF[name]?.includes(action));
      expect([action, holders]).toEqual([
        action,
        onlyFor(Object.fromEntries(expected.map((name) => [name, both]))),
      ]);
    }
    // Each CodeBuild statement names one project and holds the function's actions, nothing else.
    for (const name of functions) {
      for (const grant of grants[name].filter((g) => g.actions.some((a) => a.startsWith('codebuild:')))) {
        expect([name, grant.sid, grant.actions]).toEqual([name, grant.sid, CODEBUILD_ACTIONS_OF[name]]);
        expect(grant.resources).toHaveLength(1);
      }
    }
  });

  it('grants CodeBuild and the run inputs only when CodeBuild is enabled, the privileged project only with Docker', () => {
    for (const logicalId of ['WebhookFunction', 'BuilderFunction', 'SweeperFunction']) {
      const statements = (properties(template, logicalId).Policies as Json[]).flatMap(
        (policy) => (policy as { Statement: Json[] }).Statement,
      );
      const conditionOf = (text: string) =>
        statements
          .filter((entry) => JSON.stringify(entry).includes(text))
          .map((entry) => {
            const branches = (entry as { 'Fn::If'?: Json[] })['Fn::If'];
            return Array.isArray(branches) ? [branches[0], branches[2]] : 'always';
          });
      const off = { Ref: 'AWS::NoValue' };
      expect([logicalId, conditionOf('"CodeBuildProject"')]).toEqual([logicalId, [['HasCodeBuild', off]]]);
      expect([logicalId, conditionOf('CodeBuildDockerProject')]).toEqual([
        logicalId,
        [['HasCodeBuildDocker', off]],
      ]);
      for (const entry of conditionOf('/runner-input/*')) {
        expect([logicalId, entry]).toEqual([logicalId, ['HasCodeBuild', off]]);
      }
    }
    // The events function, its role and its rule exist only with CodeBuild enabled.
    expect(resource(template, 'CodeBuildEventsFunction').Condition).toBe('HasCodeBuild');
  });

  it('gives the CodeBuild projects a role that holds nothing, assumable by CodeBuild for this account only', () => {
    const projects = Object.entries(template.Resources).filter(
      ([, item]) => item.Type === 'AWS::CodeBuild::Project',
    );
    expect(projects.map(([logicalId]) => logicalId).sort()).toEqual([
      'CodeBuildDockerProject',
      'CodeBuildProject',
    ]);
    for (const [, project] of projects) {
      expect(project.Properties?.ServiceRole).toEqual({ 'Fn::GetAtt': ['CodeBuildRole', 'Arn'] });
    }
    const role = resource(template, 'CodeBuildRole');
    expect(role.Condition).toBe('HasCodeBuild');
    const { Description: _description, ...rest } = role.Properties ?? {};
    // No Policies, no ManagedPolicyArns, no PermissionsBoundary: a build step can read the role's
    // credentials, so they must open nothing.
    expect(rest).toEqual({
      AssumeRolePolicyDocument: {
        Version: '2012-10-17',
        Statement: [
          {
            Effect: 'Allow',
            Principal: { Service: 'codebuild.amazonaws.com' },
            Action: 'sts:AssumeRole',
            Condition: { StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } } },
          },
        ],
      },
    });
    for (const [logicalId, entry] of Object.entries(template.Resources)) {
      if (entry.Type !== 'AWS::IAM::Policy' && entry.Type !== 'AWS::IAM::ManagedPolicy') continue;
      expect([logicalId, JSON.stringify(entry.Properties)]).not.toEqual([
        logicalId,
        expect.stringContaining('CodeBuildRole'),
      ]);
    }
  });

  it('lets SAM make every other role, from inline statements only', () => {
    for (const name of functions.filter((n) => n !== 'runner')) {
      expect([name, properties(template, FUNCTION_RESOURCES[name]).Role]).toEqual([name, undefined]);
    }
    expect(() =>
      grantsOf(
        {
          ...template,
          Resources: {
            F: {
              Type: 'AWS::Serverless::Function',
              Properties: { Policies: [{ DynamoDBCrudPolicy: { TableName: 't' } }] },
            },
          },
        },
        'F',
      ),
    ).toThrow(/only inline policy documents/);
  });
});

describe('SDK commands to IAM actions', () => {
  it('maps the commands Lambkin sends', () => {
    expect(actionsOfCommand('DynamoDBClient', 'GetItemCommand')).toEqual(['dynamodb:GetItem']);
    expect(actionsOfCommand('S3Client', 'PutObjectCommand')).toEqual(['s3:PutObject']);
    expect(actionsOfCommand('S3Client', 'ListObjectsV2Command')).toEqual(['s3:ListBucket']);
    expect(actionsOfCommand('LambdaClient', 'InvokeCommand')).toEqual(['lambda:InvokeFunction']);
    expect(actionsOfCommand('SecretsManagerClient', 'GetSecretValueCommand')).toEqual([
      'secretsmanager:GetSecretValue',
    ]);
    expect(actionsOfCommand('KMSClient', 'DecryptCommand')).toEqual(['kms:Decrypt']);
    expect(actionsOfImport('@aws-sdk/lib-dynamodb', 'UpdateCommand')).toEqual(['dynamodb:UpdateItem']);
    expect(actionsOfImport('@aws-sdk/lib-dynamodb', 'BatchGetCommand')).toEqual(['dynamodb:BatchGetItem']);
  });

  it('maps the CodeBuild commands the builder, sweeper and events function send', () => {
    expect(actionsOfCommand('CodeBuildClient', 'StartBuildCommand')).toEqual(['codebuild:StartBuild']);
    expect(actionsOfCommand('CodeBuildClient', 'StopBuildCommand')).toEqual(['codebuild:StopBuild']);
    expect(actionsOfCommand('CodeBuildClient', 'BatchGetBuildsCommand')).toEqual([
      'codebuild:BatchGetBuilds',
    ]);
    expect(actionsOfImport('@aws-sdk/client-codebuild', 'StartBuildCommand')).toEqual([
      'codebuild:StartBuild',
    ]);
    // Only tests (moto_server's projects) create projects; the template makes the real ones.
    const { required, operatorOnly } = actionsOfCommandLog(
      'CodeBuildClient CreateProjectCommand\nCodeBuildClient StartBuildCommand\n',
      [],
    );
    expect(operatorOnly.map((entry) => entry.action)).toEqual(['codebuild:CreateProject']);
    expect(required.map((entry) => entry.action)).toEqual(['codebuild:StartBuild']);
  });

  it('refuses what it does not know rather than guessing', () => {
    expect(() => actionsOfCommand('EC2Client', 'RunInstancesCommand')).toThrow(UnknownSdkCommandError);
    expect(() => actionsOfImport('@aws-sdk/client-ec2', 'RunInstancesCommand')).toThrow(
      UnknownSdkCommandError,
    );
    expect(() => actionsOfCommandLog('DynamoDBClient GetItemCommand\nnot a line\n')).toThrow(/line 2/);
  });

  it('finds the SDK values a module imports, leaving types out', () => {
    const use = sdkUseOf(
      [
        "import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';",
        "import type { LambdaClient } from '@aws-sdk/client-lambda';",
        "import * as kms from '@aws-sdk/client-kms';",
        "import { createPresignedPost } from '@aws-sdk/s3-presigned-post';",
        "import { join } from 'node:path';",
      ].join('\n'),
      'example.ts',
    );
    expect(use).toEqual({
      imports: ['@aws-sdk/client-s3 GetObjectCommand', '@aws-sdk/s3-presigned-post createPresignedPost'],
      namespaces: ['@aws-sdk/client-kms'],
    });
  });

  it('reports a recorded action no role grants, and leaves operator-only ones out', () => {
    const { required, operatorOnly } = actionsOfCommandLog(
      [
        'DynamoDBClient GetItemCommand',
        'DynamoDBClient CreateTableCommand',
        // No role writes in batches (the webhook's DeleteItem, on held approvals, is granted).
        'DynamoDBClient BatchWriteItemCommand',
        'S3Client GetObjectCommand',
        'DynamoDBClient GetItemCommand',
      ].join('\n'),
    );
    expect(operatorOnly.map((entry) => entry.action)).toEqual(['dynamodb:CreateTable']);
    const result = coverage(
      required,
      Object.fromEntries(functions.map((name) => [FUNCTION_RESOURCES[name], grants[name]])),
    );
    expect(result.missing.map((entry) => entry.action)).toEqual(['dynamodb:BatchWriteItem']);
    expect(result.covered.map((entry) => entry.action)).toEqual([
      'dynamodb:GetItem',
      's3:GetObject',
      // The runner's presigned POST form is signed by the builder's role (rule 2).
      's3:PutObject',
    ]);
    expect(result.covered.find((entry) => entry.action === 's3:PutObject')?.grantedBy.sort()).toEqual([
      'BuilderFunction',
      'CodeBuildEventsFunction',
      'NotifierFunction',
    ]);
  });
});
