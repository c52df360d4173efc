/**
 * The runner program's `--input-url` mode (src/runner/main.ts, src/runner/remote-input.ts): the real
 * program as a process, against a loopback server standing in for the presigned URLs. The whole
 * path with a real controller's input is tests/controller/codebuild.test.ts.
 */
import { execFile } from 'node:child_process';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { runnerProgram } from '../../src/controller/runner-program.js';
import type { RemoteRunnerResult, RunnerOutcome } from '../../src/core/protocol.js';
import { parseRemoteRunnerResult } from '../../src/core/protocol.js';
import {
  RemoteRunnerError,
  deliverResult,
  fetchRunnerInput,
  spendInput,
} from '../../src/runner/remote-input.js';

type Route = (request: IncomingMessage, body: string, response: ServerResponse) => void;

let server: Server;
let base: string;
const routes = new Map<string, Route>();
const seen: { method: string; path: string; headers: IncomingMessage['headers']; body: string }[] = [];

beforeAll(async () => {
  server = createServer((request, response) => {
    let body = '';
    request.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
    request.on('end', () => {
      const path = new URL(request.url ?? '/', 'http://x').pathname;
      seen.push({ method: request.method ?? '', path, headers: request.headers, body });
      const route = routes.get(`${request.method} ${path}`);
      if (route) route(request, body, response);
      else response.writeHead(404).end('<Error><Code>NoSuchKey</Code></Error>');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => new Promise<void>((resolve) => server.close(() => resolve())));
beforeEach(() => {
  routes.clear();
  seen.length = 0;
});

const OUTCOME: RunnerOutcome = {
  kind: 'outcome',
  state: 'success',
  description: 'passed',
  steps: [],
  log: { chunks: 0, totalBytes: 0, truncatedBytes: 0, tail: false },
};

async function runProgram(url: string): Promise<{ code: number; stderr: string }> {
  const program = await runnerProgram();
  try {
    const { stderr } = await promisify(execFile)(
      program.command[0] ?? '',
      [...program.command.slice(1), '--input-url', url],
      {
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
        timeout: 60_000,
      },
    );
    return { code: 0, stderr };
  } catch (error) {
    const failed = error as { code?: number; stderr?: string };
    return { code: failed.code ?? -1, stderr: failed.stderr ?? '' };
  }
}

describe('the runner program with --input-url', () => {
  it('exits 1 and says why when the input is gone (expired, spent or never written)', async () => {
    const { code, stderr } = await runProgram(`${base}/runner-input/o/r/1/abc.json?X-Amz-Signature=x`);
    expect(code).toBe(1);
    expect(stderr).toContain('answered HTTP 404: it expired, was already read, or was never written');
    // The signature never reaches the message.
    expect(stderr).not.toContain('X-Amz-Signature');
  }, 90_000);

  it('exits 1 on an input that names no outcomeUpload, without running anything', async () => {
    routes.set('GET /input.json', (_request, _body, response) =>
      response.writeHead(200).end(JSON.stringify({ kind: 'run', build: {} })),
    );
    const { code, stderr } = await runProgram(`${base}/input.json`);
    expect(code).toBe(1);
    expect(stderr).toContain('names no outcomeUpload');
  }, 90_000);

  it('refuses a URL that is not http(s)', async () => {
    const { code, stderr } = await runProgram('file:///etc/passwd');
    expect(code).toBe(1);
    expect(stderr).toContain('must be an http(s) URL');
  }, 90_000);
});

describe('moving the input and the result', () => {
  it('retries a 5xx and reads the input', async () => {
    let calls = 0;
    routes.set('GET /input.json', (_request, _body, response) => {
      calls++;
      if (calls === 1) response.writeHead(503).end('slow down');
      else
        response
          .writeHead(200)
          .end(JSON.stringify({ kind: 'run', outcomeUpload: { url: `${base}/out`, headers: {} } }));
    });
    const input = await fetchRunnerInput(`${base}/input.json`, { backoffMs: 1 });
    expect(input.outcomeUpload?.url).toBe(`${base}/out`);
    expect(calls).toBe(2);
  });

  it('spends the input with its DELETE; a failure is only a note', async () => {
    routes.set('DELETE /input.json', (_request, _body, response) => response.writeHead(204).end());
    expect(await spendInput({ url: '', headers: {}, inputDeleteUrl: `${base}/input.json` })).toBeUndefined();
    expect(seen.map((request) => `${request.method} ${request.path}`)).toContain('DELETE /input.json');
    routes.set('DELETE /input.json', (_request, _body, response) => response.writeHead(403).end());
    expect(
      await spendInput({ url: '', headers: {}, inputDeleteUrl: `${base}/input.json` }, { backoffMs: 1 }),
    ).toMatch(/could not be deleted/);
  });

  it('PUTs the result with the signed headers; a 412 (someone wrote first) is refused', async () => {
    routes.set('PUT /out', (_request, _body, response) => response.writeHead(200).end());
    const result: RemoteRunnerResult = {
      outcome: OUTCOME,
      afterword: { kind: 'afterword', timings: [], notes: [] },
    };
    await deliverResult({ url: `${base}/out`, headers: { 'if-none-match': '*' } }, result);
    const put = seen.find((request) => request.method === 'PUT');
    expect(put?.headers['if-none-match']).toBe('*');
    expect(parseRemoteRunnerResult(put?.body ?? '')).toEqual(result);

    routes.set('PUT /out', (_request, _body, response) => response.writeHead(412).end());
    await expect(deliverResult({ url: `${base}/out`, headers: {} }, result)).rejects.toThrow(
      RemoteRunnerError,
    );
    await expect(deliverResult({ url: `${base}/out`, headers: {} }, result)).rejects.toThrow(
      /by someone else/,
    );
  });

  it('the controller reads only a well-formed result', () => {
    expect(parseRemoteRunnerResult('not json')).toBeUndefined();
    expect(
      parseRemoteRunnerResult(JSON.stringify({ outcome: { ...OUTCOME, state: 'cancelled' } })),
    ).toBeUndefined();
    expect(parseRemoteRunnerResult(JSON.stringify({ outcome: { ...OUTCOME, log: null } }))).toBeUndefined();
    expect(parseRemoteRunnerResult(JSON.stringify({ outcome: OUTCOME, afterword: { kind: 'x' } }))).toEqual({
      outcome: OUTCOME,
    });
  });
});
