/**
 * The CLI's errors and how any error becomes what the user sees: one line on stderr and an exit
 * code (0 ok, 1 user error or not found, 2 usage error). Stack traces only with LAMBKIN_DEBUG=1.
 */
import { CommanderError } from 'commander';
import { ConfigurationError, LambkinError } from '../core/errors.js';

export const EXIT_OK = 0;
export const EXIT_USER_ERROR = 1;
export const EXIT_USAGE = 2;

/** An error the CLI reports as is; `exitCode` says which kind. */
export class CliError extends LambkinError {
  constructor(
    code: string,
    message: string,
    readonly exitCode: number = EXIT_USER_ERROR,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

/** The command line itself is wrong (what commander would have said, for checks it cannot make). */
export class UsageError extends CliError {
  constructor(message: string) {
    super('USAGE', message, EXIT_USAGE);
  }
}

/** `--local`: no stack file, or the process that wrote it is gone. */
export class NoLocalStackError extends CliError {
  constructor(
    readonly dataDir: string,
    detail?: string,
  ) {
    super(
      'NO_LOCAL_STACK',
      `no local stack is running in ${dataDir}${detail ? ` (${detail})` : ''}: start one with \`lambkin dev\``,
    );
  }
}

/** The stack file exists but cannot be used (bad JSON, wrong shape, another version). */
export class LocalStackFileError extends CliError {
  constructor(path: string, problem: string) {
    super('LOCAL_STACK_FILE', `${path} ${problem}: stop and restart \`lambkin dev\` to write it again`);
  }
}

/**
 * A command that talks to AWS (`--stack`, or the LAMBKIN_* variables) found no region: the SDK
 * would fail on its first call with "Region is missing", which says nothing of how to set one.
 */
export class MissingRegionError extends CliError {
  constructor() {
    super(
      'NO_REGION',
      'no AWS region is set: pass --region REGION (the region the stack was deployed to, such as ' +
        'us-east-1), or set AWS_REGION, or set "region" in your AWS profile (aws configure)',
    );
  }
}

/** `lambkin cancel` of a build that already ended. */
export class BuildFinishedError extends CliError {
  constructor(label: string, state: string, description?: string) {
    super(
      'BUILD_FINISHED',
      `build ${label} already finished (${state}${description ? `: ${description}` : ''}); nothing to cancel`,
    );
  }
}

/** A settings key that the settings document does not have, or a value it cannot hold. */
export class SettingsKeyError extends CliError {
  constructor(message: string) {
    super('SETTINGS_KEY', message);
  }
}

/** What the user sees of an error: one line (without the `lambkin: ` prefix) and the exit code. */
export interface ErrorReport {
  /** Empty when commander already printed it. */
  line: string;
  exitCode: number;
}

/** Commander's codes that are not failures. */
const COMMANDER_SUCCESS = new Set(['commander.helpDisplayed', 'commander.version']);

export function reportFor(error: unknown): ErrorReport {
  if (error instanceof CommanderError) {
    // Commander printed its message (or the help) already.
    return { line: '', exitCode: COMMANDER_SUCCESS.has(error.code) ? EXIT_OK : EXIT_USAGE };
  }
  if (error instanceof CliError) return { line: oneLine(error.message), exitCode: error.exitCode };
  if (error instanceof ConfigurationError) {
    return {
      line:
        `not configured: ${error.problems.join('; ')} ` +
        '(set the LAMBKIN_* variables, see docs/configuration.md, or use --local for a running `lambkin dev`)',
      exitCode: EXIT_USER_ERROR,
    };
  }
  if (error instanceof LambkinError) return { line: oneLine(error.message), exitCode: EXIT_USER_ERROR };
  if (error instanceof Error) return { line: describeForeignError(error), exitCode: EXIT_USER_ERROR };
  return { line: `unexpected error: ${oneLine(String(error))}`, exitCode: EXIT_USER_ERROR };
}

const NETWORK_ERROR =
  /\b(?:ECONNREFUSED|ECONNRESET|ENOTFOUND|ETIMEDOUT|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH)\b/;
/** The SDK's text when it wraps an error it did not recognise (one from another JS realm). */
const SDK_WRAPPER = /^AWS SDK error wrapper for \w+: /;

/** AWS SDK and network errors: their name says most; the hint says where to look. */
function describeForeignError(error: Error): string {
  const code = (error as { code?: unknown }).code;
  const message = oneLine(error.message.replace(SDK_WRAPPER, ''));
  if (NETWORK_ERROR.test(typeof code === 'string' ? code : '') || NETWORK_ERROR.test(message)) {
    return `could not reach the stack: ${message} (is it running? check --local or the AWS_ENDPOINT_URL_* variables)`;
  }
  if (typeof (error as { $metadata?: unknown }).$metadata === 'object') {
    const hint =
      error.name === 'ResourceNotFoundException' || error.name === 'NoSuchBucket'
        ? ' (check the LAMBKIN_* table and bucket names)'
        : '';
    return `AWS ${error.name}: ${message}${hint}`;
  }
  return `unexpected error: ${error.name === 'Error' ? '' : `${error.name}: `}${message} (set LAMBKIN_DEBUG=1 for details)`;
}

/** Messages from elsewhere may span lines; the CLI's error is always one. */
export function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, '; ').trim();
}

/** The stack and causes, for LAMBKIN_DEBUG=1. */
export function debugDetails(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; current !== undefined && depth < 5; depth++) {
    parts.push(
      current instanceof Error ? (current.stack ?? `${current.name}: ${current.message}`) : String(current),
    );
    current = current instanceof Error ? current.cause : undefined;
    if (current !== undefined) parts.push('caused by:');
  }
  return parts.join('\n');
}
