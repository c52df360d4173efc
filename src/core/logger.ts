/**
 * Structured logs: one JSON object per line (CloudWatch and `lambkin dev` both read them).
 * Injected, so tests can capture what was logged.
 */
export type LogFields = Record<string, unknown>;

export interface Logger {
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
}

function errorFields(fields: LogFields): LogFields {
  const result: LogFields = {};
  for (const [key, value] of Object.entries(fields)) {
    result[key] = value instanceof Error ? { name: value.name, message: value.message } : value;
  }
  return result;
}

export function createJsonLogger(
  write: (line: string) => void = (line) => process.stdout.write(line + '\n'),
  base: LogFields = {},
): Logger {
  const log =
    (level: string) =>
    (message: string, fields: LogFields = {}) =>
      write(
        JSON.stringify({ level, time: new Date().toISOString(), message, ...base, ...errorFields(fields) }),
      );
  return { info: log('info'), warn: log('warn'), error: log('error') };
}

/** Keeps entries in memory: for tests and for the CLI's summaries. */
export interface MemoryLogger extends Logger {
  entries: { level: string; message: string; fields: LogFields }[];
}

export function createMemoryLogger(): MemoryLogger {
  const entries: MemoryLogger['entries'] = [];
  const log =
    (level: string) =>
    (message: string, fields: LogFields = {}) =>
      entries.push({ level, message, fields: errorFields(fields) });
  return { entries, info: log('info'), warn: log('warn'), error: log('error') };
}
