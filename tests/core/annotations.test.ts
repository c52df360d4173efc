import { readFileSync } from 'node:fs';
import {
  ANNOTATIONS_PER_REQUEST,
  DEFAULT_MAX_ANNOTATIONS,
  annotationSummary,
  chunkAnnotations,
  extractAnnotations,
  type CheckAnnotation,
} from '../../src/core/annotations/index.js';
import { repositoryPath } from '../../src/core/annotations/locations.js';
import { truncateTitle, truncateUtf8 } from '../../src/core/annotations/text.js';

/** Where the fixtures were captured (tests/fixtures/annotations/README.md). */
const ROOT = '/tmp/annot-fixture/build-1/src';

function fixture(name: string): string {
  return readFileSync(new URL(`../fixtures/annotations/${name}`, import.meta.url), 'utf8');
}

function extract(log: string, maxAnnotations?: number): { annotations: CheckAnnotation[]; omitted: number } {
  return extractAnnotations(log, { checkoutRoot: ROOT, maxAnnotations });
}

/** The fields a reader of the check run sees first. */
function brief(annotations: CheckAnnotation[]): unknown[] {
  return annotations.map((a) => [a.path, a.start_line, a.start_column, a.annotation_level, a.title]);
}

describe('annotations from real tool output', () => {
  it('reads node:test TAP: the first frame in the checkout, the error as message, suites left out', () => {
    const { annotations, omitted } = extract(fixture('node-tap.txt'));
    expect(omitted).toBe(0);
    expect(brief(annotations)).toEqual([
      ['test/math.test.js', 6, 10, 'failure', 'adds two numbers'],
      ['test/math.test.js', 14, 9, 'failure', 'throws from the source'],
      // file:// URL of an ES module, nested in a suite; the suite's own 'not ok' is left out.
      ['test/suite.test.mjs', 6, 12, 'failure', 'nested failure'],
    ]);
    expect(annotations[0]).toMatchObject({
      end_line: 6,
      end_column: 10,
      message: 'Expected values to be strictly equal:\n\n-1 !== 5',
    });
    expect(annotations[0]?.raw_details).toContain("operator: 'strictEqual'");
    expect(annotations[1]?.message).toBe('boom');
  });

  it('reads tape: the `at:` frame (not tape’s own frames in node_modules), test name as title', () => {
    const { annotations } = extract(fixture('tape.txt'));
    expect(brief(annotations)).toEqual([
      ['tape/math.js', 5, 5, 'failure', 'adds two numbers'],
      ['tape/math.js', 11, 5, 'failure', 'throws from the source'],
    ]);
    expect(annotations[0]?.message).toBe('two plus three\n\nexpected: 5\nactual: -1');
    expect(annotations[1]?.message).toBe(
      'should be deeply equivalent\n\nexpected: { a: 2 }\nactual: { a: 1 }',
    );
  });

  it('reads node:test’s spec reporter, once per failure though the summary repeats them', () => {
    const { annotations } = extract(fixture('node-spec.txt'));
    expect(brief(annotations)).toEqual([
      ['test/math.test.js', 6, 10, 'failure', 'adds two numbers'],
      ['test/math.test.js', 14, 9, 'failure', 'throws from the source'],
      ['test/suite.test.mjs', 6, 12, 'failure', 'nested failure'],
    ]);
    expect(annotations[0]?.message).toBe(
      'AssertionError [ERR_ASSERTION]: Expected values to be strictly equal:\n\n-1 !== 5',
    );
    expect(annotations[1]?.message).toBe('Error: boom');
  });

  it('falls back to the spec reporter’s `test at` line when no frame is in the checkout', () => {
    const log = 'test at test/a.test.js:3:1\n✖ times out (100ms)\n  test timed out after 100ms\n';
    expect(brief(extract(log).annotations)).toEqual([['test/a.test.js', 3, 1, 'failure', 'times out']]);
    expect(extract(log).annotations[0]?.message).toBe('test timed out after 100ms');
  });

  it('reads mocha’s failure list: nested titles, unindented message lines, the first frame', () => {
    const { annotations } = extract(fixture('mocha.txt'));
    expect(brief(annotations)).toEqual([
      ['mocha/math.spec.js', 6, 12, 'failure', 'math › adds two numbers'],
      ['mocha/math.spec.js', 15, 13, 'failure', 'math › errors › throws from the source'],
    ]);
    expect(annotations[0]?.message).toBe(
      'AssertionError [ERR_ASSERTION]: Expected values to be strictly equal:\n\n-1 !== 5\n\n' +
        '+ expected - actual\n\n--1\n+5',
    );
    expect(annotations[1]?.message).toBe('Error: boom');
  });

  it('skips mocha frames in node_modules and outside the checkout for the first one in it', () => {
    const log = [
      '  1 failing',
      '',
      '  1) adds:',
      '     AssertionError: expected 1 to equal 2',
      `      at Context.<anonymous> (${ROOT}/node_modules/chai/lib/assert.js:10:3)`,
      '      at helper (/usr/lib/node_modules/helper/index.js:1:1)',
      '      at Context.<anonymous> (node:internal/timers:483:21)',
      `      at Context.<anonymous> (${ROOT}/test/add.test.js:7:12)`,
      '',
    ].join('\n');
    expect(brief(extract(log).annotations)).toEqual([['test/add.test.js', 7, 12, 'failure', 'adds']]);
  });

  it('reads jest’s failure report: message before the code frame, the stack’s place', () => {
    const { annotations } = extract(fixture('jest.txt'));
    expect(brief(annotations)).toEqual([
      ['jest/math.test.js', 5, 23, 'failure', 'math › adds two numbers'],
      ['jest/math.test.js', 9, 11, 'failure', 'math › throws from the source'],
    ]);
    expect(annotations[0]?.message).toBe(
      'expect(received).toBe(expected) // Object.is equality\n\nExpected: 5\nReceived: -1',
    );
    expect(annotations[0]?.raw_details).toContain('> 5 |     expect(add(2, 3)).toBe(5);');
    expect(annotations[1]?.message).toBe('boom');
  });

  it('leaves out jest’s console blocks', () => {
    const log =
      '  ● Console\n\n    console.log\n      hello\n\n      at Object.<anonymous> (a.test.js:3:11)\n';
    expect(extract(log).annotations).toEqual([]);
  });

  it('reads tsc, plain and --pretty, with the lines of an error’s elaboration', () => {
    for (const name of ['tsc.txt', 'tsc-pretty.txt']) {
      const { annotations } = extract(fixture(name));
      expect([name, brief(annotations)]).toEqual([
        name,
        [
          ['src/bad.ts', 5, 7, 'failure', 'TS2322'],
          ['src/bad.ts', 6, 7, 'failure', 'TS2345'],
          ['src/bad.ts', 8, 14, 'failure', 'TS2322'],
        ],
      ]);
      expect(annotations[0]?.message).toBe("Type 'string' is not assignable to type 'number'.");
      expect(annotations[2]?.message).toBe(
        "Type '(value: string) => void' is not assignable to type '(value: number) => void'.\n" +
          "Types of parameters 'value' and 'value' are incompatible.\n" +
          "  Type 'number' is not assignable to type 'string'.",
      );
    }
  });

  it('reads tsc warnings and messages at their levels', () => {
    const log = 'src/a.ts(1,2): warning TS6133: x\nsrc/b.ts(3,4): message TS6194: y\n';
    expect(brief(extract(log).annotations)).toEqual([
      ['src/a.ts', 1, 2, 'warning', 'TS6133'],
      ['src/b.ts', 3, 4, 'notice', 'TS6194'],
    ]);
  });

  it('reads ESLint’s stylish output: errors as failures, warnings as warnings, the rule as title', () => {
    const { annotations } = extract(fixture('eslint.txt'));
    // Failures come first, then warnings.
    expect(brief(annotations)).toEqual([
      ['lib/util.js', 1, 7, 'failure', 'no-unused-vars'],
      ['lib/util.js', 4, 12, 'failure', 'eqeqeq'],
      ['lib/util.js', 6, 27, 'failure', 'no-undef'],
      ['lib/util.js', 3, 3, 'warning', 'no-console'],
    ]);
    expect(annotations.map((a) => a.message)).toEqual([
      "'unused' is assigned a value but never used",
      "Expected '===' and instead saw '=='",
      "'missing' is not defined",
      'Unexpected console statement',
    ]);
  });

  it('reads an ESLint parse error, which has no rule', () => {
    const log = `\n${ROOT}/src/broken.js\n  2:5  error  Parsing error: Unexpected token\n\n✖ 1 problem (1 error, 0 warnings)\n`;
    const { annotations } = extract(log);
    expect(annotations).toEqual([
      {
        path: 'src/broken.js',
        start_line: 2,
        end_line: 2,
        start_column: 5,
        end_column: 5,
        annotation_level: 'failure',
        message: 'Parsing error: Unexpected token',
      },
    ]);
  });

  it('reads coloured output as it reads plain output', () => {
    for (const [plain, coloured] of [
      ['node-spec.txt', 'node-spec-color.txt'],
      ['jest.txt', 'jest-color.txt'],
      ['mocha.txt', 'mocha-color.txt'],
      ['eslint.txt', 'eslint-color.txt'],
      ['tsc.txt', 'tsc-pretty.txt'],
    ] as const) {
      const colouredLog = fixture(coloured);
      expect([coloured, colouredLog.includes('\u001b[')]).toEqual([coloured, true]);
      const withoutDetails = (log: string): unknown =>
        extract(log).annotations.map(({ raw_details: _details, ...rest }) => rest);
      expect([coloured, withoutDetails(colouredLog)]).toEqual([coloured, withoutDetails(fixture(plain))]);
    }
  });

  it('reads Windows line ends as it reads plain ones', () => {
    for (const name of ['node-tap.txt', 'jest.txt', 'mocha.txt', 'eslint.txt', 'tsc-pretty.txt']) {
      const log = fixture(name);
      expect([name, extract(log.replace(/\n/g, '\r\n'))]).toEqual([name, extract(log)]);
    }
  });

  it('leaves out node:test TODO failures and TAP TODO and SKIP points', () => {
    const spec = '✖ later (0.1ms) # TODO\n  Error: not yet\n      at t (test/a.test.js:2:9)\n';
    const tap =
      "not ok 1 - later # TODO\n  ---\n  location: 'test/a.test.js:2:1'\n  ...\nnot ok 2 - x # SKIP\n";
    expect(extract(`${spec}\n${tap}`).annotations).toEqual([]);
  });

  it('reads every format from one log, in the log’s order within each level', () => {
    const log = [
      'tsc.txt',
      'eslint.txt',
      'jest.txt',
      'node-tap.txt',
      'mocha.txt',
      'tape.txt',
      'node-spec.txt',
    ]
      .map(fixture)
      .join('\n');
    const { annotations } = extract(log);
    expect(annotations.map((a) => a.path)).toEqual([
      ...Array(3).fill('src/bad.ts'),
      ...Array(3).fill('lib/util.js'),
      ...Array(2).fill('jest/math.test.js'),
      'test/math.test.js',
      'test/math.test.js',
      'test/suite.test.mjs',
      ...Array(2).fill('mocha/math.spec.js'),
      ...Array(2).fill('tape/math.js'),
      // The spec reporter's failures have other messages than TAP's: separate annotations.
      'test/math.test.js',
      'test/math.test.js',
      'test/suite.test.mjs',
      'lib/util.js',
    ]);
    expect(annotations.at(-1)?.annotation_level).toBe('warning');
  });
});

