/**
 * `npm run check:iam` as CI runs it (a real process, a real command log, a real template file):
 * the CodeBuild commands the builder, sweeper and events function send pass against template.yaml,
 * and taking any one grant they need out of the template fails the check and names it.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT, TEMPLATE_PATH } from '../support/template.js';

const run = promisify(execFile);

/** What a test run records when the CodeBuild path runs (src/aws/command-log.ts's format). */
const COMMAND_LOG = [
  'DynamoDBDocumentClient GetCommand',
  'S3Client PutObjectCommand',
  'S3Client DeleteObjectCommand',
  'CodeBuildClient StartBuildCommand',
  'CodeBuildClient StopBuildCommand',
  'CodeBuildClient BatchGetBuildsCommand',
  // moto_server's project, made by the shape check itself: excluded, not required.
  'CodeBuildClient CreateProjectCommand',
].join('\n');

async function checkIam(log: string, template: string): Promise<{ code: number; output: string }> {
  return run(process.execPath, ['--import', 'tsx', 'scripts/check-iam.ts', log, template], {
    cwd: REPO_ROOT,
    timeout: 60_000,
  }).then(
    ({ stdout, stderr }) => ({ code: 0, output: `${stdout}${stderr}` }),
    (error: { code?: number; stdout?: string; stderr?: string }) => ({
      code: typeof error.code === 'number' ? error.code : -1,
      output: `${error.stdout ?? ''}${error.stderr ?? ''}`,
    }),
  );
}

/** template.yaml with every grant of one action taken out (list items and single actions). */
function withoutGrant(text: string, action: string): string {
  const escaped = action.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const result = text
    .replace(new RegExp(`^\\s*- ${escaped}\\n`, 'gm'), '')
    .replace(new RegExp(`^(\\s*Action:) ${escaped}$`, 'gm'), '$1 []');
  if (result === text) throw new Error(`template.yaml grants ${action} nowhere`);
  return result;
}

describe('npm run check:iam', () => {
  let folder: string;
  let log: string;
  let template: string;

  beforeAll(async () => {
    folder = await mkdtemp(join(tmpdir(), 'lambkin-check-iam-'));
    log = join(folder, 'commands.log');
    await writeFile(log, `${COMMAND_LOG}\n`);
    template = await readFile(TEMPLATE_PATH, 'utf8');
  });

  afterAll(async () => {
    await rm(folder, { recursive: true, force: true });
  });

  it('passes on template.yaml: the CodeBuild actions are granted to the functions that send them', async () => {
    const result = await checkIam(log, TEMPLATE_PATH);
    expect(result.code).toBe(0);
    for (const action of ['codebuild:StartBuild', 'codebuild:BatchGetBuilds']) {
      expect(result.output).toMatch(
        new RegExp(`ok +${action} +BuilderFunction, SweeperFunction, CodeBuildEventsFunction`),
      );
    }
    // The webhook stops a superseded build's CodeBuild runs.
    expect(result.output).toMatch(
      /ok +codebuild:StopBuild +WebhookFunction, BuilderFunction, SweeperFunction, CodeBuildEventsFunction/,
    );
    // Functions delete now (a CodeBuild run's input): s3:DeleteObject is required, and granted.
    expect(result.output).toMatch(/ok +s3:DeleteObject +BuilderFunction, CodeBuildEventsFunction/);
    expect(result.output).toMatch(/excluded codebuild:CreateProject/);
  }, 60_000);

  it.each(['codebuild:StartBuild', 'codebuild:StopBuild', 'codebuild:BatchGetBuilds', 's3:DeleteObject'])(
    'fails, naming it, when the template grants %s nowhere',
    async (action) => {
      const changed = join(folder, `${action.replace(':', '-')}.yaml`);
      await writeFile(changed, withoutGrant(template, action));
      const result = await checkIam(log, changed);
      expect(result.code).toBe(1);
      expect(result.output).toMatch(new RegExp(`MISSING +${action} +needed by`));
      // The others are still granted: only the grant taken out is reported.
      expect(result.output.match(/MISSING/g)).toHaveLength(1);
    },
    60_000,
  );
});
