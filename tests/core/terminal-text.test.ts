import {
  hasTerminalControls,
  stripTerminalControls,
  unfinishedEscapeStart,
  visibleTextWithOffsets,
} from '../../src/core/terminal-text.js';

const ESC = '\u001b';
const BEL = '\u0007';

describe('terminal text', () => {
  it('removes escape sequences and control characters, keeping tab and newline', () => {
    const raw = `a${ESC}[1;31mb${ESC}[0m\tc${ESC}]0;title${BEL}d${ESC}(Be${ESC}7f\u0000g\r\n`;
    expect(stripTerminalControls(raw)).toBe('ab\tcdefg\n');
    expect(stripTerminalControls(raw, { colours: true, carriageReturns: true })).toBe(
      `a${ESC}[1;31mb${ESC}[0m\tcdefg\r\n`,
    );
    expect(hasTerminalControls('plain\ttext\n')).toBe(false);
    expect(hasTerminalControls(`x${ESC}[0m`)).toBe(true);
  });

  it('maps each visible unit to its offset in the raw text', () => {
    const raw = `ab${ESC}[0mc\u0000d`;
    expect(visibleTextWithOffsets(raw)).toEqual({ text: 'abcd', rawOffsets: [0, 1, 6, 8] });
  });

  it('finds a sequence the next chunk could still finish, and only such a one', () => {
    for (const tail of [ESC, `${ESC}[`, `${ESC}[1;3`, `${ESC}]0;ti`, `${ESC}]0;title${ESC}`, `${ESC}(`]) {
      expect([tail, unfinishedEscapeStart(`text ${tail}`)]).toEqual([tail, 5]);
    }
    for (const done of [`${ESC}[0m`, `${ESC}]0;t${BEL}`, `${ESC}(B`, 'plain', `${ESC}[${'1'.repeat(65)}`]) {
      expect([done, unfinishedEscapeStart(`text ${done}`)]).toEqual([done, undefined]);
    }
  });

  it('reads an overlong sequence the same way whole or in pieces: not as an escape', () => {
    // Bounded lengths: no sequence swallows text the masker already let through.
    const overlong = `${ESC}[${'1'.repeat(65)}mtext`;
    expect(stripTerminalControls(overlong)).toBe(`${'1'.repeat(65)}mtext`);
  });
});
