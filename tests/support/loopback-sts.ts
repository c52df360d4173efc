/**
 * A loopback STS for the deploy role's grants: it answers presigned GET AssumeRole requests (which
 * moto_server does not route: it picks the service from an Authorization header or the host) after
 * checking their SigV4 query signature with the local stack's verifier, and answers STS's XML
 * shapes. It counts every request and remembers the credentials it issued, so tests can show the
 * grant was redeemed only when it should be and that the deploy step got exactly these.
 */
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { StsDeployRoleGrants } from '../../src/aws/sts.js';
import { STSClient } from '@aws-sdk/client-sts';
import { verifyQuerySignature } from '../../src/local/request-signatures.js';
import { StackCredentials } from '../../src/local/stack-credentials.js';

export interface IssuedCredentials {
  roleArn: string;
  sessionName: string;
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken: string;
}

export interface LoopbackSts {
  url: string;
  /** Every request received, as `METHOD target`. */
  requests: string[];
  issued: IssuedCredentials[];
  /** The controller's grants, signed with the key this STS trusts. */
  grants(defaultRegion?: string): StsDeployRoleGrants;
  close(): Promise<void>;
}

const NS = 'https://sts.amazonaws.com/doc/2011-06-15/';

function errorXml(code: string, message: string): string {
  return (
    `<ErrorResponse xmlns="${NS}"><Error><Type>Sender</Type><Code>${code}</Code>` +
    `<Message>${message.replace(/&/g, '&amp;').replace(/</g, '&lt;')}</Message></Error>` +
    `<RequestId>${randomBytes(8).toString('hex')}</RequestId></ErrorResponse>`
  );
}

/** `roles`: the role ARNs the signer may assume; others are refused with AccessDenied. */
export async function startLoopbackSts(options: { roles: string[] }): Promise<LoopbackSts> {
  const credentials = new StackCredentials();
  const requests: string[] = [];
  const issued: IssuedCredentials[] = [];
  const server = createServer((request, response) => {
    requests.push(`${request.method ?? '?'} ${request.url ?? ''}`);
    void (async () => {
      const answer = (status: number, body: string) => {
        response.writeHead(status, { 'content-type': 'text/xml' });
        response.end(body);
      };
      const verdict = await verifyQuerySignature(
        { method: request.method ?? 'GET', url: request.url ?? '/', headers: request.headers },
        { credentials, service: 'sts', emptyPayload: true },
      );
      if (!verdict.ok) return answer(403, errorXml('SignatureDoesNotMatch', verdict.reason));
      const query = new URL(request.url ?? '/', 'http://sts.invalid').searchParams;
      if (query.get('Action') !== 'AssumeRole')
        return answer(400, errorXml('InvalidAction', 'not AssumeRole'));
      const roleArn = query.get('RoleArn') ?? '';
      if (!options.roles.includes(roleArn)) {
        return answer(
          403,
          errorXml(
            'AccessDenied',
            `User: lambkin-local is not authorized to perform: sts:AssumeRole on resource: ${roleArn}`,
          ),
        );
      }
      const given: IssuedCredentials = {
        roleArn,
        sessionName: query.get('RoleSessionName') ?? '',
        accessKeyId: `ASIA${randomBytes(8).toString('hex').toUpperCase()}`,
        secretAccessKey: randomBytes(30).toString('base64'),
        sessionToken: `IQoJb3JpZ2luX2Vj${randomBytes(90).toString('base64')}`,
      };
      issued.push(given);
      const expiration = new Date(Date.now() + Number(query.get('DurationSeconds') ?? 900) * 1000);
      answer(
        200,
        `<AssumeRoleResponse xmlns="${NS}">\n  <AssumeRoleResult>\n    <AssumedRoleUser>\n` +
          `      <AssumedRoleId>AROA3XFRBF535PLBIFPI4:${given.sessionName}</AssumedRoleId>\n` +
          `      <Arn>${roleArn}/${given.sessionName}</Arn>\n    </AssumedRoleUser>\n    <Credentials>\n` +
          `      <AccessKeyId>${given.accessKeyId}</AccessKeyId>\n` +
          `      <SecretAccessKey>${given.secretAccessKey}</SecretAccessKey>\n` +
          `      <SessionToken>${given.sessionToken}</SessionToken>\n` +
          `      <Expiration>${expiration.toISOString()}</Expiration>\n    </Credentials>\n` +
          `  </AssumeRoleResult>\n  <ResponseMetadata><RequestId>${randomBytes(8).toString('hex')}</RequestId></ResponseMetadata>\n` +
          `</AssumeRoleResponse>\n`,
      );
    })().catch((error: unknown) => {
      response.writeHead(500);
      response.end(String(error));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  const clients: STSClient[] = [];
  return {
    url,
    requests,
    issued,
    grants(defaultRegion = 'eu-west-1') {
      const sts = new STSClient({ region: 'us-east-1', endpoint: url, credentials: credentials.stack });
      clients.push(sts);
      return new StsDeployRoleGrants(sts, defaultRegion, { endpoint: url });
    },
    close: async () => {
      for (const client of clients) client.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
