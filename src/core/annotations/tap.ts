/**
 * TAP, as node:test's `tap` reporter and tape write it: `not ok 3 - name`, then a YAML diagnostic
 * block between `---` and `...`, indented below it. The place is the first frame inside the checkout
 * of tape's `at:`, then of `stack:` (node:test's frames have no `at `), then node:test's `location:`
 * (where the test is declared). Subtests are indented; a suite that failed only because a subtest did
 * (`failureType: 'subtestsFailed'`) and `# TODO` / `# SKIP` points are left out. The title is the test's
 * name (tape: the `# name` comment above its assertions); the message is node:test's `error:`, or the
 * assertion's name with tape's `expected:` and `actual:`.
 */
import { frameLocations, parseLocation } from './locations.js';
import { dedent, indentOf, isBlank } from './text.js';
import type { Finding, LogParser, SourceLocation } from './types.js';

const NOT_OK = /^(\s*)not ok\b(.*)$/;
const NUMBER_AND_DASH = /^\s*\d*\s*-?\s*/;
const DIRECTIVE = /#\s*(?:TODO|SKIP)\b/i;
const COMMENT = /^\s*#\s?(.*)$/;
const KEY = /^([A-Za-z_][\w-]*):(?:\s(.*))?$/;

/** A YAML scalar as TAP producers write one: plain, `'single'` or `"double"` quoted. */
function unquote(value: string): string {
  const text = value.trim();
  if (text.length >= 2 && text.startsWith("'") && text.endsWith("'"))
    return text.slice(1, -1).replace(/''/g, "'");
  if (text.length >= 2 && text.startsWith('"') && text.endsWith('"')) {
    try {
      const parsed: unknown = JSON.parse(text);
      if (typeof parsed === 'string') return parsed;
    } catch {
      // Not JSON after all: keep it as it is.
    }
    return text.slice(1, -1);
  }
  return text;
}

/**
 * The block's top-level keys and their values: a scalar on the key's line, or the more indented lines
 * below it (block scalars `|-`, nested maps) dedented.
 */
function readYamlBlock(lines: readonly string[]): Map<string, string> {
  const values = new Map<string, string>();
  const first = lines.find((line) => !isBlank(line));
  if (first === undefined) return values;
  const keyIndent = indentOf(first);
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index] ?? '';
    if (isBlank(line) || indentOf(line) !== keyIndent) continue;
    const match = KEY.exec(line.slice(keyIndent));
    if (match === null) continue;
    const [, key = '', inline = ''] = match;
    const nested: string[] = [];
    while (index + 1 < lines.length) {
      const next = lines[index + 1] ?? '';
      if (!isBlank(next) && indentOf(next) <= keyIndent) break;
      nested.push(next);
      index++;
    }
    const scalar = inline.trim();
    const isBlockScalar = scalar === '' || /^[|>][+-]?$/.test(scalar);
    values.set(key, isBlockScalar ? dedent(nested) : unquote(scalar));
  }
  return values;
}

export const tapParser: LogParser = {
  name: 'tap',
  parse(lines) {
    const findings: Finding[] = [];
    /** The latest `# comment`: tape's test name, node:test's `# Subtest: name`. */
    let comment: string | undefined;
    for (let index = 0; index < lines.length; index++) {
      const line = lines[index] ?? '';
      const commentMatch = COMMENT.exec(line);
      if (commentMatch !== null) {
        comment = commentMatch[1]?.trim();
        continue;
      }
      const match = NOT_OK.exec(line);
      if (match === null) continue;
      const [, indent = '', after = ''] = match;
      const description = after.replace(NUMBER_AND_DASH, '').trim();
      const start = index;
      // The diagnostic block: `---` indented below the point, up to `...` at the same indentation.
      const block: string[] = [];
      const opener = lines[index + 1] ?? '';
      if (opener.trim() === '---' && indentOf(opener) > indent.length) {
        const blockIndent = indentOf(opener);
        index++;
        while (index + 1 < lines.length) {
          const next = lines[index + 1] ?? '';
          if (!isBlank(next) && indentOf(next) < blockIndent) break;
          index++;
          if (next.trim() === '...' && indentOf(next) === blockIndent) break;
          block.push(next);
        }
      }
      if (DIRECTIVE.test(description)) continue;
      const yaml = readYamlBlock(block);
      if (yaml.get('failureType') === 'subtestsFailed') continue;

      const locations: SourceLocation[] = [];
      const at = yaml.get('at');
      if (at !== undefined) for (const place of frameLocations([at], false)) locations.push(place);
      const stack = yaml.get('stack');
      // One by one: a stack of 100 000 frames spread into push() would overflow the call stack.
      if (stack !== undefined)
        for (const place of frameLocations(stack.split('\n'), false)) locations.push(place);
      const declared = yaml.get('location');
      const declaredAt = declared === undefined ? undefined : parseLocation(declared);
      if (declaredAt !== undefined) locations.push(declaredAt);

      const isSubtestComment = comment?.startsWith('Subtest:') === true;
      const title = isSubtestComment || comment === undefined || comment === '' ? description : comment;
      let message = yaml.get('error') ?? description;
      if (yaml.get('error') === undefined && yaml.has('expected') && yaml.has('actual')) {
        message = `${description}\n\nexpected: ${yaml.get('expected') ?? ''}\nactual: ${yaml.get('actual') ?? ''}`;
      }
      const finding: Finding = { locations, level: 'failure', message, lineIndex: start };
      if (title !== '') finding.title = title;
      if (block.length > 0) finding.rawDetails = dedent(block);
      findings.push(finding);
    }
    return findings;
  },
};
