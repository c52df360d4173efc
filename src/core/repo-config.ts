/**
 * A repository's own build config: `.lambkin.json` or package.json's `"lambkin"` key (and LambCI's
 * `.lambci.json` / `"lambci"`, translated), merged over the settings store's config and built-in
 * defaults. Config is data only: no config file is ever executed. The parts live in repo-config/.
 */
export {
  CODEBUILD_COMPUTES,
  DEFAULT_TIMEOUT_SECONDS,
  LAMBDA_MAX_BUILD_SECONDS,
  ENTRY_KEYS,
  MATRIX_NODE_KEY,
  MAX_CONFIG_FILE_BYTES,
  MAX_MATRIX_ITEMS,
  MAX_MATRIX_NAMES,
  MAX_PARALLEL,
  MAX_TIMEOUT_SECONDS,
  REPO_CONFIG_KEYS,
  REPO_CONFIG_SCHEMA,
  RESERVED_ENV_NAMES,
  RESERVED_ENV_PREFIXES,
  SETTINGS_CONFIG_SCHEMA,
  isReservedEnvName,
} from './repo-config/schema.js';
export type {
  BuildOverrides,
  CodeBuildCompute,
  CodeBuildRequest,
  Commands,
  EnvValue,
  MatrixCell,
  MatrixInput,
  MatrixValue,
  RepoConfigInput,
  RunsOn,
  SettingsConfigInput,
} from './repo-config/schema.js';
export { RepoConfigError, STATUS_DESCRIPTION_LIMIT, formatProblem } from './repo-config/config-errors.js';
export type { RepoConfigProblem } from './repo-config/config-errors.js';
export { validateRepoConfig, validateSettingsConfig } from './repo-config/validate.js';
export { LAMBCI_FILE, LAMBKIN_FILE, readRepoConfig } from './repo-config/files.js';
export type { RepoConfigFile, RepoConfigFiles } from './repo-config/files.js';
export { checkNodeVersion, resolveBuildConfig } from './repo-config/resolve.js';
export type { BuildContext, ResolveInput, ResolvedBuildConfig } from './repo-config/resolve.js';
export { MATRIX_ENV_PREFIX, matrixEnvNames, matrixValueText } from './repo-config/matrix.js';
export { LAMBCI_VARIABLES, buildVariables } from './repo-config/variables.js';
export type { BuildVariableOptions, LambciVariable } from './repo-config/variables.js';
export type { LambciConfig } from './repo-config/lambci.js';
