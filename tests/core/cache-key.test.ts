/** The dependency cache's key: its runtime part comes from a job's own Node.js when it has one. */
import { cacheKeyOf, currentRuntime, runtimeId } from '../../src/core/cache-key.js';

const SHA = 'ab'.repeat(20);
const runtime = { nodeVersion: '20.11.1', platform: 'linux', arch: 'x64' };

describe('cacheKeyOf with a job Node.js version', () => {
  it("names the job's Node major instead of the runtime's", () => {
    expect(cacheKeyOf('octo/app', runtime, SHA, '22.11.0')).toBe(
      `cache/octo/app/node22-linux-x64/${SHA}.tar.gz`,
    );
    expect(cacheKeyOf('octo/app', runtime, SHA, 'v24.0.0')).toBe(
      `cache/octo/app/node24-linux-x64/${SHA}.tar.gz`,
    );
  });

  it("is the runtime's key without one, and the same for two versions of one major", () => {
    expect(cacheKeyOf('octo/app', runtime, SHA)).toBe(`cache/octo/app/node20-linux-x64/${SHA}.tar.gz`);
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
