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

export interface LambdaHttpResult {
  statusCode: number;
  headers: Record<string, string>;
  body: string;
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
