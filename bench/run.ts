/**
 * `npm run bench [-- --only gemm,model,quant,cache] [--json]`: speed figures, never a test.
 *   gemm   GFLOP/s of each matrix-product path (naive, portable TS, onnxruntime MLAS) at square
 *          sizes 256–2048 and at the embedded model's real shapes, prefill and decode
 *   model  prefill and decode tokens/s on the embedded model (full-precision cache)
 *   quant  quantize and dequantize throughput (values/s) per quantizer, next to a plain copy
 *   cache  decode tokens/s at contexts 512–4096 for fp and AQUA-KV (materialized, compact),
 *          with each cache's resident and stored bytes; fp and materialized against the copy
 *          bandwidth's bound, compact against its own floor (the products its step runs) and
 *          the ceiling the model's own step leaves that ratio, its step taken apart (products,
 *          garbage collection, the rest), and the state of the machine's two cores around its
 *          runs (how fast one thread takes what another wrote)
 *   train  training tokens/s of the embedded model's architecture (forward + backward + AdamW)
 *          and the share of that time spent in matrix products
 *   threads  one thread against every core for products of decode and prefill sizes: where a
 *          second thread starts to pay (the crossover behind PARALLEL_MIN_MACS)
 *   persist  saved-cache size and save/load time at 1K and 4K tokens, fp against AQUA-KV, and the
 *          time to the first new token of a resumed conversation against re-reading it
 *   serve  `aquakv serve` on loopback, started and stopped here: time to first token of a 1000-token
 *          prompt with its first 896 tokens cached against uncached, conversations per GiB of store
 *          (fp16 against aquakv), throughput and p50/p99 latency at 1, 4 and 16 clients, store and
 *          load time per entry in memory and in Redis (when redis-server is installed)
 *   scale  a random checkpoint of Llama-3.2-1B's shapes (BF16, two shards, llama3 RoPE scaling;
 *          generated here, never kept): load time, resident bytes, prefill and decode tokens/s
 *          (decode against the weight-bandwidth limit), calibration time and peak memory for
 *          16 × 2048 tokens. Minutes, and ~8 GB of memory.
 *   web    the page of `npm run web` in headless chromium: load to first token, and decode tokens/s
 *          at ~1K context for fp and AQUA-KV compact, against Node's on the portable and the
 *          native product (the page runs the portable one)
 *   plans  eval time of one window through caches whose slots use the 4-D grid (higgs:4x256,
 *          searched with its bucket table) against the 2-D grid (higgs:2x16), same bits
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { PerformanceObserver } from 'node:perf_hooks';
import { normaliseConfig } from '../src/io/config.js';
import { saveCheckpoint } from '../src/io/checkpoint.js';
import { heldWeightBytes, layerShapes, type ModelWeights } from '../src/model/weights.js';
import { availableParallelism, tmpdir } from 'node:os';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { deserializeCache } from '../src/kv/cache-file.js';
import { DEFAULT_CACHE_OPTIONS } from '../src/kv/compressed.js';
import { PrefixCache } from '../src/serve/prefix-cache.js';
import { RedisStore } from '../src/serve/redis-store.js';
import { createServer } from '../src/serve/server.js';
import { MemoryStore } from '../src/serve/store.js';
import { loadOrtGemm, PARALLEL_MIN_MACS } from '../src/platform/ort-gemm.js';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadCache, saveCache } from '../src/kv/cache-file.js';
import { fp16CacheBytes, type KVCache } from '../src/model/kv-cache.js';
import { bandwidthProbe, copyBandwidth } from './bandwidth.js';
import { demoPredictors } from './demo-predictors.js';
import { FullCache } from '../src/kv/full.js';
import { parse, reportUserErrors } from '../src/cli/args.js';
import { AquaError } from '../src/errors.js';
import { gemmBackend, gemmNaive, gemmProfile, gemmRowwise, gemmTs, ortAvailable, ortGemmFn, setGemmBackend, type GemmFn } from '../src/tensor/gemm.js';
import { sotuSplit } from '../src/eval/datasets.js';
import { generate } from '../src/model/generate.js';
import { CompressedCache } from '../src/kv/compressed.js';
import { ParamArena } from '../src/train/params.js';
import { TrainableLlama } from '../src/train/trainable.js';
import { AdamW } from '../src/train/adamw.js';
import { Rng } from '../src/tensor/rng.js';
import { embeddedModelDir, loadModel } from '../src/io/load-model.js';
import { parseQuantizer } from '../src/quant/spec.js';
import { loadGrid } from '../src/quant/grid.js';
import { createCache } from '../src/kv/factory.js';
import { parseMethod } from '../src/kv/method.js';
import { DEFAULT_EVAL, evaluatePerplexity } from '../src/eval/perplexity.js';
import { readText } from '../src/eval/texts.js';

reportUserErrors('bench');
const args = parse(process.argv.slice(2), { only: { type: 'string' }, json: { type: 'boolean' }, 'scale-samples': { type: 'string', default: '16' }, 'scale-dir': { type: 'string' } });
const SECTIONS = ['gemm', 'model', 'quant', 'cache', 'train', 'plans', 'persist', 'threads', 'serve', 'scale', 'web'];
// sections that run only when named (long, or heavy on memory)
const ON_REQUEST = new Set(['scale']);
const sections = new Set((args.only ?? SECTIONS.filter((x) => !ON_REQUEST.has(x)).join(',')).split(','));
const unknown = [...sections].filter((s) => !SECTIONS.includes(s));
if (unknown.length > 0) throw new AquaError(`--only: unknown section ${unknown.join(', ')}; sections are ${SECTIONS.join(', ')}`);
const results: Record<string, unknown[]> = {};
const say = (s: string) => {
  if (!args.json) console.log(s);
};

/** Median seconds of fn over enough repetitions to fill ~minSeconds. */
function time(fn: () => void, minSeconds = 0.3): number {
  fn();
  const times: number[] = [];
  const t0 = performance.now();
  while (times.length < 3 || (performance.now() - t0) / 1000 < minSeconds) {
    const t = performance.now();
    fn();
    times.push((performance.now() - t) / 1000);
    if (times.length >= 200) break;
  }
  return times.sort((a, b) => a - b)[Math.floor(times.length / 2)];
}

const embedded = existsSync(embeddedModelDir()) ? loadModel() : null;
const model = embedded?.model ?? null;

