/**
 * Node's kernel helpers: worker threads that run the WebAssembly kernels on shared arenas.
 *
 * Each helper blocks in Atomics.wait on its own control words; a call writes the export's index,
 * the arena and the arguments, then flips the state word and notifies. Arenas reach a helper as a
 * message it takes synchronously (receiveMessageOnPort) when told to, so a helper never needs to
 * return to its event loop. Workers are unref'd: they never keep a process alive.
 */
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import type { KernelPool } from './platform.js';

const IDLE = 0, RUN = 1, SHARE = 2;
/** Control words per helper: state, export index, arena id, then up to 8 arguments. */
const WORDS = 16;
const EXPORTS = ['dot_f32', 'dot_bf16', 'dot_f16', 'widen_bf16', 'widen_f16', 'rows_f32'];

const HELPER_SOURCE = `
const { workerData, receiveMessageOnPort } = require('node:worker_threads');
const { control, port, exports: names } = workerData;
const ctl = new Int32Array(control);
const arenas = new Map();
for (;;) {
  Atomics.wait(ctl, 0, ${IDLE});
  const state = Atomics.load(ctl, 0);
  if (state === ${SHARE}) {
    const { id, module, memory } = receiveMessageOnPort(port).message;
    arenas.set(id, new WebAssembly.Instance(module, { env: { memory } }).exports);
  } else if (state === ${RUN}) {
    const fn = arenas.get(ctl[2])[names[ctl[1]]];
    fn(ctl[3], ctl[4], ctl[5], ctl[6], ctl[7], ctl[8], ctl[9], ctl[10]);
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

export function createKernelPool(helpers: number): KernelPool | null {
  if (helpers < 1 || typeof SharedArrayBuffer === 'undefined') return null;
  const pool: Helper[] = [];
  for (let h = 0; h < helpers; h++) {
    const control = new Int32Array(new SharedArrayBuffer(WORDS * 4));
    const { port1, port2 } = new MessageChannel();
    const worker = new Worker(HELPER_SOURCE, { eval: true, workerData: { control: control.buffer, port: port2, exports: EXPORTS }, transferList: [port2] });
    worker.unref();
    port1.unref();
    pool.push({ control, port: port1, worker });
  }
  const run = (h: Helper, state: number) => {
    Atomics.store(h.control, 0, state);
    Atomics.notify(h.control, 0);
  };
  const wait = (h: Helper) => {
    for (let s = Atomics.load(h.control, 0); s !== IDLE; s = Atomics.load(h.control, 0)) Atomics.wait(h.control, 0, s);
  };
  return {
    helpers,
    share(id, module, memory) {
      for (const h of pool) {
        h.port.postMessage({ id, module, memory });
        run(h, SHARE);
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
    wait(h) {
      wait(pool[h]);
    },
  };
}
