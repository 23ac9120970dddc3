/** `aquakv grids`: every shipped grid with its bits per value and MSE on fresh normal samples. */
import { listGrids, loadGrid, measureGridMse, readGridFile } from '../quant/grid.js';
import { Rng } from '../tensor/rng.js';
import { intOpt, MAX_SEED, opt, parse } from './args.js';
import { jsonOption } from './common-options.js';
import type { Command } from './command.js';

const options = {
  samples: opt('N', 'fresh N(0, 1) values to measure each grid\'s MSE on (at most 1e8)', 1_000_000),
  seed: opt('S', 'seed of those values', 2024),
  json: jsonOption,
};

export const gridsCommand: Command = {
  summary: 'list the shipped HIGGS grids with bits per value and measured MSE',
  options,
  run(argv) {
    const o = parse(argv, options);
    const samples = intOpt(o.samples, 'samples', 1_000_000, 1000, 100_000_000);
    const seed = intOpt(o.seed, 'seed', 2024, 0, MAX_SEED);
    const rows = listGrids().map(({ d, n }) => {
      const rng = new Rng(seed);
      const file = readGridFile(d, n);
      return {
        grid: `${d}x${n}`, d, n, bitsPerValue: Math.log2(n) / d,
        mse: measureGridMse(loadGrid(d, n), Math.ceil(samples / d), () => rng.normal()),
        generatorMse: file.mse, samples, seed, spec: `higgs:${d}x${n}`,
      };
    });
    if (o.json) {
      console.log(JSON.stringify({ grids: rows }, null, 2));
      return;
    }
    console.log(`MSE per coordinate on ${samples} fresh N(0, 1) values (seed ${seed}); a value's relative error ≈ MSE`);
    console.log('grid    d    n  bits/value  MSE       generator MSE  spec');
    for (const r of rows) {
      console.log(`${r.grid.padEnd(7)} ${String(r.d).padStart(1)} ${String(r.n).padStart(4)}  ${r.bitsPerValue.toFixed(2).padStart(10)}  ${r.mse.toFixed(5)}   ${r.generatorMse.toFixed(5)}        ${r.spec}`);
    }
  },
};
