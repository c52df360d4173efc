import { createHash } from 'node:crypto';
import {
  isExactNodeVersion,
  nearestNodeVersions,
  nodeCacheKey,
  nodeInstallName,
  parseNodeVersionSpec,
  pickNodeVersion,
  sha512DigestsOf,
} from '../../src/core/node-version.js';

const PUBLISHED = ['18.20.4', '20.18.0', '20.19.1', '22.0.0', '22.11.0', '23.0.0-rc.1', 'garbage'];

describe('Node.js version specs', () => {
  it('are a major or an exact version, with or without v', () => {
    expect(parseNodeVersionSpec('22')).toEqual({ kind: 'major', major: 22, range: '22.x' });
    expect(parseNodeVersionSpec(' v20 ')).toEqual({ kind: 'major', major: 20, range: '20.x' });
    expect(parseNodeVersionSpec('22.11.0')).toEqual({
      kind: 'exact',
      major: 22,
      exact: '22.11.0',
      range: '22.11.0',
    });
    for (const other of ['lts', '22.x', '>=20', '22.11', '22.11.0-rc.1', '1.2.3.4', '']) {
      expect(parseNodeVersionSpec(other)).toBeUndefined();
    }
  });

  it('pick the highest release a major allows, and exact versions as they are', () => {
    expect(pickNodeVersion(parseNodeVersionSpec('20')!, PUBLISHED)).toBe('20.19.1');
    expect(pickNodeVersion(parseNodeVersionSpec('20.18.0')!, PUBLISHED)).toBe('20.18.0');
    expect(pickNodeVersion(parseNodeVersionSpec('23')!, PUBLISHED)).toBeUndefined();
    expect(pickNodeVersion(parseNodeVersionSpec('21')!, PUBLISHED)).toBeUndefined();
  });

  it('suggest the nearest releases', () => {
    expect(nearestNodeVersions(parseNodeVersionSpec('21')!, PUBLISHED)).toEqual([
      '18.20.4',
      '20.19.1',
      '22.11.0',
    ]);
    expect(nearestNodeVersions(parseNodeVersionSpec('99.0.0')!, PUBLISHED)).toEqual(['22.0.0', '22.11.0']);
    expect(nearestNodeVersions(parseNodeVersionSpec('1.0.0')!, PUBLISHED)).toEqual(['18.20.4', '20.18.0']);
    expect(nearestNodeVersions(parseNodeVersionSpec('22')!, [])).toEqual([]);
  });

  it('name folders and keys only after exact versions', () => {
    expect(isExactNodeVersion('22.11.0')).toBe(true);
    expect(isExactNodeVersion('../22.11.0')).toBe(false);
    expect(nodeInstallName('22.11.0', 'x64')).toBe('node-22.11.0-linux-x64');
    expect(() => nodeInstallName('22', 'x64')).toThrow(/not an exact Node\.js version/);
    const integrity = `sha512-${createHash('sha512').update('a').digest('base64')}`;
    expect(nodeCacheKey('22.11.0', 'x64', integrity)).toMatch(
      /^cache\/_node\/node-22\.11\.0-linux-x64-[0-9a-f]{128}\.tgz$/,
    );
    expect(() => nodeCacheKey('22.11.0', 'x64', 'sha1-AAAA')).toThrow(/no sha512/);
  });

  it('read every sha512 of an SRI string and ignore other algorithms', () => {
    const a = createHash('sha512').update('a').digest();
    const b = createHash('sha512').update('b').digest();
    const sri = `sha1-AAAA sha512-${a.toString('base64')} sha512-${b.toString('base64')}?opt`;
    expect(sha512DigestsOf(sri)).toEqual([a, b]);
    expect(sha512DigestsOf('sha512-short')).toEqual([]);
  });
});
