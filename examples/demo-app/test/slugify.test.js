import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { slugify } from '../index.js';

describe('slugify', () => {
  it('lower-cases and joins words with hyphens', () => {
    assert.equal(slugify('Hello World'), 'hello-world');
  });

  it('drops accents', () => {
    assert.equal(slugify('Crème Brûlée à la carte'), 'creme-brulee-a-la-carte');
  });

  it('collapses punctuation and spaces into one hyphen, none at the ends', () => {
    assert.equal(slugify('  --Serverless CI, for GitHub!--  '), 'serverless-ci-for-github');
  });

  it('keeps digits and letters of other scripts', () => {
    assert.equal(slugify('Release 2.0 — Ελληνικά'), 'release-2-0-ελληνικα');
  });

  it('gives an empty slug for text without letters or digits', () => {
    assert.equal(slugify('?!'), '');
  });
});
