import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { aquakv, BIN } from './run-cli.js';
import { FIXTURE_TEXT, makeTinyModel } from './fixture.js';
import { loadTokenizer } from '../src/io/tokenizer.js';

const model = makeTinyModel({ layers: 3, maxPositions: 512, headDim: 32 }); // C = 64: a 2.5-bit budget fits
const work = mkdtempSync(join(tmpdir(), 'aquakv-cli-'));
const text = join(work, 'text.txt');
writeFileSync(text, Array.from({ length: 30 }, (_, i) => `${FIXTURE_TEXT} ${i}`).join('\n\n'));
const preds = join(work, 'p.safetensors');

test('grids --json lists every shipped grid with its MSE', () => {
  const r = aquakv('grids', '--json', '--samples', '4000');
  assert.equal(r.code, 0, r.err);
  const grids = (JSON.parse(r.out) as { grids: { grid: string; bitsPerValue: number; mse: number }[] }).grids;
  assert.deepEqual(grids.map((g) => g.grid), ['1x4', '1x8', '1x16', '2x8', '2x16', '2x64', '2x256', '4x256']);
  for (const g of grids) assert.ok(g.mse > 0 && g.mse < (g.grid === '2x8' ? 0.21 : 0.13), `${g.grid} ${g.mse}`);
});

test('calibrate writes predictors that eval uses; eval --json has one row per method', () => {
  const c = aquakv('calibrate', '--model', model, '--data', text, '--samples', '4', '--seq-len', '256', '--out', preds, '--json');
  assert.equal(c.code, 0, c.err);
  const info = JSON.parse(c.out) as { layers: unknown[]; data: { trainTokens: number } };
  assert.equal(info.layers.length, 3);
  assert.equal(info.data.trainTokens, 3 * 256);
  const e = aquakv('eval', '--model', model, '--text', text, '--predictors', preds, '--seq-len', '64', '--max-tokens', '128', '--buffer', '16', '--json');
  assert.equal(e.code, 0, e.err);
  const rows = (JSON.parse(e.out) as { results: Record<string, number | string>[] }).results;
  assert.deepEqual(rows.map((r) => r.method), ['fp', 'aquakv', 'higgs', 'kivi2', 'kivi4']);
  for (const r of rows) {
    assert.deepEqual(Object.keys(r).sort(), ['bitsPerValue', 'cacheBytes', 'klDivergence', 'method', 'perplexity', 'relativeChange']);
    assert.ok(Number.isFinite(r.perplexity as number));
  }
  assert.equal(rows[0].relativeChange, 0);
  assert.equal(rows[0].klDivergence, 0);
  assert.ok((rows[1].klDivergence as number) > 0);
});

test('generate --save-cache, then --resume-cache continues the AQUA-KV conversation; wrong resumes are refused in one line', () => {
  const saved = join(work, 'conversation.aqkv');
  const common = ['--model', model, '--predictors', preds, '--temperature', '0', '--json'];
  const a = aquakv('generate', ...common, '--buffer', '16', '--method', 'aquakv', '--prompt', FIXTURE_TEXT, '--max-new-tokens', '8', '--save-cache', saved);
  assert.equal(a.code, 0, a.err);
  const first = JSON.parse(a.out) as { cachedTokens: number; savedCache: { path: string; bytes: number }; storedBytes: number };
  assert.equal(first.savedCache.path, saved);
  assert.ok(first.savedCache.bytes <= 1.02 * first.storedBytes + 4096, JSON.stringify(first));
  const b = aquakv('generate', ...common, '--resume-cache', saved, '--prompt', ' We the people', '--max-new-tokens', '5');
  assert.equal(b.code, 0, b.err);
  const second = JSON.parse(b.out) as { resumedTokens: number; cachedTokens: number; ids: number[] };
  assert.equal(second.resumedTokens, first.cachedTokens);
  assert.ok(second.cachedTokens > first.cachedTokens + 5);
  const refused = (r: { code: number | null; err: string }, pattern: RegExp) => {
    assert.equal(r.code, 1, r.err);
    assert.match(r.err.trim(), pattern);
    assert.equal(r.err.trim().split('\n').length, 1, r.err);
  };
  refused(aquakv('generate', '--model', model, '--resume-cache', saved, '--prompt', 'x'), /aquakv methods need predictors/);
  refused(aquakv('generate', ...common, '--resume-cache', saved, '--prompt', 'x', '--method', 'kivi2'), /holds a cache of method aquakv.*, not kivi/);
  refused(aquakv('generate', ...common, '--resume-cache', saved, '--prompt', 'x', '--sinks', '2'), /--sinks and --buffer are those of the saved cache/);
  refused(aquakv('generate', ...common, '--resume-cache', text, '--prompt', 'x'), /is not a saved aquakv cache/);
  refused(aquakv('generate', ...common, '--resume-cache', saved, '--prompt', 'x', '--max-new-tokens', '500'), /the saved conversation \(\d+ tokens\) \+ prompt/);
  refused(aquakv('generate', ...common, '--method', 'aquakv', '--prompt', 'x', '--save-cache', join(work, 'missing', 'c.aqkv')), /missing/);
});

