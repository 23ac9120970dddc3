/**
 * Budgeted AQUA-KV: which quantizer each slot (layer × keys/values) gets, chosen by its measured
 * effect on the model's output. Predictor error does not find the slots that matter (on the
 * embedded model, layer 1's keys carry ~93% of the damage while layers 2–3 have weak key
 * predictors too, ../shared/research/quality-study.md), so every decision here is taken on the
 * KL divergence of the next-token distributions from full precision, on held-out calibration
 * windows fed through the cache exactly as eval does.
 *
 *  1. Every slot starts at the cheapest rung of BUDGET_LADDER (higgs:2x8, 1.625 bits at C = 128);
 *     predictors are fitted for that base
 *     (on exact inputs, so they do not penalise upgrades upstream of them).
 *  2. Each slot's one-rung upgrade is measured (KL with it, against KL without it).
 *  3. Greedy under the budget: take the upgrade with the largest KL reduction per bit; after each,
 *     re-measure the slots linked to it through the predictors (the same part of layers l ± 1, the
 *     other part of layer l), and re-measure any stale candidate before taking it (lazy greedy).
 *     Stop when no upgrade fits the budget or none lowers KL.
 *  4. No predictor: at the chosen rungs, each slot's predictor (layers ≥ 1, earlier layers first)
 *     is taken away; where KL falls, the slot keeps none (it costs no bits either way: predictors
 *     are not stored in the cache). A predictor that lowers the residual's error on held-out
 *     tokens can still raise KL (a weak predictor on an insensitive path, or one fitted on too few
 *     tokens), so this is measured too, not inferred from predictor error.
 * Bits are counted from stored bytes (codes and scales of a block), so the plan's average is what
 * the cache will report. Calibration then fits the predictors again for the chosen plan.
 *
 * That search ('measured') costs a KL measurement, a forward pass over the windows through the
 * cache, per step: ~60 on the embedded model (6 layers), but it grows as L × upgrades, and the
 * upgrades a budget buys grow with L. At Llama-3.2-1B's shapes (16 layers, 2 windows of 2 048
 * tokens) it would be ~500 measurements of ~2 minutes each on this machine: a day. So larger
 * models get the 'modelled' search: steps 1–2 as above (2L + 1 measurements), then the greedy of
 * step 3 on a model of the KL instead of on measurements, then one measurement of the plan.
 * The model is the first-order one for small independent noise: KL ≈ KL₀ − Σ_s w_s·(ε(r₀) − ε(r_s)),
 * where ε(r) is the relative error of rung r on Gaussian data (HIGGS normalises each group and
 * rotates it toward Gaussian, so a slot's error at rung r is its residual's energy times ε(r))
 * and w_s comes from slot s's measured first upgrade. It ignores what the measured search sees
 * through the predictors (an upgraded slot feeding a better prediction downstream), and step 4,
 * which that model would never take (removing a predictor whose held-out error is below 1 only
 * adds error; those at or above 1 are dropped by the fit anyway). `autoSearch` picks one by the
 * forward FLOPs the measured search is expected to cost.
 */
import { AquaError } from '../errors.js';
import { DEFAULT_CACHE_OPTIONS } from '../kv/compressed.js';
import type { PredictorSet } from '../kv/linear-predictor.js';
import { BUDGET_LADDER, formatMethod, methodKey, parseMethod, type CacheMethod } from '../kv/method.js';
import type { ModelConfig } from '../model/config.js';
import type { LlamaModel } from '../model/llama.js';
import { Rng } from '../tensor/rng.js';
import { blockBytes } from '../quant/quantizer.js';
import { buildQuantizer, parseQuantizerSpec, type QuantizerSpec } from '../quant/spec.js';
import { fitPredictors, type Captured, type FitOptions } from './fit.js';
import { fpLogProbsOf, KlMeasure } from './kl-measure.js';

