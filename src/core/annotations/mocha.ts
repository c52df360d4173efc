/**
 * Mocha's failure list (spec reporter and the others that share it), after `N failing`:
 *
 *     1) suite
 *          nested suite
 *            test:
 *        AssertionError …
 *         at Context.<anonymous> (test/x.test.js:10:12)
 *
 * The title runs up to the line ending in `:`; the message is what comes before the stack (mocha does
 * not indent a multi-line message); the block ends where the stack does. The place is the first frame
 * inside the checkout and outside node_modules (assertion libraries come first).
 */
import { frameLocations, isStackFrame } from './locations.js';
import { dedent, indentOf, isBlank } from './text.js';
import type { Finding, LogParser } from './types.js';

const FAILING = /^\s*\d+ failing\b/;
const PASSING = /^\s*\d+ passing\b/;
const HEADER = /^\s*\d+\) (.*)$/;
/** How many lines a title (the suites and the test) may span. */
const MAX_TITLE_LINES = 20;

export const mochaParser: LogParser = {
  name: 'mocha',
  parse(lines) {
    const findings: Finding[] = [];
    let inFailures = false;
    for (let index = 0; index < lines.length; index++) {
      const line = lines[index] ?? '';
      if (FAILING.test(line)) {
        inFailures = true;
        continue;
      }
      if (PASSING.test(line)) inFailures = false;
      const header = inFailures ? HEADER.exec(line) : null;
      if (header === null) continue;
      // The title: the header's text and the lines below it, up to one ending in ':'.
      const title: string[] = [(header[1] ?? '').trim()];
      let titleEnd = index;
      while (!(title[title.length - 1] ?? '').endsWith(':') && title.length < MAX_TITLE_LINES) {
        const next = lines[titleEnd + 1];
        if (next === undefined || isBlank(next) || HEADER.test(next)) break;
        title.push(next.trim());
        titleEnd++;
      }
      if (!(title[title.length - 1] ?? '').endsWith(':')) continue;
      const start = index;
      index = titleEnd;
      const block: string[] = [];
      let inStack = false;
      while (index + 1 < lines.length) {
        const next = lines[index + 1] ?? '';
        const isFrame = isStackFrame(next);
        if ((inStack && !isFrame) || (!inStack && HEADER.test(next))) break;
        inStack ||= isFrame;
        block.push(next);
        index++;
      }
      const firstFrame = block.findIndex(isStackFrame);
      // Mocha indents the message's first line only: take that indentation off every line.
      const indent = indentOf(block.find((text) => !isBlank(text)) ?? '');
      const name = title.join(' › ').slice(0, -1);
      findings.push({
        locations: frameLocations(block),
        level: 'failure',
        message: dedent(firstFrame === -1 ? block : block.slice(0, firstFrame), indent) || name,
        title: name,
        rawDetails: dedent(block, indent),
        lineIndex: start,
      });
    }
    return findings;
  },
};
