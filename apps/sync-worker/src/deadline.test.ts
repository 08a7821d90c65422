import { describe, expect, it } from 'vitest';
import { withDeadline } from './deadline';

describe('withDeadline', () => {
  it('aborts after the time with the message, even when nothing else holds the signal', async () => {
    const d = withDeadline(new AbortController().signal, 30, 'too slow');
    globalThis.gc?.();
    await new Promise((r) => setTimeout(r, 80));
    expect(d.signal.aborted).toBe(true);
    expect((d.signal.reason as Error).message).toBe('too slow');
  });

  it('follows the outer signal, and clear() stops the timer', async () => {
    const outer = new AbortController();
    const d = withDeadline(outer.signal, 10_000, 'never');
    outer.abort(new Error('cancelled'));
    expect(d.signal.aborted).toBe(true);
    const quiet = withDeadline(undefined, 20, 'cleared');
    quiet.clear();
    await new Promise((r) => setTimeout(r, 50));
    expect(quiet.signal.aborted).toBe(false);
  });
});
