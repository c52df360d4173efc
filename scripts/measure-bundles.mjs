#!/usr/bin/env node
/**
 * Bundle sizes and module init time of each function, printed as one JSON object:
 *
 *   node scripts/measure-bundles.mjs [--runs 15] [--dir dist/functions]
 *
 * By default the bundles are built fresh into a temporary folder (numbers of a stale dist/ would
 * describe code that no longer exists); `--dir` measures bundles already built there instead.
 *
 * Init time is what a fresh `node` process on THIS machine spends in `import()` of the bundle,
 * timed inside that process with performance.now(). It is the part of a Lambda cold start the code
 * controls, not a measured Lambda cold start: Lambda adds its own sandbox start, runtime start and
 * code download, on a different CPU. Functions are interleaved within each repetition so that
 * machine noise (other processes, CPU frequency) spreads over all of them alike.
 *
 * The probe (also used by tests/build) gives each child only the environment the template would
 * set, with fake values, and refuses and records any network connection, DNS lookup or child process
 * started while importing: importing a handler must do nothing but define it.
 */
import { spawn } from 'node:child_process';
import console from 'node:console';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import process from 'node:process';
import { clearTimeout, setTimeout } from 'node:timers';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';
import { buildFunctions, loadConfigModule } from './build.mjs';

/**
 * What the child runs (`node --input-type=module -e`): patch the ways out of the process, import the
 * bundle, report on stdout as JSON lines. It does not call process.exit: whether it exits by itself
 * shows that importing left no timer, socket or handle keeping the process alive.
 */
export const PROBE_SOURCE = String.raw`
import childProcess from 'node:child_process';
import dgram from 'node:dgram';
import dns from 'node:dns';
import { writeSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import net from 'node:net';
import { performance } from 'node:perf_hooks';

// Written at once (not buffered): a blocked connection may crash the process before the end.
const report = (event) => writeSync(1, JSON.stringify(event) + '\n');
const caller = () => (new Error().stack ?? '').split('\n').slice(3, 7).map((line) => line.trim()).join(' < ');
const refusal = () => Object.assign(new Error('refused by the import probe'), { code: 'ECONNREFUSED' });

// Every TCP or TLS connection (http, https, fetch, the AWS SDK) goes through Socket#connect.
net.Socket.prototype.connect = function (...args) {
  // net.connect() passes its arguments on already normalized, as [options, callback].
  const first = Array.isArray(args[0]) ? args[0][0] : args[0];
  const target = first && typeof first === 'object'
    ? (first.path ?? (first.host ?? 'localhost') + ':' + first.port)
    : args.slice(0, 2).join(':');
  report({ event: 'network', kind: 'connect', target: String(target), at: caller() });
  process.nextTick(() => this.destroy(refusal()));
  return this;
};
dgram.Socket.prototype.send = function () {
  report({ event: 'network', kind: 'udp', target: '', at: caller() });
};
const lookup = (hostname, ...rest) => {
  report({ event: 'network', kind: 'dns', target: String(hostname), at: caller() });
  const callback = rest.at(-1);
  if (typeof callback === 'function') process.nextTick(() => callback(refusal()));
};
dns.lookup = lookup;
dns.promises.lookup = async (hostname) => {
  lookup(hostname);
  throw refusal();
};
for (const name of ['spawn', 'spawnSync', 'exec', 'execSync', 'execFile', 'execFileSync', 'fork']) {
  const original = childProcess[name];
  childProcess[name] = function (...args) {
    report({ event: 'spawn', command: String(args[0]), at: caller() });
    return original.apply(this, args);
  };
}
// ES-module named imports of built-ins (import { spawn } from ...) are copies; refresh them.
syncBuiltinESMExports();

const started = performance.now();
let module;
let error;
try {
  module = await import(process.argv[1]);
} catch (caught) {
  error = caught;
}
const initMs = performance.now() - started;
const memory = process.memoryUsage();
// One turn of the event loop, so that work the import scheduled shows up below.
await new Promise((resolve) => setImmediate(resolve));
report({
  event: 'imported',
  initMs,
  error: error ? String(error.stack ?? error) : undefined,
  handler: typeof module?.handler,
  exports: Object.keys(module ?? {}),
  rssBytes: memory.rss,
  heapUsedBytes: memory.heapUsed,
  activeResources: process.getActiveResourcesInfo(),
});
`;

