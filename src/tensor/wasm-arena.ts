/**
 * WebAssembly memory that holds 16-bit weights, with the SIMD kernels (kernels.wat) that read it.
 *
 * A kernel reads only its own module's memory, so weights the kernels multiply live in an arena:
 * one WebAssembly.Memory (at most 4 GiB, the wasm32 limit) and one kernel instance over it. Tensors
 * are placed one after another (a bump allocator: model weights live as long as the model) and
 * an arena grows as tensors arrive; a new arena starts when one is full. Growing a memory detaches
 * its old ArrayBuffer, so nothing keeps a typed-array view of arena memory across an allocation:
 * `bytes()`/`u16()`/`f32()` make fresh views on demand.
 *
 * Each arena starts with scratch for the kernels' f32 operands (inputs, outputs, widened blocks).
 */
import { KERNELS_SHARED_WASM_BASE64, KERNELS_WASM_BASE64 } from './kernels-wasm.js';
import { platform, type KernelPool } from '../platform/index.js';

export interface KernelExports {
  dot_f32(w: number, x: number, y: number, m: number, k: number, n: number, ldy: number): void;
  /** x in pair order (see tools/make-kernels.ts). */
  dot_bf16(w: number, x: number, y: number, m: number, k: number, n: number, ldy: number): void;
  /** x in pair order scaled by 2ˢ per row, u: each row's 2¹¹²⁻ˢ (see tools/make-kernels.ts). */
  dot_f16(w: number, x: number, y: number, m: number, k: number, n: number, ldy: number, u: number): void;
  widen_bf16(src: number, dst: number, count: number): void;
  widen_f16(src: number, dst: number, count: number): void;
  rows_f32(b: number, a: number, y: number, m: number, k: number, n: number): void;
  softmax_f32(x: number, len: number, scale: number): void;
  higgs_rotate(y: number, norms: number, rows: number, P: number, G: number): void;
  nearest_2d(y: number, count: number, idx: number, pts: number, nrm: number, start: number, items: number, lo: number, cell: number, cells: number, n: number): void;
  nearest_4d(y: number, count: number, idx: number, pts: number, nrm: number, start: number, items: number, lo: number, cell: number, cells: number, n: number): void;
  pack_codes(idx: number, rows: number, perRow: number, bits: number, out: number, rowBytes: number): void;
  higgs_points(codes: number, rows: number, rowBytes: number, perRow: number, bits: number, d: number, pts: number, out: number): void;
  scale_add(y: number, scales: number, out: number, rows: number, C: number, P: number, G: number, add: number): void;
  points_scaled(codes: number, rows: number, rowBytes: number, perRow: number, bits: number, d: number, pts: number, scales: number, u: number, out: number, ld: number, pairs: number): void;
  gather_rows(view: number, S: number, rows: number, C: number, hd: number, dst: number, ld: number): void;
  fan_rows(src: number, rows: number, C: number, hd: number, dst1: number, ld1: number, dst2: number, ld2: number, view: number, S: number, cos: number, sin: number): void;
}

/** A WebAssembly memory page. */
export const PAGE = 65536;
/** Largest arena: wasm32 addresses reach 4 GiB; a little is left for the engine's own limits. */
export const ARENA_MAX_BYTES = 4 * 1024 ** 3 - 64 * PAGE;
/** Kernel operand scratch at the start of each arena (inputs, then outputs). */
export const X_SCRATCH_BYTES = 1 << 20;
export const Y_SCRATCH_BYTES = 1 << 20;

const compiled = new Map<string, WebAssembly.Module>();

