import {
  MASK,
  MIN_SECRET_LENGTH,
  createSecretMasker,
  maskSecrets,
  secretVariants,
} from '../../src/core/log-mask.js';
import { stripTerminalControls } from '../../src/core/terminal-text.js';

/** Small deterministic PRNG (mulberry32) so the property-style tests are reproducible. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function streamThrough(secrets: string[], chunks: string[]): { output: string; pieces: string[] } {
  const masker = createSecretMasker(secrets);
  const pieces = chunks.map((chunk) => masker.write(chunk));
  pieces.push(masker.flush());
  return { output: pieces.join(''), pieces };
}

function randomChunks(text: string, random: () => number, maxChunk: number): string[] {
  const chunks: string[] = [];
  for (let at = 0; at < text.length;) {
    const size = 1 + Math.floor(random() * maxChunk);
    chunks.push(text.slice(at, at + size));
    at += size;
  }
  return chunks;
}

describe('maskSecrets', () => {
  it('replaces every occurrence of every secret', () => {
    expect(maskSecrets('token=s3cr3t-value; again s3cr3t-value.', ['s3cr3t-value'])).toBe(
      'token=***; again ***.',
    );
    expect(maskSecrets('a=first-secret b=second-secret', ['first-secret', 'second-secret'])).toBe(
      'a=*** b=***',
    );
  });

  it('leaves text without secrets unchanged', () => {
    const text = 'npm test\n\u001b[32m✔ 12 passing\u001b[0m\r\n';
    expect(maskSecrets(text, ['not-in-there'])).toBe(text);
    expect(maskSecrets(text, [])).toBe(text);
  });

  it(`ignores empty secrets and secrets shorter than ${MIN_SECRET_LENGTH} characters`, () => {
    const text = 'a b ab abc on 1 true';
    expect(maskSecrets(text, ['', 'a', 'ab', 'abc', '1'])).toBe(text);
    expect(maskSecrets('x true y', ['true'])).toBe(`x ${MASK} y`);
  });

  it('masks overlapping secrets as one piece, leaving no fragment of either', () => {
    expect(maskSecrets('xx abcdefghi xx', ['abcdef', 'defghi'])).toBe('xx *** xx');
    expect(maskSecrets('password123 and password', ['password', 'password123'])).toBe('*** and ***');
  });

  it('masks secrets containing regular-expression characters literally', () => {
    expect(maskSecrets('k=a.b*c+d?(e) and a-b-c-d', ['a.b*c+d?(e)'])).toBe('k=*** and a-b-c-d');
  });

  describe('base64', () => {
    const secret = 'hunter2-Sup3r$ecret';

    it('masks the secret at all three alignments inside a longer base64 string, both alphabets', () => {
      for (let before = 0; before <= 5; before++) {
        for (let after = 0; after <= 3; after++) {
          const data = Buffer.concat([
            Buffer.alloc(before, 0xfe),
            Buffer.from(secret),
            Buffer.alloc(after, 0xfb),
          ]);
          for (const encoding of ['base64', 'base64url'] as const) {
            const encoded = data.toString(encoding);
            const masked = maskSecrets(`data: ${encoded} end`, [secret]);
            expect(masked).toContain(MASK);
            expect(masked.startsWith('data: ')).toBe(true);
            expect(masked.endsWith(' end')).toBe(true);
            // What is left of the encoding is too short to carry the secret.
            const rest = masked.slice('data: '.length, -' end'.length).split(MASK).join('');
            expect(rest.length).toBeLessThanOrEqual(Math.ceil(((before + after) * 8) / 6) + 4);
          }
        }
      }
    });

    it('masks the password inside an HTTP basic authorization header, keeping the user part', () => {
      const header = `Authorization: Basic ${Buffer.from(`deploy-bot:${secret}`).toString('base64')}`;
      const masked = maskSecrets(header, [secret]);
      expect(masked).toMatch(/^Authorization: Basic [A-Za-z0-9+/]*\*\*\*[A-Za-z0-9+/=]*$/);
      // "deploy-bot:" is 11 bytes: its first 14 base64 characters carry only the user name.
      expect(masked).toContain(Buffer.from('deploy-bot:').toString('base64').slice(0, 14));
    });
  });

  it('masks URL-encoded and form-encoded secrets', () => {
    const secret = "p@ss w/rd+&=ok!'";
    const encoded = encodeURIComponent(secret);
    expect(encoded).not.toBe(secret);
    expect(maskSecrets(`url=https://h/?t=${encoded}&x=1`, [secret])).toBe('url=https://h/?t=***&x=1');
    expect(maskSecrets(`t=${encoded.replace(/%20/g, '+')}`, [secret])).toBe('t=***');
    expect(maskSecrets(new URLSearchParams({ t: secret }).toString(), [secret])).toBe('t=***');
    const lowerCaseEscapes = encoded.replace(/%[0-9A-F]{2}/g, (escape) => escape.toLowerCase());
    expect(lowerCaseEscapes).not.toBe(encoded);
    expect(maskSecrets(`t=${lowerCaseEscapes}`, [secret])).toBe('t=***');
  });

  it('masks JSON-escaped secrets', () => {
    const secret = 'quote"back\\slash\ttab/é';
    expect(maskSecrets(JSON.stringify({ token: secret }), [secret])).toBe('{"token":"***"}');
    const asciiOnly = JSON.stringify(secret).replace(
      /[^\u0020-\u007e]/g,
      (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`,
    );
    expect(maskSecrets(`{"token":${asciiOnly}}`, [secret])).toBe('{"token":"***"}');
  });

  it('masks a multi-line secret as a whole, in CRLF form, and line by line', () => {
    const key = '-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nbJ2pZq8xYw+3k7Lr\n-----END KEY-----';
    expect(maskSecrets(`key:\n${key}\ndone`, [key])).toBe('key:\n***\ndone');
    expect(maskSecrets(`key:\r\n${key.replace(/\n/g, '\r\n')}\r\ndone`, [key])).toBe('key:\r\n***\r\ndone');
    expect(maskSecrets('line 2 is MIIEvQIBADANBgkqhkiG9w0BAQEFAASC here', [key])).toBe('line 2 is *** here');
  });
});

describe('secretVariants', () => {
  it('lists the forms longest first, without duplicates or forms too short to mask', () => {
    const variants = secretVariants(['abc', 'my secret/1', 'my secret/1']);
    expect(variants).toContain('my secret/1');
    expect(variants).toContain('my%20secret%2F1');
    expect(variants).toContain('my+secret%2F1');
    expect(variants).toContain(Buffer.from('my secret/1').toString('base64').slice(0, 14));
    expect(variants).not.toContain('abc');
    expect(new Set(variants).size).toBe(variants.length);
    for (let i = 1; i < variants.length; i++) {
      expect(variants[i - 1]!.length).toBeGreaterThanOrEqual(variants[i]!.length);
    }
    expect(variants.every((variant) => variant.length >= MIN_SECRET_LENGTH)).toBe(true);
  });
});

describe('createSecretMasker (streaming)', () => {
  it('masks a secret split across chunks, holding back only what could start a secret', () => {
    const masker = createSecretMasker(['secret']);
    expect(masker.write('abc sec')).toBe('abc ');
    expect(masker.write('ret def')).toBe('*** def');
    expect(masker.flush()).toBe('');
  });

  it('masks a secret split across many chunks', () => {
    const { pieces } = streamThrough(['secret'], ['s', 'e', 'c', 'r', 'e', 't', '!']);
    expect(pieces).toEqual(['', '', '', '', '', '***', '!', '']);
  });

  it('emits text that cannot start a secret at once, and releases a false start', () => {
    const masker = createSecretMasker(['secret']);
    expect(masker.write('hello world')).toBe('hello world');
    expect(masker.write('hello s')).toBe('hello ');
    expect(masker.write('ec')).toBe('');
    expect(masker.write('ond')).toBe('second');
    expect(masker.write('... se')).toBe('... ');
    expect(masker.flush()).toBe('se');
  });

  it('holds back the longest possible start among all variants', () => {
    const masker = createSecretMasker(['abcdefgh', 'xyz-abcd']);
    expect(masker.write('0 xyz-abc')).toBe('0 ');
    expect(masker.write('d 1 abcdefg')).toBe('*** 1 ');
    expect(masker.write('h')).toBe('***');
  });

  it('does not emit a second mask when a longer match continues a mask already emitted', () => {
    // "xxabcd" is complete in the first chunk, but "abcdefg" may still be growing from inside it.
    const masker = createSecretMasker(['xxabcd', 'abcdefg']);
    expect(masker.write('..xxabcd')).toBe('..***');
    expect(masker.write('efg!')).toBe('!');
    expect(masker.flush()).toBe('');
    expect(maskSecrets('..xxabcdefg!', ['xxabcd', 'abcdefg'])).toBe('..***!');
    // And when the longer one does not complete, the held characters were already masked.
    const other = createSecretMasker(['xxabcd', 'abcdefg']);
    expect(other.write('..xxabcd') + other.write('eZ') + other.flush()).toBe('..***eZ');
  });

  it('can be flushed with nothing held back and used again', () => {
    const masker = createSecretMasker(['secret']);
    expect(masker.flush()).toBe('');
    expect(masker.write('a secre')).toBe('a ');
    expect(masker.flush()).toBe('secre');
    expect(masker.write('secret')).toBe('***');
  });

  describe('random chunkings (seeded)', () => {
    const secrets = [
      'hunter2-S3cret!',
      'tok_AbC123xyz/+=Q',
      'first-line-secret\nsecond-line-secret',
      'ünïcödé-pässwörd ✓',
    ];
    const fillerWords = ['lorem', 'ipsum', 'build', 'ok', '42', '\n', '\u001b[32mpass\u001b[0m', 'é✓', '—'];

    function buildText(random: () => number): { text: string; filler: string[] } {
      const filler: string[] = [];
      let text = '';
      const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
      for (let segment = 0; segment < 120; segment++) {
        const words = Array.from({ length: 1 + Math.floor(random() * 6) }, () => pick(fillerWords));
        const fillerText = ` ${words.join(' ')} `;
        filler.push(fillerText);
        text += fillerText;
        const secret = pick(secrets);
        const before = Buffer.from(Array.from({ length: Math.floor(random() * 6) }, () => 0x41 + segment));
        const after = Buffer.from(Array.from({ length: Math.floor(random() * 6) }, () => 0x7a));
        const blob = Buffer.concat([before, Buffer.from(secret), after]);
        text += pick([
          secret,
          blob.toString('base64'),
          blob.toString('base64url'),
          encodeURIComponent(secret),
          new URLSearchParams({ v: secret }).toString(),
          JSON.stringify({ v: secret }),
          secret.split('\n').join('\r\n'),
        ]);
      }
      return { text, filler };
    }

    it('never lets a secret variant through and keeps other text unchanged', () => {
      const random = seededRandom(20240501);
      const variants = secretVariants(secrets);
      for (let trial = 0; trial < 40; trial++) {
        const { text, filler } = buildText(random);
        const oneShot = maskSecrets(text, secrets);
        for (let chunking = 0; chunking < 5; chunking++) {
          const { output } = streamThrough(secrets, randomChunks(text, random, 1 + trial * 3));
          expect(output).toBe(oneShot);
        }
        for (const variant of variants) expect(oneShot.includes(variant)).toBe(false);
        let searchFrom = 0;
        for (const piece of filler) {
          const found = oneShot.indexOf(piece, searchFrom);
          expect(found).toBeGreaterThanOrEqual(searchFrom);
          searchFrom = found + piece.length;
        }
      }
    });

    it('passes text with no secrets through unchanged, whatever the chunking', () => {
      const random = seededRandom(7);
      const text = Array.from({ length: 3000 }, () => fillerWords[Math.floor(random() * 9)]).join(' ');
      for (let chunking = 0; chunking < 20; chunking++) {
        expect(streamThrough(secrets, randomChunks(text, random, 64)).output).toBe(text);
      }
    });
  });
});

describe('secrets cut apart by terminal escapes and control characters', () => {
  const secret = 's3cret-Value_42';
  /** What an attacker may put inside the secret: each is removed by a terminal and by the page. */
  const insertions = [
    '\u001b[0m', // ANSI reset
    '\u001b[31m',
    '\u001b[1;38;2;255;0;0m',
    '\u001b[>5m', // private-mode CSI
    '\u001b[2K', // erase line
    '\u001b]0;title\u0007', // OSC, BEL-terminated
    '\u001b]8;;https://example.test/\u001b\\', // OSC hyperlink, ST-terminated
    '\u001b(B', // charset choice
    '\u001b7', // save cursor
    '\u0000',
    '\u0007',
    '\u0008',
    '\u009b', // C1 control
    '\u001b[0m\u001b[31m\u0000',
  ];
  const visible = (text: string) => stripTerminalControls(text);

  it.each(insertions.map((insertion) => [JSON.stringify(insertion), insertion]))(
    'masks %s inside the secret, in one piece and at every split into two chunks',
    (_, insertion) => {
      const hostile = `before ${secret.slice(0, 3)}${insertion}${secret.slice(3)} after\n`;
      expect(visible(hostile)).toContain(secret); // what a page would show without the masker
      const whole = maskSecrets(hostile, [secret]);
      expect(whole).toBe(`before ${MASK} after\n`);
      for (let split = 0; split <= hostile.length; split++) {
        const { output } = streamThrough([secret], [hostile.slice(0, split), hostile.slice(split)]);
        expect([split, output]).toEqual([split, whole]);
      }
    },
  );

  it('masks a secret cut by escapes in several places, fed one character at a time', () => {
    const hostile = `x${[...secret].join('\u001b[0m')}y\n`;
    expect(streamThrough([secret], [...hostile]).output).toBe(`x${MASK}y\n`);
  });

  it('holds an unfinished escape back until the next chunk finishes it', () => {
    const masker = createSecretMasker([secret]);
    expect(masker.write('ok s3c\u001b[3')).toBe('ok ');
    expect(masker.write('1mret-Value_42 done')).toBe(`${MASK} done`);
    expect(masker.flush()).toBe('');
  });

  it('keeps escapes and control characters that cut no secret as they are', () => {
    const random = seededRandom(14);
    const text = `\u001b[32mpassed\u001b[0m s3c\u001b[1mrat\r\nprogress 10%\r100%\u0007 \u001b]0;t\u0007s3c\n`;
    for (let round = 0; round < 50; round++) {
      expect(streamThrough([secret], randomChunks(text, random, 8)).output).toBe(text);
    }
  });

  it('never lets the secret through in the raw or the visible text, whatever the chunking (seeded)', () => {
    const random = seededRandom(2026);
    for (let round = 0; round < 300; round++) {
      let hostile = 'log ';
      for (const char of secret) {
        hostile += char;
        if (random() < 0.4) hostile += insertions[Math.floor(random() * insertions.length)] ?? '';
      }
      hostile += ' end\n';
      const { output } = streamThrough([secret], randomChunks(hostile, random, 12));
      expect(output).not.toContain(secret);
      expect(visible(output)).not.toContain(secret);
    }
  });
});
