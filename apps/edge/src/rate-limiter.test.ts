import { describe, expect, it } from 'vitest';
import { createRateLimiter } from './rate-limiter';

describe('createRateLimiter', () => {
  it('lets a burst through, refuses the next call with the seconds until a call is free, and refills with time', () => {
    let t = 0;
    const limiter = createRateLimiter({ perSecond: 0.5, burst: 2, now: () => t });
    expect(limiter.take('a')).toEqual({ ok: true });
    expect(limiter.take('a')).toEqual({ ok: true });
    expect(limiter.take('a')).toEqual({ ok: false, retryAfterSeconds: 2 });
    expect(limiter.take('b')).toEqual({ ok: true });
    t = 2000;
    expect(limiter.take('a')).toEqual({ ok: true });
    expect(limiter.take('a')).toEqual({ ok: false, retryAfterSeconds: 2 });
  });

  it('forgets the longest idle key beyond maxKeys (it starts full again)', () => {
    const limiter = createRateLimiter({ perSecond: 1, burst: 1, now: () => 0, maxKeys: 2 });
    limiter.take('a');
    limiter.take('b');
    limiter.take('c');
    expect(limiter.take('a')).toEqual({ ok: true });
    expect(limiter.take('c')).toEqual({ ok: false, retryAfterSeconds: 1 });
  });
});
