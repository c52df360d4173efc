import { CloudFormationClient, CreateStackCommand } from '@aws-sdk/client-cloudformation';
import { readStackOutputs, StackNotFoundError } from '../../src/cli/stack-outputs.js';
import { requireTool } from '../support/tools.js';
import { createTestStorage } from '../support/storage.js';
import { DynamoBuildStore } from '../../src/store/builds.js';
import { runProcess } from './helpers.js';

const moto = process.env.LAMBKIN_TEST_MOTO_ENDPOINT;

describe('--stack NAME reads the stack outputs', () => {
  if (
    !requireTool('moto_server', "CloudFormation stack outputs (moto's CloudFormation)", moto !== undefined) ||
    !moto
  )
    return;
  const endpoint = moto;

  beforeAll(async () => {
    const client = new CloudFormationClient({ endpoint, region: 'us-east-1' });
    const outputs = {
      BuildsTableName: 'lambkin-BuildsTable-1',
      SettingsTableName: 'lambkin-SettingsTable-1',
      LogsBucketName: 'lambkin-logsbucket-1',
      BuilderFunctionName: 'lambkin-BuilderFunction-1',
      ApiUrl: 'https://abc.execute-api.us-east-1.amazonaws.com/',
      SettingsKeyId: '1234abcd-12ab-34cd-56ef-1234567890ab',
    };
    await client.send(
      new CreateStackCommand({
        StackName: 'lambkin-outputs-test',
        TemplateBody: JSON.stringify({
          Resources: { Handle: { Type: 'AWS::CloudFormation::WaitConditionHandle' } },
          Outputs: Object.fromEntries(Object.entries(outputs).map(([key, value]) => [key, { Value: value }])),
        }),
      }),
    );
    await client.send(
      new CreateStackCommand({
        StackName: 'not-lambkin',
        TemplateBody: JSON.stringify({
          Resources: { Handle: { Type: 'AWS::CloudFormation::WaitConditionHandle' } },
        }),
      }),
    );
    client.destroy();
  });

  it('maps the outputs to the settings the commands need', async () => {
    await expect(
      readStackOutputs('lambkin-outputs-test', { endpoint, region: 'us-east-1' }),
    ).resolves.toEqual({
      buildsTable: 'lambkin-BuildsTable-1',
      settingsTable: 'lambkin-SettingsTable-1',
      bucket: 'lambkin-logsbucket-1',
      builderFunction: 'lambkin-BuilderFunction-1',
      publicUrl: 'https://abc.execute-api.us-east-1.amazonaws.com',
      settingsKmsKey: '1234abcd-12ab-34cd-56ef-1234567890ab',
    });
  });

  it('says clearly when there is no such stack, or it is not a Lambkin stack', async () => {
    await expect(readStackOutputs('no-such-stack', { endpoint, region: 'us-east-1' })).rejects.toBeInstanceOf(
      StackNotFoundError,
    );
    await expect(readStackOutputs('not-lambkin', { endpoint, region: 'us-east-1' })).rejects.toThrow(
      /no BuildsTableName output: is it a Lambkin stack\?/,
    );
  });

  it('lets a real command talk to the stack through its outputs alone', async () => {
    const storage = await createTestStorage({
      name: 'moto',
      dynamodbEndpoint: endpoint,
      s3Endpoint: endpoint,
    });
    const builds = new DynamoBuildStore(storage.clients.documents, storage.buildsTable);
    const number = await builds.allocateNumber('octo/deployed');
    await builds.putQueuedBuild(
      {
        repo: 'octo/deployed',
        event: 'push',
        ref: 'refs/heads/main',
        branch: 'main',
        sha: 'e'.repeat(40),
        fork: false,
        privateRepo: false,
        trusted: true,
        author: 'octocat',
        deliveryId: 'd-stack',
      },
      number,
      { deadline: Date.now() + 60_000 },
    );
    const client = new CloudFormationClient({ endpoint, region: 'us-east-1' });
    await client.send(
      new CreateStackCommand({
        StackName: 'lambkin-e2e',
        TemplateBody: JSON.stringify({
          Resources: { Handle: { Type: 'AWS::CloudFormation::WaitConditionHandle' } },
          Outputs: {
            BuildsTableName: { Value: storage.buildsTable },
            SettingsTableName: { Value: storage.settingsTable },
            LogsBucketName: { Value: storage.bucket },
          },
        }),
      }),
    );
    client.destroy();
    const run = await runProcess(['builds', 'octo/deployed', '--stack', 'lambkin-e2e', '--json'], {
      AWS_ENDPOINT_URL: endpoint,
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
    });
    expect(run.stderr).toBe('');
    expect(JSON.parse(run.stdout)).toEqual([expect.objectContaining({ number, state: 'queued' })]);
  });
});
