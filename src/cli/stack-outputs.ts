/**
 * `--stack NAME`: a deployed stack's resource names, read from its CloudFormation outputs (the
 * template names them: BuildsTableName, SettingsTableName, LogsBucketName, BuilderFunctionName,
 * ApiUrl, SettingsKeyId), so the management commands need no LAMBKIN_* variables; and its SecretArn
 * parameter, the secret `lambkin setup app --stack NAME` stores the App in.
 */
import { CloudFormationClient, DescribeStacksCommand, type Stack } from '@aws-sdk/client-cloudformation';
import type { LambkinConfig } from '../config.js';
import { CliError } from './cli-errors.js';

/** Which output fills which setting. */
export const STACK_OUTPUTS: Partial<Record<keyof LambkinConfig, string>> = {
  buildsTable: 'BuildsTableName',
  settingsTable: 'SettingsTableName',
  bucket: 'LogsBucketName',
  builderFunction: 'BuilderFunctionName',
  publicUrl: 'ApiUrl',
  settingsKmsKey: 'SettingsKeyId',
};

export class StackNotFoundError extends CliError {
  constructor(name: string, detail: string, region?: string) {
    super(
      'STACK_NOT_FOUND',
      `no deployed stack "${name}"${region ? ` in ${region}` : ''} (${detail}): check the name, ` +
        'the region (--region or AWS_REGION) and your credentials',
    );
  }
}

/** The stack as DescribeStacks answers it; a StackNotFoundError when CloudFormation has none. */
async function describeStack(name: string, options: StackLookupOptions): Promise<Stack> {
  const client = new CloudFormationClient({
    ...(options.region ? { region: options.region } : {}),
    ...(options.endpoint ? { endpoint: options.endpoint } : {}),
  });
  try {
    const response = await client
      .send(new DescribeStacksCommand({ StackName: name }))
      .catch((error: Error) => {
        if (error.name === 'ValidationError' || /does not exist/.test(error.message)) {
          throw new StackNotFoundError(name, error.message, options.region);
        }
        throw error;
      });
    const stack = response.Stacks?.[0];
    if (!stack) throw new StackNotFoundError(name, 'CloudFormation returned no stack', options.region);
    return stack;
  } finally {
    client.destroy();
  }
}

export interface StackLookupOptions {
  region?: string;
  endpoint?: string;
}

export async function readStackOutputs(
  name: string,
  options: StackLookupOptions = {},
): Promise<Partial<LambkinConfig>> {
  const stack = await describeStack(name, options);
  const outputs = new Map((stack.Outputs ?? []).map((output) => [output.OutputKey, output.OutputValue]));
  const config: Partial<LambkinConfig> = {};
  for (const [key, outputKey] of Object.entries(STACK_OUTPUTS) as [keyof LambkinConfig, string][]) {
    const value = outputs.get(outputKey);
    if (value)
      (config as Record<string, string>)[key] = key === 'publicUrl' ? value.replace(/\/+$/, '') : value;
  }
  if (!config.buildsTable) {
    throw new StackNotFoundError(
      name,
      `it has no ${STACK_OUTPUTS.buildsTable} output: is it a Lambkin stack?`,
      options.region,
    );
  }
  return config;
}

/**
 * The ARN of the stack's Secrets Manager secret: its `SecretArn` parameter (template.yaml), which
 * `lambkin setup app --stack NAME` stores the App in.
 */
export async function readStackSecretArn(name: string, options: StackLookupOptions = {}): Promise<string> {
  const stack = await describeStack(name, options);
  const parameter = (stack.Parameters ?? []).find((entry) => entry.ParameterKey === 'SecretArn');
  const value = parameter?.ResolvedValue ?? parameter?.ParameterValue;
  if (!value) {
    throw new StackNotFoundError(
      name,
      'it has no SecretArn parameter: is it a Lambkin stack?',
      options.region,
    );
  }
  return value;
}
