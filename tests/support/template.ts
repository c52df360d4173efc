/**
 * Reading template.yaml offline: YAML with CloudFormation's short-form tags (`!Ref`, `!GetAtt`,
 * `!Sub`, …) turned into their long forms (`{Ref}`, `{'Fn::GetAtt'}`, …), and helpers that find the
 * functions, their environment and the IAM statements their roles get. Used by tests/template and
 * scripts/check-iam.ts.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseDocument, type Tags, type YAMLMap, type YAMLSeq } from 'yaml';
import type { FunctionName } from '../../src/config.js';

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const TEMPLATE_PATH = join(REPO_ROOT, 'template.yaml');

/** CloudFormation's intrinsic functions with a short form, and the name of their long form. */
const INTRINSICS: Record<string, string> = {
  Ref: 'Ref',
  Condition: 'Condition',
  GetAtt: 'Fn::GetAtt',
  Sub: 'Fn::Sub',
  If: 'Fn::If',
  Not: 'Fn::Not',
  Equals: 'Fn::Equals',
  And: 'Fn::And',
  Or: 'Fn::Or',
  FindInMap: 'Fn::FindInMap',
  Join: 'Fn::Join',
  Select: 'Fn::Select',
  Split: 'Fn::Split',
  Base64: 'Fn::Base64',
  Cidr: 'Fn::Cidr',
  GetAZs: 'Fn::GetAZs',
  ImportValue: 'Fn::ImportValue',
  Transform: 'Fn::Transform',
  ToJsonString: 'Fn::ToJsonString',
  Length: 'Fn::Length',
};

/** The `yaml` package's custom tags for every short form, as a scalar, a sequence or a mapping. */
export const CLOUDFORMATION_TAGS: Tags = Object.entries(INTRINSICS).flatMap(([short, long]): Tags => [
  {
    tag: `!${short}`,
    // `!GetAtt Resource.Attribute` is the one scalar short form whose long form is a list.
    resolve: (value: string) => (short === 'GetAtt' ? { [long]: splitGetAtt(value) } : { [long]: value }),
  },
  {
    tag: `!${short}`,
    collection: 'seq',
    resolve: (value: YAMLMap.Parsed | YAMLSeq.Parsed) => ({ [long]: value.toJSON() as unknown }),
  },
  {
    tag: `!${short}`,
    collection: 'map',
    resolve: (value: YAMLMap.Parsed | YAMLSeq.Parsed) => ({ [long]: value.toJSON() as unknown }),
  },
]);

function splitGetAtt(value: string): string[] {
  const dot = value.indexOf('.');
  return dot < 0 ? [value] : [value.slice(0, dot), value.slice(dot + 1)];
}

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

export interface Resource {
  Type: string;
  Properties?: JsonObject;
  Condition?: string;
  DeletionPolicy?: string;
  UpdateReplacePolicy?: string;
  Metadata?: JsonObject;
}

export interface Parameter {
  Type: string;
  Default?: string | number;
  Description?: string;
  AllowedValues?: (string | number)[];
  AllowedPattern?: string;
  MinValue?: number;
  MaxValue?: number;
}

export interface Template {
  AWSTemplateFormatVersion?: string;
  Transform?: string | string[];
  Description?: string;
  Metadata?: JsonObject;
  Parameters: Record<string, Parameter>;
  Conditions?: Record<string, Json>;
  Mappings?: Record<string, Record<string, Record<string, Json>>>;
  Globals?: Record<string, JsonObject>;
  Resources: Record<string, Resource>;
  Outputs: Record<string, { Description?: string; Value: Json }>;
}

export function parseTemplate(text: string): Template {
  const document = parseDocument(text, { customTags: CLOUDFORMATION_TAGS, uniqueKeys: true });
  // Unknown tags are only warnings to the yaml package; here every problem is an error.
  const problems = [...document.errors, ...document.warnings];
  if (problems.length > 0) {
    throw new Error(`template.yaml does not parse: ${problems.map((problem) => problem.message).join('; ')}`);
  }
  const parsed = document.toJS() as unknown;
  if (!isObject(parsed)) throw new Error('template.yaml is not a YAML mapping');
  if (!isObject(parsed.Resources)) throw new Error('template.yaml has no Resources');
  return {
    ...(parsed as unknown as Template),
    Parameters: (parsed.Parameters ?? {}) as unknown as Record<string, Parameter>,
    Outputs: (parsed.Outputs ?? {}) as unknown as Template['Outputs'],
  };
}

export function loadTemplate(path = TEMPLATE_PATH): Template {
  return parseTemplate(readFileSync(path, 'utf8'));
}

