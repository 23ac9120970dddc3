/**
 * Safetensors files on disk. Reading is streamed: the header is parsed and checked up front
 * (./safetensors-format.ts), and each tensor's bytes are read from disk only when asked for and
 * converted to f32, so a model never needs its file's size in RAM twice.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { AquaError } from '../errors.js';
import { platform } from '../platform/index.js';
import { decodeTensor, encodeSafetensors, headerLength, parseHeader, type TensorEntry, type TensorToWrite } from './safetensors-format.js';

export type { StDtype, TensorEntry, TensorToWrite } from './safetensors-format.js';
export { encodeSafetensors } from './safetensors-format.js';

/** The largest tensor read in one piece (typed arrays of this many bytes are safe on every Node 20). */
const MAX_TENSOR_BYTES = 2 ** 31 - 1;

export class SafetensorsFile {
  private constructor(
    readonly path: string,
    private fd: number,
    private readonly dataStart: number,
    readonly entries: Map<string, TensorEntry>,
    readonly metadata: Record<string, string>,
  ) {}

  /** Opens and validates `path`; throws AquaError naming the file and the defect. */
  static open(path: string): SafetensorsFile {
    platform.checkFile(path); // opening a FIFO would block forever
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch {
      throw new AquaError(`cannot open safetensors file ${path}`);
    }
    try {
      const size = fstatSync(fd).size;
      const first8 = new Uint8Array(8);
      readSync(fd, first8, 0, Math.min(8, size), 0);
      const n = headerLength(first8, size, path);
      const headerBytes = new Uint8Array(n);
      readSync(fd, headerBytes, 0, n, 8);
      const { entries, metadata } = parseHeader(headerBytes, size - 8 - n, path);
      return new SafetensorsFile(path, fd, 8 + n, entries, metadata);
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
    if (n > MAX_TENSOR_BYTES) throw new AquaError(`${this.path}: tensor ${name} is ${n} bytes; aquakv reads tensors of up to ${MAX_TENSOR_BYTES} bytes (2 GiB)`);
    const buf = new Uint8Array(n);
    this.readBytes(name, buf);
    return decodeTensor(buf, e.dtype, `${this.path}: tensor ${name}`);
  }

  /** Reads tensor `name`'s stored bytes straight into `into` (no intermediate copy). */
  readBytes(name: string, into: Uint8Array): void {
    const e = this.entries.get(name);
    if (!e) throw new AquaError(`${this.path}: no tensor named ${name}`);
    const n = e.end - e.begin;
    if (into.length !== n) throw new RangeError(`${this.path}: tensor ${name} has ${n} bytes, not ${into.length}`);
    let got = 0;
    while (got < n) {
      // one read(2) is capped near 2 GiB
      const r = readSync(this.fd, into, got, Math.min(n - got, 1 << 30), this.dataStart + e.begin + got);
      if (r === 0) throw new AquaError(`${this.path}: unexpected end of file reading ${name}`);
      got += r;
    }
  }

  close(): void {
    closeSync(this.fd);
  }
}

export function writeSafetensors(path: string, tensors: TensorToWrite[], metadata?: Record<string, string>): void {
  platform.writeFileAtomic(path, encodeSafetensors(tensors, metadata));
}
