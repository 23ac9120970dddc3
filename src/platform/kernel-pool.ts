/**
 * Node's kernel helpers: worker threads that run the WebAssembly kernels on shared arenas.
 *
 * Each helper waits on its own control words; a call writes the export's index, the arena and
 * the arguments, then flips the state word and notifies. Arenas reach a helper as a message it
 * takes synchronously (receiveMessageOnPort) when told to, so a helper never needs to return to
 * its event loop. Workers are unref'd: they never keep a process alive.
 *
 * After each call a helper stays hot for SPIN_MS, watching its state word, before it blocks in
 * Atomics.wait: a decode step's one-row products come one after another, and waking a blocked
 * helper for each cost more than the split saved (a step of the embedded model at 512 tokens:
 * 1.9–2.1 ms with its products split across a blocked helper, 1.2 ms unsplit, 0.82 ms split
 * across a hot one). Callers split a product only across hot helpers (`readyForSplit`, which asks
 * blocked ones to watch for the next); so work that comes seldom neither waits for a wake nor
 * keeps a core spinning.
 */
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import type { KernelPool } from './platform.js';

const IDLE = 0, RUN = 1, SHARE = 2, DROP = 3, WARM = 4, COOL = 5;
/** Control words per helper: state, export index, arena id, then up to 8 arguments; then whether it is hot; the last word flags a failed call. */
const WORDS = 16;
const HOT = 11;
const FAILED = WORDS - 1;
/** How long a helper watches for the next call after one (ms), before it blocks. */
const SPIN_MS = 0.15;
/** How long a caller watches for a helper to finish before it blocks (ms): its part takes about as long as the caller's. */
const CALLER_SPIN_MS = 0.5;
/**
 * How long after a native product split across threads no product is split here (ms): the native
 * product's threads spin on the cores a while after it, waiting for the next (a compact cache's
 * decode runs them every layer; splitting beside them, its step at 512 tokens took 9.1–9.4 ms in
 * two bench runs, against 6.4–7.2 ms in three without the split).
 */
const NATIVE_QUIET_MS = 5;
/** How long a helper may take to take an arena before the pool is given up. */
const HANDSHAKE_MS = 10_000;
const EXPORTS = ['dot_f32', 'dot_bf16', 'dot_f16', 'widen_bf16', 'widen_f16', 'rows_f32'];

const HELPER_SOURCE = `
const { workerData, receiveMessageOnPort } = require('node:worker_threads');
const { control, port, exports: names } = workerData;
// a helper allocates almost nothing, so its heap never collects on its own: a dropped arena's
// instance (and with it the shared memory) is collected on purpose
require('node:v8').setFlagsFromString('--expose-gc');
const collect = require('node:vm').runInNewContext('gc');
const ctl = new Int32Array(control);
const arenas = new Map();
let spin = true;
for (;;) {
  // hot for a while: the next call is seen at once
  if (spin) {
    Atomics.store(ctl, ${HOT}, 1);
    const until = performance.now() + ${SPIN_MS};
    while (Atomics.load(ctl, 0) === ${IDLE} && performance.now() < until);
    Atomics.store(ctl, ${HOT}, 0);
  }
  spin = true;
  // (a call stored after the last look is not missed: the wait returns at once on a state not idle)
  Atomics.wait(ctl, 0, ${IDLE});
  const state = Atomics.load(ctl, 0);
  if (state === ${WARM} || state === ${COOL}) {
    // asked to be hot for the next call, or to stop watching (its core is wanted): a call that
    // came meanwhile replaced the word, and is kept
    if (Atomics.compareExchange(ctl, 0, state, ${IDLE}) === state && state === ${COOL}) spin = false;
    continue;
  }
  if (state === ${SHARE}) {
    const { id, module, memory } = receiveMessageOnPort(port).message;
    arenas.set(id, new WebAssembly.Instance(module, { env: { memory } }).exports);
  } else if (state === ${DROP}) {
    arenas.delete(ctl[2]);
    collect();
  } else if (state === ${RUN}) {
    // a kernel that traps (a bug: an address out of bounds) is reported, never left hanging
    try {
      arenas.get(ctl[2])[names[ctl[1]]](ctl[3], ctl[4], ctl[5], ctl[6], ctl[7], ctl[8], ctl[9], ctl[10]);
    } catch {
      ctl[${FAILED}] = 1;
    }
  }
  Atomics.store(ctl, 0, ${IDLE});
  Atomics.notify(ctl, 0);
}
`;

