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
