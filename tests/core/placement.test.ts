import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  billedMinutes,
  decidePlacement,
  escalationPlacement,
  usageMonth,
  type PlacementInput,
} from '../../src/core/placement.js';
import { RepoConfigError, readRepoConfig, resolveBuildConfig } from '../../src/core/repo-config.js';
import { mergeSettings } from '../../src/core/settings.js';

const platform = { project: 'lambkin-builds', dockerProject: 'lambkin-docker', timeoutMinutes: 60 };
const allowed = { repos: ['acme/*'] };

function input(overrides: Partial<PlacementInput> = {}): PlacementInput {
  return {
    repo: 'acme/widgets',
    runsOn: { codebuild: {} },
    settings: allowed,
    platform,
    usedMinutes: 0,
    ...overrides,
  };
}

describe('decidePlacement', () => {
  it('lambda (the default) and auto run on Lambda', () => {
    expect(decidePlacement(input({ runsOn: 'lambda' }))).toEqual({ kind: 'lambda' });
    expect(decidePlacement(input({ runsOn: 'auto' }))).toEqual({ kind: 'lambda' });
  });

  it('an allowed repository runs on CodeBuild, small and standard by default', () => {
    expect(decidePlacement(input())).toEqual({
      kind: 'codebuild',
      project: 'lambkin-builds',
      compute: 'small',
      computeType: 'BUILD_GENERAL1_SMALL',
      docker: false,
      timeoutMinutes: 60,
    });
    const medium = decidePlacement(
      input({ runsOn: { codebuild: { compute: 'medium', image: 'standard' } } }),
    );
    expect(medium).toMatchObject({ kind: 'codebuild', computeType: 'BUILD_GENERAL1_MEDIUM' });
    expect(medium).not.toHaveProperty('image');
  });

  it('refuses when the deployment has no project, saying the operator has not enabled CodeBuild', () => {
    const placement = decidePlacement(input({ platform: { timeoutMinutes: 60 } }));
    expect(placement).toMatchObject({
      kind: 'refused',
      description: 'runsOn: the operator has not enabled CodeBuild',
    });
    expect(placement.kind === 'refused' && placement.detail).toContain('LAMBKIN_CODEBUILD_PROJECT');
  });

  it('refuses a repository the operator did not list, naming the setting', () => {
    for (const settings of [{}, { repos: ['other/*'] }]) {
      const placement = decidePlacement(input({ settings }));
      expect(placement).toMatchObject({
        kind: 'refused',
        description: 'runsOn: CodeBuild is not allowed for acme/widgets',
      });
      expect(placement.kind === 'refused' && placement.detail).toContain('codebuild.repos');
    }
    // GitHub's names are not case-sensitive.
    expect(decidePlacement(input({ settings: { repos: ['ACME/Widgets'] } })).kind).toBe('codebuild');
  });

  it('large needs the operator to allow it; computes narrows the sizes', () => {
    expect(decidePlacement(input({ runsOn: { codebuild: { compute: 'large' } } }))).toMatchObject({
      kind: 'refused',
      description: 'runsOn: compute "large" is not allowed (allowed: small, medium)',
    });
    expect(
      decidePlacement(
        input({ runsOn: { codebuild: { compute: 'large' } }, settings: { ...allowed, computes: ['large'] } }),
      ),
    ).toMatchObject({ kind: 'codebuild', computeType: 'BUILD_GENERAL1_LARGE' });
  });

  it('an image must be one the operator allows', () => {
    const image = 'public.ecr.aws/docker/library/node:22';
    expect(decidePlacement(input({ runsOn: { codebuild: { image } } }))).toMatchObject({
      kind: 'refused',
      description: 'runsOn: the image is not one the operator allows',
    });
    expect(
      decidePlacement(input({ runsOn: { codebuild: { image } }, settings: { ...allowed, images: [image] } })),
    ).toMatchObject({ kind: 'codebuild', image });
  });

  it('docker needs the setting and the privileged project, and then runs there', () => {
    const docker = { runsOn: { codebuild: { docker: true } } } as const;
    expect(decidePlacement(input(docker))).toMatchObject({
      kind: 'refused',
      description: 'runsOn: Docker is not enabled',
    });
    expect(
      decidePlacement(
        input({
          ...docker,
          settings: { ...allowed, docker: true },
          platform: { project: 'p', timeoutMinutes: 60 },
        }),
      ),
    ).toMatchObject({ kind: 'refused' });
    expect(decidePlacement(input({ ...docker, settings: { ...allowed, docker: true } }))).toMatchObject({
      kind: 'codebuild',
      project: 'lambkin-docker',
      docker: true,
    });
  });

  it('refuses at the monthly cap, and says so', () => {
    const settings = { ...allowed, monthlyMinutes: 1000 };
    expect(decidePlacement(input({ settings, usedMinutes: 999 })).kind).toBe('codebuild');
    const placement = decidePlacement(input({ settings, usedMinutes: 1000 }));
    expect(placement).toMatchObject({
      kind: 'refused',
      description: "runsOn: this month's CodeBuild minutes are used up (1000 of 1000)",
    });
    expect(placement.kind === 'refused' && placement.detail).toContain('codebuild.monthlyMinutes');
  });

  it("keeps the timeout within CodeBuild's bounds", () => {
    expect(decidePlacement(input({ platform: { ...platform, timeoutMinutes: 1 } }))).toMatchObject({
      timeoutMinutes: 5,
    });
    expect(decidePlacement(input({ platform: { ...platform, timeoutMinutes: 9999 } }))).toMatchObject({
      timeoutMinutes: 480,
    });
  });

  it('every refusal fits a commit status', () => {
    const refusals = [
      input({ platform: { timeoutMinutes: 60 } }),
      input({ repo: `${'o'.repeat(39)}/${'r'.repeat(100)}`, settings: {} }),
      input({ settings: { ...allowed, monthlyMinutes: 100000 }, usedMinutes: 100000 }),
    ].map(decidePlacement);
    for (const placement of refusals) {
      expect(placement.kind).toBe('refused');
      if (placement.kind === 'refused') expect(placement.description.length).toBeLessThanOrEqual(140 + 140);
    }
  });
});