if (sections.has('gemm')) {
  const ort = ortGemmFn();
  const rows: { shape: string; m: number; k: number; n: number; naive: number | null; ts: number; ort: number | null }[] = [];
  const shapes: [string, number, number, number, boolean][] = [
    ...[256, 512, 1024, 2048].map((s) => [`square ${s}`, s, s, s, false] as [string, number, number, number, boolean]),
  ];
  if (model) {
    const c = model.config;
    shapes.push(
      [`prefill 1024: q_proj`, 1024, c.hiddenSize, c.qDim, true],
      [`prefill 1024: gate_proj`, 1024, c.hiddenSize, c.intermediateSize, true],
      [`prefill 1024: down_proj`, 1024, c.intermediateSize, c.hiddenSize, true],
      [`prefill 1024: lm_head`, 1024, c.hiddenSize, c.vocabSize, true],
      [`decode: q_proj`, 1, c.hiddenSize, c.qDim, true],
      [`decode: gate_proj`, 1, c.hiddenSize, c.intermediateSize, true],
      [`decode: lm_head`, 1, c.hiddenSize, c.vocabSize, true],
      [`predictor (values), 128 tokens`, 128, 2 * c.kvDim, c.kvDim, true],
    );
  }
  say('\n## Matrix products (GFLOP/s)\nshape                              M     K     N    naive       ts      ort (MLAS)');
  const rng = new Rng(1);
  for (const [name, m, k, n, tb] of shapes) {
    const a = rng.fillNormal(new Float32Array(m * k));
    const b = rng.fillNormal(new Float32Array(k * n));
    const o = new Float32Array(m * n);
    const gflops = (fn: GemmFn) => (2 * m * k * n) / time(() => fn(o, a, b, m, k, n, false, tb)) / 1e9;
    const row = {
      shape: name, m, k, n,
      naive: m * k * n <= 256 ** 3 ? gflops(gemmNaive) : null,
      ts: m * k * n <= 1024 ** 3 ? gflops(gemmTs) : NaN,
      ort: ort ? gflops(ort) : null,
    };
    rows.push(row);
    const f = (x: number | null) => (x === null || Number.isNaN(x) ? '-' : x.toFixed(2)).padStart(8);
    say(`${name.padEnd(32)} ${String(m).padStart(5)} ${String(k).padStart(5)} ${String(n).padStart(5)} ${f(row.naive)} ${f(row.ts)} ${f(row.ort)}`);
  }
  results.gemm = rows;
}

if (sections.has('model') && model) {
  const V = model.config.vocabSize;
  const rng = new Rng(2);
  const prompt = Array.from({ length: 1024 }, () => rng.int(V));
  const prefill = time(() => model.forward(prompt, new FullCache(model), { logits: 'last' }), 2);
  const cache = new FullCache(model);
  model.forward(prompt.slice(0, 512), cache, { logits: 'last' });
  let i = 0;
  const decode = time(() => model.forward([prompt[512 + (i++ % 256)]], cache, { logits: 'last' }), 2);
  results.model = [{ prefillTokens: 1024, prefillTokensPerSecond: 1024 / prefill, decodeContext: 512, decodeTokensPerSecond: 1 / decode }];
  say(`\n## Embedded model, full-precision cache\nprefill 1024 tokens: ${(1024 / prefill).toFixed(0)} tokens/s\ndecode at ~512 context: ${(1 / decode).toFixed(1)} tokens/s`);
}

if (sections.has('quant')) {
  const C = 128;
  const N = 2048;
  const x = new Rng(3).fillNormal(new Float32Array(N * C));
  const y = new Float32Array(N * C);
  const copy = time(() => y.set(x));
  const rows: { quantizer: string; bitsPerValue: number; quantizeValuesPerSecond: number; dequantizeValuesPerSecond: number }[] = [];
  rows.push({ quantizer: 'copy (memory bandwidth reference)', bitsPerValue: 32, quantizeValuesPerSecond: (N * C) / copy, dequantizeValuesPerSecond: (N * C) / copy });
  for (const spec of ['higgs:2x16', 'higgs:2x64', 'higgs:2x256', 'higgs:4x256', 'higgs:1x16', 'uniform:2:token:g32', 'uniform:2:channel:g32', 'uniform:4:token:g32']) {
    const q = parseQuantizer(spec, C)!;
    const block = q.quantize(x, N);
    const tq = time(() => q.quantize(x, N));
    const td = time(() => q.dequantize(block, y));
    const bytes = block.codes.byteLength + block.scales.byteLength + (block.zeros?.byteLength ?? 0);
    rows.push({ quantizer: spec, bitsPerValue: (bytes * 8) / (N * C), quantizeValuesPerSecond: (N * C) / tq, dequantizeValuesPerSecond: (N * C) / td });
  }
  const search: { grid: string; candidates: number; structuredPerSecond: number; exhaustivePerSecond: number }[] = [];
  for (const [d, n] of [[1, 16], [2, 16], [2, 64], [2, 256], [4, 256]]) {
    const g = loadGrid(d, n);
    const pts = new Rng(4).fillNormal(new Float32Array(65536 * d));
    const count = pts.length / d;
    let sink = 0;
    const ts = time(() => { for (let i = 0; i < count; i++) sink += g.nearest(pts, i * d); });
    const te = time(() => { for (let i = 0; i < count; i++) sink += g.searchAll(pts, i * d); });
    if (sink < 0) console.log(sink);
    search.push({ grid: `${d}x${n}`, candidates: g.meanCandidates(), structuredPerSecond: count / ts, exhaustivePerSecond: count / te });
  }
  results.nearestPoint = search;
  say('\n## Nearest-point search (sub-vectors/s)\ngrid    candidates/cell   structured    exhaustive');
  for (const r of search) say(`${r.grid.padEnd(7)} ${r.candidates.toFixed(1).padStart(15)} ${(r.structuredPerSecond / 1e6).toFixed(1).padStart(10)} M ${(r.exhaustivePerSecond / 1e6).toFixed(1).padStart(10)} M`);
  say(`\n## Quantizers on [${N}, ${C}] Gaussian data (values/s)\nquantizer                              bits/value   quantize    dequantize`);
  for (const r of rows) say(`${r.quantizer.padEnd(38)} ${r.bitsPerValue.toFixed(3).padStart(9)} ${(r.quantizeValuesPerSecond / 1e6).toFixed(1).padStart(9)} M ${(r.dequantizeValuesPerSecond / 1e6).toFixed(1).padStart(9)} M`);
  results.quant = rows;
}

