/**
 * The machine's memory bandwidth, as the benches' decode bounds use it: a 64 MiB copy (twice the
 * L3 here, so it runs from DRAM), bytes read plus bytes written per second, the median of 5.
 */
export function copyBandwidth(): number {
  return bandwidthProbe()();
}

/**
 * A probe to measure the copy bandwidth again and again, its two 64 MiB buffers allocated (and
 * their pages touched) once: measured right before the runs it bounds, on a shared machine whose
 * speed swings within seconds.
 */
export function bandwidthProbe(): () => number {
  const src = new Float32Array(16 << 20).fill(1);
  const dst = new Float32Array(src.length);
  dst.set(src); // pages touched before timing
  return () => {
    const rates: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t = performance.now();
      dst.set(src);
      rates.push((2 * src.byteLength) / ((performance.now() - t) / 1000));
    }
    return rates.sort((a, b) => a - b)[2];
  };
}
