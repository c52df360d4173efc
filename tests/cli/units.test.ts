/** The CLI's pure parts: output formatting, log following, key paths, argv and stack file checks. */
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { normalizeLocalOption } from '../../src/cli/arguments.js';
import { LocalStackFileError } from '../../src/cli/cli-errors.js';
import {
  colourEnabled,
  formatAge,
  formatDuration,
  formatTable,
  terminalWriter,
  unseenPart,
} from '../../src/cli/output.js';
import {
  formatKeyPath,
  getAtPath,
  parseKeyPath,
  parseValue,
  setAtPath,
  unsetAtPath,
} from '../../src/cli/settings-keys.js';
import { parseLocalStackFile } from '../../src/cli/stack.js';
import type { SettingsDocument } from '../../src/core/settings.js';

describe('formatTable', () => {
  it('aligns columns, right-aligns numbers and leaves no trailing spaces', () => {
    const table = formatTable(
      [
        { header: '#', value: (row: { n: number; s: string }) => String(row.n), align: 'right' },
        { header: 'STATE', value: (row) => row.s },
      ],
      [
        { n: 7, s: 'success' },
        { n: 12, s: 'queued' },
      ],
    );
    expect(table).toBe(' #  STATE\n 7  success\n12  queued\n');
  });
});

describe('formatDuration and formatAge', () => {
  it.each([
    [850, '850ms'],
    [42_000, '42s'],
    [65_000, '1m 05s'],
    [3_725_000, '1h 02m'],
  ])('formats %i ms as %s', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });

  it('says how long ago, then the date past a month', () => {
    const now = Date.UTC(2026, 0, 31, 12);
    expect(formatAge(now - 12_000, now)).toBe('12s ago');
    expect(formatAge(now - 5 * 60_000, now)).toBe('5 min ago');
    expect(formatAge(now - 3 * 3_600_000, now)).toBe('3 h ago');
    expect(formatAge(now - 6 * 86_400_000, now)).toBe('6 d ago');
    expect(formatAge(Date.UTC(2025, 10, 2), now)).toBe('2025-11-02');
  });
});

describe('unseenPart (logs --follow)', () => {
  it('prints only what a growing log added', () => {
    expect(unseenPart('', 'one\n')).toBe('one\n');
    expect(unseenPart('one\n', 'one\ntwo\n')).toBe('two\n');
    expect(unseenPart('one\ntwo\n', 'one\ntwo\n')).toBe('');
  });

  it('continues after what was printed when a truncated log rewrites its tail', () => {
    const head = 'npm ci\nadded 120 packages\n';
    const step = (n: number): string => `step ${n}: compiled ${n * 10} modules in 1.${n} s\n`;
    const before = `${head}… 1000 bytes cut …\n${step(7)}${step(8)}`;
    const after = `${head}… 1500 bytes cut …\n${step(8)}${step(9)}${step(10)}`;
    expect(unseenPart(before, after)).toBe(step(9) + step(10));
  });

  it('prints from where the versions part when what was printed has been cut away', () => {
    const before = 'head\n… cut 10 …\nold tail\n';
    const after = 'head\n… cut 90 …\nnew tail\n';
    expect(unseenPart(before, after)).toBe('… cut 90 …\nnew tail\n');
  });
});

describe('settings key paths', () => {
  it('parses dotted keys and ["…"] for names with dots, and formats them back', () => {
    expect(parseKeyPath('build.pullRequests.forks')).toEqual(['build', 'pullRequests', 'forks']);
    const path = parseKeyPath('config.branches["release/1.x"].test');
    expect(path).toEqual(['config', 'branches', 'release/1.x', 'test']);
    expect(formatKeyPath(path)).toBe('config.branches["release/1.x"].test');
    expect(parseKeyPath(formatKeyPath(path))).toEqual(path);
  });

  it.each(['', 'build..tags', 'build.', '.build', 'build[tags]', 'a"b'])('refuses %j', (key) => {
    expect(() => parseKeyPath(key)).toThrow(/is not a settings key/);
  });

  it('reads values as JSON when they parse, and secrets and node ranges as text', () => {
    expect(parseValue(['build', 'tags'], 'true')).toBe(true);
    expect(parseValue(['config', 'timeout'], '600')).toBe(600);
    expect(parseValue(['build', 'branches'], '["main"]')).toEqual(['main']);
    expect(parseValue(['config', 'test'], 'npm test')).toBe('npm test');
    expect(parseValue(['secretEnv', 'PIN'], '0123')).toBe('0123');
    expect(parseValue(['config', 'node'], '20')).toBe('20');
  });

  it('sets through missing objects, unsets and drops the objects left empty', () => {
    const document: SettingsDocument = { build: { tags: true } };
    setAtPath(document, ['build', 'pullRequests', 'forks'], false);
    expect(document).toEqual({ build: { tags: true, pullRequests: { forks: false } } });
    expect(unsetAtPath(document, ['build', 'pullRequests', 'forks'])).toBe(true);
    expect(document).toEqual({ build: { tags: true } });
    expect(unsetAtPath(document, ['build', 'tags'])).toBe(true);
    expect(document).toEqual({});
    expect(unsetAtPath(document, ['build', 'tags'])).toBe(false);
    expect(getAtPath({ build: { tags: false } }, ['build', 'tags'])).toBe(false);
  });

  it('refuses to set a key inside a value that is not an object', () => {
    expect(() => setAtPath({ config: { test: 'npm test' } }, ['config', 'test', 'x'], 1)).toThrow(
      /"config.test" is "npm test", not an object/,
    );
  });
});

