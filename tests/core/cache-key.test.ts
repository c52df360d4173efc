/** The dependency cache's key: its runtime part comes from a job's own Node.js when it has one. */
import {
  cacheCodecOf,
  cacheKeyOf,
  currentRuntime,
  preferredCacheCodec,
  runtimeId,
  supportedCacheCodecs,
} from '../../src/core/cache-key.js';
import * as zlib from 'node:zlib';

const SHA = 'ab'.repeat(20);
const runtime = { nodeVersion: '20.11.1', platform: 'linux', arch: 'x64' };

describe('cacheKeyOf with a job Node.js version', () => {
  it("names the job's Node major instead of the runtime's", () => {
    expect(cacheKeyOf('octo/app', runtime, SHA, '22.11.0', 'gzip')).toBe(
      `cache/octo/app/node22-linux-x64/${SHA}.tar.gz`,
    );
    expect(cacheKeyOf('octo/app', runtime, SHA, 'v24.0.0', 'br')).toBe(
      `cache/octo/app/node24-linux-x64/${SHA}.tar.br`,
    );
  });

  it("is the runtime's key without one, and the same for two versions of one major", () => {
    expect(cacheKeyOf('octo/app', runtime, SHA, undefined, 'gzip')).toBe(
      `cache/octo/app/node20-linux-x64/${SHA}.tar.gz`,
    );
    expect(cacheKeyOf('octo/app', runtime, SHA, undefined)).toBe(cacheKeyOf('octo/app', runtime, SHA));
    expect(cacheKeyOf('octo/app', runtime, SHA, '20.18.0')).toBe(cacheKeyOf('octo/app', runtime, SHA));
    expect(cacheKeyOf('octo/app', runtime, SHA, '22.1.0')).toBe(
      cacheKeyOf('octo/app', runtime, SHA, '22.11.0'),
    );
  });

  it("currentRuntime takes the job's version, keeping this process's platform and arch", () => {
    expect(currentRuntime('22.11.0')).toEqual({
      nodeVersion: '22.11.0',
      platform: process.platform,
      arch: process.arch,
    });
    expect(currentRuntime()).toEqual(currentRuntime(process.versions.node));
    expect(runtimeId(currentRuntime('24.1.0'))).toBe(`node24-${process.platform}-${process.arch}`);
  });
});

describe('the cache codec', () => {
  const base = {
    createGzip: () => undefined,
    createGunzip: () => undefined,
    createBrotliCompress: () => undefined,
    createBrotliDecompress: () => undefined,
  };

  it('is the best the runtime has: zstd where zlib has it, brotli otherwise, gzip at least', () => {
    expect(supportedCacheCodecs(base)).toEqual(['br', 'gzip']);
    expect(
      supportedCacheCodecs({
        ...base,
        createZstdCompress: () => undefined,
        createZstdDecompress: () => undefined,
      }),
    ).toEqual(['zstd', 'br', 'gzip']);
    // Half a codec is none: a runner must be able to read what it writes.
    expect(supportedCacheCodecs({ ...base, createZstdCompress: () => undefined })).toEqual(['br', 'gzip']);
    expect(supportedCacheCodecs({ createGzip: () => undefined, createGunzip: () => undefined })).toEqual([
      'gzip',
    ]);
    expect(preferredCacheCodec(['br', 'gzip'])).toBe('br');
    expect(preferredCacheCodec([])).toBe('gzip');
    expect(supportedCacheCodecs()).toEqual(supportedCacheCodecs(zlib));
    expect(supportedCacheCodecs().includes('zstd')).toBe(
      typeof (zlib as Record<string, unknown>).createZstdCompress === 'function',
    );
  });

  it("is named by the key's extension, and the key by the codec", () => {
    for (const codec of ['zstd', 'br', 'gzip'] as const) {
      expect(cacheCodecOf(cacheKeyOf('octo/app', runtime, SHA, undefined, codec))).toBe(codec);
    }
    expect(cacheKeyOf('octo/app', runtime, SHA)).toBe(
      cacheKeyOf('octo/app', runtime, SHA, undefined, preferredCacheCodec()),
    );
    expect(cacheCodecOf(`cache/octo/app/node20-linux-x64/${SHA}.tar.xz`)).toBeUndefined();
  });
});