describe('annotation paths', () => {
  it('makes paths relative to the repository root', () => {
    expect(repositoryPath(`${ROOT}/src/a.ts`, ROOT)).toBe('src/a.ts');
    expect(repositoryPath(`${ROOT}/src/a.ts`, `${ROOT}/`)).toBe('src/a.ts');
    expect(repositoryPath(`file://${ROOT}/src/a%20b.mjs`, ROOT)).toBe('src/a b.mjs');
    expect(repositoryPath('./src/./a.ts', ROOT)).toBe('src/a.ts');
    expect(repositoryPath('src/lib/../a.ts', ROOT)).toBe('src/a.ts');
  });

  it('drops files outside the checkout, in node_modules, internals and URLs of other schemes', () => {
    for (const file of [
      '/usr/lib/node_modules/npm/index.js',
      '/tmp/annot-fixture/build-1/srcs/a.ts', // a sibling whose name starts like the root
      '/tmp/annot-fixture/build-1/a.ts',
      `${ROOT}/node_modules/jest-circus/build/index.js`,
      'node_modules/tape/lib/test.js',
      'packages/x/node_modules/y/index.js',
      '../outside.ts',
      `${ROOT}/../outside.ts`,
      'node:internal/timers',
      'webpack://app/src/a.ts',
      'file:///usr/lib/a.js',
      ROOT,
      '',
    ]) {
      expect([file, repositoryPath(file, ROOT)]).toEqual([file, undefined]);
    }
  });

  it('takes no place from an eval frame', () => {
    const log = `✖ x\n  Error: e\n      at eval (eval at f (${ROOT}/a.js:1:2), <anonymous>:3:4)\n      at f (${ROOT}/a.js:1:2)\n`;
    expect(brief(extract(log).annotations)).toEqual([['a.js', 1, 2, 'failure', 'x']]);
  });

  it('refuses a checkout root that is not absolute', () => {
    expect(() => extractAnnotations('', { checkoutRoot: '' })).toThrow(TypeError);
    expect(() => extractAnnotations('', { checkoutRoot: 'build/src' })).toThrow(TypeError);
  });

  it('gives no annotation for a failure with no place in the checkout', () => {
    const log = [
      '  ● suite › test',
      '',
      '    boom',
      '',
      `      at fn (${ROOT}/node_modules/lib/index.js:1:1)`,
      '      at fn (/usr/lib/node/x.js:2:2)',
      '',
      '/usr/lib/x.ts(1,1): error TS1000: outside',
      'node_modules/x/index.d.ts(1,1): error TS1000: in node_modules',
    ].join('\n');
    expect(extract(log)).toEqual({ annotations: [], omitted: 0 });
  });
});

