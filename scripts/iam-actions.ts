/**
 * Which IAM actions Lambkin's AWS SDK calls need. Two sources feed it:
 *
 * - what the tests really sent: src/aws/command-log.ts appends `<Client> <Command>` to the file named
 *   by LAMBKIN_SDK_COMMAND_LOG (the jest run sets it); scripts/check-iam.ts checks the union of all
 *   functions' grants covers it;
 * - what each function's bundle contains: the esbuild metafile (dist/functions/<name>/meta.json)
 *   lists the modules bundled; the AWS SDK commands Lambkin's own bundled modules use are mapped to
 *   actions and checked against that function's role (tests/template/bundles.test.ts).
 *
 * Rules, stated once here:
 * 1. Action names: `<service>:<Command without "Command">`, except where IAM names them otherwise
 *    (ACTION_OVERRIDES: `lambda:Invoke` is `lambda:InvokeFunction`, `s3:ListObjectsV2` is
 *    `s3:ListBucket`, …). Document-client commands (lib-dynamodb `GetCommand`, …) are the
 *    DynamoDB commands they send (`GetItem`, …).
 * 2. Requests signed but never sent through a client need the signer's permission too:
 *    `createPresignedPost` (the runner's log uploads) is signed by the builder's role, so it needs
 *    s3:PutObject; `getSignedUrl` needs the action of the command it signs (already counted, as it
 *    goes through the client's middleware and is logged). The deploy role's grant (src/aws/sts.ts
 *    StsDeployRoleGrants: an STS AssumeRole presigned with @smithy/signature-v4, sent by the runner
 *    after its tests passed) needs the builder's sts:AssumeRole on the deploy roles, which the
 *    template grants (AssumeDeployRoles) and the builder's AssumeRoleCommand import requires anyway.
 * 3. OPERATOR_ONLY: commands that only the operator's CLI (with the operator's own credentials), the
 *    embedded local stack or the tests send are no function's business and are not required of the
 *    template (creating tables and buckets, reading the stack's outputs, sealing secret variables).
 * 4. The SDK's own internal commands (credential providers' STS/SSO calls, DynamoDB endpoint
 *    discovery, S3 Express sessions) are not Lambkin's and are never counted.
 */
import { readFileSync } from 'node:fs';
import { isAbsolute, join, relative, sep } from 'node:path';
import ts from 'typescript';
import { isGranted, type Grant } from '../tests/support/template.js';

/** IAM service prefix of each SDK client (the `clientName` the command log records). */
export const SERVICE_OF_CLIENT: Record<string, string> = {
  DynamoDBClient: 'dynamodb',
  DynamoDBDocumentClient: 'dynamodb',
  S3Client: 's3',
  LambdaClient: 'lambda',
  SecretsManagerClient: 'secretsmanager',
  KMSClient: 'kms',
  CloudFormationClient: 'cloudformation',
  STSClient: 'sts',
  SNSClient: 'sns',
  CodeBuildClient: 'codebuild',
};

/** IAM service prefix of each SDK package. */
export const SERVICE_OF_PACKAGE: Record<string, string> = {
  '@aws-sdk/client-dynamodb': 'dynamodb',
  '@aws-sdk/lib-dynamodb': 'dynamodb',
  '@aws-sdk/client-s3': 's3',
  '@aws-sdk/client-lambda': 'lambda',
  '@aws-sdk/client-secrets-manager': 'secretsmanager',
  '@aws-sdk/client-kms': 'kms',
  '@aws-sdk/client-cloudformation': 'cloudformation',
  '@aws-sdk/client-sts': 'sts',
  '@aws-sdk/client-sns': 'sns',
  '@aws-sdk/client-codebuild': 'codebuild',
};

/** lib-dynamodb's document commands and the DynamoDB operation each sends. */
const DOCUMENT_COMMANDS: Record<string, string> = {
  Get: 'GetItem',
  Put: 'PutItem',
  Update: 'UpdateItem',
  Delete: 'DeleteItem',
  Query: 'Query',
  Scan: 'Scan',
  BatchGet: 'BatchGetItem',
  BatchWrite: 'BatchWriteItem',
  TransactGet: 'TransactGetItems',
  TransactWrite: 'TransactWriteItems',
};

