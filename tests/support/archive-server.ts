/**
 * A loopback HTTP server (127.0.0.1 only) for source-fetching tests: each path gets a handler,
 * and every request is recorded. Handlers for archives, redirects, failures and git's smart HTTP
 * (`git http-backend` as CGI) are below.
 */
import { spawn } from 'node:child_process';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type Handler = (request: IncomingMessage, response: ServerResponse, count: number) => void;

export interface ArchiveServer {
  /** `http://127.0.0.1:<port>` */
  origin: string;
  url(path: string): string;
  /** Sets (or replaces) what answers `path` (the path without its query). */
  route(path: string, handler: Handler): void;
  /** Paths requested so far, in order. */
  requests: string[];
  requestCount(path: string): number;
  close(): Promise<void>;
}

export async function startArchiveServer(): Promise<ArchiveServer> {
  const routes = new Map<string, Handler>();
  const requests: string[] = [];
  const server: Server = createServer((request, response) => {
    const path = new URL(request.url ?? '/', 'http://127.0.0.1').pathname;
    requests.push(path);
    const handler = [...routes].find(([prefix]) => path === prefix || path.startsWith(`${prefix}/`))?.[1];
    if (!handler) {
      response.writeHead(404).end('no such route');
      return;
    }
    handler(request, response, requests.filter((seen) => seen === path).length);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const origin = `http://127.0.0.1:${port}`;
  return {
    origin,
    url: (path) => `${origin}${path}`,
    route: (path, handler) => void routes.set(path, handler),
    requests,
    requestCount: (path) => requests.filter((seen) => seen === path).length,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Answers with the bytes, as GitHub's archive host does. */
export function serveBytes(body: Buffer): Handler {
  return (_request, response) => {
    response.writeHead(200, { 'content-type': 'application/x-gzip', 'content-length': body.length });
    response.end(body);
  };
}

export function redirectTo(location: string): Handler {
  return (_request, response) => void response.writeHead(302, { location }).end();
}

export function status(code: number): Handler {
  return (_request, response) => void response.writeHead(code, { 'content-type': 'text/plain' }).end('nope');
}

/** Sends the first `bytes` of the body (announcing all of it), then cuts the connection. */
export function resetAfter(body: Buffer, bytes: number): Handler {
  return (_request, response) => {
    response.writeHead(200, { 'content-type': 'application/x-gzip', 'content-length': body.length });
    response.write(body.subarray(0, bytes), () => {
      // Let the bytes reach the client before the reset.
      setTimeout(() => response.socket?.destroy(), 50);
    });
  };
}

/** Cuts the connection without answering. */
export function resetAtOnce(): Handler {
  return (request) => void request.socket.destroy();
}

/** Sends the first `bytes` of the body, then keeps the connection open without sending more. */
export function stallAfter(body: Buffer, bytes: number): Handler {
  return (_request, response) => {
    response.writeHead(200, { 'content-type': 'application/x-gzip', 'content-length': body.length });
    response.write(body.subarray(0, bytes));
  };
}

/** Routes to a different handler for the first request and the later ones. */
export function firstThen(first: Handler, later: Handler): Handler {
  return (request, response, count) => (count === 1 ? first : later)(request, response, count);
}

/**
 * Git's smart HTTP: runs `git http-backend` as a CGI program for repositories under
 * `projectRoot`, served under `mount` (`/git` → `http://host/git/<repo>.git`).
 */
export function gitHttpBackend(projectRoot: string, mount: string): Handler {
  return (request, response) => {
    const url = new URL(request.url ?? '/', 'http://127.0.0.1');
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      GIT_PROJECT_ROOT: projectRoot,
      GIT_HTTP_EXPORT_ALL: '1',
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_CONFIG_GLOBAL: '/dev/null',
      REQUEST_METHOD: request.method ?? 'GET',
      PATH_INFO: decodeURIComponent(url.pathname.slice(mount.length)),
      QUERY_STRING: url.search.replace(/^\?/, ''),
      CONTENT_TYPE: request.headers['content-type'] ?? '',
      REMOTE_ADDR: '127.0.0.1',
      GIT_PROTOCOL: String(request.headers['git-protocol'] ?? ''),
      HTTP_CONTENT_ENCODING: String(request.headers['content-encoding'] ?? ''),
    };
    if (request.headers['content-length']) env.CONTENT_LENGTH = request.headers['content-length'];
    const cgi = spawn('git', ['http-backend'], { env, stdio: ['pipe', 'pipe', 'inherit'] });
    request.pipe(cgi.stdin);
    let head = Buffer.alloc(0);
    let headersSent = false;
    cgi.stdout.on('data', (chunk: Buffer) => {
      if (headersSent) {
        response.write(chunk);
        return;
      }
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end === -1) return;
      const headers: Record<string, string> = {};
      let statusCode = 200;
      for (const line of head.subarray(0, end).toString('latin1').split('\r\n')) {
        const colon = line.indexOf(':');
        const name = line.slice(0, colon).trim();
        const value = line.slice(colon + 1).trim();
        if (name.toLowerCase() === 'status') statusCode = Number.parseInt(value, 10);
        else headers[name] = value;
      }
      response.writeHead(statusCode, headers);
      headersSent = true;
      response.write(head.subarray(end + 4));
    });
    cgi.on('close', () => {
      if (!headersSent) response.writeHead(502);
      response.end();
    });
  };
}