export function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The logical id of each deployed function (FUNCTION_CONFIG's names). */
export const FUNCTION_RESOURCES: Record<FunctionName, string> = {
  webhook: 'WebhookFunction',
  builder: 'BuilderFunction',
  runner: 'RunnerFunction',
  sweeper: 'SweeperFunction',
  failure: 'FailureFunction',
  logs: 'LogsFunction',
  notifier: 'NotifierFunction',
  codebuildEvents: 'CodeBuildEventsFunction',
};

/**
 * Functions that run another's bundle: the untrusted builds' runner is the runner's code with
 * LAMBKIN_RUNNER_TRUST=untrusted (FUNCTION_RESOURCES.runner is the trusted builds' one).
 */
export const SAME_CODE_FUNCTIONS: Record<string, FunctionName> = { UntrustedRunnerFunction: 'runner' };

/** Every function of the template as [logical id, the FUNCTION_CONFIG name of the code it runs]. */
export const DEPLOYED_FUNCTIONS: [string, FunctionName][] = [
  ...(Object.entries(FUNCTION_RESOURCES) as [FunctionName, string][]).map(
    ([name, logicalId]): [string, FunctionName] => [logicalId, name],
  ),
  ...Object.entries(SAME_CODE_FUNCTIONS),
];

/**
 * The functions that start, stop or finish CodeBuild runs, and so get CODEBUILD_VARIABLES
 * (src/config.ts) and, when the stack enables CodeBuild, these CodeBuild actions on its projects:
 * the webhook only stops (a superseded build's runs), the others start, stop and look up.
 */
export const CODEBUILD_ACTIONS_OF: Partial<Record<FunctionName, readonly string[]>> = {
  webhook: ['codebuild:StopBuild'],
  builder: ['codebuild:StartBuild', 'codebuild:StopBuild', 'codebuild:BatchGetBuilds'],
  sweeper: ['codebuild:StartBuild', 'codebuild:StopBuild', 'codebuild:BatchGetBuilds'],
  codebuildEvents: ['codebuild:StartBuild', 'codebuild:StopBuild', 'codebuild:BatchGetBuilds'],
};
export const CODEBUILD_FUNCTIONS = Object.keys(CODEBUILD_ACTIONS_OF) as FunctionName[];

/** The two runner functions and the builds each runs. */
export const RUNNER_FUNCTIONS = { trusted: 'RunnerFunction', untrusted: 'UntrustedRunnerFunction' } as const;

export function resource(template: Template, logicalId: string): Resource {
  const found = template.Resources[logicalId];
  if (!found) throw new Error(`template.yaml has no resource ${logicalId}`);
  return found;
}

export function properties(template: Template, logicalId: string): JsonObject {
  return resource(template, logicalId).Properties ?? {};
}

/** A function's property, or the Globals.Function one when the function does not set it. */
export function functionProperty(template: Template, logicalId: string, name: string): Json | undefined {
  return properties(template, logicalId)[name] ?? template.Globals?.Function?.[name];
}

export function environmentOf(template: Template, logicalId: string): JsonObject {
  const environment = properties(template, logicalId).Environment;
  if (environment === undefined) return {};
  if (!isObject(environment) || !isObject(environment.Variables)) {
    throw new Error(`${logicalId}: Environment must be {Variables: {...}}`);
  }
  return environment.Variables;
}

export function asList<T>(value: T | T[] | undefined): T[] {
  return value === undefined ? [] : Array.isArray(value) ? value : [value];
}

/** One IAM statement a function's role gets, in the form the checks read. */
export interface Grant {
  sid: string | undefined;
  effect: string;
  actions: string[];
  resources: Json[];
  condition: Json | undefined;
}

/**
 * The statements of a function's role: its SAM `Policies` (inline statements only, so they can be
 * read here; a SAM policy template or managed policy is refused) or, with `Role: !GetAtt X.Arn`, the
 * inline policies of role X; and every `AWS::IAM::Policy` resource attached to that role. SAM's own additions (the basic execution policy for the function's
 * logs, the on-failure destination's invoke permission) are not included.
 */
export function grantsOf(template: Template, logicalId: string): Grant[] {
  const props = properties(template, logicalId);
  const documents: Json[] = [];
  if (props.Role !== undefined) {
    const role = props.Role;
    const target = isObject(role) ? role['Fn::GetAtt'] : undefined;
    if (!Array.isArray(target) || target[1] !== 'Arn' || typeof target[0] !== 'string') {
      throw new Error(`${logicalId}: Role must be !GetAtt <a role of this template>.Arn`);
    }
    const roleResource = resource(template, target[0]);
    if (roleResource.Type !== 'AWS::IAM::Role') throw new Error(`${logicalId}: ${target[0]} is not a role`);
    if (roleResource.Properties?.ManagedPolicyArns !== undefined) {
      throw new Error(`${target[0]}: managed policies cannot be checked here; use inline policies`);
    }
    for (const policy of asList(roleResource.Properties?.Policies as Json[] | undefined)) {
      if (!isObject(policy)) throw new Error(`${target[0]}: a policy is not a mapping`);
      documents.push(policy.PolicyDocument ?? null);
    }
    if (props.Policies !== undefined) throw new Error(`${logicalId}: Role and Policies together`);
  } else {
    for (const policy of asList(props.Policies as Json[] | undefined)) {
      if (!isObject(policy) || policy.Statement === undefined || Object.keys(policy).length > 2) {
        throw new Error(
          `${logicalId}: only inline policy documents ({Statement: [...]}) can be checked here, got ` +
            JSON.stringify(policy),
        );
      }
      documents.push(policy);
    }
  }
  documents.push(...attachedPolicyDocuments(template, roleOf(logicalId, props)));
  return documents.flatMap((document) => {
    if (!isObject(document)) throw new Error(`${logicalId}: a policy document is not a mapping`);
    return asList(document.Statement as Json[] | Json).map((conditional) => {
      // `!If [Condition, statement, !Ref AWS::NoValue]`: checked as if the condition held.
      const branches = isObject(conditional) ? conditional['Fn::If'] : undefined;
      const statement = Array.isArray(branches) ? branches[1] : conditional;
      if (!isObject(statement)) throw new Error(`${logicalId}: a statement is not a mapping`);
      const actions = asList(statement.Action as Json);
      if (statement.NotAction !== undefined || statement.NotResource !== undefined) {
        throw new Error(`${logicalId}: NotAction / NotResource are not allowed`);
      }
      if (!actions.every((action): action is string => typeof action === 'string')) {
        throw new Error(`${logicalId}: every Action must be a plain string`);
      }
      return {
        sid: typeof statement.Sid === 'string' ? statement.Sid : undefined,
        effect: String(statement.Effect),
        actions,
        resources: asList(statement.Resource as Json),
        condition: statement.Condition,
      };
    });
  });
}

/** The logical id of a function's role: its `Role: !GetAtt X.Arn`, else the one SAM makes (`<id>Role`). */
function roleOf(logicalId: string, props: JsonObject): string {
  const target = isObject(props.Role) ? props.Role['Fn::GetAtt'] : undefined;
  return Array.isArray(target) && typeof target[0] === 'string' ? target[0] : `${logicalId}Role`;
}

/** The documents of `AWS::IAM::Policy` resources attached to a role (`Roles: [!Ref role]`). */
function attachedPolicyDocuments(template: Template, role: string): Json[] {
  return Object.values(template.Resources)
    .filter((entry) => entry.Type === 'AWS::IAM::Policy')
    .filter((entry) =>
      asList(entry.Properties?.Roles as Json[] | undefined).some(
        (attached) => isObject(attached) && attached.Ref === role,
      ),
    )
    .map((entry) => entry.Properties?.PolicyDocument ?? null);
}

/** True when an IAM action pattern (case-insensitive, `*` and `?` wildcards) covers the action. */
export function actionCovers(pattern: string, action: string): boolean {
  const regex = new RegExp(
    `^${pattern
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
    'i',
  );
  return regex.test(action);
}

/** The actions a set of statements allows (Deny statements are not grants). */
export function allowedActions(grants: Grant[]): string[] {
  return grants.filter((grant) => grant.effect === 'Allow').flatMap((grant) => grant.actions);
}

export function isGranted(grants: Grant[], action: string): boolean {
  return allowedActions(grants).some((pattern) => actionCovers(pattern, action));
}

/**
 * The template names (resources and parameters) an IAM Resource entry refers to: `!Ref X`,
 * `!GetAtt X.Arn` and `!Sub '${X.Arn}/...'`. A literal string refers to nothing (and is reported
 * as such by the checks).
 */
export function referencedNames(value: Json): string[] {
  if (typeof value === 'string') return [];
  if (Array.isArray(value)) return value.flatMap(referencedNames);
  if (!isObject(value)) return [];
  if (typeof value.Ref === 'string') return [value.Ref];
  const getAtt = value['Fn::GetAtt'];
  if (Array.isArray(getAtt) && typeof getAtt[0] === 'string') return [getAtt[0]];
  const sub = value['Fn::Sub'];
  if (typeof sub === 'string') {
    return [...sub.matchAll(/\$\{([A-Za-z0-9]+)(?:\.[A-Za-z0-9.]+)?\}/g)]
      .map((match) => match[1] ?? '')
      .filter((name) => name !== '' && !name.startsWith('AWS'));
  }
  return Object.values(value).flatMap(referencedNames);
}
