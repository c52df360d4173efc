/**
 * The deploy grant's redemption (src/runner/deploy-credentials.ts): STS's XML answers, read without
 * an XML library, and the errors a build ends with when STS refuses or cannot be reached.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { defaultStsEndpoint } from '../../src/aws/sts.js';
import { createSecretMasker } from '../../src/core/log-mask.js';
import { parseAssumeRoleAnswer, redeemDeployGrant } from '../../src/runner/deploy-credentials.js';

const ROLE = 'arn:aws:iam::123456789012:role/deploy';

describe('parseAssumeRoleAnswer', () => {
  it("reads an AssumeRoleResponse's credentials, entities decoded", () => {
    const xml = `<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
      <AssumeRoleResult><AssumedRoleUser><Arn>x</Arn></AssumedRoleUser>
        <Credentials>
          <AccessKeyId>ASIAEXAMPLE123</AccessKeyId>
          <SecretAccessKey>wJalr/K7MDENG+bPxRfiCY&amp;EXAMPLEKEY</SecretAccessKey>
          <SessionToken>IQoJb3JpZ2luX2Vj&#x2F;token==</SessionToken>
          <Expiration>2026-12-06T12:00:00Z</Expiration>
        </Credentials></AssumeRoleResult></AssumeRoleResponse>`;
    expect(parseAssumeRoleAnswer(xml)).toEqual({
      credentials: {
        accessKeyId: 'ASIAEXAMPLE123',
        secretAccessKey: 'wJalr/K7MDENG+bPxRfiCY&EXAMPLEKEY',
        sessionToken: 'IQoJb3JpZ2luX2Vj/token==',
        expiresAt: Date.parse('2026-12-06T12:00:00Z'),
      },
    });
  });

  it("reads an ErrorResponse's code and message", () => {
    const xml =
      '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>' +
      '<Code>AccessDenied</Code><Message>not authorized to perform: sts:AssumeRole &lt;x&gt;</Message></Error>' +
      '<RequestId>1</RequestId></ErrorResponse>';
    expect(parseAssumeRoleAnswer(xml)).toEqual({
      error: { code: 'AccessDenied', message: 'not authorized to perform: sts:AssumeRole <x>' },
    });
  });

  it('says what it got when the answer is neither', () => {
    expect(parseAssumeRoleAnswer('<html>gateway</html>')).toEqual({
      error: { code: 'UnreadableAnswer', message: 'not an AssumeRole answer: <html>gateway</html>' },
    });
  });
});

describe('redeemDeployGrant', () => {
  it('names the role and what went wrong', async () => {
    const server = createServer((_request, response) => {
      response.writeHead(403, { 'content-type': 'text/xml' });
      response.end(
        '<ErrorResponse><Error><Code>ExpiredToken</Code><Message>expired</Message></Error></ErrorResponse>',
      );
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/?Action=AssumeRole`;
    try {
      const grant = { roleArn: ROLE, region: 'eu-west-1', url, expiresAt: Date.now() + 60_000 };
      await expect(redeemDeployGrant(grant, { timeoutMs: 5000 })).rejects.toThrow(
        `could not assume the deploy role ${ROLE}: STS answered 403 ExpiredToken: expired`,
      );
      await expect(
        redeemDeployGrant({ ...grant, expiresAt: Date.now() - 1 }, { timeoutMs: 5000 }),
      ).rejects.toThrow('the grant from the controller has expired');
    } finally {
      server.close();
    }
    await expect(
      redeemDeployGrant(
        { roleArn: ROLE, region: 'eu-west-1', url, expiresAt: Date.now() + 60_000 },
        { timeoutMs: 5000 },
      ),
    ).rejects.toThrow(/could not assume the deploy role .*: STS could not be reached/);
  });
});

describe('defaultStsEndpoint', () => {
  it("is the region's, unless the standard variables name another", () => {
    expect(defaultStsEndpoint('eu-west-1', {})).toBe('https://sts.eu-west-1.amazonaws.com');
    expect(defaultStsEndpoint('cn-north-1', {})).toBe('https://sts.cn-north-1.amazonaws.com.cn');
    expect(defaultStsEndpoint('eu-west-1', { AWS_ENDPOINT_URL: 'http://a' })).toBe('http://a');
    expect(
      defaultStsEndpoint('eu-west-1', { AWS_ENDPOINT_URL: 'http://a', AWS_ENDPOINT_URL_STS: 'http://b' }),
    ).toBe('http://b');
  });
});

describe('secrets added to the masker part way through', () => {
  it('are masked from then on', () => {
    const masker = createSecretMasker(['first-secret']);
    expect(masker.write('late-secret first-secret\n')).toBe('late-secret ***\n');
    masker.add(['late-secret']);
    expect(masker.write('late-secret first-secret\n') + masker.flush()).toBe('*** ***\n');
  });
});
