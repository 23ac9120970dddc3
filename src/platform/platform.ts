/**
 * What the library needs from its host, in one small interface, so that the model, quantizer,
 * cache and predictor code never import `node:*` or read `process`: files, hashes, the package's
 * own assets (grids, the embedded model), a native matrix product where one exists, and a place
 * for one-line warnings. `./node.ts` implements it for Node; `./browser.ts` for browsers (bundlers
 * pick it through package.json's "browser" field, which maps node.js → browser.js).
 */

/**
 * out[M, N] = op(A) · op(B); see tensor/gemm.ts for the convention. `rowwise`: each output row
 * must come out the same whatever rows are computed with it (a native product then splits the
 * work across threads only in ways that keep every row's sums as they are).
 */
export type GemmFn = (
  out: Float32Array, a: Float32Array, b: Float32Array,
  m: number, k: number, n: number, transA: boolean, transB: boolean, rowwise?: boolean,
) => void;

export interface Hasher {
  update(data: Uint8Array | string): Hasher;
  /** Lower-case hex. */
  digest(): string;
}

/**
 * A native matrix product, or why there is none. rowsOnEveryCore(k, n): the fewest rows from which
 * a row-exact product [m, k]·[k, n] (GemmFn's `rowwise`) runs on every core (Infinity: never).
 */
export type FastGemm = { fn: GemmFn; name: string; rowsOnEveryCore?: (k: number, n: number) => number } | { fn: null; reason: string; quiet?: boolean };

/**
 * Helper threads that run the WebAssembly kernels (tensor/kernels.wat) on shared memory, so one
 * product's rows split across cores. Calls are synchronous from the caller's side: start the
 * helpers' parts, compute its own part, wait.
 */
export interface KernelPool {
  readonly helpers: number;
  /**
   * Lets the helpers run `module`'s kernels on `memory` (shared) under `id`; before any call on it.
   * False when the helpers do not answer: the pool is then off for good, and the caller works alone.
   */
  share(id: number, module: WebAssembly.Module, memory: WebAssembly.Memory): boolean;
  /** The helpers let go of arena `id` (its owner is gone), so its memory can be freed. */
  release(id: number): void;
  /** Starts export `fn` of arena `id` with `args` on helper `h`; returns at once. */
  start(h: number, id: number, fn: string, args: number[]): void;
  /** Returns when helper `h` has finished what it was given. */
  wait(h: number): void;
  /**
   * Whether every helper is idle and watching for a call (one just finished), so a product split
   * now starts at once; where one is blocked instead, it is asked to watch for the next call.
   * False, asking nothing, while a background thread works or a native product ran split lately
   * (the helpers would share its core).
   */
  readyForSplit(): boolean;
  /**
   * A native product split across threads runs now: helpers watching for a call stop (and block),
   * and for a while no product is split across them (the native threads spin on those cores).
   */
  cool(): void;
}

/**
 * Bytes set aside and read back later, for data a process should not hold in memory at once
 * (calibration's captured keys and values): a temporary file under Node (unlinked as soon as it
 * is open, so nothing is left behind whatever happens), memory in a browser.
 */
export interface ScratchStore {
  /** Appends `data`; returns its offset. */
  append(data: Uint8Array): number;
  /** Fills `into` from `offset`. */
  read(offset: number, into: Uint8Array): void;
  /** Frees the store (its file's space). */
  close(): void;
}

/**
 * A thread of the host's that runs one module's `handle(message)` for each message sent to it, in
 * order, while the caller goes on (a compressed cache compresses its buffer there while decoding).
 * Replies are taken synchronously, waiting where needed, so synchronous code can use it.
 */
export interface BackgroundThread {
  /** Sends `message` (structured-cloned; `transfer` moves those buffers instead) and returns its number. */
  send(message: unknown, transfer?: ArrayBuffer[]): number;
  /**
   * The handler's return value for message `seq`, waiting at most `timeoutMs` for it. Throws where
   * the handler threw, the thread is gone, or time ran out; the caller then does the work itself.
   */
  reply(seq: number, timeoutMs: number): unknown;
  /** Whether the reply to `seq` is in (never waits). */
  ready(seq: number): boolean;
  /** Forgets the reply to `seq` (taken or not): the caller no longer wants it. */
  drop(seq: number): void;
  /** Whether the thread has messages it has not answered yet (it is working, on a core of its own). */
  busy(): boolean;
}

export interface Platform {
  readonly name: 'node' | 'browser';
  /** Throws an AquaError unless `path` is a regular file (a FIFO would hang a reader; a directory fails late). */
  checkFile(path: string): void;
  readFile(path: string): Uint8Array;
  readText(path: string): string;
  /** Writes through a temporary file in the same directory, then renames: never a half-written file. */
  writeFileAtomic(path: string, data: Uint8Array | string): void;
  exists(path: string): boolean;
  isDirectory(path: string): boolean;
  /**
   * Throws an AquaError now if `path` could not be written later: its directory is missing or not
   * writable, or the path is a directory. For checks before long work.
   */
  checkWritable(path: string): void;
  /** Creates a directory and its parents (nothing if it exists). */
  makeDirectory(path: string): void;
  joinPath(...parts: string[]): string;
  sha256(): Hasher;
  /** Absolute path of an asset shipped with the package (`grids/EDEN2-16.json`, `models/aquakv-sotu`). */
  assetPath(relative: string): string;
  /** Loads the native matrix product (called once, on the first product that needs it). */
  fastGemm(): FastGemm;
  /** Helper threads for the WebAssembly kernels, or null (one core, threads off, or none in this host). */
  kernelPool(): KernelPool | null;
  /**
   * The background thread running the module at `moduleUrl` (one per module and process, started
   * on first use), or null: one core (or AQUAKV_THREADS=1), AQUAKV_BACKGROUND=0, or a host
   * without threads here.
   */
  backgroundThread(moduleUrl: string): BackgroundThread | null;
  /** A new scratch store (see ScratchStore). */
  scratchStore(): ScratchStore;
  /** A one-line notice for the user (stderr under Node). */
  warn(message: string): void;
}
