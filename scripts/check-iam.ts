/**
 * `npm run check:iam`, after `npm test` (.ci/run runs it): every AWS action that the SDK commands
 * sent during the test run need is granted by the role of at least one function in template.yaml.
 *
 * The test run records the commands (tests/support/test-servers.ts sets LAMBKIN_SDK_COMMAND_LOG;
 * src/aws/command-log.ts writes it). Jest runs suites in parallel and in no fixed order, so this
 * cannot be a test itself: it runs once the whole suite has finished. The mapping from commands to
 * actions, and what is excluded and why, are in scripts/iam-actions.ts. The per-function check
 * (each function's own bundle against its own role) is tests/template/bundles.test.ts.
 *
 * Usage: npm run check:iam [-- <command log> [<template>]]   (default: $LAMBKIN_SDK_COMMAND_LOG,
 * else the file the test run writes in the OS temp folder; template.yaml. Another template is for
 * the tests, which show that a grant taken out of it fails the check.)
 */
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { COMMAND_LOG_VARIABLE } from '../src/aws/command-log.js';
import { DEPLOYED_FUNCTIONS, grantsOf, loadTemplate, TEMPLATE_PATH } from '../tests/support/template.js';
import { actionsOfCommandLog, coverage, OPERATOR_ONLY } from './iam-actions.js';

/** Where the test run writes the log unless LAMBKIN_SDK_COMMAND_LOG says otherwise (test-servers.ts). */
export const DEFAULT_COMMAND_LOG = join(tmpdir(), 'lambkin-sdk-commands.log');

function main(argv: string[]): number {
  const file = argv[0] ?? (process.env[COMMAND_LOG_VARIABLE] || DEFAULT_COMMAND_LOG);
  if (!existsSync(file)) {
    console.error(`check:iam: no command log at ${file}. Run \`npm test\` first (it writes the log).`);
    return 1;
  }
  const text = readFileSync(file, 'utf8');
  if (text.trim() === '') {
    console.error(
      `check:iam: the command log ${file} is empty: the test run sent no AWS SDK command, or ` +
        `${COMMAND_LOG_VARIABLE} did not reach the tests. Nothing would be checked.`,
    );
    return 1;
  }
  const { required, operatorOnly } = actionsOfCommandLog(text);
  const templatePath = argv[1] ?? TEMPLATE_PATH;
  const template = loadTemplate(templatePath);
  const grants = Object.fromEntries(
    DEPLOYED_FUNCTIONS.map(([logicalId]) => [logicalId, grantsOf(template, logicalId)]),
  );
  const { covered, missing } = coverage(required, grants);
  console.log(`check:iam: ${file} against ${templatePath}`);
  for (const entry of covered) {
    console.log(`  ok       ${entry.action.padEnd(32)} ${entry.grantedBy.join(', ')}`);
  }
  for (const entry of operatorOnly) {
    console.log(`  excluded ${entry.action.padEnd(32)} ${OPERATOR_ONLY[entry.action] ?? ''}`);
  }
  for (const entry of missing) {
    console.log(`  MISSING  ${entry.action.padEnd(32)} needed by ${entry.because.join('; ')}`);
  }
  if (missing.length > 0) {
    console.error(
      `check:iam: ${missing.length} action(s) the code sends are granted to no function in template.yaml: ` +
        `${missing.map((entry) => entry.action).join(', ')}. Grant them to the function that sends them ` +
        '(or, if only the operator or the tests send them, add them to OPERATOR_ONLY in scripts/iam-actions.ts ' +
        'with the reason).',
    );
    return 1;
  }
  console.log(`check:iam: all ${covered.length} action(s) the code sends are granted.`);
  return 0;
}

process.exitCode = main(process.argv.slice(2));
