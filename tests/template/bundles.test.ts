/**
 * The bundles template.yaml deploys: every function's CodeUri holds its handler (built first with
 * `npm run build` when missing or older than its sources), and each function's role grants every
 * AWS action its own bundle's SDK calls need (read from esbuild's metafile, scripts/iam-actions.ts).
 * The check of what the tests really sent, across all functions, is `npm run check:iam`.
 */
import { execFile } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { FUNCTION_CONFIG, type FunctionName } from '../../src/config.js';
import {
  actionsOfBundle,
  readMetafile,
  type Metafile,
  type RequiredAction,
} from '../../scripts/iam-actions.js';
import {
  FUNCTION_RESOURCES,
  REPO_ROOT,
  functionProperty,
  grantsOf,
  isGranted,
  loadTemplate,
  properties,
} from '../support/template.js';

const run = promisify(execFile);
const template = loadTemplate();
const functions = Object.keys(FUNCTION_CONFIG) as FunctionName[];
// The build's own list of entry files (plain .mjs tooling, loaded as data).
const { FUNCTIONS: ENTRIES } = (await import(
  pathToFileURL(join(REPO_ROOT, 'scripts', 'build.mjs')).href
)) as {
  FUNCTIONS: Record<FunctionName, string>;
};

/**
 * Actions a function's bundle holds code for but never sends, with the reason. The bundle check
 * works per module: a class is bundled whole when one of its methods is used. Each entry must
 * still be in the bundle (else it is stale) and must not be granted (else it would be pointless).
 */
const NOT_SENT_BY: Partial<Record<FunctionName, Record<string, string>>> = {
  webhook: {
    'codebuild:StartBuild':
      "CodeBuildRemoteRunner is bundled to stop a superseded build's CodeBuild runs; the webhook starts none",
    'codebuild:BatchGetBuilds':
      "CodeBuildRemoteRunner is bundled to stop a superseded build's CodeBuild runs; the webhook looks none up",
  },
  codebuildEvents: {
    'lambda:InvokeFunction':
      "the controller's dependencies are bundled for finishing; finishing a CodeBuild run invokes no function",
    'sts:AssumeRole':
      "the controller's dependencies are bundled for finishing; finishing signs no upload form or deploy grant",
  },
  // codebuildSweeper (src/wiring.ts) finishes a lost run with the controller's dependencies only when
  // the sweeper has the bucket and the settings table; FUNCTION_CONFIG.sweeper gives it neither, so
  // in the cloud it only looks the run up and stops it (CODEBUILD_ACTIONS_OF).
  sweeper: Object.fromEntries(
    [
      'dynamodb:BatchGetItem',
      'kms:Decrypt',
      'lambda:InvokeFunction',
      's3:DeleteObject',
      's3:GetObject',
      's3:ListBucket',
      's3:PutObject',
      'sts:AssumeRole',
    ].map((action) => [
      action,
      'bundled for finishing lost CodeBuild runs, which needs LAMBKIN_BUCKET and LAMBKIN_SETTINGS_TABLE the sweeper does not get',
    ]),
  ),
  logs: {
    'dynamodb:PutItem': 'DynamoBuildStore is bundled for getBuild; the log route never writes a build',
    'dynamodb:UpdateItem': 'DynamoBuildStore is bundled for getBuild; the log route never writes a build',
    's3:PutObject': 'S3LogStore is bundled for readLog and presignGet; the log route never writes',
  },
  notifier: {
    'dynamodb:PutItem':
      'the build and settings stores are bundled for reads and recordSlackMessage; the notifier puts no item',
    'secretsmanager:GetSecretValue':
      'src/aws/secrets.ts is bundled for loadFunctionConfig; the notifier has no LAMBKIN_SECRET_ARN',
  },
};

function codeFolder(name: FunctionName): string {
  return join(REPO_ROOT, String(properties(template, FUNCTION_RESOURCES[name]).CodeUri));
}

/** The handler's module file: `index.handler` → index.mjs (or .js / .cjs) in the CodeUri. */
function handlerFile(name: FunctionName): string | undefined {
  const handler = String(functionProperty(template, FUNCTION_RESOURCES[name], 'Handler'));
  const module = handler.slice(0, handler.lastIndexOf('.'));
  return ['.mjs', '.js', '.cjs']
    .map((extension) => join(codeFolder(name), `${module}${extension}`))
    .find((path) => existsSync(path));
}

function metaPath(name: FunctionName): string {
  return join(codeFolder(name), 'meta.json');
}

/** Missing, or older than one of the sources it was built from. */
function needsBuild(name: FunctionName): boolean {
  const bundle = handlerFile(name);
  if (!bundle || !existsSync(metaPath(name))) return true;
  const builtAt = statSync(bundle).mtimeMs;
  const meta = readMetafile(metaPath(name));
  return Object.keys(meta.inputs).some((input) => {
    if (!input.startsWith('src/')) return false;
    const source = join(REPO_ROOT, input);
    return !existsSync(source) || statSync(source).mtimeMs > builtAt;
  });
}

