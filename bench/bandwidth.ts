/**
 * The machine's memory bandwidth, as the benches' decode bounds use it: a 64 MiB copy (twice the
 * L3 here, so it runs from DRAM), bytes read plus bytes written per second, the median of 5. And
 * the handoff between two threads (`bandwidthProbe().handoff`), which tells the two states of this
 * machine's cores apart.
 */
import { Worker } from 'node:worker_threads';

export function copyBandwidth(): number {
  const probe = bandwidthProbe();
  const rate = probe();
  probe.close();
  return rate;
}

// the probe's thread: its two buffers allocated (and their pages touched) once, then a
// measurement each time it is asked (state 1), answered with state 2 and the rate; or (state 3)
// the handoff buffer written, answered with state 4, watching (not blocking) for the next ask
// until told to rest (state 0): a thread that blocks between writes leaves its virtual CPU idle,
// and its reads then swung between 6 and 30 GB/s in one state of the machine
const PROBE_SOURCE = `
const { workerData } = require('node:worker_threads');
const state = new Int32Array(workerData.control, 0, 1);
const rate = new Float64Array(workerData.control, 8, 1);
const handoff = new Float64Array(workerData.handoff);
const src = new Float32Array(16 << 20).fill(1);
const dst = new Float32Array(src.length);
dst.set(src);
for (let round = 1; ; round++) {
  while (Atomics.load(state, 0) !== 1 && Atomics.load(state, 0) !== 3) Atomics.wait(state, 0, Atomics.load(state, 0));
  if (Atomics.load(state, 0) === 3) {
    for (;;) {
      for (let i = 0; i < handoff.length; i++) handoff[i] = round + i;
      Atomics.store(state, 0, 4);
      let s;
      while ((s = Atomics.load(state, 0)) === 4);
      if (s !== 3) break;
      round++;
    }
    continue;
  }
  const rates = [];
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    dst.set(src);
    rates.push((2 * src.byteLength) / ((performance.now() - t) / 1000));
  }
  rate[0] = rates.sort((a, b) => a - b)[2];
  Atomics.store(state, 0, 2);
  Atomics.notify(state, 0);
}
`;

/**
 * A probe to measure the copy bandwidth again and again, right before the runs it bounds, on a
 * shared machine whose speed swings within seconds. It copies on a thread of its own, whose heap
 * holds its 128 MiB: held on the benchmark's own thread, they slowed materialized decode at 512
 * tokens against fp, 0.90–0.92× fp in three runs against 0.95–0.96 in five without them (the
 * machine's two cores share its memory, so either measures the same bandwidth). `handoff`: the
 * rate at which the caller copies 1 MiB its thread has just written (`HANDOFF_BYTES`), the best of
 * three series' medians (a series the machine slows reads low, never high).
 */
export function bandwidthProbe(): (() => number) & { handoff(): number; close(): void } {
  const shared = new SharedArrayBuffer(16);
  const state = new Int32Array(shared, 0, 1);
  const rate = new Float64Array(shared, 8, 1);
  const handoffBuffer = new SharedArrayBuffer(HANDOFF_BYTES);
  const worker = new Worker(PROBE_SOURCE, { eval: true, workerData: { control: shared, handoff: handoffBuffer } });
  worker.unref();
  const measure = () => {
    Atomics.store(state, 0, 1);
    Atomics.notify(state, 0);
    while (Atomics.load(state, 0) !== 2) Atomics.wait(state, 0, 1, 1000);
    Atomics.store(state, 0, 0);
    return rate[0];
  };
  const read = new Float64Array(handoffBuffer);
  const taken = new Float64Array(read.length);
  // one series: the buffer written, then copied here (a built-in copy: a loop of JavaScript read at
  // the speed its compiler had reached, 3–44 GB/s in one state), 40 times; the median
  const series = () => {
    const rates: number[] = [];
    Atomics.store(state, 0, 3);
    Atomics.notify(state, 0);
    for (let i = 0; i < 40; i++) {
      while (Atomics.load(state, 0) !== 4);
      const t = performance.now();
      taken.set(read);
      rates.push(HANDOFF_BYTES / ((performance.now() - t) / 1000));
      Atomics.store(state, 0, i < 39 ? 3 : 0); // the next write, or rest
    }
    return rates.sort((a, b) => a - b)[rates.length >> 1];
  };
  // the best of three series: a series the machine slows reads low, never high
  const handoff = () => Math.max(series(), series(), series());
  return Object.assign(measure, { handoff, close: () => void worker.terminate() });
}

/**
 * Bytes the probe's thread writes and the caller then copies, for `handoff`: rows one thread made
 * and the other takes, as a compact step's products and kernels do on the two cores. This
 * machine's two virtual CPUs meet two states that change every minute or so (the host places
 * them). In 30 processes of compact decode at 4 096 tokens, each with this probe before and after:
 * the 28 whose step took 41.9–43.4 ms read 21.3–23.9 GB/s after it (before it too, but for one
 * at 29.0: the state changed in between); the 2 whose step took 29.2–29.5 ms read 28.9–29.0 after
 * it. See stop 35 in the README.
 */
const HANDOFF_BYTES = 1 << 20;
