/**
 * Jest's failure report: `● Suite › test`, the error, a code frame (`> 12 | …`) and the stack
 * (`at Object.<anonymous> (src/x.test.ts:12:5)`, relative to where jest ran). The place is the first
 * frame inside the checkout; the message is what comes before the code frame or stack. `● Console`
 * blocks (console output of passing tests) are left out; the "Summary of all failing tests" repeats
 * the failures (deduplicated later).
 */
import { frameLocations, isStackFrame } from './locations.js';
import { dedent } from './text.js';
import type { Finding, LogParser } from './types.js';

const HEADER = /^\s*● (.*)$/;
const CODE_FRAME = /^\s*>?\s*\d+ \|/;
const END =
  /^(?:PASS|FAIL) |^(?:Test Suites|Tests|Snapshots|Time):|^Ran all test suites|^Summary of all failing tests/;

export const jestParser: LogParser = {
  name: 'jest',
  parse(lines) {
    const findings: Finding[] = [];
    for (let index = 0; index < lines.length; index++) {
      const match = HEADER.exec(lines[index] ?? '');
      if (match === null) continue;
      const title = (match[1] ?? '').trim();
      const start = index;
      const block: string[] = [];
      while (index + 1 < lines.length) {
        const next = lines[index + 1] ?? '';
        if (HEADER.test(next) || END.test(next)) break;
        block.push(next);
        index++;
      }
      if (title === 'Console' || title === '') continue;
      const messageEnd = block.findIndex((line) => CODE_FRAME.test(line) || isStackFrame(line));
      const message = dedent(messageEnd === -1 ? block : block.slice(0, messageEnd)) || title;
      findings.push({
        locations: frameLocations(block),
        level: 'failure',
        message,
        title,
        rawDetails: dedent(block),
        lineIndex: start,
      });
    }
    return findings;
  },
};
