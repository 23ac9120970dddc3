/**
 * The page of `npm run web` in a real browser (Debian's chromium, driven by puppeteer-core): it
 * streams fp and AQUA-KV side by side with the token ids Node computes for the same seed (on the
 * same portable product), shows the cache bytes Node's `memory()` counts, and shows a worker's
 * error on the page. A screenshot is kept in test-artifacts/.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import puppeteer from 'puppeteer-core';
import { calibrate, createCache, generate, loadModel, parseMethod, savePredictors, readText } from '../src/index.js';
import { gemmBackend, setGemmBackend } from '../src/tensor/gemm.js';
import { PAGE_SAMPLING, PROMPT_CHARS, type Manifest } from '../web/protocol.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const CHROMIUM = '/usr/bin/chromium';
const procs: ChildProcess[] = [];
after(() => procs.forEach((p) => p.kill('SIGKILL')));

test('the page streams fp and AQUA-KV with Node\'s token ids and cache bytes, and shows a worker error', { timeout: 240_000 }, async () => {
  assert.equal(spawnSync(CHROMIUM, ['--version']).status, 0, 'chromium is installed (.ci/run installs it)');
  // predictors for the embedded model, quickly (the page offers what it is given)
  const { model, tokenizer } = loadModel();
  const method = 'aquakv[q=higgs:2x16,first=higgs:2x256]';
  const work = mkdtempSync(join(tmpdir(), 'aquakv-web-'));
  const predictorFile = join(work, 'predictors.safetensors');
  const calibrated = calibrate(model, readText('@sotu-train'), tokenizer, { method: parseMethod(method), samples: 4, seqLen: 256 });
  savePredictors(predictorFile, calibrated);

  const server = spawn(process.execPath, [join(ROOT, 'dist/tools/web.js'), '--port', '0', '--predictors', predictorFile], { stdio: ['ignore', 'pipe', 'inherit'] });
  procs.push(server);
  const url = await new Promise<string>((done, fail) => {
    server.stdout!.on('data', (d: Buffer) => {
      const m = /^aquakv web: (http:\/\/\S+)/m.exec(d.toString());
      if (m) done(m[1]);
    });
    server.on('exit', (code) => fail(new Error(`npm run web exited ${code}`)));
  });
  const manifest = (await (await fetch(`${url}manifest.json`)).json()) as Manifest;

  const browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu'] });
  try {
    const page = await browser.newPage();
    const seed = 3;
    const tokens = 12;
    await page.goto(`${url}?seed=${seed}&tokens=${tokens}`);
    await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.state ?? ''), { timeout: 180_000 });
    assert.equal(await page.evaluate(() => document.body.dataset.state), 'done', await page.evaluate(() => document.getElementById('error')?.textContent ?? ''));
    type Side = { ids: number[]; stored: number; bitsPerValue: number };
    const got = (await page.evaluate(() => (window as unknown as { aquakvResult: unknown }).aquakvResult)) as { fp: Side; aquakv: Side; passkey: { key: string; answers: { fp: string } } };
    mkdirSync(join(ROOT, 'test-artifacts'), { recursive: true });
    await page.screenshot({ path: join(ROOT, 'test-artifacts/web-page.png'), fullPage: true });

    // Node, on the product the page uses (the portable TypeScript one), same prompt, seed and sampling
    const before = gemmBackend();
    setGemmBackend('ts');
    try {
      const prompt = tokenizer.encode(manifest.prompt.slice(0, PROMPT_CHARS));
      const sampling = { ...PAGE_SAMPLING, seed, maxNewTokens: tokens, stopIds: [] };
      const fp = createCache(model, parseMethod('fp'));
      assert.deepEqual(got.fp.ids, generate(model, prompt, fp, sampling).ids, 'fp token ids');
      const aqua = createCache(model, parseMethod(method), calibrated.set, { mode: 'compact' });
      assert.deepEqual(got.aquakv.ids, generate(model, prompt, aqua, sampling).ids, 'AQUA-KV token ids');
      assert.equal(got.fp.stored, fp.memory().stored);
      assert.equal(got.aquakv.stored, aqua.memory().stored, 'the page counts the bytes Node counts');
      assert.ok(got.aquakv.bitsPerValue > 2 && got.aquakv.bitsPerValue < 3, 'the AQUA-KV side really compressed');
    } finally {
      setGemmBackend(before);
    }
    assert.match(got.passkey.key, /^\d{5}$/);
    assert.ok(await page.$eval('#aquakv-text', (e) => (e.textContent ?? '').length > 0));

    // a worker that fails shows its message on the page
    const broken = await browser.newPage();
    await broken.goto(`${url}?predictors=predictors/missing.safetensors`);
    await broken.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.state ?? ''), { timeout: 60_000 });
    assert.equal(await broken.evaluate(() => document.body.dataset.state), 'error');
    const shown = await broken.$eval('#error', (e) => ({ text: e.textContent ?? '', hidden: (e as HTMLElement).hidden }));
    assert.equal(shown.hidden, false);
    assert.match(shown.text, /no predictor file predictors\/missing\.safetensors/);
  } finally {
    await browser.close();
    server.kill('SIGTERM');
  }
});
