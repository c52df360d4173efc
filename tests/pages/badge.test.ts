import { BADGE_CONTENT_TYPE, badgeWordOf, renderBadge, type BadgeState } from '../../src/pages/badge.js';

/**
 * A small well-formedness check (no XML parser is a dependency): one root element, tags nested and
 * closed in order, attributes quoted and unique, no bare `&` or `<` in text or attribute values.
 */
function expectWellFormedXml(xml: string): void {
  const token = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>|([^<]+)/gy;
  const open: string[] = [];
  let roots = 0;
  let consumed = 0;
  for (let match = token.exec(xml); match; match = token.exec(xml)) {
    consumed = token.lastIndex;
    const [, closing, name, attributes, selfClosing, text] = match;
    const raw = text ?? attributes ?? '';
    expect(raw).not.toMatch(/&(?!(?:amp|lt|gt|quot|apos|#\d+);)/);
    if (text !== undefined) {
      if (open.length === 0) expect(text.trim()).toBe('');
      continue;
    }
    const names = [...(attributes ?? '').matchAll(/([\w:-]+)="/g)].map((attribute) => attribute[1]);
    expect(new Set(names).size).toBe(names.length);
    if (closing) {
      expect(open.pop()).toBe(name);
    } else {
      if (open.length === 0) roots++;
      if (!selfClosing) open.push(name!);
    }
  }
  expect(consumed).toBe(xml.length);
  expect(open).toEqual([]);
  expect(roots).toBe(1);
}

describe('renderBadge', () => {
  it.each([
    ['success', 'passing', '#4c1'],
    ['failure', 'failing', '#e05d44'],
    ['error', 'error', '#fe7d37'],
    // GitHub's commit status says error for a build that timed out; so does the badge.
    ['timed_out', 'error', '#fe7d37'],
    // No verdict: the route shows the last build that has one, the stored copy says unknown.
    ['cancelled', 'unknown', '#9f9f9f'],
    ['running', 'unknown', '#9f9f9f'],
    ['queued', 'unknown', '#9f9f9f'],
    ['unknown', 'unknown', '#9f9f9f'],
  ] as const)('shows %s as "build | %s" in %s', (state, message, color) => {
    expect(badgeWordOf(state)).toBe(message);
    const svg = renderBadge(state);
    expectWellFormedXml(svg);
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg).toContain(`aria-label="build: ${message}"`);
    expect(svg).toContain(`<title>build: ${message}</title>`);
    expect(svg).toContain(`>${message}</text>`);
    expect(svg).toContain('>build</text>');
    expect(svg).toContain(`fill="${color}"`);
  });

  it('sizes the two halves to their text and the whole to their sum', () => {
    const widthOf = (svg: string): { total: number; label: number; message: number } => {
      const total = Number(/<svg[^>]* width="(\d+)"/.exec(svg)![1]);
      const label = Number(/<rect width="(\d+)" height="20" fill="#555"/.exec(svg)![1]);
      const message = Number(/<rect x="\d+" width="(\d+)"/.exec(svg)![1]);
      return { total, label, message };
    };
    const passing = widthOf(renderBadge('success'));
    const error = widthOf(renderBadge('error'));
    expect(passing.total).toBe(passing.label + passing.message);
    expect(error.total).toBe(error.label + error.message);
    expect(passing.label).toBe(error.label);
    expect(passing.message).toBeGreaterThan(error.message);
    expect(passing.label).toBeGreaterThanOrEqual(30);
    expect(passing.label).toBeLessThanOrEqual(45);
  });

  it('shows an unexpected stored state as unknown', () => {
    const svg = renderBadge('<exploded>' as BadgeState);
    expectWellFormedXml(svg);
    expect(svg).toContain('<title>build: unknown</title>');
    expect(svg).not.toContain('exploded');
    expect(renderBadge('toString' as BadgeState)).toContain('<title>build: unknown</title>');
  });

  it('says only passing, failing, error or unknown', () => {
    const states: BadgeState[] = [
      'queued',
      'running',
      'success',
      'failure',
      'error',
      'timed_out',
      'cancelled',
    ];
    const words = new Set([...states, 'unknown' as const].map((state) => badgeWordOf(state)));
    expect([...words].sort()).toEqual(['error', 'failing', 'passing', 'unknown']);
    expect(badgeWordOf(undefined)).toBe('unknown');
  });

  it('names its content type', () => {
    expect(BADGE_CONTENT_TYPE).toBe('image/svg+xml');
  });

  it('is checked by a well-formedness test that does reject broken XML', () => {
    expect(() => expectWellFormedXml('<svg><g></svg>')).toThrow();
    expect(() => expectWellFormedXml('<svg><text>a & b</text></svg>')).toThrow();
    expect(() => expectWellFormedXml('<svg a="1" a="2"/>')).toThrow();
    expect(() => expectWellFormedXml('<svg/><svg/>')).toThrow();
  });
});