interface Helper {
  control: Int32Array;
  port: MessagePort;
  worker: Worker;
}

/** `othersBusy`: whether other threads of the process work now (a background thread), which the helpers would share cores with. */
export function createKernelPool(helpers: number, othersBusy: () => boolean = () => false): KernelPool | null {
  if (helpers < 1 || typeof SharedArrayBuffer === 'undefined') return null;
  const pool: Helper[] = [];
  for (let h = 0; h < helpers; h++) {
    const control = new Int32Array(new SharedArrayBuffer(WORDS * 4));
    const { port1, port2 } = new MessageChannel();
    // execArgv []: the helper's source is CommonJS whatever the parent was started with
    // (`--input-type=module` would make an eval'd worker ESM)
    const worker = new Worker(HELPER_SOURCE, { eval: true, execArgv: [], workerData: { control: control.buffer, port: port2, exports: EXPORTS }, transferList: [port2] });
    // a helper that fails to start must not take the process down: the handshake then times out
    worker.on('error', () => {});
    worker.unref();
    port1.unref();
    pool.push({ control, port: port1, worker });
  }
  const run = (h: Helper, state: number) => {
    Atomics.store(h.control, 0, state);
    Atomics.notify(h.control, 0);
  };
  /** Waits until helper h is idle, for at most `ms`; false when it is not by then. */
  const wait = (h: Helper, ms = Infinity) => {
    const watchUntil = performance.now() + CALLER_SPIN_MS;
    while (Atomics.load(h.control, 0) !== IDLE && performance.now() < watchUntil);
    const until = Date.now() + ms;
    for (let s = Atomics.load(h.control, 0); s !== IDLE; s = Atomics.load(h.control, 0)) {
      if (Date.now() > until) return false;
      Atomics.wait(h.control, 0, s, ms === Infinity ? undefined : 50);
    }
    return true;
  };
  // A helper that never answers (one that could not start: seen under `node --input-type=module -e`)
  // would block the caller for good: the first handshake waits a bounded time, then the pool is off.
  let alive = true;
  let nativeAt = -Infinity; // when a native product last ran split
  return {
    helpers,
    share(id, module, memory) {
      if (!alive) return false;
      for (const h of pool) {
        h.port.postMessage({ id, module, memory });
        run(h, SHARE);
        if (!wait(h, HANDSHAKE_MS)) {
          alive = false;
          for (const x of pool) void x.worker.terminate();
          return false;
        }
      }
      return true;
    },
    release(id) {
      for (const h of pool) {
        h.control[2] = id;
        run(h, DROP);
        wait(h);
      }
    },
    start(h, id, fn, args) {
      const c = pool[h].control;
      c[1] = EXPORTS.indexOf(fn);
      c[2] = id;
      for (let i = 0; i < args.length; i++) c[3 + i] = args[i];
      run(pool[h], RUN);
    },
    readyForSplit() {
      if (!alive || othersBusy() || performance.now() - nativeAt <= NATIVE_QUIET_MS) return false;
      let ready = true;
      for (const { control: c } of pool) {
        if (Atomics.load(c, HOT) === 1 && Atomics.load(c, 0) === IDLE) continue;
        ready = false;
        // blocked (or not yet back from a call): asked to watch for the next one
        if (Atomics.compareExchange(c, 0, IDLE, WARM) === IDLE) Atomics.notify(c, 0);
      }
      return ready;
    },
    cool() {
      nativeAt = performance.now();
      for (const h of pool) {
        // (a helper that blocked just after the look is woken, sets the word back and blocks again)
        if (Atomics.load(h.control, HOT) === 1 && Atomics.compareExchange(h.control, 0, IDLE, COOL) === IDLE) Atomics.notify(h.control, 0);
      }
    },
    wait(h) {
      wait(pool[h]);
      if (pool[h].control[FAILED]) {
        pool[h].control[FAILED] = 0;
        throw new Error(`kernel helper ${h}: the kernel trapped`);
      }
    },
  };
}
