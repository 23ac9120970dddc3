/**
 * What dependency-cruiser (.dependency-cruiser.cjs, run by `npm test` before these tests) cannot
 * see: the browser-safe core reads no `process` and no `Buffer`, and the shipped-grid manifest
 * matches grids/.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SHIPPED_GRIDS, gridFileName, loadGrid, readGridFile, registerGridFile } from '../src/quant/grid.js';
import { platform } from '../src/platform/index.js';
import { sha256 } from '../src/platform/sha256.js';
import fc from 'fast-check';

const ROOT = resolve(fileURLToPath(import.meta.url), '../../..');
const CORE = ['tensor', 'model', 'quant', 'kv', 'predictors'];

test('the core (tensor, model, quant, kv, predictors) reads no process and no Buffer', () => {
  for (const dir of CORE) {
    for (const f of readdirSync(join(ROOT, 'src', dir)).filter((x) => x.endsWith('.ts'))) {
      const code = readFileSync(join(ROOT, 'src', dir, f), 'utf8').replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, '');
      assert.doesNotMatch(code, /\bprocess\.|\bBuffer\b/, `src/${dir}/${f}`);
    }
  }
});

test('the shipped-grid manifest lists exactly the files in grids/', () => {
  const files = readdirSync(join(ROOT, 'grids')).filter((f) => f.endsWith('.json')).sort();
  assert.deepEqual(SHIPPED_GRIDS.map(([d, n]) => gridFileName(d, n)).sort(), files);
});

test('the TypeScript SHA-256 (browsers) equals node:crypto’s on any input', () => {
  assert.equal(sha256().update('abc').digest(), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 200 }), { maxLength: 5 }), (parts) => {
      const a = sha256();
      const b = platform.sha256();
      for (const p of parts) {
        a.update(p);
        b.update(p);
      }
      return a.digest() === b.digest();
    }),
    { numRuns: 200 },
  );
});

test('grids can be supplied as data where there is no file system to read grids/ from', () => {
  const shipped = readGridFile(1, 4);
  // the same grid, scaled: the registered one is what loadGrid then serves
  registerGridFile({ ...shipped, points: shipped.points.map((p) => 2 * p) });
  const g = loadGrid(1, 4);
  assert.deepEqual(Array.from(g.points), shipped.points.map((p) => Math.fround(2 * p)));
  registerGridFile(shipped);
  assert.deepEqual(Array.from(loadGrid(1, 4).points), shipped.points.map((p) => Math.fround(p)));
});