function kernelModule(base64: string): WebAssembly.Module {
  let m = compiled.get(base64);
  if (!m) {
    const bin = atob(base64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    m = new WebAssembly.Module(bytes);
    compiled.set(base64, m);
  }
  return m;
}

function instantiate(module: WebAssembly.Module, memory: WebAssembly.Memory): KernelExports {
  return new WebAssembly.Instance(module, { env: { memory } }).exports as unknown as KernelExports;
}

/** The kernels over a private (unshared) memory of one's own. */
export function kernelsOver(memory: WebAssembly.Memory): KernelExports {
  return instantiate(kernelModule(KERNELS_WASM_BASE64), memory);
}

/**
 * WebAssembly memory with the kernels over it, holding rows the kernels read in place (a cache's
 * keys or values: decode attention multiplies them where they lie, see model/attention.ts).
 */
export interface KernelMemory {
  readonly kernels: KernelExports;
  /** Byte offset of the rows' first element. */
  readonly rowsAt: number;
  /** Floats at byte offset `at`; a view valid until the memory next grows. */
  f32(at: number, length: number): Float32Array;
  /** Byte offset of at least `bytes` of scratch that overlaps no rows; may grow the memory. */
  scratch(bytes: number): number;
}

/** Pages (64 KiB) of a private memory's maximum: the wasm32 limit, less the engine's margin. */
export const MAX_PAGES = ARENA_MAX_BYTES / PAGE;

let arenaCount = 0;
const released = new FinalizationRegistry<{ pool: KernelPool; id: number }>(({ pool, id }) => pool.release(id));

export class WasmArena {
  readonly memory: WebAssembly.Memory;
  readonly kernels: KernelExports;
  /** Helper threads that also run kernels on this arena (its memory is then shared), or null. */
  pool: KernelPool | null;
  readonly id = ++arenaCount;
  /** Byte offsets of the input and output scratch. */
  readonly xScratch = 0;
  readonly yScratch = X_SCRATCH_BYTES;
  private top = X_SCRATCH_BYTES + Y_SCRATCH_BYTES;
  /** A larger scratch (widened weight blocks), placed on first use. */
  private wide: { at: number; bytes: number } | null = null;

  /** `shareable`: let helper threads work on it when the platform has them (else it stays private). */
  constructor(initialBytes = 0, shareable = true) {
    const pages = Math.ceil((this.top + initialBytes) / PAGE);
    this.pool = shareable ? platform.kernelPool() : null;
    // a shared memory's maximum is reserved up front; the kernels' import must say the same
    const shared = this.pool !== null;
    this.memory = new WebAssembly.Memory({ initial: pages, maximum: shared ? 65536 : MAX_PAGES, shared });
    const module = kernelModule(shared ? KERNELS_SHARED_WASM_BASE64 : KERNELS_WASM_BASE64);
    this.kernels = instantiate(module, this.memory);
    if (this.pool) {
      if (this.pool.share(this.id, module, this.memory)) {
        // the helpers hold the memory too: when this arena is collected, they must let it go
        released.register(this, { pool: this.pool, id: this.id });
      } else {
        this.pool = null; // the helpers did not answer: this arena's products run on this thread
      }
    }
  }

  /** Whether `bytes` more fit under the arena's limit. */
  fits(bytes: number): boolean {
    return align16(this.top) + bytes <= ARENA_MAX_BYTES;
  }

  /** Reserves `bytes` (16-byte aligned start), growing the memory; returns the byte offset. */
  alloc(bytes: number): number {
    const at = align16(this.top);
    const end = at + bytes;
    if (end > ARENA_MAX_BYTES) throw new RangeError(`WasmArena: ${bytes} bytes do not fit (${at} used of ${ARENA_MAX_BYTES})`);
    const have = this.memory.buffer.byteLength;
    if (end > have) this.memory.grow(Math.ceil((end - have) / PAGE));
    this.top = end;
    return at;
  }

  /** Scratch of at least `bytes` for widened weights (one region, reused by every call). */
  wideScratch(bytes: number): number {
    if (!this.wide || this.wide.bytes < bytes) {
      // room to grow: the old region is not reused (a bump allocator), so grow geometrically
      const size = Math.max(bytes, 2 * (this.wide?.bytes ?? 0));
      this.wide = { at: this.alloc(size), bytes: size };
    }
    return this.wide.at;
  }

  bytes(at: number, length: number): Uint8Array {
    return new Uint8Array(this.memory.buffer, at, length);
  }

  u16(at: number, length: number): Uint16Array {
    return new Uint16Array(this.memory.buffer, at, length);
  }

  f32(at: number, length: number): Float32Array {
    return new Float32Array(this.memory.buffer, at, length);
  }
}

/** `n` rounded up to a multiple of 16 (where a v128 load is aligned). */
export function align16(n: number): number {
  return Math.ceil(n / 16) * 16;
}

/**
 * The arenas of one owner (a loaded model's weights): room is taken from the newest arena that
 * has it, and a new arena starts when none does. Arenas are freed with their owner.
 */
export class ArenaSet {
  private readonly arenas: WasmArena[] = [];

  allocate(bytes: number): { arena: WasmArena; at: number } {
    let arena = this.arenas[this.arenas.length - 1];
    if (!arena || !arena.fits(bytes)) {
      arena = new WasmArena(bytes);
      this.arenas.push(arena);
    }
    return { arena, at: arena.alloc(bytes) };
  }

  /** Bytes held (weights and scratch). */
  get bytes(): number {
    return this.arenas.reduce((s, a) => s + a.memory.buffer.byteLength, 0);
  }
}
