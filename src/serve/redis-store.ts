/**
 * Prefix entries in Redis (through node-redis's client), so several server processes, on one
 * machine or many, share one store. Redis being down is never an error for a request: every
 * operation answers "miss" at once (no offline queue), the first failure is said once in the log,
 * `up` turns false for /metrics, and the client reconnects by itself; once it is back, the log
 * says so and entries flow again. Redis's own `maxmemory` policy bounds what it holds.
 */
import { createClient, RESP_TYPES } from '@redis/client';
import type { PrefixStore, StoreStats } from './store.js';

export interface RedisStoreOptions {
  url: string; // redis://HOST:PORT
  /** Prepended to every key (several models or deployments can share one Redis). */
  prefix?: string;
  log?: (message: string) => void;
}

export class RedisStore implements PrefixStore {
  readonly kind = 'redis';
  private readonly client;
  private readonly prefix: string;
  private readonly log: (message: string) => void;
  private bytes = 0;
  private entries = 0;
  private errors = 0;
  private saidDown = false;
  private closed = false;

  constructor(opts: RedisStoreOptions) {
    this.prefix = opts.prefix ?? 'aquakv:';
    this.log = opts.log ?? (() => {});
    this.client = createClient({
      url: opts.url,
      disableOfflineQueue: true, // a command while disconnected fails at once: a miss, not a wait
      socket: { connectTimeout: 2000, reconnectStrategy: (retries: number) => Math.min(100 * 2 ** Math.min(retries, 4), 2000) },
    }).withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer });
    this.client.on('error', (e: Error) => this.down(e));
    this.client.on('ready', () => {
      if (this.saidDown) this.log(`redis store ${opts.url} is reachable again; prefix entries are shared again`);
      this.saidDown = false;
    });
    // never awaited: a server starts (and serves, uncached) while Redis is unreachable
    this.client.connect().catch((e: Error) => this.down(e));
  }

  private down(e: Error): void {
    this.errors++;
    if (!this.saidDown && !this.closed) {
      this.saidDown = true;
      this.log(`redis store unreachable (${e.message || e.constructor.name}); serving without a prefix cache until it is back`);
    }
  }

  async get(key: string): Promise<Uint8Array | null> {
    if (!this.client.isReady) return null;
    try {
      const v = await this.client.get(this.prefix + key);
      return v ? new Uint8Array(v.buffer, v.byteOffset, v.byteLength) : null;
    } catch (e) {
      this.down(e as Error);
      return null;
    }
  }

  async set(key: string, value: Uint8Array): Promise<void> {
    if (!this.client.isReady) return;
    try {
      await this.client.set(this.prefix + key, Buffer.from(value.buffer, value.byteOffset, value.byteLength));
      this.bytes += value.byteLength;
      this.entries++;
    } catch (e) {
      this.down(e as Error);
    }
  }

  async delete(key: string): Promise<void> {
    if (!this.client.isReady) return;
    try {
      await this.client.del(this.prefix + key);
    } catch (e) {
      this.down(e as Error);
    }
  }

  stats(): StoreStats {
    return { bytes: this.bytes, entries: this.entries, evictions: 0, errors: this.errors, up: this.client.isReady };
  }

  async close(): Promise<void> {
    this.closed = true;
    try {
      if (this.client.isOpen) await this.client.close();
      else this.client.destroy();
    } catch {
      this.client.destroy();
    }
  }
}
