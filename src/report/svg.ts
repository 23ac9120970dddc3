/** Minimal self-contained SVG charts (no network, no library): line and scatter plots. */

export interface Series {
  name: string;
  points: [number, number][];
  color?: string;
  line?: boolean; // default true; false draws markers only
}

export interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  width?: number;
  height?: number;
  logY?: boolean;
}

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#17becf'];
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function ticks(lo: number, hi: number, n = 5): number[] {
  if (hi <= lo) return [lo];
  const step = Math.pow(10, Math.floor(Math.log10((hi - lo) / n)));
  const nice = [1, 2, 5, 10].map((m) => m * step).find((s) => (hi - lo) / s <= n) ?? step * 10;
  const out: number[] = [];
  for (let v = Math.ceil(lo / nice) * nice; v <= hi + 1e-12; v += nice) out.push(Number(v.toPrecision(12)));
  return out;
}

export function lineChart(series: Series[], o: ChartOptions): string {
  const W = o.width ?? 760;
  const H = o.height ?? 360;
  const m = { l: 64, r: 230, t: 36, b: 48 };
  const all = series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!o.logY || y > 0));
  const fy = (y: number) => (o.logY ? Math.log10(y) : y);
  let [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...all.map((p) => fy(p[1]))), Math.max(...all.map((p) => fy(p[1])))];
  if (!all.length) [x0, x1, y0, y1] = [0, 1, 0, 1];
  if (x1 === x0) [x0, x1] = [x0 - 1, x1 + 1];
  if (y1 === y0) [y0, y1] = [y0 - 1, y1 + 1];
  const pad = (y1 - y0) * 0.05;
  y0 -= pad;
  y1 += pad;
  const sx = (x: number) => m.l + ((x - x0) / (x1 - x0)) * (W - m.l - m.r);
  const sy = (y: number) => H - m.b - ((fy(y) - y0) / (y1 - y0)) * (H - m.t - m.b);
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  parts.push(`<text x="${W / 2 - m.r / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">${esc(o.title)}</text>`);
  for (const t of ticks(x0, x1)) {
    parts.push(`<line x1="${sx(t)}" y1="${m.t}" x2="${sx(t)}" y2="${H - m.b}" stroke="#eee"/>`);
    parts.push(`<text x="${sx(t)}" y="${H - m.b + 16}" text-anchor="middle">${t}</text>`);
  }
  for (const t of ticks(y0, y1)) {
    const y = H - m.b - ((t - y0) / (y1 - y0)) * (H - m.t - m.b);
    parts.push(`<line x1="${m.l}" y1="${y}" x2="${W - m.r}" y2="${y}" stroke="#eee"/>`);
    parts.push(`<text x="${m.l - 6}" y="${y + 4}" text-anchor="end">${o.logY ? Number(Math.pow(10, t).toPrecision(3)) : t}</text>`);
  }
  parts.push(`<rect x="${m.l}" y="${m.t}" width="${W - m.l - m.r}" height="${H - m.t - m.b}" fill="none" stroke="#333"/>`);
  parts.push(`<text x="${(m.l + W - m.r) / 2}" y="${H - 10}" text-anchor="middle">${esc(o.xLabel)}</text>`);
  parts.push(`<text transform="translate(16 ${(m.t + H - m.b) / 2}) rotate(-90)" text-anchor="middle">${esc(o.yLabel)}</text>`);
  series.forEach((s, i) => {
    const color = s.color ?? PALETTE[i % PALETTE.length];
    const pts = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!o.logY || y > 0));
    if (s.line !== false && pts.length > 1) {
      parts.push(`<polyline fill="none" stroke="${color}" stroke-width="1.5" points="${pts.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ')}"/>`);
    }
    for (const [x, y] of pts.length <= 60 ? pts : []) parts.push(`<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="3.5" fill="${color}"/>`);
    parts.push(`<rect x="${W - m.r + 10}" y="${m.t + i * 18}" width="12" height="12" fill="${color}"/>`);
    parts.push(`<text x="${W - m.r + 28}" y="${m.t + i * 18 + 10}">${esc(s.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

export interface StackedBar {
  label: string;
  parts: Record<string, number>;
}

/** Horizontal stacked bars (one per label), parts coloured consistently by name. */
export function stackedBarChart(bars: StackedBar[], o: { title: string; unit: string; width?: number }): string {
  const W = o.width ?? 800;
  const rowH = 26;
  const m = { l: 270, r: 20, t: 40, b: 40 };
  const names = [...new Set(bars.flatMap((b) => Object.keys(b.parts).filter((k) => b.parts[k] > 0)))];
  const legendRows = Math.ceil(names.length / 4);
  const H = m.t + bars.length * rowH + m.b + legendRows * 18;
  const max = Math.max(1, ...bars.map((b) => Object.values(b.parts).reduce((s, v) => s + v, 0)));
  const sx = (v: number) => (v / max) * (W - m.l - m.r);
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  parts.push(`<text x="${W / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">${esc(o.title)}</text>`);
  bars.forEach((b, i) => {
    const y = m.t + i * rowH;
    parts.push(`<text x="${m.l - 8}" y="${y + 16}" text-anchor="end">${esc(b.label)}</text>`);
    let x = m.l;
    for (const name of names) {
      const v = b.parts[name] ?? 0;
      if (v <= 0) continue;
      const w = sx(v);
      parts.push(`<rect x="${x.toFixed(1)}" y="${y + 4}" width="${w.toFixed(1)}" height="${rowH - 8}" fill="${PALETTE[names.indexOf(name) % PALETTE.length]}"><title>${esc(name)}: ${v} ${esc(o.unit)}</title></rect>`);
      x += w;
    }
    const total = Object.values(b.parts).reduce((s, v) => s + v, 0);
    parts.push(`<text x="${Math.min(x + 4, W - 4)}" y="${y + 16}" text-anchor="${x + 60 > W ? 'end' : 'start'}" font-size="11">${total.toLocaleString('en-US')}</text>`);
  });
  names.forEach((name, i) => {
    const x = m.l + (i % 4) * 130;
    const y = m.t + bars.length * rowH + 16 + Math.floor(i / 4) * 18;
    parts.push(`<rect x="${x}" y="${y}" width="12" height="12" fill="${PALETTE[i % PALETTE.length]}"/><text x="${x + 16}" y="${y + 10}">${esc(name)}</text>`);
  });
  parts.push(`<text x="${W / 2}" y="${H - 6}" text-anchor="middle">${esc(o.unit)}</text>`);
  parts.push('</svg>');
  return parts.join('\n');
}
