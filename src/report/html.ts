/**
 * report.html: one self-contained page (inline SVG, inline CSS, no network) with the trade-off
 * curve, per-layer predictor errors, cache memory by component, the results, pass-key retrieval
 * and the settings.
 */
import type { DemoResult } from '../demo/run-demo.js';
import { lineChart, stackedBarChart, type Series } from './svg.js';

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const fmt = (x: number, d = 3) => (Number.isFinite(x) ? x.toFixed(d) : '–');

export function renderReport(r: DemoResult): string {
  const quantized = r.results.filter((x) => x.method !== 'fp');
  const fams = [...new Set(quantized.map((x) => x.family))];
  // KL from fp decides quality (perplexity change is noise on text the model predicts poorly); log scale
  const tradeoff: Series[] = fams.map((f) => ({
    name: f,
    line: false,
    points: quantized.filter((x) => x.family === f && x.klDivergence > 0).map((x) => [x.bitsPerValue, x.klDivergence] as [number, number]),
  }));
  const tradeoffSvg = lineChart(tradeoff, { title: 'KL divergence from fp against stored bits per value', xLabel: 'bits per value (codes + scales)', yLabel: 'KL from fp (nats, log scale)', logY: true });
  const layerSeries: Series[] = r.calibrations.flatMap((c) => [
    { name: `keys (${c.method})`, points: c.layers.filter((l) => l.keys).map((l) => [l.layer, l.keys!.equivalentBits] as [number, number]) },
    { name: `values (${c.method})`, points: c.layers.filter((l) => l.values).map((l) => [l.layer, l.values!.equivalentBits] as [number, number]) },
  ]);
  const layerSvg = lineChart(layerSeries, { title: 'Predictor quality per layer (validation)', xLabel: 'layer', yLabel: 'equivalent bits, −log₄ relMSE' });
  const memSvg = stackedBarChart(
    [
      ...r.generations.map((g) => ({ label: `generate: ${g.method}`, parts: g.components })),
      ...r.results.map((x) => ({ label: `eval window: ${x.method}`, parts: Object.fromEntries(Object.entries(x.components).filter(([k]) => k !== 'materialized' && k !== 'working')) })),
    ],
    { title: 'Cache memory by component', unit: 'bytes' },
  );
  const resultRows = r.results
    .map((x) => `<tr><td>${esc(x.method)}</td><td>${fmt(x.bitsPerValue)}</td><td>${fmt(x.perplexity)}</td><td>${x.relativeChange >= 0 ? '+' : ''}${fmt(100 * x.relativeChange, 2)}%</td><td>${fmt(x.klDivergence, 5)}</td><td>${x.cacheBytes.toLocaleString('en-US')}</td></tr>`)
    .join('\n');
  const layerRows = r.calibrations.flatMap((c) => c.layers.map((l) =>
    `<tr><td>${esc(c.method)}</td><td>${l.layer}</td><td>${l.keys ? fmt(l.keys.validRelMse, 4) : 'no predictor'}</td><td>${l.keys ? fmt(l.keys.equivalentBits, 2) : ''}</td><td>${l.values ? fmt(l.values.validRelMse, 4) : 'no predictor'}</td><td>${l.values ? fmt(l.values.equivalentBits, 2) : ''}</td></tr>`)).join('\n');
  const genRows = r.generations
    .map((g) => `<tr><td>${esc(g.method)}<br><small>${esc(g.cache)}</small></td><td class="text">${esc(g.text)}</td><td>${fmt(g.decodeTokensPerSecond, 1)}</td><td>${g.storedBytes.toLocaleString('en-US')}</td><td>${fmt(g.fp16Bytes / g.storedBytes, 2)}×</td></tr>`)
    .join('\n');
  const c = r.conversation;
  const conversationSection = `<section id="conversation"><h2>A saved conversation</h2>
<p>The AQUA-KV conversation above (prompt and continuation, ${c.tokens} tokens) was saved to <code>${esc(c.file)}</code>, loaded back, and continued with ${esc(JSON.stringify(c.followUp))}. The file holds the cache's codes and scales as stored, with its full-precision sinks and buffer.</p>
<table><tbody>
<tr><th>saved file</th><td>${c.fileBytes.toLocaleString('en-US')} bytes</td></tr>
<tr><th>the same tokens at 16 bits</th><td>${c.fp16Bytes.toLocaleString('en-US')} bytes (${fmt(c.fp16Bytes / c.fileBytes, 2)}× the file)</td></tr>
<tr><th>the fp (f32) cache, saved</th><td>${c.fullCacheFileBytes.toLocaleString('en-US')} bytes</td></tr>
<tr><th>save / load</th><td>${fmt(1000 * c.saveSeconds, 1)} ms / ${fmt(1000 * c.loadSeconds, 1)} ms</td></tr>
<tr><th>first new token: resumed / re-read</th><td>${fmt(1000 * c.resumeFirstTokenSeconds, 1)} ms / ${fmt(1000 * c.rereadFirstTokenSeconds, 1)} ms (${fmt(c.rereadFirstTokenSeconds / c.resumeFirstTokenSeconds, 1)}× faster)</td></tr>
</tbody></table>
<p class="text">Continued: <q>${esc(c.followUp + c.continuation)}</q></p></section>`;
  const allocations = r.calibrations.filter((c) => c.allocation);
  const allocationSection = allocations.length === 0 ? '' : `<section id="allocation"><h2>Bits where they matter</h2>
<p>Budgeted AQUA-KV measures, on held-out calibration windows, how much each slot's next quantizer lowers the KL divergence from fp, then spends the budget greedily on the largest reductions per bit.</p>
${allocations.map((c) => {
    const a = c.allocation!;
    return `<h3>${esc(c.method)}: budget ${fmt(a.budget, 3)} bits, plan ${fmt(a.bitsPerValue, 3)} bits</h3>
<p>Plan: <code>${esc(c.plan)}</code>. KL on ${a.tokens} calibration positions: every slot at ${esc(a.ladder[0])} ${fmt(a.klBase, 5)} → plan ${fmt(a.klPlan, 5)} (${a.measurements} measurements${a.search === 'modelled' ? '; modelled search: the steps\' KL is the first-order model\'s, the plan\'s is measured' : ''}).</p>
<table><thead><tr><th>slot</th><th>KL removed by its first upgrade</th></tr></thead><tbody>
${a.firstGains.map((g) => `<tr><td>${esc(g.slot)}</td><td>${fmt(g.klGain, 5)}</td></tr>`).join('\n')}
</tbody></table>
<table><thead><tr><th>step</th><th>slot → quantizer</th><th>bits/value after</th><th>KL before → after</th></tr></thead><tbody>
${a.steps.map((x, i) => `<tr><td>${i + 1}</td><td>${esc(x.slot)} → ${esc(x.to)}</td><td>${fmt(x.bitsPerValue, 3)}</td><td>${fmt(x.klBefore, 5)} → ${fmt(x.klAfter, 5)}</td></tr>`).join('\n')}
</tbody></table>${(a.withoutPredictor ?? []).length === 0 ? '' : `
<p>Without a predictor (KL measured lower without it): ${(a.withoutPredictor ?? []).map((x) => `${esc(x.slot)} (${fmt(x.klBefore, 5)} → ${fmt(x.klAfter, 5)})`).join(', ')}.</p>`}`;
  }).join('\n')}
</section>`;
  const distances = [...new Set(r.retrieval.flatMap((x) => x.results.map((y) => y.distance)))];
  const retrievalSection = r.retrieval.length === 0 ? '' : `<section id="retrieval"><h2>Pass-key retrieval</h2>
<p>A 5-digit key is stated inside ${esc(String(r.settings.evalText))} and asked for at the end of a ${esc(String(r.settings.seqLen))}-token window, the distance being the tokens between the two; the greedy answer, decoded through each cache, must match every digit. ${r.retrieval[0].results[0]?.samples ?? 0} samples per distance.</p>
<table><thead><tr><th>method</th>${distances.map((d) => `<th>distance ${d}</th>`).join('')}</tr></thead><tbody>
${r.retrieval.map((x) => `<tr><td>${esc(x.method)}</td>${distances.map((d) => {
    const y = x.results.find((z) => z.distance === d);
    return `<td>${y ? `${fmt(100 * y.accuracy, 0)}% (${y.correct}/${y.samples})` : '–'}</td>`;
  }).join('')}</tr>`).join('\n')}
</tbody></table></section>`;
  const settingRows = Object.entries({ ...r.settings, model: r.model.dir, layers: r.model.layers, 'key/value channels C': r.model.kvDim })
    .map(([k, v]) => {
      const text = String(v);
      return `<tr><th>${esc(k)}</th><td>${esc(text.length > 240 ? `${text.slice(0, 120)} … ${text.slice(-100)}` : text)}</td></tr>`;
    }).join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>aquakv report</title>
<style>
body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f4f4f4}td.text{text-align:left;max-width:420px}td:first-child{text-align:left}
section{margin:2em 0}svg{max-width:100%;height:auto}
</style></head><body>
<h1>aquakv report</h1>
<p>AQUA-KV compresses the key-value cache by predicting each layer's keys and values from the previous layer's reconstructions and quantizing only the residual with HIGGS. Figures below were measured by <code>aquakv demo</code> in ${fmt(r.seconds, 0)} s.</p>
<section id="tradeoff"><h2>Quality against size</h2>${tradeoffSvg}
<table><thead><tr><th>method</th><th>bits/value</th><th>perplexity</th><th>change vs fp</th><th>KL (nats)</th><th>cache bytes, one window</th></tr></thead><tbody>
${resultRows}
</tbody></table></section>
<section id="predictors"><h2>Per-layer predictor error</h2>${layerSvg}
<table><thead><tr><th>method</th><th>layer</th><th>keys relMSE</th><th>keys equiv. bits</th><th>values relMSE</th><th>values equiv. bits</th></tr></thead><tbody>
${layerRows}
</tbody></table></section>
<section id="memory"><h2>Cache memory</h2>${memSvg}
<p>Continuations of the same prompt (${esc(String(r.settings.promptTokens ?? ''))} tokens) through each cache, sampled with the same seed (temperature ${esc(String(r.settings.temperature ?? ''))}, top-p ${esc(String(r.settings.topP ?? ''))}, seed ${esc(String(r.settings.seed ?? ''))}), so they differ only where the cache changes the model's choices; "vs 16-bit" is the size of the same tokens' keys and values at 16 bits divided by the bytes stored.</p>
<table><thead><tr><th>cache</th><th>continuation (sampled)</th><th>decode tokens/s</th><th>stored bytes</th><th>vs 16-bit</th></tr></thead><tbody>
${genRows}
</tbody></table></section>
${conversationSection}
${allocationSection}
${retrievalSection}
<section id="settings"><h2>Settings</h2><table><tbody>
${settingRows}
</tbody></table></section>
</body></html>
`;
}
