/**
 * docs/deploy.md as a newcomer runs it, for every step that can run without AWS: the `lambkin`
 * commands are read out of the page and run as written (placeholders filled in), against the
 * GitHub API stand-in (step 4) and, where moto_server is installed, a stack of moto's
 * CloudFormation whose outputs name moto tables, a bucket and a KMS key (step 5). The shell
 * snippets around them are checked for what they feed those commands.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { CloudFormationClient, CreateStackCommand } from '@aws-sdk/client-cloudformation';
import { CreateKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { parseCloudSecret } from '../../src/aws/secrets.js';
import { STACK_OUTPUTS } from '../../src/cli/stack-outputs.js';
import {
  createGitRepo,
  startGitHubServer,
  type GitHubStandIn,
  type GitRepo,
} from '../support/github-server.js';
import { createTestStorage } from '../support/storage.js';
import { loadTemplate } from '../support/template.js';
import { requireTool } from '../support/tools.js';
import { runInProcess } from './helpers.js';

const PAGE = readFileSync(join(process.cwd(), 'docs/deploy.md'), 'utf8');
const TOKEN = 'ghp_deployDoc000000000000000000000000';
const WEBHOOK_URL = 'https://abc123.execute-api.eu-west-1.amazonaws.com/webhook';
const WEBHOOK_SECRET = '5f0c8d1e2b3a49687766554433221100ffeeddccbbaa99887766554433221100';

/** The text of each ```sh block under the `## <heading>` that starts with `title`. */
function shellBlocks(title: string): string[] {
  const start = PAGE.indexOf(`\n## ${title}`);
  if (start === -1) throw new Error(`docs/deploy.md has no section "${title}"`);
  const next = PAGE.indexOf('\n## ', start + 1);
  const section = PAGE.slice(start, next === -1 ? undefined : next);
  return [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((match) => match[1] ?? '');
}

/** The commands of a block: continued lines joined, comments dropped. */
function commandsOf(block: string): string[] {
  return block
    .replace(/\\\n\s*/g, '')
    .split('\n')
    .map((line) => line.replace(/\s+#.*$/, '').trim())
    .filter((line) => line !== '');
}

interface LambkinCommand {
  env: Record<string, string>;
  argv: string[];
}

/**
 * `[NAME=value …] npm run lambkin -- <argv>` with the placeholders replaced; quotes would need a
 * real shell, so a line with any is refused (the test then says so instead of guessing).
 */
function lambkinCommand(line: string, values: Record<string, string>): LambkinCommand {
  let filled = line;
  for (const [placeholder, value] of Object.entries(values)) filled = filled.split(placeholder).join(value);
  if (/['"`]/.test(filled)) throw new Error(`cannot run without a shell: ${line}`);
  const words = filled.split(/\s+/);
  const at = words.findIndex(
    (word, index) => words.slice(index, index + 4).join(' ') === 'npm run lambkin --',
  );
  if (at === -1) throw new Error(`not a lambkin command: ${line}`);
  const env: Record<string, string> = {};
  for (const word of words.slice(0, at)) {
    const assignment = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(word);
    if (!assignment) throw new Error(`"${word}" before npm run is not a variable: ${line}`);
    env[assignment[1] ?? ''] = assignment[2] ?? '';
  }
  const unfilled = words.slice(at + 4).find((word) => /[<>$]/.test(word));
  if (unfilled) throw new Error(`placeholder ${unfilled} has no value in the test: ${line}`);
  return { env, argv: words.slice(at + 4) };
}

function lambkinLines(title: string): string[] {
  return shellBlocks(title)
    .flatMap(commandsOf)
    .filter((line) => line.includes('npm run lambkin --'));
}

/** Runs `node -p <program>` with `stdin`, as the page's pipe does. */
function nodePrint(program: string, stdin: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(process.execPath, ['-p', program], (error, stdout) =>
      error ? reject(error) : resolve(stdout.trim()),
    );
    child.stdin?.end(stdin);
  });
}

describe('docs/deploy.md, step 2 (the secret)', () => {
  it('creates a secret the functions can read, with the webhook secret of step 4', () => {
    const [create] = shellBlocks('2. Create the secret')
      .flatMap(commandsOf)
      .filter((line) => line.includes('create-secret'));
    const quoted = /--secret-string "((?:[^"\\]|\\.)*)"/.exec(create ?? '')?.[1];
    expect(quoted).toBeDefined();
    // What the shell passes on: \" becomes ", $WEBHOOK_SECRET its value.
    const text = (quoted ?? '').replace(/\\"/g, '"').replace('$WEBHOOK_SECRET', WEBHOOK_SECRET);
    expect(
      parseCloudSecret('arn:aws:secretsmanager:eu-west-1:123456789012:secret:lambkin-AbCdEf', text),
    ).toEqual({
      mode: 'token',
      githubToken: '<your token>',
      webhookSecrets: [WEBHOOK_SECRET],
    });
    expect(create).toContain('--query ARN --output text');
  });
});

describe('docs/deploy.md, step 3 (the deploy)', () => {
  const template = loadTemplate();

  it('lists every parameter of template.yaml with its default', () => {
    const section = PAGE.slice(PAGE.indexOf('\n## 3. Deploy'), PAGE.indexOf('\n## 4.'));
    const rows = [...section.matchAll(/^\| `(\w+)` +\| ([^|]+?) +\|/gm)].map(([, name, shown]) => [
      name,
      shown,
    ]);
    const expected = Object.entries(template.Parameters).map(([name, parameter]) => {
      const fallback = parameter.Default;
      const shown =
        fallback === undefined
          ? '(required)'
          : fallback === ''
            ? '(empty)'
            : typeof fallback === 'number' || /^\d+$/.test(fallback)
              ? String(fallback)
              : `\`${fallback}\``;
      return [name, shown];
    });
    expect(rows).toEqual(expected);
  });

  it('names outputs the template has, and --stack reads outputs the template has', () => {
    const named = ['WebhookUrl', 'SettingsKeyId', 'LogsBucketName'];
    for (const output of named) expect(PAGE).toContain(output);
    for (const output of [...named, ...Object.values(STACK_OUTPUTS)]) {
      expect({ output, inTemplate: output in template.Outputs }).toEqual({ output, inTemplate: true });
    }
  });
});

describe('docs/deploy.md, step 4 (the webhook)', () => {
  let github: GitHubStandIn;
  let git: GitRepo;

  beforeAll(async () => {
    git = await createGitRepo({ 'README.md': '# deployed\n' });
    github = await startGitHubServer({ token: TOKEN });
    github.addRepository({ owner: 'acme', name: 'deployed', gitDir: git.dir });
  });

  afterAll(async () => {
    await github.close();
    await rm(git.dir, { recursive: true, force: true });
  });

  it("gives the hook the stack's own secret, as written", async () => {
    const lines = lambkinLines('4. Add the webhook');
    expect(lines).toHaveLength(1);
    const { env, argv } = lambkinCommand(lines[0] ?? '', {
      '<your token>': TOKEN,
      $WEBHOOK_SECRET: WEBHOOK_SECRET,
      $WEBHOOK_URL: WEBHOOK_URL,
      'owner/repo': 'acme/deployed',
    });
    expect(env).toEqual({ GITHUB_TOKEN: TOKEN, LAMBKIN_WEBHOOK_SECRET: WEBHOOK_SECRET });
    const run = await runInProcess(argv, { env: { ...env, GITHUB_API_URL: github.url } });
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toBe(
      `created webhook 1 of acme/deployed: ${WEBHOOK_URL} (push, pull_request), secret set\n`,
    );
    // The secret the stack holds (step 2), not a fresh one the stack would refuse deliveries with.
    expect(github.hooksOf('acme/deployed')).toEqual([
      expect.objectContaining({
        active: true,
        events: ['push', 'pull_request'],
        config: { url: WEBHOOK_URL, content_type: 'json', insecure_ssl: '0', secret: WEBHOOK_SECRET },
      }),
    ]);
  });

  it('reads the webhook secret back from the stored secret, the newest while rotating', async () => {
    const readBack = shellBlocks('4. Add the webhook')
      .flatMap(commandsOf)
      .find((line) => line.includes('get-secret-value'));
    const program = /node -p '([^']*)'/.exec(readBack ?? '')?.[1];
    expect(program).toBeDefined();
    const stored = (webhookSecret: string) => JSON.stringify({ githubToken: TOKEN, webhookSecret });
    await expect(nodePrint(program ?? '', stored(WEBHOOK_SECRET))).resolves.toBe(WEBHOOK_SECRET);
    await expect(nodePrint(program ?? '', stored(`${WEBHOOK_SECRET},old-secret`))).resolves.toBe(
      WEBHOOK_SECRET,
    );
  });
});