if (sections.has('cache') && model) {
  const tok = embedded!.tokenizer;
  const set = demoPredictors(model, tok).set;
  // the first 30 000 characters (~7 800 tokens, enough for every context and its steps): holding the
  // whole tokenized corpus makes each garbage collection cost more, and onnxruntime-node's output
  // copies make compact decode collect often (before they were collected young, platform/ort-gemm.ts
  // `YoungCollection`, a full collection about once a step: 8.8 ms a step at 4 096 tokens with the
  // whole corpus held, 0.6–0.9 ms without)
  const ids = tok.encode(readText('@sotu-train').slice(0, 30_000));
  const cfg = model.config;
  const C = cfg.kvDim;
  // the fp limit: every weight and every cached key and value is read once per step
  // measured again right before each context's runs (the machine's speed swings within seconds)
  const measureBandwidth = bandwidthProbe();
  const weightBytes = heldWeightBytes(model.weights);
  // compact's floor: the products its step runs, and nothing else. Per layer and span of its last
  // step (kv/chunk-store.ts): a keys product [rows, C + G]·[C + G, C] and a values product
  // [rows, 2C + G]·[2C + G, C] (G alone in layer 0), with the cache's own weights, on operands of
  // the span's shape. Measured two ways: as the step runs them (timed around each call, less the
  // collection pauses inside the calls: the same products at the same moment, undisturbed), the
  // ratio reported; and back to back on operands of their shapes, after the runs (a pass before
  // every step disturbed the small steps it preceded, 8.2 against 6.8 ms at 512 tokens, and passes
  // before each run met another moment of the machine than the steps and left them collection)
  let floorInput: Float32Array = new Float32Array(0);
  let floorOutput = new Float32Array(0);
  const rebuildFloor = (cache: CompressedCache): { seconds: number; macs: number } => {
    const parts = cache.setup.codecs.flatMap((c) => [c.fusedKeys(), c.fusedValues()]).filter((p) => p !== null);
    if (parts.length < 2 * cfg.nLayers) throw new Error('bench: a compact cache whose rebuild is not one product per part (is onnxruntime-node loaded?)');
    const spans = cache.rebuildSpans();
    const rows = Math.max(0, ...spans);
    const k = Math.max(...parts.map((p) => p.k));
    if (floorInput.length < rows * k) floorInput = new Rng(5).fillNormal(new Float32Array(rows * k));
    if (floorOutput.length < rows * C) floorOutput = new Float32Array(rows * C);
    let macs = 0;
    for (const n of spans) for (const p of parts) macs += n * p.k * C;
    const pass = () => {
      const t0 = performance.now();
      for (const n of spans) for (const p of parts) gemmRowwise(floorOutput, floorInput, p.weight, n, p.k, C, true);
      return (performance.now() - t0) / 1000;
    };
    pass();
    return { seconds: [pass(), pass(), pass()].sort((a, b) => a - b)[1], macs };
  };
  // garbage collection's pauses (their entries arrive once the event loop turns, after each context)
  const collections: { start: number; ms: number }[] = [];
  const gcObserver = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) collections.push({ start: e.startTime, ms: e.duration });
  });
  gcObserver.observe({ entryTypes: ['gc'] });
  // the collections that began inside any of `windows` (sorted, apart), in ms
  const collectedIn = (windows: [number, number][]) => {
    let ms = 0;
    for (const c of collections) {
      // the last window starting at or before the collection
      let lo = 0;
      let hi = windows.length;
      while (hi - lo > 1) {
        const mid = (lo + hi) >> 1;
        if (windows[mid][0] <= c.start) lo = mid;
        else hi = mid;
      }
      if (windows.length > 0 && c.start >= windows[lo][0] && c.start < windows[lo][1]) ms += c.ms;
    }
    return ms;
  };
  const rows: Record<string, number | string>[] = [];
  say(`\n## Decode with compressed caches (medians of 5 runs of ${DEFAULT_CACHE_OPTIONS.buffer} steps, compact of 8; copy bandwidth measured before each context)\n` +
    'context  cache                     tokens/s   to fp   bound tokens/s   of bound   resident bytes   to fp   stored bytes');
  // the decode path compiled before anything is timed (the first context would pay it otherwise)
  for (const make of [() => new FullCache(model), () => createCache(model, parseMethod('aquakv'), set, { mode: 'materialized' })]) {
    const cache = make();
    model.forward(ids.slice(0, 256), cache, { logits: 'none' });
    for (let i = 0; i < 160; i++) model.forward([ids[256 + i]], cache, { logits: 'last' });
  }
  for (const context of [512, 1024, 2048, 4096]) {
    const bandwidth = measureBandwidth();
    const fpLimit = bandwidth / (weightBytes + 2 * cfg.nLayers * context * C * 4);
    // fp and materialized take their steps in turn (fp, materialized, fp, …), so a slow moment of
    // this shared machine falls on both and their ratio holds; compact runs after them, alone
    const kinds: [string, () => KVCache][] = [
      ['fp (FullCache)', () => new FullCache(model)],
      ['aquakv materialized', () => createCache(model, parseMethod('aquakv'), set, { mode: 'materialized' })],
      ['aquakv compact', () => createCache(model, parseMethod('aquakv'), set, { mode: 'compact' })],
    ];
    // compact runs on both cores (its products), so a busy moment of the shared machine moves it
    // more than single-threaded fp: it takes 5 runs, its ratio the median over them of its
    // products' own time over its steps' time
    const finished: {
      label: string; rates: number[]; collectionMs: number; mem: ReturnType<KVCache['memory']>; isFp: boolean;
      compact: { floorSeconds: number[]; shares: number[]; productMs: number[]; collectionInProductsMs: number; backToBack: number[]; macs: number } | null;
      filling: number[]; others: number[]; background: { rows: number; staged: number; of: number } | null;
    }[] = [];
    // fp and materialized, then compact, each group's caches made, timed, measured and dropped:
    // compact's products return copies of their outputs (onnxruntime-node's binding), ~25 MB a
    // step at 4 096 tokens, which the process collects, at a cost that grows with what it holds
    // the handoff between two threads right before compact's runs and right after them: which
    // state of the machine's cores compact's products and kernels met (bandwidth.ts `handoff`)
    const handoffs: number[] = [];
    for (const group of [kinds.slice(0, 2), kinds.slice(2)]) {
      if (group[0][0].includes('compact')) handoffs.push(measureBandwidth.handoff());
      const runs = group.map(([label, make]) => {
        const cache = make();
        for (let s = 0; s < context; s += 1024) model.forward(ids.slice(s, Math.min(context, s + 1024)), cache, { logits: 'none' });
        // one step untimed first: the cache's rows grow past the prefill's capacity there
        model.forward([ids[context]], cache, { logits: 'last' });
        // 128 steps a repetition: a materialized cache compresses its buffer once per 128 tokens, so
        // each repetition pays that once, as decode does on average (compact: 8 steps, ≤ 50 ms each)
        return {
          label, cache, steps: label.includes('compact') ? 8 : DEFAULT_CACHE_OPTIONS.buffer, rates: [] as number[],
          windows: [] as [number, number][], // every step's [start, end]
          // every step's ms, split by whether it filled a chunk (compressed one; materialized's measure)
          filling: [] as number[], others: [] as number[],
          // compact, run by run: its steps' time, its products' time and calls, its back-to-back floor
          reps: [] as { steps: number; stepSeconds: number; productSeconds: number; calls: [number, number][] }[],
        };
      });
      const compact = runs[0].label.includes('compact');
      for (let rep = 0; rep < 5; rep++) {
        // step by step in turn (fp, materialized, fp, …), so that the machine's moments fall on
        // both alike; compact: the time its steps spend in the products too (the rest is the
        // model's own step, the kernels around the products, collection and JavaScript)
        const stepSeconds = runs.map(() => 0);
        const productSeconds = runs.map(() => 0);
        const calls = runs.map(() => [] as [number, number][]);
        const steps = runs[0].steps;
        for (let i = 0; i < steps; i++) {
          // which goes first alternates step by step: the second of two steps ran up to ~2% faster
          // than the first here (fp against fp), which a fixed order gave to one of them
          const order = i % 2 === 0 ? runs.map((_, j) => j) : runs.map((_, j) => runs.length - 1 - j);
          for (const j of order) {
            const r = runs[j];
            gemmProfile.seconds = 0;
            gemmProfile.enabled = compact;
            gemmProfile.spans = compact ? calls[j] : null;
            const t0 = performance.now();
            model.forward([ids[context + 1 + rep * steps + i]], r.cache, { logits: 'last' });
            const t1 = performance.now();
            gemmProfile.enabled = false;
            gemmProfile.spans = null;
            stepSeconds[j] += (t1 - t0) / 1000;
            productSeconds[j] += gemmProfile.seconds;
            r.windows.push([t0, t1]);
            (r.cache.length % DEFAULT_CACHE_OPTIONS.buffer === 0 ? r.filling : r.others).push(t1 - t0);
          }
        }
        runs.forEach((r, j) => {
          r.rates.push(steps / stepSeconds[j]);
          if (compact) r.reps.push({ steps, stepSeconds: stepSeconds[j], productSeconds: productSeconds[j], calls: calls[j] });
        });
      }
      // the back-to-back floor after every run (its products' output copies, ~25 MB a pass at 4 096
      // tokens, leave collection to whatever runs next: before each run, they doubled the steps'
      // collection), the median of 5 medians
      if (compact) handoffs.push(measureBandwidth.handoff());
      const backToBack = runs.map((r) => (compact ? Array.from({ length: 5 }, () => rebuildFloor(r.cache as CompressedCache)) : []));
      await new Promise((done) => setTimeout(done, 50)); // the collections' entries arrive on a later task
      for (const [j, r] of runs.entries()) {
        const steps = r.windows.length;
        const floor = backToBack[j];
        // the products' own time per step in each run: timed around the calls, less collection inside them
        const own = r.reps.map((x) => (x.productSeconds - collectedIn(x.calls) / 1000) / x.steps);
        finished.push({
          label: r.label, rates: r.rates, isFp: r.cache instanceof FullCache, mem: r.cache.memory(), filling: r.filling, others: r.others,
          background: r.cache instanceof CompressedCache ? { rows: r.cache.backgroundRows, staged: r.cache.stagedRows, of: r.cache.compressedTokens } : null,
          collectionMs: collectedIn(r.windows) / steps,
          compact: r.reps.length === 0 ? null : {
            floorSeconds: own, // per step, run by run
            shares: r.reps.map((x, i) => own[i] / (x.stepSeconds / x.steps)),
            productMs: r.reps.map((x) => (1000 * x.productSeconds) / x.steps),
            collectionInProductsMs: r.reps.reduce((sum, x) => sum + collectedIn(x.calls), 0) / steps,
            backToBack: floor.map((f) => f.seconds),
            macs: floor[0].macs,
          },
        });
      }
    }
    let fp = { tps: NaN, resident: NaN }; // the fp row of this context, first in the list
    const median = (x: number[]) => [...x].sort((a, b) => a - b)[Math.floor(x.length / 2)];
    const notes: string[] = [];
    for (const { label, rates, collectionMs, mem, isFp, compact, filling, others, background } of finished) {
      const tps = median(rates);
      const stepMs = 1000 / tps;
      // compact: its floor is its products' own time in its steps; the ratio, run by run
      const floorMs = compact ? 1000 * median(compact.floorSeconds) : NaN;
      const bound = compact ? 1000 / floorMs : fpLimit;
      const ofBound = compact ? median(compact.shares) : tps / bound;
      if (isFp) fp = { tps, resident: mem.total };
      // every row: collection and the bandwidth bounding it; materialized and compact add their own
      let measures: Record<string, number> = { collectionMs, copyBandwidth: bandwidth };
      if (!isFp && !compact && background) {
        // the step that fills a chunk compresses it: on the background thread, all but its last row;
        // and puts its rebuild in place: the thread's, staged in the views' spare rows, where they had room
        measures = { ...measures, fillingStepMs: median(filling), otherStepMs: median(others), backgroundRows: background.rows, stagedRows: background.staged, compressedRows: background.of };
        notes.push(`         materialized: a step that fills a chunk ${median(filling).toFixed(2)} ms (median of ${filling.length}), the others ${median(others).toFixed(2)} ms; ` +
          `${background.rows} of its ${background.of} compressed tokens were compressed on the background thread, ${background.staged} of them rebuilt there too`);
      }
      if (compact) {
        // a compact step is the model's own step (fp's, measured above) plus its rebuild: were the
        // rebuild exactly its products, the step would reach this share of its floor and no more
        const ceiling = floorMs / (floorMs + 1000 / fp.tps);
        const productsMs = median(compact.productMs);
        const backToBackMs = 1000 * median(compact.backToBack);
        const gflops = (2 * compact.macs) / (floorMs / 1000) / 1e9;
        // the floor with the model's own step beside the products, which a compact step runs too:
        // the step's share of that (printed beside "of bound", whose floor is the products alone)
        const ofFloorWithFpStep = (floorMs + 1000 / fp.tps) / stepMs;
        measures = {
          floorMs, floorGflops: gflops, ofBoundCeiling: ceiling, ofFloorWithFpStep, productsMs, collectionMs, collectionInProductsMs: compact.collectionInProductsMs,
          restMs: stepMs - productsMs, backToBackFloorMs: backToBackMs, ofBackToBackFloor: backToBackMs / stepMs,
          handoffBeforeGBs: handoffs[0] / 1e9, handoffAfterGBs: handoffs[1] / 1e9,
        };
        const outside = collectionMs - compact.collectionInProductsMs;
        notes.push(`         compact: step ${stepMs.toFixed(2)} ms; its floor, its products' own time in its steps, ${floorMs.toFixed(2)} ms (${gflops.toFixed(0)} GFLOP/s); ` +
          `back to back, after the runs, ${backToBackMs.toFixed(2)} ms (${(backToBackMs / stepMs).toFixed(3)} of the median step); fp's step ${(1000 / fp.tps).toFixed(2)} ms: ` +
          `floor ÷ (floor + fp's step) = ${ceiling.toFixed(3)}, the most "of bound" can be; (floor + fp's step) ÷ step = ${ofFloorWithFpStep.toFixed(3)};\n` +
          `                  the step: products ${productsMs.toFixed(2)} ms (${compact.collectionInProductsMs.toFixed(2)} of it collection), and ${(stepMs - productsMs).toFixed(2)} ms beside them: ` +
          `fp's step, ${outside.toFixed(2)} ms of collection, ${(stepMs - productsMs - outside - 1000 / fp.tps).toFixed(2)} ms of kernels and JavaScript;\n` +
          `                  the machine's cores: 1 MiB one thread wrote, read by another, ${(handoffs[0] / 1e9).toFixed(1)} GB/s before its runs and ${(handoffs[1] / 1e9).toFixed(1)} after ` +
          `(here ~29 where compact at 4 096 tokens took ~29 ms a step, ~21–24 where it took ~42: bench/bandwidth.ts)`);
      }
      const row = { context, cache: label, decodeTokensPerSecond: tps, toFp: tps / fp.tps, boundTokensPerSecond: bound, ofBound, ...measures, residentBytes: mem.total, residentToFp: mem.total / fp.resident, storedBytes: mem.stored };
      rows.push(row);
      say(`${String(context).padStart(7)}  ${label.padEnd(24)} ${tps.toFixed(1).padStart(9)} ${row.toFp.toFixed(2).padStart(7)} ${bound.toFixed(1).padStart(16)} ${ofBound.toFixed(3).padStart(10)} ${String(mem.total).padStart(16)} ${row.residentToFp.toFixed(2).padStart(7)} ${String(mem.stored).padStart(14)}`);
    }
    notes.push(`         fp and materialized: the copy bandwidth measured right before this context, ${(bandwidth / 1e9).toFixed(1)} GB/s`);
    for (const n of notes) say(n);
  }
  measureBandwidth.close(); // its thread and 128 MiB go
  gcObserver.disconnect();
  say('bound: fp and materialized, the copy bandwidth over the bytes a step reads (weights + cached keys and values);\n       compact, its own floor: the products its step runs (each layer\'s keys and values, per block of chunks, with its weights), as its steps run them, timed around each call less the collection inside (of bound: the median over its 5 runs of that time ÷ the steps\' time)');
  results.cache = rows;
}

