/**
 * Webhook deliveries for the demo, shaped as GitHub sends them (the fields Lambkin reads, plus the
 * usual context), and signed like GitHub signs them.
 */
import { randomUUID } from 'node:crypto';
import { sign } from '@octokit/webhooks-methods';

export interface DemoRepository {
  owner: string;
  name: string;
  defaultBranch: string;
  htmlBase: string;
}

function repository(repo: DemoRepository) {
  const full = `${repo.owner}/${repo.name}`;
  return {
    id: 1296269,
    name: repo.name,
    full_name: full,
    private: false,
    owner: { login: repo.owner, id: 1, type: 'Organization' },
    html_url: `${repo.htmlBase}/${full}`,
    clone_url: `${repo.htmlBase}/${full}.git`,
    default_branch: repo.defaultBranch,
  };
}

const sender = { login: 'lambkin-demo-user', id: 2, type: 'User' };

export function pushPayload(
  repo: DemoRepository,
  branch: string,
  before: string,
  sha: string,
  message: string,
) {
  return {
    ref: `refs/heads/${branch}`,
    before,
    after: sha,
    created: false,
    deleted: false,
    forced: false,
    compare: `${repo.htmlBase}/${repo.owner}/${repo.name}/compare/${before.slice(0, 12)}...${sha.slice(0, 12)}`,
    head_commit: {
      id: sha,
      message,
      timestamp: new Date().toISOString(),
      url: `${repo.htmlBase}/${repo.owner}/${repo.name}/commit/${sha}`,
      author: { name: 'Lambkin Demo', email: 'demo@lambkin.invalid', username: sender.login },
    },
    repository: repository(repo),
    pusher: { name: sender.login, email: 'demo@lambkin.invalid' },
    sender,
  };
}

export function pullRequestPayload(
  repo: DemoRepository,
  number: number,
  head: { ref: string; sha: string },
  base: { ref: string; sha: string },
  title: string,
) {
  const full = `${repo.owner}/${repo.name}`;
  return {
    action: 'opened',
    number,
    pull_request: {
      number,
      state: 'open',
      title,
      html_url: `${repo.htmlBase}/${full}/pull/${number}`,
      user: sender,
      head: { label: `${repo.owner}:${head.ref}`, ref: head.ref, sha: head.sha, repo: repository(repo) },
      base: { label: `${repo.owner}:${base.ref}`, ref: base.ref, sha: base.sha, repo: repository(repo) },
    },
    repository: repository(repo),
    sender,
  };
}

export async function signedDelivery(
  secret: string,
  event: string,
  payload: unknown,
): Promise<{ headers: Record<string, string>; body: string }> {
  const body = JSON.stringify(payload);
  return {
    body,
    headers: {
      'content-type': 'application/json',
      'user-agent': 'GitHub-Hookshot/lambkin-demo',
      'x-github-event': event,
      'x-github-delivery': randomUUID(),
      'x-hub-signature-256': await sign(secret, body),
    },
  };
}
