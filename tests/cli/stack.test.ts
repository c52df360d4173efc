/**
 * The region of a deployed stack, through real `lambkin` processes: none set is one line that says
 * how to set one, before any request leaves the process; each documented source of a region is the
 * one the request is signed for. AWS is a loopback server here that records what reaches it.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expectOneLine, runProcess } from './helpers.js';

/** What reached "AWS": the service and region each request was signed for. */
interface SignedRequest {
  service: string;
  region: string;
}

let server: Server;
let endpoint: string;
const received: SignedRequest[] = [];
const folders: string[] = [];

beforeAll(async () => {
  server = createServer((request, response) => {
    // SigV4: `Credential=<key id>/<date>/<region>/<service>/aws4_request`.
    const scope = /Credential=[^/]+\/\d+\/([^/]+)\/([^/]+)\//.exec(request.headers.authorization ?? '');
    received.push({ region: scope?.[1] ?? '?', service: scope?.[2] ?? '?' });
    request.resume();
    response.writeHead(500, { 'content-type': 'text/plain' }).end('stand-in: no such service');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  for (const folder of folders) rmSync(folder, { recursive: true, force: true });
});

beforeEach(() => {
  received.length = 0;
});

/** A home folder of its own, so no AWS config file of this machine's user can name a region. */
function home(awsConfig?: string): Record<string, string> {
  const dir = mkdtempSync(join(tmpdir(), 'lambkin-region-'));
  folders.push(dir);
  if (awsConfig !== undefined) {
    mkdirSync(join(dir, '.aws'));
    writeFileSync(join(dir, '.aws', 'config'), awsConfig);
  }
  return {
    HOME: dir,
    AWS_CONFIG_FILE: join(dir, '.aws', 'config'),
    AWS_SHARED_CREDENTIALS_FILE: join(dir, '.aws', 'credentials'),
    AWS_ACCESS_KEY_ID: 'AKIDREGIONTEST',
    AWS_SECRET_ACCESS_KEY: 'region-test-secret',
    AWS_ENDPOINT_URL: endpoint,
    AWS_MAX_ATTEMPTS: '1',
  };
}

const NO_REGION =
  'lambkin: no AWS region is set: pass --region REGION (the region the stack was deployed to, such as ' +
  'us-east-1), or set AWS_REGION, or set "region" in your AWS profile (aws configure)\n';

describe('the region of a deployed stack', () => {
  it('is asked for in one line, before any request, with --stack and with the LAMBKIN_* variables', async () => {
    const runs = await Promise.all([
      runProcess(['builds', 'octo/hello', '--stack', 'lambkin'], home()),
      runProcess(['config', 'set', '--stack', 'lambkin', 'build.tags', 'true'], home()),
      runProcess(['builds', 'octo/hello'], { ...home(), LAMBKIN_BUILDS_TABLE: 'lambkin-builds' }),
      runProcess(['sweep'], { ...home(), LAMBKIN_BUILDS_TABLE: 'lambkin-builds', GITHUB_TOKEN: 'ghp_x' }),
      // A profile without a region is no region either.
      runProcess(['builds', 'octo/hello', '--stack', 'lambkin'], home('[default]\noutput = json\n')),
    ]);
    for (const run of runs) {
      expect({ code: run.code, stdout: run.stdout, stderr: run.stderr }).toEqual({
        code: 1,
        stdout: '',
        stderr: NO_REGION,
      });
      expectOneLine(run.stderr);
    }
    expect(received).toEqual([]);
  }, 60_000);

  it('says what is not configured before asking for a region', async () => {
    const run = await runProcess(['logs', 'octo/hello', '1'], home());
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^lambkin: not configured: LAMBKIN_BUILDS_TABLE is not set/);
    expect(received).toEqual([]);
  });

  it.each([
    ['--region', ['--region', 'eu-north-1'], {}, 'eu-north-1'],
    ['AWS_REGION', [], { AWS_REGION: 'ap-south-1' }, 'ap-south-1'],
    [
      'AWS_DEFAULT_REGION (the AWS CLI reads it; the SDK does not)',
      [],
      { AWS_DEFAULT_REGION: 'sa-east-1' },
      'sa-east-1',
    ],
    ['--region before AWS_REGION', ['--region', 'eu-north-1'], { AWS_REGION: 'ap-south-1' }, 'eu-north-1'],
    ['the profile', [], 'profile', 'eu-west-3'],
  ] as const)(
    'comes from %s',
    async (_source, flags, env, region) => {
      const environment = env === 'profile' ? home('[default]\nregion = eu-west-3\n') : { ...home(), ...env };
      const run = await runProcess(['builds', 'octo/hello', '--stack', 'lambkin', ...flags], environment);
      // The stand-in answers 500: the command fails, but only after asking CloudFormation in `region`.
      expect(run.code).toBe(1);
      expect(run.stderr).not.toContain('no AWS region');
      expect(received).toEqual([{ service: 'cloudformation', region }]);
    },
    30_000,
  );

  it('cannot be given with --local, which has its own', async () => {
    const run = await runProcess(['builds', 'octo/hello', '--local', '--region', 'eu-north-1'], home());
    expect(run.code).toBe(2);
    expect(run.stderr).toBe(
      "lambkin: option '--local [dataDir]' cannot be used with option '--region <region>'\n",
    );
  });
});
