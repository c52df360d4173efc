import {
  BoundedLog,
  DEFAULT_LOG_LIMIT_BYTES,
  formatBytes,
  truncationMarker,
} from '../../../src/runner/log/bounded-log.js';

const byteLength = (text: string): number => Buffer.byteLength(text, 'utf8');

function numberedLines(from: number, to: number): string {
  let text = '';
  for (let n = from; n <= to; n++) text += `line ${String(n).padStart(6, '0')} abcdefg\n`; // 20 bytes
  return text;
}

/** Head + dropped + tail always account for every byte appended. */
function expectConsistent(log: BoundedLog, head: string): void {
  expect(byteLength(head) + log.truncatedBytes + byteLength(log.tail())).toBe(log.totalBytes);
  expect(log.bufferedBytes).toBeLessThanOrEqual(log.limitBytes);
}

describe('BoundedLog', () => {
  it('keeps a log under the limit whole, without a marker', () => {
    const log = new BoundedLog({ limitBytes: 1024 });
    const text = numberedLines(1, 50); // 1000 bytes
    log.append(text.slice(0, 300));
    log.append(text.slice(300));
    expect(log.totalBytes).toBe(1000);
    expect(log.truncated).toBe(false);
    expect(log.truncatedBytes).toBe(0);
    expect(log.finalText()).toBe(text);
  });

  it('keeps a log of exactly the limit whole', () => {
    const log = new BoundedLog({ limitBytes: 1024 });
    log.append('x'.repeat(1024));
    expect(log.finalText()).toBe('x'.repeat(1024));
    log.append('y');
    expect(log.truncatedBytes).toBe(1);
  });

  it('rejects a limit too small to be useful', () => {
    expect(() => new BoundedLog({ limitBytes: 100 })).toThrow(RangeError);
    expect(() => new BoundedLog({ limitBytes: 2048.5 })).toThrow(/whole number of bytes/);
    expect(new BoundedLog().limitBytes).toBe(DEFAULT_LOG_LIMIT_BYTES);
  });

  it('hands out the head progressively, and the tail and marker at the end', () => {
    const log = new BoundedLog({ limitBytes: 1024 });
    log.append('first\n');
    expect(log.takeNewHead()).toBe('first\n');
    expect(log.takeNewHead()).toBe('');
    log.append('second\n');
    log.append('third\n');
    expect(log.takeNewHead()).toBe('second\nthird\n');

    const rest = numberedLines(1, 200);
    let taken = 'first\nsecond\nthird\n';
    for (let at = 0; at < rest.length; at += 37) {
      log.append(rest.slice(at, at + 37));
      taken += log.takeNewHead();
      expect(byteLength(taken)).toBeLessThanOrEqual(512);
    }
    expect(log.truncated).toBe(true);
    expect(taken + log.textAfterHead()).toBe(log.finalText());
    expectConsistent(log, taken);
  });

  it('cuts in the middle at line boundaries and says how much was dropped', () => {
    const log = new BoundedLog({ limitBytes: 1024 });
    const text = numberedLines(1, 300); // 6000 bytes
    for (let at = 0; at < text.length; at += 100) log.append(text.slice(at, at + 100));
    const head = log.takeNewHead();
    const tail = log.tail();
    // Head: whole lines within the first half of the limit; tail: whole lines within the other half.
    expect(head).toBe(numberedLines(1, 25));
    expect(tail).toBe(numberedLines(276, 300));
    expect(log.truncatedBytes).toBe(6000 - 500 - 500);
    expect(log.finalText()).toBe(head + truncationMarker(5000, 1024, true) + tail);
    expect(log.finalText()).toContain(
      '\n… 4.9 KiB of log truncated here (limit 1 KiB); the end of the log follows …\n',
    );
    expectConsistent(log, head);
  });

  it('keeps every whole line of the tail when the dropped part ended at a newline', () => {
    const log = new BoundedLog({ limitBytes: 1280 }); // 640 bytes each side: exactly 32 lines of 20
    const text = numberedLines(1, 100);
    for (let n = 0; n < 100; n++) log.append(text.slice(n * 20, n * 20 + 20));
    expect(log.tail()).toBe(numberedLines(69, 100));
    expect(log.truncatedBytes).toBe(36 * 20);
  });

  it('handles a log that never prints a newline', () => {
    const log = new BoundedLog({ limitBytes: 1024 });
    for (let n = 0; n < 100; n++) log.append('x'.repeat(100));
    expect(log.takeNewHead()).toBe('x'.repeat(512));
    expect(log.tail()).toBe('x'.repeat(512));
    expect(log.truncatedBytes).toBe(10_000 - 1024);
    expect(log.finalText()).toBe(
      `${'x'.repeat(512)}\n… 8.8 KiB of log truncated here (limit 1 KiB); the end of the log follows …\n${'x'.repeat(512)}`,
    );
  });

  it('never splits a multi-byte character, at the head or the tail', () => {
    for (const alphabet of ['€', 'é', '😀', 'aé€😀']) {
      const log = new BoundedLog({ limitBytes: 1024 });
      const text = alphabet.repeat(700);
      for (let at = 0; at < text.length; at += 13) log.append(text.slice(at, at + 13));
      const head = log.takeNewHead();
      const tail = log.tail();
      expect(head).not.toContain('\uFFFD');
      expect(tail).not.toContain('\uFFFD');
      expect(text.startsWith(head)).toBe(true);
      expect(text.endsWith(tail)).toBe(true);
      expect(byteLength(head)).toBeGreaterThan(512 - 4);
      expect(byteLength(tail)).toBeGreaterThan(512 - 4);
      expectConsistent(log, head);
    }
  });

  it('joins a character whose UTF-16 halves arrive in separate appends', () => {
    const log = new BoundedLog({ limitBytes: 1024 });
    log.append('a\uD83D');
    expect(log.totalBytes).toBe(1);
    log.append('\uDE00b');
    expect(log.finalText()).toBe('a😀b');
    expect(log.totalBytes).toBe(6);
  });

  it('keeps only the end of a single append larger than the limit', () => {
    const log = new BoundedLog({ limitBytes: 1024 });
    const text = numberedLines(1, 500);
    log.append(text);
    expect(log.takeNewHead()).toBe(numberedLines(1, 25));
    expect(log.tail()).toBe(numberedLines(476, 500));
    expectConsistent(log, numberedLines(1, 25));
  });

  it('hands out a head appended in many small pieces exactly, multi-byte characters included', () => {
    const log = new BoundedLog({ limitBytes: 64 * 1024 });
    let expected = '';
    let taken = '';
    for (let n = 0; n < 8000; n++) {
      const piece = n % 7 === 0 ? `é${n}€\n` : `${n} `;
      log.append(piece);
      expected += piece;
      taken += log.takeNewHead();
    }
    expect(byteLength(expected)).toBeGreaterThan(32 * 1024); // the head filled and closed
    expect(taken + log.textAfterHead()).toBe(log.finalText());
    expect(expected.startsWith(taken)).toBe(true);
    expect(byteLength(taken)).toBeLessThanOrEqual(32 * 1024);
    expect(byteLength(taken)).toBeGreaterThan(32 * 1024 - 8 * 1024);
    expectConsistent(log, taken);
  });

  it('gives the text after the head as bytes, and the end of the log for a page', () => {
    const log = new BoundedLog({ limitBytes: 1024 });
    log.append(numberedLines(1, 10)); // 200 bytes: all head
    expect(log.partsAfterHead()).toEqual([]);
    expect(log.lastText(100)).toBe(numberedLines(6, 10));
    expect(log.lastText(10_000)).toBe(log.finalText());

    log.append(numberedLines(11, 200)); // past the limit: head, marker, tail
    expect(Buffer.concat(log.partsAfterHead()).toString('utf8')).toBe(log.textAfterHead());
    expect(log.textAfterHead()).toContain('truncated here');
    expect(log.lastText(100)).toBe(numberedLines(196, 200));
    expect(log.lastText(10_000)).toBe(log.finalText());
    // A cut inside a character starts the page at the next whole one.
    const multi = new BoundedLog({ limitBytes: 1024 });
    multi.append('€'.repeat(100)); // 300 bytes
    expect(multi.lastText(10)).toBe('€'.repeat(3));
  });

  it('stays within its limit however much is appended (100 MiB in 64 KiB chunks)', () => {
    const log = new BoundedLog(); // 4 MiB
    const chunkLines = numberedLines(1, 3277); // 65,540 bytes
    let head = '';
    const chunks = 1600;
    for (let n = 0; n < chunks; n++) {
      log.append(`chunk ${String(n).padStart(4, '0')}\n` + chunkLines);
      head += log.takeNewHead();
      expect(log.bufferedBytes).toBeLessThanOrEqual(log.limitBytes);
    }
    const chunkBytes = 11 + byteLength(chunkLines);
    expect(log.totalBytes).toBe(chunks * chunkBytes);
    expect(log.totalBytes).toBeGreaterThan(100 * 1024 * 1024);
    expect(byteLength(head)).toBeLessThanOrEqual(DEFAULT_LOG_LIMIT_BYTES / 2);
    expect(head.startsWith('chunk 0000\nline 000001 abcdefg\n')).toBe(true);
    expect(head.endsWith('\n')).toBe(true);
    const tail = log.tail();
    expect(byteLength(tail)).toBeLessThanOrEqual(DEFAULT_LOG_LIMIT_BYTES / 2);
    expect(tail.endsWith(chunkLines)).toBe(true);
    expect(tail).toContain(`chunk ${chunks - 1}\n`);
    expect(tail).toMatch(/^(line \d{6} abcdefg|chunk \d{4})\n/);
    expectConsistent(log, head);
    expect(log.finalText()).toContain(`of log truncated here (limit 4 MiB)`);
    expect(log.finalText()).toContain(`${formatBytes(log.truncatedBytes)} of log truncated here`);
  });
});

describe('formatBytes', () => {
  it('uses binary units with one decimal', () => {
    expect(formatBytes(0)).toBe('0 bytes');
    expect(formatBytes(1)).toBe('1 byte');
    expect(formatBytes(1023)).toBe('1023 bytes');
    expect(formatBytes(1024)).toBe('1 KiB');
    expect(formatBytes(4 * 1024 * 1024)).toBe('4 MiB');
    expect(formatBytes(12.34 * 1024 * 1024)).toBe('12.3 MiB');
    expect(formatBytes(1024 * 1024 - 10)).toBe('1 MiB');
  });
});
