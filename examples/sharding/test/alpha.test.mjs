import assert from 'node:assert/strict';
// Mocha defines it() as a global; node --test takes it from node:test.
const { it } = globalThis.it ? globalThis : await import('node:test');

it('alpha: adds', () => assert.equal(1 + 1, 2));
it('alpha: joins', () => assert.equal(['alpha', 'ok'].join(' '), 'alpha ok'));