/** Fake values of the kind the template sets (names, ARNs, URLs, numbers). */
const FAKE_VALUES = {
  buildsTable: 'lambkin-BuildsTable-1A2B3C4D5E6F',
  settingsTable: 'lambkin-SettingsTable-1A2B3C4D5E6F',
  bucket: 'lambkin-bucket-1a2b3c4d5e6f',
  builderFunction: 'arn:aws:lambda:us-east-1:123456789012:function:lambkin-BuilderFunction-1A2B3C',
  runnerFunction: 'arn:aws:lambda:us-east-1:123456789012:function:lambkin-RunnerFunction-1A2B3C',
  untrustedRunnerFunction:
    'arn:aws:lambda:us-east-1:123456789012:function:lambkin-UntrustedRunnerFunction-1A2B3C',
  publicUrl: 'https://abcdef1234.execute-api.us-east-1.amazonaws.com',
  githubApiUrl: 'https://github.example.com/api/v3',
  queueTimeoutSeconds: '1200',
  runnerTimeoutSeconds: '840',
  logLimitBytes: '4194304',
  secretArn: 'arn:aws:secretsmanager:us-east-1:123456789012:secret:lambkin-secrets-AbCdEf',
  settingsKmsKey: 'arn:aws:kms:us-east-1:123456789012:key/00000000-0000-4000-8000-000000000000',
  githubToken: 'ghp_000000000000000000000000000000000000',
  webhookSecrets: 'fake-webhook-secret',
};

/**
 * The environment a deployed function starts with: what the Lambda runtime sets (fake
 * credentials, so nothing of this machine's leaks in) plus the variables FUNCTION_CONFIG says the
 * template sets for it. The cloud secrets (CLOUD_SECRET_KEYS) are not among them: the template
 * passes LAMBKIN_SECRET_ARN instead. `config` is src/config.ts as a module.
 */
export function templateEnvironment(name, config, bundleDir) {
  const { FUNCTION_CONFIG, CONFIG_VARIABLES, CLOUD_SECRET_KEYS } = config;
  const declared = FUNCTION_CONFIG[name];
  if (!declared) throw new Error(`FUNCTION_CONFIG has no function ${name}`);
  const env = {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    LANG: 'en_US.UTF-8',
    TZ: ':UTC',
    LAMBDA_TASK_ROOT: bundleDir,
    AWS_REGION: 'us-east-1',
    AWS_DEFAULT_REGION: 'us-east-1',
    AWS_EXECUTION_ENV: 'AWS_Lambda_nodejs22.x',
    AWS_LAMBDA_FUNCTION_NAME: `lambkin-${name}`,
    AWS_LAMBDA_FUNCTION_VERSION: '$LATEST',
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '1024',
    AWS_LAMBDA_INITIALIZATION_TYPE: 'on-demand',
    AWS_ACCESS_KEY_ID: 'AKIAIOSFODNN7EXAMPLE',
    AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
    AWS_SESSION_TOKEN: 'fake-session-token',
  };
  for (const key of [...declared.required, ...declared.optional]) {
    if (CLOUD_SECRET_KEYS.includes(key)) continue;
    env[CONFIG_VARIABLES[key]] = FAKE_VALUES[key] ?? `fake-${key}`;
  }
  return env;
}

/**
 * Imports `bundleFile` in a fresh node process and reports what happened. `exitedByItself` is
 * false when the process was still alive `exitWithinMs` after the import finished (it is then
 * killed).
 */
export function probeBundle(
  bundleFile,
  env,
  { nodeArguments = [], exitWithinMs = 3000, timeoutMs = 30_000 } = {},
) {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(
      process.execPath,
      [...nodeArguments, '--input-type=module', '-e', PROBE_SOURCE, pathToFileURL(bundleFile).href],
      { env, cwd: dirname(bundleFile), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    let exitedByItself = true;
    let exitTimer;
    const overall = setTimeout(() => {
      exitedByItself = false;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.setEncoding('utf8').on('data', (chunk) => {
      stdout += chunk;
      if (!exitTimer && stdout.includes('"event":"imported"')) {
        exitTimer = setTimeout(() => {
          exitedByItself = false;
          child.kill('SIGKILL');
        }, exitWithinMs);
      }
    });
    child.stderr.setEncoding('utf8').on('data', (chunk) => (stderr = (stderr + chunk).slice(-8192)));
    child.once('error', reject);
    child.once('close', (exitCode, signal) => {
      clearTimeout(overall);
      clearTimeout(exitTimer);
      const events = stdout
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line));
      const imported = events.find((event) => event.event === 'imported');
      resolvePromise({
        imported: Boolean(imported),
        initMs: imported?.initMs,
        error: imported?.error,
        handler: imported?.handler,
        exports: imported?.exports ?? [],
        rssBytes: imported?.rssBytes,
        activeResources: imported?.activeResources ?? [],
        network: events.filter((event) => event.event === 'network'),
        spawned: events.filter((event) => event.event === 'spawn'),
        exitCode,
        signal,
        exitedByItself,
        stderr,
      });
    });
  });
}

