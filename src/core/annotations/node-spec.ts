/**
 * node:test's default `spec` reporter: a failed test is `✖ name (1.2ms)`, followed by its error and
 * stack indented below it; the summary at the end (`✖ failing tests:`) repeats each failure after a
 * `test at file:line:col` line. The place is the first stack frame inside the checkout, else the
 * `test at` line. A suite that failed through its tests has nothing indented below it: no finding;
 * nor has a failed `# TODO` test.
 */
import { frameLocations, isStackFrame, parseLocation } from './locations.js';
import { dedent, indentOf, isBlank } from './text.js';
import type { Finding, LogParser } from './types.js';

const FAILED = /^(\s*)✖ (.*)$/;
const TEST_AT = /^\s*test at (\S.*)$/;
const DURATION = /^[\d.]+m?s\)$/;
/** A failed `todo` test is not a failure. */
const TODO = /#\s*TODO\b/;

/** The test's name without the duration the reporter appends: `adds (1.5ms)` → `adds`. */
function withoutDuration(text: string): string {
  const open = text.lastIndexOf(' (');
  return open !== -1 && DURATION.test(text.slice(open + 2)) ? text.slice(0, open) : text;
}

export const nodeSpecParser: LogParser = {
  name: 'node-test-spec',
  parse(lines) {
    const findings: Finding[] = [];
    for (let index = 0; index < lines.length; index++) {
      const match = FAILED.exec(lines[index] ?? '');
      if (match === null) continue;
      const [, indent = '', name = ''] = match;
      const start = index;
      const block: string[] = [];
      while (index + 1 < lines.length) {
        const next = lines[index + 1] ?? '';
        // A nested `✖` starts its own block (reporters that print a suite before its tests).
        if ((!isBlank(next) && indentOf(next) <= indent.length) || FAILED.test(next)) break;
        block.push(next);
        index++;
      }
      if (TODO.test(name)) continue;
      const firstFrame = block.findIndex(isStackFrame);
      const locations = frameLocations(block);
      const declared = TEST_AT.exec(lines[start - 1] ?? '');
      const declaredAt = declared === null ? undefined : parseLocation(declared[1]?.trim() ?? '');
      if (declaredAt !== undefined) locations.push(declaredAt);
      const title = withoutDuration(name.trim());
      const message = dedent(firstFrame === -1 ? block : block.slice(0, firstFrame)) || title;
      const finding: Finding = { locations, level: 'failure', message, title, lineIndex: start };
      if (block.length > 0) finding.rawDetails = dedent(block);
      findings.push(finding);
    }
    return findings;
  },
};
