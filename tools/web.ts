/**
 * `npm run web`: builds the page (web/, bundled for browsers by esbuild: the core with the
 * browser platform, no Node module) and serves it with the embedded model, the HIGGS grids and
 * AQUA-KV predictor files on localhost. Its first line is the page's URL.
 *
 *   --port N (default 8090; 0 picks one)   --host 127.0.0.1
 *   --predictors FILE[,FILE…]   predictor files to offer (the slider's budgets); by default every
 *                               file in .aquakv-cache made for the embedded model, and when there
 *                               is none, one budgeted calibration (the default, 2.5 bits) first
 */
import { createServer } from 'node:http';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { parse, reportUserErrors } from '../src/cli/args.js';
import { AquaError } from '../src/errors.js';
import { sotuSplit } from '../src/eval/datasets.js';
import { readText } from '../src/eval/texts.js';
import { embeddedModelDir, loadModel } from '../src/io/load-model.js';
import { parseMethod } from '../src/kv/method.js';
import { cachedPredictors, DEFAULT_PREDICTOR_CACHE_DIR } from '../src/predictors/cache-dir.js';
import { DEFAULT_CALIBRATION } from '../src/predictors/calibrate.js';
import { loadPredictors } from '../src/predictors/file.js';
import { gridFileName, listGrids } from '../src/quant/grid.js';
import type { Manifest } from '../web/protocol.js';

reportUserErrors('web');
const args = parse(process.argv.slice(2), { port: { type: 'string' }, host: { type: 'string' }, predictors: { type: 'string' } });
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const port = args.port === undefined ? 8090 : Number(args.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) throw new AquaError(`--port must be an integer 0–65535, got '${args.port}'`);
const host = args.host ?? '127.0.0.1';

// 1. the bundle
const out = join(ROOT, 'dist', 'web-bundle');
await build({
  entryPoints: [join(ROOT, 'dist/web/app.js'), join(ROOT, 'dist/web/worker.js'), join(ROOT, 'dist/web/gemm-bench.js')],
  bundle: true, format: 'esm', platform: 'browser', outdir: out, logLevel: 'error', minify: false, sourcemap: false,
});

// 2. what the page may load: the model's files, the grids, the predictor files
const { model, tokenizer } = loadModel();
const modelDir = embeddedModelDir();
const files = new Map<string, string>(); // URL path → file
const modelFiles = ['config.json', 'model.safetensors', 'tokenizer.json'];
for (const f of modelFiles) files.set(`/models/aquakv-sotu/${f}`, join(modelDir, f));
const grids = listGrids().map(({ d, n }) => `grids/${gridFileName(d, n)}`);
for (const g of grids) files.set(`/${g}`, join(ROOT, g));
let predictorFiles: string[];
if (args.predictors) predictorFiles = args.predictors.split(',');
else {
  const cacheDir = resolve(DEFAULT_PREDICTOR_CACHE_DIR);
  predictorFiles = existsSync(cacheDir) ? readdirSync(cacheDir).filter((f) => f.endsWith('.safetensors')).map((f) => join(cacheDir, f)) : [];
  predictorFiles = predictorFiles.filter((f) => {
    try {
      loadPredictors(f, model);
      return true;
    } catch {
      return false; // made for another model
    }
  });
  if (predictorFiles.length === 0) {
    console.error('aquakv web: no predictors for the embedded model yet; calibrating the default budget once (a few minutes; kept in .aquakv-cache)');
    const method = parseMethod('aquakv');
    const c = cachedPredictors(cacheDir, model, readText('@sotu-train'), tokenizer, { ...DEFAULT_CALIBRATION, method, samples: 16, seqLen: model.config.maxPositionEmbeddings, dataSource: '@sotu-train' });
    predictorFiles = [c.path];
  }
}
const predictors: Manifest['predictors'] = predictorFiles.map((f, i) => {
  const { set } = loadPredictors(f, model); // refuses a file made for another model, in one line
  const label = set.budget !== null ? `${set.budget} bits (aquakv[bits=${set.budget}])` : set.method;
  const url = `predictors/${i}.safetensors`;
  files.set(`/${url}`, f);
  return { label, method: set.budget !== null ? `aquakv[bits=${set.budget}]` : set.method, url, budget: set.budget ?? -Infinity };
}).sort((a, b) => a.budget - b.budget).map(({ label, method, url }) => ({ label, method, url }));
const manifest: Manifest = {
  model: { config: 'models/aquakv-sotu/config.json', safetensors: ['models/aquakv-sotu/model.safetensors'], tokenizer: 'models/aquakv-sotu/tokenizer.json' },
  grids, predictors, prompt: sotuSplit().heldOut[0].text.slice(0, 4000),
};

// 3. the server
const types: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json', '.safetensors': 'application/octet-stream' };
const server = createServer((req, res) => {
  const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
  let file: string | undefined;
  let body: string | Buffer | undefined;
  if (path === '/favicon.ico') {
    res.writeHead(204).end();
    return;
  }
  if (path === '/' || path === '/index.html') file = join(ROOT, 'web', 'index.html');
  else if (path === '/app.js' || path === '/worker.js' || path === '/gemm-bench.js') file = join(out, path.slice(1));
  else if (path === '/gemm-bench.html') body = '<!doctype html><html><head><meta charset="utf-8"><title>products</title></head><body data-state="running"><script type="module" src="gemm-bench.js"></script></body></html>';
  else if (path.startsWith('/ort/') && /^[\w.-]+\.(mjs|wasm)$/.test(path.slice(5))) {
    // onnxruntime-web, for the products bench (a development dependency: absent from an installed package)
    const f = join(ROOT, 'node_modules/onnxruntime-web/dist', path.slice(5));
    if (existsSync(f)) file = f;
  }
  else if (path === '/manifest.json') body = JSON.stringify(manifest);
  else file = files.get(path);
  if (file && existsSync(file)) body = readFileSync(file);
  if (body === undefined) {
    res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: ${path}`);
    return;
  }
  res.writeHead(200, { 'content-type': path === '/gemm-bench.html' ? types['.html'] : types[extname(file ?? path)] ?? 'application/octet-stream', 'cache-control': 'no-store' }).end(body);
});
server.listen(port, host, () => {
  const a = server.address() as { port: number };
  console.log(`aquakv web: http://${host}:${a.port}/`);
  console.log(`  serving the embedded model, ${grids.length} grids and ${predictors.length} predictor file(s): ${predictors.map((p) => p.label).join(', ')}; Ctrl-C stops`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
