/**
 * Compression of a cache's buffer on a background thread, while decode goes on.
 *
 * A token's compressed form depends on that token alone: its residual is quantized per token
 * (HIGGS, or none) and the predictors' products give each row the sums it gets with any other rows
 * (tensor/gemm.ts `gemmRowwise`). So a buffered token can be compressed as soon as every layer of
 * it is in, long before its chunk is full, and the result is the same bit for bit. Decode leaves
 * the machine's second core idle (its products run on one thread), so a cache sends its buffered
 * tokens there in jobs (`jobRows`) and, in the step that fills a chunk, takes back the jobs' codes
 * and compresses only the tokens no job holds: the step's own and the few since the last job.
 * What a chunk stores, and when attention sees it, are exactly as without the thread. A
 * materialized cache also needs the chunk's rebuild in that step: the jobs send it back with the
 * codes, and the cache keeps it, rotated, in its views' spare rows a chunk further on (allocated
 * anyway, as fp's are) until the chunk fills, when one copy puts it in place (chunk-store.ts
 * `stage`). Holding the rows elsewhere would add up to a chunk of f32 rows to what the cache
 * holds; where the spare rows run out (the last chunks before the views grow), the step rebuilds
 * the chunk from its codes as before (a product per part and layer, ~2 ms a chunk here).
 *
 * The module has two sides: `BackgroundCompression`, a cache's side, and `handle`, what the thread
 * runs (platform.ts `BackgroundThread` imports this module there). Methods whose quantizers are
 * not per token (KIVI's) compress in the step, as do hosts without threads (browsers).
 */
import { platform, type BackgroundThread } from '../platform/index.js';
import { loadGrid, registerGridFile, type Grid } from '../quant/grid.js';
import { HiggsQuantizer } from '../quant/higgs.js';
import { encodesWithKernels, higgsKernelsOn, setHiggsKernels } from '../quant/higgs-wasm.js';
import type { QuantizedBlock } from '../quant/quantizer.js';
import { gemmBackend, setGemmBackend, type GemmBackendName } from '../tensor/gemm.js';
import { Workspace } from '../tensor/workspace.js';
import { compressLayers, layerCodecs, type CompressedLayers, type LayerCodec } from './layer-codec.js';
import { LinearPredictor, predictorsDigest, type PredictorSet } from './linear-predictor.js';
import { methodKey, parseMethod, type CacheMethod } from './method.js';
import type { RowBuffer } from './row-buffer.js';

/**
 * The fewest tokens per job: the step that fills a chunk compresses the fewer than JOB_ROWS tokens
 * no job holds (on the thread, which is done with the jobs by then). Jobs of 32 there made it wait
 * for up to 31 tokens (6.1–9.1 ms against 4.6–4.9 with 8); with 16, decode ran no faster.
 */
export const JOB_ROWS = 8;

/**
 * Tokens per job for rows [from, …) of a chunk ending at chunkEnd: half of what is left of the
 * chunk, at least JOB_ROWS (a chunk of 128 goes as jobs of 64, 32, 16 and 8, then the filling
 * step's 8). The thread's time goes mostly per job (a job of 1 token takes it ~0.5 ms here, 8 take
 * 0.76, 32 take 1.8), and while it works the decode step's kernels run on one core (platform
 * `KernelPool`, `othersBusy`), so fewer jobs make decode faster. Materialized decode from 512
 * tokens, 640 steps beside fp's, in processes taken in turn: 0.966 of fp on average with these
 * jobs against 0.951 with the jobs before (32, 32, 32, 8, 8, then one token a step for the last 3),
 * faster in 7 of 10 pairs. Those one-token jobs alone had made decode slower (0.944 against 0.962,
 * 8 pairs), though the step that fills a chunk waited less; one job of 120 ran at 0.942 against
 * 0.952 (8 pairs).
 */
export function jobRows(from: number, chunkEnd: number): number {
  return Math.max(JOB_ROWS, (chunkEnd - from) >> 1);
}

/** How long a step waits for the thread before it compresses the rows itself (and stops using it). */
const REPLY_TIMEOUT_MS = 30_000;

interface CodecsMessage {
  kind: 'codecs';
  key: string;
  plan: string; // methodKey: every quantizer resolved
  /** The grids the codecs' quantizers hold: the thread quantizes with these, whatever its own files hold. */
  grids: { d: number; n: number; points: Float32Array }[];
  nLayers: number;
  C: number;
  predictors: { keys: PredictorData[]; values: PredictorData[] } | null;
}
type PredictorData = { weight: Float32Array; bias: Float32Array; inDim: number; outDim: number } | null;

