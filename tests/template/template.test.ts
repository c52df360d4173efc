/**
 * template.yaml, read offline: it parses with CloudFormation's tags, and its resources are what
 * Lambkin's code expects (tables as src/store/tables.ts defines them, the routes, the timeouts, the
 * bucket's protections, the outputs the CLI reads, documented parameters).
 */
import type { CreateTableCommandInput } from '@aws-sdk/client-dynamodb';
import { FUNCTION_CONFIG } from '../../src/config.js';
import { buildsTableDefinition, settingsTableDefinition } from '../../src/store/tables.js';
import {
  DEPLOYED_FUNCTIONS,
  RUNNER_FUNCTIONS,
  functionProperty,
  isObject,
  loadTemplate,
  parseTemplate,
  properties,
  resource,
  type Json,
  type JsonObject,
} from '../support/template.js';

const template = loadTemplate();

function httpApiEvents(logicalId: string): { method: Json; path: Json; api: Json }[] {
  const events = properties(template, logicalId).Events;
  if (!isObject(events)) return [];
  return Object.values(events)
    .filter((event): event is JsonObject => isObject(event) && event.Type === 'HttpApi')
    .map((event) => {
      const props = isObject(event.Properties) ? event.Properties : {};
      return { method: props.Method ?? null, path: props.Path ?? null, api: props.ApiId ?? null };
    });
}

