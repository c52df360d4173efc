/**
 * Whether a build may deploy: the operator's decision, made by the controller from the operator's
 * settings (`deploy.branches` / `deploy.tags`) and the default branch's config (its
 * `deployBranches` / `deployTags`, read through the contents API), never from the pushed commit.
 * The checkout supplies only the deploy commands. Pure: the controller reads, this decides.
 */
import type { BuildRequest } from './build.js';
import type { DeployDecision } from './protocol.js';
import { matchesAny as matchesGlob } from './policy.js';
import type { RepoConfigFile } from './repo-config/files.js';
import { resolveBuildConfig } from './repo-config/resolve.js';
import type { DeploySettings } from './settings.js';

export type DeployCandidate = Pick<
  BuildRequest,
  'event' | 'branch' | 'tag' | 'pr' | 'trusted' | 'defaultBranch'
>;

/** The deploy rules of the default branch, and where they came from (for the build log). */
export interface DeployRules {
  deployBranches: string[];
  deployTags: string[];
  source: string;
}

const no = (reason: string): DeployDecision => ({ allowed: false, reason });

/**
 * The decision when it needs nothing read: pull requests, untrusted builds, an unknown default
 * branch, or a ref the operator's settings rule out. Undefined: the default branch's rules decide
 * (read them, then call decideDeploy).
 */
export function deployPrecheck(build: DeployCandidate, settings: DeploySettings): DeployDecision | undefined {
  if (build.event !== 'push' || build.pr !== undefined) return no('pull requests never deploy');
  if (!build.trusted) return no('untrusted builds never deploy');
  if (build.defaultBranch === undefined || build.defaultBranch === '') {
    return no("the repository's default branch is unknown, so its deploy rules cannot be read");
  }
  if (build.tag !== undefined) {
    if (settings.tags !== undefined && !matchesAny(build.tag, settings.tags)) {
      return no(`tag ${build.tag} is not in the settings' deploy.tags`);
    }
    return undefined;
  }
  if (build.branch === undefined) return no('the push names no branch or tag');
  if (settings.branches !== undefined && !matchesAny(build.branch, settings.branches)) {
    return no(`${build.branch} is not in the settings' deploy.branches`);
  }
  return undefined;
}

/**
 * `deployBranches` / `deployTags` of the default branch's config files (merged over the settings
 * store's config defaults, as any build's config is). Defaults: the default branch, no tags.
 * Throws RepoConfigError when the files or the settings' config are invalid.
 */
export function deployRulesOf(input: {
  settingsConfig: Record<string, unknown>;
  files: readonly RepoConfigFile[];
  /** The default branch's name. */
  defaultBranch: string;
  /** Where the files were read, for the log: `main`. */
  ref: string;
}): DeployRules {
  const resolved = resolveBuildConfig({
    settingsConfig: input.settingsConfig,
    repo: { files: [...input.files], hasLockfile: false, hasPackageJson: true, notes: [] },
    build: { event: 'push', branch: input.defaultBranch, defaultBranch: input.defaultBranch },
  });
  const setting = input.files
    .filter((file) => file.format === 'lambkin')
    .filter((file) => file.config.deployBranches !== undefined || file.config.deployTags !== undefined)
    .map((file) => file.source);
  const source =
    setting.length > 0
      ? `${setting.join(', ')} of the default branch ${input.ref}`
      : `the config of the default branch ${input.ref}`;
  return { deployBranches: resolved.deployBranches, deployTags: resolved.deployTags, source };
}

/** The decision for a build that passed deployPrecheck, from the default branch's rules. */
export function decideDeploy(
  build: DeployCandidate,
  settings: DeploySettings,
  rules: DeployRules,
): DeployDecision {
  const early = deployPrecheck(build, settings);
  if (early) return early;
  const rulesCopy = {
    ...rules,
    deployBranches: [...rules.deployBranches],
    deployTags: [...rules.deployTags],
  };
  const narrowed = (key: 'branches' | 'tags') =>
    settings[key] !== undefined ? ` and the settings' deploy.${key}` : '';
  if (build.tag !== undefined) {
    return matchesAny(build.tag, rules.deployTags)
      ? {
          allowed: true,
          reason: `tag ${build.tag} matches deployTags of ${rules.source}${narrowed('tags')}`,
          rules: rulesCopy,
        }
      : {
          allowed: false,
          reason: `tag ${build.tag} is not a deploy tag (deployTags of ${rules.source}: ${listed(rules.deployTags)})`,
          rules: rulesCopy,
        };
  }
  const branch = build.branch ?? '';
  return matchesAny(branch, rules.deployBranches)
    ? {
        allowed: true,
        reason: `${branch} matches deployBranches of ${rules.source}${narrowed('branches')}`,
        rules: rulesCopy,
      }
    : {
        allowed: false,
        reason: `${branch} is not a deploy branch (deployBranches of ${rules.source}: ${listed(rules.deployBranches)})`,
        rules: rulesCopy,
      };
}

/** An exact name, or a glob (as the repository config's own patterns match). */
function matchesAny(name: string, patterns: readonly string[]): boolean {
  return patterns.includes(name) || matchesGlob(name, patterns);
}

function listed(patterns: readonly string[]): string {
  return patterns.length > 0 ? patterns.join(', ') : 'none';
}

/**
 * A line for the build log when the pushed commit's own config names deploy rules other than
 * those that decided: they are not used. Undefined when it names none, or the same.
 */
export function ignoredDeployRules(
  files: readonly RepoConfigFile[],
  decision: DeployDecision | undefined,
): string | undefined {
  let branches: string[] | undefined;
  let tags: string[] | undefined;
  const sources: string[] = [];
  for (const file of files) {
    if (file.format !== 'lambkin') continue;
    const { deployBranches, deployTags } = file.config;
    if (deployBranches === undefined && deployTags === undefined) continue;
    sources.push(file.source);
    if (deployBranches !== undefined) branches = toList(deployBranches);
    if (deployTags !== undefined) tags = toList(deployTags);
  }
  if (sources.length === 0) return undefined;
  const rules = decision?.rules;
  const differs =
    rules === undefined ||
    (branches !== undefined && !sameList(branches, rules.deployBranches)) ||
    (tags !== undefined && !sameList(tags, rules.deployTags));
  if (!differs) return undefined;
  const named = [
    ...(branches !== undefined ? [`deployBranches ${JSON.stringify(branches)}`] : []),
    ...(tags !== undefined ? [`deployTags ${JSON.stringify(tags)}`] : []),
  ].join(' and ');
  const decidedBy = rules
    ? `${rules.source} and the operator's settings`
    : "the controller, from the operator's settings and the default branch's config";
  return (
    `${named} in this commit's ${sources.join(', ')} ${named.includes(' and ') ? 'are' : 'is'} ignored: ` +
    `whether a push deploys is decided by ${decidedBy}, never by the pushed commit`
  );
}

function toList(value: string | readonly string[]): string[] {
  return typeof value === 'string' ? [value] : [...value];
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((item, index) => item === b[index]);
}
