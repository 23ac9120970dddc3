import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { loadModelDir } from '../src/io/checkpoint.js';
import { LlamaModel } from '../src/model/llama.js';
import { cachedPredictors, predictorCacheKey } from '../src/predictors/cache-dir.js';
import { DEFAULT_CALIBRATION } from '../src/predictors/calibrate.js';
import { parseMethod } from '../src/kv/method.js';
import { renderReport } from '../src/report/html.js';
import type { DemoResult } from '../src/demo/run-demo.js';
import { Rng } from '../src/tensor/rng.js';
import { loadTokenizer } from '../src/io/tokenizer.js';
import { FIXTURE_TEXT, makeTinyModel } from './fixture.js';
import { BIN } from './run-cli.js';

const sample: DemoResult = {
  model: { dir: '/m', layers: 2, kvDim: 16, hiddenSize: 32, vocabSize: 300, context: 512 },
  settings: { evalText: '@moby-dick', seqLen: 64, chunk: 32 },
  calibrations: [{ method: 'aquakv', plan: 'aquakv[q=higgs:4x256,first=higgs:4x256,k1=higgs:2x256]', reused: false, path: '/p', seconds: 1,
    allocation: { budget: 2.5, bitsPerValue: 2.458, ladder: ['higgs:4x256', 'higgs:2x64', 'higgs:2x256'], windows: 2, tokens: 2046, klBase: 0.0512, klPlan: 0.00412, measurements: 20,
      steps: [{ slot: 'k1', to: 'higgs:2x64', bitsPerValue: 2.2083, klBefore: 0.0512, klAfter: 0.0107 }], firstGains: [{ slot: 'k1', klGain: 0.0405 }, { slot: 'v3', klGain: 0.0003 }] },
    layers: [
    { layer: 0, keys: null, values: null },
    { layer: 1, keys: { trainRelMse: 0.05, validRelMse: 0.0625, equivalentBits: 2 }, values: { trainRelMse: 0.2, validRelMse: 0.25, equivalentBits: 1 } },
  ] }],
  results: [
    { method: 'fp', family: 'fp (f32 cache)', bitsPerValue: 32, perplexity: 20.5, relativeChange: 0, klDivergence: 0, cacheBytes: 1000, components: { sinks: 10 }, predictorBytes: 0, nll: 3, tokens: 63, windows: 1, seconds: 1 },
    { method: 'aquakv', family: 'AQUA-KV', bitsPerValue: 2.345, perplexity: 20.6789, relativeChange: 0.00872, klDivergence: 0.01234, cacheBytes: 123, components: { keyCodes: 50, valueCodes: 50, scales: 13, sinks: 10 }, predictorBytes: 99, nll: 3.01, tokens: 63, windows: 1, seconds: 1 },
    { method: 'kivi2', family: 'KIVI-style uniform', bitsPerValue: 3.0667, perplexity: 25.5, relativeChange: 0.2439, klDivergence: 0.2, cacheBytes: 150, components: { keyCodes: 60, valueCodes: 60, scales: 20, sinks: 10 }, predictorBytes: 0, nll: 3.2, tokens: 63, windows: 1, seconds: 1 },
  ],
  generations: [{ method: 'fp', cache: 'FullCache (f32)', text: 'the <Union> & more', prefillTokensPerSecond: 100, decodeTokensPerSecond: 50, tokens: 10, storedBytes: 640, residentBytes: 640, fp16Bytes: 320, components: { sinks: 640 }, ids: [1, 2] }],
  conversation: { file: '/c.aqkv', tokens: 10, fileBytes: 200, fp16Bytes: 400, fullCacheFileBytes: 900, saveSeconds: 0.001, loadSeconds: 0.002, followUp: ' And <then>', continuation: ' more', resumeFirstTokenSeconds: 0.01, rereadFirstTokenSeconds: 0.05 },
  retrieval: [
    { method: 'fp', results: [{ distance: 40, samples: 5, correct: 5, accuracy: 1 }, { distance: 900, samples: 5, correct: 4, accuracy: 0.8 }] },
    { method: 'kivi2', results: [{ distance: 40, samples: 5, correct: 3, accuracy: 0.6 }, { distance: 900, samples: 5, correct: 0, accuracy: 0 }] },
  ],
  seconds: 12,
};