if (sections.has('plans') && model) {
  // the eval loop of `aquakv eval` (windows of the model's context fed 32 tokens at a time), on two
  // windows of held-out text; no predictors, so only the quantizers differ
  const ids = embedded!.tokenizer.encode(readText('@sotu-heldout'));
  const T = model.config.maxPositionEmbeddings;
  const rows: { method: string; seconds: number; ratioTo2d: number; cacheSeconds: number; cacheRatioTo2d: number }[] = [];
  const timeOf = (spec: string) => {
    const t0 = performance.now();
    evaluatePerplexity(model, ids, [parseMethod(spec)], null, { seqLen: T, chunk: DEFAULT_EVAL.chunk, maxTokens: 2 * T });
    return (performance.now() - t0) / 1000;
  };
  timeOf('higgs[q=higgs:4x256]'); // warm-up: grids and tables built once
  const pairs = ['higgs[q=higgs:2x16]', 'higgs[q=higgs:4x256]', 'fp'];
  const seconds: Record<string, number[]> = {};
  for (let rep = 0; rep < 3; rep++) for (const p of pairs) (seconds[p] ??= []).push(timeOf(p)); // interleaved, medians of 3
  const median = (x: number[]) => [...x].sort((a, b) => a - b)[1];
  // `fp` alone is the reference pass every eval includes; the rest is the compressed cache's own pass
  const fpOnly = median(seconds.fp);
  const own = (p: string) => median(seconds[p]) - fpOnly;
  for (const p of pairs.slice(0, 2)) {
    rows.push({ method: p, seconds: median(seconds[p]), ratioTo2d: median(seconds[p]) / median(seconds['higgs[q=higgs:2x16]']), cacheSeconds: own(p), cacheRatioTo2d: own(p) / own('higgs[q=higgs:2x16]') });
  }
  results.plans = rows;
  say(`\n## Eval time per plan (2 windows of ${T} tokens, medians of 3 interleaved runs; fp reference pass alone ${fpOnly.toFixed(2)} s)\nmethod                      eval s   vs 2-D   its own pass s   vs 2-D`);
  for (const r of rows) say(`${r.method.padEnd(26)} ${r.seconds.toFixed(2).padStart(7)} ${r.ratioTo2d.toFixed(2).padStart(6)}× ${r.cacheSeconds.toFixed(2).padStart(14)} ${r.cacheRatioTo2d.toFixed(2).padStart(7)}×`);
}