interface CompressMessage {
  kind: 'compress';
  key: string;
  rows: number;
  /** [2][L][rows, C]: every layer's keys (as stored: before RoPE unless the plan rotates first), then values. */
  kv: Float32Array;
  /** Whether to send the rows' rebuild back too (a materialized cache's last rows of a chunk). */
  rebuild: boolean;
  // the caller's arithmetic, so the thread's results are its own bit for bit
  backend: GemmBackendName;
  higgsKernels: boolean;
}

/** What a job gives back: each layer's blocks of its rows, and where asked their rebuild ([rows, C] each). */
export type CompressedRows = Omit<CompressedLayers, 'rebuilt'> & { rebuilt: CompressedLayers['rebuilt'] | null };

/** Rows [from, from + rows) taken back from the thread: per layer, the blocks of its jobs in order. */
export interface TakenRows {
  rows: number;
  keys: QuantizedBlock[][]; // [L] of blocks
  values: QuantizedBlock[][];
  /** A job was not done: the thread is behind (the caller then compresses the rest itself). */
  behind: boolean;
  /** Every row taken was rebuilt ahead and staged (the caller commits them rather than rebuilding them). */
  staged: boolean;
}

const registered = new WeakMap<BackgroundThread, Set<string>>();

const gridDigests = new WeakMap<Grid, string>();
/** A short hash of a grid's points (the thread's codecs are keyed by the grids they hold). */
function gridDigest(g: Grid): string {
  let d = gridDigests.get(g);
  if (d === undefined) {
    d = platform.sha256().update(`${g.d}x${g.n}:`).update(new Uint8Array(g.points.buffer, g.points.byteOffset, g.points.byteLength)).digest().slice(0, 16);
    gridDigests.set(g, d);
  }
  return d;
}

/** The module the thread runs: this one (`handle` below); tests put in one that fails. */
let handlerModule = import.meta.url;
/** For tests: caches made from now on use a thread running `url`'s handler. Returns the previous module. */
export function useHandlerModule(url: string): string {
  const was = handlerModule;
  handlerModule = url;
  return was;
}
/** Threads that failed once: said once, not by every cache that finds out. */
const failed = new WeakSet<BackgroundThread>();

/**
 * Where a cache keeps a job's rebuilt rows until their chunk fills (a materialized store's spare
 * rows, chunk-store.ts `stage`): rebuilt[l] [rows, C] of layer l for rows [from, from + rows);
 * false where it keeps none.
 */
export type Stager = (from: number, rows: number, rebuilt: CompressedLayers['rebuilt']) => boolean;

// staged: the reply's rebuilt rows are kept by the cache (the reply keeps only the codes)
type Job = { seq: number; from: number; rows: number; reply?: CompressedRows; staged?: boolean };
/**
 * A cache dropped with jobs outstanding: their replies are forgotten, or another cache's wait,
 * which takes in every reply that has come, would keep them (a server makes a cache per request).
 */
const forgetJobs = new FinalizationRegistry<{ thread: BackgroundThread; jobs: { list: Job[] } }>(({ thread, jobs }) => {
  for (const job of jobs.list) if (!job.reply) thread.drop(job.seq);
});

/** A cache's side: which of its buffered rows the thread holds, and taking them back. */
export class BackgroundCompression {
  private readonly pending: { list: Job[] } = { list: [] }; // sent, not yet taken, in order
  private sentTo = 0; // position: rows before it are sent (or were compressed in the step)
  /** Tokens whose codes came from the thread (for benchmarks and tests). */
  rowsTaken = 0;
  /** Of those, tokens whose rebuild came from the thread too, staged ahead of their chunk. */
  rowsStaged = 0;

  private constructor(
    private thread: BackgroundThread | null, private readonly key: string, private readonly L: number, private readonly C: number,
    private readonly chunkRows: number, // B: chunks are positions [kB, (k+1)B)
    private readonly stage: Stager | null, // where jobs' rebuilt rows are kept; null: jobs send none back
  ) {
    if (thread) forgetJobs.register(this, { thread, jobs: this.pending });
  }