describe('function bundles', () => {
  const metas = new Map<FunctionName, Metafile>();
  const required = new Map<FunctionName, { required: RequiredAction[]; operatorOnly: RequiredAction[] }>();

  beforeAll(async () => {
    const stale = functions.filter(needsBuild);
    if (stale.length > 0) {
      console.log(`Building the bundles first (npm run build): ${stale.join(', ')} missing or out of date.`);
      await run('npm', ['run', 'build', '--silent'], { cwd: REPO_ROOT, timeout: 240_000 });
    }
    for (const name of functions) {
      if (!existsSync(metaPath(name))) continue;
      const meta = readMetafile(metaPath(name));
      metas.set(name, meta);
      required.set(name, actionsOfBundle(meta, REPO_ROOT));
    }
  }, 300_000);

  it.each(functions)('%s: the CodeUri folder holds the handler module, which exports handler', (name) => {
    const file = handlerFile(name);
    expect([name, file !== undefined]).toEqual([name, true]);
    const meta = metas.get(name);
    expect(meta).toBeDefined();
    const handler = String(functionProperty(template, FUNCTION_RESOURCES[name], 'Handler'));
    const exported = handler.slice(handler.lastIndexOf('.') + 1);
    const outputs = Object.entries(meta?.outputs ?? {}).filter(([path]) => /\/index\.(m|c)?js$/.test(path));
    expect(outputs).toHaveLength(1);
    expect(outputs[0]?.[1].exports).toContain(exported);
    // Each handler is its own file under src/handlers (the builder's is controller.ts).
    expect(ENTRIES[name]).toMatch(/^src\/handlers\/[a-z-]+\.ts$/);
    expect(outputs[0]?.[1].entryPoint).toBe(ENTRIES[name]);
  });

  it.each(functions)("%s: its role grants every action its bundle's SDK calls need", (name) => {
    const needed = required.get(name)?.required ?? [];
    const grants = grantsOf(template, FUNCTION_RESOURCES[name]);
    const exempt = NOT_SENT_BY[name] ?? {};
    const missing = needed
      .filter(({ action }) => !(action in exempt) && !isGranted(grants, action))
      .map(({ action, because }) => `${action} (${because.join('; ')})`);
    expect(missing).toEqual([]);
  });

  it.each(functions)('%s: every exemption is still in the bundle and is not granted', (name) => {
    const needed = (required.get(name)?.required ?? []).map(({ action }) => action);
    const grants = grantsOf(template, FUNCTION_RESOURCES[name]);
    for (const action of Object.keys(NOT_SENT_BY[name] ?? {})) {
      expect([action, needed.includes(action), isGranted(grants, action)]).toEqual([action, true, false]);
    }
  });

  it.each(functions)('%s: no operator-only action is granted, though the bundle may hold it', (name) => {
    const grants = grantsOf(template, FUNCTION_RESOURCES[name]);
    for (const { action } of required.get(name)?.operatorOnly ?? []) {
      expect([action, isGranted(grants, action)]).toEqual([action, false]);
    }
  });

  it('sees the SDK use it expects in the bundles (the analysis itself works)', () => {
    const actions = (name: FunctionName) => (required.get(name)?.required ?? []).map(({ action }) => action);
    expect(actions('webhook')).toEqual(expect.arrayContaining(['dynamodb:PutItem', 'lambda:InvokeFunction']));
    expect(actions('webhook')).not.toContain('s3:PutObject');
    expect(actions('builder')).toEqual(
      expect.arrayContaining(['s3:PutObject', 's3:ListBucket', 'kms:Decrypt', 'lambda:InvokeFunction']),
    );
    expect(actions('runner')).toEqual([]);
    expect(actions('notifier')).toEqual(
      expect.arrayContaining(['dynamodb:UpdateItem', 's3:PutObject', 'kms:Decrypt', 'sns:Publish']),
    );
    // Notifications left the builder: the stream's function sends them.
    expect(actions('builder')).not.toContain('sns:Publish');
    // Builds on CodeBuild: started and stopped by the builder, their input deleted when they end.
    expect(actions('builder')).toEqual(
      expect.arrayContaining(['codebuild:StartBuild', 'codebuild:StopBuild', 's3:DeleteObject']),
    );
    expect((required.get('builder')?.operatorOnly ?? []).map(({ action }) => action)).toContain(
      'kms:Encrypt',
    );
  });

  it('bundles neither the local stack nor the CLI into a function', () => {
    for (const [name, meta] of metas) {
      const inputs = Object.values(meta.outputs).flatMap((output) =>
        Object.entries(output.inputs)
          .filter(([, input]) => input.bytesInOutput > 0)
          .map(([path]) => path),
      );
      expect([name, inputs.filter((path) => /^src\/(local|cli)\//.test(path))]).toEqual([name, []]);
    }
  });
});
