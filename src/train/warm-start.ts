/**
 * Copying warm start. Retrieval needs induction heads: a head that marks each token with the one
 * before it, feeding a head that attends to whatever followed the current token earlier and copies
 * it. Our 6-layer model, trained from nothing on a few million tokens, never grew them
 * (docs/retrieval-attempts.md). Measured on random-token repeats with random periods, a 2-layer
 * model with a 256-token vocabulary leaves the plateau within a few hundred steps, while the same
 * model with our 2048-token vocabulary (tied embeddings) or 6 layers stays on it for a thousand.
 * So a 2-layer model of the full model's width first learns to copy over the 257 lowest ids only
 * (`trainCopyingWarmStart`: the separator and the 256 byte tokens, digits among them); `transplant`
 * moves it into a 2-layer model over the whole vocabulary, where `extendCopyingLength` teaches the
 * same circuit the other tokens and then the training context (each quick once the circuit
 * exists); `transplant` then makes it the full model's first layers.
 */
import { normaliseConfig } from '../io/config.js';
import type { ModelConfig } from '../model/config.js';
import { argmax } from '../model/sampler.js';
import { Rng } from '../tensor/rng.js';
import { AdamW } from './adamw.js';
import { randomRepeat } from './data.js';
import { ParamArena } from './params.js';
import { TrainableLlama } from './trainable.js';

export interface WarmStartOptions {
  steps: number;
  B: number;
  T: number;
  lr: number;
  seed: number;
  /** Stop early once copying accuracy on fresh sequences reaches this. */
  target: number;
  log: (line: string) => void;
}

export interface WarmStartResult {
  arena: ParamArena;
  steps: number;
  /** Top-1 accuracy on the tokens after the first period of fresh random repeats. */
  copyAccuracy: number;
  seconds: number;
}

/** The configuration `raw` with `layers` layers and a vocabulary of the `vocabSize` lowest ids. */
export function shallowConfig(raw: Record<string, unknown>, layers: number, vocabSize: number): ModelConfig {
  return normaliseConfig({ ...raw, num_hidden_layers: layers, vocab_size: vocabSize });
}

function randomRepeatBatch(B: number, T: number, V: number, rng: Rng) {
  const inputs = new Int32Array(B * T);
  const targets = new Int32Array(B * T);
  const periods: number[] = [];
  for (let b = 0; b < B; b++) {
    const { ids, period } = randomRepeat(T + 1, V, rng);
    inputs.set(ids.subarray(0, T), b * T);
    targets.set(ids.subarray(1, T + 1), b * T);
    periods.push(period);
  }
  return { inputs, targets, periods };
}

/**
 * Top-1 accuracy of `model` on the copyable tokens (those after the first period) of one fresh
 * batch of random repeats.
 */
export function copyAccuracy(model: TrainableLlama, rng: Rng): number {
  const { B, T } = model;
  const V = model.config.vocabSize;
  const { inputs, targets, periods } = randomRepeatBatch(B, T, V, rng);
  const logits = model.forward(inputs);
  let hit = 0;
  let count = 0;
  for (let b = 0; b < B; b++) {
    // position t predicts token t + 1, which is a copy once t + 1 ≥ period
    for (let t = periods[b] - 1; t < T; t++) {
      if (argmax(logits.subarray((b * T + t) * V, (b * T + t + 1) * V)) === targets[b * T + t]) hit++;
      count++;
    }
  }
  return hit / count;
}

/** Trains a shallow model on random-token repeats until it copies (or `steps` run out). */
export function trainCopyingWarmStart(cfg: ModelConfig, o: WarmStartOptions): WarmStartResult {
  const arena = new ParamArena(cfg);
  arena.init(o.seed);
  const model = new TrainableLlama(cfg, arena, o.B, o.T);
  // the schedule is laid out over twice the budget so the rate is still high where copying is
  // learned (after a plateau of a couple of hundred steps), not already decayed
  const opt = new AdamW(arena, {
    lr: o.lr, minLr: o.lr / 10, warmupSteps: 20, totalSteps: 2 * o.steps,
    beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, clipNorm: 1,
  });
  const rng = new Rng(o.seed + 17);
  const probeRng = () => new Rng(o.seed + 23); // the same probe batch every time
  const t0 = performance.now();
  let accuracy = 0;
  while (opt.step < o.steps) {
    const { inputs, targets } = randomRepeatBatch(o.B, o.T, cfg.vocabSize, rng);
    const loss = model.forwardBackward(inputs, targets);
    opt.update();
    if (opt.step % 50 === 0 || opt.step === o.steps) {
      accuracy = copyAccuracy(model, probeRng());
      o.log(`warm start step ${opt.step}/${o.steps}  loss ${loss.toFixed(3)}  copying accuracy ${accuracy.toFixed(3)}`);
      if (accuracy >= o.target) break;
    }
  }
  return { arena, steps: opt.step, copyAccuracy: accuracy, seconds: (performance.now() - t0) / 1000 };
}