describe('template.yaml parses', () => {
  it('is a SAM template with CloudFormation tags in their long form', () => {
    expect(template.AWSTemplateFormatVersion).toBe('2010-09-09');
    expect(template.Transform).toBe('AWS::Serverless-2016-10-31');
    expect(properties(template, 'WebhookFunction').CodeUri).toBe('dist/functions/webhook/');
    expect(properties(template, 'BuilderFunction').Timeout).toEqual({
      'Fn::FindInMap': ['BuilderTimeout', { Ref: 'RunnerTimeout' }, 'Seconds'],
    });
    expect(template.Outputs.WebhookUrl?.Value).toEqual({
      'Fn::Sub': 'https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/webhook',
    });
  });

  it('reads every short form: scalar, sequence and mapping', () => {
    const parsed = parseTemplate(
      [
        'Resources:',
        '  A:',
        '    Type: X',
        '    Properties:',
        '      Ref: !Ref B',
        '      Att: !GetAtt B.Arn',
        '      Nested: !GetAtt B.Endpoint.Address',
        '      Sub: !Sub "${B}-x"',
        '      SubList: !Sub ["${x}", {x: !Ref B}]',
        '      If: !If [C, !Ref B, !Ref AWS::NoValue]',
        '      Map: !FindInMap [M, !Ref P, K]',
        '      Not: !Not [!Equals [!Ref P, ""]]',
        '      Join: !Join ["", [a, !Ref B]]',
        '      Json: !ToJsonString {a: 1}',
      ].join('\n'),
    );
    expect(parsed.Resources.A?.Properties).toEqual({
      Ref: { Ref: 'B' },
      Att: { 'Fn::GetAtt': ['B', 'Arn'] },
      Nested: { 'Fn::GetAtt': ['B', 'Endpoint.Address'] },
      Sub: { 'Fn::Sub': '${B}-x' },
      SubList: { 'Fn::Sub': ['${x}', { x: { Ref: 'B' } }] },
      If: { 'Fn::If': ['C', { Ref: 'B' }, { Ref: 'AWS::NoValue' }] },
      Map: { 'Fn::FindInMap': ['M', { Ref: 'P' }, 'K'] },
      Not: { 'Fn::Not': [{ 'Fn::Equals': [{ Ref: 'P' }, ''] }] },
      Join: { 'Fn::Join': ['', ['a', { Ref: 'B' }]] },
      Json: { 'Fn::ToJsonString': { a: 1 } },
    });
  });

  it('refuses an unknown tag and duplicate keys', () => {
    expect(() => parseTemplate('Resources:\n  A: !Nope x\n')).toThrow();
    expect(() => parseTemplate('Resources:\n  A:\n    Type: X\n  A:\n    Type: Y\n')).toThrow();
  });

  it('refers only to resources, parameters and conditions it defines', () => {
    const defined = new Set([
      ...Object.keys(template.Resources),
      ...Object.keys(template.Parameters),
      // The role SAM makes for each function that names none (`<function>Role`).
      ...Object.entries(template.Resources)
        .filter(
          ([, entry]) => entry.Type === 'AWS::Serverless::Function' && entry.Properties?.Role === undefined,
        )
        .map(([logicalId]) => `${logicalId}Role`),
      'AWS::Region',
      'AWS::URLSuffix',
      'AWS::AccountId',
      'AWS::Partition',
      'AWS::StackName',
      'AWS::NoValue',
    ]);
    const undefinedRefs: string[] = [];
    const visit = (value: Json | undefined): void => {
      if (Array.isArray(value)) value.forEach(visit);
      else if (isObject(value)) {
        if (typeof value.Ref === 'string' && !defined.has(value.Ref)) undefinedRefs.push(value.Ref);
        const getAtt = value['Fn::GetAtt'];
        if (Array.isArray(getAtt) && typeof getAtt[0] === 'string' && !defined.has(getAtt[0])) {
          undefinedRefs.push(getAtt[0]);
        }
        if (typeof value['Fn::Sub'] === 'string') {
          for (const match of value['Fn::Sub'].matchAll(/\$\{([^}!.]+)/g)) {
            if (match[1] && !defined.has(match[1])) undefinedRefs.push(match[1]);
          }
        }
        Object.values(value).forEach(visit);
      }
    };
    visit(template.Resources as unknown as Json);
    visit(template.Outputs as unknown as Json);
    expect(undefinedRefs).toEqual([]);
  });

  it('uses only conditions and mappings it defines', () => {
    const missing: string[] = [];
    const visit = (value: Json | undefined): void => {
      if (Array.isArray(value)) value.forEach(visit);
      else if (isObject(value)) {
        const condition = value['Fn::If'];
        if (Array.isArray(condition) && !template.Conditions?.[String(condition[0])]) {
          missing.push(`condition ${String(condition[0])}`);
        }
        const map = value['Fn::FindInMap'];
        if (Array.isArray(map) && !template.Mappings?.[String(map[0])])
          missing.push(`mapping ${String(map[0])}`);
        Object.values(value).forEach(visit);
      }
    };
    visit(template.Resources as unknown as Json);
    for (const [logicalId, item] of Object.entries(template.Resources)) {
      if (item.Condition !== undefined && !template.Conditions?.[item.Condition]) missing.push(logicalId);
    }
    expect(missing).toEqual([]);
  });
});

