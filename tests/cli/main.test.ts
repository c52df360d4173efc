/**
 * The `lambkin` executable as a user runs it (`node --import tsx src/cli/main.ts …` in a child
 * process: stdout, stderr, exit codes), its help texts, and the command registry.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { COMMANDS } from '../../src/cli/commands/index.js';
import { createCliContext, createProgram, runCli, type CommandModule } from '../../src/cli/program.js';
import { DynamoBuildStore } from '../../src/store/builds.js';
import { createTestStorage, type TestStorage } from '../support/storage.js';
import {
  expectOneLine,
  pushRequest,
  runInProcess,
  runProcess,
  stackEnvironment,
  writeLocalStack,
} from './helpers.js';

const REPO = 'octo-org/hello-world';
let storage: TestStorage;
let builds: DynamoBuildStore;
const folders: string[] = [];

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'lambkin-main-'));
  folders.push(dir);
  return dir;
}

beforeAll(async () => {
  storage = await createTestStorage();
  builds = new DynamoBuildStore(storage.clients.documents, storage.buildsTable);
  const first = await builds.putQueuedBuild(pushRequest(), await builds.allocateNumber(REPO), {
    deadline: Date.now() + 60_000,
  });
  await builds.transition(first, { from: 'queued', to: 'running' });
  await builds.transition(first, { from: 'running', to: 'success', reason: 'all green' });
});

afterAll(() => {
  for (const dir of folders) rmSync(dir, { recursive: true, force: true });
});

describe('help', () => {
  it('lists every command with what it does, and the exit codes', async () => {
    const result = await runInProcess(['--help']);
    expect(result.code).toBe(0);
    expect(result.stderr).toBe('');
    for (const [name, summary] of [
      ['builds', 'list the latest builds of a repository'],
      ['logs', "print a build's log"],
      ['badge', "print the Markdown of a repository's build badge"],
      ['rebuild', "build a build's commit again"],
      ['cancel', 'cancel a queued or running build'],
      ['config', 'read and change global or per-repository settings'],
    ]) {
      expect(result.stdout).toMatch(new RegExp(`\\n  ${name} .*${summary}`));
    }
    expect(result.stdout).toContain('Exit codes: 0 done; 1 failed');
  });

  it.each([
    [['builds'], ['[owner/repo]', '--json', '--limit <n>']],
    [['logs'], ['<owner/repo>', '<number>', '--follow']],
    [['badge'], ['<owner/repo>', '--branch <name>', '--url', '--new-token']],
    [['rebuild'], ['<owner/repo>', '<number>', '--json']],
    [['cancel'], ['<owner/repo>', '<number>']],
    [
      ['config', 'get'],
      ['[key]', '--repo <owner/repo>', '--show-secrets', '--effective', 'secretEnv.<NAME>'],
    ],
    [
      ['config', 'set'],
      ['<key>', '<value>', '--repo <owner/repo>', 'read as JSON'],
    ],
    [
      ['config', 'unset'],
      ['<key>', '--repo <owner/repo>'],
    ],
  ])('lambkin %j --help: description, arguments, options and examples', async (command, parts) => {
    const result = await runInProcess([...command, '--help']);
    expect(result.code).toBe(0);
    for (const part of [
      ...parts,
      '--local [dataDir]',
      '--stack <name>',
      'Examples:',
      `$ lambkin ${command.join(' ')} `,
    ]) {
      expect(result.stdout).toContain(part);
    }
  });

  it('describes --stack and --region as what they do, and no help says anything is not available yet', async () => {
    const withStack = [
      ['builds'],
      ['logs'],
      ['rebuild'],
      ['cancel'],
      ['config', 'get'],
      ['config', 'set'],
      ['config', 'unset'],
      ['sweep'],
    ];
    const others = [[], ['dev'], ['run'], ['demo'], ['setup'], ['config']];
    for (const command of [...withStack, ...others]) {
      const result = await runInProcess([...command, '--help']);
      expect({ command, code: result.code }).toEqual({ command, code: 0 });
      expect({ command, help: result.stdout }).toEqual({
        command,
        help: expect.not.stringMatching(/not available|not yet|coming soon/i) as unknown,
      });
      if (!withStack.includes(command)) continue;
      // Commander wraps option descriptions: compare with the whitespace folded.
      const help = result.stdout.replace(/\s+/g, ' ');
      expect(help).toContain(
        '--stack <name> use a deployed stack by its CloudFormation name: its outputs name the tables, ' +
          'the bucket, the builder function, the public URL and the KMS key (instead of the LAMBKIN_* variables)',
      );
      expect(help).toContain('--region <region> the AWS region of the stack');
      expect(help).toContain('--stack NAME a deployed stack: its CloudFormation outputs name the tables');
      expect(help).toContain('the region from --region, AWS_REGION, AWS_DEFAULT_REGION or your AWS profile');
    }
  });
});

describe('the command registry', () => {
  it('runs a command module registered next to the built-in ones ', async () => {
    const seen: unknown[] = [];
    const helloCommand: CommandModule = {
      name: 'hello',
      register(program, context) {
        program
          .command('hello')
          .option('--port <port>')
          .action((options: { port?: string }) => {
            seen.push(options.port);
            context.stdout.write('hello started\n');
          });
      },
    };
    let stdout = '';
    const context = createCliContext({
      stdout: { write: (text) => void (stdout += text) },
      stderr: { write: () => {} },
      env: {},
    });
    expect(await runCli(['hello', '--port', '3000'], context, [...COMMANDS, helloCommand])).toBe(0);
    expect(seen).toEqual(['3000']);
    expect(stdout).toBe('hello started\n');
    // Registered commands keep the program's error handling: an unknown option is a usage error.
    expect(await runCli(['hello', '--nope'], context, [...COMMANDS, helloCommand])).toBe(2);
  });

  it('refuses two modules with one name', () => {
    const context = createCliContext({ stdout: { write: () => {} }, stderr: { write: () => {} } });
    const [first] = COMMANDS;
    expect(() => createProgram([...COMMANDS, first as CommandModule], context)).toThrow(
      `two command modules are named "${first?.name}"`,
    );
  });
});

describe('errors of the stack itself', () => {
  it('says in one line that the stack cannot be reached', async () => {
    const dataDir = writeLocalStack(
      { ...storage, backend: { ...storage.backend, dynamodbEndpoint: 'http://127.0.0.1:9' } },
      { dir: tempDir() },
    );
    const result = await runInProcess(['builds', REPO, `--local=${dataDir}`]);
    expect(result.code).toBe(1);
    expectOneLine(result.stderr);
    expect(result.stderr).toMatch(
      /^lambkin: could not reach the stack: .*ECONNREFUSED 127\.0\.0\.1:9 \(is it running\? check --local/,
    );
  });

  it('names the AWS error and where to look when a table does not exist', async () => {
    const env = { ...stackEnvironment(storage), LAMBKIN_BUILDS_TABLE: 'no-such-table' };
    const result = await runInProcess(['builds', REPO], { env });
    expect(result.code).toBe(1);
    expectOneLine(result.stderr);
    expect(result.stderr).toMatch(
      /^lambkin: AWS ResourceNotFoundException: .* \(check the LAMBKIN_\* table and bucket names\)\n$/,
    );
  });
});

describe('lambkin as a child process', () => {
  it('lists builds and prints a log with the LAMBKIN_* variables, and exits 0', async () => {
    const env = stackEnvironment(storage);
    const [list, log] = await Promise.all([
      runProcess(['builds', REPO], env),
      runProcess(['logs', REPO, '1'], env),
    ]);
    expect(list.stderr).toBe('');
    expect(list.code).toBe(0);
    const [header, row] = list.stdout.split('\n');
    expect(header).toBe('#  STATE    TARGET  COMMIT   AUTHOR   DURATION  AGE');
    expect(row).toMatch(/^1 {2}success {2}main {4}a1b2c3d {2}octocat /);
    expect(log).toEqual({
      code: 0,
      stdout: '',
      stderr: `no log yet: build ${REPO}#1: success (all green)\n`,
    });
  }, 30_000);

  it('sets and reads settings through `--local DIR` across processes', async () => {
    const dataDir = writeLocalStack(storage, { dir: tempDir() });
    const set = await runProcess(
      ['config', 'set', '--local', dataDir, 'build.branches', '["main"]', '--repo', REPO],
      {},
    );
    expect(set).toEqual({ code: 0, stdout: `set build.branches = ["main"] (${REPO})\n`, stderr: '' });
    const get = await runProcess(['config', 'get', 'build.branches', '--repo', REPO, '--local', dataDir], {});
    expect(get).toEqual({ code: 0, stdout: '[\n  "main"\n]\n', stderr: '' });
  }, 30_000);

  it('finds the local stack in .lambkin/ of the working directory', async () => {
    const cwd = tempDir();
    writeLocalStack(storage, { dir: join(cwd, '.lambkin') });
    const result = await runProcess(['builds', '--local', REPO, '--json'], {}, cwd);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect((JSON.parse(result.stdout) as { number: number }[]).map((build) => build.number)).toEqual([1]);
  }, 30_000);

  it('reports each kind of failure in one line, with the right exit code', async () => {
    const noStack = tempDir();
    const gone = spawnSync(process.execPath, ['-e', '']).pid;
    const staleDir = writeLocalStack(storage, { dir: tempDir(), pid: gone });
    const finishedEnv = stackEnvironment(storage);
    const cases: [string[], Record<string, string>, number, string | RegExp, string?][] = [
      [['buidls'], {}, 2, "lambkin: unknown command 'buidls' (Did you mean builds?)\n"],
      [['logs', REPO, 'last'], {}, 2, /^lambkin: .*"last" is not a build number/],
      [
        ['builds', REPO, '--local'],
        {},
        1,
        'lambkin: no local stack is running in .lambkin/: start one with `lambkin dev`\n',
        noStack,
      ],
      [
        ['builds', REPO, `--local=${staleDir}`],
        {},
        1,
        `lambkin: no local stack is running in ${staleDir}/ (its process ${gone} is gone): start one with \`lambkin dev\`\n`,
      ],
      [
        ['builds', REPO, '--stack', 'lambkin-prod'],
        // moto's CloudFormation where installed; otherwise a port that refuses connections.
        {
          AWS_ENDPOINT_URL_CLOUDFORMATION: process.env.LAMBKIN_TEST_MOTO_ENDPOINT ?? 'http://127.0.0.1:9',
          AWS_REGION: 'us-east-1',
          AWS_ACCESS_KEY_ID: 'test',
          AWS_SECRET_ACCESS_KEY: 'test',
          AWS_MAX_ATTEMPTS: '1',
        },
        1,
        process.env.LAMBKIN_TEST_MOTO_ENDPOINT
          ? /^lambkin: no deployed stack "lambkin-prod" in us-east-1 \(.*\): check the name, the region \(--region or AWS_REGION\) and your credentials\n$/
          : /^lambkin: could not reach the stack/,
      ],
      [
        ['builds', REPO, '--stack', 'x', '--local'],
        {},
        2,
        /^lambkin: option '--local \[dataDir\]' cannot be used with option '--stack <name>'/,
      ],
      [
        ['logs', REPO, '1'],
        { AWS_REGION: 'us-east-1' },
        1,
        /^lambkin: not configured: LAMBKIN_BUILDS_TABLE is not set; LAMBKIN_BUCKET is not set \(set the LAMBKIN_\* variables/,
      ],
      [
        ['cancel', REPO, '1'],
        finishedEnv,
        1,
        `lambkin: build ${REPO}#1 already finished (success: all green); nothing to cancel\n`,
      ],
    ];
    const results = await Promise.all(cases.map(([argv, env, , , cwd]) => runProcess(argv, env, cwd)));
    results.forEach((result, index) => {
      const [argv, , code, message] = cases[index] ?? [];
      expect({ argv, code: result.code, stdout: result.stdout }).toEqual({ argv, code, stdout: '' });
      expect({ argv, lines: result.stderr.trimEnd().split('\n').length }).toEqual({ argv, lines: 1 });
      expectOneLine(result.stderr);
      if (typeof message === 'string') expect(result.stderr).toBe(message);
      else expect(result.stderr).toMatch(message ?? /./);
    });
  }, 60_000);

  it('shows the stack trace only with LAMBKIN_DEBUG=1', async () => {
    const env = stackEnvironment(storage);
    const [plain, debug] = await Promise.all([
      runProcess(['logs', REPO, '404'], env),
      runProcess(['logs', REPO, '404'], { ...env, LAMBKIN_DEBUG: '1' }),
    ]);
    const line = `lambkin: build ${REPO}#404 was not found. Check the repository name and build number.\n`;
    expect(plain).toEqual({ code: 1, stdout: '', stderr: line });
    expect(debug.code).toBe(1);
    expect(debug.stderr.startsWith(line)).toBe(true);
    expect(debug.stderr).toMatch(/\n\s+at .*logs\.ts/);
  }, 30_000);

  it('prints the help on stderr and exits 2 without a command', async () => {
    const result = await runProcess([], {});
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(/^Usage: lambkin \[options\] \[command\]/);
  }, 30_000);
});
