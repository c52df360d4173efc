// A hostile build step (run as `npm test` by tests/security/stack-access.test.ts): it finds every
// listening TCP port and Unix socket of this machine in /proc/net, and tries to read the builds
// table, list the logs, rewrite the global settings (fork PRs get the secrets) and invoke the
// builder on each, unsigned and with made-up credentials. One JSON line per try; it always passes.
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { stdout } from 'node:process';

const say = (line) => stdout.write(`${line}\n`);

function listeningPorts() {
  const ports = new Set();
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields[3] === '0A') ports.add(parseInt(fields[1].split(':').pop(), 16));
    }
  }
  return [...ports];
}

function unixSockets() {
  try {
    return readFileSync('/proc/net/unix', 'utf8')
      .split('\n')
      .slice(1)
      .map((line) => line.trim().split(/\s+/)[7])
      .filter((path) => path && path.startsWith('/') && path.includes('lambkin'));
  } catch {
    return [];
  }
}

const MADE_UP =
  'AWS4-HMAC-SHA256 Credential=lambkin-local/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host;x-amz-date, Signature=' +
  '0'.repeat(64);

const TRIES = [
  {
    kind: 'scan',
    method: 'POST',
    path: '/',
    headers: { 'x-amz-target': 'DynamoDB_20120810.Scan', 'content-type': 'application/x-amz-json-1.0' },
    body: JSON.stringify({ TableName: 'lambkin-builds' }),
  },
  {
    kind: 'settings',
    method: 'POST',
    path: '/',
    headers: { 'x-amz-target': 'DynamoDB_20120810.PutItem', 'content-type': 'application/x-amz-json-1.0' },
    body: JSON.stringify({
      TableName: 'lambkin-settings',
      Item: { scope: { S: 'global' }, hacked: { S: 'yes' } },
    }),
  },
  { kind: 'list', method: 'GET', path: '/lambkin-logs?list-type=2', headers: {} },
  {
    kind: 'invoke',
    method: 'POST',
    path: '/2015-03-31/functions/lambkin-builder/invocations',
    headers: { 'x-amz-invocation-type': 'Event' },
    body: '{"kind":"build","repo":"octo/x","number":1}',
  },
];

function attempt(target, t, authorization) {
  return new Promise((resolve) => {
    const headers = {
      ...t.headers,
      'x-amz-date': '20260101T000000Z',
      ...(authorization ? { authorization } : {}),
    };
    const req = request({ ...target, method: t.method, path: t.path, headers, timeout: 2000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode, body: body.slice(0, 300) }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (error) => resolve({ error: error.code || error.message }));
    req.end(t.body);
  });
}

for (const port of listeningPorts()) {
  for (const t of TRIES) {
    for (const authorization of [undefined, MADE_UP]) {
      const result = await attempt({ host: '127.0.0.1', port }, t, authorization);
      say('STACKPROBE ' + JSON.stringify({ port, kind: t.kind, signed: Boolean(authorization), ...result }));
    }
  }
}
for (const socketPath of unixSockets()) {
  for (const t of TRIES) {
    const result = await attempt({ socketPath }, t, undefined);
    say('STACKPROBE ' + JSON.stringify({ socketPath, kind: t.kind, signed: false, ...result }));
  }
}
say('STACKPROBE-DONE-' + 6 * 7);
