/**
 * One process of the threads bench: decode and prefill speed of the embedded model under the
 * thread policy set by AQUAKV_PARALLEL_MIN (products of at least that many multiply-adds on every
 * core, smaller ones on one). Prints one JSON line.
 */
import { FullCache } from '../src/kv/full.js';
import { loadModel } from '../src/io/load-model.js';
import { readText } from '../src/eval/texts.js';

const { model, tokenizer } = loadModel();
const ids = tokenizer.encode(readText('@sotu-train').slice(0, 40_000));
const decodeAt = (context: number, steps: number) => {
  const cache = new FullCache(model);
  model.forward(ids.slice(0, context), cache, { logits: 'none' });
  model.forward([ids[context]], cache, { logits: 'last' }); // warm-up
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) model.forward([ids[context + 1 + i]], cache, { logits: 'last' });
  return steps / ((performance.now() - t0) / 1000);
};
const prefill = () => {
  model.forward(ids.slice(0, 1024), new FullCache(model), { logits: 'last' });
  const t0 = performance.now();
  model.forward(ids.slice(0, 1024), new FullCache(model), { logits: 'last' });
  return 1024 / ((performance.now() - t0) / 1000);
};
console.log(JSON.stringify({ decode512: decodeAt(512, 200), decode1000: decodeAt(1000, 20), prefill1024: prefill() }));
