/** Plain-text tables the commands print. */
import type { MethodResult } from '../eval/perplexity.js';
import type { RetrievalResult } from '../eval/retrieval-eval.js';
import type { LayerErrors } from '../predictors/file.js';

export function formatResults(results: MethodResult[]): string {
  const lines = ['method                                bits/value  perplexity  rel. change  KL (nats)   cache bytes (1 window)'];
  for (const r of results) {
    lines.push(
      `${r.method.padEnd(36)}  ${r.bitsPerValue.toFixed(3).padStart(10)}  ${r.perplexity.toFixed(3).padStart(10)}  ${((r.relativeChange >= 0 ? '+' : '') + r.relativeChange.toFixed(4)).padStart(11)}  ${r.klDivergence.toFixed(5).padStart(9)}  ${String(r.cacheBytes).padStart(12)}`,
    );
  }
  return lines.join('\n');
}

export function formatLayerErrors(layers: LayerErrors[]): string {
  const f = (x: number) => (Number.isFinite(x) ? x.toFixed(4) : '-');
  const lines = ['layer  keys: train relMSE  valid relMSE  equiv. bits   values: train relMSE  valid relMSE  equiv. bits'];
  for (const l of layers) {
    const k = l.keys, v = l.values;
    // a dropped predictor shows its errors and "dropped" (worse than none on validation) or
    // "not in plan" (the budgeted allocation measured a lower KL without it)
    const bits = (e: typeof k) => (e ? (e.dropped ? (e.droppedBy === 'plan' ? 'not in plan' : 'dropped') : e.equivalentBits.toFixed(2)) : '-');
    lines.push(
      `${String(l.layer).padStart(5)}  ${(k ? f(k.trainRelMse) : 'none').padStart(18)}  ${(k ? f(k.validRelMse) : '-').padStart(12)}  ${bits(k).padStart(11)}   ` +
        `${(v ? f(v.trainRelMse) : 'none').padStart(20)}  ${(v ? f(v.validRelMse) : '-').padStart(12)}  ${bits(v).padStart(11)}`,
    );
  }
  return lines.join('\n');
}

/** A table of accuracy per method (rows) and distance (columns). */
export function formatRetrieval(rows: { method: string; results: RetrievalResult[] }[]): string {
  const distances = [...new Set(rows.flatMap((r) => r.results.map((x) => x.distance)))];
  const width = Math.max(8, ...rows.map((r) => r.method.length)) + 2;
  const lines = ['method'.padEnd(width) + distances.map((d) => `d=${d}`.padStart(9)).join('')];
  for (const r of rows) {
    lines.push(r.method.padEnd(width) + distances.map((d) => {
      const x = r.results.find((y) => y.distance === d);
      return (x ? `${(100 * x.accuracy).toFixed(0)}%` : '–').padStart(9);
    }).join(''));
  }
  return lines.join('\n');
}