describe('annotation limits', () => {
  function eslintLog(count: number, level = 'error'): string {
    const problems = Array.from(
      { length: count },
      (_, i) => `  ${i + 1}:1  ${level}  problem ${i + 1}  rule`,
    );
    return `${ROOT}/src/a.js\n${problems.join('\n')}\n`;
  }

  it('caps the annotations per build and counts the rest, failures kept first', () => {
    const log = `${eslintLog(150, 'warning')}\n${eslintLog(100)}`;
    const capped = extract(log, 120);
    expect(capped.annotations).toHaveLength(120);
    expect(capped.omitted).toBe(130);
    expect(capped.annotations.slice(0, 100).every((a) => a.annotation_level === 'failure')).toBe(true);
    expect(capped.annotations[100]).toMatchObject({ annotation_level: 'warning', start_line: 1 });

    const byDefault = extract(`${eslintLog(150, 'warning')}\n${eslintLog(150)}`);
    expect(byDefault.annotations).toHaveLength(DEFAULT_MAX_ANNOTATIONS);
    expect(byDefault.omitted).toBe(300 - DEFAULT_MAX_ANNOTATIONS);
    expect(extract(eslintLog(3), 0)).toMatchObject({ annotations: [], omitted: 3 });
  });

  it('counts identical annotations once, also towards the cap', () => {
    const log = `${eslintLog(2)}\n${eslintLog(2)}\n${eslintLog(2)}`;
    expect(extract(log)).toMatchObject({ omitted: 0, annotations: [{ start_line: 1 }, { start_line: 2 }] });
    expect(extract(log, 1).omitted).toBe(1);
  });

  it('chunks annotations 50 a request', () => {
    const { annotations } = extract(eslintLog(120));
    const chunks = chunkAnnotations(annotations);
    expect(chunks.map((chunk) => chunk.length)).toEqual([ANNOTATIONS_PER_REQUEST, 50, 20]);
    expect(chunks.flat()).toEqual(annotations);
    expect(chunkAnnotations([], 50)).toEqual([]);
    expect(chunkAnnotations(annotations.slice(0, 3), 2).map((chunk) => chunk.length)).toEqual([2, 1]);
    expect(() => chunkAnnotations(annotations, 0)).toThrow(RangeError);
  });

  it('says in the summary how many were left out', () => {
    expect(annotationSummary(0)).toBe('');
    expect(annotationSummary(1)).toMatch(/^1 more annotation was left out/);
    expect(annotationSummary(130)).toMatch(/^130 more annotations were left out/);
  });

  it('keeps messages and details within 64 KB and titles within 255 characters', () => {
    const long = 'é'.repeat(100_000);
    const log = `  ● ${'t'.repeat(300)}\n\n    ${long}\n\n      at x (src/a.test.ts:1:1)\n`;
    const [annotation] = extract(log).annotations;
    expect(new TextEncoder().encode(annotation?.message).length).toBeLessThanOrEqual(64_000);
    expect(new TextEncoder().encode(annotation?.raw_details).length).toBeLessThanOrEqual(64_000);
    expect(annotation?.message.endsWith('é…')).toBe(true);
    expect(annotation?.title).toHaveLength(255);

    const emoji = '😀'.repeat(20_000);
    const cut = truncateUtf8(emoji, 1000);
    expect(new TextEncoder().encode(cut).length).toBeLessThanOrEqual(1000);
    expect(cut.endsWith('😀…')).toBe(true);
    expect(truncateUtf8('short', 10)).toBe('short');
    expect(truncateTitle('😀'.repeat(200), 255).endsWith('😀…')).toBe(true);
  });
});

