/**
 * TypeScript's compiler: `src/a.ts(3,7): error TS2322: …` and, with `--pretty`, `src/a.ts:3:7 - error
 * TS2322: …`. Lines indented by two spaces right below carry the rest of the message (the chain of
 * "Type … is not assignable" reasons). Paths are relative to where tsc ran.
 */
import { location } from './locations.js';
import { dedent, indentOf, isBlank } from './text.js';
import type { CheckAnnotation, Finding, LogParser } from './types.js';

const PLAIN = /^\s*(\S.*?)\((\d+),(\d+)\): (error|warning|message) (TS\d+): (.*)$/;
const PRETTY = /^\s*(\S.*?):(\d+):(\d+) - (error|warning|message) (TS\d+): (.*)$/;

const LEVELS: Record<string, CheckAnnotation['annotation_level']> = {
  error: 'failure',
  warning: 'warning',
  message: 'notice',
};

export const tscParser: LogParser = {
  name: 'tsc',
  parse(lines) {
    const findings: Finding[] = [];
    for (let index = 0; index < lines.length; index++) {
      const line = lines[index] ?? '';
      if (!line.includes(' TS')) continue;
      const match = PLAIN.exec(line) ?? PRETTY.exec(line);
      if (match === null) continue;
      const [, file = '', row, column, level = 'error', code, first = ''] = match;
      const headerIndent = indentOf(line);
      const rest: string[] = [];
      while (index + 1 < lines.length) {
        const next = lines[index + 1] ?? '';
        if (isBlank(next) || indentOf(next) < headerIndent + 2) break;
        rest.push(next);
        index++;
      }
      const message = rest.length === 0 ? first.trim() : `${first.trim()}\n${dedent(rest)}`;
      findings.push({
        locations: [location(file, row, column)],
        level: LEVELS[level] ?? 'failure',
        message,
        title: code,
        lineIndex: index - rest.length,
      });
    }
    return findings;
  },
};