/** Operations whose IAM action is not `<service>:<operation>`. */
export const ACTION_OVERRIDES: Record<string, string[]> = {
  'lambda:Invoke': ['lambda:InvokeFunction'],
  'lambda:InvokeAsync': ['lambda:InvokeFunction'],
  'lambda:InvokeWithResponseStream': ['lambda:InvokeFunction'],
  's3:ListObjectsV2': ['s3:ListBucket'],
  's3:ListObjects': ['s3:ListBucket'],
  's3:HeadBucket': ['s3:ListBucket'],
  's3:HeadObject': ['s3:GetObject'],
  's3:DeleteObjects': ['s3:DeleteObject'],
  's3:CopyObject': ['s3:GetObject', 's3:PutObject'],
  's3:CreateMultipartUpload': ['s3:PutObject'],
  's3:UploadPart': ['s3:PutObject'],
  's3:CompleteMultipartUpload': ['s3:PutObject'],
  's3:GetObjectAttributes': ['s3:GetObject', 's3:GetObjectVersion'],
};

/** Rule 2: signing functions of the SDK's presigners and what the signed request needs. */
export const SIGNED_NOT_SENT: Record<string, { module: string; actions: string[] }> = {
  createPresignedPost: { module: '@aws-sdk/s3-presigned-post', actions: ['s3:PutObject'] },
};

/** Rule 3: operations no function sends, and who does. */
export const OPERATOR_ONLY: Record<string, string> = {
  'dynamodb:CreateTable': 'tables are made by CloudFormation; locally by the embedded stack and the tests',
  'dynamodb:DeleteTable': 'tests clean up their own tables',
  'dynamodb:DescribeTable': 'tests and the local stack wait for their tables',
  'dynamodb:ListTables': 'tests and the local stack',
  'dynamodb:UpdateTimeToLive': 'TTL is set by CloudFormation; locally by the embedded stack',
  'dynamodb:DescribeTimeToLive': 'tests',
  'dynamodb:Scan': 'tests read a whole table to show a refused caller changed nothing; no function scans',
  's3:CreateBucket': 'the bucket is made by CloudFormation; locally by the embedded stack and the tests',
  's3:DeleteBucket': 'tests clean up their own buckets',
  's3:ListAllMyBuckets': 'tests',
  'cloudformation:DescribeStacks': 'the CLI reads the stack outputs (lambkin --stack) with your credentials',
  'kms:Encrypt': 'the CLI seals secretEnv values with your own credentials (they need kms:Encrypt)',
  'kms:CreateKey': 'tests make their own keys',
  'secretsmanager:CreateSecret': 'you create the secret before deploying; tests make their own',
  'secretsmanager:PutSecretValue': 'you rotate the secret; tests',
  'secretsmanager:DeleteSecret': 'tests',
  'codebuild:CreateProject': 'the projects are made by CloudFormation; tests make theirs in moto_server',
  'codebuild:DeleteProject': 'tests clean up their own projects',
  'codebuild:BatchGetProjects': 'tests read their projects back; no function reads a project',
  'codebuild:ListProjects': 'tests',
  'codebuild:ListBuilds': 'tests list what an endpoint ran; functions look builds up by id',
  'codebuild:ListBuildsForProject': 'tests list what an endpoint ran; functions look builds up by id',
};

/** Rule 4: SDK-internal commands. */
const SDK_INTERNAL_COMMANDS = new Set(['dynamodb:DescribeEndpoints', 's3:CreateSession']);

export class UnknownSdkCommandError extends Error {}

/** The IAM actions one SDK operation needs (rule 1). */
export function actionsOf(service: string, operation: string): string[] {
  const name = `${service}:${operation}`;
  return ACTION_OVERRIDES[name] ?? [name];
}

