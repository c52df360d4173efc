/**
 * The `matrix` key's rules that a JSON schema cannot express, and the environment names of matrix
 * values. The expansion into jobs is src/core/jobs.ts.
 *
 * Environment names: every value of a job's combination is in its environment as
 * `LAMBKIN_MATRIX_<NAME>` (the name upper-cased) and, except for `node`, as `<NAME>` as well:
 * `{"DB": "a", "region": "eu"}` gives `LAMBKIN_MATRIX_DB=a DB=a LAMBKIN_MATRIX_REGION=eu REGION=eu`.
 * `node` is only `LAMBKIN_MATRIX_NODE`: it chooses the job's Node.js, and `NODE` is a name npm sets
 * for scripts. Names are letters, digits and `_` (the schema says so), so upper-casing them always
 * gives a valid variable name; names that upper-case to a reserved variable are refused, and so are
 * two names that upper-case to the same variable.
 */
import { MATRIX_NODE_KEY } from './schema.js';
import type { MatrixCell, MatrixInput, MatrixValue } from './schema.js';

/** Prefix of every matrix variable: `LAMBKIN_MATRIX_NODE`, `LAMBKIN_MATRIX_DB`. */
export const MATRIX_ENV_PREFIX = 'LAMBKIN_MATRIX_';

/** A value as the environment and the job's name see it: `20` → `"20"`, `true` → `"true"`. */
export function matrixValueText(value: MatrixValue): string {
  return String(value);
}

/** The variables a matrix name is exported as: `DB` → `["LAMBKIN_MATRIX_DB", "DB"]`, `node` → `["LAMBKIN_MATRIX_NODE"]`. */
export function matrixEnvNames(name: string): string[] {
  const upper = name.toUpperCase();
  return name === MATRIX_NODE_KEY ? [MATRIX_ENV_PREFIX + upper] : [MATRIX_ENV_PREFIX + upper, upper];
}

/** The names with lists of values, in declaration order (not `include` / `exclude`). */
export function matrixLists(matrix: MatrixInput): [string, MatrixValue[]][] {
  const lists: [string, MatrixValue[]][] = [];
  for (const [name, values] of Object.entries(matrix)) {
    if (name === 'include' || name === 'exclude' || values === undefined) continue;
    lists.push([name, values as MatrixValue[]]); // the schema allows only value lists here
  }
  return lists;
}

/** A problem of a matrix: the key path inside `matrix` (`["include", "0", "node"]`) and what is wrong. */
export interface MatrixProblem {
  segments: string[];
  message: string;
}

/** Problems of a `matrix` the schema has already accepted. */
export function matrixProblems(matrix: MatrixInput): MatrixProblem[] {
  const problems: MatrixProblem[] = [];
  const at = (segments: readonly string[], message: string) =>
    problems.push({ segments: [...segments], message });

  const lists = matrixLists(matrix);
  const listNames = new Set(lists.map(([name]) => name));
  if (lists.length === 0 && (matrix.include ?? []).length === 0) {
    at([], 'needs at least one list of values, such as {"node": ["20", "22"]}, or an include entry');
  }

  // Every name, wherever it appears, with the place it first appears.
  const firstSpelling = new Map<string, string>();
  const checkName = (name: string, segments: readonly string[]) => {
    if (name !== MATRIX_NODE_KEY && name.toLowerCase() === MATRIX_NODE_KEY) {
      at(segments, `is not "node": only "node", in lower case, chooses the Node.js version; rename it`);
      return;
    }
    const upper = name.toUpperCase();
    const earlier = firstSpelling.get(upper);
    if (earlier === undefined) firstSpelling.set(upper, name);
    else if (earlier !== name) {
      at(
        segments,
        `is the same variable as "${earlier}" once upper-cased (${upper}): matrix names must differ in more than case`,
      );
    }
  };

  for (const [name, values] of lists) {
    checkName(name, [name]);
    const seen = new Set<string>();
    values.forEach((value, index) => {
      const text = matrixValueText(value);
      if (seen.has(text)) {
        at(
          [name, String(index)],
          `repeats the value "${text}" (values compare as text, so 20 and "20" are the same)`,
        );
      }
      seen.add(text);
    });
  }
  const checkEntries = (key: 'include' | 'exclude', entries: readonly MatrixCell[] | undefined) => {
    (entries ?? []).forEach((entry, index) => {
      for (const name of Object.keys(entry)) {
        checkName(name, [key, String(index), name]);
        if (key === 'exclude' && !listNames.has(name)) {
          at(
            [key, String(index), name],
            `is not one of the matrix's lists (${[...listNames].join(', ') || 'there are none'}): exclude removes combinations of the lists`,
          );
        }
      }
    });
  };
  checkEntries('exclude', matrix.exclude);
  checkEntries('include', matrix.include);
  return problems;
}