/** How a plan was chosen, recorded in the predictor file. */
export interface Allocation {
  budget: number;
  bitsPerValue: number; // the plan's average, ≤ budget
  ladder: string[];
  windows: number; // validation windows KL was measured on
  tokens: number; // predicted positions per measurement
  klBase: number; // every slot at the base rung
  klPlan: number; // the chosen plan (with the base's predictors, less those of step 4; refitting can only help)
  measurements: number;
  /** Of the measurements, those replayed from their slot's layer (kl-measure.ts); absent in files from before replays. */
  replays?: number;
  /** Upgrades taken, in order: the slot, the quantizer it moved to, the KL before → after. */
  steps: { slot: string; to: string; bitsPerValue: number; klBefore: number; klAfter: number }[];
  /** Every slot's first measured gain (KL removed by its first upgrade from the base): the sensitivity map. */
  firstGains: { slot: string; klGain: number }[];
  /** How the plan was searched (absent in files from before the modelled search: measured). In a modelled search, `steps` carry the model's KL, `klPlan` the measured one. */
  search?: AllocationSearch;
  /** Slots left without a predictor because KL fell without it (step 4); absent in files from before it existed. */
  withoutPredictor?: { slot: string; klBefore: number; klAfter: number }[];
}

/** Exact stored bits per value of a quantizer on blocks of `rows` tokens of C channels. */
export function slotBits(spec: QuantizerSpec, C: number, rows: number): number {
  const block = buildQuantizer(spec, C).quantize(new Float32Array(rows * C), rows);
  return (blockBytes(block) * 8) / (rows * C);
}

export type AllocationSearch = 'measured' | 'modelled';

/**
 * Above this many estimated forward FLOPs, `autoSearch` takes the modelled search: ~10 minutes
 * of measurements at the ~80 GFLOP/s this machine's two cores reach in the windows' products.
 */
export const MEASURED_SEARCH_MAX_FLOPS = 5e13;

/** Forward FLOPs per token, logits included (attention scores left out: small beside the weights at calibration lengths). */
export function forwardFlopsPerToken(c: ModelConfig): number {
  const D = c.hiddenSize;
  const perLayer = D * (c.qDim + 2 * c.kvDim) + c.qDim * D + 3 * D * c.intermediateSize;
  return 2 * (c.nLayers * perLayer + D * c.vocabSize);
}

/** Measurements the measured search is expected to take: the base and first sweep, a few per upgrade, step 4. */
function expectedMeasurements(L: number, budget: number, cheapestBits: number): number {
  const upgrades = Math.floor(((budget - cheapestBits) * 2 * L) / 0.5 + 1e-9);
  return 1 + 2 * L + upgrades * 8 + 2 * (L - 1);
}

/**
 * The search a budgeted calibration runs when none is asked for: measured while its expected cost
 * (measurements × positions × forward FLOPs per token) stays under MEASURED_SEARCH_MAX_FLOPS,
 * modelled beyond. The embedded model at its default windows: ~4·10¹² (measured); Llama-3.2-1B's shapes with two windows
 * of 2 048 tokens: ~5·10¹⁵ (modelled).
 */
export function autoSearch(c: ModelConfig, budget: number, positions: number): { search: AllocationSearch; flops: number } {
  const cheapest = slotBits(parseQuantizerSpec(BUDGET_LADDER[0]), c.kvDim, DEFAULT_CACHE_OPTIONS.buffer);
  const flops = expectedMeasurements(c.nLayers, budget, cheapest) * positions * forwardFlopsPerToken(c);
  return { search: flops <= MEASURED_SEARCH_MAX_FLOPS ? 'measured' : 'modelled', flops };
}

/**
 * Relative squared error (Σ(x − x̂)² / Σx²) of a quantizer on seeded Gaussian data, [rows, C]:
 * the ε(r) of the modelled search. Deterministic.
 */
export function gaussianDistortion(spec: QuantizerSpec, C: number, rows = 256): number {
  const rng = new Rng(0x51ab);
  const x = Float32Array.from({ length: rows * C }, () => rng.normal());
  const q = buildQuantizer(spec, C);
  const back = new Float32Array(x.length);
  q.dequantize(q.quantize(x, rows), back);
  let err = 0;
  let energy = 0;
  for (let i = 0; i < x.length; i++) {
    err += (x[i] - back[i]) ** 2;
    energy += x[i] ** 2;
  }
  return err / energy;
}

/**
 * Step 3 on the model instead of measurements: slot s's upgrade from rung r to r + 1 removes
 * firstGain[s]·(ε(r) − ε(r+1)) / (ε(0) − ε(1)) of KL. Greedy by KL removed per bit under the
 * budget (bits: per rung, per value; the budget over all slots is budget · slots), stopping when
 * nothing fits or nothing removes KL. Returns every slot's rung and the upgrades in order, with
 * the model's KL.
 */