describe('docs/deploy.md, step 5 (settings through --stack)', () => {
  const moto = process.env.LAMBKIN_TEST_MOTO_ENDPOINT;
  if (!requireTool('moto_server', "deploy.md's --stack commands against moto", moto !== undefined) || !moto)
    return;
  const endpoint = moto;
  /** As step 5 says: a region in AWS_DEFAULT_REGION, the stack found by name. */
  const env = {
    AWS_DEFAULT_REGION: 'us-east-1',
    AWS_ENDPOINT_URL: endpoint,
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
  };

  beforeAll(async () => {
    const storage = await createTestStorage({
      name: 'moto',
      dynamodbEndpoint: endpoint,
      s3Endpoint: endpoint,
    });
    const kms = new KMSClient({ endpoint, region: 'us-east-1' });
    const key = await kms.send(new CreateKeyCommand({ Description: 'deploy.md settings key' }));
    kms.destroy();
    const cloudformation = new CloudFormationClient({ endpoint, region: 'us-east-1' });
    const outputs = {
      BuildsTableName: storage.buildsTable,
      SettingsTableName: storage.settingsTable,
      LogsBucketName: storage.bucket,
      BuilderFunctionName: 'lambkin-BuilderFunction-1',
      ApiUrl: 'https://abc123.execute-api.us-east-1.amazonaws.com',
      SettingsKeyId: key.KeyMetadata?.KeyId ?? '',
    };
    await cloudformation.send(
      new CreateStackCommand({
        // The name the page's commands use.
        StackName: 'lambkin',
        TemplateBody: JSON.stringify({
          Resources: { Handle: { Type: 'AWS::CloudFormation::WaitConditionHandle' } },
          Outputs: Object.fromEntries(
            Object.entries(outputs).map(([name, value]) => [name, { Value: value }]),
          ),
        }),
      }),
    );
    cloudformation.destroy();
  });

  it('runs every lambkin command of steps 5 and its deploy roles as written', async () => {
    const lines = lambkinLines('5. Settings');
    const deployRoles = PAGE.slice(PAGE.indexOf('### Deploys with AWS access'));
    const roleLine = /`(npm run lambkin -- config set [^`]*deploy\.roleArn[^`]*)`/.exec(deployRoles)?.[1];
    expect(lines.length).toBeGreaterThanOrEqual(3);
    expect(roleLine).toBeDefined();
    const values = {
      'owner/repo': 'acme/deployed',
      '<value>': 'npm_secretTokenValue',
      '<arn>': 'arn:aws:iam::123456789012:role/lambkin-deploy',
    };
    for (const line of [...lines, roleLine ?? '']) {
      const command = lambkinCommand(line, values);
      const run = await runInProcess(command.argv, { env: { ...command.env, ...env } });
      expect({ line, code: run.code, stderr: run.stderr }).toEqual({ line, code: 0, stderr: '' });
    }
    // What they did: the settings are in the stack's table, the secret sealed with its KMS key.
    const stored = await runInProcess(
      ['config', 'get', '--stack', 'lambkin', '--repo', 'acme/deployed', '--show-secrets'],
      { env },
    );
    expect(stored.code).toBe(0);
    expect(JSON.parse(stored.stdout)).toEqual({
      secretEnv: { NPM_TOKEN: 'npm_secretTokenValue' },
      deploy: { roleArn: 'arn:aws:iam::123456789012:role/lambkin-deploy' },
    });
    const masked = await runInProcess(['config', 'get', '--stack', 'lambkin', '--repo', 'acme/deployed'], {
      env,
    });
    expect(JSON.parse(masked.stdout)).toMatchObject({ secretEnv: { NPM_TOKEN: '***' } });
    expect(masked.stderr).toBe('');
    const global = await runInProcess(['config', 'get', '--stack', 'lambkin', 'build.pullRequests.forks'], {
      env,
    });
    expect(global.stdout).toBe('false\n');
  }, 60_000);
});