/** The IAM actions of a command log line's client and command (`DynamoDBClient`, `GetItemCommand`). */
export function actionsOfCommand(clientName: string, commandName: string): string[] {
  const service = SERVICE_OF_CLIENT[clientName];
  if (!service) {
    throw new UnknownSdkCommandError(
      `No IAM service is known for the SDK client ${clientName}: add it to SERVICE_OF_CLIENT in ` +
        'scripts/iam-actions.ts (and grant what it needs in template.yaml).',
    );
  }
  if (!commandName.endsWith('Command')) {
    throw new UnknownSdkCommandError(`${clientName} ${commandName} is not an SDK command name`);
  }
  const operation = commandName.slice(0, -'Command'.length);
  if (clientName === 'DynamoDBDocumentClient') {
    const sent = DOCUMENT_COMMANDS[operation];
    if (sent) return actionsOf(service, sent);
  }
  return actionsOf(service, operation);
}

/** The IAM actions of a command imported from an SDK package (`@aws-sdk/lib-dynamodb`, `GetCommand`). */
export function actionsOfImport(packageName: string, commandName: string): string[] {
  const service = SERVICE_OF_PACKAGE[packageName];
  if (!service) {
    throw new UnknownSdkCommandError(
      `No IAM service is known for ${packageName}: add it to SERVICE_OF_PACKAGE in scripts/iam-actions.ts.`,
    );
  }
  const operation = commandName.slice(0, -'Command'.length);
  if (packageName === '@aws-sdk/lib-dynamodb') {
    const sent = DOCUMENT_COMMANDS[operation];
    if (!sent) throw new UnknownSdkCommandError(`lib-dynamodb has no document command ${commandName}`);
    return actionsOf(service, sent);
  }
  return actionsOf(service, operation);
}

export function isSdkInternal(action: string): boolean {
  return SDK_INTERNAL_COMMANDS.has(action);
}

/** `<Client> <Command>` lines of a command log, each distinct pair once. */
export function parseCommandLog(text: string): { clientName: string; commandName: string }[] {
  const seen = new Map<string, { clientName: string; commandName: string }>();
  for (const [index, line] of text.split('\n').entries()) {
    if (line.trim() === '') continue;
    const match = /^([A-Za-z0-9]+) ([A-Za-z0-9]+)$/.exec(line.trim());
    if (!match?.[1] || !match[2]) {
      throw new UnknownSdkCommandError(`command log line ${index + 1} is not "<Client> <Command>": ${line}`);
    }
    seen.set(line.trim(), { clientName: match[1], commandName: match[2] });
  }
  return [...seen.values()];
}

export interface RequiredAction {
  action: string;
  /** Why it is needed: the commands or imports that need it. */
  because: string[];
}

function collect(into: Map<string, Set<string>>, actions: string[], because: string): void {
  for (const action of actions) {
    const reasons = into.get(action) ?? new Set<string>();
    reasons.add(because);
    into.set(action, reasons);
  }
}

function finish(required: Map<string, Set<string>>): RequiredAction[] {
  return [...required.entries()]
    .map(([action, because]) => ({ action, because: [...because].sort() }))
    .sort((a, b) => a.action.localeCompare(b.action));
}

/**
 * The actions a command log needs (rules 1–4), and the operator-only ones it also saw. Presigned
 * POSTs are never sent through a client, so `alsoSigned` adds what rule 2 says they need.
 */
export function actionsOfCommandLog(
  text: string,
  alsoSigned: string[] = Object.values(SIGNED_NOT_SENT).flatMap((signed) => signed.actions),
): { required: RequiredAction[]; operatorOnly: RequiredAction[] } {
  const required = new Map<string, Set<string>>();
  const operatorOnly = new Map<string, Set<string>>();
  for (const { clientName, commandName } of parseCommandLog(text)) {
    for (const action of actionsOfCommand(clientName, commandName)) {
      if (isSdkInternal(action)) continue;
      collect(OPERATOR_ONLY[action] ? operatorOnly : required, [action], `${clientName} ${commandName}`);
    }
  }
  collect(required, alsoSigned, 'presigned POST (rule 2)');
  return { required: finish(required), operatorOnly: finish(operatorOnly) };
}