describe('functions', () => {
  const serverlessFunctions = Object.entries(template.Resources)
    .filter(([, item]) => item.Type === 'AWS::Serverless::Function')
    .map(([logicalId]) => logicalId)
    .sort();

  it("are exactly the functions FUNCTION_CONFIG knows, and the untrusted builds' runner", () => {
    expect(serverlessFunctions).toEqual(DEPLOYED_FUNCTIONS.map(([logicalId]) => logicalId).sort());
    expect(new Set(DEPLOYED_FUNCTIONS.map(([, name]) => name))).toEqual(
      new Set(Object.keys(FUNCTION_CONFIG)),
    );
  });

  it.each(DEPLOYED_FUNCTIONS)(
    '%s: nodejs22.x, index.handler, the bundle folder of %s and a log group of its own',
    (logicalId, name) => {
      expect(functionProperty(template, logicalId, 'Runtime')).toBe('nodejs22.x');
      expect(functionProperty(template, logicalId, 'Handler')).toBe('index.handler');
      expect(properties(template, logicalId).CodeUri).toBe(`dist/functions/${name}/`);
      const logging = properties(template, logicalId).LoggingConfig;
      expect(isObject(logging) && isObject(logging.LogGroup) ? logging.LogGroup.Ref : undefined).toBe(
        logicalId.replace(/Function$/, 'LogGroup'),
      );
    },
  );

  it('serves POST /webhook, the three log routes and the badge route on one HTTP API', () => {
    expect(resource(template, 'HttpApi').Type).toBe('AWS::Serverless::HttpApi');
    expect(httpApiEvents('WebhookFunction')).toEqual([
      { method: 'POST', path: '/webhook', api: { Ref: 'HttpApi' } },
    ]);
    expect(httpApiEvents('LogsFunction')).toEqual([
      { method: 'GET', path: '/builds/{owner}/{repo}', api: { Ref: 'HttpApi' } },
      { method: 'GET', path: '/builds/{owner}/{repo}/{number}', api: { Ref: 'HttpApi' } },
      { method: 'GET', path: '/builds/{owner}/{repo}/{number}/log.txt', api: { Ref: 'HttpApi' } },
      { method: 'GET', path: '/badges/{owner}/{badge}', api: { Ref: 'HttpApi' } },
    ]);
    for (const logicalId of [
      'BuilderFunction',
      'RunnerFunction',
      'UntrustedRunnerFunction',
      'SweeperFunction',
      'FailureFunction',
      'NotifierFunction',
    ]) {
      expect(httpApiEvents(logicalId)).toEqual([]);
    }
  });

  it('answers HTTP within what API Gateway waits (30 s) and GitHub waits (10 s)', () => {
    expect(properties(template, 'WebhookFunction').Timeout).toBeLessThanOrEqual(10);
    expect(properties(template, 'LogsFunction').Timeout).toBeLessThanOrEqual(29);
  });

  it('gives the builder the runner timeout + 60 s for every allowed runner timeout, within 900 s', () => {
    const runnerTimeout = template.Parameters.RunnerTimeout;
    expect(runnerTimeout?.Type).toBe('Number');
    expect(runnerTimeout?.Default).toBe(840);
    expect(properties(template, 'RunnerFunction').Timeout).toEqual({ Ref: 'RunnerTimeout' });
    expect(properties(template, 'UntrustedRunnerFunction').Timeout).toEqual({ Ref: 'RunnerTimeout' });
    const allowed = runnerTimeout?.AllowedValues ?? [];
    expect(allowed.length).toBeGreaterThan(0);
    expect(Math.max(...allowed.map(Number))).toBe(840);
    const mapping = template.Mappings?.BuilderTimeout ?? {};
    expect(Object.keys(mapping).sort()).toEqual(allowed.map(String).sort());
    for (const value of allowed.map(Number)) {
      expect([value, mapping[String(value)]?.Seconds]).toEqual([value, Math.min(value + 60, 900)]);
    }
  });

  it('retries the builder twice, then sends the event to FailureFunction', () => {
    expect(properties(template, 'BuilderFunction').EventInvokeConfig).toEqual({
      MaximumRetryAttempts: 2,
      DestinationConfig: {
        OnFailure: { Type: 'Lambda', Destination: { 'Fn::GetAtt': ['FailureFunction', 'Arn'] } },
      },
    });
  });

  it('makes the two runner functions alike but for their kind, log group and role', () => {
    const trusted = properties(template, RUNNER_FUNCTIONS.trusted);
    const untrusted = properties(template, RUNNER_FUNCTIONS.untrusted);
    const common = (props: JsonObject): JsonObject => {
      const { Description, Environment, LoggingConfig, Role, ...rest } = props;
      expect([Description, Environment, LoggingConfig, Role].every((value) => value !== undefined)).toBe(
        true,
      );
      return rest;
    };
    expect(common(untrusted)).toEqual(common(trusted));
    expect(trusted.CodeUri).toBe('dist/functions/runner/');
    expect(trusted.LoggingConfig).not.toEqual(untrusted.LoggingConfig);
    expect(trusted.Role).not.toEqual(untrusted.Role);
  });

  it('sizes the runner from parameters and attaches the git layer only when one is given', () => {
    const runner = properties(template, 'RunnerFunction');
    expect(runner.MemorySize).toEqual({ Ref: 'RunnerMemory' });
    expect(runner.EphemeralStorage).toEqual({ Size: { Ref: 'RunnerEphemeralStorage' } });
    expect(template.Parameters.RunnerMemory?.Default).toBe(3008);
    expect(template.Parameters.RunnerEphemeralStorage?.Default).toBe(10240);
    expect(runner.Layers).toEqual({
      'Fn::If': ['HasGitLayer', [{ Ref: 'GitLayerArn' }], { Ref: 'AWS::NoValue' }],
    });
    expect(template.Conditions?.HasGitLayer).toEqual({
      'Fn::Not': [{ 'Fn::Equals': [{ Ref: 'GitLayerArn' }, ''] }],
    });
    expect(template.Parameters.GitLayerArn?.Default).toBe('');
    // Only the runner needs git; every other function stays small.
    for (const [logicalId] of DEPLOYED_FUNCTIONS) {
      if (!Object.values(RUNNER_FUNCTIONS).includes(logicalId as 'RunnerFunction'))
        expect(functionProperty(template, logicalId, 'Layers')).toBeUndefined();
    }
  });

  it("notifies from the builds table's stream: old and new images, in order, failed records again", () => {
    expect(properties(template, 'BuildsTable').StreamSpecification).toEqual({
      StreamViewType: 'NEW_AND_OLD_IMAGES',
    });
    const events = properties(template, 'NotifierFunction').Events as JsonObject;
    expect(Object.values(events)).toEqual([
      {
        Type: 'DynamoDB',
        Properties: expect.objectContaining({
          Stream: { 'Fn::GetAtt': ['BuildsTable', 'StreamArn'] },
          StartingPosition: 'LATEST',
          FunctionResponseTypes: ['ReportBatchItemFailures'],
          BisectBatchOnFunctionError: true,
        }),
      },
    ]);
    const source = (Object.values(events)[0] as { Properties: JsonObject }).Properties;
    expect(source.BatchSize).toBeLessThanOrEqual(10);
    expect(source.MaximumRetryAttempts).toBeGreaterThan(0);
    expect(source.MaximumRetryAttempts).toBeLessThanOrEqual(5);
    // Records stay in order per shard: no parallel batches of one shard.
    expect(source.ParallelizationFactor ?? 1).toBe(1);
    // Each state change's notifications are bounded to 10 s: a whole batch fits in the timeout.
    expect(Number(properties(template, 'NotifierFunction').Timeout)).toBeGreaterThanOrEqual(
      Number(source.BatchSize) * 10 + 20,
    );
    // Builds only, never the counter or delivery-guard items, never a removal.
    const filters = (source.FilterCriteria as { Filters: { Pattern: string }[] }).Filters;
    expect(filters.map((filter) => JSON.parse(filter.Pattern) as unknown)).toEqual([
      { eventName: ['INSERT', 'MODIFY'], dynamodb: { NewImage: { state: { S: [{ exists: true }] } } } },
    ]);
  });

  it('sweeps every 5 minutes, and a sweep ends before the next one starts', () => {
    const events = properties(template, 'SweeperFunction').Events;
    expect(events).toEqual({
      Sweep: {
        Type: 'Schedule',
        Properties: { Description: expect.any(String), Schedule: 'rate(5 minutes)' },
      },
    });
    expect(properties(template, 'SweeperFunction').Timeout).toBeLessThan(300);
  });
});

