/**
 * The training loop: AdamW steps over `makeBatch` batches, a progress line per step, a held-out
 * loss at intervals, and a checkpoint (parameters, optimiser moments, history) that a stopped
 * run resumes from.
 */
import { existsSync, renameSync } from 'node:fs';
import type { ModelConfig } from '../model/config.js';
import { SafetensorsFile, writeSafetensors } from '../io/safetensors.js';
import { AdamW, type AdamWOptions } from './adamw.js';
import { makeBatch, type BatchSource } from './data.js';
import type { ParamArena } from './params.js';
import { TrainableLlama } from './trainable.js';
import { crossEntropyForwardBackward } from './backprop.js';

export interface TrainOptions extends BatchSource {
  steps: number;
  optimizer: Omit<AdamWOptions, 'totalSteps'>;
  checkpointPath: string;
  checkpointEvery: number;
  evalEvery: number;
  /** Extra measurements taken with the held-out loss (e.g. retrieval accuracy), logged and kept in the history. */
  probe?: (model: TrainableLlama) => Record<string, number>;
  log: (line: string) => void;
}

export interface StepRecord {
  step: number;
  loss: number;
  lr: number;
  gradNorm: number;
  seconds: number; // wall time of this step
}

export interface TrainHistory {
  steps: StepRecord[];
  heldOut: { step: number; loss: number }[];
  probes?: ({ step: number } & Record<string, number>)[];
  /** Seconds spent in training steps, summed over every run that contributed. */
  trainSeconds: number;
}

function saveCheckpoint(path: string, arena: ParamArena, opt: AdamW, cfg: ModelConfig, history: TrainHistory): void {
  const tmp = path + '.tmp';
  writeSafetensors(tmp, [
    { name: 'params', shape: [arena.size], data: arena.data, dtype: 'F32' },
    { name: 'adam.m', shape: [arena.size], data: opt.m, dtype: 'F32' },
    { name: 'adam.v', shape: [arena.size], data: opt.v, dtype: 'F32' },
  ], { step: String(opt.step), fingerprint: cfg.fingerprint, history: JSON.stringify(history) });
  renameSync(tmp, path); // a run killed mid-write keeps its previous checkpoint
}

function loadCheckpoint(path: string, arena: ParamArena, opt: AdamW, cfg: ModelConfig): TrainHistory {
  const f = SafetensorsFile.open(path);
  try {
    if (f.metadata.fingerprint !== cfg.fingerprint) {
      throw new Error(`${path} was written for another model configuration; delete it or change --run-dir`);
    }
    arena.data.set(f.readF32('params'));
    opt.m.set(f.readF32('adam.m'));
    opt.v.set(f.readF32('adam.v'));
    opt.step = Number(f.metadata.step);
    return JSON.parse(f.metadata.history) as TrainHistory;
  } finally {
    f.close();
  }
}

/** Mean next-token loss over fixed held-out windows (inputs/targets [k·B·T]). */
export function heldOutLoss(model: TrainableLlama, windows: { inputs: Int32Array; targets: Int32Array }[]): number {
  let sum = 0;
  for (const w of windows) {
    const logits = model.forward(w.inputs);
    sum += crossEntropyForwardBackward(logits, w.targets, model.B * model.T, model.config.vocabSize);
  }
  return sum / windows.length;
}

export function train(
  cfg: ModelConfig, arena: ParamArena, stream: Int32Array, encode: (s: string) => number[],
  heldOutWindows: { inputs: Int32Array; targets: Int32Array }[], o: TrainOptions,
): TrainHistory {
  const model = new TrainableLlama(cfg, arena, o.B, o.T);
  const opt = new AdamW(arena, { ...o.optimizer, totalSteps: o.steps });
  let history: TrainHistory = { steps: [], heldOut: [], trainSeconds: 0 };
  if (existsSync(o.checkpointPath)) {
    history = loadCheckpoint(o.checkpointPath, arena, opt, cfg);
    o.log(`resumed from ${o.checkpointPath} at step ${opt.step}`);
  }
  const tokensPerStep = o.B * o.T;
  let ema = history.steps.length ? history.steps[history.steps.length - 1].loss : NaN;
  while (opt.step < o.steps) {
    const t0 = performance.now();
    const { inputs, targets } = makeBatch(stream, encode, opt.step, o);
    const loss = model.forwardBackward(inputs, targets);
    if (!Number.isFinite(loss)) throw new Error(`train: loss became ${loss} at step ${opt.step}`);
    const { gradNorm, lr } = opt.update();
    const seconds = (performance.now() - t0) / 1000;
    history.trainSeconds += seconds;
    history.steps.push({ step: opt.step, loss, lr, gradNorm, seconds });
    ema = Number.isNaN(ema) ? loss : 0.9 * ema + 0.1 * loss;
    const recent = history.steps.slice(-20);
    const secPerStep = recent.reduce((a, r) => a + r.seconds, 0) / recent.length;
    const eta = (o.steps - opt.step) * secPerStep;
    o.log(
      `step ${opt.step}/${o.steps}  loss ${loss.toFixed(3)} (avg ${ema.toFixed(3)})  lr ${lr.toExponential(2)}  ` +
        `|g| ${gradNorm.toFixed(2)}  ${(tokensPerStep / secPerStep).toFixed(0)} tok/s  ETA ${formatSeconds(eta)}`,
    );
    if (opt.step % o.evalEvery === 0 || opt.step === o.steps) {
      const h = heldOutLoss(model, heldOutWindows);
      history.heldOut.push({ step: opt.step, loss: h });
      o.log(`step ${opt.step}: held-out loss ${h.toFixed(3)} (perplexity ${Math.exp(h).toFixed(2)})`);
      if (o.probe) {
        const p = o.probe(model);
        (history.probes ??= []).push({ step: opt.step, ...p });
        o.log(`step ${opt.step}: ${Object.entries(p).map(([k, v]) => `${k} ${v.toFixed(3)}`).join('  ')}`);
      }
    }
    if (opt.step % o.checkpointEvery === 0 || opt.step === o.steps) saveCheckpoint(o.checkpointPath, arena, opt, cfg, history);
  }
  return history;
}

export function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : `${m}m${String(Math.floor(s % 60)).padStart(2, '0')}s`;
}
