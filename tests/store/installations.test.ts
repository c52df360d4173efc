import { GetCommand } from '@aws-sdk/lib-dynamodb';
import type { InstallationChange } from '../../src/core/ports.js';
import { DynamoSettingsStore, repoScope } from '../../src/store/settings.js';
import {
  DynamoInstallationRegistry,
  InstallationRegistryError,
  installationRepoKey,
} from '../../src/store/installations.js';
import { createDynamoClients } from '../../src/aws/clients.js';
import { createTestStorage, storageBackends, uniqueName, type TestStorage } from '../support/storage.js';

describe.each(storageBackends())('DynamoInstallationRegistry on $name', (backend) => {
  let storage: TestStorage;
  let registry: DynamoInstallationRegistry;

  beforeAll(async () => {
    storage = await createTestStorage(backend);
    registry = new DynamoInstallationRegistry(storage.clients.documents, storage.settingsTable);
  });

  /** A change of installation `id` at time `at`, nothing added or removed unless given. */
  const change = (id: number, at: number, rest: Partial<InstallationChange> = {}): InstallationChange => ({
    installationId: id,
    account: 'octo',
    added: [],
    removed: [],
    at,
    ...rest,
  });

  it('records added repositories and forgets removed ones', async () => {
    await registry.apply(change(11, 1000, { added: ['add/one', 'add/two'] }));
    expect(await registry.installationOf('add/one')).toBe(11);
    expect(await registry.installationOf('add/two')).toBe(11);
    expect(await registry.installationOf('add/three')).toBeUndefined();
    await registry.apply(change(11, 2000, { removed: ['add/two'] }));
    expect(await registry.installationOf('add/one')).toBe(11);
    expect(await registry.installationOf('add/two')).toBeUndefined();
    // Added again later: installed again.
    await registry.apply(change(11, 3000, { added: ['add/two'] }));
    expect(await registry.installationOf('add/two')).toBe(11);
  });

  it('looks repositories up case-insensitively and keeps their display case', async () => {
    await registry.apply(change(12, 1000, { added: ['Case-Owner/Hello-World'] }));
    expect(await registry.installationOf('case-owner/hello-world')).toBe(12);
    expect(await registry.installationOf('CASE-OWNER/HELLO-WORLD')).toBe(12);
    const item = await storage.clients.documents.send(
      new GetCommand({
        TableName: storage.settingsTable,
        Key: { scope: 'installation#case-owner/hello-world' },
      }),
    );
    expect(item.Item?.['installation#12']).toMatchObject({ repo: 'Case-Owner/Hello-World', account: 'octo' });
    // A removal spelled in another case removes it all the same.
    await registry.apply(change(12, 2000, { removed: ['case-owner/HELLO-world'] }));
    expect(await registry.installationOf('Case-Owner/Hello-World')).toBeUndefined();
  });

  it('never lets an older event overwrite a newer one', async () => {
    // Removed at 2000, then the add of 1000 arrives late: the tombstone keeps it removed.
    await registry.apply(change(13, 2000, { removed: ['late/add'] }));
    await registry.apply(change(13, 1000, { added: ['late/add'] }));
    expect(await registry.installationOf('late/add')).toBeUndefined();
    // Added at 2000, then the removal of 1000 arrives late: still installed.
    await registry.apply(change(13, 2000, { added: ['late/remove'] }));
    await registry.apply(change(13, 1000, { removed: ['late/remove'] }));
    expect(await registry.installationOf('late/remove')).toBe(13);
    const tombstone = await storage.clients.documents.send(
      new GetCommand({ TableName: storage.settingsTable, Key: { scope: installationRepoKey('late/add') } }),
    );
    expect(tombstone.Item?.['installation#13']).toMatchObject({ removed: true, at: 2000 });
  });

  it('applies the same event twice as once', async () => {
    const event = change(14, 1000, { added: ['twice/app'] });
    await registry.apply(event);
    await registry.apply(event);
    expect(await registry.installationOf('twice/app')).toBe(14);
  });

  it('treats a suspended installation as absent until it is unsuspended, in event order', async () => {
    await registry.apply(change(15, 1000, { added: ['suspend/app'] }));
    await registry.apply(change(15, 2000, { suspended: true }));
    expect(await registry.installationOf('suspend/app')).toBeUndefined();
    // Unsuspended at 3000; the suspension of 2500 arriving late changes nothing.
    await registry.apply(change(15, 3000, { suspended: false }));
    await registry.apply(change(15, 2500, { suspended: true }));
    expect(await registry.installationOf('suspend/app')).toBe(15);
    // A suspension does not reorder repository changes: an add after it is kept, still suspended.
    await registry.apply(change(15, 4000, { suspended: true }));
    await registry.apply(change(15, 4500, { added: ['suspend/other'] }));
    expect(await registry.installationOf('suspend/other')).toBeUndefined();
    await registry.apply(change(15, 5000, { suspended: false }));
    expect(await registry.installationOf('suspend/other')).toBe(15);
  });

  it('refuses every repository of a deleted installation, listed or not, for good', async () => {
    await registry.apply(change(16, 1000, { added: ['deleted/listed', 'deleted/unlisted'] }));
    await registry.apply(change(16, 2000, { removed: ['deleted/listed'], deleted: true }));
    expect(await registry.installationOf('deleted/listed')).toBeUndefined();
    expect(await registry.installationOf('deleted/unlisted')).toBeUndefined();
    // A late or replayed add for the deleted installation changes nothing.
    await registry.apply(change(16, 3000, { added: ['deleted/unlisted'] }));
    expect(await registry.installationOf('deleted/unlisted')).toBeUndefined();
    await registry.apply(change(16, 3000, { suspended: false }));
    expect(await registry.installationOf('deleted/unlisted')).toBeUndefined();
  });

  it('follows a repository moved to another account, whichever event arrives first', async () => {
    // Moved from installation 17 to 18: GitHub adds it to one and removes it from the other.
    await registry.apply(change(17, 1000, { added: ['moved/one', 'moved/two'] }));
    await registry.apply(change(18, 2000, { account: 'other', added: ['moved/one'] }));
    await registry.apply(change(17, 2001, { removed: ['moved/one'] }));
    expect(await registry.installationOf('moved/one')).toBe(18);
    await registry.apply(change(17, 2001, { removed: ['moved/two'] }));
    await registry.apply(change(18, 2000, { account: 'other', added: ['moved/two'] }));
    expect(await registry.installationOf('moved/two')).toBe(18);
    // While both reach it, the newest installation in force answers.
    await registry.apply(change(17, 3000, { added: ['moved/two'] }));
    expect(await registry.installationOf('moved/two')).toBe(17);
    await registry.apply(change(17, 3100, { suspended: true }));
    expect(await registry.installationOf('moved/two')).toBe(18);
  });

  it('lives beside the settings without touching them', async () => {
    const settings = new DynamoSettingsStore(storage.clients.documents, storage.settingsTable);
    await settings.update(repoScope('beside/app'), () => ({ config: { timeout: 60 } }));
    await registry.apply(change(19, 1000, { added: ['beside/app'] }));
    expect(await settings.get(repoScope('beside/app'))).toEqual({ config: { timeout: 60 } });
    expect(await registry.installationOf('beside/app')).toBe(19);
  });

  it('records many repositories of one event', async () => {
    const repos = Array.from({ length: 30 }, (_, index) => `many/repo-${index}`);
    await registry.apply(change(20, 1000, { added: repos }));
    const found = await Promise.all(repos.map((repo) => registry.installationOf(repo)));
    expect(new Set(found)).toEqual(new Set([20]));
  });

  it('refuses an installation id that is not a positive integer', async () => {
    await expect(registry.apply(change(0, 1000, { added: ['bad/id'] }))).rejects.toThrow(
      InstallationRegistryError,
    );
    await expect(registry.apply(change(1.5, 1000, { added: ['bad/id'] }))).rejects.toThrow(
      /positive integer/,
    );
  });

  it('reports a DynamoDB failure as an InstallationRegistryError saying what to check', async () => {
    const { documents } = createDynamoClients({ endpoints: { dynamodb: backend.dynamodbEndpoint } });
    const table = uniqueName('missing');
    const missing = new DynamoInstallationRegistry(documents, table);
    const write = await missing
      .apply(change(21, 1000, { added: ['gone/app'] }))
      .catch((error: unknown) => error);
    expect(write).toBeInstanceOf(InstallationRegistryError);
    expect((write as InstallationRegistryError).code).toBe('INSTALLATION_REGISTRY');
    expect((write as Error).message).toMatch(
      new RegExp(`Could not record installation 21 for gone/app in the DynamoDB table ${table} \\(Resource`),
    );
    expect((write as Error).message).toContain('LAMBKIN_SETTINGS_TABLE');
    await expect(missing.installationOf('gone/app')).rejects.toThrow(
      /Could not read the installations of gone\/app .*ResourceNotFound/,
    );
  });
});
