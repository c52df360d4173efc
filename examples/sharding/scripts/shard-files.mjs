// This shard's part of a test suite, for test runners without a shard option of their own.
//
//   node scripts/shard-files.mjs DIR SUFFIX -- COMMAND [ARGS...]   runs COMMAND ARGS... FILES...
//   node scripts/shard-files.mjs DIR SUFFIX                         prints FILES, one a line
//
// FILES: the files under DIR (node_modules left out) whose names end in SUFFIX, sorted, keeping
// every file whose position (from 0) modulo LAMBKIN_SHARD_TOTAL is LAMBKIN_SHARD_INDEX - 1.
// Without the variables (your machine, or "parallel": 1) this is shard 1 of 1: the whole suite.
// A shard left without files runs nothing and passes. Needs Node.js alone, no packages.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import process from 'node:process';

function fail(message) {
  process.stderr.write(`shard-files: ${message}\n`);
  process.exit(2);
}

function walk(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    if (!entry.isDirectory()) return [join(dir, entry.name)];
    return entry.name === 'node_modules' ? [] : walk(join(dir, entry.name));
  });
}

const [dir, suffix, dashes, command, ...args] = process.argv.slice(2);
if (!dir || !suffix || (dashes !== undefined && (dashes !== '--' || !command))) {
  fail('usage: node shard-files.mjs DIR SUFFIX [-- COMMAND [ARGS...]]');
}
const index = Number(process.env.LAMBKIN_SHARD_INDEX ?? 1);
const total = Number(process.env.LAMBKIN_SHARD_TOTAL ?? 1);
if (!Number.isInteger(index) || !Number.isInteger(total) || index < 1 || index > total) {
  fail(`LAMBKIN_SHARD_INDEX must be 1 to LAMBKIN_SHARD_TOTAL (got ${index}/${total})`);
}

const files = walk(dir)
  .filter((file) => file.endsWith(suffix))
  .sort();
if (files.length === 0) fail(`no files ending in ${suffix} under ${dir}`);
const mine = files.filter((_, position) => position % total === index - 1);

if (command === undefined) {
  process.stdout.write(mine.map((file) => `${file}\n`).join(''));
} else if (mine.length === 0) {
  process.stderr.write(`shard ${index}/${total}: no test files (${files.length} files, ${total} shards)\n`);
} else {
  process.stderr.write(`shard ${index}/${total}: ${mine.length} of ${files.length} test files\n`);
  const run = spawnSync(command, [...args, ...mine], { stdio: 'inherit' });
  if (run.error) fail(`${command}: ${run.error.message}`);
  process.exitCode = run.status ?? 1;
}