describe('annotation parsing cost', () => {
  it('reads 10 MB of noise that looks a little like every format', () => {
    const words = [
      'not ok',
      '✖',
      '●',
      '1)',
      '2 failing',
      'error',
      'TS2322',
      '(1,2):',
      'src/a.ts:1:2',
      'at',
      '  ',
      '---',
    ];
    const parts: string[] = [];
    let seed = 1;
    let length = 0;
    while (length < 10_000_000) {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      const piece = (seed % 7 === 0 ? '\n' : ' ') + (words[seed % words.length] ?? '');
      parts.push(piece);
      length += piece.length;
    }
    expect(extract(parts.join('')).annotations).toEqual([]);
  });

  it('reads 1 MB lines without newlines, each built to make a careless pattern backtrack', () => {
    const M = 1_000_000;
    const lines = [
      ' '.repeat(M),
      `not ok ${' '.repeat(M)}x`,
      `✖ ${' ('.repeat(M / 2)}`,
      `  ● ${'a › '.repeat(M / 4)}`,
      `a${'(1,'.repeat(M / 3)}`,
      `x:1:2 - error TS${' '.repeat(M)}`,
      `file\n  1:2  error  ${'x  '.repeat(M / 3)}`,
      `    at x (${':1'.repeat(M / 2)})`,
      `2 failing\n  1) ${'x'.repeat(M)}`,
      '\u001b['.repeat(M / 2),
      `not ok 1 - x\n  ---\n  ${'a:'.repeat(M / 2)}`,
    ];
    for (const line of lines) {
      expect(extract(line).omitted).toBe(0);
    }
  });
});
