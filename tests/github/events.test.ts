import { installationIdOf, interpretEvent } from '../../src/github/events.js';
import { WebhookRejectedError } from '../../src/github/webhook.js';
import {
  checkEventPayload,
  examplePayload,
  fakeSha,
  pullRequestPayload,
  pushPayload,
} from '../support/payloads.js';

const asRecord = (payload: unknown) => payload as Record<string, unknown>;

describe('interpretEvent', () => {
  it('answers ping', () => {
    expect(interpretEvent('ping', asRecord(examplePayload('ping')))).toEqual({ kind: 'ping' });
  });

  it('turns a branch push into a build of its head commit', () => {
    const sha = fakeSha('push-main');
    const payload = pushPayload({ repo: 'octo/app', branch: 'main', sha, message: 'Fix the thing\n\nbody' });
    const result = interpretEvent('push', asRecord(payload));
    expect(result).toMatchObject({
      kind: 'build',
      candidate: {
        repo: 'octo/app',
        event: 'push',
        ref: 'refs/heads/main',
        sha,
        branch: 'main',
        fork: false,
        privateRepo: false,
        commitTitle: 'Fix the thing',
      },
    });
    if (result.kind !== 'build') throw new Error('expected a build');
    expect(result.candidate.author).toBe(payload.sender?.login);
    expect(result.candidate.tag).toBeUndefined();
  });

  it('marks private repositories', () => {
    const result = interpretEvent(
      'push',
      asRecord(pushPayload({ repo: 'octo/secret', branch: 'main', private: true })),
    );
    expect(result).toMatchObject({ kind: 'build', candidate: { privateRepo: true } });
  });

  it('ignores branch and tag deletions', () => {
    for (const variant of ['branch-deleted', 'tag-deleted'] as const) {
      expect(interpretEvent('push', asRecord(examplePayload('push', variant)))).toMatchObject({
        kind: 'ignore',
        reason: expect.stringContaining('deleted'),
      });
    }
  });

  it('makes a tag push a tag candidate (the policy decides)', () => {
    const result = interpretEvent('push', asRecord(pushPayload({ repo: 'octo/app', tag: 'v1.2.3' })));
    expect(result).toMatchObject({ kind: 'build', candidate: { tag: 'v1.2.3', ref: 'refs/tags/v1.2.3' } });
  });

  it.each(['[skip ci]', '[ci skip]', '[SKIP CI]'])('skips a push whose head commit says %s', (marker) => {
    const payload = pushPayload({ repo: 'octo/app', branch: 'main', message: `Docs only ${marker}` });
    expect(interpretEvent('push', asRecord(payload))).toMatchObject({
      kind: 'skip',
      reason: expect.stringContaining('skip CI'),
    });
  });

  it.each(['opened', 'synchronize', 'reopened'] as const)('builds pull_request %s', (action) => {
    const headSha = fakeSha(`pr-${action}`);
    const payload = pullRequestPayload({
      repo: 'octo/app',
      number: 12,
      action,
      headSha,
      headRef: 'feature',
      baseRef: 'main',
    });
    expect(interpretEvent('pull_request', asRecord(payload))).toMatchObject({
      kind: 'build',
      candidate: {
        repo: 'octo/app',
        event: 'pull_request',
        ref: 'refs/pull/12/head',
        sha: headSha,
        branch: 'feature',
        baseBranch: 'main',
        pr: 12,
        fork: false,
        headRepo: 'octo/app',
      },
    });
  });

  it('marks a pull request from a fork as a fork', () => {
    const payload = pullRequestPayload({ repo: 'octo/app', number: 3, action: 'opened', fork: true });
    const result = interpretEvent('pull_request', asRecord(payload));
    expect(result).toMatchObject({ kind: 'build', candidate: { fork: true } });
    if (result.kind !== 'build') throw new Error('expected a build');
    expect(result.candidate.headRepo).not.toBe('octo/app');
  });

  it('treats a PR whose fork was deleted (head.repo null) as a fork', () => {
    const payload = asRecord(
      pullRequestPayload({ repo: 'octo/app', number: 4, action: 'synchronize', fork: true }),
    );
    ((payload.pull_request as Record<string, unknown>).head as Record<string, unknown>).repo = null;
    expect(interpretEvent('pull_request', payload)).toMatchObject({
      kind: 'build',
      candidate: { fork: true },
    });
  });

  it.each(['closed', 'labeled'] as const)('ignores pull_request %s', (action) => {
    const payload = pullRequestPayload({ repo: 'octo/app', number: 5, action });
    expect(interpretEvent('pull_request', asRecord(payload))).toEqual({
      kind: 'ignore',
      reason: `pull_request "${action}" does not start builds`,
      repo: 'octo/app',
    });
  });

  it('ignores other events with the reason', () => {
    expect(interpretEvent('issues', asRecord(examplePayload('issues')))).toEqual({
      kind: 'ignore',
      reason: '"issues" events do not start builds',
    });
  });

  it('refuses payloads of the wrong shape with a 400 naming the field', () => {
    const payload = asRecord(pushPayload({ repo: 'octo/app', branch: 'main' }));
    (payload.repository as Record<string, unknown>).full_name = 42;
    expect(() => interpretEvent('push', payload)).toThrow(WebhookRejectedError);
    expect(() => interpretEvent('push', payload)).toThrow('"repository.full_name" should be a string');
    const noSha = asRecord(pushPayload({ repo: 'octo/app', branch: 'main' }));
    noSha.after = 'not-a-sha';
    expect(() => interpretEvent('push', noSha)).toThrow(/"after" is not a commit SHA/);
  });
});

