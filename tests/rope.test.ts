import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rope, ropeInvFreq } from '../src/model/rope.js';
import { rmsNorm } from '../src/model/ops.js';

test('RoPE rotates channel pairs (i, i + hd/2) by pos·θ_i, θ_i = base^(−2i/hd)', () => {
  const rope = new Rope(4, 100, null); // θ = [1, 0.1]
  const x = Float32Array.of(1, 2, 3, 4);
  rope.apply(x, 1, 1, 3);
  const c0 = Math.cos(3), s0 = Math.sin(3), c1 = Math.cos(0.3), s1 = Math.sin(0.3);
  const want = [1 * c0 - 3 * s0, 2 * c1 - 4 * s1, 3 * c0 + 1 * s0, 4 * c1 + 2 * s1];
  want.forEach((w, i) => assert.ok(Math.abs(x[i] - w) < 1e-6, `channel ${i}: ${x[i]} vs ${w}`));
});

test('RoPE rotates in f32 arithmetic, as transformers does: each product rounded to f32, then their sum', () => {
  const hd = 64, heads = 2, n = 40, start = 700;
  const rope = new Rope(hd, 10000, null);
  const x = Float32Array.from({ length: n * heads * hd }, (_, i) => Math.sin(i * 0.37) * (1 + (i % 7)));
  const got = x.slice();
  rope.apply(got, n, heads, start);
  const { cos, sin } = rope.tables(start + n);
  const f = Math.fround;
  const half = hd / 2;
  let fromF64 = 0; // elements where rotating in f64 (one rounding) would give other bits
  for (let t = 0; t < n; t++) {
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < half; i++) {
        const o = (t * heads + h) * hd;
        const c = cos[(start + t) * half + i], s = sin[(start + t) * half + i];
        const x1 = x[o + i], x2 = x[o + i + half];
        const want = [f(f(x1 * c) - f(x2 * s)), f(f(x2 * c) + f(x1 * s))];
        assert.ok(Object.is(got[o + i], want[0]) && Object.is(got[o + i + half], want[1]), `row ${t} head ${h} pair ${i}`);
        if (f(x1 * c - x2 * s) !== want[0] || f(x2 * c + x1 * s) !== want[1]) fromF64++;
      }
    }
  }
  assert.ok(fromF64 > 0, 'the inputs tell f32 arithmetic from f64');
});

test('RoPE at position 0 is the identity and inverse undoes it at every position', () => {
  const rope = new Rope(8, 10000, null);
  const orig = Float32Array.from({ length: 5 * 16 }, (_, i) => Math.sin(i));
  const x = orig.slice();
  rope.apply(x, 1, 2, 0);
  assert.deepEqual(Array.from(x.subarray(0, 16)), Array.from(orig.subarray(0, 16)));
  const y = orig.slice();
  rope.apply(y, 5, 2, 100);
  rope.apply(y, 5, 2, 100, true);
  for (let i = 0; i < y.length; i++) assert.ok(Math.abs(y[i] - orig[i]) < 1e-5);
});

test('llama3 scaling keeps short wavelengths, divides long ones by factor, blends between', () => {
  const plain = ropeInvFreq(64, 500000, null);
  const scaled = ropeInvFreq(64, 500000, { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 });
  const wl = (f: number) => (2 * Math.PI) / f;
  for (let i = 0; i < 32; i++) {
    if (wl(plain[i]) < 8192 / 4) assert.equal(scaled[i], plain[i]);
    else if (wl(plain[i]) > 8192) assert.ok(Math.abs(scaled[i] - plain[i] / 8) < 1e-15);
    else {
      const smooth = (8192 / wl(plain[i]) - 1) / 3;
      assert.ok(Math.abs(scaled[i] - ((1 - smooth) * plain[i] / 8 + smooth * plain[i])) < 1e-15);
    }
  }
  assert.ok(scaled.some((f, i) => f !== plain[i]));
});

test('RMSNorm matches the hand-computed value', () => {
  const out = new Float32Array(4);
  rmsNorm(out, Float32Array.of(1, 2, 3, 4), Float32Array.of(1, 1, 2, 0.5), 1, 4, 0);
  const r = Math.sqrt((1 + 4 + 9 + 16) / 4);
  [1 / r, 2 / r, 6 / r, 2 / r].forEach((w, i) => assert.ok(Math.abs(out[i] - w) < 1e-6));
});