test('eval, calibrate and retrieval explain bad input in one line', () => {
  const other = makeTinyModel({ layers: 2 });
  const cases: [string[], RegExp][] = [
    [['eval', '--model', other, '--text', text, '--predictors', preds, '--methods', 'aquakv'], /calibrated for another model/],
    [['eval', '--model', model, '--text', '/nope.txt'], /text file \/nope.txt does not exist/],
    [['eval', '--model', model, '--text', text, '--methods', 'fp,zip'], /unknown method 'zip'/],
    [['eval', '--model', model, '--text', text, '--methods', 'higgs[q=higgs:3x3]'], /no shipped grid with d=3, n=3/],
    [['eval', '--model', model, '--text', text, '--methods', 'aquakv'], /need predictors/],
    [['eval', '--model', model, '--text', text, '--seq-len', '100000', '--methods', 'fp'], /exceeds the model's context/],
    [['calibrate', '--model', model, '--data', text, '--method', 'aquakv[q=uniform:5:token]'], /bits must be one of 2, 3, 4, 8/],
    [['calibrate', '--model', model, '--data', text, '--method', 'kivi2'], /only aquakv methods use predictors/],
    [['eval', '--model', model, '--text', text, '--predictors', preds, '--methods', 'aquakv[q=higgs:2x64]'], /no predictor file was calibrated for aquakv\[q=higgs:2x64,first=higgs:2x256\] \(.*p.safetensors: aquakv\[bits=2.5\]\) \(hint: calibrate for it with: aquakv calibrate --method 'aquakv\[q=higgs:2x64,first=higgs:2x256\]'/],
    [['eval', '--model', model, '--text', text, '--predictors', preds, '--methods', 'aquakv[bits=2.25]'], /no predictor file was calibrated for aquakv\[bits=2.25\]/],
    [['calibrate', '--model', model], /needs --data FILE/],
    [['calibrate', '--model', model, '--data', text, '--allocation', 'greedy'], /--allocation must be auto, measured or modelled, got 'greedy'/],
    [['calibrate', '--model', model, '--data', text, '--bits', '2.5', '--method', 'aquakv'], /give --bits B or --method SPEC, not both/],
    [['calibrate', '--model', model, '--data', text, '--bits', '1'], /below the cheapest plan/],
    [['eval', '--model', model, '--text', '@nothing'], /unknown built-in text '@nothing'/],
    // this tokenizer spells the question in ~30 tokens, so distance 20 cannot hold it
    [['retrieval', '--model', model, '--methods', 'fp', '--length', '128', '--distances', '20'], /--distances: 20 must be an integer in \[\d+, \d+\] for --length 128/],
    [['retrieval', '--model', model, '--methods', 'fp', '--length', '40'], /--length 40 is too short for a pass-key sample/],
  ];
  for (const [args, re] of cases) {
    const r = aquakv(...args);
    assert.equal(r.code, 1, `${args.join(' ')}: ${r.err}`);
    assert.match(r.err, re);
    assert.equal(r.err.trim().split('\n').length, 1, r.err);
  }
});

test('outputs are checked before any work, and a damaged predictor cache entry is calibrated over', async () => {
  const t0 = Date.now();
  const dirOut = aquakv('calibrate', '--model', model, '--data', text, '--samples', '4', '--seq-len', '64', '--out', work);
  assert.equal(dirOut.code, 1);
  assert.match(dirOut.err, /cannot write .*: it is a directory/);
  const missing = aquakv('calibrate', '--model', model, '--data', text, '--out', join(work, 'no/such/dir/p.safetensors'));
  assert.match(missing.err, /directory .*no\/such\/dir does not exist/);
  const demo = aquakv('demo', '--model', model, '--text', text, '--calibration-data', text, '--out', join(work, 'nowhere/report.html'));
  assert.match(demo.err, /nowhere does not exist/);
  const cacheFile = join(work, 'a-file');
  writeFileSync(cacheFile, 'x');
  const cacheDir = aquakv('demo', '--model', model, '--text', text, '--calibration-data', text, '--cache-dir', cacheFile);
  assert.match(cacheDir.err, /--cache-dir .* is not a directory/);
  for (const r of [dirOut, missing, demo, cacheDir]) assert.equal(r.err.trim().split('\n').length, 1, r.err);
  assert.ok(Date.now() - t0 < 20_000, 'refused before calibrating');

  const { cachedPredictors } = await import('../src/predictors/cache-dir.js');
  const { loadModel, DEFAULT_CALIBRATION, parseMethod } = await import('../src/index.js');
  const { randomWordsText } = await import('./fixture.js');
  const { model: m, tokenizer } = loadModel(model);
  const cache = join(work, 'cache');
  const words = randomWordsText(600, 5);
  const settings = { ...DEFAULT_CALIBRATION, method: parseMethod('aquakv[q=higgs:2x16,first=higgs:2x256]'), samples: 2, seqLen: 50 };
  const first = cachedPredictors(cache, m, words, tokenizer, settings);
  writeFileSync(first.path, readFileSync(first.path).subarray(0, 100)); // a truncated entry
  const again = cachedPredictors(cache, m, words, tokenizer, settings);
  assert.equal(again.reused, false, 'the damaged entry is not used');
  assert.deepEqual(cachedPredictors(cache, m, words, tokenizer, settings).set.keys[1]!.weight, first.set.keys[1]!.weight, 'and is replaced by a good one');
});

test('calibrate --bits prints its plan, and eval takes one predictor file per AQUA-KV method', () => {
  const fixed = join(work, 'fixed.safetensors');
  const f = aquakv('calibrate', '--model', model, '--data', text, '--samples', '4', '--seq-len', '256', '--method', 'aquakv[q=higgs:2x16,first=higgs:2x256]', '--out', fixed);
  assert.equal(f.code, 0, f.err);
  const b = aquakv('calibrate', '--model', model, '--data', text, '--samples', '4', '--seq-len', '256', '--bits', '2.75', '--out', join(work, 'b275.safetensors'));
  assert.equal(b.code, 0, b.err);
  assert.match(b.out, /budget 2.75 bits per value → plan aquakv\[q=higgs:2x8,first=higgs:2x8,.*\]: 2\.\d{3} bits/);
  assert.match(b.out, /\(\d+ measurements, 4 of them replayed from their slot's layer, measured search\)/, 'a small model gets the measured search; its 3 layers\' first sweep replays layers 1 and 2');
  const e = aquakv('eval', '--model', model, '--text', text, '--predictors', `${preds},${fixed},${join(work, 'b275.safetensors')}`, '--seq-len', '256', '--max-tokens', '256',
    '--methods', 'fp,aquakv,aquakv[bits=2.75],aquakv[q=higgs:2x16,first=higgs:2x256]', '--json');
  assert.equal(e.code, 0, e.err);
  const rows = (JSON.parse(e.out) as { results: { method: string; bitsPerValue: number; klDivergence: number }[] }).results;
  assert.deepEqual(rows.map((r) => r.method), ['fp', 'aquakv', 'aquakv[bits=2.75]', 'aquakv[q=higgs:2x16,first=higgs:2x256]']);
  assert.ok(rows[1].bitsPerValue <= 2.5 + 1e-9 && rows[2].bitsPerValue <= 2.75 + 1e-9, JSON.stringify(rows));
  assert.ok(rows.slice(1).every((r) => r.klDivergence > 0));
});

test('too little calibration data: a warning, and predictors worse than none are dropped, recorded and loaded as none', () => {
  const out = join(work, 'tiny.safetensors');
  const c = aquakv('calibrate', '--model', model, '--data', text, '--method', 'aquakv[q=higgs:2x16,first=higgs:2x256]', '--samples', '3', '--seq-len', '16', '--out', out);
  assert.equal(c.code, 0, c.err);
  assert.match(c.err, /calibration has 32 training tokens for predictors of up to 128 inputs \(fewer than 4 per input\)/);
  assert.match(c.err, /did worse than no predictor on held-out tokens and were dropped/);
  assert.match(c.out, /dropped/);
  // the file loads, the dropped slots run without a predictor
  const e = aquakv('eval', '--model', model, '--text', text, '--predictors', out, '--methods', 'aquakv[q=higgs:2x16,first=higgs:2x256]', '--seq-len', '64', '--max-tokens', '128', '--buffer', '16', '--json');
  assert.equal(e.code, 0, e.err);
});

test('generate without --predictors calibrates once and keeps the predictors in .aquakv-cache', () => {
  const cwd = mkdtempSync(join(tmpdir(), 'aquakv-cwd-'));
  const run = () => spawnSync(process.execPath, [BIN, 'generate', '--model', model, '--method', 'aquakv[q=higgs:2x16,first=higgs:2x256]', '--calibration-data', text, '--prompt', FIXTURE_TEXT, '--max-new-tokens', '2', '--buffer', '16', '--json'], { cwd, encoding: 'utf8' });
  const first = run();
  assert.equal(first.status, 0, first.stderr);
  assert.match(first.stderr, /calibrated and kept .*\.aquakv-cache/);
  const second = run();
  assert.equal(second.status, 0, second.stderr);
  assert.match(second.stderr, /predictors for aquakv\[.*\]: reused/);
  assert.deepEqual(JSON.parse(second.stdout).ids, JSON.parse(first.stdout).ids);
});

test('calibration writes the same bytes twice (no timing in the file)', () => {
  const a = join(work, 'same-a.safetensors'), b = join(work, 'same-b.safetensors');
  for (const out of [a, b]) {
    const r = aquakv('calibrate', '--model', model, '--data', text, '--samples', '3', '--seq-len', '64', '--method', 'aquakv[q=higgs:2x16,first=higgs:2x256]', '--out', out);
    assert.equal(r.code, 0, r.err);
  }
  assert.ok(readFileSync(a).equals(readFileSync(b)));
});

test('generate says so when the model picks ids its tokenizer has no text for', () => {
  // config.json's vocabulary four times the tokenizer's: random weights pick ids beyond it
  const wide = makeTinyModel({ layers: 2, vocab: 1200, tied: false });
  const V = loadTokenizer(wide).vocabSize;
  const args = ['generate', '--model', wide, '--prompt', 'We the people', '--max-new-tokens', '8', '--temperature', '1', '--seed', '3'];
  const j = aquakv(...args, '--json');
  assert.equal(j.code, 0, j.err);
  const res = JSON.parse(j.out) as { ids: number[]; idsWithoutText: number };
  const beyond = res.ids.filter((id) => id >= V).length;
  assert.ok(beyond > 0, `some of ${JSON.stringify(res.ids)} are ≥ ${V}`);
  assert.equal(res.idsWithoutText, beyond);
  const t = aquakv(...args);
  assert.equal(t.code, 0, t.err);
  assert.match(t.err, new RegExp(`warning: ${beyond} of the 8 generated ids \\(.*\\) are beyond the tokenizer's ${V} ids and have no text; the model's vocabulary is 1200`));
  // the tokenizer's own model: no warning
  const own = aquakv('generate', '--model', model, '--prompt', 'We the people', '--max-new-tokens', '8', '--seed', '3');
  assert.equal(own.code, 0, own.err);
  assert.doesNotMatch(own.err, /warning/);
});