describe('names in events', () => {
  const push = (repo: string, branch: string) =>
    interpretEvent(
      'push',
      asRecord(pushPayload({ repo: 'octo/app', branch, sha: fakeSha(branch) })) as never,
    );

  const pushWith = (repo: string, ref: string) => {
    const payload = asRecord(pushPayload({ repo: 'octo/app', branch: 'main', sha: fakeSha(ref) }));
    (payload.repository as Record<string, unknown>).full_name = repo;
    payload.ref = ref;
    return () => interpretEvent('push', payload);
  };

  it('builds unicode branch names that git allows', () => {
    for (const branch of ['feature/ünïcødé', 'fix/日本語', 'emoji-🚀', 'a.b_c-d/e@f']) {
      expect(push('octo/app', branch)).toMatchObject({ kind: 'build', candidate: { branch } });
    }
  });

  it.each([
    ['../etc/passwd', 'is not "owner/name"'],
    ['octo/..', 'only of dots'],
    ['../x', 'only of dots'],
    ['octo/a/b', 'is not "owner/name"'],
    ['octo/ünï', 'characters other than'],
    ['octo/a b', 'characters other than'],
    ['octo/%2e%2e', 'characters other than'],
    ['octo/a\nb', 'characters other than'],
    [`octo/${'x'.repeat(101)}`, '101 characters'],
    ['/app', '0 characters'],
  ])('refuses the repository name %j with 400', (repo, why) => {
    const attempt = pushWith(repo, 'refs/heads/main');
    expect(attempt).toThrow(WebhookRejectedError);
    expect(attempt).toThrow(why);
    try {
      attempt();
    } catch (error) {
      expect((error as WebhookRejectedError).statusCode).toBe(400);
      expect((error as Error).message).toContain('repository.full_name');
    }
  });

  it.each([
    ['refs/heads/../../etc/passwd', '".."'],
    ['refs/heads/a..b', '".."'],
    ['refs/heads/a//b', '"//"'],
    ['refs/heads/-rf', 'starts with "-"'],
    ['refs/heads/a\u0000b', 'control character'],
    ['refs/heads/a\nb', 'control character'],
    ['refs/heads/a\u001b[31mred', 'control character'],
    ['refs/heads/a b', 'space'],
    ['refs/heads/a:b', 'space ~ ^ :'],
    ['refs/heads/.hidden', 'starts with "."'],
    ['refs/heads/x.lock', '.lock'],
    ['refs/heads/x/', 'ends with "/"'],
    ['refs/heads/a@{1}', '@{'],
    [`refs/heads/${'é'.repeat(128)}`, 'longer than 255 bytes'],
    ['refs/tags/../v1', '".."'],
    ['refs/heads/\ud800', 'well-formed'],
  ])('refuses the ref %j with 400', (ref, why) => {
    const attempt = pushWith('octo/app', ref);
    expect(attempt).toThrow(WebhookRejectedError);
    expect(attempt).toThrow(why);
  });

  it('refuses bad names in pull requests: head ref and head repository', () => {
    const payload = asRecord(
      pullRequestPayload({ repo: 'octo/app', number: 3, action: 'opened', headSha: fakeSha('pr') }),
    );
    const pr = payload.pull_request as { head: { ref: string; repo: { full_name: string } } };
    const original = pr.head.ref;
    pr.head.ref = 'x/../../y';
    expect(() => interpretEvent('pull_request', payload)).toThrow(/pull_request\.head\.ref.*"\.\."/);
    pr.head.ref = original;
    pr.head.repo.full_name = 'evil/../../x';
    expect(() => interpretEvent('pull_request', payload)).toThrow(/head\.repo\.full_name/);
  });
});