export function modelledPlan(
  firstGain: ArrayLike<number>, bits: readonly number[], distortion: readonly number[], budget: number, klBase: number,
): { rungs: Int32Array; spent: number; taken: { slot: number; rung: number; bits: number; klBefore: number; klAfter: number }[] } {
  const n = firstGain.length;
  const rungs = new Int32Array(n);
  let spent = n * bits[0];
  let kl = klBase;
  const taken: { slot: number; rung: number; bits: number; klBefore: number; klAfter: number }[] = [];
  const unit = distortion[0] - distortion[1];
  const gainOf = (s: number) => (firstGain[s] * (distortion[rungs[s]] - distortion[rungs[s] + 1])) / unit;
  for (;;) {
    let best = -1;
    let bestRate = 0;
    for (let s = 0; s < n; s++) {
      const r = rungs[s];
      if (r + 1 >= bits.length || spent - bits[r] + bits[r + 1] > budget * n + 1e-9) continue;
      const rate = gainOf(s) / (bits[r + 1] - bits[r]);
      if (rate > bestRate) [best, bestRate] = [s, rate];
    }
    if (best < 0) break; // nothing fits, or nothing left lowers KL
    const gain = gainOf(best);
    spent += bits[rungs[best] + 1] - bits[rungs[best]];
    rungs[best]++;
    taken.push({ slot: best, rung: rungs[best], bits: spent / n, klBefore: kl, klAfter: kl - gain });
    kl -= gain;
  }
  return { rungs, spent, taken };
}

const slotName = (layer: number, part: 'k' | 'v') => `${part}${layer}`;

/** The concrete method of a rung per slot ([L][2]: keys, values), written as overrides of the cheapest rung. */
function planMethod(ladder: string[], rungs: number[][]): CacheMethod {
  const base = ladder[0];
  const overrides = rungs.flatMap((r, l) => (['k', 'v'] as const).flatMap((part, i) => (r[i] > 0 ? [`${slotName(l, part)}=${ladder[r[i]]}`] : [])));
  return parseMethod(`aquakv[q=${base},first=${base}${overrides.map((o) => ',' + o).join('')}]`);
}

/** Refuses, before any work, a budget no plan meets or windows too short to measure through the cache. */
export function checkBudget(budget: number, C: number, seqLen: number): void {
  const cheapest = slotBits(parseQuantizerSpec(BUDGET_LADDER[0]), C, DEFAULT_CACHE_OPTIONS.buffer);
  if (budget < cheapest - 1e-9) {
    throw new AquaError(`a budget of ${budget} bits per value is below the cheapest plan (${BUDGET_LADDER[0]} everywhere: ${cheapest} bits at C = ${C})`);
  }
  const B = DEFAULT_CACHE_OPTIONS.buffer;
  if (seqLen < 2 * B) {
    throw new AquaError(`budgeted calibration measures KL through the cache, whose blocks are ${B} tokens: windows need at least ${2 * B} tokens, got ${seqLen}`);
  }
}

/**
 * Step 4: takes away, one at a time (keys then values, layer 1 first), each predictor of `set`
 * whose absence lowers `measure`d KL below `kl`, keeping the ones taken away for the next
 * measurements. Returns the set without them, the slots, and the KL reached.
 */
export function predictorsThatHurt(
  set: PredictorSet, kl: number, measure: (set: PredictorSet) => number,
): { set: PredictorSet; dropped: NonNullable<Allocation['withoutPredictor']>; kl: number } {
  const dropped: NonNullable<Allocation['withoutPredictor']> = [];
  let current = set;
  for (let l = 1; l < set.keys.length; l++) {
    for (const part of ['k', 'v'] as const) {
      const list = part === 'k' ? current.keys : current.values;
      if (!list[l]) continue;
      const trial = { ...current, [part === 'k' ? 'keys' : 'values']: list.map((p, i) => (i === l ? null : p)) };
      const klWithout = measure(trial);
      if (klWithout < kl) {
        dropped.push({ slot: slotName(l, part), klBefore: kl, klAfter: klWithout });
        current = trial;
        kl = klWithout;
      }
    }
  }
  return { set: current, dropped, kl };
}

