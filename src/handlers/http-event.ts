/**
 * The HTTP event Lambda receives from a function URL or an HTTP API (payload format 2.0), and its
 * result. Declared here (a few fields) rather than pulling in a types package.
 */
import { normalizeHeaders, type HttpRequest, type HttpResponse } from '../core/http.js';

export interface LambdaHttpEvent {
  rawPath?: string;
  headers?: Record<string, string | undefined>;
  body?: string;
  isBase64Encoded?: boolean;
  requestContext?: { http?: { method?: string; path?: string } };
}

/**
 * The whole event API Gateway sends an HTTP API integration (payload format 2.0), every field it
 * always sets. The handlers read only the fields of LambdaHttpEvent and LogsHttpEvent; the local
 * stack builds this (src/local/api-gateway-event.ts) so that it calls them with what the cloud sends.
 */
export interface HttpApiEvent {
  version: '2.0';
  routeKey: string;
  rawPath: string;
  rawQueryString: string;
  cookies?: string[];
  /** Names in lower case; repeated headers joined with commas. */
  headers: Record<string, string>;
  /** Absent without a query string; repeated parameters joined with commas. */
  queryStringParameters?: Record<string, string>;
  requestContext: {
    accountId: string;
    apiId: string;
    domainName: string;
    domainPrefix: string;
    http: { method: string; path: string; protocol: string; sourceIp: string; userAgent: string };
    requestId: string;
    routeKey: string;
    stage: string;
    time: string;
    timeEpoch: number;
  };
  /** Absent without a body. */
  body?: string;
  isBase64Encoded: boolean;
}

export interface LambdaHttpResult {
  statusCode: number;
  headers: Record<string, string>;
  body: string;
  /** The body is base64 of binary bytes (the handlers here answer text and never set it). */
  isBase64Encoded?: boolean;
  cookies?: string[];
}

export function toHttpRequest(event: LambdaHttpEvent): HttpRequest {
  const body = event.body ?? '';
  return {
    method: event.requestContext?.http?.method ?? 'GET',
    path: event.rawPath ?? event.requestContext?.http?.path ?? '/',
    headers: normalizeHeaders(event.headers ?? {}),
    // Signatures are over the exact bytes GitHub sent; decode base64 back to them.
    body: event.isBase64Encoded ? Buffer.from(body, 'base64').toString('utf8') : body,
  };
}

export function toLambdaResult(response: HttpResponse): LambdaHttpResult {
  return { statusCode: response.statusCode, headers: response.headers, body: response.body };
}
