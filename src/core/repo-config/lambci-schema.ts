/**
 * The schema of LambCI's config as far as Lambkin reads it (src/core/repo-config/lambci.ts
 * translates it). Plain data: scripts/generate-validators.ts compiles it ahead of time.
 */

/** LambCI keys Lambkin accepts but does not use, and why (shown as a warning in the build log). */
export const UNUSED_KEYS: Record<string, string> = {
  secretEnv: 'secret variables belong in the settings store, never in the repository',
  s3Bucket: "build logs always go to the stack's bucket",
  s3PublicSecretNames: 'log pages are served by the stack, not by public S3 names',
  notifications: 'notifications are configured in the settings store',
  clearTmp: 'the runner cleans up between builds itself',
  docker: 'Lambkin has no ECS/Docker builds',
  allowConfigOverrides:
    'it has no effect in a repository file (nor had it in LambCI); operators set it in the settings store',
};

const entryProperties = {
  cmd: {
    type: 'string',
    pattern: '\\S',
    not: { type: 'string', pattern: '\\u0000' },
    errorMessage: 'must be a command (a non-empty string)',
  },
  env: {
    type: 'object',
    propertyNames: {
      type: 'string',
      pattern: '^[A-Za-z_][A-Za-z0-9_]*$',
      errorMessage: 'must be a variable name: letters, digits and _, not starting with a digit',
    },
    additionalProperties: {
      type: ['string', 'number', 'boolean'],
      not: { type: 'string', pattern: '\\u0000' },
      errorMessage: 'must be a string, a number or true/false',
    },
    errorMessage: 'must be an object of variable names to values',
  },
  build: { type: 'boolean', errorMessage: 'must be true or false' },
  inheritSecrets: { type: 'boolean', errorMessage: 'must be true or false' },
  git: {
    type: 'object',
    properties: {
      depth: { type: 'integer', minimum: 1, errorMessage: 'must be a whole number of commits, 1 or more' },
    },
    errorMessage: 'must be an object such as {"depth": 5}',
  },
  ...Object.fromEntries(Object.keys(UNUSED_KEYS).map((key) => [key, true])),
};

const entryOrBoolean = {
  type: ['boolean', 'object'],
  properties: entryProperties,
  additionalProperties: false,
  errorMessage: 'must be true, false or an object of overrides',
};

/** LambCI's config as far as Lambkin reads it (internal; the published schema is Lambkin's own). */
export const LAMBCI_CONFIG_SCHEMA = {
  type: 'object',
  properties: {
    ...entryProperties,
    branches: {
      type: 'object',
      additionalProperties: entryOrBoolean,
      errorMessage: 'must be an object of branch names or /regex/ to true, false or overrides',
    },
    pullRequests: {
      type: ['boolean', 'object'],
      properties: {
        fromSelfPublicRepo: entryOrBoolean,
        fromSelfPrivateRepo: entryOrBoolean,
        fromForkPublicRepo: entryOrBoolean,
        fromForkPrivateRepo: entryOrBoolean,
      },
      additionalProperties: false,
      errorMessage: 'must be true, false or an object with fromSelfPublicRepo … fromForkPrivateRepo',
    },
  },
  additionalProperties: false,
  errorMessage: 'must be a JSON object of LambCI settings',
};
