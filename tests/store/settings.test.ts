import { DynamoSettingsStore, GLOBAL_SCOPE, repoScope } from '../../src/store/settings.js';
import { DEFAULT_BUILD_POLICY } from '../../src/core/settings.js';
import { createTestStorage, storageBackends } from '../support/storage.js';

describe.each(storageBackends())('DynamoSettingsStore on $name', (backend) => {
  let store: DynamoSettingsStore;

  beforeAll(async () => {
    const storage = await createTestStorage(backend);
    store = new DynamoSettingsStore(storage.clients.documents, storage.settingsTable);
  });

  it('gives the built-in defaults when nothing is stored', async () => {
    expect(await store.effective('none/here')).toEqual({
      build: DEFAULT_BUILD_POLICY,
      config: {},
      secretEnv: {},
      deploy: {},
      notifications: {},
      codebuild: {},
    });
  });

  it('merges repo settings over global ones', async () => {
    await store.update(GLOBAL_SCOPE, () => ({
      build: { tags: true, pullRequests: { forks: false } },
      config: { timeout: 300 },
      secretEnv: { TOKEN: 'global' },
    }));
    await store.update(repoScope('merge/one'), () => ({
      build: { branches: ['main', 'release/*'] },
      secretEnv: { TOKEN: 'repo', OTHER: 'x' },
    }));
    const effective = await store.effective('merge/one');
    expect(effective.build).toMatchObject({
      branches: ['main', 'release/*'],
      ignoreBranches: [],
      tags: true,
      cancelSuperseded: true,
    });
    const builds = (source: keyof typeof effective.build.pullRequests) =>
      effective.build.pullRequests[source].build;
    expect([
      builds('fromSelfPublicRepo'),
      builds('fromForkPublicRepo'),
      builds('fromForkPrivateRepo'),
    ]).toEqual([true, false, false]);
    expect(effective.config).toEqual({ timeout: 300 });
    expect(effective.secretEnv).toEqual({ TOKEN: 'repo', OTHER: 'x' });
    expect((await store.effective('merge/other')).secretEnv).toEqual({ TOKEN: 'global' });
  });

  it('loses no change when writers race', async () => {
    const scope = repoScope('race/settings');
    await Promise.all(
      ['A', 'B', 'C', 'D'].map((name) =>
        store.update(scope, (current) => ({ ...current, secretEnv: { ...current.secretEnv, [name]: name } })),
      ),
    );
    expect(Object.keys((await store.get(scope))?.secretEnv ?? {}).sort()).toEqual(['A', 'B', 'C', 'D']);
  });
});
