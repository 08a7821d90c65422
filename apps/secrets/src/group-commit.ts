/**
 * Group commit of concurrent calls: a call that arrives while `maxInFlight` batches are running waits
 * and joins the next batch (at most `maxBatch` calls), so under load a batch costs one round trip and
 * one commit instead of one per call; alone, a call runs at once (the next turn of the event loop).
 */
export interface GroupCommit<T> {
  submit(item: T): void;
  /** Calls waiting for a batch. */
  waiting(): number;
}

export function createGroupCommit<T>(run: (batch: T[]) => Promise<void>, options: { maxBatch: number; maxInFlight: number }): GroupCommit<T> {
  if (!Number.isInteger(options.maxBatch) || options.maxBatch < 1) throw new Error('maxBatch must be a positive integer');
  if (!Number.isInteger(options.maxInFlight) || options.maxInFlight < 1) throw new Error('maxInFlight must be a positive integer');
  const queue: T[] = [];
  let inFlight = 0;
  let scheduled = false;

  function pump(): void {
    scheduled = false;
    while (inFlight < options.maxInFlight && queue.length > 0) {
      const batch = queue.splice(0, options.maxBatch);
      inFlight++;
      // `run` settles every item itself; a throw here is a defect, and must not stop the pump.
      run(batch)
        .catch(() => undefined)
        .finally(() => {
          inFlight--;
          schedule();
        });
    }
  }

  function schedule(): void {
    if (scheduled || queue.length === 0 || inFlight >= options.maxInFlight) return;
    scheduled = true;
    // Calls that arrived in the same turn of the event loop join one batch.
    setImmediate(pump);
  }

  return {
    submit(item) {
      queue.push(item);
      schedule();
    },
    waiting: () => queue.length,
  };
}