describe('tables', () => {
  /** A template table next to a CreateTable input, in a comparable form (order-free where DynamoDB is). */
  function comparable(table: JsonObject | CreateTableCommandInput): unknown {
    const t = table as Record<string, unknown>;
    const byName = (key: string) => (a: Record<string, unknown>, b: Record<string, unknown>) =>
      String(a[key]).localeCompare(String(b[key]));
    return {
      BillingMode: t.BillingMode,
      AttributeDefinitions: [...((t.AttributeDefinitions as Record<string, unknown>[]) ?? [])].sort(
        byName('AttributeName'),
      ),
      KeySchema: t.KeySchema,
      GlobalSecondaryIndexes: [...((t.GlobalSecondaryIndexes as Record<string, unknown>[]) ?? [])].sort(
        byName('IndexName'),
      ),
      LocalSecondaryIndexes: t.LocalSecondaryIndexes ?? [],
    };
  }

  it('BuildsTable is buildsTableDefinition(): keys, attributes, indexes, on demand', () => {
    expect(comparable(properties(template, 'BuildsTable'))).toEqual(comparable(buildsTableDefinition('x')));
  });

  it('SettingsTable is settingsTableDefinition()', () => {
    expect(comparable(properties(template, 'SettingsTable'))).toEqual(
      comparable(settingsTableDefinition('x')),
    );
  });

  it.each(['BuildsTable', 'SettingsTable'])(
    '%s: point-in-time recovery, a generated name, kept on replacement',
    (logicalId) => {
      const table = resource(template, logicalId);
      expect(table.Properties?.PointInTimeRecoverySpecification).toEqual({
        PointInTimeRecoveryEnabled: true,
      });
      expect(table.Properties?.TableName).toBeUndefined();
      expect(table.UpdateReplacePolicy).toBe('Retain');
    },
  );

  it('expires delivery guards through TTL on expiresAt', () => {
    expect(properties(template, 'BuildsTable').TimeToLiveSpecification).toEqual({
      AttributeName: 'expiresAt',
      Enabled: true,
    });
    expect(properties(template, 'SettingsTable').TimeToLiveSpecification).toBeUndefined();
  });
});