test('the report is one self-contained HTML page with every section and the numbers given', () => {
  const html = renderReport(sample);
  assert.match(html, /^<!doctype html>/);
  for (const id of ['tradeoff', 'predictors', 'memory', 'conversation', 'allocation', 'retrieval', 'settings']) assert.match(html, new RegExp(`<section id="${id}">`));
  for (const s of ['budget 2.500 bits, plan 2.458 bits', 'k1 → higgs:2x64', '0.05120 → 0.01070', 'KL divergence from fp against stored bits per value']) assert.ok(html.includes(s), `missing ${s}`);
  assert.equal((html.match(/<svg /g) ?? []).length, 3);
  for (const s of ['2.345', '20.679', '+0.87%', '0.01234', '3.067', '+24.39%', '0.0625', '2.00', '@moby-dick', '0.50×', 'distance 900', '80% (4/5)', '60% (3/5)', '2.00× the file', '5.0× faster', 'And &lt;then&gt; more']) assert.ok(html.includes(s), `missing ${s}`);
  assert.ok(html.includes('the &lt;Union&gt; &amp; more'), 'generated text is escaped');
  assert.doesNotMatch(renderReport({ ...sample, retrieval: [] }), /id="retrieval"/, 'no retrieval section when it was skipped');
  assert.doesNotMatch(html, /modelled search/);
  const modelled = { ...sample, calibrations: sample.calibrations.map((c) => ({ ...c, allocation: { ...c.allocation!, search: 'modelled' as const } })) };
  assert.match(renderReport(modelled), /20 measurements; modelled search: the steps' KL is the first-order model's, the plan's is measured/);
  assert.doesNotMatch(html, /<script|https?:\/\/(?!www\.w3\.org)/, 'no scripts, no network');
  // balanced tags of the main elements
  for (const tag of ['section', 'table', 'svg', 'tbody']) assert.equal((html.match(new RegExp(`<${tag}[ >]`, 'g')) ?? []).length, (html.match(new RegExp(`</${tag}>`, 'g')) ?? []).length, tag);
});

test('the predictor cache directory reuses a calibration and invalidates it on any change', () => {
  const dirA = makeTinyModel({ layers: 2, seed: 1 });
  const dirB = makeTinyModel({ layers: 2, seed: 1, attentionBias: true });
  const a = loadModelDir(dirA);
  const tok = loadTokenizer(dirA);
  const b = loadModelDir(dirB);
  const ma = new LlamaModel(a.config, a.weights);
  const mb = new LlamaModel(b.config, b.weights);
  const rng = new Rng(4);
  const text = Array.from({ length: 400 }, () => ['the', 'union', 'of', 'states', 'congress', 'people'][rng.int(6)]).join(' ');
    const s = { ...DEFAULT_CALIBRATION, method: parseMethod('aquakv[q=higgs:2x16,first=higgs:2x256]'), samples: 4, seqLen: 50, dataSource: 'words' };
  const cache = mkdtempSync(join(tmpdir(), 'aquakv-cache-'));
  const first = cachedPredictors(cache, ma, text, tok, s);
  assert.equal(first.reused, false);
  const again = cachedPredictors(cache, ma, text, tok, s);
  assert.equal(again.reused, true);
  assert.equal(again.path, first.path);
  assert.deepEqual(again.set.keys[1]!.weight, first.set.keys[1]!.weight);
  const key = predictorCacheKey(ma, s, text);
  assert.notEqual(predictorCacheKey(mb, s, text), key, 'another model');
  // the same shape retrained (other weights) must not reuse the file either
  const retrained = loadModelDir(makeTinyModel({ layers: 2, seed: 9 }));
  assert.equal(retrained.config.fingerprint, ma.config.fingerprint);
  assert.notEqual(predictorCacheKey(new LlamaModel(retrained.config, retrained.weights), s, text), key, 'retrained model');
  assert.notEqual(predictorCacheKey(ma, { ...s, method: parseMethod('aquakv[q=higgs:2x64]') }, text), key, 'another method');
  assert.notEqual(predictorCacheKey(ma, { ...s, samples: 5 }, text), key, 'another sample count');
  assert.notEqual(predictorCacheKey(ma, s, text.slice(1)), key, 'other text');
  const other = cachedPredictors(cache, ma, text, tok, { ...s, damp: 1e-2 });
  assert.equal(other.reused, false);
  assert.equal(readdirSync(cache).length, 2);
});

test('smoke: the demo runs end to end on the tiny fixture and writes its report', () => {
  const dir = makeTinyModel({ layers: 3, maxPositions: 512, headDim: 32 }); // C = 64: a 2.5-bit budget fits
  const work = mkdtempSync(join(tmpdir(), 'aquakv-demo-'));
  const text = join(work, 'text.txt');
  writeFileSync(text, Array.from({ length: 30 }, (_, i) => `${FIXTURE_TEXT} ${i}`).join('\n\n'));
  const out = join(work, 'report.html');
  const args = [BIN, 'demo', '--model', dir, '--text', text, '--calibration-data', text, '--seq-len', '256', '--max-tokens', '512',
    '--samples', '4', '--retrieval-samples', '1', '--max-new-tokens', '8', '--buffer', '16', '--cache-dir', join(work, 'cache'), '--out', out];
  const r = spawnSync(process.execPath, args, { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  for (const m of ['fp', 'aquakv', 'higgs', 'kivi2', 'kivi4', 'aquakv[q=higgs:2x16,first=higgs:2x256]']) assert.match(r.stdout, new RegExp(`^${m.replace(/[[\]]/g, '\\$&')}\\s+\\d+\\.\\d{3}`, 'm'));
  assert.match(r.stdout, /calibrated in/);
  assert.match(r.stdout, /\[aquakv, CompressedCache, compact mode\] .*\n  decode [\d.]+ tokens\/s; cache of \d+ tokens: [\d,]+ bytes stored/);
  assert.match(r.stdout, /pass-key retrieval .*1 samples per distance/);
  for (const m of ['fp', 'aquakv', 'kivi2']) assert.match(r.stdout, new RegExp(`^${m}\\s+(\\d+%\\s+){2}\\d+%$`, 'm'), `retrieval row for ${m}`);
  assert.ok(existsSync(out));
  assert.match(readFileSync(out, 'utf8'), /<section id="tradeoff">[\s\S]*<section id="conversation">[\s\S]*<section id="retrieval">/);
  // the AQUA-KV conversation was saved, resumed and continued
  assert.match(r.stdout, /the AQUA-KV conversation \(\d+ tokens\) saved to .*conversation\.aqkv: [\d,]+ bytes \(16-bit keys and values: [\d,]+, [\d.]+×/);
  assert.match(r.stdout, /resumed and continued with ".*": ".+"/);
  assert.ok(existsSync(join(work, 'cache', 'conversation.aqkv')));
  const second = spawnSync(process.execPath, args, { encoding: 'utf8' });
  assert.equal(second.status, 0, second.stderr);
  assert.match(second.stdout, /predictors for aquakv: reused/);
  // --json: the whole result on stdout, stages on stderr
  const j = spawnSync(process.execPath, [...args, '--json', '--retrieval-samples', '0'], { encoding: 'utf8' });
  assert.equal(j.status, 0, j.stderr);
  const result = JSON.parse(j.stdout) as DemoResult & { report: string };
  assert.equal(result.report, out);
  assert.equal(result.generations.length, 2);
  assert.ok(result.conversation.fileBytes < result.conversation.fullCacheFileBytes);
  assert.match(j.stderr, /== 3\/3 generation/);
});
