/**
 * Typed errors. Every message says what went wrong and what to do about it; `code` is stable for
 * callers and tests.
 */
export class LambkinError extends Error {
  constructor(
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The process configuration (environment) is incomplete or wrong. */
export class ConfigurationError extends LambkinError {
  constructor(readonly problems: string[]) {
    super('CONFIGURATION', `Lambkin is not configured correctly:\n  - ${problems.join('\n  - ')}`);
  }
}

/** A state change the build's current state does not allow (or another writer got there first). */
export class TransitionRefusedError extends LambkinError {
  constructor(
    readonly repo: string,
    readonly number: number,
    readonly from: string,
    readonly to: string,
    readonly actual?: string,
  ) {
    super(
      'TRANSITION_REFUSED',
      `Build ${repo}#${number} cannot go ${from} → ${to}` +
        (actual ? `: it is ${actual}` : ': that transition is not allowed') +
        '. Nothing was changed.',
    );
  }
}

/** The build (or other record) asked for does not exist. */
export class NotFoundError extends LambkinError {
  constructor(what: string) {
    super('NOT_FOUND', `${what} was not found. Check the repository name and build number.`);
  }
}

/** A request to Lambkin itself is wrong (bad webhook body, bad CLI input). */
export class BadRequestError extends LambkinError {
  constructor(message: string) {
    super('BAD_REQUEST', message);
  }
}

/** What was thrown, as text: an Error's message, anything else as a string. */
export function messageOf(thrown: unknown): string {
  return thrown instanceof Error ? thrown.message : String(thrown);
}

/**
 * An error and its causes in one line, with their codes (`fetch failed: connect ECONNREFUSED
 * 127.0.0.1:9 (ECONNREFUSED)`): network errors keep what went wrong in their causes.
 */
export function describeErrorChain(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; current instanceof Error && depth < 4; depth++) {
    const code = (current as { code?: unknown }).code;
    parts.push(typeof code === 'string' ? `${current.message} (${code})` : current.message);
    current = current.cause;
  }
  return parts.length > 0 ? parts.join(': ') : String(error);
}
