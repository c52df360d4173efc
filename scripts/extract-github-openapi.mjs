#!/usr/bin/env node
/**
 * Extracts the few GitHub REST operations Lambkin uses from GitHub's OpenAPI description (the
 * `@octokit/openapi` package, far too big to be a project dependency) into a small, fully
 * dereferenced file the GitHub stand-in is checked against.
 *
 *   npm install --prefix /tmp/openapi-extract @octokit/openapi
 *   node scripts/extract-github-openapi.mjs /tmp/openapi-extract/node_modules/@octokit/openapi
 *
 * Writes tests/fixtures/github/openapi-subset.json (or the path given as the second argument).
 * Schemas keep their OpenAPI dialect (3.0 `nullable`, or 3.1 type arrays); the test that reads
 * them converts to plain JSON Schema, so a newer spec can be dropped in without changing this.
 */
import console from 'node:console';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';

/** The operations the stand-in serves and Lambkin calls. */
const OPERATIONS = [
  'repos/get',
  'repos/create-commit-status',
  'repos/list-commit-statuses-for-ref',
  'repos/download-tarball-archive',
  'repos/get-content',
  'repos/list-webhooks',
  'repos/create-webhook',
  'repos/update-webhook',
  'git/get-tree',
];
/**
 * GitHub App operations (groundwork for running as an App: installation tokens, check runs), kept
 * apart under `appOperations` until Lambkin calls them in production; the stand-in serves them.
 */
const APP_OPERATIONS = [
  'apps/get-authenticated',
  'apps/get-repo-installation',
  'apps/create-installation-access-token',
  'apps/create-from-manifest',
  'checks/create',
  'checks/update',
  'checks/get',
  'checks/list-for-ref',
  'checks/list-annotations',
];
/** Error shapes the stand-in answers with outside an operation's own list (faults, 401, 404). */
const SHARED_SCHEMAS = ['basic-error', 'validation-error'];
/** Annotations only: dropping them keeps the file small without changing what validates. */
const ANNOTATIONS = new Set(['description', 'example', 'examples', 'externalDocs', 'discriminator']);
const HTTP_METHODS = new Set(['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace']);

function usage(message) {
  console.error(
    `${message}\n\nUsage: node scripts/extract-github-openapi.mjs <unpacked @octokit/openapi folder> [output.json]`,
  );
  process.exit(2);
}

const [packageDir, outputArg] = process.argv.slice(2);
if (!packageDir) usage('Missing the path of an unpacked @octokit/openapi package.');

const packageJson = JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8'));
if (packageJson.name !== '@octokit/openapi')
  usage(`${packageDir} holds ${packageJson.name}, not @octokit/openapi.`);
const specFile = 'generated/api.github.com.json';
const spec = JSON.parse(readFileSync(join(packageDir, specFile), 'utf8'));

function resolvePointer(pointer) {
  if (!pointer.startsWith('#/')) throw new Error(`Only local references are supported, got ${pointer}`);
  return pointer
    .slice(2)
    .split('/')
    .map((part) => part.replaceAll('~1', '/').replaceAll('~0', '~'))
    .reduce((node, part) => {
      if (node === undefined || !(part in node)) throw new Error(`Unresolvable reference ${pointer}`);
      return node[part];
    }, spec);
}

/** Inlines every `$ref`; a reference cycle would make the result infinite, so it is an error. */
function dereference(node, trail = []) {
  if (Array.isArray(node)) return node.map((item) => dereference(item, trail));
  if (node === null || typeof node !== 'object') return node;
  if (typeof node.$ref === 'string') {
    if (trail.includes(node.$ref)) throw new Error(`Reference cycle: ${[...trail, node.$ref].join(' → ')}`);
    return dereference(resolvePointer(node.$ref), [...trail, node.$ref]);
  }
  return Object.fromEntries(Object.entries(node).map(([key, value]) => [key, dereference(value, trail)]));
}

/** Drops annotations and vendor extensions, walking only schema positions (not property names). */
function pruneSchema(schema) {
  if (Array.isArray(schema)) return schema.map(pruneSchema);
  if (schema === null || typeof schema !== 'object') return schema;
  const pruned = {};
  for (const [key, value] of Object.entries(schema)) {
    if (ANNOTATIONS.has(key) || key.startsWith('x-')) continue;
    if (key === 'properties' || key === 'patternProperties') {
      pruned[key] = Object.fromEntries(Object.entries(value).map(([name, sub]) => [name, pruneSchema(sub)]));
    } else if (['items', 'additionalProperties', 'not', 'allOf', 'anyOf', 'oneOf'].includes(key)) {
      pruned[key] = typeof value === 'boolean' ? value : pruneSchema(value);
    } else {
      pruned[key] = value;
    }
  }
  return pruned;
}

function mediaTypes(content) {
  if (!content) return undefined;
  return Object.fromEntries(
    Object.entries(content).map(([type, media]) => [type, pruneSchema(media.schema ?? {})]),
  );
}

function extractOperation(operationId) {
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const [method, rawOperation] of Object.entries(item)) {
      if (!HTTP_METHODS.has(method) || rawOperation.operationId !== operationId) continue;
      const operation = dereference(rawOperation);
      const responses = {};
      for (const [status, response] of Object.entries(operation.responses)) {
        const headers = response.headers
          ? Object.fromEntries(
              Object.entries(response.headers).map(([name, header]) => [
                name.toLowerCase(),
                pruneSchema(header.schema ?? {}),
              ]),
            )
          : undefined;
        responses[status] = { content: mediaTypes(response.content), headers };
      }
      return {
        method: method.toUpperCase(),
        path,
        parameters: [...(item.parameters ?? []), ...(operation.parameters ?? [])].map((parameter) => {
          const resolved = dereference(parameter);
          return {
            name: resolved.name,
            in: resolved.in,
            required: resolved.required === true,
            schema: pruneSchema(resolved.schema ?? {}),
          };
        }),
        requestBody: operation.requestBody
          ? {
              required: operation.requestBody.required === true,
              content: mediaTypes(operation.requestBody.content),
            }
          : undefined,
        responses,
      };
    }
  }
  throw new Error(`Operation ${operationId} is not in ${specFile}: has GitHub renamed it?`);
}

const subset = {
  $comment:
    "Generated by scripts/extract-github-openapi.mjs from GitHub's OpenAPI description. Do not edit; re-run the script.",
  source: {
    package: packageJson.name,
    version: packageJson.version,
    file: specFile,
    openapi: spec.openapi,
    apiVersion: spec.info?.version,
  },
  operations: Object.fromEntries(OPERATIONS.map((id) => [id, extractOperation(id)])),
  appOperations: Object.fromEntries(APP_OPERATIONS.map((id) => [id, extractOperation(id)])),
  schemas: Object.fromEntries(
    SHARED_SCHEMAS.map((name) => [name, pruneSchema(dereference({ $ref: `#/components/schemas/${name}` }))]),
  ),
};

const here = dirname(fileURLToPath(import.meta.url));
const output = resolve(outputArg ?? join(here, '..', 'tests', 'fixtures', 'github', 'openapi-subset.json'));
mkdirSync(dirname(output), { recursive: true });
const text = `${JSON.stringify(subset, null, 2)}\n`;
writeFileSync(output, text);
console.log(
  `Wrote ${OPERATIONS.length + APP_OPERATIONS.length} operations from ${packageJson.name}@${packageJson.version} to ${output} (${Math.round(text.length / 1024)} KB).`,
);
