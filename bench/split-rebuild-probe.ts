/**
 * A measured design, not a code path: a compact cache's rebuild split by rows across two threads,
 * each with its own kernel memory and one-thread products, against today's, where one thread runs
 * the kernels and the products run on both cores (onnxruntime's second thread reading the rows the
 * kernels wrote, and writing the rows they read next: 2–3× slower kernels in situ).
 *
 *   node dist/bench/split-rebuild-probe.js [contexts, default 512,1024,2048,4096] [--reps 2]
 *
 * Per context and repetition, two processes taken in turn, each timing every layer's rebuild
 * (`CompactStore.view`) over the same cached chunks, medians of 40 passes:
 *  - today: one store over every chunk, products on every core (as a compact step runs them);
 *  - split: the first half of the chunks on this thread, the second on a worker with a store of
 *    its own (its own model, predictors and the same prefilled chunks), both with one-thread
 *    products (AQUAKV_PARALLEL_MIN); layer by layer in step: the worker is told the layer, both
 *    rebuild, the worker copies its keys and values into shared memory and this thread copies
 *    them out (what attention's view would take).
 * onnxruntime refuses shared memory as a product's operand, so the two halves cannot share one
 * memory: the copies are the price of the split. So is scratch: the worker holds its own carry,
 * views and spans besides the transfer, ~2× today's scratch as probed, over a compact cache's
 * bound (two layers' keys and values in f32), which today's store fills. The table prints both.
 * Prints a table, then one JSON line.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { loadModel } from '../src/io/load-model.js';
import { readText } from '../src/eval/texts.js';
import { createCache } from '../src/kv/factory.js';
import { parseMethod } from '../src/kv/method.js';
import { CompactStore, type CacheRegions, type StoreContext } from '../src/kv/chunk-store.js';
import { CompressedCache } from '../src/kv/compressed.js';
import { RowBuffer } from '../src/kv/row-buffer.js';
import { Workspace } from '../src/tensor/workspace.js';
import { demoPredictors } from './demo-predictors.js';

const PASSES = 40;
const WARM = 3;

/** A compact store over chunks [from, to) of a prefilled compact cache (no sinks or buffer when `bare`). */
function storeOver(context: number, from: (n: number) => number, to: (n: number) => number, bare: boolean): { store: CompactStore; layers: number; C: number; chunks: number; tokens: number; chunkRows: number } {
  const { model, tokenizer } = loadModel();
  const set = demoPredictors(model, tokenizer).set;
  const ids = tokenizer.encode(readText('@sotu-train').slice(0, 60_000));
  const cache = createCache(model, parseMethod('aquakv'), set, { mode: 'compact', background: false });
  if (!(cache instanceof CompressedCache)) throw new Error('split-rebuild-probe: aquakv made no compressed cache');
  for (let s = 0; s < context; s += 1024) model.forward(ids.slice(s, Math.min(context, s + 1024)), cache, { logits: 'none' });
  for (let i = 0; i < 5; i++) model.forward([ids[context + i]], cache, { logits: 'last' });
  const st = cache.state();
  const { nLayers, kvDim, nKvHeads, nHeads } = model.config;
  const rows = (list: Float32Array[]) => list.map((x) => (bare ? new RowBuffer(kvDim) : RowBuffer.of(kvDim, x)));
  const n = st.chunks.length;
  const regions: CacheRegions = { sinkK: rows(st.sinkK), sinkV: rows(st.sinkV), chunks: st.chunks.slice(from(n), to(n)), bufK: rows(st.bufK), bufV: rows(st.bufV), bufStart: st.bufStart };
  const ctx: StoreContext = { nLayers, C: kvDim, nKvHeads, nHeads, rope: model.rope, keysAfterRope: cache.setup.plan.keysAfterRope };
  return { store: new CompactStore(ctx, regions, cache.setup.codecs, new Workspace()), layers: nLayers, C: kvDim, chunks: n, tokens: st.length, chunkRows: regions.chunks.reduce((t, c) => t + c.n, 0) };
}

const median = (x: number[]) => [...x].sort((a, b) => a - b)[x.length >> 1];

interface Measure {
  context: number;
  mode: string;
  chunks: number;
  ms: number;
  /** Scratch bytes: the stores' working memory (both threads') and the shared transfer; the compact bound, two layers' keys and values in f32. */
  scratchBytes: number;
  boundBytes: number;
}

