/**
 * ESLint's default "stylish" formatter: a file's path on a line of its own, then one indented line per
 * problem, `  3:7  error  message  rule-id` (columns padded with spaces; no rule id for a parse error).
 * `error` is a failure, `warning` a warning.
 */
import { location } from './locations.js';
import { indentOf, isBlank } from './text.js';
import type { Finding, LogParser } from './types.js';

const PROBLEM = /^\s+(\d+):(\d+)\s+(error|warning)\s+(\S.*)$/;
const RULE_ID = /^(?:@?[\w.-]+\/)*[\w.-]+$/;

/** Splits `message  rule-id` at the last run of two spaces, when what follows looks like a rule id. */
function messageAndRule(text: string): { message: string; rule?: string } {
  const trimmed = text.trimEnd();
  const gap = trimmed.lastIndexOf('  ');
  if (gap !== -1) {
    const rule = trimmed.slice(gap + 2).trim();
    const message = trimmed.slice(0, gap).trim();
    if (message !== '' && RULE_ID.test(rule)) return { message, rule };
  }
  return { message: trimmed.trim() };
}

export const eslintStylishParser: LogParser = {
  name: 'eslint-stylish',
  parse(lines) {
    const findings: Finding[] = [];
    /** The path line the problem lines below belong to (only while they follow it directly). */
    let file: string | undefined;
    for (let index = 0; index < lines.length; index++) {
      const line = lines[index] ?? '';
      if (isBlank(line)) {
        file = undefined;
        continue;
      }
      if (indentOf(line) === 0) {
        file = line.trim();
        continue;
      }
      const match = file === undefined ? null : PROBLEM.exec(line);
      if (file === undefined || match === null) {
        file = undefined;
        continue;
      }
      const [, row, column, level, text = ''] = match;
      const { message, rule } = messageAndRule(text);
      const finding: Finding = {
        locations: [location(file, row, column)],
        level: level === 'warning' ? 'warning' : 'failure',
        message,
        lineIndex: index,
      };
      if (rule !== undefined) finding.title = rule;
      findings.push(finding);
    }
    return findings;
  },
};