if (sections.has('threads')) {
  const one = loadOrtGemm(1);
  const all = loadOrtGemm(availableParallelism(), 0);
  if (!one.fn || !all.fn) say('\n## Threads: skipped (onnxruntime-node did not load)');
  else {
    const shapes: [string, number, number, number][] = [
      ['decode q/k/v', 1, 256, 256], ['decode MLP up', 1, 256, 768], ['decode lm head', 1, 256, 2048],
      ['attention scores T=512', 2, 64, 512], ['attention scores T=4096', 2, 64, 4096], ['attention out T=4096', 2, 4096, 64],
      ['prefill 16 MLP', 16, 256, 768], ['prefill 64 MLP', 64, 256, 768], ['prefill 128 MLP', 128, 256, 768],
      ['prefill 512 MLP', 512, 256, 768], ['prefill 1024 lm head', 1024, 256, 2048], ['rebuild 1024×256×256', 1024, 256, 256],
    ];
    const rows: { shape: string; macs: number; oneThreadUs: number; allThreadsUs: number; speedup: number }[] = [];
    say(`\n## Threads: one against ${availableParallelism()} (MLAS, medians; interleaved)\nproduct                    m·k·n (MACs)   1 thread µs   ${availableParallelism()} threads µs   speed-up`);
    for (const [label, m, k, n] of shapes) {
      const a = new Rng(1).fillNormal(new Float32Array(m * k));
      const b = new Rng(2).fillNormal(new Float32Array(k * n));
      const out = new Float32Array(m * n);
      const t1: number[] = [], t2: number[] = [];
      for (let rep = 0; rep < 5; rep++) {
        t1.push(time(() => one.fn!(out, a, b, m, k, n, false, false), 0.05));
        t2.push(time(() => all.fn!(out, a, b, m, k, n, false, false), 0.05));
      }
      const med = (x: number[]) => x.sort((p, q) => p - q)[2];
      const r = { shape: label, macs: m * k * n, oneThreadUs: 1e6 * med(t1), allThreadsUs: 1e6 * med(t2), speedup: med(t1) / med(t2) };
      rows.push(r);
      say(`${label.padEnd(26)} ${r.macs.toLocaleString('en-US').padStart(13)} ${r.oneThreadUs.toFixed(1).padStart(13)} ${r.allThreadsUs.toFixed(1).padStart(15)} ${r.speedup.toFixed(2).padStart(9)}×`);
    }
    const crossover = rows.filter((r) => r.speedup > 1.1).map((r) => r.macs).sort((p, q) => p - q)[0];
    say(`alone, in a tight loop, every core pays from ${crossover?.toLocaleString('en-US') ?? 'none'} MACs (> 1.1×): the second thread stays awake between calls`);
    // in the real loop, JS work between products lets the second thread sleep, and waking it costs
    // more than small products save: the policy is measured there, one process per threshold
    const probe = resolve(dirname(fileURLToPath(import.meta.url)), 'thread-probe.js');
    const policy: Record<string, number | string>[] = [];
    say('\nthe policy in the decode loop (fp cache; one process per threshold, 3 interleaved rounds, medians)\n' +
      'products on every core from   decode tok/s at 512   at 1000   prefill 1024 tok/s');
    const thresholds: [string, string][] = [['every product', '0'], ['200 K MACs', '200000'], ['1 M MACs', '1000000'], ['4 M MACs (the policy)', String(PARALLEL_MIN_MACS)], ['never (one thread)', '1000000000000000']];
    const runs: Record<string, { decode512: number; decode1000: number; prefill1024: number }[]> = {};
    for (let round = 0; round < 3; round++) {
      for (const [label, min] of thresholds) {
        const r = spawnSync(process.execPath, [probe], { env: { ...process.env, AQUAKV_PARALLEL_MIN: min }, encoding: 'utf8' });
        if (r.status === 0) (runs[label] ??= []).push(JSON.parse(r.stdout.trim().split('\n').pop()!));
      }
    }
    const mid = (x: number[]) => [...x].sort((a, b) => a - b)[Math.floor(x.length / 2)];
    for (const [label] of thresholds) {
      const rs = runs[label] ?? [];
      if (rs.length === 0) continue;
      const row = { threshold: label, decode512: mid(rs.map((r) => r.decode512)), decode1000: mid(rs.map((r) => r.decode1000)), prefill1024: mid(rs.map((r) => r.prefill1024)) };
      policy.push(row);
      say(`${label.padEnd(30)} ${row.decode512.toFixed(1).padStart(20)} ${row.decode1000.toFixed(1).padStart(9)} ${row.prefill1024.toFixed(0).padStart(20)}`);
    }
    results.threads = [...rows, ...policy];
  }
}

