/**
 * docs/jobs.md against what it describes. The shard recipes are run as written: the page's
 * package.json `test` commands for node:test (its own --test-shard, and the splitting script) and
 * mocha go through `sh -c` in a copy of examples/sharding, every shard of 1 to 4 as a child process
 * with LAMBKIN_SHARD_INDEX/TOTAL set, and the reporters' output says which tests ran: the shards
 * must be disjoint and together the whole suite, and a failing test must fail only its own shard.
 * Jest and tape are not installed, so their command lines run against stand-in `jest` and `tape`
 * executables that print their arguments. The page must show examples/sharding's script and
 * scripts as they are, and its configs, job names and limit message must be what the planner does.
 */
import { stripVTControlCharacters } from 'node:util';
import { execFile } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { planJobs, SHARD_INDEX_ENV, SHARD_TOTAL_ENV, TooManyJobsError } from '../../src/core/jobs.js';
import { validateRepoConfig } from '../../src/core/repo-config.js';

const ROOT = process.cwd();
const PAGE = readFileSync(join(ROOT, 'docs/jobs.md'), 'utf8');
const EXAMPLE = join(ROOT, 'examples/sharding');
/** The splitting script, relative to a project's root, as the recipes call it. */
const SCRIPT = 'scripts/shard-files.mjs';
const SCRIPT_TEXT = readFileSync(join(EXAMPLE, SCRIPT), 'utf8');
const EXAMPLE_SCRIPTS = (
  JSON.parse(readFileSync(join(EXAMPLE, 'package.json'), 'utf8')) as { scripts: Record<string, string> }
).scripts;
const TOTALS = [1, 2, 3, 4];
/** For the tests that start many processes: a loaded machine may take a while. */
const RUN_TIMEOUT = 90_000;

/** The page from the heading line `heading` (`## X`, `### Y`) to the next heading of that level or higher. */
function section(heading: string): string {
  const start = PAGE.indexOf(`\n${heading}\n`);
  if (start === -1) throw new Error(`docs/jobs.md has no heading "${heading}"`);
  const level = heading.indexOf(' ');
  const rest = PAGE.slice(start + heading.length + 2);
  const end = rest.search(new RegExp(`^#{1,${level}} `, 'm'));
  return end === -1 ? rest : rest.slice(0, end);
}

/** The text of each ```<lang> block of `text` (`lang` empty: the blocks without one), indented or not. */
function blocks(text: string, lang: string): string[] {
  const found: string[] = [];
  let open: { lang: string; indent: number; lines: string[] } | undefined;
  for (const line of text.split('\n')) {
    const fence = /^( *)```(\S*)$/.exec(line);
    if (open === undefined) {
      if (fence) open = { lang: fence[2] ?? '', indent: fence[1]?.length ?? 0, lines: [] };
    } else if (fence && fence[2] === '') {
      if (open.lang === lang) found.push(open.lines.map((text) => `${text.slice(open?.indent)}\n`).join(''));
      open = undefined;
    } else {
      open.lines.push(line);
    }
  }
  return found;
}

/** The `test` script of each package.json block (a JSON block with "scripts") under `heading`. */
function testCommands(heading: string): string[] {
  return blocks(section(heading), 'json')
    .map((block) => JSON.parse(block) as { scripts?: Record<string, string> })
    .flatMap((json) => (json.scripts?.test !== undefined ? [json.scripts.test] : []));
}

/** The rows of the Markdown table of `text` whose header starts with `| <first>`: cells, trimmed, backticks off. */
function tableRows(text: string, first: string): string[][] {
  const start = text.search(new RegExp(`^\\| ${first} +\\|`, 'm'));
  if (start === -1) throw new Error(`no table headed "${first}"`);
  const lines = text.slice(start).split('\n');
  const end = lines.findIndex((line) => !line.startsWith('|'));
  return lines.slice(2, end === -1 ? undefined : end).map((line) =>
    line
      .slice(1, -1)
      .split(' | ')
      .map((cell) => cell.trim().replace(/`/g, '')),
  );
}

// The suite: its files as the script sorts them, and the tests each one holds.
const FILES = readdirSync(join(EXAMPLE, 'test'))
  .filter((name) => name.endsWith('.test.mjs'))
  .map((name) => `test/${name}`)
  .sort();
const TESTS_OF = new Map(
  FILES.map((file) => [
    file,
    [...readFileSync(join(EXAMPLE, file), 'utf8').matchAll(/^it\('([^']+)'/gm)].map(
      (match) => match[1] ?? '',
    ),
  ]),
);
const ALL_TESTS = [...TESTS_OF.values()].flat().sort();
/** The file that gets a failing test, and that test. */
const BROKEN_FILE = 'test/charlie.test.mjs';
const BROKEN_TEST = 'charlie: broken';

