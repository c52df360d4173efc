/**
 * Tests that need a tool only CI installs (moto_server, cfn-lint, chromium) skip with a visible
 * message on a laptop and fail when CI=true and the tool is missing.
 */
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

export function findOnPath(tool: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, tool);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this folder
    }
  }
  return undefined;
}

export const isCI = (): boolean => process.env.CI === 'true' || process.env.CI === '1';

/**
 * Call at describe level. Returns true when the tool is there. Otherwise registers a test that
 * fails on CI, or a visibly skipped one (with a console warning) elsewhere, and returns false.
 */
export function requireTool(
  tool: string,
  purpose: string,
  present = findOnPath(tool) !== undefined,
): boolean {
  if (present) return true;
  if (isCI()) {
    test(`${tool} is installed (${purpose})`, () => {
      throw new Error(`${tool} is not on PATH but CI=true: .ci/run must install it (${purpose}).`);
    });
  } else {
    console.warn(
      `SKIPPED: ${purpose}: ${tool} is not on PATH (CI installs it; these tests fail there without it).`,
    );
    test.skip(`${purpose} (needs ${tool})`, () => undefined);
  }
  return false;
}

/**
 * A test that needs root (a privilege drop, another user's view): CI runs as root, so there a
 * missing root is a failure; elsewhere the test is skipped visibly.
 */
export function itAsRoot(name: string, fn: () => Promise<void>, timeoutMs?: number): void {
  if (process.getuid?.() === 0) it(name, fn, timeoutMs);
  else if (isCI()) it(name, () => Promise.reject(new Error('CI=true but not root: CI must run as root')));
  else {
    console.warn(`SKIPPED (needs root): ${name}`);
    it.skip(`${name} (needs root)`, fn);
  }
}
