/**
 * The page's worker: loads the embedded model, its tokenizer, the HIGGS grids and AQUA-KV
 * predictors from the page's own server (no CDN: it works offline once loaded), then streams one
 * continuation through the full-precision cache and one through AQUA-KV, a token of each in turn,
 * and asks a pass-key question answered from far back in the prompt. The page never blocks.
 */
import { modelFromBytes } from '../src/io/model-bytes.js';
import { createCache } from '../src/kv/factory.js';
import { parseMethod } from '../src/kv/method.js';
import { fp16CacheBytes, type KVCache } from '../src/model/kv-cache.js';
import type { LlamaModel } from '../src/model/llama.js';
import { stream } from '../src/model/stream.js';
import { decodePredictors } from '../src/predictors/file.js';
import { registerGridFile, type GridFile } from '../src/quant/grid.js';
import type { TextTokenizer } from '../src/io/tokenizer-json.js';
import type { Manifest, RunRequest, WorkerMessage } from './protocol.js';

const post = (m: WorkerMessage) => (globalThis as unknown as { postMessage(m: WorkerMessage): void }).postMessage(m);

async function fetchOk(url: string): Promise<Response> {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`could not load ${url}: HTTP ${r.status}`);
  return r;
}

let loaded: { model: LlamaModel; tokenizer: TextTokenizer; manifest: Manifest; seconds: number } | null = null;

async function load(base: string) {
  if (loaded) return loaded;
  const t0 = performance.now();
  post({ type: 'status', text: 'loading the model…' });
  const manifest = (await (await fetchOk(`${base}/manifest.json`)).json()) as Manifest;
  for (const g of manifest.grids) registerGridFile((await (await fetchOk(`${base}/${g}`)).json()) as GridFile);
  const [config, tokenizer, ...shards] = await Promise.all([
    fetchOk(`${base}/${manifest.model.config}`).then((r) => r.text()),
    fetchOk(`${base}/${manifest.model.tokenizer}`).then((r) => r.text()),
    ...manifest.model.safetensors.map((s) => fetchOk(`${base}/${s}`).then((r) => r.arrayBuffer()).then((b) => new Uint8Array(b))),
  ]);
  const m = modelFromBytes({ config, safetensors: shards, tokenizer });
  if (!m.tokenizer) throw new Error('the model has no tokenizer');
  loaded = { model: m.model, tokenizer: m.tokenizer, manifest, seconds: (performance.now() - t0) / 1000 };
  return loaded;
}

async function run(req: RunRequest) {
  const { model, tokenizer, manifest, seconds } = await load(req.base);
  const entry = manifest.predictors.find((p) => p.url === req.predictors);
  if (!entry) throw new Error(`the server offers no predictor file ${req.predictors}`);
  const bytes = new Uint8Array(await (await fetchOk(`${req.base}/${entry.url}`)).arrayBuffer());
  const predictors = decodePredictors(bytes, model, entry.url).set;
  const method = parseMethod(entry.method);
  const newCache = (side: 'fp' | 'aquakv'): KVCache => (side === 'fp' ? createCache(model, parseMethod('fp')) : createCache(model, method, predictors, { mode: 'compact' }));
  const caches = { fp: newCache('fp'), aquakv: newCache('aquakv') };
  const prompt = tokenizer.encode(req.prompt);
  const sampling = { maxNewTokens: req.maxNewTokens, temperature: req.temperature, topP: req.topP, seed: req.seed, stopIds: [] };
  post({ type: 'status', text: `reading ${prompt.length} prompt tokens…` });
  const t0 = performance.now();
  let firstTokenSeconds = 0;
  // the two continuations advance a token each in turn: the page shows them side by side
  const sides = (['fp', 'aquakv'] as const).map((side) => {
    const s = stream({ model, tokenizer }, prompt, { ...sampling, cache: caches[side] });
    // own: this side's seconds inside its own steps (the sides take turns, so wall time would count both)
    return { side, s, it: s[Symbol.asyncIterator](), tokens: 0, done: false, own: 0 };
  });
  while (sides.some((x) => !x.done)) {
    for (const x of sides) {
      if (x.done) continue;
      const t = performance.now();
      const r = await x.it.next();
      // decode time: every step after the first token (which includes reading the prompt)
      if (x.tokens > 0) x.own += (performance.now() - t) / 1000;
      if (r.done) {
        x.done = true;
        const res = x.s.result!;
        const mem = caches[x.side].memory();
        post({ type: 'side-done', side: x.side, ids: res.ids, text: res.text, cacheBytes: mem.total, stored: mem.stored, tokensPerSecond: x.own > 0 ? (res.ids.length - 1) / x.own : 0, bitsPerValue: mem.bitsPerValue });
        continue;
      }
      if (!firstTokenSeconds) firstTokenSeconds = seconds + (performance.now() - t0) / 1000;
      x.tokens++;
      const cache = caches[x.side];
      post({ type: 'token', side: x.side, id: r.value.id, text: r.value.text, tokensPerSecond: x.own > 0 ? (x.tokens - 1) / x.own : 0, cacheBytes: cache.memory().stored, fp16Bytes: fp16CacheBytes(model.config, cache.length), tokens: cache.length });
    }
  }
  if (req.passKey) {
    post({ type: 'status', text: 'asking a pass-key question…' });
    const key = String(10000 + ((req.seed * 7919) % 90000));
    const filler = manifest.prompt.slice(0, 1200);
    const question = `The pass key is ${key}. Remember it. ${filler}\nWhat is the pass key? The pass key is`;
    const ids = tokenizer.encode(question);
    const answer = async (side: 'fp' | 'aquakv') => {
      const s = stream({ model, tokenizer }, ids, { cache: newCache(side), maxNewTokens: 8, temperature: 0, stopIds: [] });
      let t = '';
      for await (const p of s) t += p.text;
      return /\d+/.exec(t)?.[0]?.slice(0, 5) ?? t.trim();
    };
    post({ type: 'passkey', key, answers: { fp: await answer('fp'), aquakv: await answer('aquakv') }, distance: ids.length - tokenizer.encode(`The pass key is ${key}.`).length });
  }
  post({ type: 'done', loadSeconds: seconds, firstTokenSeconds });
}

(globalThis as unknown as { onmessage: (e: { data: RunRequest }) => void }).onmessage = (e) => {
  run(e.data).catch((err: unknown) => post({ type: 'error', message: err instanceof Error ? err.message : String(err) }));
};