  /**
   * The background side of a cache of `plan`'s codecs, or null where compression stays in the
   * step: a quantizer that is not per token, or no thread on this host.
   */
  static for(plan: CacheMethod, codecs: LayerCodec[], predictors: PredictorSet | null, C: number, chunkRows: number, stage: Stager | null = null): BackgroundCompression | null {
    if (!codecs.every((c) => c.keyQuantizer.rowwise && c.valueQuantizer.rowwise)) return null;
    const thread = platform.backgroundThread(handlerModule);
    if (!thread) return null;
    const plain = methodKey(plan, C);
    const usesPredictors = plan.usesPredictors && predictors !== null;
    // the thread gets the grids these codecs hold, and codecs of other grids (a grid registered
    // anew as data) are other codecs
    const grids = new Set<Grid>();
    for (const c of codecs) for (const q of [c.keyQuantizer, c.valueQuantizer]) if (q instanceof HiggsQuantizer) grids.add(q.grid);
    const key = [plain, ...[...grids].map(gridDigest), ...(usesPredictors ? [predictorsDigest(predictors)] : [])].join('#');
    let known = registered.get(thread);
    if (!known) registered.set(thread, (known = new Set()));
    if (!known.has(key)) {
      const data = (list: (LinearPredictor | null)[]): PredictorData[] => list.map((p) => (p ? { weight: p.weight, bias: p.bias, inDim: p.inDim, outDim: p.outDim } : null));
      const held = [...grids].map((g) => ({ d: g.d, n: g.n, points: g.points }));
      const message: CodecsMessage = { kind: 'codecs', key, plan: plain, grids: held, nLayers: codecs.length, C, predictors: usesPredictors ? { keys: data(predictors.keys), values: data(predictors.values) } : null };
      thread.drop(thread.send(message));
      known.add(key);
    }
    return new BackgroundCompression(thread, key, codecs.length, C, chunkRows, stage);
  }

  /** Whether jobs go to the thread (false once it failed, for this cache or another). */
  get running(): boolean {
    if (this.thread && failed.has(this.thread)) this.stop();
    return this.thread !== null;
  }

  /**
   * At the end of a step: takes in the replies that have come (staging their rebuilt rows), then
   * sends the buffered rows not yet sent, [max(sent, bufStart), end), once there are `jobRows` of
   * them; every row of the buffer is in, each layer's row `end − bufStart` last.
   */
  send(bufK: RowBuffer[], bufV: RowBuffer[], bufStart: number, end: number): void {
    this.poll();
    const from = Math.max(this.sentTo, bufStart);
    const chunkEnd = (Math.floor(from / this.chunkRows) + 1) * this.chunkRows;
    if (!this.thread || end - from < jobRows(from, chunkEnd)) return;
    const seq = this.post(bufK, bufV, bufStart, from, end, this.stage !== null);
    this.pending.list.push({ seq, from, rows: end - from });
    this.sentTo = end;
  }

  /**
   * Sends buffered rows [from, to) now, whatever their number (the rows of a filling chunk no job
   * holds), with their rebuild where asked; `result` takes the answer. Null once the thread failed.
   */
  sendNow(bufK: RowBuffer[], bufV: RowBuffer[], bufStart: number, from: number, to: number, rebuild: boolean): number | null {
    if (!this.thread) return null;
    this.sentTo = Math.max(this.sentTo, to);
    return this.post(bufK, bufV, bufStart, from, to, rebuild);
  }

  /** One message of rows [from, to) of every layer's buffer, in one transferred array. */
  private post(bufK: RowBuffer[], bufV: RowBuffer[], bufStart: number, from: number, to: number, rebuild: boolean): number {
    const C = this.C;
    const size = (to - from) * C;
    const kv = new Float32Array(2 * this.L * size);
    [...bufK, ...bufV].forEach((b, i) => kv.set(b.data.subarray((from - bufStart) * C, (to - bufStart) * C), i * size));
    const message: CompressMessage = { kind: 'compress', key: this.key, rows: to - from, kv, rebuild, backend: gemmBackend(), higgsKernels: higgsKernelsOn() };
    return this.thread!.send(message, [kv.buffer as ArrayBuffer]);
  }

  /** Takes in the replies of jobs that are done, in order (decode never waits for one here). */
  private poll(): void {
    for (const job of this.pending.list) {
      if (job.reply) continue;
      if (!this.thread || !this.thread.ready(job.seq) || !this.replyOf(job)) return;
    }
  }

  /**
   * A job's reply, taken in (waited for) where it was not yet: its rebuilt rows staged where the
   * cache keeps them, its codes kept; null where the thread failed.
   */
  private replyOf(job: Job): CompressedRows | null {
    if (job.reply) return job.reply;
    const reply = this.result(job.seq);
    if (!reply) return null;
    job.staged = reply.rebuilt !== null && this.stage !== null && this.stage(job.from, job.rows, reply.rebuilt);
    job.reply = { ...reply, rebuilt: null };
    return job.reply;
  }

  /** The answer to job `seq`, waiting for it; null where the thread failed (the caller compresses its rows). */
  result(seq: number): CompressedRows | null {
    try {
      return this.thread!.reply(seq, REPLY_TIMEOUT_MS) as CompressedRows;
    } catch (e) {
      if (!failed.has(this.thread!)) platform.warn(`compressing on a background thread failed (${(e as Error).message}); compressing in the decode step from now on`);
      failed.add(this.thread!);
      this.stop();
      return null;
    }
  }

