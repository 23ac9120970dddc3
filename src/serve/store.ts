/**
 * Where the server keeps prefix entries (saved caches of prompt prefixes): a byte-keyed store.
 * `MemoryStore` is an in-process LRU under a byte budget (the default, needing nothing else);
 * `RedisStore` (./redis-store.ts) shares entries between server processes.
 * A store never throws on get/set/delete: a store that fails answers "miss" and counts the error.
 */

export interface StoreStats {
  /** Bytes of entries held (for Redis: written by this process and not known to be gone). */
  bytes: number;
  entries: number;
  evictions: number;
  errors: number;
  /** False while the store cannot be reached (Redis down). */
  up: boolean;
}

export interface PrefixStore {
  readonly kind: 'memory' | 'redis';
  get(key: string): Promise<Uint8Array | null>;
  set(key: string, value: Uint8Array): Promise<void>;
  delete(key: string): Promise<void>;
  stats(): StoreStats;
  close(): Promise<void>;
}

/** Least-recently-used entries go first once the bytes held would pass the budget. */
export class MemoryStore implements PrefixStore {
  readonly kind = 'memory';
  private entries = new Map<string, Uint8Array>(); // insertion order = recency order (oldest first)
  private bytes = 0;
  private evictions = 0;

  constructor(readonly budgetBytes: number) {
    if (!(budgetBytes >= 0)) throw new RangeError(`MemoryStore: a byte budget ≥ 0, got ${budgetBytes}`);
  }

  async get(key: string): Promise<Uint8Array | null> {
    const v = this.entries.get(key);
    if (!v) return null;
    this.entries.delete(key); // mark as most recently used
    this.entries.set(key, v);
    return v;
  }

  async set(key: string, value: Uint8Array): Promise<void> {
    await this.delete(key);
    if (value.byteLength > this.budgetBytes) {
      this.evictions++; // larger than the whole budget: never held
      return;
    }
    while (this.bytes + value.byteLength > this.budgetBytes) {
      const [oldest, v] = this.entries.entries().next().value as [string, Uint8Array];
      this.entries.delete(oldest);
      this.bytes -= v.byteLength;
      this.evictions++;
    }
    this.entries.set(key, value);
    this.bytes += value.byteLength;
  }

  async delete(key: string): Promise<void> {
    const v = this.entries.get(key);
    if (v) {
      this.entries.delete(key);
      this.bytes -= v.byteLength;
    }
  }

  stats(): StoreStats {
    return { bytes: this.bytes, entries: this.entries.size, evictions: this.evictions, errors: 0, up: true };
  }

  async close(): Promise<void> {
    this.entries.clear();
    this.bytes = 0;
  }
}
