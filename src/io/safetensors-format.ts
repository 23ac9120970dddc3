/**
 * The safetensors format (huggingface/safetensors), in memory: an 8-byte little-endian header
 * length N, N bytes of JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__":
 * {...}}, then the raw little-endian tensor bytes, offsets relative to the end of the header.
 * No file access here: ./safetensors.ts streams big files from disk with the same header checks.
 */
import { AquaError } from '../errors.js';
import { f16ToF32, f32ToBf16, f32ToF16, halfBitsToF32 } from '../tensor/f16.js';

export type StDtype = 'F32' | 'F16' | 'BF16';
const ELEMENT_BYTES: Record<string, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1, U16: 2, U32: 4, U64: 8,
  F8_E4M3: 1, F8_E5M2: 1,
};
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export interface TensorEntry {
  dtype: string;
  shape: number[];
  begin: number; // byte offset from the start of the data section
  end: number;
}

export interface SafetensorsHeader {
  entries: Map<string, TensorEntry>;
  metadata: Record<string, string>;
}

/** The header length stored in the first 8 bytes, checked against the file size. */
export function headerLength(first8: Uint8Array, size: number, where: string): number {
  const bad = (why: string) => new AquaError(`${where} is not a valid safetensors file: ${why}`);
  if (size < 8) throw bad(`file has ${size} bytes, fewer than the 8-byte header length`);
  const n = Number(new DataView(first8.buffer, first8.byteOffset, 8).getBigUint64(0, true));
  if (n < 2 || n > MAX_HEADER_BYTES || n > size - 8) throw bad(`header length ${n} does not fit a file of ${size} bytes`);
  return n;
}

/** Parses and checks the JSON header; `dataSize` is the byte count after it. */
export function parseHeader(headerBytes: Uint8Array, dataSize: number, where: string): SafetensorsHeader {
  const bad = (why: string) => new AquaError(`${where} is not a valid safetensors file: ${why}`);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder().decode(headerBytes));
  } catch {
    throw bad('header is not valid JSON');
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw bad('header is not a JSON object');
  // JSON.parse keeps the last of two equal keys without a word; the format forbids duplicates
  const json = new TextDecoder().decode(headerBytes);
  for (const name of Object.keys(header as object)) {
    const key = new RegExp(`(^|[^\\\\])${JSON.stringify(name).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\s*:`, 'g');
    if ((json.match(key) ?? []).length > 1) throw bad(`tensor ${name} is named twice in the header`);
  }
  const entries = new Map<string, TensorEntry>();
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      metadata = (raw ?? {}) as Record<string, string>;
      continue;
    }
    const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof e !== 'object' || e === null) throw bad(`entry ${name} is not an object`);
    const elem = typeof e.dtype === 'string' ? ELEMENT_BYTES[e.dtype] : undefined;
    if (elem === undefined) throw bad(`tensor ${name} has unknown dtype ${JSON.stringify(e.dtype)}`);
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isInteger(d) && d >= 0)) {
      throw bad(`tensor ${name} has a malformed shape ${JSON.stringify(e.shape)}`);
    }
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((o) => Number.isInteger(o) && o >= 0) || off[1] < off[0]) {
      throw bad(`tensor ${name} has malformed data_offsets ${JSON.stringify(off)}`);
    }
    const numel = (e.shape as number[]).reduce((a, b) => a * b, 1);
    if (off[1] - off[0] !== numel * elem) {
      throw bad(`tensor ${name} of shape [${e.shape}] ${e.dtype} needs ${numel * elem} bytes, offsets span ${off[1] - off[0]}`);
    }
    if (off[1] > dataSize) {
      throw bad(`tensor ${name} ends at byte ${off[1]} of a data section of ${dataSize} bytes (truncated file?)`);
    }
    entries.set(name, { dtype: e.dtype as string, shape: e.shape as number[], begin: off[0], end: off[1] });
  }
  // the format requires the tensors to tile the data section exactly: no holes, no overlaps, no
  // trailing bytes (a header length off by one would otherwise shift every tensor by a byte)
  const sorted = [...entries.entries()].filter(([, e]) => e.end > e.begin).sort((a, b) => a[1].begin - b[1].begin);
  let cursor = 0;
  let previous = '';
  for (const [name, e] of sorted) {
    if (e.begin < cursor) throw bad(`tensors ${previous} and ${name} overlap`);
    if (e.begin > cursor) throw bad(`bytes ${cursor}–${e.begin} of the data section belong to no tensor (before ${name})`);
    cursor = e.end;
    previous = name;
  }
  if (cursor !== dataSize) throw bad(`${dataSize - cursor} bytes after the last tensor belong to no tensor (header length wrong?)`);
  return { entries, metadata };
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** The buffer to view `bytes` in as `width`-byte elements: its own, or an aligned copy when it is misaligned. */
function aligned(bytes: Uint8Array, width: 2 | 4): ArrayBuffer {
  if (bytes.byteOffset % width === 0 && bytes.buffer instanceof ArrayBuffer) return bytes.buffer;
  return bytes.slice().buffer;
}

