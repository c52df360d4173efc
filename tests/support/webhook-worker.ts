/**
 * A separate process running the real webhook Lambda handler, configured only through the
 * environment (LAMBKIN_*, GITHUB_API_URL, AWS_ENDPOINT_URL_*), as in the cloud. Reads signed
 * deliveries (JSON array of {headers, body}) from the file named by argv[2], handles them all
 * concurrently, and prints the responses as one JSON line.
 */
import { readFileSync } from 'node:fs';
import { handler } from '../../src/handlers/webhook.js';

interface Delivery {
  headers: Record<string, string>;
  body: string;
}

const deliveries = JSON.parse(readFileSync(process.argv[2] ?? '', 'utf8')) as Delivery[];
const results = await Promise.all(
  deliveries.map((delivery) =>
    handler({
      rawPath: '/webhook',
      headers: delivery.headers,
      body: delivery.body,
      isBase64Encoded: false,
      requestContext: { http: { method: 'POST', path: '/webhook' } },
    }),
  ),
);
process.stdout.write(
  JSON.stringify(results.map((result) => ({ statusCode: result.statusCode, body: result.body }))) + '\n',
);
