/**
 * The embedded storage servers: a DynamoDB-compatible server (dynalite, in-process) and an
 * S3-compatible server (s3rver, in a child process). Used by the local stack (on Unix sockets,
 * behind src/local/storage-proxy.ts: neither checks credentials) and by the tests.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import dynalite from 'dynalite';

export interface RunningServer {
  /** Base URL, e.g. http://127.0.0.1:4567 */
  readonly endpoint: string;
  /** Set when the server listens on this Unix socket instead of a TCP port. */
  readonly socketPath?: string;
  stop(): Promise<void>;
}

export interface DynamoServerOptions {
  /** Folder for the LevelDB files; in memory when omitted. */
  path?: string;
  host?: string;
  port?: number;
  /**
   * Listen on this Unix socket instead (the local stack: behind its proxy, in a folder only its
   * user can enter, so no build can reach the server around the proxy).
   */
  socketPath?: string;
}

/** How a server listening on `socketPath` (or host:port) is described. */
function runningAt(
  socketPath: string | undefined,
  host: string,
  port: number,
  stop: () => Promise<void>,
): RunningServer {
  return socketPath
    ? { endpoint: 'http://localhost', socketPath, stop }
    : { endpoint: `http://${host}:${port}`, stop };
}

export async function startDynamoServer(options: DynamoServerOptions = {}): Promise<RunningServer> {
  const host = options.host ?? '127.0.0.1';
  const server = dynalite({
    ...(options.path ? { path: options.path } : {}),
    createTableMs: 0,
    deleteTableMs: 0,
    updateTableMs: 0,
  });
  if (options.socketPath) server.listen(options.socketPath);
  else server.listen(options.port ?? 0, host);
  await once(server, 'listening');
  const port = options.socketPath ? 0 : (server.address() as AddressInfo).port;
  return runningAt(
    options.socketPath,
    host,
    port,
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  );
}

export interface S3ServerOptions {
  /** Folder where objects are kept. */
  directory: string;
  host?: string;
  port?: number;
  /** Listen on this Unix socket instead (see DynamoServerOptions.socketPath). */
  socketPath?: string;
}

const S3_STARTUP_TIMEOUT_MS = 15_000;

/**
 * s3rver runs in its own process because it needs Node's `--openssl-legacy-provider` (it signs
 * continuation tokens with a cipher OpenSSL 3 only offers there) and that flag must not leak
 * into the rest of Lambkin.
 */
export async function startS3Server(options: S3ServerOptions): Promise<RunningServer> {
  const host = options.host ?? '127.0.0.1';
  const s3rverPath = createRequire(import.meta.url).resolve('s3rver');
  const script = `
    const S3rver = require(${JSON.stringify(s3rverPath)});
    // s3rver knows one access key; accept any, as it does not verify SigV4 signatures anyway (the
    // local stack's proxy does: src/local/storage-proxy.ts).
    const AWSAccount = require(${JSON.stringify(join(dirname(s3rverPath), 'models', 'account.js'))});
    const knownAccount = AWSAccount.registry.get.bind(AWSAccount.registry);
    AWSAccount.registry.get = (accessKeyId) => knownAccount(accessKeyId) || AWSAccount.DUMMY_ACCOUNT;
    const server = new S3rver(${JSON.stringify({
      address: host,
      port: options.port ?? 0,
      directory: options.directory,
      silent: true,
    })});
    const socketPath = ${JSON.stringify(options.socketPath ?? null)};
    // run() listens on a port; on a socket, do what it does with listen(path).
    const started = socketPath
      ? server.configureBuckets().then(() => server.listen(socketPath)).then((httpServer) => {
          server.httpServer = httpServer;
          return { port: 0 };
        })
      : server.run();
    started.then((address) => process.stdout.write(JSON.stringify({ port: address.port }) + '\\n'),
      (error) => { console.error(error && error.message); process.exit(1); });
    process.on('SIGTERM', () => server.close().finally(() => process.exit(0)));
    // A terminal's Ctrl-C or hangup reaches this process with its parent's: the parent still needs
    // the storage to end its builds, and stops it itself.
    process.on('SIGINT', () => {});
    process.on('SIGHUP', () => {});
    process.stdin.on('end', () => process.exit(0)); // parent gone: do not linger
    process.stdin.resume();
  `;
  const child = spawn(process.execPath, ['--openssl-legacy-provider', '-e', script], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error('s3rver did not start within 15 s')),
      S3_STARTUP_TIMEOUT_MS,
    );
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      const line = stdout.split('\n')[0];
      if (stdout.includes('\n') && line) {
        clearTimeout(timer);
        resolve((JSON.parse(line) as { port: number }).port);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`s3rver exited with code ${code} before it started: ${stderr.trim()}`));
    });
  });
  return runningAt(options.socketPath, host, port, async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    await exited;
  });
}
