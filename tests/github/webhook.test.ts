import { createHash } from 'node:crypto';
import { WebhookRejectedError, WebhookVerifier } from '../../src/github/webhook.js';
import { normalizeHeaders, type HttpRequest } from '../../src/core/http.js';
import { examplePayload, pushPayload, signedDelivery } from '../support/payloads.js';
import { sign } from '@octokit/webhooks-methods';

const SECRET = 'test-webhook-secret';

async function requestFor(
  event: string,
  payload: unknown,
  options: Parameters<typeof signedDelivery>[3] = {},
): Promise<HttpRequest> {
  const delivery = await signedDelivery(SECRET, event, payload, options);
  return {
    method: 'POST',
    path: '/webhook',
    headers: normalizeHeaders(delivery.headers),
    body: delivery.body,
  };
}

async function rejection(verifier: WebhookVerifier, request: HttpRequest): Promise<WebhookRejectedError> {
  const error = await verifier.verify(request).then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(WebhookRejectedError);
  return error as WebhookRejectedError;
}

describe('WebhookVerifier', () => {
  const verifier = new WebhookVerifier([SECRET]);

  it('accepts a real, correctly signed delivery and returns its event, id and payload', async () => {
    const payload = examplePayload('ping');
    const request = await requestFor('ping', payload, { deliveryId: '72d3162e-cc78-11e3-81ab-4c9367dc0958' });
    await expect(verifier.verify(request)).resolves.toEqual({
      event: 'ping',
      deliveryId: '72d3162e-cc78-11e3-81ab-4c9367dc0958',
      bodySha256: createHash('sha256').update(request.body).digest('hex'),
      payload,
    });
  });

  it('accepts form-encoded deliveries (signature over the form body)', async () => {
    const payload = pushPayload({ repo: 'octo/app', branch: 'main' });
    const verified = await verifier.verify(await requestFor('push', payload, { contentType: 'form' }));
    expect(verified.payload).toEqual(payload);
  });

  it('answers 401 for a missing or wrong signature', async () => {
    const payload = pushPayload({ repo: 'octo/app', branch: 'main' });
    const missing = await rejection(verifier, await requestFor('push', payload, { signature: 'missing' }));
    expect(missing.statusCode).toBe(401);
    expect(missing.message).toMatch(/Missing X-Hub-Signature-256/);
    const wrong = await rejection(verifier, await requestFor('push', payload, { signature: 'wrong' }));
    expect(wrong.statusCode).toBe(401);
    expect(wrong.message).toMatch(/does not match/);
    const garbage = await requestFor('push', payload);
    garbage.headers['x-hub-signature-256'] = 'sha256=zz';
    expect((await rejection(verifier, garbage)).statusCode).toBe(401);
  });

  it('refuses a body changed after signing', async () => {
    const request = await requestFor('push', pushPayload({ repo: 'octo/app', branch: 'main' }));
    request.body = request.body.replace('"main"', '"evil"');
    expect((await rejection(verifier, request)).statusCode).toBe(401);
  });

  it('accepts the old secret while rotating', async () => {
    const rotating = new WebhookVerifier(['brand-new-secret', SECRET]);
    await expect(rotating.verify(await requestFor('ping', examplePayload('ping')))).resolves.toMatchObject({
      event: 'ping',
    });
  });

  async function signedRaw(body: string, contentType: string): Promise<HttpRequest> {
    return {
      method: 'POST',
      path: '/webhook',
      body,
      headers: {
        'content-type': contentType,
        'x-github-event': 'push',
        'x-github-delivery': 'abc-123',
        'x-hub-signature-256': await sign(SECRET, body),
      },
    };
  }

  it('answers 400 for malformed JSON, a non-object, or an unknown content type', async () => {
    const malformed = await rejection(verifier, await signedRaw('{"ref": ', 'application/json'));
    expect(malformed.statusCode).toBe(400);
    expect(malformed.message).toMatch(/Malformed JSON payload/);
    expect((await rejection(verifier, await signedRaw('[1,2]', 'application/json'))).message).toMatch(
      /expected a JSON object/,
    );
    const xml = await rejection(verifier, await signedRaw('<push/>', 'application/xml'));
    expect(xml.statusCode).toBe(400);
    expect(xml.message).toMatch(/Unsupported content type "application\/xml"/);
    expect(
      (await rejection(verifier, await signedRaw('x=1', 'application/x-www-form-urlencoded'))).message,
    ).toMatch(/no "payload" field/);
  });

  it('answers 400 for deeply nested JSON instead of crashing', async () => {
    const deep = '['.repeat(200_000) + ']'.repeat(200_000);
    expect((await rejection(verifier, await signedRaw(deep, 'application/json'))).statusCode).toBe(400);
  });

  it('answers 400 without the event or delivery headers', async () => {
    const request = await requestFor('ping', examplePayload('ping'));
    delete request.headers['x-github-delivery'];
    expect((await rejection(verifier, request)).message).toMatch(/X-GitHub-Delivery/);
    const noEvent = await requestFor('ping', examplePayload('ping'));
    delete noEvent.headers['x-github-event'];
    expect((await rejection(verifier, noEvent)).message).toMatch(/X-GitHub-Event/);
  });

  it('answers 413 for a body larger than GitHub sends, before checking anything else', async () => {
    const request = await signedRaw('x'.repeat(25 * 1024 * 1024 + 1), 'application/json');
    expect((await rejection(verifier, request)).statusCode).toBe(413);
  });
});
