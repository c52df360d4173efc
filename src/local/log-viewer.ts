/**
 * The local log viewer is the cloud's log function (src/handlers/logs.ts) behind the local server:
 * the same links, the same token checks for private repositories, the same answers: pages at their
 * stable link, raw logs through short-lived URLs of the local S3-compatible server, as of S3 in the
 * cloud. It adds one page the cloud has no route for: the landing page at `/builds` (and `/`),
 * the link `lambkin dev` prints.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { LambdaHttpResult } from '../handlers/http-event.js';
import { createLogsHandler, logRouteDependenciesOf, type LogRouteParts } from '../handlers/logs.js';
import { answerWithHandler, writeLambdaResult } from './api-gateway-event.js';

const LANDING_PATHS = new Set(['/', '/builds', '/builds/']);

export function createLogViewer(
  parts: LogRouteParts,
): (request: IncomingMessage, response: ServerResponse) => void {
  const handler = createLogsHandler(() => logRouteDependenciesOf(parts));
  return (request, response) => {
    const path = (request.url ?? '/').split('?')[0] ?? '/';
    if (LANDING_PATHS.has(path) && (request.method === 'GET' || request.method === 'HEAD')) {
      writeLambdaResult(response, landingPage());
      return;
    }
    void answerWithHandler(handler, request, response, { logger: parts.logger });
  };
}

function landingPage(): LambdaHttpResult {
  return {
    statusCode: 200,
    headers: {
      'content-type': 'text/html; charset=utf-8',
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    },
    body:
      '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Lambkin local stack</title>' +
      '<style>body{font:15px/1.5 system-ui,sans-serif;margin:2rem;color:#1f2328}</style></head><body>' +
      "<h1>Lambkin local stack</h1><p>A build's page is at <code>/builds/&lt;owner&gt;/&lt;repo&gt;/" +
      '&lt;number&gt;</code>, its raw log at <code>…/log.txt</code>; a private repository&#39;s build ' +
      'needs its <code>?token=…</code>, which the link in its commit status carries. A public ' +
      "repository's recent builds are at " +
      '<code>/builds/&lt;owner&gt;/&lt;repo&gt;</code>, its badge at ' +
      '<code>/badges/&lt;owner&gt;/&lt;repo&gt;.svg</code>.</p></body></html>\n',
  };
}
