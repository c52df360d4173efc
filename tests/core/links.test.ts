import { baseUrlFromRequest, buildPageUrl, rawLogUrl } from '../../src/core/links.js';

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