/** The files of shard `index` of `total` by the page's rule: position modulo total is index - 1. */
const filesOfShard = (files: readonly string[], index: number, total: number) =>
  files.filter((_, position) => position % total === index - 1);

type Output = 'tap' | 'mocha';

interface Recipe {
  name: string;
  /** The page's command, as package.json's `test` script holds it. */
  command: string;
  /** examples/sharding/package.json's script that must be the same command. */
  exampleScript: string;
  output: Output;
  /** Whether the split is the splitting script's (checked file by file), not the runner's own. */
  script: boolean;
}

const [NODE_BUILTIN, NODE_FILES] = testCommands('### node:test');
const [MOCHA] = testCommands('### Mocha');
const [JEST] = testCommands('### Jest');
const [TAPE] = testCommands('### tape');

const RECIPES: Recipe[] = [
  {
    name: 'node:test --test-shard',
    command: NODE_BUILTIN ?? '',
    exampleScript: 'test',
    output: 'tap',
    script: false,
  },
  {
    name: 'node:test with the script',
    command: NODE_FILES ?? '',
    exampleScript: 'test:node-files',
    output: 'tap',
    script: true,
  },
  {
    name: 'mocha with the script',
    command: MOCHA ?? '',
    exampleScript: 'test:mocha',
    output: 'mocha',
    script: true,
  },
];

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  passed: string[];
  failed: string[];
}

/** Which tests passed and failed, from node:test's TAP or mocha's spec reporter, checked against the summary. */
function parse(output: Output, stdout: string): { passed: string[]; failed: string[] } {
  const passed: string[] = [];
  const failed: string[] = [];
  if (output === 'tap') {
    for (const [, verdict, name] of stdout.matchAll(/^(ok|not ok) \d+ - (.+)$/gm)) {
      (verdict === 'ok' ? passed : failed).push(name ?? '');
    }
    const pass = /^# pass (\d+)$/m.exec(stdout)?.[1] ?? '0';
    const fail = /^# fail (\d+)$/m.exec(stdout)?.[1] ?? '0';
    expect({ pass: Number(pass), fail: Number(fail) }).toEqual({ pass: passed.length, fail: failed.length });
  } else {
    for (const [, name] of stdout.matchAll(/^ +✔ (.+?)(?: \(\d+ms\))?$/gm)) passed.push(name ?? '');
    // A failure is listed as `1) name` as it runs, then again as `1) name:` with its error.
    for (const [, name] of stdout.matchAll(/^ +\d+\) (.*[^:\n])$/gm)) failed.push(name ?? '');
    const pass = /^ +(\d+) passing/m.exec(stdout)?.[1] ?? '0';
    const fail = /^ +(\d+) failing/m.exec(stdout)?.[1] ?? '0';
    expect({ pass: Number(pass), fail: Number(fail) }).toEqual({ pass: passed.length, fail: failed.length });
  }
  return { passed, failed };
}

/**
 * `command` through `sh -c` in `cwd`, as npm runs a script: Lambkin's node_modules/.bin (mocha) on
 * the PATH after `binFirst`, this Node.js first, the shard variables only when `shard` is given
 * (as strings, to try bad values). node:test reports in TAP whatever its version's default.
 */
