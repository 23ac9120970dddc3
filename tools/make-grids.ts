/**
 * Generates the shipped grids (grids/EDEN{d}-{n}.json): `npm run grids:generate [-- --only 2x8,2x16]`.
 * Deterministic: each grid's seed is written into its file with the measured MSE.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Grid, SHIPPED_GRIDS, gridFileName, gridsDir, measureGridMse, type GridFile } from '../src/quant/grid.js';
import { lloydMax1d, lloydVq } from '../src/quant/grid-generator.js';
import { Rng } from '../src/tensor/rng.js';
import { parse, reportUserErrors } from '../src/cli/args.js';
import { AquaError } from '../src/errors.js';

reportUserErrors('make-grids');
const args = parse(process.argv.slice(2), { only: { type: 'string' } });
const names = SHIPPED_GRIDS.map(([d, n]) => `${d}x${n}`);
const only = args.only?.split(',') ?? names;
const unknown = only.filter((g) => !names.includes(g));
if (unknown.length) throw new AquaError(`--only: ${unknown.join(', ')} is not in SHIPPED_GRIDS (${names.join(', ')})`);

// Lloyd rounds and samples per round for each vector grid (1-D grids are solved exactly)
const ROUNDS: Record<string, [number, number]> = { '2x8': [60, 200_000], '2x16': [80, 200_000], '2x64': [120, 300_000], '2x256': [150, 400_000], '4x256': [150, 400_000] };
const GRIDS_DIR = gridsDir();
const EVAL_SAMPLES = 1_000_000;

mkdirSync(GRIDS_DIR, { recursive: true });
for (const [d, n] of SHIPPED_GRIDS.filter(([d, n]) => only.includes(`${d}x${n}`))) {
  const [rounds, samples] = ROUNDS[`${d}x${n}`] ?? [0, 0];
  const t0 = performance.now();
  const seed = 1000 + 10 * d + n;
  let points: Float32Array;
  let method: string;
  if (d === 1) {
    points = Float32Array.from(lloydMax1d(n).points);
    method = 'Lloyd–Max with exact Gaussian integrals';
  } else {
    points = lloydVq({ d, n, rounds, samplesPerRound: samples, seed }).points;
    method = `k-means++ then ${rounds} Lloyd rounds on fresh N(0, I) samples of ${samples}`;
  }
  const grid = new Grid(d, n, points);
  const rng = new Rng(seed + 1);
  const mse = measureGridMse(grid, EVAL_SAMPLES / d, () => rng.normal());
  const file: GridFile = { d, n, points: Array.from(points, (v) => Number(v.toPrecision(7))), mse, seed, samples: EVAL_SAMPLES / d, method };
  writeFileSync(join(GRIDS_DIR, gridFileName(d, n)), JSON.stringify(file) + '\n');
  console.log(`${d}x${n}: mse ${mse.toFixed(5)} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
}
