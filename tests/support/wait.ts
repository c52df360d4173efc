/** Waiting in tests for what happens in another process or in the background. */
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Probes every `intervalMs` until `probe` returns a value (not undefined) and returns it; after
 * `timeoutMs` throws an error naming `what` (a function: worked out only then, e.g. to include
 * the logs so far).
 */
export async function waitFor<T>(
  what: string | (() => string),
  probe: () => T | undefined | Promise<T | undefined>,
  timeoutMs = 60_000,
  intervalMs = 100,
): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > until) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${typeof what === 'string' ? what : what()}`,
      );
    }
    await sleep(intervalMs);
  }
}
