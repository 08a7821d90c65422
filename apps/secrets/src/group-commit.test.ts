import { describe, expect, it } from 'vitest';
import { createGroupCommit } from './group-commit';

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

describe('group commit', () => {
  it('runs a lone call at once, and gathers calls that arrive while a batch runs into the next one', async () => {
    const batches: number[][] = [];
    const gates: ReturnType<typeof deferred>[] = [];
    const gc = createGroupCommit<number>(
      async (batch) => {
        batches.push(batch);
        const gate = deferred();
        gates.push(gate);
        await gate.promise;
      },
      { maxBatch: 3, maxInFlight: 1 },
    );
    gc.submit(1);
    await new Promise((r) => setImmediate(r));
    expect(batches).toEqual([[1]]);
    for (const n of [2, 3, 4, 5]) gc.submit(n);
    await new Promise((r) => setImmediate(r));
    expect(batches).toEqual([[1]]);
    expect(gc.waiting()).toBe(4);
    gates[0]!.resolve();
    await new Promise((r) => setTimeout(r, 5));
    expect(batches).toEqual([[1], [2, 3, 4]]);
    gates[1]!.resolve();
    await new Promise((r) => setTimeout(r, 5));
    expect(batches).toEqual([[1], [2, 3, 4], [5]]);
    gates[2]!.resolve();
  });

  it('keeps going after a batch that throws', async () => {
    const seen: number[] = [];
    const gc = createGroupCommit<number>(
      async (batch) => {
        seen.push(...batch);
        if (batch.includes(1)) throw new Error('defect');
      },
      { maxBatch: 10, maxInFlight: 1 },
    );
    gc.submit(1);
    await new Promise((r) => setTimeout(r, 5));
    gc.submit(2);
    await new Promise((r) => setTimeout(r, 5));
    expect(seen).toEqual([1, 2]);
  });

  it('refuses bounds that are not positive integers', () => {
    expect(() => createGroupCommit(async () => undefined, { maxBatch: 0, maxInFlight: 1 })).toThrow(/maxBatch/);
    expect(() => createGroupCommit(async () => undefined, { maxBatch: 1, maxInFlight: 1.5 })).toThrow(/maxInFlight/);
  });
});
