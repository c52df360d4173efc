/**
 * Every output format the annotations read, in one list. Each parser reads the whole log on its own;
 * the formats do not overlap (a line one parser reads means nothing to the others).
 */
import { eslintStylishParser } from './eslint-stylish.js';
import { jestParser } from './jest.js';
import { mochaParser } from './mocha.js';
import { nodeSpecParser } from './node-spec.js';
import { tapParser } from './tap.js';
import { tscParser } from './tsc.js';
import type { LogParser } from './types.js';

export const PARSERS: readonly LogParser[] = [
  tapParser,
  nodeSpecParser,
  mochaParser,
  jestParser,
  tscParser,
  eslintStylishParser,
];
