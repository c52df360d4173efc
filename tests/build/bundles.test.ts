/**
 * The deployable bundles (scripts/build.mjs). They are built fresh into a temporary folder outside
 * the checkout, so no node_modules up the tree can help them load and dist/ is left alone, then
 * each one is imported in a fresh node process with the environment the template gives it.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { runControllerBuild } from '../../src/controller/controller.js';
import { ProcessRunnerInvoker } from '../../src/controller/runner-invoker.js';
import * as config from '../../src/config.js';
import { resolveArchiveUrl } from '../../src/github/archive.js';
import { createGitHubClient } from '../../src/github/client.js';
import { GitHubStatusReporter } from '../../src/github/statuses.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import { DynamoBuildStore } from '../../src/store/builds.js';
import { S3LogStore } from '../../src/store/logs.js';
import { DynamoSettingsStore } from '../../src/store/settings.js';
import { createGitRepo, startGitHubServer } from '../support/github-server.js';
import { passingProject } from '../support/npm-projects.js';
import { createTestStorage } from '../support/storage.js';

const ROOT = process.cwd();
/** Generous: the largest bundle is under 1 MB today; this catches a dependency gone wrong. */
const MAX_BUNDLE_BYTES = 3 * 1024 * 1024;

interface BuildScript {
  FUNCTIONS: Record<string, string>;
  RUNNER_BESIDE: { function: string; file: string };
}
interface ProbeResult {
  imported: boolean;
  initMs?: number;
  error?: string;
  handler?: string;
  network: { kind: string; target: string; at: string }[];
  spawned: { command: string; at: string }[];
  activeResources: string[];
  exitCode: number | null;
  signal: string | null;
  exitedByItself: boolean;
  stderr: string;
}
interface MeasureScript {
  templateEnvironment(name: string, configModule: typeof config, bundleDir: string): Record<string, string>;
  probeBundle(file: string, env: Record<string, string>): Promise<ProbeResult>;
}
interface Manifest {
  functions: Record<string, { entry: string; bundle: string; bytes: number }>;
  skipped: Record<string, { entry: string; reason: string }>;
}
interface Metafile {
  inputs: Record<string, unknown>;
  outputs: Record<string, { imports: { path: string; kind: string; external?: boolean }[] }>;
}

// Plain .mjs build tooling, loaded as data (a string specifier keeps TypeScript from typing it).
const scriptUrl = (name: string): string => pathToFileURL(join(ROOT, 'scripts', name)).href;
const { FUNCTIONS, RUNNER_BESIDE } = (await import(scriptUrl('build.mjs'))) as BuildScript;
const { templateEnvironment, probeBundle } = (await import(
  scriptUrl('measure-bundles.mjs')
)) as MeasureScript;

/** Every function the build knows; each has its entry file, so none may be skipped. */
const present = Object.keys(FUNCTIONS);

const packageJson = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as {
  devDependencies: Record<string, string>;
};
/** Inputs no bundle may hold: test code, the TypeScript loader, local-only code, dev tooling. */
const FORBIDDEN_INPUTS: [RegExp, string][] = [
  [/^tests\//, 'test code'],
  [/(^|\/)node_modules\/tsx\//, 'tsx'],
  [/^src\/local\//, 'the local stack'],
  [/^src\/cli\//, 'the CLI'],
  // Reads stdin at import: a bundle holding it would hang at init.
  [/^src\/runner\/main\.ts$/, 'the local runner process entry'],
  ...Object.keys(packageJson.devDependencies).map((name): [RegExp, string] => [
    new RegExp(`(^|/)node_modules/${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/`),
    `the dev dependency ${name}`,
  ]),
];

let scratch: string;
let outdir: string;
let manifest: Manifest;
const sizes: Record<string, { bytes: number; mapBytes: number; initMs?: number }> = {};

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'lambkin-bundles-'));
  outdir = join(scratch, 'functions');
  try {
    await promisify(execFile)(
      process.execPath,
      ['scripts/build.mjs', '--outdir', outdir, '--cli-outdir', join(scratch, 'cli')],
      { cwd: ROOT },
    );
  } catch (error) {
    throw new Error(`npm run build failed: ${(error as { stderr?: string }).stderr ?? String(error)}`, {
      cause: error,
    });
  }
  manifest = JSON.parse(await readFile(join(outdir, 'manifest.json'), 'utf8')) as Manifest;
}, 60_000);

