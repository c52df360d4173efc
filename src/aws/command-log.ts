/**
 * When LAMBKIN_SDK_COMMAND_LOG names a file, every AWS SDK command a Lambkin client sends is
 * appended to it, one `<ClientName> <CommandName>` line each. The test run sets it, and the
 * template check derives the IAM actions each function needs from what was really sent, rather
 * than from a hand-written list. Off (one environment lookup per client) everywhere else.
 */
import { appendFileSync } from 'node:fs';

interface MiddlewareContext {
  clientName?: string;
  commandName?: string;
}

type Middleware = (
  next: (args: unknown) => Promise<unknown>,
  context: MiddlewareContext,
) => (args: unknown) => Promise<unknown>;

/** Any SDK v3 client (its middleware stack is typed per service, hence `never` here). */
export interface InstrumentableClient {
  middlewareStack: { add(middleware: never, options: never): void };
}

export const COMMAND_LOG_VARIABLE = 'LAMBKIN_SDK_COMMAND_LOG';

export function recordCommands<T extends InstrumentableClient>(client: T): T {
  const file = process.env[COMMAND_LOG_VARIABLE];
  if (!file) return client;
  const stack = client.middlewareStack as unknown as {
    add(middleware: Middleware, options: { step: 'initialize'; name: string }): void;
  };
  stack.add(
    (next, context) => async (args) => {
      appendFileSync(
        file,
        `${context.clientName ?? 'UnknownClient'} ${context.commandName ?? 'UnknownCommand'}\n`,
      );
      return next(args);
    },
    { step: 'initialize', name: 'lambkinCommandLog' },
  );
  return client;
}
