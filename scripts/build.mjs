#!/usr/bin/env node
/**
 * Bundles each deployed function into one small ES module with esbuild:
 *
 *   dist/functions/<name>/index.mjs       the handler (SAM: CodeUri dist/functions/<name>/, Handler index.handler)
 *   dist/functions/<name>/index.mjs.map   its source map, without the sources (small; the stack traces
 *                                         name src/ files and lines when NODE_OPTIONS=--enable-source-maps)
 *   dist/functions/<name>/meta.json       esbuild's metafile: every input the bundle holds, for checks
 *   dist/functions/builder/runner.mjs     the runner program, which the builder uploads for CodeBuild runs
 *   dist/functions/manifest.json          what was built and what was skipped
 *
 * and the `lambkin` command as installed from a packed tarball (`npm pack`):
 *
 *   dist/cli/lambkin.mjs                  the CLI, its dependencies bundled as the functions' are (it
 *                                         starts in 0.4 s instead of 0.7-0.8 s: no module resolution and
 *                                         no CommonJS export scan for hundreds of files); only dynalite
 *                                         stays in node_modules (it loads a native module), and s3rver,
 *                                         which runs as a script of its own, is found there at run time
 *   dist/cli/runner.mjs                   the runner as one self-contained file, started by the local
 *                                         stack as a process (src/controller/runner-program.ts)
 *
 *   node scripts/build.mjs [--outdir <dir>] [--cli-outdir <dir>] [--require-all]
 *
 * Each folder is complete on its own: everything but Node's built-in modules is inside index.mjs
 * (the build fails otherwise), so a Lambda can run it with nothing else in its code folder.
 * Functions whose entry file does not exist yet are skipped and listed; `--require-all` (for a
 * deployment) makes a missing entry an error.
 *
 * This module only defines things when imported (measure-bundles.mjs and the tests use it); esbuild
 * itself is loaded on first use so importing stays cheap.
 */