/** Nearest-rank percentile of numbers (p in 0..100). */
function percentile(values, p) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

function summary(values) {
  const round = (value) => Math.round(value * 10) / 10;
  return {
    median: round(percentile(values, 50)),
    p90: round(percentile(values, 90)),
    min: round(Math.min(...values)),
    max: round(Math.max(...values)),
  };
}

function parseArguments(argv) {
  const options = { runs: 15, dir: undefined };
  for (let index = 0; index < argv.length; index += 1) {
    const [argument, value] = [argv[index], argv[index + 1]];
    if (argument === '--runs' && value && Number.isInteger(Number(value)) && Number(value) > 0) {
      options.runs = Number(value);
      index += 1;
    } else if (argument === '--dir' && value) {
      options.dir = resolve(value);
      index += 1;
    } else {
      throw new Error(`Unknown argument ${argument}. Usage: measure-bundles.mjs [--runs N] [--dir <folder>]`);
    }
  }
  return options;
}

async function measure({ runs, dir }) {
  const scratch = await mkdtemp(join(tmpdir(), 'lambkin-measure-'));
  try {
    // Built outside the checkout: nothing up the tree (no node_modules) can help a bundle load.
    const outdir = dir ?? join(scratch, 'functions');
    const manifest = dir
      ? JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8'))
      : await buildFunctions({ outdir });
    const config = await loadConfigModule();
    const names = Object.keys(manifest.functions);
    const emptyModule = join(scratch, 'empty.mjs');
    await writeFile(emptyModule, 'export {};\n');

    // Each repetition runs every (function, variant) pair once, starting at a different pair.
    const variants = { initMs: [], initMsWithSourceMaps: ['--enable-source-maps'] };
    const jobs = [
      ...names.flatMap((name) => Object.keys(variants).map((variant) => ({ name, variant }))),
      { name: '(empty module)', variant: 'initMs' },
    ];
    const samples = new Map(jobs.map((job) => [`${job.name}/${job.variant}`, []]));
    const rss = new Map(names.map((name) => [name, []]));
    for (let run = 0; run < runs; run += 1) {
      for (let index = 0; index < jobs.length; index += 1) {
        const { name, variant } = jobs[(index + run) % jobs.length];
        const file = name in manifest.functions ? join(outdir, manifest.functions[name].bundle) : emptyModule;
        const env = name in manifest.functions ? templateEnvironment(name, config, dirname(file)) : {};
        const result = await probeBundle(file, env, { nodeArguments: variants[variant] });
        if (!result.imported || result.error || result.network.length > 0) {
          throw new Error(`${name}: import failed or reached out: ${JSON.stringify(result, null, 2)}`);
        }
        samples.get(`${name}/${variant}`).push(result.initMs);
        if (variant === 'initMs' && rss.has(name)) rss.get(name).push(result.rssBytes);
      }
    }

    const functions = {};
    for (const name of names) {
      const file = join(outdir, manifest.functions[name].bundle);
      const bytes = await readFile(file);
      functions[name] = {
        bytes: bytes.length,
        gzipBytes: gzipSync(bytes, { level: 9 }).length,
        sourceMapBytes: (await stat(`${file}.map`)).size,
        initMs: summary(samples.get(`${name}/initMs`)),
        initMsWithSourceMaps: summary(samples.get(`${name}/initMsWithSourceMaps`)),
        rssMiBAfterImport: Math.round((percentile(rss.get(name), 50) / 1024 ** 2) * 10) / 10,
      };
    }
    return {
      what:
        'Bundle size, and module init time = import() of the bundle in a fresh node process on this ' +
        'machine (median/p90 over runs, ms). Not a measured Lambda cold start: Lambda adds sandbox and ' +
        'runtime start and runs on other CPUs. initMsWithSourceMaps: with NODE_OPTIONS=--enable-source-maps.',
      machine: {
        node: process.version,
        platform: `${process.platform}-${process.arch}`,
        cpu: cpus()[0]?.model ?? 'unknown',
        cpus: cpus().length,
      },
      runs,
      bundles: dir ? dir : 'built fresh from the working tree',
      functions,
      skipped: Object.keys(manifest.skipped ?? {}),
      emptyModuleInitMs: summary(samples.get('(empty module)/initMs')),
    };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  try {
    console.log(JSON.stringify(await measure(parseArguments(process.argv.slice(2))), null, 2));
  } catch (error) {
    console.error(error instanceof Error ? error.message : error);
    process.exitCode = 1;
  }
}
