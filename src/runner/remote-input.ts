/**
 * The runner on CodeBuild (`--input-url`): no caller waits for its answer, so it reads its input
 * from a presigned GET the controller made, spends that input at once (a presigned DELETE), and PUTs
 * its result to the presigned URL the input names. Nothing of the input ever comes from the
 * environment: CodeBuild shows a build's variables to whoever can read the build.
 */
import { LambkinError, messageOf } from '../core/errors.js';
import type { OutcomeUpload, RemoteRunnerResult, RunnerInput } from '../core/protocol.js';

/** The input or the outcome could not be moved; the runner then exits 1 (CodeBuild says FAILED). */
export class RemoteRunnerError extends LambkinError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('REMOTE_RUNNER', message, options);
  }
}

export interface TransferOptions {
  attempts?: number;
  /** Per attempt. */
  timeoutMs?: number;
  /** Wait before a retry, doubled each time. */
  backoffMs?: number;
}

/** Only the scheme, host and path: a presigned URL's query is its signature. */
function urlLabel(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.origin}${parsed.pathname}`;
  } catch {
    return 'the URL';
  }
}

async function withRetries<T>(
  what: string,
  options: TransferOptions,
  attempt: (signal: AbortSignal) => Promise<T | { retry: string }>,
): Promise<T> {
  const attempts = options.attempts ?? 4;
  let backoff = options.backoffMs ?? 500;
  let last = '';
  for (let index = 0; index < attempts; index++) {
    if (index > 0) {
      await new Promise((resolve) => setTimeout(resolve, backoff));
      backoff *= 2;
    }
    try {
      const result = await attempt(AbortSignal.timeout(options.timeoutMs ?? 30_000));
      if (typeof result === 'object' && result !== null && 'retry' in result) {
        last = (result as { retry: string }).retry;
        continue;
      }
      return result as T;
    } catch (error) {
      if (error instanceof RemoteRunnerError) throw error;
      last = messageOf(error);
    }
  }
  throw new RemoteRunnerError(`could not ${what} after ${attempts} attempts: ${last}`);
}

/** GETs the RunnerInput; a 4xx is final (expired, spent or never there), a 5xx or a break is retried. */
export async function fetchRunnerInput(url: string, options: TransferOptions = {}): Promise<RunnerInput> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new RemoteRunnerError('--input-url needs an http(s) URL (the presigned GET of the input)');
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') {
    throw new RemoteRunnerError(`--input-url must be an http(s) URL (got ${parsed.protocol})`);
  }
  const label = urlLabel(url);
  const text = await withRetries(`read the input from ${label}`, options, async (signal) => {
    const response = await fetch(url, { signal });
    if (response.status >= 500) return { retry: `HTTP ${response.status}` };
    if (!response.ok) {
      throw new RemoteRunnerError(
        `the input at ${label} answered HTTP ${response.status}: it expired, was already read, or was never written`,
      );
    }
    return response.text();
  });
  let input: unknown;
  try {
    input = JSON.parse(text);
  } catch {
    throw new RemoteRunnerError(`the input at ${label} is not JSON`);
  }
  if (typeof input !== 'object' || input === null || (input as { kind?: unknown }).kind !== 'run') {
    throw new RemoteRunnerError(`the input at ${label} is not a runner input`);
  }
  const upload = (input as RunnerInput).outcomeUpload;
  if (!upload || typeof upload.url !== 'string') {
    throw new RemoteRunnerError(`the input at ${label} names no outcomeUpload: no one would hear the result`);
  }
  return input as RunnerInput;
}

/**
 * Deletes the input object (its presigned DELETE): from now on its URL reads nothing. A failure is
 * only a note: the controller deletes it too when the run completes, and it expires in minutes.
 */
export async function spendInput(
  upload: OutcomeUpload,
  options: TransferOptions = {},
): Promise<string | undefined> {
  if (!upload.inputDeleteUrl) return undefined;
  const url = upload.inputDeleteUrl;
  try {
    await withRetries('delete the input', { attempts: 2, ...options }, async (signal) => {
      const response = await fetch(url, { method: 'DELETE', signal });
      if (response.status >= 500) return { retry: `HTTP ${response.status}` };
      if (!response.ok && response.status !== 404) throw new RemoteRunnerError(`HTTP ${response.status}`);
      return true;
    });
    return undefined;
  } catch (error) {
    return `the input could not be deleted (${messageOf(error)}); it expires on its own`;
  }
}

/**
 * PUTs the result once. 412 (an object is there already: the PUT is signed with If-None-Match) is
 * final and refused: whatever wrote it first was not this runner, and the controller reads that.
 */
export async function deliverResult(
  upload: OutcomeUpload,
  result: RemoteRunnerResult,
  options: TransferOptions = {},
): Promise<void> {
  const body = JSON.stringify(result);
  const label = urlLabel(upload.url);
  await withRetries(`deliver the outcome to ${label}`, options, async (signal) => {
    const response = await fetch(upload.url, {
      method: 'PUT',
      headers: { ...upload.headers, 'content-type': 'application/json' },
      body,
      signal,
    });
    if (response.status >= 500) return { retry: `HTTP ${response.status}` };
    if (response.status === 412) {
      throw new RemoteRunnerError(
        `an outcome was already delivered to ${label} by someone else: this runner's was refused`,
      );
    }
    if (!response.ok) {
      const text = await response.text().catch(() => '');
      throw new RemoteRunnerError(`${label} answered HTTP ${response.status}: ${text.slice(0, 300)}`);
    }
    return true;
  });
}
