import { createHmac } from 'node:crypto';
import { verify } from '@octokit/webhooks-methods';
import { examplePayload, fakeSha, pullRequestPayload, pushPayload, signedDelivery } from './payloads.js';
import type { PullRequestAction, PushVariant } from './payloads.js';

const SECRET = 'It’s a Secret to Everybody';
const REPO = 'octo-org/hello-world';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Where `actual` differs in shape from `expected`: object key sets, and value types. A null on
 * either side matches anything (GitHub's nullable fields); arrays compare their first items.
 */
function shapeDifferences(actual: unknown, expected: unknown, path = '$'): string[] {
  if (actual === null || expected === null) return [];
  if (Array.isArray(expected) || Array.isArray(actual)) {
    if (!Array.isArray(expected) || !Array.isArray(actual)) return [`${path}: array vs non-array`];
    return actual.length > 0 && expected.length > 0
      ? shapeDifferences(actual[0], expected[0], `${path}[0]`)
      : [];
  }
  if (typeof expected === 'object' && typeof actual === 'object') {
    const actualRecord = actual as Record<string, unknown>;
    const expectedRecord = expected as Record<string, unknown>;
    const keys = new Set([...Object.keys(actualRecord), ...Object.keys(expectedRecord)]);
    return [...keys].flatMap((key) => {
      if (!(key in actualRecord)) return [`${path}.${key}: missing`];
      if (!(key in expectedRecord)) return [`${path}.${key}: not in the example`];
      return shapeDifferences(actualRecord[key], expectedRecord[key], `${path}.${key}`);
    });
  }
  return typeof actual === typeof expected ? [] : [`${path}: ${typeof actual} vs ${typeof expected}`];
}

/** Strings that still name the examples' repository or account. */
function leftovers(payload: unknown): string[] {
  return JSON.stringify(payload).match(/[^"]*(Codertocat|Hello-World)[^"]*/g) ?? [];
}

describe('examplePayload', () => {
  it('returns real payloads of the events we handle and ignore', () => {
    expect(examplePayload('ping')).toMatchObject({ zen: expect.any(String), hook_id: expect.any(Number) });
    expect(examplePayload('issues', 'opened').action).toBe('opened');
    expect(examplePayload('star').action).toBe('created');
    expect(examplePayload('pull_request').action).toBe('opened');
  });

  it.each<[PushVariant, string, boolean]>([
    ['branch', 'refs/heads/', false],
    ['tag', 'refs/tags/', false],
    ['tag-deleted', 'refs/tags/', true],
    ['branch-deleted', 'refs/heads/', true],
  ])('finds a %s push', (variant, refPrefix, deleted) => {
    const payload = examplePayload('push', variant);
    expect(payload.ref.startsWith(refPrefix)).toBe(true);
    expect(payload.deleted).toBe(deleted);
    expect(payload.head_commit === null).toBe(deleted);
    if (deleted) expect(payload.after).toBe('0'.repeat(40));
  });

  it('defaults to a branch push for push', () => {
    expect(examplePayload('push').ref).toMatch(/^refs\/heads\//);
  });

  it.each(['opened', 'synchronize', 'reopened', 'closed', 'labeled'])('finds pull_request %s', (action) => {
    const payload = examplePayload('pull_request', action);
    expect(payload.action).toBe(action);
    expect(payload.pull_request.head.sha).toMatch(/^[0-9a-f]{40}$/);
  });

  it('accepts a predicate', () => {
    const payload = examplePayload('pull_request', (example) => example.action === 'closed');
    expect(payload.action).toBe('closed');
  });

  it('returns a copy each time', () => {
    const first = examplePayload('push');
    first.repository.full_name = 'changed/by-test';
    expect(examplePayload('push').repository.full_name).not.toBe('changed/by-test');
  });

  it('says which actions exist when none matches', () => {
    expect(() => examplePayload('pull_request', 'no-such-action')).toThrow(/recorded actions: .*synchronize/);
  });
});

describe('pushPayload', () => {
  it('adapts a branch push to the repository, keeping GitHub’s shape', () => {
    const sha = fakeSha('one');
    const payload = pushPayload({ repo: REPO, branch: 'dev', sha, message: 'Fix the build\n\nDetails.' });

    expect(shapeDifferences(payload, examplePayload('push', 'branch'))).toEqual([]);
    expect(leftovers(payload)).toEqual([]);
    expect(payload).toMatchObject({
      ref: 'refs/heads/dev',
      after: sha,
      deleted: false,
      created: false,
      pusher: { name: 'octo-org' },
      sender: { login: 'octo-org' },
      head_commit: { id: sha, message: 'Fix the build\n\nDetails.' },
      repository: {
        full_name: REPO,
        name: 'hello-world',
        owner: { login: 'octo-org' },
        private: false,
        default_branch: 'main',
        clone_url: `https://github.com/${REPO}.git`,
        html_url: `https://github.com/${REPO}`,
      },
    });
    expect(payload.commits.map((commit) => commit.id)).toEqual([sha]);
    expect(payload.before).not.toBe(sha);
    expect(payload.compare).toBe(
      `https://github.com/${REPO}/compare/${payload.before.slice(0, 12)}...${sha.slice(0, 12)}`,
    );
  });

  it('marks private repositories and other pushers', () => {
    const payload = pushPayload({ repo: REPO, private: true, pusher: 'mona', defaultBranch: 'trunk' });
    expect(payload.repository).toMatchObject({
      private: true,
      visibility: 'private',
      default_branch: 'trunk',
    });
    expect(payload.pusher.name).toBe('mona');
    expect(payload.sender?.login).toBe('mona');
    expect(payload.repository.owner.login).toBe('octo-org');
  });

  it('builds a branch deletion like GitHub’s', () => {
    const sha = fakeSha('gone');
    const payload = pushPayload({ repo: REPO, branch: 'old', sha, deleted: true });

    expect(shapeDifferences(payload, examplePayload('push', 'tag-deleted'))).toEqual([]);
    expect(leftovers(payload)).toEqual([]);
    expect(payload).toMatchObject({
      ref: 'refs/heads/old',
      before: sha,
      after: '0'.repeat(40),
      deleted: true,
      created: false,
      head_commit: null,
      commits: [],
    });
  });

  it('builds tag pushes and deletions', () => {
    const sha = fakeSha('release');
    const pushed = pushPayload({ repo: REPO, tag: 'v1.2.0', sha });
    const deleted = pushPayload({ repo: REPO, tag: 'v1.2.0', sha, deleted: true });

    expect(shapeDifferences(pushed, examplePayload('push', 'tag'))).toEqual([]);
    expect(pushed).toMatchObject({
      ref: 'refs/tags/v1.2.0',
      after: sha,
      created: true,
      head_commit: { id: sha },
    });
    expect(pushed.compare).toBe(`https://github.com/${REPO}/compare/v1.2.0`);
    expect(shapeDifferences(deleted, examplePayload('push', 'tag-deleted'))).toEqual([]);
    expect(deleted).toMatchObject({ ref: 'refs/tags/v1.2.0', deleted: true, head_commit: null });
    expect(leftovers([pushed, deleted])).toEqual([]);
  });

  it('rejects a repository that is not owner/name', () => {
    expect(() => pushPayload({ repo: 'just-a-name' })).toThrow('not an owner/name repository');
  });
});

describe('pullRequestPayload', () => {
  it.each<PullRequestAction>(['opened', 'synchronize', 'reopened', 'closed', 'labeled'])(
    'adapts %s to the repository, keeping GitHub’s shape',
    (action) => {
      const headSha = fakeSha(`head ${action}`);
      const payload = pullRequestPayload({
        repo: REPO,
        number: 17,
        action,
        headSha,
        headRef: 'feature/x',
        baseRef: 'release',
      });

      expect(shapeDifferences(payload, examplePayload('pull_request', action))).toEqual([]);
      expect(leftovers(payload)).toEqual([]);
      expect(payload).toMatchObject({
        action,
        number: 17,
        sender: { login: 'octo-org' },
        repository: { full_name: REPO, name: 'hello-world', owner: { login: 'octo-org' }, private: false },
        pull_request: {
          number: 17,
          html_url: `https://github.com/${REPO}/pull/17`,
          url: `https://api.github.com/repos/${REPO}/pulls/17`,
          user: { login: 'octo-org' },
          head: {
            sha: headSha,
            ref: 'feature/x',
            label: 'octo-org:feature/x',
            repo: { full_name: REPO, fork: false },
          },
          base: { ref: 'release', label: 'octo-org:release', repo: { full_name: REPO } },
        },
      });
      expect(payload.pull_request._links.statuses.href).toBe(
        `https://api.github.com/repos/${REPO}/statuses/${headSha}`,
      );
    },
  );

  it('puts the head of a fork PR in another owner’s repository', () => {
    const payload = pullRequestPayload({
      repo: REPO,
      number: 3,
      fork: true,
      sender: 'mallory',
      private: true,
    });

    expect(shapeDifferences(payload, examplePayload('pull_request', 'opened'))).toEqual([]);
    expect(leftovers(payload)).toEqual([]);
    const { head, base, user } = payload.pull_request;
    expect(head.repo).toMatchObject({
      full_name: 'mallory/hello-world',
      fork: true,
      private: true,
      owner: { login: 'mallory' },
      clone_url: 'https://github.com/mallory/hello-world.git',
    });
    expect(head.label).toBe('mallory:feature');
    expect(head.user.login).toBe('mallory');
    expect(base.repo.full_name).toBe(REPO);
    expect(base.repo.id).not.toBe(head.repo?.id);
    expect(user.login).toBe('mallory');
    expect(payload.sender.login).toBe('mallory');
    expect(payload.repository).toMatchObject({ full_name: REPO, private: true, fork: false });
    expect(() => pullRequestPayload({ repo: REPO, number: 3, fork: true, sender: 'octo-org' })).toThrow(
      'must differ',
    );
  });

  it('sets the merge of a closed PR, the label of a labeled one and the push of a synchronize', () => {
    const merged = pullRequestPayload({ repo: REPO, number: 5, action: 'closed', merged: true });
    const labeled = pullRequestPayload({ repo: REPO, number: 5, action: 'labeled', label: 'lambkin:skip' });
    const headSha = fakeSha('new head');
    const synchronized = pullRequestPayload({ repo: REPO, number: 5, action: 'synchronize', headSha });

    expect(merged.pull_request).toMatchObject({
      state: 'closed',
      merged: true,
      merged_by: { login: 'octo-org' },
    });
    expect(merged.pull_request.merged_at).toEqual(expect.any(String));
    expect(labeled.action === 'labeled' && labeled.label?.name).toBe('lambkin:skip');
    expect(labeled.pull_request.labels.map((label) => label.name)).toEqual(['lambkin:skip']);
    expect(synchronized.action === 'synchronize' && synchronized.after).toBe(headSha);
    expect(leftovers([merged, labeled, synchronized])).toEqual([]);
  });
});

describe('signedDelivery', () => {
  const payload = pushPayload({ repo: REPO, sha: fakeSha('signed') });

  it('sends JSON with every header GitHub sends, signed over the body', async () => {
    const delivery = await signedDelivery(SECRET, 'push', payload);

    expect(Object.keys(delivery.headers).sort()).toEqual([
      'Accept',
      'Content-Type',
      'User-Agent',
      'X-GitHub-Delivery',
      'X-GitHub-Event',
      'X-GitHub-Hook-ID',
      'X-GitHub-Hook-Installation-Target-ID',
      'X-GitHub-Hook-Installation-Target-Type',
      'X-Hub-Signature',
      'X-Hub-Signature-256',
    ]);
    expect(delivery.headers).toMatchObject({
      'Content-Type': 'application/json',
      'X-GitHub-Event': 'push',
      'X-GitHub-Delivery': delivery.deliveryId,
      'X-GitHub-Hook-Installation-Target-ID': String(payload.repository.id),
      'X-GitHub-Hook-Installation-Target-Type': 'repository',
    });
    expect(delivery.deliveryId).toMatch(UUID);
    expect(delivery.headers['User-Agent']).toMatch(/^GitHub-Hookshot\/[0-9a-f]{7}$/);
    expect(JSON.parse(delivery.body)).toEqual(payload);
    const signature = delivery.headers['X-Hub-Signature-256'] ?? '';
    expect(signature).toMatch(/^sha256=[0-9a-f]{64}$/);
    expect(await verify(SECRET, delivery.body, signature)).toBe(true);
    expect(await verify('another secret', delivery.body, signature)).toBe(false);
    expect(delivery.headers['X-Hub-Signature']).toBe(
      `sha1=${createHmac('sha1', SECRET).update(delivery.body).digest('hex')}`,
    );
  });

  it('form-encodes the payload and signs the encoded bytes', async () => {
    const delivery = await signedDelivery(SECRET, 'push', payload, { contentType: 'form' });

    expect(delivery.headers['Content-Type']).toBe('application/x-www-form-urlencoded');
    expect(delivery.body.startsWith('payload=')).toBe(true);
    const form = new URLSearchParams(delivery.body);
    expect([...form.keys()]).toEqual(['payload']);
    expect(JSON.parse(form.get('payload') ?? '')).toEqual(payload);
    const signature = delivery.headers['X-Hub-Signature-256'] ?? '';
    expect(await verify(SECRET, delivery.body, signature)).toBe(true);
    expect(await verify(SECRET, form.get('payload') ?? '', signature)).toBe(false);
  });

  it('signs with the wrong secret or not at all when asked', async () => {
    const wrong = await signedDelivery(SECRET, 'push', payload, { signature: 'wrong' });
    const missing = await signedDelivery(SECRET, 'push', payload, { signature: 'missing' });

    expect(await verify(SECRET, wrong.body, wrong.headers['X-Hub-Signature-256'] ?? '')).toBe(false);
    expect(missing.headers).not.toHaveProperty('X-Hub-Signature-256');
    expect(missing.headers).not.toHaveProperty('X-Hub-Signature');
  });

  it('uses the given delivery id and the ping’s hook, repository or organization', async () => {
    const ping = examplePayload('ping');
    const organizationPing = examplePayload('ping', (example) => example.hook?.type === 'Organization');
    const delivery = await signedDelivery(SECRET, 'ping', ping, { deliveryId: 'fixed-id' });
    const organizationDelivery = await signedDelivery(SECRET, 'ping', organizationPing);

    expect(delivery.headers['X-GitHub-Delivery']).toBe('fixed-id');
    expect(delivery.headers['X-GitHub-Hook-ID']).toBe(String(ping.hook_id));
    expect(organizationDelivery.headers).toMatchObject({
      'X-GitHub-Hook-Installation-Target-Type': 'organization',
      'X-GitHub-Hook-Installation-Target-ID': String(organizationPing.organization?.id),
    });
  });
});