if (sections.has('persist') && model) {
  // the demo's predictors (reused from .aquakv-cache when `npm start` has run)
  const tok = embedded!.tokenizer;
  const set = demoPredictors(model, tok).set;
  const ids = tok.encode(readText('@sotu-train'));
  const dir = mkdtempSync(join(tmpdir(), 'aquakv-bench-'));
  const followUp = ids.slice(5000, 5016);
  const rows: Record<string, number | string>[] = [];
  say('\n## Saved caches (medians; the file is what saveCache writes)\n' +
    'tokens  cache          file bytes   vs fp16   save ms   load ms (materialized / compact)   first token: resumed ms   re-read ms   speed-up');
  const fill = (cache: KVCache, n: number) => {
    for (let s = 0; s < n; s += 1024) model.forward(ids.slice(s, Math.min(n, s + 1024)), cache, { logits: 'none' });
  };
  for (const tokens of [1024, 4096]) {
    for (const [label, spec] of [['fp', 'fp'], ['aquakv', 'aquakv']] as const) {
      const m = parseMethod(spec);
      const predictors = m.usesPredictors ? set : null;
      const cache = createCache(model, m, predictors, { mode: 'compact' });
      fill(cache, tokens);
      const path = join(dir, `${label}-${tokens}.aqkv`);
      let bytes = 0;
      const saveS = time(() => {
        bytes = saveCache(cache, path);
      });
      const loadMat = time(() => loadCache(path, model, { predictors, mode: 'materialized' }));
      const loadCompact = time(() => loadCache(path, model, { predictors, mode: 'compact' }));
      // time to the first new token: load + read 16 new tokens, against reading all tokens + 16 into a fresh cache
      const resumed = time(() => model.forward(followUp, loadCache(path, model, { predictors, mode: 'materialized' }), { logits: 'last' }), 1);
      const reread = time(() => {
        const fresh = createCache(model, m, predictors, { mode: 'materialized' });
        fill(fresh, tokens);
        model.forward(followUp, fresh, { logits: 'last' });
      }, 1);
      const fp16 = fp16CacheBytes(model.config, tokens);
      rows.push({ tokens, cache: label, fileBytes: bytes, fp16Bytes: fp16, storedBytes: cache.memory().stored, saveSeconds: saveS, loadMaterializedSeconds: loadMat, loadCompactSeconds: loadCompact, resumeFirstTokenSeconds: resumed, rereadFirstTokenSeconds: reread });
      say(`${String(tokens).padStart(6)}  ${label.padEnd(12)} ${bytes.toLocaleString('en-US').padStart(11)} ${(fp16 / bytes).toFixed(2).padStart(8)}× ${(1000 * saveS).toFixed(1).padStart(8)} ${(1000 * loadMat).toFixed(1).padStart(12)} / ${(1000 * loadCompact).toFixed(1).padStart(8)} ${(1000 * resumed).toFixed(1).padStart(27)} ${(1000 * reread).toFixed(1).padStart(12)} ${(reread / resumed).toFixed(1).padStart(9)}×`);
    }
  }
  rmSync(dir, { recursive: true, force: true });
  results.persist = rows;
}

