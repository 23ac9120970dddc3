/**
 * One process of the scale bench: loads the checkpoint in argv[2] and measures what a user of a
 * real model meets (load time, resident memory, prefill, decode at 512 and 2048, calibration of
 * argv[3] windows of 2048 tokens). Its own process, so resident and peak memory are the model's
 * alone (the parent made the checkpoint). Prints one JSON line.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { loadModelDir } from '../src/io/checkpoint.js';
import { LlamaModel } from '../src/model/llama.js';
import { FullCache } from '../src/kv/full.js';
import { Rng } from '../src/tensor/rng.js';
import { calibrate } from '../src/predictors/calibrate.js';
import { parseMethod } from '../src/kv/method.js';
import { heldWeightBytes } from '../src/model/weights.js';
import { copyBandwidth } from './bandwidth.js';

const [dir, samplesArg] = process.argv.slice(2);
const samples = Number(samplesArg ?? 0);
const procStatus = (field: string) => {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
};
const fileBytes = readdirSync(dir).filter((f) => f.endsWith('.safetensors')).reduce((n, f) => n + statSync(join(dir, f)).size, 0);

const rss0 = procStatus('VmRSS');
let t0 = performance.now();
const loaded = loadModelDir(dir);
const model = new LlamaModel(loaded.config, loaded.weights);
const loadSeconds = (performance.now() - t0) / 1000;
const residentBytes = procStatus('VmRSS') - rss0;
const weightBytes = heldWeightBytes(loaded.weights);
const cfg = model.config;
const rng = new Rng(2);
const ids = Array.from({ length: 8192 }, () => rng.int(cfg.vocabSize));

t0 = performance.now();
model.forward(ids.slice(0, 512), new FullCache(model), { logits: 'last' });
const prefill512 = 512 / ((performance.now() - t0) / 1000);

const bandwidth = copyBandwidth();

const decode = [512, 2048].map((context) => {
  const cache = new FullCache(model);
  for (let s = 0; s < context; s += 512) model.forward(ids.slice(s, s + 512), cache, { logits: 'none' });
  model.forward([ids[context]], cache, { logits: 'last' }); // warm-up
  const steps = 8;
  const t = performance.now();
  for (let i = 0; i < steps; i++) model.forward([ids[context + 1 + i]], cache, { logits: 'last' });
  const tokensPerSecond = steps / ((performance.now() - t) / 1000);
  const kv = 2 * cfg.nLayers * context * cfg.kvDim * 4;
  return { context, tokensPerSecond, limit: bandwidth / (weightBytes + kv) };
});

let calibrationSeconds: number | null = null;
if (samples > 0) {
  const calibIds = Array.from({ length: samples * 2048 + 4096 }, () => rng.int(cfg.vocabSize));
  t0 = performance.now();
  calibrate(model, 'random tokens', { encode: () => calibIds }, { method: parseMethod('aquakv[q=higgs:2x16,first=higgs:2x256]'), samples, seqLen: 2048 });
  calibrationSeconds = (performance.now() - t0) / 1000;
}
console.log(JSON.stringify({
  fileBytes, weightBytes, loadSeconds, loadMBps: fileBytes / 1e6 / loadSeconds, residentBytes, residentToFile: residentBytes / fileBytes,
  prefill512, bandwidth, decode, calibrationSamples: samples, calibrationSeconds, peakRss: procStatus('VmHWM'),
}));
