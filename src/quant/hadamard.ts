/**
 * The fast Walsh–Hadamard transform, unnormalised (entries ±1, Sylvester order), in place on
 * x[offset .. offset+G). H·H = G·I, so applying it twice and dividing by G is the identity.
 * O(G log G) additions (HIGGS, AQUA-KV §2.1: the reference applies it with scale 1).
 */
export function fwht(x: Float32Array, offset: number, G: number): void {
  for (let h = 1; h < G; h *= 2) {
    for (let i = offset; i < offset + G; i += 2 * h) {
      for (let j = i; j < i + h; j++) {
        const a = x[j];
        const b = x[j + h];
        x[j] = a + b;
        x[j + h] = a - b;
      }
    }
  }
}

/** The Hadamard matrix H_G by the Sylvester construction: H[i][j] = (−1)^popcount(i & j). */
export function hadamardMatrix(G: number): Float32Array {
  const H = new Float32Array(G * G);
  for (let i = 0; i < G; i++) {
    for (let j = 0; j < G; j++) {
      let v = i & j;
      let parity = 0;
      while (v) {
        parity ^= v & 1;
        v >>>= 1;
      }
      H[i * G + j] = parity ? -1 : 1;
    }
  }
  return H;
}

export const isPowerOfTwo = (n: number) => n > 0 && (n & (n - 1)) === 0;

const matrices = new Map<number, Float32Array>();

/** H_G, built once per size. */
export function hadamard(G: number): Float32Array {
  let H = matrices.get(G);
  if (!H) matrices.set(G, (H = hadamardMatrix(G)));
  return H;
}
