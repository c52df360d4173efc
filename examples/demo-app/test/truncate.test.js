import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { truncate } from '../index.js';

describe('truncate', () => {
  it('leaves a text within the limit as it is', () => {
    assert.equal(truncate('short', 5), 'short');
  });

  it('cuts at the last word boundary and adds an ellipsis', () => {
    assert.equal(truncate('the quick brown fox', 12), 'the quick…');
  });

  it('cuts inside a word that has no boundary before the limit', () => {
    assert.equal(truncate('supercalifragilistic', 6), 'super…');
  });

  it('counts characters, not UTF-16 units', () => {
    assert.equal(truncate('🐑🐑🐑🐑', 3), '🐑🐑…');
  });

  it('refuses a limit below 1', () => {
    assert.throws(() => truncate('text', 0), RangeError);
  });
});