/** One process's measure: per pass, every layer's rebuild; the median pass in ms. */
function measure(context: number, mode: 'today' | 'split'): Promise<Measure> {
  const half = (n: number) => n >> 1;
  const { store, layers, C, chunks, tokens } = mode === 'today' ? storeOver(context, () => 0, (n) => n, false) : storeOver(context, () => 0, half, false);
  const passes: number[] = [];
  if (mode === 'today') {
    for (let p = 0; p < WARM + PASSES; p++) {
      const t0 = performance.now();
      for (let l = 0; l < layers; l++) store.view(l);
      if (p >= WARM) passes.push(performance.now() - t0);
    }
    return Promise.resolve({ context, mode, chunks, ms: median(passes), scratchBytes: store.memory().working, boundBytes: 16 * tokens * C });
  }
  // the worker's rows come back through shared memory it makes: its keys and values of one layer
  const ctl = new Int32Array(new SharedArrayBuffer(12)); // [layer asked + 1, layers done, floats written]
  const worker = new Worker(fileURLToPath(import.meta.url), { workerData: { context, ctl: ctl.buffer } });
  return new Promise((done, fail) => {
    worker.once('error', fail);
    worker.once('message', (shared: SharedArrayBuffer) => {
      let asked = 0;
      const from = new Float32Array(shared);
      const out = new Float32Array(from.length); // where this thread takes the worker's rows (its view's rows, in the design)
      for (let p = 0; p < WARM + PASSES; p++) {
        const t0 = performance.now();
        for (let l = 0; l < layers; l++) {
          Atomics.store(ctl, 0, l + 1);
          asked++;
          store.view(l);
          while (Atomics.load(ctl, 1) < asked);
          const floats = Atomics.load(ctl, 2);
          out.set(from.subarray(0, floats));
        }
        if (p >= WARM) passes.push(performance.now() - t0);
      }
      // the worker's working memory, asked after the passes
      Atomics.store(ctl, 0, -1);
      while (Atomics.load(ctl, 0) === -1);
      const helperBytes = Atomics.load(ctl, 2);
      void worker.terminate();
      done({ context, mode, chunks, ms: median(passes), scratchBytes: store.memory().working + helperBytes + shared.byteLength, boundBytes: 16 * tokens * C });
    });
  });
}

if (!isMainThread) {
  // the worker: the second half of the chunks, no sinks or buffer (this thread's store sends those)
  const { context, ctl: ctlBuffer } = workerData as { context: number; ctl: SharedArrayBuffer };
  const ctl = new Int32Array(ctlBuffer);
  const { store, C, chunkRows } = storeOver(context, (n) => n >> 1, (n) => n, true);
  const shared = new SharedArrayBuffer(2 * chunkRows * C * 4);
  const to = new Float32Array(shared);
  parentPort!.postMessage(shared);
  for (;;) {
    // watching, as a kernel helper does within a step (a wake would cost ~0.05 ms a layer)
    while (Atomics.load(ctl, 0) === 0);
    if (Atomics.load(ctl, 0) === -1) {
      Atomics.store(ctl, 2, store.memory().working);
      Atomics.store(ctl, 0, 0);
      continue;
    }
    const layer = Atomics.exchange(ctl, 0, 0) - 1;
    const view = store.view(layer);
    to.set(view.keys);
    to.set(view.values, view.keys.length);
    Atomics.store(ctl, 2, view.keys.length + view.values.length);
    Atomics.add(ctl, 1, 1);
  }
} else if (process.argv[2] === '--child') {
  const [context, mode] = [Number(process.argv[3]), process.argv[4] as 'today' | 'split'];
  console.log(JSON.stringify(await measure(context, mode)));
  process.exit(0);
} else {
  const args = process.argv.slice(2);
  const repsAt = args.indexOf('--reps');
  const reps = repsAt >= 0 ? Number(args[repsAt + 1]) : 2;
  const listed = args.find((a, i) => !a.startsWith('--') && i !== repsAt + 1);
  const contexts = (listed ?? '512,1024,2048,4096').split(',').map(Number);
  if (contexts.some((c) => !(Number.isInteger(c) && c >= 256 && c <= 8000)) || !(Number.isInteger(reps) && reps >= 1)) {
    console.error('usage: node dist/bench/split-rebuild-probe.js [contexts in 256..8000, comma-separated] [--reps N]');
    process.exit(2);
  }
  const self = fileURLToPath(import.meta.url);
  const rows: { context: number; today: number[]; split: number[]; scratch: { today: number; split: number; bound: number } }[] = [];
  console.log('## A compact rebuild split by rows over two threads (every layer, ms; medians of 40 passes; processes in turn)');
  console.log('context  chunks  today (products on both cores)  split (halves, one-thread products, copies)  today ÷ split  scratch MB: today / split / bound');
  for (const context of contexts) {
    const row = { context, today: [] as number[], split: [] as number[], scratch: { today: 0, split: 0, bound: 0 } };
    let chunks = 0;
    for (let r = 0; r < reps; r++) {
      for (const mode of ['today', 'split'] as const) {
        // the split's products on one thread each: its own process, the threshold set before the product loads
        const env = mode === 'split' ? { ...process.env, AQUAKV_PARALLEL_MIN: '1e15' } : process.env;
        const child = spawnSync(process.execPath, [self, '--child', String(context), mode], { env, encoding: 'utf8', maxBuffer: 1 << 20 });
        if (child.status !== 0) throw new Error(`split-rebuild-probe: the ${mode} process at ${context} failed: ${child.stderr.split('\n')[0]}`);
        const r1 = JSON.parse(child.stdout.trim().split('\n').pop()!) as Measure;
        row[mode].push(r1.ms);
        row.scratch[mode] = r1.scratchBytes;
        row.scratch.bound = r1.boundBytes;
        chunks = r1.chunks;
      }
    }
    rows.push(row);
    const f = (x: number[]) => x.map((v) => v.toFixed(2)).join(', ');
    console.log(`${String(context).padStart(7)}  ${String(chunks).padStart(6)}  ${f(row.today).padStart(31)}  ${f(row.split).padStart(52)}  ${(median(row.today) / median(row.split)).toFixed(2).padStart(13)}  ${[row.scratch.today, row.scratch.split, row.scratch.bound].map((b) => (b / 1e6).toFixed(2)).join(' / ').padStart(33)}`);
  }
  console.log(JSON.stringify({ splitRebuildProbe: rows }));
}