// ---------------------------------------------------------------------------------------------
// Bundles: esbuild metafiles
// ---------------------------------------------------------------------------------------------

export interface Metafile {
  inputs: Record<string, { bytes: number; imports?: { path: string; original?: string }[] }>;
  outputs: Record<
    string,
    { inputs: Record<string, { bytesInOutput: number }>; exports?: string[]; entryPoint?: string }
  >;
}

export function readMetafile(path: string): Metafile {
  const parsed = JSON.parse(readFileSync(path, 'utf8')) as Partial<Metafile>;
  if (
    typeof parsed.inputs !== 'object' ||
    typeof parsed.outputs !== 'object' ||
    !parsed.inputs ||
    !parsed.outputs
  ) {
    throw new Error(`${path} is not an esbuild metafile (no inputs/outputs)`);
  }
  return parsed as Metafile;
}

/** Paths (relative to the repository, `/`-separated) of every input that contributed code. */
export function bundledInputs(meta: Metafile, repoRoot: string, buildRoot = repoRoot): string[] {
  const inputs = new Set<string>();
  for (const output of Object.values(meta.outputs)) {
    for (const [path, { bytesInOutput }] of Object.entries(output.inputs)) {
      if (bytesInOutput <= 0) continue;
      const absolute = isAbsolute(path) ? path : join(buildRoot, path);
      inputs.add(relative(repoRoot, absolute).split(sep).join('/'));
    }
  }
  return [...inputs].sort();
}

/** The repository's own modules in a bundle (src/**), whose SDK use is what the function does. */
export function bundledSourceModules(meta: Metafile, repoRoot: string, buildRoot = repoRoot): string[] {
  return bundledInputs(meta, repoRoot, buildRoot).filter(
    (path) => path.startsWith('src/') && /\.(m|c)?[jt]s$/.test(path),
  );
}

/** The SDK command modules a bundle contains, as `<package> <CommandName>`. */
export function bundledSdkCommandModules(meta: Metafile, repoRoot: string, buildRoot = repoRoot): string[] {
  const found = new Set<string>();
  for (const path of bundledInputs(meta, repoRoot, buildRoot)) {
    const match = /node_modules\/(@aws-sdk\/[^/]+)\/dist-[a-z]+\/commands\/([A-Za-z0-9]+Command)\.js$/.exec(
      path,
    );
    if (match?.[1] && match[2]) found.add(`${match[1]} ${match[2]}`);
  }
  return [...found].sort();
}

export interface SdkUse {
  /** `<package> <name>` of every value imported from an @aws-sdk package. */
  imports: string[];
  /** `@aws-sdk/...` packages imported whole (`import * as x`); every bundled command of them counts. */
  namespaces: string[];
}

/** The AWS SDK values a TypeScript/JavaScript module imports (type-only imports are not uses). */
export function sdkUseOf(sourceText: string, fileName: string): SdkUse {
  const source = ts.createSourceFile(fileName, sourceText, ts.ScriptTarget.Latest, false);
  const imports: string[] = [];
  const namespaces: string[] = [];
  for (const statement of source.statements) {
    if (!ts.isImportDeclaration(statement) && !ts.isExportDeclaration(statement)) continue;
    const specifier = statement.moduleSpecifier;
    if (!specifier || !ts.isStringLiteral(specifier) || !specifier.text.startsWith('@aws-sdk/')) continue;
    const packageName = specifier.text;
    if (ts.isExportDeclaration(statement)) {
      if (statement.isTypeOnly) continue;
      if (!statement.exportClause) namespaces.push(packageName);
      else if (ts.isNamedExports(statement.exportClause)) {
        for (const element of statement.exportClause.elements) {
          if (!element.isTypeOnly)
            imports.push(`${packageName} ${(element.propertyName ?? element.name).text}`);
        }
      } else namespaces.push(packageName);
      continue;
    }
    const clause = statement.importClause;
    if (!clause || clause.isTypeOnly) continue;
    if (clause.name) namespaces.push(packageName);
    const bindings = clause.namedBindings;
    if (!bindings) continue;
    if (ts.isNamespaceImport(bindings)) {
      namespaces.push(packageName);
      continue;
    }
    for (const element of bindings.elements) {
      if (element.isTypeOnly) continue;
      imports.push(`${packageName} ${(element.propertyName ?? element.name).text}`);
    }
  }
  return { imports, namespaces };
}

