/**
 * The safetensors format (huggingface/safetensors): an 8-byte little-endian header length N,
 * N bytes of JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}},
 * then the raw little-endian tensor bytes, offsets relative to the end of the header.
 *
 * Reading is streamed: the header is parsed and checked up front, and each tensor's bytes are
 * read from disk only when asked for and converted to f32, so a model never needs its file's
 * size in RAM twice.
 */
import { closeSync, fstatSync, openSync, readSync, writeFileSync } from 'node:fs';
import { AquaError } from '../errors.js';
import { f16ToF32, f32ToBf16, f32ToF16 } from '../tensor/f16.js';

export type StDtype = 'F32' | 'F16' | 'BF16';
const ELEMENT_BYTES: Record<string, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1, U16: 2, U32: 4, U64: 8,
  F8_E4M3: 1, F8_E5M2: 1,
};
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export interface TensorEntry {
  dtype: string;
  shape: number[];
  begin: number; // byte offset in the file (header included)
  end: number;
}

export class SafetensorsFile {
  private constructor(
    readonly path: string,
    private fd: number,
    readonly entries: Map<string, TensorEntry>,
    readonly metadata: Record<string, string>,
  ) {}

  /** Opens and validates `path`; throws AquaError naming the file and the defect. */
  static open(path: string): SafetensorsFile {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch {
      throw new AquaError(`cannot open safetensors file ${path}`);
    }
    try {
      const size = fstatSync(fd).size;
      const bad = (why: string) => new AquaError(`${path} is not a valid safetensors file: ${why}`);
      if (size < 8) throw bad(`file has ${size} bytes, fewer than the 8-byte header length`);
      const lenBuf = Buffer.alloc(8);
      readSync(fd, lenBuf, 0, 8, 0);
      const headerLen = Number(lenBuf.readBigUInt64LE(0));
      if (headerLen < 2 || headerLen > MAX_HEADER_BYTES || headerLen > size - 8) {
        throw bad(`header length ${headerLen} does not fit a file of ${size} bytes`);
      }
      const headerBuf = Buffer.alloc(headerLen);
      readSync(fd, headerBuf, 0, headerLen, 8);
      let header: unknown;
      try {
        header = JSON.parse(headerBuf.toString('utf8'));
      } catch {
        throw bad('header is not valid JSON');
      }
      if (typeof header !== 'object' || header === null || Array.isArray(header)) throw bad('header is not a JSON object');
      const dataStart = 8 + headerLen;
      const dataSize = size - dataStart;
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
        entries.set(name, { dtype: e.dtype as string, shape: e.shape as number[], begin: dataStart + off[0], end: dataStart + off[1] });
      }
      const sorted = [...entries.entries()].sort((a, b) => a[1].begin - b[1].begin);
      for (let i = 1; i < sorted.length; i++) {
        if (sorted[i][1].begin < sorted[i - 1][1].end) throw bad(`tensors ${sorted[i - 1][0]} and ${sorted[i][0]} overlap`);
      }
      return new SafetensorsFile(path, fd, entries, metadata);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  /** Reads tensor `name` and converts it to f32. */
  readF32(name: string): Float32Array {
    const e = this.entries.get(name);
    if (!e) throw new AquaError(`${this.path}: no tensor named ${name}`);
    const n = e.end - e.begin;
    const buf = Buffer.allocUnsafe(n);
    let got = 0;
    while (got < n) {
      const r = readSync(this.fd, buf, got, n - got, e.begin + got);
      if (r === 0) throw new AquaError(`${this.path}: unexpected end of file reading ${name}`);
      got += r;
    }
    return decode(buf, e.dtype, `${this.path}: tensor ${name}`);
  }

  close(): void {
    closeSync(this.fd);
  }
}

function decode(buf: Buffer, dtype: string, where: string): Float32Array {
  switch (dtype) {
    case 'F32': {
      const out = new Float32Array(buf.length / 4);
      for (let i = 0; i < out.length; i++) out[i] = buf.readFloatLE(i * 4);
      return out;
    }
    case 'F16': {
      const out = new Float32Array(buf.length / 2);
      for (let i = 0; i < out.length; i++) out[i] = f16ToF32(buf.readUInt16LE(i * 2));
      return out;
    }
    case 'BF16': {
      const out = new Float32Array(buf.length / 2);
      const u = new Uint32Array(out.buffer);
      for (let i = 0; i < out.length; i++) u[i] = buf.readUInt16LE(i * 2) << 16;
      return out;
    }
    default:
      throw new AquaError(`${where} has dtype ${dtype}; only F32, F16 and BF16 are supported`);
  }
}

export interface TensorToWrite {
  name: string;
  shape: number[];
  data: Float32Array;
  dtype: StDtype;
}

/** Encodes tensors as a safetensors file (offsets in the given order, 8-byte aligned header). */
export function encodeSafetensors(tensors: TensorToWrite[], metadata?: Record<string, string>): Buffer {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  const parts: Buffer[] = [];
  for (const t of tensors) {
    const numel = t.shape.reduce((a, b) => a * b, 1);
    if (numel !== t.data.length) {
      throw new RangeError(`encodeSafetensors: ${t.name} has ${t.data.length} values for shape [${t.shape}]`);
    }
    const bytes = encode(t.data, t.dtype);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes.length] };
    offset += bytes.length;
    parts.push(bytes);
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((json.length + 8) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(headerBytes.length));
  return Buffer.concat([len, headerBytes, ...parts]);
}

export function writeSafetensors(path: string, tensors: TensorToWrite[], metadata?: Record<string, string>): void {
  writeFileSync(path, encodeSafetensors(tensors, metadata));
}

function encode(data: Float32Array, dtype: StDtype): Buffer {
  if (dtype === 'F32') {
    const b = Buffer.alloc(data.length * 4);
    for (let i = 0; i < data.length; i++) b.writeFloatLE(data[i], i * 4);
    return b;
  }
  const b = Buffer.alloc(data.length * 2);
  const conv = dtype === 'F16' ? f32ToF16 : f32ToBf16;
  for (let i = 0; i < data.length; i++) b.writeUInt16LE(conv(data[i]), i * 2);
  return b;
}

