import { LambkinError } from '../errors.js';

/** GitHub cuts commit status descriptions at this length. */
export const STATUS_DESCRIPTION_LIMIT = 140;

export interface RepoConfigProblem {
  /** Where the value came from: `.lambkin.json`, `package.json`, `settings`; absent for runtime checks. */
  source?: string;
  /** JSON path of the key, such as `timeout` or `branches['release/*'].test[1]`; absent for the whole file. */
  path?: string;
  /** What was expected, and what was found: `must be … (got "ten")`. */
  message: string;
}

/** One line: `.lambkin.json: "timeout" must be … (got "ten")`, or `.lambkin.json is not valid JSON …`. */
export function formatProblem(problem: RepoConfigProblem): string {
  const subject = problem.path === undefined ? undefined : `"${problem.path}"`;
  if (problem.source === undefined) return [subject, problem.message].filter(Boolean).join(' ');
  return subject === undefined
    ? `${problem.source} ${problem.message}`
    : `${problem.source}: ${subject} ${problem.message}`;
}

function summarize(problems: readonly RepoConfigProblem[], omitted: number): string {
  const first = problems[0] ? formatProblem(problems[0]) : 'the build config is not valid';
  const others = problems.length - 1 + omitted;
  const more = others > 0 ? ` (+${others} more)` : '';
  if (first.length + more.length <= STATUS_DESCRIPTION_LIMIT) return first + more;
  return `${first.slice(0, STATUS_DESCRIPTION_LIMIT - more.length - 1)}…${more}`;
}

function defaultHint(problems: readonly RepoConfigProblem[]): string {
  const sources = new Set(problems.map((problem) => problem.source));
  const hints: string[] = [];
  if (sources.has('settings')) {
    hints.push("Fix the settings store's config (global or this repository's).");
  }
  if ([...sources].some((source) => source !== undefined && source !== 'settings')) {
    hints.push(
      'Fix the file and push again: docs/configuration.md describes every key, and editors can check the file against schema/lambkin.schema.json.',
    );
  }
  return hints.join(' ');
}

/**
 * The build config (a repository file or the settings store's config) cannot be used. `message` is
 * one line of at most 140 characters, fit for a commit status; `detail` lists every problem and
 * says what to do.
 */
export class RepoConfigError extends LambkinError {
  readonly detail: string;
  /** Problems found but not listed (a broken file can have thousands). */
  readonly omitted: number;

  constructor(
    readonly problems: readonly RepoConfigProblem[],
    options: { hint?: string; omitted?: number } = {},
  ) {
    const omitted = options.omitted ?? 0;
    super('REPO_CONFIG', summarize(problems, omitted));
    this.omitted = omitted;
    const hint = options.hint ?? defaultHint(problems);
    this.detail = [
      'The build config cannot be used:',
      ...problems.map((problem) => `  - ${formatProblem(problem)}`),
      ...(omitted > 0 ? [`  - and ${omitted} more`] : []),
      ...(hint ? [hint] : []),
    ].join('\n');
  }

  /** The file (or `settings`) of the first problem. */
  get source(): string | undefined {
    return this.problems[0]?.source;
  }
}
