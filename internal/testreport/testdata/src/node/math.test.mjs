import { test, describe } from 'node:test';
import assert from 'node:assert/strict';

test('adds numbers', () => {
  assert.equal(1 + 1, 2);
});

test('fails with a diff', () => {
  assert.equal(1 + 1, 3, 'one plus one is three');
});

test('skipped test', { skip: 'no network here' }, () => {});

test('todo test', { todo: 'write the parser first' }, () => {
  throw new Error('not done');
});

test('throws # with a hash', () => {
  throw new TypeError('bad value');
});

describe('suite', () => {
  test('child passes', () => {});
  test('child fails', () => {
    assert.deepEqual({ a: 1 }, { a: 2 });
  });
  describe('inner', () => {
    test('grandchild passes', () => {});
  });
});
