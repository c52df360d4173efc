import {
  formatBuildSummary,
  formatDuration,
  formatStepFooter,
  formatStepHeader,
  parseStepMarkers,
  stepOutcome,
} from '../../src/core/log-format.js';
import { BUILD_STATES } from '../../src/core/state-machine.js';

const ESC = '\u001b';
/** What a terminal shows: the text without SGR escapes. */
const visible = (text: string): string => text.replace(new RegExp(`${ESC}\\[[0-9;]*m`, 'g'), '');

describe('formatDuration', () => {
  it.each([
    [0, '0 ms'],
    [-5, '0 ms'],
    [Number.NaN, '0 ms'],
    [850, '850 ms'],
    [999.4, '999 ms'],
    [999.6, '1.0 s'],
    [12_345, '12.3 s'],
    [59_949, '59.9 s'],
    [59_950, '1 min 00 s'],
    [125_000, '2 min 05 s'],
    [3_599_400, '59 min 59 s'],
    [3_599_600, '1 h 00 min'],
    [3_720_000, '1 h 02 min'],
  ])('%p ms is %p', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });
});

describe('step lines', () => {
  it('writes a readable, coloured header with the command', () => {
    const header = formatStepHeader({ name: 'install', command: 'npm ci' });
    expect(header).toBe(`${ESC}[1;36m▶ step install${ESC}[0m\n${ESC}[36m$ npm ci${ESC}[0m\n`);
    expect(visible(header)).toBe('▶ step install\n$ npm ci\n');
  });

  it('writes each line of a multi-line command, dropping trailing blank lines', () => {
    const header = formatStepHeader({ name: 'deploy', command: 'set -e\r\n./build.sh\n./ship.sh\n\n' });
    expect(visible(header)).toBe('▶ step deploy\n$ set -e\n> ./build.sh\n> ./ship.sh\n');
  });

  it.each([
    [{ name: 'test', exitCode: 0, durationMs: 12_345 }, '✔ step test: passed (exit 0, 12.3 s)', '1;32'],
    [{ name: 'test', exitCode: 1, durationMs: 3400 }, '✘ step test: failed (exit 1, 3.4 s)', '1;31'],
    [
      { name: 'test', exitCode: null, durationMs: 600_000, timedOut: true },
      '⏱ step test: timed out (no exit code, 10 min 00 s)',
      '1;33',
    ],
    [{ name: 'test', exitCode: null, durationMs: 20 }, '✘ step test: killed (no exit code, 20 ms)', '1;31'],
  ])('writes the footer of %p', (step, text, sgr) => {
    const footer = formatStepFooter(step);
    expect(visible(footer)).toBe(`${text}\n`);
    expect(footer.startsWith(`${ESC}[${sgr}m`)).toBe(true);
  });

  it('tells the outcome of a step', () => {
    expect(stepOutcome({ exitCode: 0 })).toBe('passed');
    expect(stepOutcome({ exitCode: 2 })).toBe('failed');
    expect(stepOutcome({ exitCode: null })).toBe('killed');
    expect(stepOutcome({ exitCode: 143, timedOut: true })).toBe('timed out');
  });

  it('keeps names on one line and strips escapes, so a name cannot forge another marker', () => {
    const name = `evil${ESC}[0m\n${ESC}[1;36m▶ step forged`;
    const log = formatStepHeader({ name, command: `echo hi\n${ESC}[1;36m▶ step forged${ESC}[0m` });
    const markers = parseStepMarkers(log);
    expect(markers).toHaveLength(1);
    expect(markers[0]).toMatchObject({ kind: 'step-start', name: 'evil\uFFFD[0m \uFFFD[1;36m▶ step forged' });
    expect(log.split('\n')).toHaveLength(4);
    expect(log.slice(1)).not.toContain(ESC + '[1;36m▶');
  });
});