/** `bytes` as `count` 16-bit values (a view, or a view of an aligned copy). */
function halves(bytes: Uint8Array, count: number): Uint16Array {
  const buf = aligned(bytes, 2);
  return new Uint16Array(buf, buf === bytes.buffer ? bytes.byteOffset : 0, count);
}

/**
 * A tensor's little-endian bytes → f32 values, in bulk: F32 is one copy, BF16 a 16-bit shift per
 * value, F16 a lookup in a 65 536-entry table (a few ns per value, not a DataView call each).
 */
export function decodeTensor(bytes: Uint8Array, dtype: string, where: string): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (dtype) {
    case 'F32': {
      if (LITTLE_ENDIAN) {
        const out = new Float32Array(bytes.length / 4);
        new Uint8Array(out.buffer).set(bytes.subarray(0, out.length * 4));
        return out;
      }
      const out = new Float32Array(bytes.length / 4);
      for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(i * 4, true);
      return out;
    }
    case 'F16': {
      const out = new Float32Array(bytes.length / 2);
      if (LITTLE_ENDIAN) {
        halfBitsToF32('f16', halves(bytes, out.length), out);
        return out;
      }
      for (let i = 0; i < out.length; i++) out[i] = f16ToF32(view.getUint16(i * 2, true));
      return out;
    }
    case 'BF16': {
      const out = new Float32Array(bytes.length / 2);
      if (LITTLE_ENDIAN) {
        halfBitsToF32('bf16', halves(bytes, out.length), out);
        return out;
      }
      const u = new Uint32Array(out.buffer);
      for (let i = 0; i < out.length; i++) u[i] = view.getUint16(i * 2, true) << 16;
      return out;
    }
    default:
      throw new AquaError(`${where} has dtype ${dtype}; only F32, F16 and BF16 are supported`);
  }
}

/** A whole safetensors file held in memory (predictor files: small, and readable from bytes anywhere). */
export class SafetensorsBytes implements SafetensorsHeader {
  readonly entries: Map<string, TensorEntry>;
  readonly metadata: Record<string, string>;
  private readonly data: Uint8Array;

  constructor(bytes: Uint8Array, readonly where: string) {
    const n = headerLength(bytes.subarray(0, 8), bytes.length, where);
    ({ entries: this.entries, metadata: this.metadata } = parseHeader(bytes.subarray(8, 8 + n), bytes.length - 8 - n, where));
    this.data = bytes.subarray(8 + n);
  }

  readF32(name: string): Float32Array {
    const e = this.entries.get(name);
    if (!e) throw new AquaError(`${this.where}: no tensor named ${name}`);
    return decodeTensor(this.data.subarray(e.begin, e.end), e.dtype, `${this.where}: tensor ${name}`);
  }

  readBytes(name: string, into: Uint8Array): void {
    const e = this.entries.get(name);
    if (!e) throw new AquaError(`${this.where}: no tensor named ${name}`);
    into.set(this.data.subarray(e.begin, e.end));
  }
}

export interface TensorToWrite {
  name: string;
  shape: number[];
  data: Float32Array;
  dtype: StDtype;
}

/** Encodes tensors as a safetensors file (offsets in the given order, 8-byte aligned header). */
export function encodeSafetensors(tensors: TensorToWrite[], metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  const parts: Uint8Array[] = [];
  for (const t of tensors) {
    const numel = t.shape.reduce((a, b) => a * b, 1);
    if (numel !== t.data.length) {
      throw new RangeError(`encodeSafetensors: ${t.name} has ${t.data.length} values for shape [${t.shape}]`);
    }
    const bytes = encodeTensor(t.data, t.dtype);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes.length] };
    offset += bytes.length;
    parts.push(bytes);
  }
  let json = JSON.stringify(header);
  const headerBytes0 = new TextEncoder().encode(json);
  json += ' '.repeat((8 - ((headerBytes0.length + 8) % 8)) % 8);
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let at = 8 + headerBytes.length;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function encodeTensor(data: Float32Array, dtype: StDtype): Uint8Array {
  const size = dtype === 'F32' ? 4 : 2;
  const out = new Uint8Array(data.length * size);
  const view = new DataView(out.buffer);
  if (dtype === 'F32') {
    for (let i = 0; i < data.length; i++) view.setFloat32(i * 4, data[i], true);
    return out;
  }
  const conv = dtype === 'F16' ? f32ToF16 : f32ToBf16;
  for (let i = 0; i < data.length; i++) view.setUint16(i * 2, conv(data[i]), true);
  return out;
}