import { Buffer } from 'node:buffer';
import console from 'node:console';
import { existsSync } from 'node:fs';
import { mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { builtinModules } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import process from 'node:process';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const DEFAULT_OUTDIR = join(ROOT, 'dist', 'functions');
export const DEFAULT_CLI_OUTDIR = join(ROOT, 'dist', 'cli');

/** The CLI's entry and the runner process's entry (the local stack starts the runner from the latter). */
export const CLI_ENTRY = 'src/cli/main.ts';
export const RUNNER_PROGRAM_ENTRY = 'src/runner/main.ts';
/** The oldest Node.js the CLI supports (package.json engines). */
export const CLI_TARGET = 'node20';

/**
 * The deployed functions and their entry points (each exports `handler`). Adding a function is one
 * line here; the names must match FUNCTION_CONFIG in src/config.ts (the build checks it).
 */
export const FUNCTIONS = {
  webhook: 'src/handlers/webhook.ts',
  builder: 'src/handlers/controller.ts',
  runner: 'src/handlers/runner.ts',
  sweeper: 'src/handlers/sweeper.ts',
  failure: 'src/handlers/failure.ts',
  logs: 'src/handlers/logs.ts',
  notifier: 'src/handlers/notifier.ts',
  codebuildEvents: 'src/handlers/codebuild-events.ts',
};

/**
 * The function that starts CodeBuild runs carries the runner beside its handler: the controller
 * uploads it to the bucket once (`runner/<sha256>.mjs`) and CodeBuild's buildspec downloads it.
 */
export const RUNNER_BESIDE = { function: 'builder', file: 'runner.mjs' };

/** Lambda's runtime is nodejs22.x; the same bundles also load on Node 20 (this machine, CI). */
export const TARGET = 'node22';

/**
 * Node's own modules are the only thing a bundle may import from outside itself. CommonJS
 * dependencies in the bundle call `require('fs')` and the like, which an ES module does not have,
 * hence the banner's `require`; nothing else resolves through it (checked on the metafile).
 */
const BANNER =
  "import { createRequire as __lambkinCreateRequire } from 'node:module';\n" +
  'const require = __lambkinCreateRequire(import.meta.url);';

/**
 * esbuild warnings that are known to be harmless, each with the reason. Every other warning fails
 * the build: most of them (an import that resolves to undefined, a require that could not be
 * bundled, a `typeof` that is always false) mean code that breaks only when deployed.
 * Entries: { id: esbuild's message id, file: RegExp on the input path, why: '…' }.
 */
const HARMLESS_WARNINGS = [];

const builtins = new Set(builtinModules.flatMap((name) => [name, `node:${name}`]));

export function isBuiltinModule(path) {
  return builtins.has(path) || (path.startsWith('node:') && builtins.has(path.slice(5)));
}

/** esbuild options of one function's bundle (exported so measurements use exactly these). */
export function bundleOptions(entry, outdir) {
  return {
    absWorkingDir: ROOT,
    entryPoints: [{ in: entry, out: 'index' }],
    outdir,
    outExtension: { '.js': '.mjs' },
    bundle: true,
    // The AWS SDK is bundled too, not left to the copy the Lambda runtime ships: that copy's
    // version changes when AWS updates the runtime, so an external SDK would run in production
    // with a version no test has seen. Bundled, tree-shaken and minified it also loads faster
    // than the runtime's whole-package CommonJS copy.
    packages: 'bundle',
    platform: 'node',
    target: TARGET,
    format: 'esm',
    // ES module builds of dependencies first (the AWS SDK ships both): they tree-shake, CommonJS
    // does not.
    mainFields: ['module', 'main'],
    minify: true,
    // Errors name themselves after their class (`this.name = new.target.name`) and Lambda reports
    // error.name as the errorType: minified class names would turn those into `e`, `Xt`, ….
    keepNames: true,
    treeShaking: true,
    sourcemap: true,
    sourcesContent: false,
    banner: { js: BANNER },
    metafile: true,
    logLevel: 'silent',
    // Lambda passes no NODE_ENV; fixing it lets libraries drop their development-only branches.
    define: { 'process.env.NODE_ENV': '"production"' },
  };
}

function isHarmless(warning) {
  const file = warning.location?.file ?? '';
  return HARMLESS_WARNINGS.some((allowed) => allowed.id === warning.id && allowed.file.test(file));
}

function describeMessage(message) {
  const where = message.location
    ? `${message.location.file}:${message.location.line}:${message.location.column}: `
    : '';
  return `${where}${message.text}${message.id ? ` [${message.id}]` : ''}`;
}

/** Imports a bundle reaches outside itself: must be Node built-ins only. */
function externalImports(metafile) {
  const external = new Set();
  for (const output of Object.values(metafile.outputs)) {
    for (const imported of output.imports) if (imported.external) external.add(imported.path);
  }
  return [...external].sort();
}

/**
 * Code that must never be deployed: the CLI and the local stack (servers, the GitHub stand-in). The
 * import rules (.dependency-cruiser.cjs) keep deployed folders from importing them; this checks what
 * each bundle really holds.
 */
const NEVER_DEPLOYED = /^src\/(cli|local|bench)\//;

/** The inputs of a bundle's metafile that must never be deployed, sorted. */
export function forbiddenBundleInputs(metafile) {
  return Object.keys(metafile.inputs)
    .filter((input) => NEVER_DEPLOYED.test(input))
    .sort();
}

/**
 * Bundles one function into `outdir/<name>/`. Builds into a fresh folder next to it and swaps it in,
 * so a reader never sees a half-written bundle or files left from an older build.
 */
async function buildOne(esbuild, name, entry, outdir) {
  const target = join(outdir, name);
  const staging = join(outdir, `.${name}.building-${process.pid}`);
  await rm(staging, { recursive: true, force: true });
  try {
    let result;
    try {
      result = await esbuild.build(bundleOptions(entry, staging));
    } catch (error) {
      // esbuild throws on errors, with the messages attached.
      const messages = error.errors?.map(describeMessage) ?? [String(error)];
      throw new Error(`${name}: esbuild failed:\n  ${messages.join('\n  ')}`, { cause: error });
    }
    const warnings = result.warnings.filter((warning) => !isHarmless(warning));
    if (warnings.length > 0) {
      throw new Error(
        `${name}: esbuild warnings (add one to HARMLESS_WARNINGS only with a reason):\n  ` +
          warnings.map(describeMessage).join('\n  '),
      );
    }
    const forbidden = forbiddenBundleInputs(result.metafile);
    if (forbidden.length > 0) {
      throw new Error(
        `${name}: the bundle holds code that is never deployed (${forbidden.join(', ')}); ` +
          'pass what it needs in from the handler instead of importing the CLI or the local stack',
      );
    }
    const notBuiltin = externalImports(result.metafile).filter((path) => !isBuiltinModule(path));
    if (notBuiltin.length > 0) {
      throw new Error(
        `${name}: the bundle imports from outside itself (${notBuiltin.join(', ')}); ` +
          'it would fail in a Lambda folder that holds only the bundle',
      );
    }
    await writeFile(join(staging, 'meta.json'), JSON.stringify(result.metafile));
    await rm(target, { recursive: true, force: true });
    await rename(staging, target);
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
  const { size } = await stat(join(target, 'index.mjs'));
  return { entry, bundle: `${name}/index.mjs`, bytes: size };
}

/**
 * The function names FUNCTION_CONFIG declares. src/config.ts is TypeScript, so it is bundled in
 * memory and imported from a data: URL (no tsx, no files written).
 */
export async function loadConfigModule() {
  const esbuild = await import('esbuild');
  const result = await esbuild.build({
    absWorkingDir: ROOT,
    entryPoints: ['src/config.ts'],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: TARGET,
    write: false,
    logLevel: 'silent',
  });
  const [output] = result.outputFiles;
  if (!output) throw new Error('bundling src/config.ts produced nothing');
  return import(`data:text/javascript;base64,${Buffer.from(output.contents).toString('base64')}`);
}

/**
 * Builds every function whose entry exists. Returns the manifest (also written to
 * `outdir/manifest.json`); throws with every failure listed when any bundle could not be built.
 */
export async function buildFunctions({ outdir = DEFAULT_OUTDIR, requireAll = false, log = () => {} } = {}) {
  const esbuild = await import('esbuild');
  const { FUNCTION_CONFIG } = await loadConfigModule();
  const declared = Object.keys(FUNCTION_CONFIG).sort();
  const listed = Object.keys(FUNCTIONS).sort();
  if (declared.join() !== listed.join()) {
    throw new Error(
      `scripts/build.mjs FUNCTIONS (${listed.join(', ')}) must name the same functions as ` +
        `FUNCTION_CONFIG in src/config.ts (${declared.join(', ')})`,
    );
  }
  await mkdir(outdir, { recursive: true });
  const skipped = {};
  const jobs = [];
  for (const [name, entry] of Object.entries(FUNCTIONS)) {
    if (!existsSync(join(ROOT, entry))) {
      skipped[name] = { entry, reason: 'entry file does not exist' };
      continue;
    }
    jobs.push(buildOne(esbuild, name, entry, outdir).then((built) => [name, built]));
  }
  const settled = await Promise.allSettled(jobs);
  const failures = settled.filter((job) => job.status === 'rejected').map((job) => job.reason.message);
  if (requireAll) {
    for (const [name, { entry }] of Object.entries(skipped))
      failures.push(`${name}: ${entry} does not exist`);
  }
  if (failures.length > 0) throw new Error(`The build failed:\n${failures.join('\n')}`);
  const functions = Object.fromEntries(settled.map((job) => job.value));
  if (functions[RUNNER_BESIDE.function]) {
    await writeFile(join(outdir, RUNNER_BESIDE.function, RUNNER_BESIDE.file), await bundleRunnerProgram());
  }
  // A folder of a function that is skipped now or no longer listed is stale: a deployment
  // would otherwise ship an old bundle without anyone noticing.
  for (const entry of await readdir(outdir, { withFileTypes: true })) {
    if (entry.isDirectory() && !entry.name.startsWith('.') && !(entry.name in functions)) {
      await rm(join(outdir, entry.name), { recursive: true, force: true });
    }
  }
  const manifest = { target: TARGET, esbuild: esbuild.version, functions, skipped };
  await writeFile(join(outdir, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
  for (const [name, built] of Object.entries(functions)) {
    log(`${name.padEnd(8)} ${(built.bytes / 1024).toFixed(0).padStart(6)} KiB  ${built.bundle}`);
  }
  for (const [name, { entry }] of Object.entries(skipped)) log(`${name.padEnd(8)} skipped: no ${entry}`);
  return manifest;
}

/**
 * The runner program for a local process: the runner and everything it imports in one ES module,
 * built as the Lambda runner bundle is but for the oldest supported Node.js. Returned as bytes: a
 * checkout's local stack builds it from the sources at start (src/controller/runner-program.ts).
 */
export async function bundleRunnerProgram() {
  const esbuild = await import('esbuild');
  const result = await esbuild.build({
    ...bundleOptions(RUNNER_PROGRAM_ENTRY, join(ROOT, 'dist', 'unused')),
    entryPoints: [RUNNER_PROGRAM_ENTRY],
    target: CLI_TARGET,
    sourcemap: false,
    metafile: false,
    write: false,
  });
  const [output] = result.outputFiles;
  if (!output) throw new Error(`bundling ${RUNNER_PROGRAM_ENTRY} produced nothing`);
  return output.contents;
}

/** What the CLI bundle leaves to node_modules: dynalite loads a native module (classic-level). */
export const CLI_EXTERNAL = ['dynalite'];

/**
 * The CLI as installed: `lambkin.mjs` (bundled with the functions' options, CLI_EXTERNAL aside) and
 * the self-contained `runner.mjs` beside it. Written to a staging folder and swapped in whole.
 */
export async function buildCli({ outdir = DEFAULT_CLI_OUTDIR, log = () => {} } = {}) {
  const esbuild = await import('esbuild');
  const staging = `${outdir}.building-${process.pid}`;
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { recursive: true });
  try {
    const {
      entryPoints: _entry,
      outdir: _outdir,
      outExtension: _extension,
      ...options
    } = bundleOptions(CLI_ENTRY, staging);
    const cli = await esbuild.build({
      ...options,
      entryPoints: [CLI_ENTRY],
      outfile: join(staging, 'lambkin.mjs'),
      target: CLI_TARGET,
      external: CLI_EXTERNAL,
      metafile: false,
    });
    const warnings = cli.warnings.filter((warning) => !isHarmless(warning));
    if (warnings.length > 0) {
      throw new Error(`cli: esbuild warnings:\n  ${warnings.map(describeMessage).join('\n  ')}`);
    }
    await writeFile(join(staging, 'runner.mjs'), await bundleRunnerProgram());
    await rm(outdir, { recursive: true, force: true });
    await rename(staging, outdir);
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
  for (const name of ['lambkin.mjs', 'runner.mjs']) {
    const { size } = await stat(join(outdir, name));
    log(`cli      ${(size / 1024).toFixed(0).padStart(6)} KiB  ${name}`);
  }
}

function parseArguments(argv) {
  const options = { outdir: DEFAULT_OUTDIR, cliOutdir: DEFAULT_CLI_OUTDIR, requireAll: false };
  for (let index = 0; index < argv.length; index += 1) {
    const argument = argv[index];
    if (argument === '--outdir' && argv[index + 1]) options.outdir = resolve(argv[(index += 1)]);
    else if (argument === '--cli-outdir' && argv[index + 1]) options.cliOutdir = resolve(argv[(index += 1)]);
    else if (argument === '--require-all') options.requireAll = true;
    else
      throw new Error(
        `Unknown argument ${argument}. Usage: build.mjs [--outdir <dir>] [--cli-outdir <dir>] [--require-all]`,
      );
  }
  return options;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  try {
    const options = parseArguments(process.argv.slice(2));
    const log = (line) => console.log(line);
    await buildFunctions({ ...options, log });
    await buildCli({ outdir: options.cliOutdir, log });
  } catch (error) {
    console.error(error instanceof Error ? error.message : error);
    process.exitCode = 1;
  }
}