describe('escalationPlacement', () => {
  it('only auto escalates, to the default size, and only where CodeBuild is allowed', () => {
    expect(escalationPlacement(input({ runsOn: 'lambda' }))).toBeUndefined();
    expect(escalationPlacement(input()) /* set to CodeBuild from the start */).toBeUndefined();
    expect(escalationPlacement(input({ runsOn: 'auto' }))).toMatchObject({
      kind: 'codebuild',
      compute: 'small',
    });
    expect(escalationPlacement(input({ runsOn: 'auto', settings: {} }))).toMatchObject({ kind: 'refused' });
  });
});

describe('usage', () => {
  it('counts months in UTC and bills by the started minute', () => {
    expect(usageMonth(Date.UTC(2026, 11, 31, 23, 59))).toBe('2026-12');
    expect(usageMonth(Date.UTC(2027, 0, 1, 0, 0))).toBe('2027-01');
    expect(billedMinutes(0, 0)).toBe(1);
    expect(billedMinutes(0, 60_000)).toBe(1);
    expect(billedMinutes(0, 60_001)).toBe(2);
  });
});

describe('runsOn in the config', () => {
  const roots: string[] = [];
  afterAll(async () => Promise.all(roots.map((root) => rm(root, { recursive: true, force: true }))));

  async function resolve(config: object, branch = 'main') {
    const root = await mkdtemp(join(tmpdir(), 'lambkin-runs-on-'));
    roots.push(root);
    await writeFile(join(root, '.lambkin.json'), JSON.stringify(config));
    await writeFile(join(root, 'package.json'), '{}');
    return resolveBuildConfig({
      settingsConfig: {},
      repo: await readRepoConfig(root),
      build: { event: 'push', branch, defaultBranch: 'main' },
    });
  }

  async function problems(config: object): Promise<string[]> {
    try {
      await resolve(config);
    } catch (error) {
      if (error instanceof RepoConfigError) return error.detail.split('\n').slice(1, -1);
      throw error;
    }
    throw new Error('no RepoConfigError');
  }

  it('is lambda by default, and a branch entry may set it whole', async () => {
    expect((await resolve({})).runsOn).toBe('lambda');
    const config = {
      runsOn: { codebuild: { compute: 'medium', docker: true } },
      branches: { 'release/*': { runsOn: { codebuild: { compute: 'large' } } }, dev: { runsOn: 'auto' } },
      timeout: 1800,
    };
    expect((await resolve(config)).runsOn).toEqual({ codebuild: { compute: 'medium', docker: true } });
    // Replaced whole: the release entry does not inherit docker from the top level.
    expect((await resolve(config, 'release/1')).runsOn).toEqual({ codebuild: { compute: 'large' } });
    expect((await resolve(config, 'dev')).runsOn).toBe('auto');
    expect((await resolve(config)).timeoutSeconds).toBe(1800);
  });

  it('a wrong value says what to write', async () => {
    const expected =
      '  - .lambkin.json: "runsOn" must be "lambda", "auto" or {"codebuild": {"compute": "small" | "medium" | "large", "image": "standard" or an image URI the operator allows, "docker": true | false}}';
    expect(await problems({ runsOn: 'ec2' })).toEqual([`${expected} (got "ec2")`]);
    expect(await problems({ runsOn: { codebuild: { compute: 'huge' } } })).toContain(
      '  - .lambkin.json: "runsOn.codebuild.compute" must be "small", "medium" or "large" (got "huge")',
    );
    expect((await problems({ runsOn: { codebuild: { gpu: true } } })).join('\n')).toContain(
      '"runsOn.codebuild.gpu" is not a known key',
    );
    expect((await problems({ runsOn: { codebuild: { docker: 'yes' } } })).join('\n')).toContain(
      '"runsOn.codebuild.docker" must be true or false',
    );
  });
});

describe("the operator's codebuild settings", () => {
  it('merge key by key, the repository over global', () => {
    const merged = mergeSettings(
      { codebuild: { repos: ['acme/*'], monthlyMinutes: 100 } },
      { codebuild: { computes: ['large'] } },
    );
    expect(merged.codebuild).toEqual({ repos: ['acme/*'], monthlyMinutes: 100, computes: ['large'] });
    expect(mergeSettings().codebuild).toEqual({});
  });
});
