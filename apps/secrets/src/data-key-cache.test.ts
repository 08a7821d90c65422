import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createDataKeyCache } from './data-key-cache';

describe('data key cache', () => {
  it('returns copies, evicts the least recently used beyond its bound, and zeroes what leaves', () => {
    let now = 0;
    const cache = createDataKeyCache({ maxEntries: 2, ttlMs: 1000, clock: () => now });
    const a = randomBytes(32);
    cache.set('a', a);
    cache.set('b', randomBytes(32));
    const got = cache.get('a')!;
    expect(got).toEqual(a);
    got.fill(0);
    expect(cache.get('a')).toEqual(a);
    cache.set('c', randomBytes(32));
    expect(cache.get('b')).toBeUndefined();
    expect(cache.size()).toBe(2);
    now = 1000;
    expect(cache.get('a')).toBeUndefined();
    cache.set('d', randomBytes(32));
    cache.drop('d');
    cache.clear();
    expect(cache.size()).toBe(0);
  });

  it('caches nothing when its bound is 0', () => {
    const cache = createDataKeyCache({ maxEntries: 0, ttlMs: 1000, clock: () => 0 });
    cache.set('a', randomBytes(32));
    expect(cache.get('a')).toBeUndefined();
  });
});
