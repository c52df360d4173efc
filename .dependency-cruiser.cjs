/**
 * Lambkin's architecture as import rules, checked by `npm run lint` (dependency-cruiser).
 * docs/architecture.md explains the folders; tests/build/import-rules.test.ts shows each rule
 * failing on a violating import.
 *
 * The trust line: the controller holds credentials, the runner holds none. The runner may import
 * only the pure core, the pure page renderers and itself: no store, no GitHub client, no AWS SDK (it
 * uploads through presigned forms). Nothing deployed imports the CLI or the local stack.
 */
/** Folders whose code is deployed to Lambda (or feeds what is). */
const DEPLOYED = '^src/(core|controller|runner|pages|handlers|store|github|aws|notify)/';

module.exports = {
  forbidden: [
    {
      name: 'core-is-pure',
      comment:
        'src/core is the pure core: it imports only itself, Node built-ins and small pure libraries ' +
        '(ajv, semver, picomatch). Put adapters in store/, github/ or aws/, services in controller/.',
      severity: 'error',
      from: { path: '^src/core/' },
      to: {
        dependencyTypesNot: ['core'],
        pathNot: ['^src/core/', '^node_modules/(ajv|semver|picomatch)/'],
      },
    },
    {
      name: 'runner-holds-no-credentials',
      comment:
        'src/runner runs strangers’ code: it imports only core/, pages/ (pure renderers), itself, ' +
        'Node built-ins, tar and execa. No store, GitHub client or AWS SDK: it gets presigned forms.',
      severity: 'error',
      from: { path: '^src/runner/' },
      to: {
        dependencyTypesNot: ['core'],
        pathNot: ['^src/(core|pages|runner)/', '^node_modules/(tar|execa)/'],
      },
    },
    {
      name: 'pages-are-pure',
      comment: 'src/pages renders HTML and SVG from records: it imports only core/, itself and ansi_up.',
      severity: 'error',
      from: { path: '^src/pages/' },
      to: {
        dependencyTypesNot: ['core'],
        pathNot: ['^src/(core|pages)/', '^node_modules/ansi_up/'],
      },
    },
    {
      name: 'deployed-code-never-imports-cli-or-local',
      comment:
        'Handlers, services, adapters and the runner are deployed: the CLI and the local stack ' +
        '(servers, stand-ins) must never end up in a Lambda bundle. Pass what they need in instead.',
      severity: 'error',
      from: { path: [DEPLOYED, '^src/(config|wiring)\\.ts$'] },
      to: { path: '^src/(cli|local|bench)/' },
    },
    {
      name: 'no-folder-cycles',
      comment:
        'Folders depend on each other in one direction: a cycle means a type or function is in the ' +
        'wrong folder (ports belong in core/ports.ts).',
      severity: 'error',
      scope: 'folder',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'no-module-cycles',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'not-to-unresolvable',
      severity: 'error',
      from: { path: '^src/' },
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsConfig: { fileName: 'tsconfig.json' },
    tsPreCompilationDeps: true,
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      extensions: ['.ts', '.js', '.mjs', '.d.ts'],
    },
  },
};
