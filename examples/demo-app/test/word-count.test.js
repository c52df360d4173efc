import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { wordCount } from '../index.js';

describe('wordCount', () => {
  it('counts words separated by any whitespace', () => {
    assert.equal(wordCount('one two\tthree\nfour'), 4);
  });

  it('ignores punctuation and extra spaces', () => {
    assert.equal(wordCount('  Hello,   world!  '), 2);
  });

  it("keeps apostrophes and hyphens inside a word: don't, well-known", () => {
    assert.equal(wordCount("Don't panic: it's a well-known fact."), 6);
  });

  it('counts numbers as words', () => {
    assert.equal(wordCount('Build 42 passed in 3 seconds'), 6);
  });

  it('is zero for an empty or blank text', () => {
    assert.equal(wordCount(''), 0);
    assert.equal(wordCount(' \n '), 0);
  });
});
