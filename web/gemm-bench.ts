/**
 * The browser's matrix products side by side (`npm run bench -- --only web` opens this page):
 * aquakv's TypeScript loop, aquakv's WebAssembly SIMD kernel (the portable backend the page uses:
 * gemmWasm), and onnxruntime-web's WASM SIMD Gemm (served locally from the onnxruntime-web
 * package, one thread), on decode- and prefill-sized products of the embedded model. Results on window.gemmBench; <body data-state="done"> when finished.
 */
import { singleNodeModel } from '../src/platform/onnx-model.js';
import { gemmTs, gemmWasm } from '../src/tensor/gemm.js';

interface OrtTensor { dims: readonly number[] }
interface OrtModule {
  env: { wasm: { wasmPaths: string; numThreads: number } };
  Tensor: new (type: 'float32', data: Float32Array, dims: number[]) => OrtTensor;
  InferenceSession: { create(model: Uint8Array, options: object): Promise<{ run(feeds: Record<string, OrtTensor>): Promise<Record<string, { data: Float32Array }>> }> };
}

const SHAPES: [string, number, number, number][] = [
  ['decode q/k/v (1×256×512)', 1, 256, 512], ['decode gate/up (1×256×1536)', 1, 256, 1536], ['decode lm head (1×256×2048)', 1, 256, 2048],
  ['prefill 64 gate/up (64×256×1536)', 64, 256, 1536], ['prefill 512 gate/up (512×256×1536)', 512, 256, 1536],
];

async function main() {
  const ort = (await import(/* @vite-ignore */ `${location.origin}/ort/ort.wasm.min.mjs`)) as OrtModule;
  ort.env.wasm.wasmPaths = `${location.origin}/ort/`;
  ort.env.wasm.numThreads = 1;
  const model = singleNodeModel({
    opType: 'Gemm', inputs: [{ name: 'A', dims: ['M', 'K'] }, { name: 'B', dims: ['N', 'K'] }], output: { name: 'Y', dims: ['M', 'N'] }, intAttributes: { transA: 0, transB: 1 },
  });
  const session = await ort.InferenceSession.create(model, { executionProviders: ['wasm'] });
  const rows: { shape: string; macs: number; tsMicros: number; wasmMicros: number; ortMicros: number; tsGflops: number; wasmGflops: number; ortGflops: number; maxDiff: number }[] = [];
  for (const [shape, m, k, n] of SHAPES) {
    const a = Float32Array.from({ length: m * k }, (_, i) => Math.sin(i));
    const b = Float32Array.from({ length: n * k }, (_, i) => Math.cos(i));
    const out = new Float32Array(m * n);
    // a browser's clock is coarse (0.1 ms): time batches of calls, median of 5 batches
    const batch = m * k * n > 10_000_000 ? 2 : 50;
    const time = async (f: () => unknown) => {
      await f();
      const ts: number[] = [];
      for (let r = 0; r < 5; r++) {
        const t0 = performance.now();
        for (let i = 0; i < batch; i++) await f();
        ts.push((performance.now() - t0) / batch);
      }
      return ts.sort((x, y) => x - y)[2] * 1000;
    };
    const tsMicros = await time(() => gemmTs(out, a, b, m, k, n, false, true));
    const wasmMicros = await time(() => gemmWasm(out, a, b, m, k, n, false, true));
    let y: Float32Array = new Float32Array(0);
    const ortMicros = await time(async () => {
      const r = await session.run({ A: new ort.Tensor('float32', a, [m, k]), B: new ort.Tensor('float32', b, [n, k]) });
      y = r.Y.data;
    });
    let maxDiff = 0;
    for (let i = 0; i < m * n; i++) maxDiff = Math.max(maxDiff, Math.abs(y[i] - out[i]));
    const flop = 2 * m * k * n;
    rows.push({ shape, macs: m * k * n, tsMicros, wasmMicros, ortMicros, tsGflops: flop / tsMicros / 1000, wasmGflops: flop / wasmMicros / 1000, ortGflops: flop / ortMicros / 1000, maxDiff });
  }
  (window as unknown as { gemmBench: unknown }).gemmBench = rows;
  document.body.textContent = JSON.stringify(rows, null, 1);
  document.body.dataset.state = 'done';
}

main().catch((e: unknown) => {
  document.body.dataset.state = 'error';
  document.body.textContent = `Error: ${e instanceof Error ? e.message : String(e)}`;
});
