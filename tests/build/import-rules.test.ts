/**
 * The architecture's import rules (.dependency-cruiser.cjs, run by `npm run lint`): they hold on
 * src/, and each one fails on a violating import. The violations are written into a scratch copy
 * of the folder layout, never into src/.
 */
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

const ROOT = process.cwd();
const DEPCRUISE = join(ROOT, 'node_modules', '.bin', 'depcruise');
const folders: string[] = [];
afterAll(() => folders.forEach((folder) => rmSync(folder, { recursive: true, force: true })));

function depcruise(cwd: string): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(
      DEPCRUISE,
      ['src', '--config', '.dependency-cruiser.cjs', '--output-type', 'err'],
      { cwd, timeout: 60_000 },
      (error, stdout, stderr) =>
        resolve({ code: typeof error?.code === 'number' ? error.code : 0, output: stdout + stderr }),
    );
  });
}

/** A scratch project: the rules, a tsconfig, and `files` (path → source). */
function project(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'lambkin-import-rules-'));
  folders.push(dir);
  copyFileSync(join(ROOT, '.dependency-cruiser.cjs'), join(dir, '.dependency-cruiser.cjs'));
  copyFileSync(join(ROOT, 'tsconfig.json'), join(dir, 'tsconfig.json'));
  for (const [path, source] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), source);
  }
  return dir;
}

const exported = (name: string): string => `export const ${name} = 1;\n`;

describe('import rules', () => {
  it('hold on src/', async () => {
    const result = await depcruise(ROOT);
    expect(result.output).toContain('no dependency violations found');
    expect(result.code).toBe(0);
  });

  it.each([
    [
      'core-is-pure',
      {
        'src/store/builds.ts': exported('store'),
        'src/core/model.ts': "export { store } from '../store/builds.js';\n",
      },
    ],
    [
      'runner-holds-no-credentials',
      {
        'src/store/builds.ts': exported('store'),
        'src/runner/run.ts': "export { store } from '../store/builds.js';\n",
      },
    ],
    [
      'runner-holds-no-credentials',
      {
        'src/github/client.ts': exported('client'),
        'src/runner/run.ts': "export { client } from '../github/client.js';\n",
      },
    ],
    [
      'pages-are-pure',
      {
        'src/aws/clients.ts': exported('aws'),
        'src/pages/page.ts': "export { aws } from '../aws/clients.js';\n",
      },
    ],
    [
      'deployed-code-never-imports-cli-or-local',
      {
        'src/local/stack.ts': exported('stack'),
        'src/handlers/webhook.ts': "export { stack } from '../local/stack.js';\n",
      },
    ],
    [
      'deployed-code-never-imports-cli-or-local',
      {
        'src/cli/program.ts': exported('program'),
        'src/controller/controller.ts': "export { program } from '../cli/program.js';\n",
      },
    ],
    [
      'no-folder-cycles',
      {
        'src/store/a.ts': "export { b } from '../github/b.js';\nexport const a = 1;\n",
        'src/github/b.ts': "import { a } from '../store/a.js';\nexport const b = a;\n",
      },
    ],
  ])('%s fails on a violating import', async (rule, files) => {
    const result = await depcruise(project(files));
    expect(result.code).not.toBe(0);
    expect(result.output).toContain(`error ${rule}`);
  });
});

describe('the cloud bundles', () => {
  it('a bundle holding the CLI or the local stack fails the build', async () => {
    const { forbiddenBundleInputs } = (await import(join(ROOT, 'scripts', 'build.mjs'))) as {
      forbiddenBundleInputs(metafile: { inputs: Record<string, unknown> }): string[];
    };
    const inputs = (paths: string[]) => ({ inputs: Object.fromEntries(paths.map((path) => [path, {}])) });
    expect(forbiddenBundleInputs(inputs(['src/handlers/webhook.ts', 'src/core/build.ts']))).toEqual([]);
    expect(
      forbiddenBundleInputs(
        inputs([
          'src/handlers/webhook.ts',
          'src/local/stack.ts',
          'src/cli/program.ts',
          'node_modules/x/index.js',
        ]),
      ),
    ).toEqual(['src/cli/program.ts', 'src/local/stack.ts']);
  });
});
