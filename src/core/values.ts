/** Checks of unknown values (parsed JSON, events, error shapes). */

/** An object that is not null and not an array: what JSON calls an object. */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
