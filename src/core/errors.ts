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
