/**
 * SHA-256 (FIPS 180-4) in TypeScript, for hosts without a synchronous native hash (browsers:
 * SubtleCrypto is async-only). Node uses node:crypto; tests check this one against it.
 */
import type { Hasher } from './platform.js';

const K = Uint32Array.from([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

export function sha256(): Hasher {
  const H = Uint32Array.from([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
  const block = new Uint8Array(64);
  const w = new Uint32Array(64);
  let used = 0; // bytes waiting in `block`
  let total = 0; // bytes hashed so far
  const rotr = (x: number, n: number) => (x >>> n) | (x << (32 - n));

  function compress(): void {
    for (let i = 0; i < 16; i++) w[i] = (block[4 * i] << 24) | (block[4 * i + 1] << 16) | (block[4 * i + 2] << 8) | block[4 * i + 3];
    for (let i = 16; i < 64; i++) {
      const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
      const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
    }
    let [a, b, c, d, e, f, g, h] = H;
    for (let i = 0; i < 64; i++) {
      const t1 = (h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i]) | 0;
      const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      [h, g, f, e, d, c, b, a] = [g, f, e, (d + t1) | 0, c, b, a, (t1 + t2) | 0];
    }
    H[0] += a; H[1] += b; H[2] += c; H[3] += d; H[4] += e; H[5] += f; H[6] += g; H[7] += h;
  }

  const hasher: Hasher = {
    update(data) {
      const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
      total += bytes.length;
      for (let i = 0; i < bytes.length; i++) {
        block[used++] = bytes[i];
        if (used === 64) {
          compress();
          used = 0;
        }
      }
      return hasher;
    },
    digest() {
      const bits = total * 8;
      block[used++] = 0x80;
      if (used > 56) {
        block.fill(0, used);
        compress();
        used = 0;
      }
      block.fill(0, used, 56);
      const hi = Math.floor(bits / 2 ** 32);
      for (let i = 0; i < 4; i++) {
        block[56 + i] = (hi >>> (24 - 8 * i)) & 0xff;
        block[60 + i] = (bits >>> (24 - 8 * i)) & 0xff;
      }
      compress();
      return Array.from(H, (x) => x.toString(16).padStart(8, '0')).join('');
    },
  };
  return hasher;
}