if (sections.has('serve') && model) {
  const tok = embedded!.tokenizer;
  const method = parseMethod('aquakv');
  const set = demoPredictors(model, tok).set;
  const ids = tok.encode(readText('@sotu-heldout'));
  const cacheOptions = { ...DEFAULT_CACHE_OPTIONS, mode: 'materialized' as const };
  const prefixes = new PrefixCache(new MemoryStore(1 << 30), model, method, set, cacheOptions);
  const app = await createServer({ lm: embedded!, prefixes, methodName: 'aquakv', modelName: 'aquakv-sotu', maxQueue: 64, defaultMaxTokens: 16 });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  const text = (from: number, n: number) => tok.decode(ids.slice(from, from + n));
  /** Seconds to the first streamed event, and to the end. */
  const timed = async (prompt: string, maxTokens: number) => {
    const t0 = performance.now();
    const r = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt, max_tokens: maxTokens, temperature: 0, stream: true }) });
    const reader = r.body!.getReader();
    let first = 0;
    for (;;) {
      const { done } = await reader.read();
      if (!first) first = (performance.now() - t0) / 1000;
      if (done) break;
    }
    return { first, total: (performance.now() - t0) / 1000 };
  };
  // 1. time to first token: 1000-token prompts, uncached against their first 896 tokens cached
  //    (each pair shares its first 896 tokens; distinct starting points, so the uncached one really misses)
  const ttft: { uncached: number[]; cached: number[] } = { uncached: [], cached: [] };
  for (let rep = 0; rep < 3; rep++) {
    const base = ids.slice(rep * 1100, rep * 1100 + 896);
    const p1 = tok.decode([...base, ...ids.slice(20_000 + rep * 200, 20_000 + rep * 200 + 104)]);
    const p2 = tok.decode([...base, ...ids.slice(30_000 + rep * 200, 30_000 + rep * 200 + 104)]);
    ttft.uncached.push((await timed(p1, 1)).first);
    ttft.cached.push((await timed(p2, 1)).first);
  }
  const med = (x: number[]) => [...x].sort((a, b) => a - b)[Math.floor(x.length / 2)];
  const pct = (x: number[], q: number) => [...x].sort((a, b) => a - b)[Math.min(x.length - 1, Math.floor(q * x.length))];
  say(`\n## Serve (aquakv, materialized, in-process store; loopback)\n` +
    `time to first token, 1000-token prompt: uncached ${(1000 * med(ttft.uncached)).toFixed(0)} ms, first 896 cached ${(1000 * med(ttft.cached)).toFixed(0)} ms: ${(med(ttft.uncached) / med(ttft.cached)).toFixed(1)}× (medians of 3)`);
  // 2. conversations per GiB of store: a 1000-token conversation's entry (896 tokens) against 16-bit keys and values
  const conv = createCache(model, method, set, cacheOptions);
  model.forward(ids.slice(0, 896), conv, { logits: 'none' });
  const entryBytes = prefixes.entry(conv, ids).byteLength;
  const fp16 = fp16CacheBytes(model.config, 896);
  const fpCache = new FullCache(model);
  model.forward(ids.slice(0, 896), fpCache, { logits: 'none' });
  const fpEntry = prefixes.entry(fpCache, ids).byteLength;
  say(`conversations per GiB of store (896-token entries): fp16 ${Math.floor(2 ** 30 / fp16)}, f32 fp cache ${Math.floor(2 ** 30 / fpEntry)}, aquakv ${Math.floor(2 ** 30 / entryBytes)}: ${(fp16 / entryBytes).toFixed(2)}× fp16`);
  // 3. throughput and latency with 1, 4 and 16 concurrent clients (distinct 200-token prompts, 16 new tokens each)
  const load: Record<string, number>[] = [];
  say('clients   requests   seconds   requests/s   tokens/s   p50 ms   p99 ms');
  let offset = 40_000;
  for (const clients of [1, 4, 16]) {
    const perClient = clients === 1 ? 8 : clients === 4 ? 4 : 2;
    const lat: number[] = [];
    const t0 = performance.now();
    await Promise.all(Array.from({ length: clients }, async () => {
      for (let i = 0; i < perClient; i++) {
        const prompt = text(offset, 200);
        offset += 200;
        lat.push((await timed(prompt, 16)).total);
      }
    }));
    const sec = (performance.now() - t0) / 1000;
    const n = clients * perClient;
    const row = { clients, requests: n, seconds: sec, requestsPerSecond: n / sec, tokensPerSecond: (16 * n) / sec, p50Ms: 1000 * pct(lat, 0.5), p99Ms: 1000 * pct(lat, 0.99) };
    load.push(row);
    say(`${String(clients).padStart(7)} ${String(n).padStart(10)} ${sec.toFixed(2).padStart(9)} ${row.requestsPerSecond.toFixed(2).padStart(12)} ${row.tokensPerSecond.toFixed(1).padStart(10)} ${row.p50Ms.toFixed(0).padStart(8)} ${row.p99Ms.toFixed(0).padStart(8)}`);
  }
  await app.close();
  // 4. store and load time per entry: memory against Redis (a redis-server started here when installed)
  const storeRows: Record<string, number | string>[] = [];
  const entry = prefixes.entry(conv, ids);
  const timeStore = async (label: string, store: { set(k: string, v: Uint8Array): Promise<void>; get(k: string): Promise<Uint8Array | null> }) => {
    const sets: number[] = [], gets: number[] = [], loads: number[] = [];
    for (let i = 0; i < 20; i++) {
      let t = performance.now();
      await store.set(`bench:${i}`, entry);
      sets.push(performance.now() - t);
      t = performance.now();
      const got = await store.get(`bench:${i}`);
      gets.push(performance.now() - t);
      t = performance.now();
      deserializeCache(got!.subarray(8 + 4 * 896), model, { predictors: set, mode: 'materialized' });
      loads.push(performance.now() - t);
    }
    storeRows.push({ store: label, entryBytes: entry.byteLength, setMs: med(sets), getMs: med(gets), restoreMs: med(loads) });
    say(`${label.padEnd(8)} entry ${entry.byteLength.toLocaleString('en-US')} bytes: set ${med(sets).toFixed(2)} ms, get ${med(gets).toFixed(2)} ms, restore (rebuild every chunk) ${med(loads).toFixed(2)} ms`);
  };
  await timeStore('memory', new MemoryStore(1 << 30));
  if (spawnSync('redis-server', ['--version']).status === 0) {
    const port = 20000 + Math.floor(Math.random() * 20000);
    const redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    const store = new RedisStore({ url: `redis://127.0.0.1:${port}` });
    for (let i = 0; i < 50 && !store.stats().up; i++) await new Promise((r) => setTimeout(r, 100));
    await timeStore('redis', store);
    await store.close();
    redis.kill('SIGTERM');
  } else {
    say('redis    skipped: redis-server is not installed (apt-get install redis-server)');
  }
  results.serve = [{ ttftUncachedSeconds: med(ttft.uncached), ttftCachedSeconds: med(ttft.cached), speedup: med(ttft.uncached) / med(ttft.cached), entryBytes, fp16Bytes: fp16, fpEntryBytes: fpEntry, conversationsPerGiB: { fp16: 2 ** 30 / fp16, aquakv: 2 ** 30 / entryBytes } }, ...load, ...storeRows];
}

if (sections.has('scale')) {
  const raw = {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 2048, intermediate_size: 8192, num_hidden_layers: 16,
    num_attention_heads: 32, num_key_value_heads: 8, head_dim: 64, vocab_size: 128256, rms_norm_eps: 1e-5, rope_theta: 500000,
    rope_scaling: { rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
    max_position_embeddings: 131072, tie_word_embeddings: true, attention_bias: false, bos_token_id: 128000, eos_token_id: 128001, torch_dtype: 'bfloat16',
  };
  // --scale-dir DIR keeps the generated checkpoint there (and reuses it when present)
  const keep = args['scale-dir'];
  const dir = keep ?? mkdtempSync(join(tmpdir(), 'aquakv-scale-'));
  try {
    if (!existsSync(join(dir, 'config.json'))) {
      // generated and written, then dropped: the load below starts from the files alone
      const cfg = normaliseConfig(raw);
      const rng = new Rng(1);
      const shapes = layerShapes(cfg);
      const layers = Array.from({ length: cfg.nLayers }, () => Object.fromEntries(Object.entries(shapes).map(([f, sh]) =>
        [f, sh ? (f.endsWith('Norm') ? new Float32Array(sh[0]).fill(1) : rng.fillNormal(new Float32Array(sh.reduce((a, b) => a * b, 1)), 0.02)) : null])));
      const embed = rng.fillNormal(new Float32Array(cfg.vocabSize * cfg.hiddenSize), 0.02);
      saveCheckpoint(dir, raw, cfg, { embed, layers: layers as unknown as ModelWeights['layers'], finalNorm: new Float32Array(cfg.hiddenSize).fill(1), lmHead: embed }, 'BF16', 2);
    }
    // measured in a process of its own: memory figures are then the model's alone
    const probe = resolve(dirname(fileURLToPath(import.meta.url)), 'scale-probe.js');
    const out = execFileSync(process.execPath, [probe, dir, String(Number(args['scale-samples']))], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 20 });
    const row = JSON.parse(out.trim().split('\n').pop()!) as {
      fileBytes: number; weightBytes: number; loadSeconds: number; loadMBps: number; residentBytes: number; residentToFile: number;
      prefill512: number; decode: { context: number; tokensPerSecond: number; limit: number }[]; calibrationSamples: number; calibrationSeconds: number | null; peakRss: number;
    };
    results.scale = [row];
    say(`\n## Scale: a random checkpoint of Llama-3.2-1B's shapes (BF16, 2 shards, ${(row.fileBytes / 1e9).toFixed(2)} GB)\n` +
      `load ${row.loadSeconds.toFixed(1)} s (${row.loadMBps.toFixed(0)} MB/s), resident +${(row.residentBytes / 1e9).toFixed(2)} GB (${row.residentToFile.toFixed(2)}× the files; weights held as ${(row.weightBytes / 1e9).toFixed(2)} GB)\n` +
      `prefill 512 tokens: ${row.prefill512.toFixed(1)} tokens/s\n` +
      row.decode.map((d) => `decode at ${d.context}: ${d.tokensPerSecond.toFixed(2)} tokens/s; bandwidth limit for the weights as held ${d.limit.toFixed(2)} (${(d.tokensPerSecond / d.limit).toFixed(2)} of it)`).join('\n') + '\n' +
      (row.calibrationSeconds !== null ? `calibration of ${row.calibrationSamples} × 2048 tokens (fixed allocation): ${row.calibrationSeconds.toFixed(0)} s, ` : 'calibration skipped (--scale-samples 0), ') +
      `peak RSS of the measuring process ${(row.peakRss / 1e9).toFixed(2)} GB`);
  } finally {
    if (!keep) rmSync(dir, { recursive: true, force: true });
  }
}

