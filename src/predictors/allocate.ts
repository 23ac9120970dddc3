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
 */
import { AquaError } from '../errors.js';
import { DEFAULT_CACHE_OPTIONS } from '../kv/compressed.js';
import { FullCache } from '../kv/full.js';
import { createCache } from '../kv/factory.js';
import type { PredictorSet } from '../kv/linear-predictor.js';
import { BUDGET_LADDER, formatMethod, methodKey, parseMethod, type CacheMethod } from '../kv/method.js';
import type { LlamaModel } from '../model/llama.js';
import { klDivergence, runWindow } from '../model/log-probs.js';
import { blockBytes } from '../quant/quantizer.js';
import { buildQuantizer, parseQuantizerSpec, type QuantizerSpec } from '../quant/spec.js';
import { fitPredictors, type Captured, type FitOptions } from './fit.js';

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
  /** Upgrades taken, in order: the slot, the quantizer it moved to, the KL before → after. */
  steps: { slot: string; to: string; bitsPerValue: number; klBefore: number; klAfter: number }[];
  /** Every slot's first measured gain (KL removed by its first upgrade from the base): the sensitivity map. */
  firstGains: { slot: string; klGain: number }[];
  /** Slots left without a predictor because KL fell without it (step 4); absent in files from before it existed. */
  withoutPredictor?: { slot: string; klBefore: number; klAfter: number }[];
}

/** Exact stored bits per value of a quantizer on blocks of `rows` tokens of C channels. */
export function slotBits(spec: QuantizerSpec, C: number, rows: number): number {
  const block = buildQuantizer(spec, C).quantize(new Float32Array(rows * C), rows);
  return (blockBytes(block) * 8) / (rows * C);
}

const slotName = (layer: number, part: 'k' | 'v') => `${part}${layer}`;

/** The concrete method of a rung per slot ([L][2]: keys, values), written as overrides of the cheapest rung. */
function planMethod(ladder: string[], rungs: number[][]): CacheMethod {
  const base = ladder[0];
  const overrides = rungs.flatMap((r, l) => (['k', 'v'] as const).flatMap((part, i) => (r[i] > 0 ? [`${slotName(l, part)}=${ladder[r[i]]}`] : [])));
  return parseMethod(`aquakv[q=${base},first=${base}${overrides.map((o) => ',' + o).join('')}]`);
}

/** Mean KL(p_fp ‖ p_plan) over the windows, the windows fed one cache block at a time. */
function klOf(model: LlamaModel, plan: CacheMethod, predictors: PredictorSet, windows: number[][], fpLogProbs: Float32Array[]): number {
  const { kvDim: C, vocabSize: V } = model.config;
  // the base's predictors stand in for the plan's (named for it, so the codecs accept them)
  const set = { ...predictors, method: formatMethod(plan), methodKey: methodKey(plan, C) };
  let kl = 0;
  let n = 0;
  windows.forEach((ids, w) => {
    const cache = createCache(model, plan, set);
    runWindow(model, ids, DEFAULT_CACHE_OPTIONS.buffer, cache, (t, lp) => {
      kl += klDivergence(fpLogProbs[w].subarray(t * V, (t + 1) * V), lp, V);
      n++;
    });
  });
  return kl / n;
}

/** Log-probabilities of the full-precision model at every position but the last: [L − 1, V] per window. */
function fpLogProbsOf(model: LlamaModel, windows: number[][]): Float32Array[] {
  const V = model.config.vocabSize;
  return windows.map((ids) => {
    const out = new Float32Array((ids.length - 1) * V);
    runWindow(model, ids, ids.length, new FullCache(model), (t, lp) => out.set(lp, t * V));
    return out;
  });
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

export interface AllocateOptions extends Omit<FitOptions, 'method'> {
  method: CacheMethod; // budgeted
  allocationWindows: number;
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
  const windows = validWindows.slice(0, Math.max(1, o.allocationWindows));
  const rungs = Array.from({ length: L }, () => [0, 0]);
  const base = planMethod(ladder, rungs);
  // Predictors fitted on reconstructed inputs learn the base's noise level: given cleaner inputs
  // (an upgraded slot upstream) they mispredict, and the measurement would blame the upgrade.
  // Fitted on exact inputs they improve with every upgrade, so the measurements rank slots by
  // what their bits do; the chosen plan then gets predictors fitted on its own reconstructions.
  const { set } = fitPredictors(model, train, valid, { ...o, method: base, fitOn: 'original', onProgress: (_, d, t) => o.onProgress?.('fit base', d, t) });
  const fp = fpLogProbsOf(model, windows);
  const slots = Array.from({ length: 2 * L }, (_, i) => ({ layer: i >> 1, part: (i & 1 ? 'v' : 'k') as 'k' | 'v' }));
  let measurements = 0;
  // estimate for the progress bar: the first sweep, then a few per upgrade
  const upgrades = Math.floor(((budget - bits[0]) * 2 * L) / 0.5 + 1e-9);
  const expected = 1 + 2 * L + upgrades * 8 + 2 * (L - 1);
  const measureKl = (plan: CacheMethod, predictors: PredictorSet) => {
    const kl = klOf(model, plan, predictors, windows, fp);
    measurements++;
    o.onProgress?.('allocate', measurements, Math.max(expected, measurements + 1));
    return kl;
  };
  const measure = (r: number[][]) => measureKl(planMethod(ladder, r), set);
  const withUpgrade = (s: number) => rungs.map((r, l) => (l === slots[s].layer ? r.map((x, i) => (i === (slots[s].part === 'k' ? 0 : 1) ? x + 1 : x)) : [...r]));
  const rungOf = (s: number) => rungs[slots[s].layer][slots[s].part === 'k' ? 0 : 1];

  let klCur = measure(rungs);
  const klBase = klCur;
  // gain[s]: KL removed by slot s's next upgrade, measured at `at[s]` (the number of upgrades taken then)
  const gain = new Float64Array(2 * L);
  const at = new Int32Array(2 * L).fill(-1);
  const klWith = new Float64Array(2 * L);
  const remeasure = (s: number, taken: number) => {
    klWith[s] = measure(withUpgrade(s));
    gain[s] = klCur - klWith[s];
    at[s] = taken;
  };
  for (let s = 0; s < 2 * L; s++) remeasure(s, 0);
  const firstGains = slots.map((x, s) => ({ slot: slotName(x.layer, x.part), klGain: gain[s] }));

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
  return {
    plan,
    allocation: {
      budget, bitsPerValue: spent / (2 * L), ladder: [...ladder], windows: windows.length, tokens: windows.reduce((n, w) => n + w.length - 1, 0),
      klBase, klPlan: without.kl, measurements, steps, firstGains, withoutPredictor: without.dropped,
    },
  };
}
