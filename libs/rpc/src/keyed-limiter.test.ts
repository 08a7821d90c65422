import { describe, expect, it } from 'vitest';
import { createKeyedLimiter } from './keyed-limiter';

function gate() {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  return { open, opened };
}

describe('createKeyedLimiter', () => {
  it('runs up to `concurrent` per key, queues up to `queued`, refuses the rest with unavailable; other keys are not affected', async () => {
    const limiter = createKeyedLimiter({ concurrent: 2, queued: 1, per: 'workspace' });
    const g = gate();
    let started = 0;
    const work = () => limiter.run('a', async () => (started++, await g.opened, 'done'));
    const calls = [work(), work(), work()];
    await expect(work()).rejects.toMatchObject({ code: 'unavailable', message: 'too many concurrent calls for this workspace; retry later' });
    expect(limiter.load('a')).toEqual({ running: 2, waiting: 1 });
    expect(started).toBe(2);
    await expect(limiter.run('b', async () => 'other')).resolves.toBe('other');
    g.open();
    await expect(Promise.all(calls)).resolves.toEqual(['done', 'done', 'done']);
    expect(started).toBe(3);
    expect(limiter.load('a')).toEqual({ running: 0, waiting: 0 });
  });

  it('a waiting call whose signal aborts leaves the queue with the abort reason; a failing call frees its turn', async () => {
    const limiter = createKeyedLimiter({ concurrent: 1, queued: 2, per: 'workspace' });
    const g = gate();
    const first = limiter.run('a', () => g.opened);
    const abort = new AbortController();
    const waiting = limiter.run('a', async () => 'never', abort.signal);
    abort.abort(new Error('cancelled'));
    await expect(waiting).rejects.toThrow('cancelled');
    expect(limiter.load('a')).toEqual({ running: 1, waiting: 0 });
    g.open();
    await first;
    await expect(limiter.run('a', async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(limiter.load('a')).toEqual({ running: 0, waiting: 0 });
  });
});