if (sections.has('web') && model && existsSync('/usr/bin/chromium')) {
  const { default: puppeteer } = await import('puppeteer-core');
  const tok = embedded!.tokenizer;
  const { set, path: predictorFile } = demoPredictors(model, tok);
  const webJs = resolve(dirname(fileURLToPath(import.meta.url)), '../tools/web.js');
  const server = spawn(process.execPath, [webJs, '--port', '0', '--predictors', predictorFile], { stdio: ['ignore', 'pipe', 'ignore'] });
  const url = await new Promise<string>((done) => server.stdout!.on('data', (d: Buffer) => {
    const m = /^aquakv web: (http:\/\/\S+)/m.exec(d.toString());
    if (m) done(m[1]);
  }));
  const browser = await puppeteer.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox', '--disable-gpu'] });
  type PageResult = { fp: { tokensPerSecond: number }; aquakv: { tokensPerSecond: number }; firstTokenSeconds: number; loadSeconds: number };
  const open = async (query: string) => {
    const page = await browser.newPage();
    const t0 = performance.now();
    await page.goto(`${url}?${query}`);
    await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.state ?? ''), { timeout: 600_000 });
    const r = (await page.evaluate(() => (window as unknown as { aquakvResult: unknown }).aquakvResult)) as PageResult;
    const wall = (performance.now() - t0) / 1000;
    await page.close();
    return { ...r, wall };
  };
  const short = await open('seed=1&tokens=8&passkey=0');
  const long = await open('seed=1&tokens=16&passkey=0&chars=4000');
  // the browser's two products: the portable one the page uses, and onnxruntime-web (WASM SIMD, async)
  const gemmPage = await browser.newPage();
  await gemmPage.goto(`${url}gemm-bench.html`);
  await gemmPage.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.state ?? ''), { timeout: 300_000 });
  const products = (await gemmPage.evaluate(() => (window as unknown as { gemmBench?: unknown }).gemmBench ?? document.body.textContent)) as { shape: string; tsMicros: number; wasmMicros: number; ortMicros: number; tsGflops: number; wasmGflops: number; ortGflops: number }[] | string;
  await browser.close();
  server.kill('SIGTERM');
  // Node on the same prompt, both products
  const manifest = { prompt: sotuSplit().heldOut[0].text.slice(0, 4000) };
  const prompt = tok.encode(manifest.prompt);
  const nodeRate = (backend: 'ts' | 'ort', spec: string) => {
    const before = gemmBackend();
    setGemmBackend(backend);
    try {
      const m = parseMethod(spec);
      const cache = createCache(model, m, m.usesPredictors ? set : null, { mode: 'compact' });
      const g = generate(model, prompt, cache, { maxNewTokens: 16, temperature: 0.8, topP: 0.95, seed: 1, stopIds: [] });
      return g.decodeTokens / g.decodeSeconds;
    } finally {
      setGemmBackend(before);
    }
  };
  const node = { fpTs: nodeRate('ts', 'fp'), aquaTs: nodeRate('ts', 'aquakv'), fpOrt: ortAvailable() ? nodeRate('ort', 'fp') : NaN, aquaOrt: ortAvailable() ? nodeRate('ort', 'aquakv') : NaN };
  say(`\n## The page in headless chromium (portable backend: the WebAssembly SIMD kernels; Node alongside)\n` +
    `page load to first token (${tok.encode(sotuSplit().heldOut[0].text.slice(0, 1500)).length}-token prompt): ${short.firstTokenSeconds.toFixed(2)} s (model ${short.loadSeconds.toFixed(2)} s)\n` +
    `decode at ${prompt.length} tokens of context: page fp ${long.fp.tokensPerSecond.toFixed(1)}, aquakv compact ${long.aquakv.tokensPerSecond.toFixed(1)} tokens/s; ` +
    `Node portable product ${node.fpTs.toFixed(1)} / ${node.aquaTs.toFixed(1)} (page ÷ Node ${(long.fp.tokensPerSecond / node.fpTs).toFixed(2)} / ${(long.aquakv.tokensPerSecond / node.aquaTs).toFixed(2)}), ` +
    `Node native product ${node.fpOrt.toFixed(1)} / ${node.aquaOrt.toFixed(1)} (page ÷ Node ${(long.fp.tokensPerSecond / node.fpOrt).toFixed(2)} / ${(long.aquakv.tokensPerSecond / node.aquaOrt).toFixed(2)})`);
  if (typeof products === 'string') say(`browser products: ${products}`);
  else {
    say('product in the browser                    TS loop µs (GFLOP/s)   aquakv WASM kernel µs (GFLOP/s)   onnxruntime-web µs (GFLOP/s)');
    for (const p of products) say(`${p.shape.padEnd(40)} ${p.tsMicros.toFixed(0).padStart(10)} (${p.tsGflops.toFixed(1).padStart(5)}) ${p.wasmMicros.toFixed(0).padStart(20)} (${p.wasmGflops.toFixed(1).padStart(5)}) ${p.ortMicros.toFixed(0).padStart(20)} (${p.ortGflops.toFixed(1).padStart(5)})`);
  }
  results.web = [{ firstTokenSeconds: short.firstTokenSeconds, loadSeconds: short.loadSeconds, context: prompt.length, page: { fp: long.fp.tokensPerSecond, aquakv: long.aquakv.tokensPerSecond }, node, products }];
}

if (sections.has('train') && model) {
  const B = 2, T = model.config.maxPositionEmbeddings, steps = 3;
  const arena = new ParamArena(model.config);
  arena.init(1);
  const net = new TrainableLlama(model.config, arena, B, T);
  const opt = new AdamW(arena, { lr: 1e-3, minLr: 1e-4, warmupSteps: 1, totalSteps: steps, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, clipNorm: 1 });
  const rng = new Rng(5);
  const ids = Int32Array.from({ length: B * T }, () => rng.int(model.config.vocabSize));
  net.forwardBackward(ids, ids); // warm-up
  Object.assign(gemmProfile, { enabled: true, calls: 0, seconds: 0, flops: 0 });
  const t0 = performance.now();
  for (let s = 0; s < steps; s++) {
    net.forwardBackward(ids, ids);
    opt.update();
  }
  const seconds = (performance.now() - t0) / 1000;
  gemmProfile.enabled = false;
  const row = {
    batch: B, seqLen: T, tokensPerSecond: (steps * B * T) / seconds, gemmShare: gemmProfile.seconds / seconds,
    gemmGflops: gemmProfile.flops / gemmProfile.seconds / 1e9, gemmCallsPerStep: gemmProfile.calls / steps,
  };
  results.train = [row];
  say(`\n## Training step (${B}×${T} tokens, forward + backward + AdamW)\n${row.tokensPerSecond.toFixed(0)} tokens/s; matrix products ${(100 * row.gemmShare).toFixed(0)}% of the time at ${row.gemmGflops.toFixed(1)} GFLOP/s (${row.gemmCallsPerStep} calls per step)`);
}

if (args.json) console.log(JSON.stringify(results, null, 2));
