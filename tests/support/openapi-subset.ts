/**
 * GitHub's OpenAPI description, the subset the stand-in serves (tests/fixtures/github/openapi-subset.json,
 * made by scripts/extract-github-openapi.mjs), read as JSON Schema: the stand-in's answers are
 * checked against it by the tests of its REST routes and of its App routes.
 */
import { readFileSync } from 'node:fs';
import { Ajv, type ValidateFunction } from 'ajv';

export type Schema = Record<string, unknown>;
export interface OperationShape {
  method: string;
  path: string;
  requestBody?: { content: Record<string, Schema> };
  responses: Record<string, { content?: Record<string, Schema>; headers?: Record<string, Schema> }>;
}
export interface OpenApiSubset {
  source: { package: string; version: string; openapi: string };
  operations: Record<string, OperationShape>;
  /** The GitHub App's operations (installation tokens, check runs, manifest conversion). */
  appOperations?: Record<string, OperationShape>;
  schemas: Record<string, Schema>;
}

export const subsetText = readFileSync(
  new URL('../fixtures/github/openapi-subset.json', import.meta.url),
  'utf8',
);
export const subset = JSON.parse(subsetText) as OpenApiSubset;

/**
 * OpenAPI 3.0 marks null with `nullable: true`; JSON Schema (and OpenAPI 3.1) with a type array
 * or a `null` branch. Converts the first to the second; 3.1 schemas pass through unchanged.
 */
function toJsonSchema(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(toJsonSchema);
  if (typeof node !== 'object' || node === null) return node;
  const source = node as Schema;
  const schema: Schema = {};
  for (const [key, value] of Object.entries(source)) {
    if (key === 'nullable') continue;
    if (key === 'properties') {
      schema[key] = Object.fromEntries(
        Object.entries(value as Schema).map(([name, sub]) => [name, toJsonSchema(sub)]),
      );
    } else if (['items', 'additionalProperties', 'not', 'allOf', 'anyOf', 'oneOf'].includes(key)) {
      schema[key] = toJsonSchema(value);
    } else {
      schema[key] = value;
    }
  }
  if (source.nullable !== true) return schema;
  if (typeof schema.type === 'string') {
    schema.type = [schema.type, 'null'];
    if (Array.isArray(schema.enum)) schema.enum = [...(schema.enum as unknown[]), null];
    return schema;
  }
  return { anyOf: [schema, { type: 'null' }] };
}

const ajv = new Ajv({ strict: true, allErrors: true, allowUnionTypes: true });
ajv.addFormat('int64', { type: 'number', validate: (value: number) => Number.isSafeInteger(value) });
ajv.addFormat('uri', (value: string) => URL.canParse(value));
ajv.addFormat('date-time', (value: string) =>
  /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.test(value),
);
const validators = new Map<Schema, ValidateFunction>();

function validatorFor(schema: Schema): ValidateFunction {
  let validate = validators.get(schema);
  if (!validate) {
    validate = ajv.compile(toJsonSchema(schema) as Schema);
    validators.set(schema, validate);
  }
  return validate;
}

/** What `data` breaks of `schema`, one problem a line (undefined: nothing). */
export function schemaErrors(schema: Schema, data: unknown): string | undefined {
  const validate = validatorFor(schema);
  return validate(data) ? undefined : ajv.errorsText(validate.errors, { separator: '\n' });
}
