/**
 * Verifying a webhook delivery: signature first (over the exact body bytes, constant-time, via
 * @octokit/webhooks), then content type and JSON. Nothing is parsed before the signature holds.
 */
import { createHash } from 'node:crypto';
import { Webhooks } from '@octokit/webhooks';
import { LambkinError } from '../core/errors.js';
import type { HttpRequest } from '../core/http.js';

/** GitHub caps webhook payloads at 25 MB; anything larger is not from GitHub. */
export const MAX_WEBHOOK_BODY_BYTES = 25 * 1024 * 1024;

/** A delivery refused before anything was written; `statusCode` is what to answer. */
export class WebhookRejectedError extends LambkinError {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super('WEBHOOK_REJECTED', message);
  }
}

export interface VerifiedDelivery {
  /** `X-GitHub-Event`, e.g. `push`. */
  event: string;
  /** `X-GitHub-Delivery`: unique per delivery, kept on redelivery. */
  deliveryId: string;
  /**
   * SHA-256 (hex) of the exact body the signature covers. A signed body can be captured and posted
   * again under a new delivery id; the intake refuses a body it has seen (src/controller/intake.ts).
   */
  bodySha256: string;
  payload: Record<string, unknown>;
}

const DELIVERY_ID = /^[A-Za-z0-9-]{1,100}$/;
const EVENT_NAME = /^[a-z_]{1,64}$/;

export class WebhookVerifier {
  private readonly verifiers: Webhooks[];

  /** `secrets`: the current secret first, then older ones still accepted while rotating. */
  constructor(secrets: readonly string[]) {
    if (secrets.length === 0) throw new Error('WebhookVerifier needs at least one secret');
    this.verifiers = secrets.map((secret) => new Webhooks({ secret }));
  }

  async verify(request: HttpRequest): Promise<VerifiedDelivery> {
    if (Buffer.byteLength(request.body) > MAX_WEBHOOK_BODY_BYTES) {
      throw new WebhookRejectedError(413, 'Payload larger than GitHub ever sends (25 MB); refused.');
    }
    const signature = request.headers['x-hub-signature-256'];
    if (!signature) {
      throw new WebhookRejectedError(
        401,
        'Missing X-Hub-Signature-256: set the webhook secret in the GitHub webhook settings to LAMBKIN_WEBHOOK_SECRET.',
      );
    }
    if (!(await this.signatureMatches(request.body, signature))) {
      throw new WebhookRejectedError(
        401,
        'X-Hub-Signature-256 does not match: the webhook secret in GitHub differs from LAMBKIN_WEBHOOK_SECRET.',
      );
    }
    const event = request.headers['x-github-event'] ?? '';
    if (!EVENT_NAME.test(event))
      throw new WebhookRejectedError(400, 'Missing or invalid X-GitHub-Event header.');
    const deliveryId = request.headers['x-github-delivery'] ?? '';
    if (!DELIVERY_ID.test(deliveryId)) {
      throw new WebhookRejectedError(400, 'Missing or invalid X-GitHub-Delivery header.');
    }
    const bodySha256 = createHash('sha256').update(request.body, 'utf8').digest('hex');
    return { event, deliveryId, bodySha256, payload: parsePayload(request) };
  }

  private async signatureMatches(body: string, signature: string): Promise<boolean> {
    for (const verifier of this.verifiers) {
      try {
        if (await verifier.verify(body, signature)) return true;
      } catch {
        // A malformed signature header makes verify throw: it does not match.
      }
    }
    return false;
  }
}

function parsePayload(request: HttpRequest): Record<string, unknown> {
  const contentType = (request.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
  let json: string;
  if (contentType === 'application/json') {
    json = request.body;
  } else if (contentType === 'application/x-www-form-urlencoded') {
    const payload = new URLSearchParams(request.body).get('payload');
    if (payload === null)
      throw new WebhookRejectedError(400, 'Form-encoded delivery has no "payload" field.');
    json = payload;
  } else {
    throw new WebhookRejectedError(
      400,
      `Unsupported content type "${contentType || '(none)'}": set the webhook's content type to application/json.`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch (error) {
    // RangeError here means nesting too deep for the parser: refused like any bad JSON.
    throw new WebhookRejectedError(400, `Malformed JSON payload: ${(error as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new WebhookRejectedError(400, 'Malformed payload: expected a JSON object.');
  }
  return parsed as Record<string, unknown>;
}