/**
 * Copies the shallow model's embeddings into the same rows of `deep`'s (its vocabulary is the
 * lowest ids of deep's), and its final norm and layers into deep's final norm and first layers
 * (same width and heads). Deep's layers above those keep their weights but get zero output
 * projections, so on the shallow model's tokens `deep` computes exactly what `shallow` does, and
 * the first training steps' large gradients through those fresh layers do not wash the copying
 * out. Deep's other embedding rows keep what they hold.
 */
export function transplant(shallow: ParamArena, deep: ParamArena): void {
  if (shallow.config.vocabSize > deep.config.vocabSize) throw new Error('transplant: the shallow model has the larger vocabulary');
  const bySlot = new Map(deep.slots.map((s) => [s.name, s]));
  for (const s of shallow.slots) {
    const d = bySlot.get(s.name);
    const rows = s.name === 'embed'; // [V, D]: the shallow model's rows are deep's first rows
    if (!d || (rows ? d.size < s.size : d.size !== s.size)) {
      throw new Error(`transplant: ${s.name} has no counterpart of the same shape in the deep model`);
    }
    deep.data.set(shallow.data.subarray(s.offset, s.offset + s.size), d.offset);
  }
  for (let l = shallow.config.nLayers; l < deep.config.nLayers; l++) {
    deep.weights.layers[l].wo.fill(0);
    deep.weights.layers[l].wDown.fill(0);
  }
}

export interface LengthExtensionOptions {
  /** Window lengths to train at, in order (e.g. 256 then 1024). */
  windows: number[];
  /** Tokens per step at every length (B = tokensPerStep / T). */
  tokensPerStep: number;
  /** Most steps at each length; it moves on once the target is reached there. */
  stepsPerWindow: number;
  lr: number;
  seed: number;
  target: number;
  log: (line: string) => void;
}

/**
 * Continues a warm-started model on longer windows. A circuit learned on 64-token windows does
 * not carry over to long ones by itself (measured: 0.96 top-1 at 64 tokens, 0.34 at 128, 0.02 at
 * 1024), because its attention must now pick the one matching position out of many more; with
 * the circuit already in place, a few hundred steps per length teach that.
 */
export function extendCopyingLength(arena: ParamArena, o: LengthExtensionOptions): { window: number; steps: number; copyAccuracy: number }[] {
  const cfg = arena.config;
  const opt = new AdamW(arena, {
    lr: o.lr, minLr: o.lr, warmupSteps: 10, totalSteps: o.windows.length * o.stepsPerWindow,
    beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, clipNorm: 1,
  });
  const rng = new Rng(o.seed + 29);
  const out: { window: number; steps: number; copyAccuracy: number }[] = [];
  for (const T of o.windows) {
    const B = Math.max(1, Math.round(o.tokensPerStep / T));
    const model = new TrainableLlama(cfg, arena, B, T);
    // at least 4 windows per check; the training model serves when its batch is that large
    const probeModel = B >= 4 ? model : new TrainableLlama(cfg, arena, 4, T);
    const probe = () => copyAccuracy(probeModel, new Rng(o.seed + 31));
    let accuracy = probe();
    o.log(`warm start at ${T} tokens: copying accuracy ${accuracy.toFixed(3)} before`);
    let steps = 0;
    while (steps < o.stepsPerWindow && accuracy < o.target) {
      const { inputs, targets } = randomRepeatBatch(B, T, cfg.vocabSize, rng);
      const loss = model.forwardBackward(inputs, targets);
      opt.update();
      steps++;
      if (steps % 25 === 0 || steps === o.stepsPerWindow) {
        accuracy = probe();
        o.log(`warm start at ${T} tokens, step ${steps}/${o.stepsPerWindow}  loss ${loss.toFixed(3)}  copying accuracy ${accuracy.toFixed(3)}`);
      }
    }
    out.push({ window: T, steps, copyAccuracy: accuracy });
  }
  return out;
}