function sh(
  command: string,
  cwd: string,
  shard: { index: number | string; total: number | string } | null,
  binFirst?: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  // No colours, as in a build's log piped to a file: CI=true alone makes mocha colour its output.
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_OPTIONS: '--test-reporter=tap', FORCE_COLOR: '0' };
  delete env[SHARD_INDEX_ENV];
  delete env[SHARD_TOTAL_ENV];
  if (shard) {
    env[SHARD_INDEX_ENV] = String(shard.index);
    env[SHARD_TOTAL_ENV] = String(shard.total);
  }
  env.PATH = [binFirst, dirname(process.execPath), join(ROOT, 'node_modules/.bin'), process.env.PATH]
    .filter(Boolean)
    .join(':');
  return new Promise((resolve) => {
    execFile('sh', ['-c', command], { cwd, env, timeout: 60_000 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

async function runShard(recipe: Recipe, project: string, shard: { index: number; total: number } | null) {
  const result = await sh(recipe.command, project, shard);
  return { ...result, ...parse(recipe.output, stripVTControlCharacters(result.stdout)) } satisfies Run;
}

/** Every shard of `total`, at once. */
function runShards(recipe: Recipe, project: string, total: number): Promise<Run[]> {
  return Promise.all(
    Array.from({ length: total }, (_, position) => runShard(recipe, project, { index: position + 1, total })),
  );
}

const folders: string[] = [];
function tempFolder(): string {
  const folder = mkdtempSync(join(tmpdir(), 'lambkin-sharding-'));
  folders.push(folder);
  return folder;
}
afterAll(() => {
  for (const folder of folders) rmSync(folder, { recursive: true, force: true });
});

/** A copy of examples/sharding, so that a run can never leave anything in the checkout. */
function exampleCopy(): string {
  const project = tempFolder();
  cpSync(EXAMPLE, project, { recursive: true });
  return project;
}

/** A folder holding an executable `name` that prints each of its arguments on a line. */
function echoingBin(name: string): string {
  const bin = tempFolder();
  writeFileSync(join(bin, name), '#!/bin/sh\nprintf \'%s\\n\' "$@"\n');
  chmodSync(join(bin, name), 0o755);
  return bin;
}

describe('docs/jobs.md shows the files of examples/sharding as they are', () => {
  it('shows the splitting script in full', () => {
    const shown = blocks(section('### The splitting script'), 'js');
    expect(shown).toEqual([SCRIPT_TEXT]);
  });

  it('shows exactly the example package.json scripts as its node:test and mocha recipes', () => {
    for (const recipe of RECIPES) {
      expect({ recipe: recipe.name, command: recipe.command }).toEqual({
        recipe: recipe.name,
        command: EXAMPLE_SCRIPTS[recipe.exampleScript],
      });
    }
    expect(Object.keys(EXAMPLE_SCRIPTS).sort()).toEqual(RECIPES.map((recipe) => recipe.exampleScript).sort());
  });

  it('calls the one splitting script the same way in every recipe without a shard option', () => {
    for (const command of [NODE_FILES, MOCHA, TAPE]) {
      expect(command).toMatch(new RegExp(`^node ${SCRIPT} \\S+ \\S+ -- \\S`));
    }
    // The script reads the variables the runner sets.
    expect(SCRIPT_TEXT).toContain(`process.env.${SHARD_INDEX_ENV} ?? 1`);
    expect(SCRIPT_TEXT).toContain(`process.env.${SHARD_TOTAL_ENV} ?? 1`);
  });

  it('says which versions have node --test-shard and jest --shard, and this Node.js has it', async () => {
    expect(section('### node:test')).toMatch(/since \*\*20\.5\.0\*\* \(and 18\.19\.0 on the 18 line\)/);
    expect(section('### Jest')).toContain('since **Jest 28**');
    const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
    if (major > 20 || (major === 20 && minor >= 5)) {
      const help = await sh('node --help', ROOT, null);
      expect(help.stdout).toContain('--test-shard');
    }
  });

  it('shows the command that lists a shard’s files as it works', async () => {
    const line = blocks(section('### The splitting script'), 'sh')
      .flatMap((block) => block.split('\n'))
      .find((text) => text.includes(`node ${SCRIPT} `));
    const [, index, total, command] =
      /^LAMBKIN_SHARD_INDEX=(\d+) LAMBKIN_SHARD_TOTAL=(\d+) (.+)$/.exec(line ?? '') ?? [];
    expect(command).toBeDefined();
    const listed = await sh(command ?? '', exampleCopy(), { index: Number(index), total: Number(total) });
    expect(listed.stdout.split('\n').filter(Boolean)).toEqual(
      filesOfShard(FILES, Number(index), Number(total)),
    );
  });
});

describe.each(RECIPES)('the $name recipe', (recipe) => {
  const suiteOf = (run: Run) => [...run.passed, ...run.failed];

  it.each(TOTALS)(
    'splits the suite into %i disjoint shards that together run it all',
    async (total) => {
      const project = exampleCopy();
      const runs = await runShards(recipe, project, total);
      const seen = new Map<string, number>();
      runs.forEach((run, position) => {
        expect({ shard: position + 1, code: run.code, failed: run.failed }).toEqual({
          shard: position + 1,
          code: 0,
          failed: [],
        });
        for (const test of run.passed) {
          expect({ test, alsoIn: seen.get(test) }).toEqual({ test, alsoIn: undefined });
          seen.set(test, position + 1);
        }
      });
      expect([...seen.keys()].sort()).toEqual(ALL_TESTS);
      // By file: each file's tests all in one shard; the script's split is exactly the page's rule.
      runs.forEach((run, position) => {
        const files = FILES.filter((file) =>
          (TESTS_OF.get(file) ?? []).some((test) => run.passed.includes(test)),
        );
        const tests = files.flatMap((file) => TESTS_OF.get(file) ?? []).sort();
        expect(run.passed.slice().sort()).toEqual(tests);
        if (recipe.script) expect(files).toEqual(filesOfShard(FILES, position + 1, total));
      });
    },
    RUN_TIMEOUT,
  );

  it(
    'runs the whole suite where the variables are unset',
    async () => {
      const run = await runShard(recipe, exampleCopy(), null);
      expect({ code: run.code, failed: run.failed }).toEqual({ code: 0, failed: [] });
      expect(run.passed.slice().sort()).toEqual(ALL_TESTS);
    },
    RUN_TIMEOUT,
  );

  it(
    'passes, running nothing, in a shard left without files',
    async () => {
      const total = FILES.length + 2;
      const runs = await runShards(recipe, exampleCopy(), total);
      expect(runs.map((run) => run.code)).toEqual(runs.map(() => 0));
      expect(runs.flatMap((run) => run.passed).sort()).toEqual(ALL_TESTS);
      for (const run of runs.slice(FILES.length)) {
        expect(run.passed).toEqual([]);
        if (recipe.script) {
          expect(run.stderr).toContain(`no test files (${FILES.length} files, ${total} shards)`);
        }
      }
    },
    RUN_TIMEOUT,
  );

  it.each(TOTALS)(
    'fails only the shard holding a failing test, of %i',
    async (total) => {
      const project = exampleCopy();
      writeFileSync(
        join(project, BROKEN_FILE),
        readFileSync(join(project, BROKEN_FILE), 'utf8') +
          `it('${BROKEN_TEST}', () => assert.fail('on purpose'));\n`,
      );
      const runs = await runShards(recipe, project, total);
      const holding = runs.findIndex((run) => suiteOf(run).includes(BROKEN_TEST));
      expect(holding).toBeGreaterThanOrEqual(0);
      runs.forEach((run, position) => {
        const broken = position === holding;
        expect({ shard: position + 1, failing: run.code !== 0, failed: run.failed }).toEqual({
          shard: position + 1,
          failing: broken,
          failed: broken ? [BROKEN_TEST] : [],
        });
      });
      expect(runs.flatMap(suiteOf).sort()).toEqual([...ALL_TESTS, BROKEN_TEST].sort());
      if (recipe.script) {
        expect(filesOfShard(FILES, holding + 1, total)).toContain(BROKEN_FILE);
      }
    },
    RUN_TIMEOUT,
  );
});

describe('the splitting script', () => {
  it.each([
    ['0', '4'],
    ['5', '4'],
    ['1', '0'],
    ['2', 'two'],
    ['', '3'],
    ['1.5', '3'],
  ])(
    'refuses LAMBKIN_SHARD_INDEX=%j LAMBKIN_SHARD_TOTAL=%j without running anything',
    async (index, total) => {
      const run = await sh(MOCHA ?? '', exampleCopy(), { index, total });
      expect(run.code).toBe(2);
      expect(run.stderr).toContain('shard-files: LAMBKIN_SHARD_INDEX must be 1 to LAMBKIN_SHARD_TOTAL');
      expect(run.stdout).toBe('');
    },
  );

  it('refuses a folder without test files rather than pass with nothing run', async () => {
    const run = await sh(`node ${SCRIPT} test .spec.js -- mocha`, exampleCopy(), { index: 1, total: 2 });
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('shard-files: no files ending in .spec.js under test');
  });
});

describe('the recipes of runners not installed here', () => {
  it('jest gets --shard=INDEX/TOTAL, and 1/1 where the variables are unset', async () => {
    expect(JEST).toBeDefined();
    const bin = echoingBin('jest');
    for (const total of TOTALS) {
      for (let index = 1; index <= total; index++) {
        const run = await sh(JEST ?? '', ROOT, { index, total }, bin);
        expect(run).toEqual({ code: 0, stdout: `--shard=${index}/${total}\n`, stderr: '' });
      }
    }
    expect(await sh(JEST ?? '', ROOT, null, bin)).toEqual({ code: 0, stdout: '--shard=1/1\n', stderr: '' });
  });

  it(
    'tape gets each shard’s files from the splitting script, every file once',
    async () => {
      const [, dir = '', suffix = ''] = /^node \S+ (\S+) (\S+) -- tape$/.exec(TAPE ?? '') ?? [];
      expect({ dir, suffix }).toEqual({ dir: 'test', suffix: '.js' });
      const project = tempFolder();
      mkdirSync(join(project, 'scripts'));
      writeFileSync(join(project, SCRIPT), SCRIPT_TEXT);
      const files = ['test/a.js', 'test/b.js', 'test/c.js', 'test/unit/d.js', 'test/unit/e.js', 'test/z.js'];
      for (const file of [...files, 'test/node_modules/dep/index.js', 'test/notes.md']) {
        mkdirSync(join(project, dirname(file)), { recursive: true });
        writeFileSync(join(project, file), '');
      }
      const bin = echoingBin('tape');
      for (const total of TOTALS) {
        const runs = await Promise.all(
          Array.from({ length: total }, (_, position) =>
            sh(TAPE ?? '', project, { index: position + 1, total }, bin),
          ),
        );
        const given = runs.map((run) => run.stdout.split('\n').filter(Boolean));
        expect(runs.map((run) => run.code)).toEqual(runs.map(() => 0));
        expect(given).toEqual(runs.map((_, position) => filesOfShard(files, position + 1, total)));
        expect(given.flat().sort()).toEqual(files);
      }
    },
    RUN_TIMEOUT,
  );
});

describe('docs/jobs.md is found', () => {
  it('from configuration.md and the README', () => {
    const configuration = readFileSync(join(ROOT, 'docs/configuration.md'), 'utf8');
    expect(configuration).toMatch(/^### Matrix and shards\n[^#]*\]\(jobs\.md\)/m);
    expect(readFileSync(join(ROOT, 'README.md'), 'utf8')).toMatch(/^- \[Jobs\]\(docs\/jobs\.md\): /m);
  });
});

describe('docs/jobs.md against the job planner', () => {
  /** Every JSON block that is a repository config: not a package.json, not `lambkin run --json`'s output. */
  const configs = blocks(PAGE, 'json')
    .map((block) => JSON.parse(block) as Record<string, unknown>)
    .filter((json) => !('scripts' in json) && !('jobs' in json));

  it('shows only configs Lambkin accepts', () => {
    expect(configs.length).toBeGreaterThanOrEqual(5);
    for (const config of configs) {
      const valid = validateRepoConfig(config, '.lambkin.json');
      expect(() => planJobs(valid)).not.toThrow();
    }
  });

  it('gives every recipe the same .lambkin.json: npm test, sharded', () => {
    const [shared] = blocks(section('### The splitting script'), 'json').map(
      (block) => JSON.parse(block) as unknown,
    );
    expect(shared).toEqual({ install: 'npm ci', test: 'npm test', parallel: 4 });
  });

  it('lists the first example’s jobs as planned', () => {
    const section0 = section('## A first example');
    const [config] = blocks(section0, 'json').map(
      (block) => JSON.parse(block) as { matrix: never; parallel: number },
    );
    const jobs = planJobs(validateRepoConfig(config, '.lambkin.json'));
    expect(tableRows(section0, 'id')).toEqual(
      jobs.map((job) => [
        job.id,
        job.context,
        job.title,
        Object.entries(job.env)
          .map(([name, value]) => `${name}=${value}`)
          .join(' '),
      ]),
    );
  });

  it('names the include/exclude example’s jobs as planned', () => {
    const text = section('### How the combinations are made');
    const [config] = blocks(text, 'json').map((block) => JSON.parse(block) as { matrix: never });
    const names = planJobs(validateRepoConfig(config, '.lambkin.json')).map((job) => job.name);
    const sentence = /is four jobs: ([\s\S]*?)\.\n/.exec(text)?.[1] ?? '';
    expect([...sentence.matchAll(/`([^`]+)`/g)].map((match) => match[1])).toEqual(names);
  });

  it('quotes the limit error as the planner words it', () => {
    const error = (() => {
      try {
        planJobs({ matrix: { a: [1, 2, 3], b: [1, 2, 3, 4] }, parallel: 2 });
      } catch (thrown) {
        return thrown;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(TooManyJobsError);
    expect(blocks(section('## Limits'), '').map((block) => block.trim())).toContain((error as Error).message);
  });

  it('counts the matrix-and-shards example’s jobs against the default limit as it says', () => {
    const text = section('### With a matrix');
    const [config] = blocks(text, 'json').map(
      (block) => JSON.parse(block) as { matrix: never; parallel: number },
    );
    const jobs = planJobs(validateRepoConfig(config, '.lambkin.json'));
    expect(jobs).toHaveLength(12);
    expect(text).toContain(`is twelve jobs, \`${jobs[0]?.context}\` to \`${jobs.at(-1)?.context}\``);
    expect(planJobs({ ...config, parallel: 4 })).toHaveLength(16);
    expect(() => planJobs({ ...config, parallel: 5 })).toThrow(TooManyJobsError);
  });
});
