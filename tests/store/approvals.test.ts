/**
 * Held pull request commits (requireApproval) on DynamoDB-compatible storage: a hold is taken once,
 * atomically (two concurrent takes: one gets it), per repository and commit, case-insensitively,
 * and not after it expired; it lives in the settings table beside the settings without touching them.
 */
import { GetCommand } from '@aws-sdk/lib-dynamodb';
import { createDynamoClients } from '../../src/aws/clients.js';
import type { HeldBuild } from '../../src/core/ports.js';
import { ApprovalStoreError, DynamoApprovalStore, approvalKey } from '../../src/store/approvals.js';
import { fakeSha } from '../support/payloads.js';
import { createTestStorage, storageBackends, uniqueName, type TestStorage } from '../support/storage.js';

const DAY = 24 * 60 * 60 * 1000;

function held(repo: string, seed: string): HeldBuild {
  return {
    repo,
    event: 'pull_request',
    ref: 'refs/pull/7/head',
    sha: fakeSha(seed),
    branch: 'feature',
    pr: 7,
    baseBranch: 'main',
    headRepo: 'stranger/app',
    fork: true,
    privateRepo: false,
    author: 'stranger',
  };
}

describe.each(storageBackends())('DynamoApprovalStore on $name', (backend) => {
  let storage: TestStorage;
  let store: DynamoApprovalStore;

  beforeAll(async () => {
    storage = await createTestStorage(backend);
    store = new DynamoApprovalStore(storage.clients.documents, storage.settingsTable);
  });

  it('gives a hold back once, under approval#owner/repo@sha (lowercased)', async () => {
    const candidate = held('Octo/App', 'once');
    await store.hold(candidate, 1000);
    const item = await storage.clients.documents.send(
      new GetCommand({
        TableName: storage.settingsTable,
        Key: { scope: `approval#octo/app@${candidate.sha}` },
      }),
    );
    expect(item.Item).toMatchObject({ candidate, heldAt: 1000, expiresAt: 1000 + 30 * DAY });
    expect(approvalKey('Octo/App', candidate.sha)).toBe(`approval#octo/app@${candidate.sha}`);
    expect(await store.take('octo/APP', candidate.sha, 2000)).toEqual(candidate);
    expect(await store.take('octo/app', candidate.sha, 2000)).toBeUndefined();
  });

  it('is atomic: of concurrent takes exactly one gets the hold', async () => {
    const candidate = held('octo/race', 'race');
    await store.hold(candidate, 1000);
    const results = await Promise.all(
      Array.from({ length: 5 }, () => store.take('octo/race', candidate.sha, 2000)),
    );
    expect(results.filter((result) => result !== undefined)).toEqual([candidate]);
  });

  it('keeps commits and repositories apart, and gives nothing for a commit never held', async () => {
    const first = held('octo/apart', 'first');
    const second = held('octo/apart', 'second');
    await store.hold(first, 1000);
    await store.hold(second, 1000);
    expect(await store.take('octo/other', first.sha, 2000)).toBeUndefined();
    expect(await store.take('octo/apart', fakeSha('never'), 2000)).toBeUndefined();
    expect(await store.take('octo/apart', second.sha, 2000)).toEqual(second);
    expect(await store.take('octo/apart', first.sha, 2000)).toEqual(first);
  });

  it('refuses an expired hold; holding the commit again starts over', async () => {
    const candidate = held('octo/old', 'old');
    await store.hold(candidate, 1000);
    expect(await store.take('octo/old', candidate.sha, 1000 + 30 * DAY)).toBeUndefined();
    await store.hold(candidate, 40 * DAY);
    expect(await store.take('octo/old', candidate.sha, 41 * DAY)).toEqual(candidate);
  });

  it('reports a DynamoDB failure as an ApprovalStoreError saying what to check', async () => {
    const { documents } = createDynamoClients({ endpoints: { dynamodb: backend.dynamodbEndpoint } });
    const table = uniqueName('missing');
    const missing = new DynamoApprovalStore(documents, table);
    const candidate = held('gone/app', 'gone');
    const hold = await missing.hold(candidate, 1000).catch((error: unknown) => error);
    expect(hold).toBeInstanceOf(ApprovalStoreError);
    expect((hold as Error).message).toMatch(
      new RegExp(
        `Could not hold gone/app@${candidate.sha} for approval in the DynamoDB table ${table} \\(Resource`,
      ),
    );
    expect((hold as Error).message).toContain('LAMBKIN_SETTINGS_TABLE');
    await expect(missing.take('gone/app', candidate.sha, 2000)).rejects.toThrow(/ResourceNotFound/);
  });
});