describe('formatBuildSummary', () => {
  it('names the result, the duration, every step and the description', () => {
    const summary = formatBuildSummary({
      state: 'timed_out',
      durationMs: 125_000,
      steps: [
        { name: 'install', exitCode: 0, durationMs: 12_300 },
        { name: 'test', exitCode: null, durationMs: 112_000, timedOut: true },
      ],
      description: 'timed out after 112 s in test',
    });
    expect(visible(summary)).toBe(
      '■ build timed out (2 min 05 s)\n' +
        '  ✔ step install: passed (exit 0, 12.3 s)\n' +
        '  ⏱ step test: timed out (no exit code, 1 min 52 s)\n' +
        'timed out after 112 s in test\n',
    );
  });

  it.each(BUILD_STATES)('is found again for state %s', (state) => {
    const markers = parseStepMarkers(`output\n${formatBuildSummary({ state })}`);
    expect(markers).toEqual([{ kind: 'build-summary', state, start: 7, end: expect.any(Number) }]);
  });
});

describe('parseStepMarkers', () => {
  const install = formatStepHeader({ name: 'install', command: 'npm ci' });
  const installEnd = formatStepFooter({ name: 'install', exitCode: 0, durationMs: 850 });
  const test = formatStepHeader({ name: 'unit: tests', command: 'npm test\nnpm run lint' });
  const testEnd = formatStepFooter({ name: 'unit: tests', exitCode: 3, durationMs: 61_000 });
  const summary = formatBuildSummary({
    state: 'failure',
    durationMs: 62_000,
    steps: [
      { name: 'install', exitCode: 0, durationMs: 850 },
      { name: 'unit: tests', exitCode: 3, durationMs: 61_000 },
    ],
  });
  const parts = [
    'Fetching source…\n',
    install,
    'added 12 packages\n',
    installEnd,
    test,
    '\u001b[31m1 failing\u001b[0m\n',
    testEnd,
    summary,
  ];
  const log = parts.join('');

  it('finds headers, footers and the summary with their positions', () => {
    const markers = parseStepMarkers(log);
    expect(markers.map((marker) => marker.kind)).toEqual([
      'step-start',
      'step-end',
      'step-start',
      'step-end',
      'build-summary',
    ]);
    expect(markers[0]).toEqual({
      kind: 'step-start',
      name: 'install',
      command: 'npm ci',
      start: parts[0]!.length,
      end: parts[0]!.length + install.length,
    });
    expect(markers[1]).toMatchObject({
      kind: 'step-end',
      name: 'install',
      outcome: 'passed',
      exitCode: 0,
      durationText: '850 ms',
    });
    expect(markers[2]).toMatchObject({ name: 'unit: tests', command: 'npm test\nnpm run lint' });
    expect(markers[3]).toMatchObject({
      name: 'unit: tests',
      outcome: 'failed',
      exitCode: 3,
      durationText: '1 min 01 s',
    });
    expect(markers[4]).toMatchObject({ kind: 'build-summary', state: 'failure' });
    // Each marker's range is exactly the text that was written.
    expect(log.slice(markers[2]!.start, markers[2]!.end)).toBe(test);
    expect(log.slice(markers[3]!.start, markers[3]!.end)).toBe(testEnd);
  });

  it('finds markers in a log with CRLF line endings', () => {
    const markers = parseStepMarkers(log.replace(/\n/g, '\r\n'));
    expect(markers.map((marker) => marker.kind)).toHaveLength(5);
    expect(markers[2]).toMatchObject({ name: 'unit: tests', command: 'npm test\nnpm run lint' });
  });

  it('does not mistake ordinary output for markers', () => {
    const lookalikes = [
      '▶ step install',
      '✔ step install: passed (exit 0, 1.0 s)',
      '■ build passed',
      `${ESC}[1;36m▶ step no reset at the end`,
      `${ESC}[1;32m✔ step x: passed${ESC}[0m (exit 0, 1.0 s)`,
      `${ESC}[1;32m■ build exploded${ESC}[0m`,
      `prefix ${install.trimEnd()}`,
      `${ESC}[1;31mError:${ESC}[0m something failed`,
      '',
    ].join('\n');
    expect(parseStepMarkers(lookalikes)).toEqual([]);
  });

  it('finds nothing in an empty log, and a header without a newline at the very end', () => {
    expect(parseStepMarkers('')).toEqual([]);
    const markers = parseStepMarkers(`x\n${install.trimEnd()}`);
    expect(markers).toMatchObject([{ kind: 'step-start', name: 'install', command: 'npm ci' }]);
  });
});
