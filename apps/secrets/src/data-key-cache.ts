/** A bounded, expiring cache of unwrapped data keys, so a hydrate does not call the KMS every time. */
export interface DataKeyCache {
  /** A copy of the cached key, or undefined. */
  get(coordinate: string): Buffer | undefined;
  /** Caches a copy of the key. */
  set(coordinate: string, dek: Buffer): void;
  /** Drops (and zeroes) one key: on destroy, expiry and re-wrap. */
  drop(coordinate: string): void;
  /** Drops every key: on KEK rotation or retirement. */
  clear(): void;
  size(): number;
}

/** Options of {@link createDataKeyCache}; `maxEntries` 0 disables caching. */
export interface DataKeyCacheOptions {
  maxEntries: number;
  ttlMs: number;
  clock: () => number;
}

/** Creates a least-recently-used cache with a time to live; keys leave it zeroed. */
export function createDataKeyCache(options: DataKeyCacheOptions): DataKeyCache {
  const entries = new Map<string, { dek: Buffer; expiresAt: number }>();
  const evict = (coordinate: string) => {
    const e = entries.get(coordinate);
    if (!e) return;
    e.dek.fill(0);
    entries.delete(coordinate);
  };
  return {
    get(coordinate) {
      const e = entries.get(coordinate);
      if (!e) return undefined;
      if (e.expiresAt <= options.clock()) {
        evict(coordinate);
        return undefined;
      }
      entries.delete(coordinate);
      entries.set(coordinate, e);
      return Buffer.from(e.dek);
    },
    set(coordinate, dek) {
      if (options.maxEntries <= 0) return;
      evict(coordinate);
      entries.set(coordinate, { dek: Buffer.from(dek), expiresAt: options.clock() + options.ttlMs });
      while (entries.size > options.maxEntries) evict(entries.keys().next().value!);
    },
    drop: evict,
    clear() {
      for (const c of [...entries.keys()]) evict(c);
    },
    size: () => entries.size,
  };
}
