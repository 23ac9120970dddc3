/**
 * Bit packing of quantization codes: code i occupies bits [i·b, (i+1)·b) of the byte array,
 * least significant bit first, so 4-bit codes take half a byte and 12-bit codes a byte and a half.
 */
export function packedBytes(count: number, bits: number): number {
  return Math.ceil((count * bits) / 8);
}

export function packBits(codes: ArrayLike<number>, count: number, bits: number, out: Uint8Array = new Uint8Array(packedBytes(count, bits))): Uint8Array {
  if (bits < 1 || bits > 24) throw new RangeError(`packBits: bits must be in [1, 24], got ${bits}`);
  const limit = 2 ** bits;
  // codes enter a 32-bit accumulator above the bits not yet written (fewer than 8, so a code of
  // ≤ 24 bits always fits), and whole bytes leave it from the bottom
  let acc = 0;
  let held = 0;
  let byte = 0;
  for (let i = 0; i < count; i++) {
    const c = codes[i];
    if (!(c >= 0 && c < limit) || c !== Math.floor(c)) throw new RangeError(`packBits: code ${c} at ${i} does not fit ${bits} bits`);
    acc |= c << held;
    held += bits;
    while (held >= 8) {
      out[byte++] = acc & 0xff;
      acc >>>= 8;
      held -= 8;
    }
  }
  if (held > 0) out[byte] = acc & 0xff;
  return out;
}

export function unpackBits(packed: Uint8Array, count: number, bits: number, out: Uint32Array = new Uint32Array(count)): Uint32Array {
  if (packed.length < packedBytes(count, bits)) {
    throw new RangeError(`unpackBits: ${packed.length} bytes cannot hold ${count} codes of ${bits} bits`);
  }
  if (bits < 1 || bits > 24) throw new RangeError(`unpackBits: bits must be in [1, 24], got ${bits}`);
  // bytes enter a 32-bit accumulator from the top of what it holds; codes leave from the bottom
  const mask = (1 << bits) - 1;
  let acc = 0;
  let held = 0;
  let byte = 0;
  for (let i = 0; i < count; i++) {
    while (held < bits) {
      acc |= packed[byte++] << held;
      held += 8;
    }
    out[i] = acc & mask;
    acc >>>= bits;
    held -= bits;
  }
  return out;
}
