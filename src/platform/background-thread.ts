/**
 * Node's background thread (platform.ts `BackgroundThread`): a worker that imports one module and
 * answers each message with that module's `handle(message)`, in order.
 *
 * Replies come back on a port the caller reads synchronously (receiveMessageOnPort), and the
 * worker counts each reply in a shared word the caller waits on (Atomics.wait), so code that never
 * returns to the event loop (a decode loop) can still wait for and take a reply. The worker is
 * unref'd: it never keeps a process alive.
 */
import { MessageChannel, receiveMessageOnPort, Worker } from 'node:worker_threads';
import type { BackgroundThread } from './platform.js';

type Reply = { seq: number; value: unknown } | { seq: number; error: string };

const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads');
const { moduleUrl, port, signal } = workerData;
const replies = new Int32Array(signal);
let handle = null;
let failed = null;
const loaded = import(moduleUrl).then((m) => { handle = m.handle; }, (e) => { failed = e; });
port.on('message', async ({ seq, message }) => {
  await loaded; // messages wait for the module in the order they came
  let reply;
  try {
    if (failed) throw failed;
    reply = { seq, value: handle(message) };
  } catch (e) {
    reply = { seq, error: String((e && e.message) || e).split('\\n')[0] };
  }
  port.postMessage(reply);
  Atomics.add(replies, 0, 1);
  Atomics.notify(replies, 0);
});
`;

/** The longest a process's exit waits for its background thread's unanswered jobs (ms). */
const EXIT_WAIT_MS = 5_000;

/** Starts the thread, or returns null where the host refuses a worker. */
export function startBackgroundThread(moduleUrl: string): BackgroundThread | null {
  const { port1, port2 } = new MessageChannel();
  const signal = new SharedArrayBuffer(4);
  const replies = new Int32Array(signal);
  let worker: Worker;
  try {
    worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { moduleUrl, port: port2, signal }, transferList: [port2] });
  } catch {
    return null;
  }
  worker.unref();
  let gone: string | null = null;
  worker.on('error', (e) => (gone = `the background thread failed (${e.message.split('\n')[0]})`));
  worker.on('exit', (code) => (gone ??= `the background thread exited (code ${code})`));
  let next = 0;
  // A thread torn down while it is inside a native call (onnxruntime's product, most of a job)
  // aborts the whole process as it ends ("terminate called after throwing an instance of
  // 'Napi::Error'": 2 in 30–40 runs of `aquakv generate` here, every run of a process that ends
  // mid-job). So the process, as it exits, waits for the answers it has not had: a job takes
  // milliseconds; a thread that is gone or stuck is waited for no longer than EXIT_WAIT_MS.
  process.once('exit', () => {
    const until = Date.now() + EXIT_WAIT_MS;
    for (let seen = Atomics.load(replies, 0); seen < next && gone === null; seen = Atomics.load(replies, 0)) {
      const left = until - Date.now();
      if (left <= 0) break;
      Atomics.wait(replies, 0, seen, left);
    }
  });
  const got = new Map<number, Reply>();
  const dropped = new Set<number>();
  let drained = 0; // replies taken off the port
  const drain = () => {
    // the port is read only when the worker has counted a reply not taken yet: a decode step asks
    // every step whether a job is done, and reading an empty port costs more than the shared word
    if (Atomics.load(replies, 0) === drained) return;
    for (let m = receiveMessageOnPort(port1); m; m = receiveMessageOnPort(port1)) {
      drained++;
      const r = m.message as Reply;
      if (!dropped.delete(r.seq)) got.set(r.seq, r);
    }
  };
  return {
    send(message, transfer = []) {
      const seq = next++;
      port1.postMessage({ seq, message }, transfer);
      return seq;
    },
    reply(seq, timeoutMs) {
      const deadline = performance.now() + timeoutMs;
      for (;;) {
        const seen = Atomics.load(replies, 0);
        drain();
        const r = got.get(seq);
        if (r) {
          got.delete(seq);
          if ('error' in r) throw new Error(r.error);
          return r.value;
        }
        if (gone) throw new Error(gone);
        const left = deadline - performance.now();
        if (left <= 0) throw new Error(`the background thread did not answer in ${timeoutMs} ms`);
        // woken by the next reply (a reply posted since `seen` was read returns at once)
        Atomics.wait(replies, 0, seen, left);
      }
    },
    busy: () => Atomics.load(replies, 0) < next,
    ready(seq) {
      drain();
      return got.has(seq);
    },
    drop(seq) {
      drain();
      if (!got.delete(seq) && seq < next) dropped.add(seq);
    },
  };
}