describe("a GitHub App's check and merge-queue events", () => {
  const sha = fakeSha('app-events');

  it('builds a merge group as a push of its gh-readonly-queue branch, once', () => {
    const payload = checkEventPayload('merge_group', 'checks_requested', { repo: 'octo/app', sha, pr: 7 });
    const result = interpretEvent('merge_group', payload);
    expect(result).toMatchObject({
      kind: 'build',
      unlessBuilt: true,
      candidate: {
        repo: 'octo/app',
        event: 'push',
        sha,
        ref: expect.stringMatching(/^refs\/heads\/gh-readonly-queue\/main\/pr-7-/),
        branch: expect.stringMatching(/^gh-readonly-queue\/main\/pr-7-/),
        fork: false,
        commitTitle: 'Merge pull request #7',
      },
    });
  });

  it('builds a requested check suite as a push of its branch, unless that commit was built', () => {
    const payload = checkEventPayload('check_suite', 'requested', {
      repo: 'octo/app',
      sha,
      branch: 'feature/x',
    });
    expect(interpretEvent('check_suite', payload)).toMatchObject({
      kind: 'build',
      unlessBuilt: true,
      candidate: { event: 'push', sha, branch: 'feature/x', ref: 'refs/heads/feature/x' },
    });
    const noBranch = checkEventPayload('check_suite', 'requested', { repo: 'octo/app', sha });
    (noBranch.check_suite as Record<string, unknown>).head_branch = null;
    expect(interpretEvent('check_suite', noBranch)).toMatchObject({ kind: 'ignore' });
    expect(
      interpretEvent('check_suite', checkEventPayload('check_suite', 'completed', { repo: 'octo/app', sha })),
    ).toEqual({ kind: 'ignore', reason: 'check_suite "completed" does not start builds', repo: 'octo/app' });
  });

  it('turns "Re-run" into a re-run of the build the check run names, or of the commit', () => {
    const run = checkEventPayload('check_run', 'rerequested', {
      repo: 'octo/app',
      sha,
      externalId: 'octo/app#12',
      sender: 'maintainer',
    });
    expect(interpretEvent('check_run', run)).toEqual({
      kind: 'rerun',
      request: { repo: 'octo/app', sha, number: 12, sender: 'maintainer' },
    });
    // Another repository's build number is never taken: the commit's latest build is re-run.
    const foreign = checkEventPayload('check_run', 'rerequested', {
      repo: 'octo/app',
      sha,
      externalId: 'evil/x#1',
    });
    expect(interpretEvent('check_run', foreign)).toMatchObject({ kind: 'rerun', request: { sha } });
    expect((interpretEvent('check_run', foreign) as { request: object }).request).not.toHaveProperty(
      'number',
    );
    const suite = checkEventPayload('check_suite', 'rerequested', { repo: 'octo/app', sha });
    expect(interpretEvent('check_suite', suite)).toMatchObject({
      kind: 'rerun',
      request: { repo: 'octo/app', sha },
    });
    expect(
      interpretEvent('check_run', checkEventPayload('check_run', 'created', { repo: 'octo/app', sha })),
    ).toMatchObject({ kind: 'ignore' });
  });

  it('turns "Re-run" of one job\'s check run into a re-run of that job only, never of a hostile id', () => {
    const job = checkEventPayload('check_run', 'rerequested', {
      repo: 'octo/app',
      sha,
      externalId: 'octo/app#12/node-22.shard-2',
      sender: 'maintainer',
    });
    expect(interpretEvent('check_run', job)).toEqual({
      kind: 'rerun',
      request: { repo: 'octo/app', sha, number: 12, job: 'node-22.shard-2', sender: 'maintainer' },
    });
    // Not a job id (a path, upper case): neither the job nor the build is taken from it.
    for (const externalId of [
      'octo/app#12/../../x',
      'octo/app#12/NODE',
      'octo/app#12/',
      'evil/x#12/node-22',
    ]) {
      const hostile = checkEventPayload('check_run', 'rerequested', { repo: 'octo/app', sha, externalId });
      const request = (interpretEvent('check_run', hostile) as { request: object }).request;
      expect([externalId, request]).toEqual([externalId, { repo: 'octo/app', sha, sender: 'octo' }]);
    }
  });

  it('turns "Approve and run" (or "Re-run" of the approval run) into an approval of that commit', () => {
    const click = checkEventPayload('check_run', 'requested_action', {
      repo: 'octo/app',
      sha,
      externalId: 'octo/app#approval',
      sender: 'maintainer',
    });
    expect(interpretEvent('check_run', click)).toEqual({
      kind: 'approve',
      request: { repo: 'octo/app', sha, sender: 'maintainer' },
    });
    const rerun = checkEventPayload('check_run', 'rerequested', {
      repo: 'octo/app',
      sha,
      externalId: 'octo/app#approval',
      sender: 'maintainer',
    });
    expect(interpretEvent('check_run', rerun)).toEqual({
      kind: 'approve',
      request: { repo: 'octo/app', sha, sender: 'maintainer' },
    });
    // Another repository's approval run is a plain re-run of the commit.
    const foreign = checkEventPayload('check_run', 'rerequested', {
      repo: 'octo/app',
      sha,
      externalId: 'evil/x#approval',
    });
    expect(interpretEvent('check_run', foreign)).toMatchObject({ kind: 'rerun' });
    const other = checkEventPayload('check_run', 'requested_action', {
      repo: 'octo/app',
      sha,
      identifier: 'lgtm|26764',
    });
    expect(interpretEvent('check_run', other)).toEqual({
      kind: 'ignore',
      reason: 'check run action "lgtm|26764" is not Lambkin\'s',
      repo: 'octo/app',
    });
  });

  it.each([
    [
      'no requested_action',
      (payload: Record<string, unknown>) => delete payload.requested_action,
      /"requested_action" should be an object/,
    ],
    [
      'an identifier that is not a string',
      (payload: Record<string, unknown>) => (payload.requested_action = { identifier: 7 }),
      /"requested_action\.identifier" should be a string/,
    ],
    [
      'no sender',
      (payload: Record<string, unknown>) => delete payload.sender,
      /"sender" should be an object/,
    ],
    [
      'a sender without a login',
      (payload: Record<string, unknown>) => (payload.sender = { id: 1 }),
      /"sender\.login" should be a non-empty string/,
    ],
    [
      'a malformed commit',
      (payload: Record<string, unknown>) => ((payload.check_run as Record<string, unknown>).head_sha = 'abc'),
      /"check_run\.head_sha" should be a commit SHA/,
    ],
  ])('refuses an approval with %s: a clear 400', (_, spoil, message) => {
    const payload = checkEventPayload('check_run', 'requested_action', { repo: 'octo/app', sha });
    spoil(payload);
    let thrown: unknown;
    try {
      interpretEvent('check_run', payload);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(WebhookRejectedError);
    expect((thrown as WebhookRejectedError).statusCode).toBe(400);
    expect((thrown as Error).message).toMatch(message);
  });

  it('refuses a check event with a malformed commit', () => {
    const payload = checkEventPayload('check_run', 'rerequested', { repo: 'octo/app', sha: 'not-a-sha' });
    expect(() => interpretEvent('check_run', payload)).toThrow(/check_run\.head_sha/);
  });
});

describe("a GitHub App's installation events", () => {
  const installation = (action: string) => asRecord(examplePayload('installation', action));
  const repositories = (action: 'added' | 'removed') =>
    asRecord(examplePayload('installation_repositories', action));

  it('records the repositories of a new installation', () => {
    expect(interpretEvent('installation', installation('created'))).toEqual({
      kind: 'installation',
      change: {
        installationId: 957387,
        account: 'Codertocat',
        added: ['Codertocat/Hello-World'],
        removed: [],
      },
    });
  });

  it('removes the repositories of a deleted installation and marks it deleted', () => {
    expect(interpretEvent('installation', installation('deleted'))).toEqual({
      kind: 'installation',
      change: {
        installationId: 2,
        account: 'octocat',
        added: [],
        removed: ['octocat/Hello-World'],
        deleted: true,
      },
    });
  });

  it('suspends and unsuspends the installation (those events list no repositories)', () => {
    expect(interpretEvent('installation', installation('suspend'))).toEqual({
      kind: 'installation',
      change: { installationId: 16598467, account: 'Codertocat', added: [], removed: [], suspended: true },
    });
    expect(interpretEvent('installation', installation('unsuspend'))).toMatchObject({
      kind: 'installation',
      change: { installationId: 16598467, suspended: false },
    });
  });

  it('ignores accepted permissions: no repository changes', () => {
    expect(interpretEvent('installation', installation('new_permissions_accepted'))).toEqual({
      kind: 'ignore',
      reason: 'installation "new_permissions_accepted" changes no repository',
    });
  });

  it('records repositories added to and removed from an installation', () => {
    expect(interpretEvent('installation_repositories', repositories('added'))).toEqual({
      kind: 'installation',
      change: { installationId: 957387, account: 'Codertocat', added: ['Codertocat/Space'], removed: [] },
    });
    expect(interpretEvent('installation_repositories', repositories('removed'))).toEqual({
      kind: 'installation',
      change: { installationId: 2, account: 'octocat', added: [], removed: ['octocat/Hello-World'] },
    });
  });

  it('takes an installation without a repository list as reaching none yet', () => {
    const payload = installation('created');
    delete payload.repositories;
    expect(interpretEvent('installation', payload)).toMatchObject({ change: { added: [], removed: [] } });
  });

  it.each([
    [
      'installation',
      'created',
      (payload: Record<string, unknown>) => delete payload.installation,
      '"installation" should be an object',
    ],
    [
      'installation',
      'created',
      (payload: Record<string, unknown>) => ((payload.installation as Record<string, unknown>).id = '957387'),
      '"installation.id" should be a positive integer',
    ],
    [
      'installation',
      'suspend',
      (payload: Record<string, unknown>) => ((payload.installation as Record<string, unknown>).id = -1),
      '"installation.id" should be a positive integer',
    ],
    [
      'installation',
      'created',
      (payload: Record<string, unknown>) =>
        (((payload.installation as Record<string, unknown>).account as Record<string, unknown>).login = 7),
      '"installation.account.login" should be a string',
    ],
    [
      'installation',
      'created',
      (payload: Record<string, unknown>) =>
        ((payload.installation as Record<string, unknown>).account = null),
      '"installation.account" should be an object',
    ],
    [
      'installation',
      'created',
      (payload: Record<string, unknown>) => (payload.repositories = 'octo/app'),
      '"repositories" should be an array of repositories',
    ],
    [
      'installation',
      'deleted',
      (payload: Record<string, unknown>) => (payload.repositories = [null]),
      '"repositories[0]" should be an object',
    ],
    [
      'installation_repositories',
      'added',
      (payload: Record<string, unknown>) => (payload.repositories_added = [{ full_name: '' }]),
      '"repositories_added[0].full_name" should be a non-empty string',
    ],
    [
      'installation_repositories',
      'removed',
      (payload: Record<string, unknown>) => (payload.repositories_removed = [{ full_name: 'octo/..' }]),
      /"repositories_removed\[0\]\.full_name" "octo\/\.\." .*made only of dots/,
    ],
    [
      'installation_repositories',
      'added',
      (payload: Record<string, unknown>) => delete payload.action,
      '"action" should be a non-empty string',
    ],
  ])('refuses a malformed %s %s payload with a 400 naming the field', (event, action, spoil, message) => {
    const payload = asRecord(examplePayload(event as 'installation', action));
    spoil(payload);
    const attempt = () => interpretEvent(event, payload);
    expect(attempt).toThrow(WebhookRejectedError);
    expect(attempt).toThrow(message);
    try {
      attempt();
    } catch (error) {
      expect((error as WebhookRejectedError).statusCode).toBe(400);
    }
  });
});

describe('installationIdOf', () => {
  it("reads the installation an App's delivery came through", () => {
    expect(installationIdOf(examplePayload('installation', 'created'))).toBe(957387);
    const push = pushPayload({ repo: 'octo/app', branch: 'main' });
    expect(installationIdOf({ ...push, installation: { id: 42, node_id: 'x' } })).toBe(42);
  });

  it('is undefined for a delivery that names no installation (a repository webhook)', () => {
    const push = asRecord(pushPayload({ repo: 'octo/app', branch: 'main' }));
    delete push.installation;
    expect(installationIdOf(push)).toBeUndefined();
    expect(installationIdOf({ installation: null })).toBeUndefined();
    for (const payload of [undefined, null, 'text', 42, []])
      expect(installationIdOf(payload)).toBeUndefined();
  });

  it('refuses a malformed installation with a 400', () => {
    for (const installation of [{ id: '1' }, { id: 0 }, { id: 1.5 }, {}, 'one', [1]]) {
      expect(() => installationIdOf({ installation })).toThrow(WebhookRejectedError);
    }
  });
});