/**
 * The actions a function's bundle needs: every AWS SDK command (and presigner) that a bundled
 * Lambkin module imports and whose code is in the bundle, through rules 1, 2 and 4. Rule 3's
 * operator-only actions are returned apart.
 *
 * Neither source alone is right. The SDK command modules in the bundle are too many: the SDK
 * bundles commands nobody sends (lib-dynamodb's paginators pull in Scan, the credential providers
 * STS and SSO commands). Lambkin's bundled modules' imports are too many as well: a module kept for
 * one small export still imports commands that tree shaking dropped (the webhook bundles a constant
 * of src/store/logs.ts, not its S3 calls). So a command counts when both say so. When a package is
 * bundled as one CommonJS file (no per-command modules to see), its imports count alone.
 */
export function actionsOfBundle(
  meta: Metafile,
  repoRoot: string,
  buildRoot = repoRoot,
): { required: RequiredAction[]; operatorOnly: RequiredAction[]; modules: string[] } {
  const required = new Map<string, Set<string>>();
  const operatorOnly = new Map<string, Set<string>>();
  const inputs = bundledInputs(meta, repoRoot, buildRoot);
  const commandModules = new Set(bundledSdkCommandModules(meta, repoRoot, buildRoot));
  const packageBundled = (packageName: string) =>
    inputs.some((path) => path.includes(`node_modules/${packageName}/`));
  const perCommand = (packageName: string) =>
    [...commandModules].some((entry) => entry.startsWith(`${packageName} `));
  const commandBundled = (packageName: string, commandName: string) =>
    packageBundled(packageName) &&
    (!perCommand(packageName) || commandModules.has(`${packageName} ${commandName}`));
  const modules = bundledSourceModules(meta, repoRoot, buildRoot);
  for (const module of modules) {
    const use = sdkUseOf(readFileSync(join(repoRoot, module), 'utf8'), module);
    const commands = use.imports.filter((entry) => entry.endsWith('Command'));
    for (const namespace of use.namespaces) {
      commands.push(...[...commandModules].filter((entry) => entry.startsWith(`${namespace} `)));
    }
    for (const entry of commands) {
      const [packageName = '', commandName = ''] = entry.split(' ');
      if (!commandBundled(packageName, commandName)) continue;
      for (const action of actionsOfImport(packageName, commandName)) {
        if (isSdkInternal(action)) continue;
        collect(OPERATOR_ONLY[action] ? operatorOnly : required, [action], `${module}: ${commandName}`);
      }
    }
    for (const [name, signed] of Object.entries(SIGNED_NOT_SENT)) {
      if (use.imports.includes(`${signed.module} ${name}`) && packageBundled(signed.module)) {
        collect(required, signed.actions, `${module}: ${name}`);
      }
    }
  }
  return { required: finish(required), operatorOnly: finish(operatorOnly), modules };
}

// ---------------------------------------------------------------------------------------------
// Coverage
// ---------------------------------------------------------------------------------------------

export interface Coverage {
  action: string;
  because: string[];
  /** The functions (logical ids) whose roles allow it; empty when none does. */
  grantedBy: string[];
}

/** Which functions' grants cover each required action. */
export function coverage(
  required: RequiredAction[],
  grantsByFunction: Record<string, Grant[]>,
): { covered: Coverage[]; missing: Coverage[] } {
  const all = required.map(({ action, because }) => ({
    action,
    because,
    grantedBy: Object.entries(grantsByFunction)
      .filter(([, grants]) => isGranted(grants, action))
      .map(([name]) => name),
  }));
  return {
    covered: all.filter((entry) => entry.grantedBy.length > 0),
    missing: all.filter((entry) => entry.grantedBy.length === 0),
  };
}