describe('the logs bucket', () => {
  const bucket = properties(template, 'LogsBucket');

  it('is private: encrypted, all four public access blocks, bucket owner enforced', () => {
    expect(bucket.BucketEncryption).toEqual({
      ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }],
    });
    expect(bucket.PublicAccessBlockConfiguration).toEqual({
      BlockPublicAcls: true,
      BlockPublicPolicy: true,
      IgnorePublicAcls: true,
      RestrictPublicBuckets: true,
    });
    expect(bucket.OwnershipControls).toEqual({ Rules: [{ ObjectOwnership: 'BucketOwnerEnforced' }] });
    expect(bucket.BucketName).toBeUndefined();
    expect(bucket.WebsiteConfiguration).toBeUndefined();
  });

  it('expires old logs after LogRetentionDays and aborts incomplete uploads', () => {
    const rules = (
      isObject(bucket.LifecycleConfiguration) ? bucket.LifecycleConfiguration.Rules : []
    ) as JsonObject[];
    expect(rules).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          Status: 'Enabled',
          Prefix: 'logs/',
          ExpirationInDays: { Ref: 'LogRetentionDays' },
        }),
        expect.objectContaining({
          Status: 'Enabled',
          AbortIncompleteMultipartUpload: { DaysAfterInitiation: expect.any(Number) },
        }),
      ]),
    );
    expect(template.Parameters.LogRetentionDays).toMatchObject({ Type: 'Number', Default: 90 });
  });

  it('refuses every request without TLS', () => {
    const policy = properties(template, 'LogsBucketPolicy');
    expect(policy.Bucket).toEqual({ Ref: 'LogsBucket' });
    expect(isObject(policy.PolicyDocument) ? policy.PolicyDocument.Statement : undefined).toEqual([
      {
        Sid: expect.any(String),
        Effect: 'Deny',
        Principal: '*',
        Action: 's3:*',
        Resource: [{ 'Fn::GetAtt': ['LogsBucket', 'Arn'] }, { 'Fn::Sub': '${LogsBucket.Arn}/*' }],
        Condition: { Bool: { 'aws:SecureTransport': 'false' } },
      },
    ]);
  });
});