describe('normalizeLocalOption', () => {
  const cwd = mkdtempSync(join(tmpdir(), 'lambkin-argv-'));
  mkdirSync(join(cwd, 'data'));
  afterAll(() => rmSync(cwd, { recursive: true, force: true }));

  it('keeps a value after --local that is an existing directory', () => {
    expect(normalizeLocalOption(['builds', '--local', 'data', 'o/r'], cwd)).toEqual([
      'builds',
      '--local',
      'data',
      'o/r',
    ]);
  });

  it('moves --local to the end when what follows is not a directory', () => {
    expect(normalizeLocalOption(['logs', '--local', 'o/r', '5', '-f'], cwd)).toEqual([
      'logs',
      'o/r',
      '5',
      '-f',
      '--local',
    ]);
    expect(normalizeLocalOption(['config', 'set', '--local', 'k', 'v', '--', '-1'], cwd)).toEqual([
      'config',
      'set',
      'k',
      'v',
      '--local',
      '--',
      '-1',
    ]);
  });

  it('leaves --local=DIR, a final --local and --local before an option alone', () => {
    for (const argv of [
      ['builds', '--local=x', 'o/r'],
      ['builds', 'o/r', '--local'],
      ['builds', '--local', '--json', 'o/r'],
    ]) {
      expect(normalizeLocalOption(argv, cwd)).toEqual(argv);
    }
  });
});

describe('parseLocalStackFile', () => {
  const valid = {
    version: 1,
    pid: 42,
    endpoints: {
      webhook: 'http://127.0.0.1:1/webhook',
      dynamodb: 'http://127.0.0.1:2',
      s3: 'http://127.0.0.1:3',
      lambda: 'http://127.0.0.1:4',
      logs: 'http://127.0.0.1:1/builds',
    },
    tables: { builds: 'builds', settings: 'settings' },
    bucket: 'logs',
    builderFunction: 'builder',
    publicUrl: 'http://127.0.0.1:1',
    region: 'us-east-1',
    credentials: { accessKeyId: 'lambkin-local', secretAccessKey: 'a-per-stack-key' },
  };

  it('reads the agreed shape', () => {
    expect(parseLocalStackFile(JSON.stringify(valid), 'stack.json')).toEqual(valid);
  });

  it.each([
    ['not JSON', '{', /is not valid JSON/],
    [
      'another version',
      JSON.stringify({ ...valid, version: 2 }),
      /has version 2, but this lambkin reads version 1/,
    ],
    ['no pid', JSON.stringify({ ...valid, pid: 'x' }), /has no valid "pid"/],
    ['no key', JSON.stringify({ ...valid, credentials: undefined }), /has no "credentials.accessKeyId"/],
    ['no table', JSON.stringify({ ...valid, tables: { builds: 'b' } }), /has no "tables.settings"/],
    [
      'a bad endpoint',
      JSON.stringify({ ...valid, endpoints: { ...valid.endpoints, s3: 'nope' } }),
      /has no http\(s\) URL in "endpoints.s3"/,
    ],
  ])('refuses %s in one line', (_what, text, message) => {
    let error: unknown;
    try {
      parseLocalStackFile(text, 'x/stack.json');
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(LocalStackFileError);
    expect((error as Error).message).toMatch(message);
    expect((error as Error).message).toMatch(/^x\/stack.json .*restart `lambkin dev`/);
  });
});

describe('colour', () => {
  const terminal = { write: () => undefined, isTTY: true };
  const pipe = { write: () => undefined };

  it('is on for a terminal and off for a pipe, unless the environment says otherwise', () => {
    expect(colourEnabled(terminal, {})).toBe(true);
    expect(colourEnabled(pipe, {})).toBe(false);
    expect(colourEnabled(terminal, { NO_COLOR: '1' })).toBe(false);
    expect(colourEnabled(terminal, { NO_COLOR: '' })).toBe(true);
    expect(colourEnabled(terminal, { TERM: 'dumb' })).toBe(false);
    expect(colourEnabled(pipe, { FORCE_COLOR: '1' })).toBe(true);
    expect(colourEnabled(pipe, { FORCE_COLOR: '' })).toBe(true);
    expect(colourEnabled(terminal, { FORCE_COLOR: '0' })).toBe(false);
    expect(colourEnabled(terminal, { FORCE_COLOR: 'false' })).toBe(false);
    // As Node's util.styleText has it: FORCE_COLOR wins over NO_COLOR.
    expect(colourEnabled(pipe, { FORCE_COLOR: '1', NO_COLOR: '1' })).toBe(true);
  });

  it('drops escape sequences where it is off, even one cut between two writes', () => {
    let out = '';
    const write = terminalWriter({ write: (text) => void (out += text) }, {});
    for (const piece of [
      '\u001b[1;36m▶ step test\u001b[0m\nred: \u001b[3',
      '1mfail',
      '\u001b',
      '[0m done\n',
    ]) {
      write(piece);
    }
    write('\u001b]8;;https://example.test\u0007link\u001b]8;;\u0007\n');
    expect(out).toBe('▶ step test\nred: fail done\nlink\n');
  });

  it('writes the text as it is where it is on', () => {
    let out = '';
    const text = '\u001b[31mred\u001b[0m\n\u001b[3';
    terminalWriter({ write: (piece) => void (out += piece), isTTY: true }, {})(text);
    expect(out).toBe(text);
  });
});
