import { baseUrlFromRequest, buildPageUrl, rawLogUrl, relativePageLinks } from '../../src/core/links.js';

describe('build links', () => {
  it('put the raw log before the private token', () => {
    expect(rawLogUrl('https://ci.test/builds/o/r/3')).toBe('https://ci.test/builds/o/r/3/log.txt');
    expect(rawLogUrl(buildPageUrl('https://ci.test', { repo: 'o/r', number: 3 }, 'tok-en_1'))).toBe(
      'https://ci.test/builds/o/r/3/log.txt?token=tok-en_1',
    );
  });

  it('take the base from a well-formed Host only', () => {
    expect(baseUrlFromRequest({ host: 'abc.execute-api.us-east-1.amazonaws.com' })).toBe(
      'https://abc.execute-api.us-east-1.amazonaws.com',
    );
    expect(baseUrlFromRequest({ host: '127.0.0.1:3000', 'x-forwarded-proto': 'http' })).toBe(
      'http://127.0.0.1:3000',
    );
    expect(baseUrlFromRequest({ host: 'evil.test/"><script>' })).toBeUndefined();
    expect(baseUrlFromRequest({})).toBeUndefined();
  });
});

describe('relative page links', () => {
  it('resolve from the build page and the repository page to the same targets on any base', () => {
    for (const base of [
      'http://127.0.0.1:3000',
      'http://127.0.0.1:4123',
      'https://ci.example.test/lambkin',
    ]) {
      const page = buildPageUrl(base, { repo: 'octo/my.app', number: 12 });
      const links = relativePageLinks(
        buildPageUrl('https://recorded.test', { repo: 'octo/my.app', number: 12 }),
      );
      expect(new URL(links.rawLog, page).href).toBe(`${base}/builds/octo/my.app/12/log.txt`);
      expect(new URL(links.self, page).href).toBe(page);
      expect(new URL(links.repoPage, page).href).toBe(`${base}/builds/octo/my.app`);
      expect(new URL(links.fromRepoPage, `${base}/builds/octo/my.app`).href).toBe(page);
    }
  });

  it('are the same from a link with no host (no public URL configured)', () => {
    expect(relativePageLinks('/builds/o/r/3?token=t')).toEqual(
      relativePageLinks(buildPageUrl('https://ci.test', { repo: 'o/r', number: 3 }, 't')),
    );
  });

  it("keep a private build's token", () => {
    const links = relativePageLinks(buildPageUrl('https://ci.test', { repo: 'o/r', number: 3 }, 'tok-en_1'));
    expect(links).toEqual({
      rawLog: '3/log.txt?token=tok-en_1',
      self: '3?token=tok-en_1',
      repoPage: '../r',
      fromRepoPage: 'r/3?token=tok-en_1',
    });
  });
});