afterAll(async () => {
  console.log(
    'bundle sizes (module init on this machine, one import):\n' +
      Object.entries(sizes)
        .map(
          ([name, size]) =>
            `  ${name.padEnd(8)} ${(size.bytes / 1024).toFixed(0).padStart(5)} KiB, map ` +
            `${(size.mapBytes / 1024).toFixed(0).padStart(5)} KiB, init ${size.initMs?.toFixed(0) ?? '?'} ms`,
        )
        .join('\n'),
  );
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

test('the build lists exactly the functions FUNCTION_CONFIG declares', () => {
  expect(Object.keys(FUNCTIONS).sort()).toEqual(Object.keys(config.FUNCTION_CONFIG).sort());
});

test('every function has its entry file and is built; none is skipped', () => {
  expect(Object.values(FUNCTIONS).filter((entry) => !existsSync(join(ROOT, entry)))).toEqual([]);
  expect(Object.keys(manifest.functions).sort()).toEqual([...present].sort());
  expect(manifest.skipped).toEqual({});
});

describe.each(present)('the %s bundle', (name) => {
  const folder = (): string => join(outdir, name);
  const bundle = (): string => join(folder(), 'index.mjs');

  test('is one small ES module with a source map (no sources inside) and a metafile', async () => {
    // The builder also carries the runner program it uploads for CodeBuild runs.
    const beside = name === RUNNER_BESIDE.function ? [RUNNER_BESIDE.file] : [];
    expect((await readdir(folder())).sort()).toEqual(
      ['index.mjs', 'index.mjs.map', 'meta.json', ...beside].sort(),
    );
    const code = await readFile(bundle());
    const map = JSON.parse(await readFile(`${bundle()}.map`, 'utf8')) as {
      sources: string[];
      sourcesContent?: unknown;
    };
    sizes[name] = {
      ...sizes[name],
      bytes: code.length,
      mapBytes: (await readFile(`${bundle()}.map`)).length,
    };
    expect(code.length).toBeGreaterThan(0);
    expect(code.length).toBeLessThan(MAX_BUNDLE_BYTES);
    expect(code.toString('utf8').trimEnd().endsWith('//# sourceMappingURL=index.mjs.map')).toBe(true);
    // Paths relative to the map: they lead back to the TypeScript sources.
    expect(map.sources.some((source) => source.endsWith(`/${FUNCTIONS[name]}`))).toBe(true);
    expect(map.sourcesContent).toBeUndefined();
  });

  test('holds no test code, tsx, local-only code or dev dependency, and imports only Node built-ins', async () => {
    const meta = JSON.parse(await readFile(join(folder(), 'meta.json'), 'utf8')) as Metafile;
    const inputs = Object.keys(meta.inputs);
    expect(inputs).toContain(FUNCTIONS[name]);
    const forbidden = inputs.flatMap((input) =>
      FORBIDDEN_INPUTS.filter(([pattern]) => pattern.test(input)).map(([, what]) => `${input} (${what})`),
    );
    expect(forbidden).toEqual([]);
    const external = Object.values(meta.outputs)
      .flatMap((output) => output.imports)
      .filter((imported) => imported.external)
      .map((imported) => imported.path);
    const { isBuiltin } = await import('node:module');
    expect(external.filter((path) => !isBuiltin(path))).toEqual([]);
  });

  test("imports with the template's environment: exports handler, opens no connection, exits by itself", async () => {
    const env = templateEnvironment(name, config, dirname(bundle()));
    const result = await probeBundle(bundle(), env);
    sizes[name] = { ...sizes[name]!, initMs: result.initMs };
    expect({ error: result.error, stderr: result.stderr }).toEqual({ error: undefined, stderr: '' });
    expect(result.imported).toBe(true);
    expect(result.handler).toBe('function');
    expect(result.network).toEqual([]);
    expect(result.spawned).toEqual([]);
    // Nothing left running (a timer, a socket) may keep a process alive after import.
    expect({ exitedByItself: result.exitedByItself, exitCode: result.exitCode }).toEqual({
      exitedByItself: true,
      exitCode: 0,
    });
  });
});

test('the probe notices a connection, a timer and a process started at import', async () => {
  // The checks above pass trivially if the probe sees nothing: prove it sees each kind.
  const file = join(scratch, 'noisy.mjs');
  await import('node:fs/promises').then(({ writeFile }) =>
    writeFile(
      file,
      [
        "import { connect } from 'node:net';",
        "import { execFileSync } from 'node:child_process';",
        "connect(9, '127.0.0.1').on('error', () => {});",
        "execFileSync('true');",
        'setInterval(() => {}, 1000);',
        'export const handler = () => {};',
      ].join('\n'),
    ),
  );
  const result = await probeBundle(file, { PATH: process.env.PATH ?? '/usr/bin:/bin' });
  expect(result.handler).toBe('function');
  expect(result.network.map((attempt) => [attempt.kind, attempt.target])).toEqual([
    ['connect', '127.0.0.1:9'],
  ]);
  expect(result.spawned.map((spawned) => spawned.command)).toEqual(['true']);
  expect(result.activeResources).toContain('Timeout');
  expect(result.exitedByItself).toBe(false);
}, 20_000);

/**
 * What the Lambda runtime does with the runner bundle, as a process: import it, call `handler`
 * with the input, answer with the result (ProcessRunnerInvoker's stdin/stdout protocol). The
 * environment is the trusted builds' runner function's (template.yaml), but for the container
 * hygiene: this process is not in a container of its own.
 */
const RUNNER_BUNDLE_SHIM = `
process.env.LAMBKIN_RUNNER_TRUST = 'trusted';
const { handler } = await import(process.argv[1]);
let input = '';
for await (const chunk of process.stdin) input += chunk;
process.stdout.write(JSON.stringify(await handler(JSON.parse(input))) + '\\n');
`;

test('the runner bundle, alone in its folder, runs a real npm build for the controller', async () => {
  // The controller is the TypeScript source; only the runner is the bundle. The runner process gets
  // PATH and LANG only, and spawns bash, npm, node and tar from PATH as it would in Lambda.
  const storage = await createTestStorage();
  const github = await startGitHubServer({ token: 'bundle-test-token' });
  const source = await createGitRepo(passingProject(), { message: 'Initial commit' });
  try {
    github.addRepository({ owner: 'octo', name: 'bundled', gitDir: source.dir, private: false });
    const builds = new DynamoBuildStore(storage.clients.documents, storage.buildsTable);
    const logs = new S3LogStore(storage.clients.s3, storage.bucket);
    const octokit = createGitHubClient({ baseUrl: github.url, token: 'bundle-test-token' });
    const bundle = pathToFileURL(join(outdir, 'runner', 'index.mjs')).href;
    const request = {
      event: 'push',
      ref: 'refs/heads/main',
      branch: 'main',
      defaultBranch: 'main',
      fork: false,
      privateRepo: false,
      trusted: true,
      author: 'octocat',
      deliveryId: 'bundle-test-delivery',
      repo: 'octo/bundled',
      sha: source.sha,
    } as const;
    const queued = await builds.putQueuedBuild(request, await builds.allocateNumber(request.repo), {
      deadline: Date.now() + 60_000,
    });
    const result = await runControllerBuild(
      {
        builds,
        settings: new DynamoSettingsStore(storage.clients.documents, storage.settingsTable),
        statuses: new GitHubStatusReporter(octokit),
        logs,
        archives: { resolveArchiveUrl: (repo, sha) => resolveArchiveUrl(octokit, repo, sha) },
        runner: new ProcessRunnerInvoker({
          command: [process.execPath, '--input-type=module', '-e', RUNNER_BUNDLE_SHIM, bundle],
        }),
        logger: createMemoryLogger(),
        publicUrl: 'https://ci.example.test',
        runnerTimeoutMs: 50_000,
        logLimitBytes: 1024 * 1024,
      },
      { kind: 'build', repo: queued.repo, number: queued.number },
    );
    if (!result.ran) throw new Error(`build did not run: ${result.reason}`);
    const log = (await logs.readLog(result.build.logPrefix)) ?? '';
    expect({ state: result.build.state, log }).toMatchObject({
      state: 'success',
      log: expect.stringContaining('npm ci'),
    });
    expect(result.build.steps?.map((step) => [step.name, step.exitCode])).toEqual([
      ['install', 0],
      ['test', 0],
    ]);
    expect(log).toMatch(/# pass 1/);
  } finally {
    await github.close();
    await rm(source.dir, { recursive: true, force: true });
  }
}, 60_000);

test("the runner beside the builder is the runner program: it runs with --input-url (CodeBuild's buildspec)", async () => {
  const runner = join(outdir, RUNNER_BESIDE.function, RUNNER_BESIDE.file);
  const failed = await promisify(execFile)(process.execPath, [runner, '--input-url', 'file:///nothing'], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
  }).catch((error: unknown) => error as { code?: number; stderr?: string });
  expect(failed).toMatchObject({ code: 1 });
  expect((failed as { stderr?: string }).stderr).toContain('--input-url must be an http(s) URL');
});
