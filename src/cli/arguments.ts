/** Arguments and options several commands share: repositories, build numbers, the stack to use. */
import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import { InvalidArgumentError, Option, type Command } from 'commander';
import type { RepoName } from '../core/build.js';
import { DEFAULT_DATA_DIR } from './stack.js';

/** GitHub's rules: owner is letters, digits and hyphens; the name adds `.` and `_`. */
const REPO_NAME = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})\/[A-Za-z0-9._-]{1,100}$/;

export function parseRepoArgument(value: string): RepoName {
  if (!REPO_NAME.test(value)) {
    throw new InvalidArgumentError(`"${value}" is not a repository: write owner/name, as on GitHub.`);
  }
  return value;
}

export function parseBuildNumber(value: string): number {
  const number = /^#?\d+$/.test(value) ? Number(value.replace(/^#/, '')) : NaN;
  if (!Number.isSafeInteger(number) || number < 1) {
    throw new InvalidArgumentError(`"${value}" is not a build number (a whole number from 1).`);
  }
  return number;
}

export function wholeNumberBetween(min: number, max: number): (value: string) => number {
  return (value) => {
    const number = /^\d+$/.test(value) ? Number(value) : NaN;
    if (!Number.isSafeInteger(number) || number < min || number > max) {
      throw new InvalidArgumentError(`"${value}" is not a whole number from ${min} to ${max}.`);
    }
    return number;
  };
}

/**
 * `--local [dataDir]`, `--stack <name>` and `--region <region>`: which stack the command talks to
 * (src/cli/stack.ts).
 */
export function addStackOptions(command: Command): Command {
  return command
    .addOption(
      new Option(
        '--local [dataDir]',
        `use the stack \`lambkin dev\` runs, found through <dataDir>/stack.json (default ${DEFAULT_DATA_DIR}/)`,
      ).conflicts(['stack', 'region']),
    )
    .addOption(
      new Option(
        '--stack <name>',
        'use a deployed stack by its CloudFormation name: its outputs name the tables, the bucket, ' +
          'the builder function, the public URL and the KMS key (instead of the LAMBKIN_* variables)',
      ),
    )
    .addOption(
      new Option(
        '--region <region>',
        'the AWS region of the stack (default: AWS_REGION, AWS_DEFAULT_REGION, then your AWS profile)',
      ),
    );
}

/** Help text shared by the commands that talk to a stack. */
export const STACK_HELP = `
Which stack:
  --local        the one \`lambkin dev\` runs; a data directory given after
                 --local must exist (or write --local=DIR)
  --stack NAME   a deployed stack: its CloudFormation outputs name the tables,
                 the bucket, the builder function, the public URL and the KMS
                 key of secret values
  otherwise      LAMBKIN_BUILDS_TABLE, LAMBKIN_SETTINGS_TABLE, LAMBKIN_BUCKET,
                 LAMBKIN_BUILDER_FUNCTION, LAMBKIN_PUBLIC_URL and
                 LAMBKIN_SETTINGS_KMS_KEY
With --stack or the variables: the AWS SDK's credentials and AWS_ENDPOINT_URL_*
variables, and the region from --region, AWS_REGION, AWS_DEFAULT_REGION or your
AWS profile.
GITHUB_TOKEN (and GITHUB_API_URL) let rebuild, cancel and sweep set commit statuses.`;

/**
 * `--local` takes an optional value, so commander would read `lambkin builds --local octo/hello`
 * as data directory `octo/hello`. A value after `--local` counts as its data directory only when
 * that directory exists; otherwise `--local` moves to the end, where it takes nothing.
 */
export function normalizeLocalOption(argv: readonly string[], cwd: string): string[] {
  const result = [...argv];
  const end = result.indexOf('--');
  const limit = end === -1 ? result.length : end;
  const at = result.findIndex((arg, index) => index < limit && arg === '--local');
  const next = result[at + 1];
  if (
    at === -1 ||
    at + 1 >= limit ||
    next === undefined ||
    next.startsWith('-') ||
    isDirectory(resolve(cwd, next))
  ) {
    return result;
  }
  result.splice(at, 1);
  result.splice(limit - 1, 0, '--local');
  return result;
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** A webhook URL argument: http(s) only. */
export function parseWebhookUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new InvalidArgumentError(`"${value}" is not a URL: give the webhook function's https URL.`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new InvalidArgumentError(
      `"${value}" is not an http(s) URL: give the webhook function's https URL.`,
    );
  }
  return value;
}