describe('the settings key', () => {
  it('is a rotating KMS key whose use the account IAM policies decide', () => {
    const key = properties(template, 'SettingsKey');
    expect(resource(template, 'SettingsKey').Type).toBe('AWS::KMS::Key');
    expect(key.EnableKeyRotation).toBe(true);
    expect(key.KeySpec ?? 'SYMMETRIC_DEFAULT').toBe('SYMMETRIC_DEFAULT');
    expect(isObject(key.KeyPolicy) ? key.KeyPolicy.Statement : undefined).toEqual([
      expect.objectContaining({
        Effect: 'Allow',
        Principal: { AWS: { 'Fn::Sub': 'arn:${AWS::Partition}:iam::${AWS::AccountId}:root' } },
      }),
    ]);
  });
});

describe('outputs and parameters', () => {
  it('has every output lambkin --stack reads', () => {
    expect(template.Outputs).toMatchObject({
      WebhookUrl: {
        Value: { 'Fn::Sub': 'https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/webhook' },
      },
      ApiUrl: { Value: { 'Fn::Sub': 'https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}' } },
      BuildsTableName: { Value: { Ref: 'BuildsTable' } },
      SettingsTableName: { Value: { Ref: 'SettingsTable' } },
      LogsBucketName: { Value: { Ref: 'LogsBucket' } },
      BuilderFunctionName: { Value: { Ref: 'BuilderFunction' } },
      RunnerFunctionName: { Value: { Ref: 'RunnerFunction' } },
      UntrustedRunnerFunctionName: { Value: { Ref: 'UntrustedRunnerFunction' } },
      SettingsKeyId: { Value: { Ref: 'SettingsKey' } },
    });
  });

  it.each(Object.keys(template.Parameters))(
    '%s is documented and constrained, and its default fits',
    (name) => {
      const parameter = template.Parameters[name];
      expect(parameter?.Description?.length).toBeGreaterThan(20);
      if (parameter?.AllowedValues) {
        if (parameter.Default !== undefined) expect(parameter.AllowedValues).toContain(parameter.Default);
      } else if (parameter?.Type === 'Number') {
        expect(typeof parameter.MinValue).toBe('number');
        expect(typeof parameter.MaxValue).toBe('number');
        if (parameter.Default !== undefined) {
          expect(Number(parameter.Default)).toBeGreaterThanOrEqual(parameter.MinValue ?? 0);
          expect(Number(parameter.Default)).toBeLessThanOrEqual(parameter.MaxValue ?? 0);
        }
      } else {
        expect(parameter?.AllowedPattern).toBeDefined();
        if (parameter?.Default !== undefined) {
          expect(String(parameter.Default)).toMatch(new RegExp(parameter.AllowedPattern ?? ''));
        }
      }
    },
  );

  it('checks the secret ARN and the URLs it is given', () => {
    const matches = (name: string, value: string) =>
      new RegExp(template.Parameters[name]?.AllowedPattern ?? '(?!)').test(value);
    expect(template.Parameters.SecretArn?.Default).toBeUndefined();
    expect(matches('SecretArn', 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:lambkin-AbC123')).toBe(
      true,
    );
    expect(matches('SecretArn', 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:lambkin')).toBe(false);
    expect(matches('SecretArn', 'lambkin')).toBe(false);
    expect(matches('PublicUrl', '')).toBe(true);
    expect(matches('PublicUrl', 'https://ci.example.com')).toBe(true);
    expect(matches('PublicUrl', 'http://ci.example.com')).toBe(false);
    expect(matches('GitLayerArn', 'arn:aws:lambda:us-east-1:123456789012:layer:lambkin-runtime:3')).toBe(
      true,
    );
    expect(matches('GitLayerArn', 'arn:aws:lambda:us-east-1:123456789012:layer:lambkin-runtime')).toBe(false);
  });
});
