/**
 * Bit packing of quantization codes: code i occupies bits [i·b, (i+1)·b) of the byte array,
 * least significant bit first, so 4-bit codes take half a byte and 12-bit codes a byte and a half.
 */
export function packedBytes(count: number, bits: number): number {
  return Math.ceil((count * bits) / 8);
}

export function packBits(codes: ArrayLike<number>, count: number, bits: number, out: Uint8Array = new Uint8Array(packedBytes(count, bits))): Uint8Array {
  if (bits < 1 || bits > 24) throw new RangeError(`packBits: bits must be in [1, 24], got ${bits}`);
  out.fill(0, 0, packedBytes(count, bits));
  const limit = 2 ** bits;
  let bitPos = 0;
  for (let i = 0; i < count; i++) {
    const c = codes[i];
    if (c < 0 || c >= limit || !Number.isInteger(c)) throw new RangeError(`packBits: code ${c} at ${i} does not fit ${bits} bits`);
    let v = c;
    let remaining = bits;
    while (remaining > 0) {
      const byte = bitPos >>> 3;
      const shift = bitPos & 7;
      const take = Math.min(8 - shift, remaining);
      out[byte] |= (v & ((1 << take) - 1)) << shift;
      v >>>= take;
      remaining -= take;
      bitPos += take;
    }
  }
  return out;
}

export function unpackBits(packed: Uint8Array, count: number, bits: number, out: Uint32Array = new Uint32Array(count)): Uint32Array {
  if (packed.length < packedBytes(count, bits)) {
    throw new RangeError(`unpackBits: ${packed.length} bytes cannot hold ${count} codes of ${bits} bits`);
  }
  let bitPos = 0;
  for (let i = 0; i < count; i++) {
    let v = 0;
    let got = 0;
    while (got < bits) {
      const byte = bitPos >>> 3;
      const shift = bitPos & 7;
      const take = Math.min(8 - shift, bits - got);
      v |= ((packed[byte] >>> shift) & ((1 << take) - 1)) << got;
      got += take;
      bitPos += take;
    }
    out[i] = v;
  }
  return out;
}