/**
 * Held-out windows each search measures KL on by default. The measured search compares upgrades
 * whose gains shrink to a few percent of the KL, so it averages two windows. The modelled search
 * (large models, where each forward pass is minutes) measures only each slot's first upgrade, gains
 * of the order of the KL itself: on the embedded model one window chose the same plan as two
 * (KL on Moby Dick 0.00366 with both), at half the passes' cost.
 */
export const AUTO_ALLOCATION_WINDOWS: Readonly<Record<AllocationSearch, number>> = Object.freeze({ measured: 2, modelled: 1 });

export interface AllocateOptions extends Omit<FitOptions, 'method'> {
  method: CacheMethod; // budgeted
  /** Held-out windows KL is measured on; 'auto': `AUTO_ALLOCATION_WINDOWS` for the search that runs. */
  allocationWindows: number | 'auto';
  /** 'auto': `autoSearch`'s choice for this model and these windows. */
  allocationSearch: AllocationSearch | 'auto';
}

export function allocateBits(
  model: LlamaModel, train: Captured, valid: Captured, validWindows: number[][], o: AllocateOptions,
): { plan: CacheMethod; allocation: Allocation } {
  const budget = o.method.budget!;
  const { nLayers: L, kvDim: C } = model.config;
  const B = DEFAULT_CACHE_OPTIONS.buffer;
  const ladder = BUDGET_LADDER;
  const bits = ladder.map((s) => slotBits(parseQuantizerSpec(s), C, B));
  checkBudget(budget, C, validWindows[0]?.length ?? 0);
  // Every slot starts at the cheapest rung, whatever the budget: measured on the embedded model, a
  // 2.0-bit budget from there (KL 0.0012 on calibration windows) beat a 2.25-bit one started from
  // 4x256 everywhere (0.0053), since the bits of insensitive slots go to the sensitive ones.
  const positionsOf = (n: number) => validWindows.slice(0, Math.max(1, n)).reduce((s, w) => s + w.length - 1, 0);
  const search = o.allocationSearch === 'auto'
    ? autoSearch(model.config, budget, positionsOf(o.allocationWindows === 'auto' ? AUTO_ALLOCATION_WINDOWS.measured : o.allocationWindows)).search
    : o.allocationSearch;
  const windows = validWindows.slice(0, Math.max(1, o.allocationWindows === 'auto' ? AUTO_ALLOCATION_WINDOWS[search] : o.allocationWindows));
  const positions = positionsOf(windows.length);
  const rungs = Array.from({ length: L }, () => [0, 0]);
  const base = planMethod(ladder, rungs);
  // Predictors fitted on reconstructed inputs learn the base's noise level: given cleaner inputs
  // (an upgraded slot upstream) they mispredict, and the measurement would blame the upgrade.
  // Fitted on exact inputs they improve with every upgrade, so the measurements rank slots by
  // what their bits do; the chosen plan then gets predictors fitted on its own reconstructions.
  const { set } = fitPredictors(model, train, valid, { ...o, method: base, fitOn: 'original', onProgress: (_, d, t) => o.onProgress?.('fit base', d, t) });
  const kl = new KlMeasure(model, windows, fpLogProbsOf(model, windows));
  const slots = Array.from({ length: 2 * L }, (_, i) => ({ layer: i >> 1, part: (i & 1 ? 'v' : 'k') as 'k' | 'v' }));
  let measurements = 0;
  // estimate for the progress bar: the first sweep, then a few per upgrade
  const expected = search === 'measured' ? expectedMeasurements(L, budget, bits[0]) : 2 * L + 2;
  const counted = (value: number) => {
    measurements++;
    o.onProgress?.('allocate', measurements, Math.max(expected, measurements + 1));
    return value;
  };
  const measureKl = (plan: CacheMethod, predictors: PredictorSet) => counted(kl.of(plan, predictors));
  const measure = (r: number[][]) => measureKl(planMethod(ladder, r), set);
  const withUpgrade = (s: number) => rungs.map((r, l) => (l === slots[s].layer ? r.map((x, i) => (i === (slots[s].part === 'k' ? 0 : 1) ? x + 1 : x)) : [...r]));
  const rungOf = (s: number) => rungs[slots[s].layer][slots[s].part === 'k' ? 0 : 1];

  // the base's pass is recorded, so that the first sweep replays each slot from its own layer
  let klCur = counted(kl.recordBase(planMethod(ladder, rungs), set));
  const klBase = klCur;
  // gain[s]: KL removed by slot s's next upgrade, measured at `at[s]` (the number of upgrades taken then)
  const gain = new Float64Array(2 * L);
  const at = new Int32Array(2 * L).fill(-1);
  const klWith = new Float64Array(2 * L);
  // (a measurement given in `klWithIt` is used instead of a whole pass: the first sweep's replays)
  const remeasure = (s: number, taken: number, klWithIt = measure(withUpgrade(s))) => {
    klWith[s] = klWithIt;
    gain[s] = klCur - klWith[s];
    at[s] = taken;
  };
  for (let s = 0; s < 2 * L; s++) remeasure(s, 0, counted(kl.from(slots[s].layer, planMethod(ladder, withUpgrade(s)), set)));
  kl.release();
  const firstGains = slots.map((x, s) => ({ slot: slotName(x.layer, x.part), klGain: gain[s] }));
  const record = (plan: CacheMethod, spent: number, steps: Allocation['steps'], klPlan: number, without: Allocation['withoutPredictor']): { plan: CacheMethod; allocation: Allocation } => ({
    plan,
    allocation: {
      budget, bitsPerValue: spent / (2 * L), ladder: [...ladder], windows: windows.length, tokens: positions,
      klBase, klPlan, measurements, replays: kl.replays, steps, firstGains, search, withoutPredictor: without,
    },
  });

  if (search === 'modelled') {
    const distortion = ladder.map((spec) => gaussianDistortion(parseQuantizerSpec(spec), C));
    const m = modelledPlan(gain, bits, distortion, budget, klBase);
    m.rungs.forEach((r, s) => (rungs[slots[s].layer][slots[s].part === 'k' ? 0 : 1] = r));
    const steps = m.taken.map((t) => ({ slot: slotName(slots[t.slot].layer, slots[t.slot].part), to: ladder[t.rung], bitsPerValue: t.bits, klBefore: t.klBefore, klAfter: t.klAfter }));
    const plan = planMethod(ladder, rungs);
    return record(plan, m.spent, steps, m.taken.length === 0 ? klBase : measure(rungs), []);
  }

  let spent = 2 * L * bits[0]; // total bits per value over all slots
  const steps: Allocation['steps'] = [];
  for (let taken = 0; ; ) {
    const fits = (s: number) => rungOf(s) + 1 < ladder.length && spent - bits[rungOf(s)] + bits[rungOf(s) + 1] <= budget * 2 * L + 1e-9;
    const candidates = slots.map((_, s) => s).filter(fits);
    if (candidates.length === 0) break;
    const rate = (s: number) => gain[s] / (bits[rungOf(s) + 1] - bits[rungOf(s)]);
    candidates.sort((a, b) => rate(b) - rate(a));
    const best = candidates[0];
    if (at[best] !== taken) {
      remeasure(best, taken); // stale: measure it in the current plan, then choose again
      continue;
    }
    if (!(gain[best] > 0)) break; // no upgrade lowers KL any more
    spent += bits[rungOf(best) + 1] - bits[rungOf(best)];
    rungs[slots[best].layer][slots[best].part === 'k' ? 0 : 1]++;
    const klBefore = klCur;
    klCur = klWith[best];
    taken++;
    steps.push({ slot: slotName(slots[best].layer, slots[best].part), to: ladder[rungOf(best)], bitsPerValue: spent / (2 * L), klBefore, klAfter: klCur });
    // the slots whose inputs this one feeds, or that feed it, change most: measure them again now
    // (keys of l ± 1 after keys of l, values of l ± 1 after values of l, and the other part of l:
    // K̃_l enters V_l's predictor)
    const { layer: l, part } = slots[best];
    for (let s = 0; s < 2 * L; s++) {
      const x = slots[s];
      const linked = (x.part === part && Math.abs(x.layer - l) === 1) || (x.layer === l && x.part !== part);
      if (linked && fits(s)) remeasure(s, taken);
    }
  }
  const plan = planMethod(ladder, rungs);
  const without = predictorsThatHurt(set, klCur, (trial) => measureKl(plan, trial));
  return record(plan, spent, steps, without.kl, without.dropped);
}
