/** Waiting in tests for what happens in another process or in the background. */
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Probes every 100 ms until `probe` returns a value (not undefined) and returns it; throws, naming
 * `what`, after `timeoutMs`.
 */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 60_000,
): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}