  /**
   * The codes of the chunk [start, start + n)'s first rows that jobs hold: the jobs that start at
   * `start`, follow on within the chunk and are done. A job not done yet is not waited for (the
   * thread is behind: starting, or a slow moment); its rows and every later row are the caller's to
   * compress, as are all rows where the thread failed.
   */
  take(start: number, n: number): TakenRows {
    const taken: TakenRows = { rows: 0, keys: Array.from({ length: this.L }, () => []), values: Array.from({ length: this.L }, () => []), behind: false, staged: true };
    const end = start + n;
    while (this.pending.list.length > 0 && this.pending.list[0].from < end) {
      const job = this.pending.list.shift()!;
      const usable = this.thread !== null && !taken.behind && job.from === start + taken.rows && job.from + job.rows <= end;
      if (usable && !job.reply && !this.thread!.ready(job.seq)) taken.behind = true;
      if (!usable || taken.behind) {
        if (!job.reply) this.thread?.drop(job.seq);
        continue;
      }
      const reply = this.replyOf(job);
      if (!reply) break;
      taken.staged &&= job.staged === true;
      for (let l = 0; l < this.L; l++) {
        taken.keys[l].push(reply.keys[l]);
        taken.values[l].push(reply.values[l]);
      }
      taken.rows += job.rows;
    }
    this.rowsTaken += taken.rows;
    if (taken.rows === 0) taken.staged = false;
    else if (taken.staged) this.rowsStaged += taken.rows;
    return taken;
  }

  /** Waits until every job sent is done (tests and benchmarks: decode itself never waits for a job). */
  settle(): void {
    for (const job of this.pending.list) if (!this.thread || !this.replyOf(job)) return;
  }

  /** The cache was cut or restored: what was sent no longer stands; rows from `position` on are unsent. */
  reset(position: number): void {
    for (const job of this.pending.list) if (!job.reply) this.thread?.drop(job.seq);
    this.pending.list = [];
    this.sentTo = position;
  }

  private stop(): void {
    this.reset(0);
    this.thread = null;
  }
}

// ---- the thread's side ----

const codecsByKey = new Map<string, LayerCodec[]>();

/** Whether this thread's grid of `g`'s shape has `g`'s points (from grids/ or registered before). */
function sameGrid(g: { d: number; n: number; points: Float32Array }): boolean {
  try {
    const have = loadGrid(g.d, g.n).points;
    return have.length === g.points.length && have.every((p, i) => p === g.points[i]);
  } catch {
    return false; // neither shipped nor registered here
  }
}
const workspace = new Workspace();

/** Runs one message on the background thread (see BackgroundThread). */
export function handle(message: CodecsMessage | CompressMessage): CompressedRows | null {
  if (message.kind === 'codecs') {
    const { key, plan, grids, nLayers, C, predictors } = message;
    // registered only where this thread's differ: registering drops a grid's built search table
    for (const g of grids) {
      if (!sameGrid(g)) registerGridFile({ d: g.d, n: g.n, points: Array.from(g.points), mse: NaN, seed: 0, samples: 0, method: 'as the cache\'s process holds it' });
    }
    const make = (list: PredictorData[]) => list.map((p) => (p ? new LinearPredictor(p.weight, p.bias, p.inDim, p.outDim) : null));
    const set: PredictorSet | null = predictors ? { method: plan, methodKey: plan, budget: null, keys: make(predictors.keys), values: make(predictors.values) } : null;
    const codecs = layerCodecs(parseMethod(plan), nLayers, C, set);
    codecsByKey.set(key, codecs);
    // the grids' search tables are built now, while the cache's owner reads its prompt, not in the
    // first job (a 4-D grid's takes ~0.1–0.2 s here, which the first chunk's step would wait for)
    for (const c of codecs) for (const q of [c.keyQuantizer, c.valueQuantizer]) if (q instanceof HiggsQuantizer) encodesWithKernels(q.grid, q.groupSize);
    return null;
  }
  const codecs = codecsByKey.get(message.key);
  if (!codecs) throw new Error(`no codecs for ${message.key}`);
  if (gemmBackend() !== message.backend) setGemmBackend(message.backend);
  setHiggsKernels(message.higgsKernels);
  const { rows: n, kv } = message;
  const L = codecs.length;
  const size = n * codecs[0].C;
  const out = compressLayers(codecs, (l) => kv.subarray(l * size, (l + 1) * size), (l) => kv.subarray((L + l) * size, (L + l + 1) * size), n, workspace);
  return { keys: out.keys, values: out.values, rebuilt: message.rebuild ? out.rebuilt : null };
}
