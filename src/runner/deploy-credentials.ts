/**
 * The deploy step's AWS credentials: the runner redeems the controller's grant (a presigned STS
 * AssumeRole request) only after install and test passed, immediately before the deploy step, and
 * gives what STS answers to that step alone. STS answers XML; the few elements needed are read
 * here (no XML library: the documents are small and their shape is fixed).
 */
import type { DeployCredentialGrant, DeployCredentials } from '../core/protocol.js';
import { LambkinError } from '../core/errors.js';

/** The deploy role could not be assumed with the grant: the build ends `error`, nothing deployed. */
export class DeployCredentialsError extends LambkinError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('DEPLOY_CREDENTIALS', message, options);
  }
}

/** The answer's body is read up to this many bytes: AssumeRole's is a few KiB. */
const MAX_ANSWER_BYTES = 256 * 1024;

export async function redeemDeployGrant(
  grant: DeployCredentialGrant,
  options: { timeoutMs: number; signal?: AbortSignal; clock?: () => number },
): Promise<DeployCredentials> {
  const clock = options.clock ?? Date.now;
  const failed = (why: string, cause?: unknown) =>
    new DeployCredentialsError(`could not assume the deploy role ${grant.roleArn}: ${why}`, { cause });
  if (clock() >= grant.expiresAt) throw failed('the grant from the controller has expired');
  const timeout = AbortSignal.timeout(Math.max(options.timeoutMs, 1));
  let status: number;
  let text: string;
  try {
    const response = await fetch(grant.url, {
      method: 'GET',
      redirect: 'error',
      signal: options.signal ? AbortSignal.any([timeout, options.signal]) : timeout,
    });
    status = response.status;
    text = (await response.text()).slice(0, MAX_ANSWER_BYTES);
  } catch (error) {
    const message =
      error instanceof Error
        ? error.cause instanceof Error
          ? error.cause.message
          : error.message
        : String(error);
    throw failed(`STS could not be reached (${message})`, error);
  }
  const answer = parseAssumeRoleAnswer(text);
  if ('error' in answer) {
    throw failed(`STS answered ${status} ${answer.error.code}: ${answer.error.message}`);
  }
  if (status !== 200) throw failed(`STS answered ${status} without an error document`);
  return { ...answer.credentials, region: grant.region, roleArn: grant.roleArn };
}

export type AssumeRoleAnswer =
  | { credentials: Omit<DeployCredentials, 'region' | 'roleArn'> }
  | { error: { code: string; message: string } };

/** An AssumeRoleResponse's credentials, or an ErrorResponse's code and message. */
export function parseAssumeRoleAnswer(xml: string): AssumeRoleAnswer {
  const credentials = element(xml, 'Credentials');
  if (credentials !== undefined) {
    const accessKeyId = element(credentials, 'AccessKeyId');
    const secretAccessKey = element(credentials, 'SecretAccessKey');
    const sessionToken = element(credentials, 'SessionToken');
    const expiration = Date.parse(element(credentials, 'Expiration') ?? '');
    if (accessKeyId && secretAccessKey && sessionToken) {
      return {
        credentials: {
          accessKeyId,
          secretAccessKey,
          sessionToken,
          expiresAt: Number.isFinite(expiration) ? expiration : Date.now() + 900_000,
        },
      };
    }
  }
  const error = element(xml, 'Error');
  if (error !== undefined) {
    return {
      error: {
        code: element(error, 'Code') ?? 'UnknownError',
        message: element(error, 'Message') ?? '(no message)',
      },
    };
  }
  const shown = xml.replace(/\s+/g, ' ').trim().slice(0, 200);
  return {
    error: { code: 'UnreadableAnswer', message: `not an AssumeRole answer: ${shown || '(empty)'}` },
  };
}

/** The text content of the first `<name>` element (any namespace prefix), entities decoded. */
function element(xml: string, name: string): string | undefined {
  const match = new RegExp(
    `<(?:[\\w.-]+:)?${name}(?:\\s[^>]*)?>([\\s\\S]*?)</(?:[\\w.-]+:)?${name}\\s*>`,
  ).exec(xml);
  return match?.[1] !== undefined ? decodeEntities(match[1].trim()) : undefined;
}

function decodeEntities(text: string): string {
  return text
    .replace(/<!\[CDATA\[([\s\S]*?)\]\]>/g, '$1')
    .replace(/&(#x[0-9a-fA-F]+|#\d+|amp|lt|gt|quot|apos);/g, (_, entity: string) => {
      if (entity.startsWith('#x')) return String.fromCodePoint(parseInt(entity.slice(2), 16));
      if (entity.startsWith('#')) return String.fromCodePoint(parseInt(entity.slice(1), 10));
      return { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" }[entity] ?? '';
    });
}
