/**
 * Writes the WebAssembly SIMD kernels: src/tensor/kernels.wat (the text, generated here from one
 * template per weight type, kept for reading) and src/tensor/kernels-wasm.ts (its bytes, base64,
 * assembled with wabt). tests/kernels.test.ts regenerates both and checks they match.
 *
 *   npm run kernels:generate
 *
 * Kernels (all addresses are byte offsets into the module's one memory):
 *   dot_T(w, x, y, m, k, n, ldy)   y[i·ldy + j] = Σ_p x[i·k + p] · w[j·k + p]
 *       for i < m, j < n; w rows of type T (f32, bf16 or f16), x and y f32; k a multiple of 8.
 *       Every x row against a weight row while it sits in L1, so the weights stream from memory
 *       once whatever m is. For m < 4 one weight row per pass: the weights are read in order, one
 *       stream, which the hardware prefetches (four rows side by side, 512 bytes each at the
 *       embedded model's widths, it did not: the model's 25 decode products took 1.7–2.2 ms with
 *       the cache's 25 MB read between steps, against 0.9 ms one row at a time, and 1.3 against
 *       1.1 ms without). For m ≥ 4, four weight rows per pass, each x load serving four (12% faster
 *       at m = 16), then one at a time for the rest. dot_f32 always takes four: it serves decode
 *       attention's Q·Kᵀ, rows of 64 keys, where a pass per row pays its sum and store every 64
 *       products (5% slower). Each output's sum runs in one fixed order
 *       (8 lane accumulators over p, then lanes added pairwise), so a row's result never depends
 *       on m, n or the other rows.
 *       For 16-bit T, x comes in pair order: in each group of 8, the 4 even elements then the 4
 *       odd ones. A loaded 32-bit word holds an even weight in its low half and an odd one in its
 *       high half, and each half becomes f32 lanes in place (no unpacking; see `pairWidened`).
 *   dot_f16(w, x, y, m, k, n, ldy, u)  as above, x in pair order and scaled by 2ˢ, the row's sums
 *       then multiplied by u[i] = 2¹¹²⁻ˢ (f32 at byte offset u + 4i): the weights are widened as
 *       w·2⁻¹¹², and the scale is moved off the weights onto x (once per row) and the sums.
 *   widen_T(src, dst, count)       dst[i] = f32(src[i]) for 16-bit T; count a multiple of 8.
 *   softmax_f32(x, len, scale)     in place: x[j] = exp(scale·(x[j] − max)) / Σ, over len values
 *       (len a multiple of 4; the caller pads). exp as Cephes' expf: n = round(x·log₂e),
 *       r = x − n·ln 2 in two parts, a degree-6 polynomial, then 2ⁿ into the exponent bits
 *       (~1 ulp); arguments below −87.3 give 0. The sum runs in 4 lanes.
 *   rows_f32(b, a, y, m, k, n)     y[i·n + j] = Σ_p a[i·k + p] · b[p·n + j]: B as [K, N] (attention's
 *       probabilities times values), n a multiple of 4; 16 outputs of two rows per pass (B read
 *       once for both), then of the row left over, each output summed over p in order, so each
 *       is one fixed-order sum whatever m is. B is taken in blocks of 1 KB of rows (at least
 *       4), every pass over a block's columns before the next block: the passes then read a
 *       small dense region at a time, which the hardware prefetches, where passes over all of B
 *       read one line of every row, 256 bytes apart. Decode attention's P·V at 4 096 tokens
 *       (12 heads of [4096, 64]): 0.48 ms against 1.2–1.3 ms, 26 against ~10 GB/s; blocks of
 *       4–64 KB measured 10–14 GB/s, 256 bytes 13. A block's sums start from the last block's
 *       (kept in y), so each output is still the same sum in the same order.
 *   higgs_rotate(y, norms, rows, P, G)  HIGGS's encoding before the grid, in place on y [rows, P]
 *       (tokens zero-padded to P, a multiple of G): per group of G, ss = Σ y² summed in order in
 *       f64, norm = √ss (f64, to norms[row·P/G + group]), the unnormalised Walsh–Hadamard
 *       transform (stages h = 1, 2 by lane shuffles, then 4-lane butterflies), then each value
 *       times 1/norm (0 for a zero group) in f64, rounded to f32. G a multiple of 8. Every
 *       operation is the one quant/higgs.ts's JavaScript does (a sum of two f32 computed in f64
 *       and rounded to f32 is the f32 sum), so the result is the same bit for bit.
 *   nearest_D(y, count, idx, pts, nrm, start, items, lo, cell, cells, n)   for D = 2, 4: the index
 *       of the grid point nearest each of `count` D-subvectors of y, as quant/grid.ts's search:
 *       the bucket of y (cells per axis from lo, side cell) lists its candidates (CSR: start,
 *       items); outside the table, every point. Scores 2·y·p − ‖p‖² in f64, in the same order,
 *       the first best kept: the same index as the JavaScript search.
 *   higgs_points(codes, rows, rowBytes, perRow, bits, d, pts, out)   each row's perRow codes of
 *       `bits` bits (packed least significant first, rows of rowBytes bytes) → their grid points'
 *       d coordinates, copied to out [rows, perRow·d].
 *   scale_add(y, scales, out, rows, C, P, G, add)   out[t·C + c] (+)= y[t·P + c] · scales[t·P/G + c/G]
 *       for c < C: f32 products (and sums), as the JavaScript rounds them.
 *   pack_codes(idx, rows, perRow, bits, out, rowBytes)   each row's perRow indices (i32) packed
 *       into rowBytes bytes at `bits` bits each, least significant first (as quant/bitpack.ts).
 *   points_scaled(codes, rows, rowBytes, perRow, bits, d, pts, scales, u, out, ld, pairs)   higgs_points and
 *       scale_rows in one pass for one group per row (P = perRow·d, a multiple of 4): out[t·ld + c]
 *       = point[c] · scales[t] + u[c], the same f32 products and sums. A compact cache's rebuild
 *       writes each token's row of the product's input with it (u carries the predictor's bias
 *       through the transform, kv/fused-rebuild.ts); two codes of a 2-D grid (or one of a 4-D
 *       grid) make one vector. pairs (0: none): for a 2-D grid of codes narrower than 8 bits, the
 *       table of every pair of codes' four coordinates (entry c₀ | c₁ << bits), read at once.
 *   fan_rows(src, rows, C, hd, dst1, ld1, dst2, ld2, view, S, cos, sin)   each row t of src [rows, C]
 *       copied to dst1 and dst2 (rows of ld1, ld2 floats; ld 0: none) and, head by head, to
 *       view [C/hd][S, hd] row t (S 0: none), rotated there when cos is given: pair (c, c + hd/2) by
 *       cos/sin[t·hd/2 + c] (hd a multiple of 8), x₁·cos − x₂·sin and x₂·cos + x₁·sin in f32 (each
 *       product rounded, then their sum), which is what model/rope.ts's JavaScript computes, so the
 *       two agree bit for bit. A compact cache's rebuild sends each product's
 *       output to the next products' inputs and to attention's view in one pass (kv/fused-rebuild.ts).
 *   gather_rows(view, S, rows, C, hd, dst, ld)   fan_rows' view back to rows: dst[t·ld + h·hd + c] =
 *       view[(h·S + t)·hd + c] (hd a multiple of 4): the values a compact cache rebuilt for
 *       attention are the next layer's input (kv/fused-rebuild.ts).
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

export type KernelDtype = 'f32' | 'bf16' | 'f16';
const DTYPES: KernelDtype[] = ['f32', 'bf16', 'f16'];

const elementBytes = (t: KernelDtype) => (t === 'f32' ? 4 : 2);

/**
 * f32 lanes of 4 weights, for the widen kernels (the dot kernels use `pairWidened`). `$v` holds
 * 8 loaded 16-bit values; `half` picks lanes 0–3 or 4–7.
 *  bf16: the 16 bits are the f32's top half.
 *  f16 (finite values only; the loader refuses others): sign-extended and shifted so the magnitude
 *  bits land in f32 position; the and keeps the sign bit and clears its three copies above the
 *  exponent, leaving the value scaled by 2⁻¹¹², which one multiply by 2¹¹² restores, subnormals
 *  included (WebAssembly keeps f32 subnormals). Four operations per 4 weights.
 */
function widened(t: KernelDtype, half: 'low' | 'high'): string {
  if (t === 'bf16') return `(i32x4.shl (i32x4.extend_${half}_i16x8_u (local.get $v)) (i32.const 16))`;
  return `(f32x4.mul
              (v128.and (i32x4.shl (i32x4.extend_${half}_i16x8_s (local.get $v)) (i32.const 13))
                        (v128.const i32x4 0x8fffffff 0x8fffffff 0x8fffffff 0x8fffffff))
              (v128.const f32x4 0x1p112 0x1p112 0x1p112 0x1p112))`;
}

/**
 * f32 lanes of 4 weights for the dot kernels: `$v` holds 4 words of two 16-bit weights each;
 * `half` picks the even weights (low halves) or the odd ones (high halves), in place, with the
 * mask hoisted into `$mask`:
 *  bf16: low halves shifted up 16; high halves with the low bits cleared. One operation.
 *  f16: the half moved to the top (low only), shifted right 3 with the sign copied, and masked to
 *  sign plus magnitude in f32 position: w·2⁻¹¹² exactly, subnormals included. Two or three
 *  operations, where unpacking and restoring the scale took four per 4 weights (x carries 2¹¹²).
 */
function pairWidened(t: KernelDtype, half: 'low' | 'high'): string {
  if (t === 'bf16') return half === 'low' ? `(i32x4.shl (local.get $v) (i32.const 16))` : `(v128.and (local.get $v) (local.get $mask))`;
  const top = half === 'low' ? `(i32x4.shl (local.get $v) (i32.const 16))` : `(local.get $v)`;
  return `(v128.and (i32x4.shr_s ${top} (i32.const 3)) (local.get $mask))`;
}

/** The dot kernels' weight mask (see `pairWidened`). */
const PAIR_MASK: Record<'bf16' | 'f16', string> = { bf16: '0xffff0000', f16: '0x8fffe000' };

/** Adds w-row r's next 8 products into its two accumulators. */
function accumulate(t: KernelDtype, r: number): string {
  const at = `(i32.add (local.get $w${r}) (local.get $pw))`;
  if (t === 'f32') {
    return `
          (local.set $lo${r} (f32x4.add (local.get $lo${r}) (f32x4.mul (local.get $x0) (v128.load ${at}))))
          (local.set $hi${r} (f32x4.add (local.get $hi${r}) (f32x4.mul (local.get $x1) (v128.load offset=16 ${at}))))`;
  }
  return `
          (local.set $v (v128.load ${at}))
          (local.set $lo${r} (f32x4.add (local.get $lo${r}) (f32x4.mul (local.get $x0) ${pairWidened(t, 'low')})))
          (local.set $hi${r} (f32x4.add (local.get $hi${r}) (f32x4.mul (local.get $x1) ${pairWidened(t, 'high')})))`;
}

/** The sum of row r's accumulators: lo + hi, then lanes ((0 + 1) + (2 + 3)); for f16 times u[i]. */
function total(t: KernelDtype, r: number): string {
  const lane = (i: number) => `(f32x4.extract_lane ${i} (local.get $s))`;
  const sum = `(block (result f32)
            (local.set $s (f32x4.add (local.get $lo${r}) (local.get $hi${r})))
            (f32.add (f32.add ${lane(0)} ${lane(1)}) (f32.add ${lane(2)} ${lane(3)})))`;
  return t === 'f16' ? `(f32.mul ${sum} (local.get $unscale))` : sum;
}

/** dot_T over `rows` weight rows per pass (4 when m ≥ 4, then 1 for what is left; see the header). */
function pass(t: KernelDtype, rows: number, label: string): string {
  const rs = [...Array(rows).keys()];
  return `
    (block $${label}_done
      (loop $${label}
        (br_if $${label}_done (i32.gt_u (i32.add (local.get $j) (i32.const ${rows})) (local.get $n)))
        (local.set $w0 (i32.add (local.get $w) (i32.mul (local.get $j) (local.get $wstride))))
${rs.slice(1).map((r) => `        (local.set $w${r} (i32.add (local.get $w${r - 1}) (local.get $wstride)))`).join('\n')}
        (local.set $i (i32.const 0))
        (block $${label}_rows_done
          (loop $${label}_rows
            (br_if $${label}_rows_done (i32.ge_u (local.get $i) (local.get $m)))
            (local.set $px (i32.add (local.get $x) (i32.mul (local.get $i) (local.get $xstride))))${t === 'f16' ? `
            (local.set $unscale (f32.load (i32.add (local.get $u) (i32.shl (local.get $i) (i32.const 2)))))` : ''}
${rs.map((r) => `            (local.set $lo${r} (v128.const i32x4 0 0 0 0)) (local.set $hi${r} (v128.const i32x4 0 0 0 0))`).join('\n')}
            (local.set $pw (i32.const 0))
            (block $${label}_k_done
              (loop $${label}_k
                (br_if $${label}_k_done (i32.ge_u (local.get $pw) (local.get $wstride)))
                (local.set $x0 (v128.load (local.get $px)))
                (local.set $x1 (v128.load offset=16 (local.get $px)))${rs.map((r) => accumulate(t, r)).join('')}
                (local.set $px (i32.add (local.get $px) (i32.const 32)))
                (local.set $pw (i32.add (local.get $pw) (i32.const ${8 * elementBytes(t)})))
                (br $${label}_k)))
            (local.set $py (i32.add (local.get $y) (i32.shl (i32.add (i32.mul (local.get $i) (local.get $ldy)) (local.get $j)) (i32.const 2))))
${rs.map((r) => `            (f32.store offset=${4 * r} (local.get $py) ${total(t, r)})`).join('\n')}
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $${label}_rows)))
        (local.set $j (i32.add (local.get $j) (i32.const ${rows})))
        (br $${label})))`;
}

function dotKernel(t: KernelDtype): string {
  return `
  (func (export "dot_${t}") (param $w i32) (param $x i32) (param $y i32) (param $m i32) (param $k i32) (param $n i32) (param $ldy i32)${t === 'f16' ? ' (param $u i32)' : ''}
    (local $i i32) (local $j i32) (local $pw i32) (local $px i32) (local $py i32) (local $wstride i32) (local $xstride i32)
    (local $w0 i32) (local $w1 i32) (local $w2 i32) (local $w3 i32) (local $unscale f32)
    (local $x0 v128) (local $x1 v128) (local $v v128) (local $s v128) (local $mask v128)
    (local $lo0 v128) (local $lo1 v128) (local $lo2 v128) (local $lo3 v128)
    (local $hi0 v128) (local $hi1 v128) (local $hi2 v128) (local $hi3 v128)
${t === 'f32' ? '' : `    ;; a constant in a local: written inside the loop it would be rebuilt at every use
    (local.set $mask (v128.const i32x4 ${Array(4).fill(PAIR_MASK[t]).join(' ')}))
`}    (local.set $wstride (i32.mul (local.get $k) (i32.const ${elementBytes(t)})))
    (local.set $xstride (i32.shl (local.get $k) (i32.const 2)))
    ${t === 'f32' ? pass(t, 4, 'four') : `(if (i32.ge_u (local.get $m) (i32.const 4)) (then${pass(t, 4, 'four')}))`}${pass(t, 1, 'one')})`;
}

function widenKernel(t: KernelDtype): string {
  return `
  (func (export "widen_${t}") (param $src i32) (param $dst i32) (param $count i32)
    (local $end i32) (local $v v128)
    (local.set $end (i32.add (local.get $src) (i32.shl (local.get $count) (i32.const 1))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $src) (local.get $end)))
        (local.set $v (v128.load (local.get $src)))
        (v128.store (local.get $dst) ${widened(t, 'low')})
        (v128.store offset=16 (local.get $dst) ${widened(t, 'high')})
        (local.set $src (i32.add (local.get $src) (i32.const 16)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 32)))
        (br $next))))`;
}

/**
 * The module text. `shared`: the memory import is a shared memory (threads run kernels on one
 * arena from several workers); the code is the same.
 */
function rowsKernel(): string {
  // `rows` rows of A (1 or 2) against one sweep of B: with two, each loaded piece of B serves both
  // (accumulators $s for row i, $t for row i + 1), so B streams from memory half as often
  const step = (lanes: number[], rows: number) => lanes.map((q) => `
              (local.set $v (v128.load offset=${16 * q} (local.get $pb)))
              (local.set $s${q} (f32x4.add (local.get $s${q}) (f32x4.mul (local.get $av) (local.get $v))))${rows === 2 ? `
              (local.set $t${q} (f32x4.add (local.get $t${q}) (f32x4.mul (local.get $bv) (local.get $v))))` : ''}`).join('');
  // one pass: `width` outputs (16 or 4) of `rows` rows starting at column j
  const pass = (width: number, rows: number, label: string) => {
    const lanes = [0, 1, 2, 3].slice(0, width / 4);
    const acc = rows === 2 ? ['s', 't'] : ['s'];
    return `
        (block $${label}_done
          (loop $${label}
            (br_if $${label}_done (i32.gt_u (i32.add (local.get $j) (i32.const ${width})) (local.get $n)))
            (local.set $py (i32.add (local.get $yrow) (i32.shl (local.get $j) (i32.const 2))))
${acc.flatMap((a, r) => lanes.map((q) => `            (local.set $${a}${q} (select (v128.const i32x4 0 0 0 0) (v128.load offset=${16 * q} ${r ? '(i32.add (local.get $py) (local.get $bstride))' : '(local.get $py)'}) (i32.eqz (local.get $p0))))`)).join('\n')}
            (local.set $pa (i32.add (local.get $arow) (i32.shl (local.get $p0) (i32.const 2))))
            (local.set $pb (i32.add (i32.add (local.get $b) (i32.mul (local.get $p0) (local.get $bstride))) (i32.shl (local.get $j) (i32.const 2))))
            (local.set $p (local.get $p0))
            (block $${label}_k_done
              (loop $${label}_k
                (br_if $${label}_k_done (i32.ge_u (local.get $p) (local.get $pend)))
                (local.set $av (v128.load32_splat (local.get $pa)))${rows === 2 ? `
                (local.set $bv (v128.load32_splat (i32.add (local.get $pa) (local.get $astride))))` : ''}${step(lanes, rows)}
                (local.set $pa (i32.add (local.get $pa) (i32.const 4)))
                (local.set $pb (i32.add (local.get $pb) (local.get $bstride)))
                (local.set $p (i32.add (local.get $p) (i32.const 1)))
                (br $${label}_k)))
${lanes.map((q) => `            (v128.store offset=${16 * q} (local.get $py) (local.get $s${q}))`).join('\n')}${rows === 2 ? '\n' + lanes.map((q) => `            (v128.store offset=${16 * q} (i32.add (local.get $py) (local.get $bstride)) (local.get $t${q}))`).join('\n') : ''}
            (local.set $j (i32.add (local.get $j) (i32.const ${width})))
            (br $${label})))`;
  };
  const rowsAt = `
        (local.set $arow (i32.add (local.get $a) (i32.mul (local.get $i) (local.get $astride))))
        (local.set $yrow (i32.add (local.get $y) (i32.mul (local.get $i) (local.get $bstride))))`;
  // the passes over one block of B's rows [p0, pend), then the next block
  const blocks = (label: string, passes: string) => `
        (local.set $p0 (i32.const 0))
        (block $${label}_blocks_done
          (loop $${label}_blocks
            (br_if $${label}_blocks_done (i32.ge_u (local.get $p0) (local.get $k)))
            (local.set $pend (select (local.get $k) (i32.add (local.get $p0) (local.get $prows))
                                     (i32.gt_u (i32.add (local.get $p0) (local.get $prows)) (local.get $k))))
            (local.set $j (i32.const 0))${passes}
            (local.set $p0 (local.get $pend))
            (br $${label}_blocks)))`;
  return `
  (func (export "rows_f32") (param $b i32) (param $a i32) (param $y i32) (param $m i32) (param $k i32) (param $n i32)
    (local $i i32) (local $j i32) (local $p i32) (local $pa i32) (local $pb i32) (local $py i32)
    (local $arow i32) (local $yrow i32) (local $astride i32) (local $bstride i32) (local $av v128) (local $bv v128) (local $v v128)
    (local $p0 i32) (local $pend i32) (local $prows i32)
    (local $s0 v128) (local $s1 v128) (local $s2 v128) (local $s3 v128)
    (local $t0 v128) (local $t1 v128) (local $t2 v128) (local $t3 v128)
    (local.set $astride (i32.shl (local.get $k) (i32.const 2)))
    (local.set $bstride (i32.shl (local.get $n) (i32.const 2)))
    ;; rows of B per block: 1 KB of them, at least four
    (local.set $prows (select (i32.const 4) (i32.div_u (i32.const 1024) (local.get $bstride))
                              (i32.gt_u (local.get $bstride) (i32.const 256))))
    (block $pairs_done
      (loop $pairs
        (br_if $pairs_done (i32.gt_u (i32.add (local.get $i) (i32.const 2)) (local.get $m)))${rowsAt}${blocks('pair', pass(16, 2, 'pair_wide') + pass(4, 2, 'pair_narrow'))}
        (local.set $i (i32.add (local.get $i) (i32.const 2)))
        (br $pairs)))
    (block $done
      (loop $row
        (br_if $done (i32.ge_u (local.get $i) (local.get $m)))${rowsAt}${blocks('one', pass(16, 1, 'wide') + pass(4, 1, 'narrow'))}
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $row))))`;
}

function softmaxKernel(): string {
  const splat = (v: string) => `(v128.const f32x4 ${v} ${v} ${v} ${v})`;
  const poly = ['1.9875691500e-4', '1.3981999507e-3', '8.3334519073e-3', '4.1665795894e-2', '1.6666665459e-1', '5.0000001201e-1'];
  // p = ((((c0·r + c1)·r + c2)·r + c3)·r + c4)·r + c5
  let p = splat(poly[0]);
  for (const c of poly.slice(1)) p = `(f32x4.add (f32x4.mul ${p} (local.get $r)) ${splat(c)})`;
  return `
  (func (export "softmax_f32") (param $x i32) (param $len i32) (param $scale f32)
    (local $p i32) (local $end i32) (local $m v128) (local $v v128) (local $n v128) (local $r v128) (local $e v128)
    (local $sum v128) (local $max f32) (local $inv v128) (local $sc v128)
    (local.set $end (i32.add (local.get $x) (i32.shl (local.get $len) (i32.const 2))))
    ;; the largest value
    (local.set $m ${splat('-inf')})
    (local.set $p (local.get $x))
    (block $d1 (loop $l1
      (br_if $d1 (i32.ge_u (local.get $p) (local.get $end)))
      (local.set $m (f32x4.pmax (local.get $m) (v128.load (local.get $p))))
      (local.set $p (i32.add (local.get $p) (i32.const 16)))
      (br $l1)))
    (local.set $max (f32.max (f32.max (f32x4.extract_lane 0 (local.get $m)) (f32x4.extract_lane 1 (local.get $m)))
                             (f32.max (f32x4.extract_lane 2 (local.get $m)) (f32x4.extract_lane 3 (local.get $m)))))
    (local.set $m (f32x4.splat (local.get $max)))
    (local.set $sc (f32x4.splat (local.get $scale)))
    ;; exponentials and their sum
    (local.set $sum ${splat('0')})
    (local.set $p (local.get $x))
    (block $d2 (loop $l2
      (br_if $d2 (i32.ge_u (local.get $p) (local.get $end)))
      (local.set $v (f32x4.mul (f32x4.sub (v128.load (local.get $p)) (local.get $m)) (local.get $sc)))
      (local.set $n (f32x4.nearest (f32x4.mul (f32x4.pmax (local.get $v) ${splat('-87.3')}) ${splat('1.44269504088896341')})))
      (local.set $r (f32x4.sub (f32x4.sub (f32x4.pmax (local.get $v) ${splat('-87.3')}) (f32x4.mul (local.get $n) ${splat('0.693359375')}))
                               (f32x4.mul (local.get $n) ${splat('-2.12194440e-4')})))
      (local.set $e (f32x4.add (f32x4.add (f32x4.mul ${p} (f32x4.mul (local.get $r) (local.get $r))) (local.get $r)) ${splat('1')}))
      ;; · 2ⁿ: n added to the exponent bits; below the clamp, 0 (a NaN stays NaN, and so does the sum)
      (local.set $e (i32x4.add (local.get $e) (i32x4.shl (i32x4.trunc_sat_f32x4_s (local.get $n)) (i32.const 23))))
      (local.set $e (v128.andnot (local.get $e) (f32x4.lt (local.get $v) ${splat('-87.3')})))
      (v128.store (local.get $p) (local.get $e))
      (local.set $sum (f32x4.add (local.get $sum) (local.get $e)))
      (local.set $p (i32.add (local.get $p) (i32.const 16)))
      (br $l2)))
    (local.set $inv (f32x4.splat (f32.div (f32.const 1)
      (f32.add (f32.add (f32x4.extract_lane 0 (local.get $sum)) (f32x4.extract_lane 1 (local.get $sum)))
               (f32.add (f32x4.extract_lane 2 (local.get $sum)) (f32x4.extract_lane 3 (local.get $sum)))))))
    (local.set $p (local.get $x))
    (block $d3 (loop $l3
      (br_if $d3 (i32.ge_u (local.get $p) (local.get $end)))
      (v128.store (local.get $p) (f32x4.mul (v128.load (local.get $p)) (local.get $inv)))
      (local.set $p (i32.add (local.get $p) (i32.const 16)))
      (br $l3))))`;
}

/** The f32 lanes of two vectors, picked by lane (0–3 from a, 4–7 from b), as an i8x16.shuffle's bytes. */
const lanes = (...l: number[]) => l.flatMap((x) => [0, 1, 2, 3].map((b) => 4 * x + b)).join(' ');

function higgsRotateKernel(): string {
  return `
  (func (export "higgs_rotate") (param $y i32) (param $norms i32) (param $rows i32) (param $P i32) (param $G i32)
    (local $o i32) (local $end i32) (local $last i32) (local $p i32) (local $ss f64) (local $v f64) (local $norm f64) (local $inv f64)
    (local $h i32) (local $i i32) (local $j i32) (local $a v128) (local $b v128) (local $w v128) (local $nat i32)
    (local.set $o (local.get $y))
    (local.set $last (i32.add (local.get $y) (i32.shl (i32.mul (local.get $rows) (local.get $P)) (i32.const 2))))
    (local.set $nat (local.get $norms))
    (block $groups_done (loop $group
      (br_if $groups_done (i32.ge_u (local.get $o) (local.get $last)))
      (local.set $end (i32.add (local.get $o) (i32.shl (local.get $G) (i32.const 2))))
      ;; the group's norm, summed in order in f64
      (local.set $ss (f64.const 0))
      (local.set $p (local.get $o))
      (block $ss_done (loop $ss_loop
        (br_if $ss_done (i32.ge_u (local.get $p) (local.get $end)))
        (local.set $v (f64.promote_f32 (f32.load (local.get $p))))
        (local.set $ss (f64.add (local.get $ss) (f64.mul (local.get $v) (local.get $v))))
        (local.set $p (i32.add (local.get $p) (i32.const 4)))
        (br $ss_loop)))
      (local.set $norm (f64.sqrt (local.get $ss)))
      (f64.store (local.get $nat) (local.get $norm))
      (local.set $nat (i32.add (local.get $nat) (i32.const 8)))
      ;; h = 1 and h = 2 inside each vector
      (local.set $p (local.get $o))
      (block $h12_done (loop $h12
        (br_if $h12_done (i32.ge_u (local.get $p) (local.get $end)))
        (local.set $a (v128.load (local.get $p)))
        (local.set $w (i8x16.shuffle ${lanes(1, 0, 3, 2)} (local.get $a) (local.get $a)))
        (local.set $a (i8x16.shuffle ${lanes(0, 5, 2, 7)} (f32x4.add (local.get $a) (local.get $w)) (f32x4.sub (local.get $w) (local.get $a))))
        (local.set $w (i8x16.shuffle ${lanes(2, 3, 0, 1)} (local.get $a) (local.get $a)))
        (v128.store (local.get $p) (i8x16.shuffle ${lanes(0, 1, 6, 7)} (f32x4.add (local.get $a) (local.get $w)) (f32x4.sub (local.get $w) (local.get $a))))
        (local.set $p (i32.add (local.get $p) (i32.const 16)))
        (br $h12)))
      ;; h = 4, 8, … (in bytes 16, 32, …): butterflies of whole vectors
      (local.set $h (i32.const 16))
      (block $stages_done (loop $stage
        (br_if $stages_done (i32.ge_u (local.get $h) (i32.shl (local.get $G) (i32.const 2))))
        (local.set $i (local.get $o))
        (block $blocks_done (loop $blocks
          (br_if $blocks_done (i32.ge_u (local.get $i) (local.get $end)))
          (local.set $j (local.get $i))
          (block $pairs_done (loop $pairs
            (br_if $pairs_done (i32.ge_u (local.get $j) (i32.add (local.get $i) (local.get $h))))
            (local.set $a (v128.load (local.get $j)))
            (local.set $b (v128.load (i32.add (local.get $j) (local.get $h))))
            (v128.store (local.get $j) (f32x4.add (local.get $a) (local.get $b)))
            (v128.store (i32.add (local.get $j) (local.get $h)) (f32x4.sub (local.get $a) (local.get $b)))
            (local.set $j (i32.add (local.get $j) (i32.const 16)))
            (br $pairs)))
          (local.set $i (i32.add (local.get $i) (i32.shl (local.get $h) (i32.const 1))))
          (br $blocks)))
        (local.set $h (i32.shl (local.get $h) (i32.const 1)))
        (br $stage)))
      ;; scaled to unit norm in f64, rounded to f32
      (local.set $inv (select (f64.div (f64.const 1) (local.get $norm)) (f64.const 0) (f64.gt (local.get $norm) (f64.const 0))))
      (local.set $p (local.get $o))
      (block $scale_done (loop $scale
        (br_if $scale_done (i32.ge_u (local.get $p) (local.get $end)))
        (f32.store (local.get $p) (f32.demote_f64 (f64.mul (f64.promote_f32 (f32.load (local.get $p))) (local.get $inv))))
        (local.set $p (i32.add (local.get $p) (i32.const 4)))
        (br $scale)))
      (local.set $o (local.get $end))
      (br $group))))`;
}

function nearestKernel(d: 2 | 4): string {
  const ys = Array.from({ length: d }, (_, i) => `$y${i}`);
  const coord = (i: number) => `(f64.promote_f32 (f32.load offset=${4 * i} (local.get $pp)))`;
  // ((y0·p0 + y1·p1) + y2·p2) + …, as the JavaScript writes it; the exhaustive search starts from 0
  const dot = (from0: boolean) => ys.reduce((acc, y, i) => {
    const term = `(f64.mul (local.get ${y}) ${coord(i)})`;
    return acc === '' ? (from0 ? `(f64.add (f64.const 0) ${term})` : term) : `(f64.add ${acc} ${term})`;
  }, '');
  const score = (from0: boolean) => `(f64.sub (f64.mul (f64.const 2) ${dot(from0)}) (f64.promote_f32 (f32.load (i32.add (local.get $nrm) (i32.shl (local.get $j) (i32.const 2))))))`;
  const keep = (from0: boolean) => `
          (local.set $pp (i32.add (local.get $pts) (i32.shl (local.get $j) (i32.const ${Math.log2(4 * d)}))))
          (local.set $s ${score(from0)})
          (if (f64.gt (local.get $s) (local.get $bestScore)) (then (local.set $best (local.get $j)) (local.set $bestScore (local.get $s))))`;
  const cellOf = (i: number) => `(f64.floor (f64.div (f64.sub (local.get $y${i}) (local.get $lo)) (local.get $cell)))`;
  const loadY = ys.map((y, i) => `(local.set ${y} (f64.promote_f32 (f32.load offset=${4 * i} (local.get $p))))`).join('\n      ');
  // Two passes: the first finds every subvector's bucket (−1 outside the table) and touches its
  // first candidate, independent loads the processor overlaps, so the second, which searches,
  // finds the bucket table in cache (a 4-D table is 2.9 MB, and decode pushes it out between
  // blocks). The search itself is the JavaScript's.
  return `
  (func (export "nearest_${d}d") (param $y i32) (param $count i32) (param $idx i32) (param $pts i32) (param $nrm i32)
    (param $start i32) (param $items i32) (param $lo f64) (param $cell f64) (param $cells i32) (param $n i32)
    (local $p i32) (local $q i32) (local $end i32) (local $k i32) (local $to i32) (local $j i32) (local $pp i32) (local $box i32) (local $inside i32)
    (local $touch i32) (local $c f64) (local $fc f64) (local $s f64) (local $best i32) (local $bestScore f64) ${ys.map((y) => `(local ${y} f64)`).join(' ')}
    (local.set $fc (f64.convert_i32_s (local.get $cells)))
    (local.set $end (i32.add (local.get $y) (i32.mul (local.get $count) (i32.const ${4 * d}))))
    (local.set $p (local.get $y))
    (local.set $q (local.get $idx))
    (block $found (loop $bucket
      (br_if $found (i32.ge_u (local.get $p) (local.get $end)))
      ${loadY}
      (local.set $inside (i32.const 1))
      (local.set $box (i32.const 0))
      ${ys.map((_, i) => `(local.set $c ${cellOf(i)})
      (if (i32.eqz (i32.and (f64.ge (local.get $c) (f64.const 0)) (f64.lt (local.get $c) (local.get $fc))))
        (then (local.set $inside (i32.const 0)))
        (else (local.set $box (i32.add (i32.mul (local.get $box) (local.get $cells)) (i32.trunc_f64_s (local.get $c))))))`).join('\n      ')}
      (if (local.get $inside)
        (then (local.set $touch (i32.xor (local.get $touch)
          (i32.load (i32.add (local.get $items) (i32.shl (i32.load (i32.add (local.get $start) (i32.shl (local.get $box) (i32.const 2)))) (i32.const 2)))))))
        (else (local.set $box (i32.const -1))))
      (i32.store (local.get $q) (local.get $box))
      (local.set $q (i32.add (local.get $q) (i32.const 4)))
      (local.set $p (i32.add (local.get $p) (i32.const ${4 * d})))
      (br $bucket)))
    (local.set $p (local.get $y))
    (local.set $q (local.get $idx))
    (block $done (loop $sub
      (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
      ${loadY}
      (local.set $box (i32.load (local.get $q)))
      (local.set $bestScore (f64.const -inf))
      (if (i32.ge_s (local.get $box) (i32.const 0))
        (then
          (local.set $k (i32.load (i32.add (local.get $start) (i32.shl (local.get $box) (i32.const 2)))))
          (local.set $to (i32.load offset=4 (i32.add (local.get $start) (i32.shl (local.get $box) (i32.const 2)))))
          (local.set $best (i32.load (i32.add (local.get $items) (i32.shl (local.get $k) (i32.const 2)))))
          (block $cands_done (loop $cands
            (br_if $cands_done (i32.ge_s (local.get $k) (local.get $to)))
            (local.set $j (i32.load (i32.add (local.get $items) (i32.shl (local.get $k) (i32.const 2)))))${keep(false)}
            (local.set $k (i32.add (local.get $k) (i32.const 1)))
            (br $cands))))
        (else
          (local.set $best (i32.const 0))
          (local.set $j (i32.const 0))
          (block $all_done (loop $all
            (br_if $all_done (i32.ge_s (local.get $j) (local.get $n)))${keep(true)}
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $all)))))
      (i32.store (local.get $q) (local.get $best))
      (local.set $q (i32.add (local.get $q) (i32.const 4)))
      (local.set $p (i32.add (local.get $p) (i32.const ${4 * d})))
      (br $sub)))
    ;; the touches' sum goes nowhere; the loads stay (they could trap, so they are not removed)
    (drop (local.get $touch)))`;
}

/**
 * The loops both code kernels share: over `rows` rows of packed codes (rows $rowBytes apart from
 * `base`, the row's current byte in $b, the bit accumulator $acc/$held reset per row) and over each
 * row's $perRow codes; `code` runs per code, `rowEnd` after a row's last.
 */
function codeRows(base: string, code: string, rowEnd = ''): string {
  return `
    (block $rows_done (loop $row
      (br_if $rows_done (i32.ge_u (local.get $t) (local.get $rows)))
      (local.set $b (i32.add (local.get ${base}) (i32.mul (local.get $t) (local.get $rowBytes))))
      (local.set $acc (i32.const 0))
      (local.set $held (i32.const 0))
      (local.set $s (i32.const 0))
      (block $codes_done (loop $code
        (br_if $codes_done (i32.ge_u (local.get $s) (local.get $perRow)))${code}
        (local.set $s (i32.add (local.get $s) (i32.const 1)))
        (br $code)))${rowEnd}
      (local.set $t (i32.add (local.get $t) (i32.const 1)))
      (br $row)))`;
}

function packCodesKernel(): string {
  return `
  (func (export "pack_codes") (param $idx i32) (param $rows i32) (param $perRow i32) (param $bits i32) (param $out i32) (param $rowBytes i32)
    (local $t i32) (local $s i32) (local $b i32) (local $acc i32) (local $held i32)${codeRows('$out', `
        ;; a code enters above the bits not yet written; whole bytes leave from the bottom
        (local.set $acc (i32.or (local.get $acc) (i32.shl (i32.load (local.get $idx)) (local.get $held))))
        (local.set $held (i32.add (local.get $held) (local.get $bits)))
        (local.set $idx (i32.add (local.get $idx) (i32.const 4)))
        (block $flushed (loop $flush
          (br_if $flushed (i32.lt_u (local.get $held) (i32.const 8)))
          (i32.store8 (local.get $b) (local.get $acc))
          (local.set $b (i32.add (local.get $b) (i32.const 1)))
          (local.set $acc (i32.shr_u (local.get $acc) (i32.const 8)))
          (local.set $held (i32.sub (local.get $held) (i32.const 8)))
          (br $flush)))`, `
      (if (i32.gt_u (local.get $held) (i32.const 0)) (then (i32.store8 (local.get $b) (local.get $acc))))`)})`;
}

function higgsPointsKernel(): string {
  return `
  (func (export "higgs_points") (param $codes i32) (param $rows i32) (param $rowBytes i32) (param $perRow i32) (param $bits i32)
    (param $d i32) (param $pts i32) (param $out i32)
    (local $t i32) (local $b i32) (local $acc i32) (local $held i32) (local $s i32) (local $mask i32) (local $src i32) (local $i i32)
    (local.set $mask (i32.sub (i32.shl (i32.const 1) (local.get $bits)) (i32.const 1)))${codeRows('$codes', `
        ;; bytes enter above the bits held; a code leaves from the bottom
        (block $filled (loop $fill
          (br_if $filled (i32.ge_u (local.get $held) (local.get $bits)))
          (local.set $acc (i32.or (local.get $acc) (i32.shl (i32.load8_u (local.get $b)) (local.get $held))))
          (local.set $b (i32.add (local.get $b) (i32.const 1)))
          (local.set $held (i32.add (local.get $held) (i32.const 8)))
          (br $fill)))
        (local.set $src (i32.add (local.get $pts) (i32.shl (i32.mul (i32.and (local.get $acc) (local.get $mask)) (local.get $d)) (i32.const 2))))
        (local.set $acc (i32.shr_u (local.get $acc) (local.get $bits)))
        (local.set $held (i32.sub (local.get $held) (local.get $bits)))
        ;; the point's d coordinates: one move for 2 or 4 (the grids of the ladder), else one by one
        (if (i32.eq (local.get $d) (i32.const 2))
          (then (i64.store (local.get $out) (i64.load (local.get $src))))
          (else (if (i32.eq (local.get $d) (i32.const 4))
            (then (v128.store (local.get $out) (v128.load (local.get $src))))
            (else
              (local.set $i (i32.const 0))
              (block $copied (loop $copy
                (br_if $copied (i32.ge_u (local.get $i) (local.get $d)))
                (i32.store (i32.add (local.get $out) (i32.shl (local.get $i) (i32.const 2))) (i32.load (i32.add (local.get $src) (i32.shl (local.get $i) (i32.const 2)))))
                (local.set $i (i32.add (local.get $i) (i32.const 1)))
                (br $copy)))))))
        (local.set $out (i32.add (local.get $out) (i32.shl (local.get $d) (i32.const 2))))`)})`;
}

/**
 * scale_add's sweep over one group: dst (+)= src · scale, `bytes` at a time while $dst < `bound`
 * (vectors of four, then the single values left).
 */
function scaledSweep(label: string, bound: string, load: 'v128' | 'f32', op: 'f32x4' | 'f32', value: string, scale: string, bytes: number): string {
  return `
        (block $${label}_done (loop $${label}
          (br_if $${label}_done (i32.ge_s (local.get $dst) (local.get ${bound})))
          (local.set ${value} (${op}.mul (${load}.load (local.get $src)) (local.get ${scale})))
          (if (local.get $add) (then (local.set ${value} (${op}.add (${load}.load (local.get $dst)) (local.get ${value})))))
          (${load}.store (local.get $dst) (local.get ${value}))
          (local.set $src (i32.add (local.get $src) (i32.const ${bytes})))
          (local.set $dst (i32.add (local.get $dst) (i32.const ${bytes})))
          (br $${label})))`;
}

function scaleAddKernel(): string {
  return `
  (func (export "scale_add") (param $y i32) (param $scales i32) (param $out i32) (param $rows i32) (param $C i32) (param $P i32)
    (param $G i32) (param $add i32)
    (local $t i32) (local $g i32) (local $groups i32) (local $src i32) (local $dst i32) (local $end i32) (local $vend i32) (local $n i32)
    (local $s f32) (local $sv v128) (local $v v128) (local $x f32)
    (local.set $groups (i32.div_u (local.get $P) (local.get $G)))
    (block $rows_done (loop $row
      (br_if $rows_done (i32.ge_u (local.get $t) (local.get $rows)))
      (local.set $g (i32.const 0))
      (block $groups_done (loop $group
        (br_if $groups_done (i32.ge_u (local.get $g) (local.get $groups)))
        (local.set $s (f32.load (local.get $scales)))
        (local.set $scales (i32.add (local.get $scales) (i32.const 4)))
        (local.set $sv (f32x4.splat (local.get $s)))
        ;; the group's channels below C (the last group may hold padding)
        (local.set $n (i32.sub (local.get $C) (i32.mul (local.get $g) (local.get $G))))
        (if (i32.gt_s (local.get $n) (local.get $G)) (then (local.set $n (local.get $G))))
        (local.set $src (i32.add (local.get $y) (i32.shl (i32.add (i32.mul (local.get $t) (local.get $P)) (i32.mul (local.get $g) (local.get $G))) (i32.const 2))))
        (local.set $dst (i32.add (local.get $out) (i32.shl (i32.add (i32.mul (local.get $t) (local.get $C)) (i32.mul (local.get $g) (local.get $G))) (i32.const 2))))
        (local.set $end (i32.add (local.get $dst) (i32.shl (local.get $n) (i32.const 2))))
        (local.set $vend (i32.sub (local.get $end) (i32.const 12)))
${scaledSweep('vec', '$vend', 'v128', 'f32x4', '$v', '$sv', 16)}${scaledSweep('tail', '$end', 'f32', 'f32', '$x', '$s', 4)}
        (local.set $g (i32.add (local.get $g) (i32.const 1)))
        (br $group)))
      (local.set $t (i32.add (local.get $t) (i32.const 1)))
      (br $row))))`;
}

/** points_scaled's store of one vector of points v, scaled and shifted: v·s + u at byte `at` past the row's column c. */
function scaledStore(v: string, at = 0): string {
  const offset = at ? ` offset=${at}` : '';
  return `
            (v128.store${offset} (i32.add (local.get $dst) (local.get $c))
              (f32x4.add (f32x4.mul ${v} (local.get $sv)) (v128.load${offset} (i32.add (local.get $u) (local.get $c)))))`;
}

/**
 * points_scaled's loop over one row's codes for d-dimensional points, `per` codes a vector (two
 * 2-D points, one 4-D point) or one coordinate at a time (other d): 8-bit codes four to a 32-bit
 * load, then a byte each for the row's last ones; other widths come from a 64-bit accumulator
 * refilled 32 bits at a time (it may read up to 3 bytes past the row, which the caller's memory holds).
 */
function pointsRow(d: 2 | 4 | 0, bytewise: boolean, paired = false): string {
  if (paired && bytewise) {
    // 4-bit 2-D codes: each byte is a pair, its table entry read directly (no accumulator), two
    // bytes a turn (perRow·d is a multiple of 4, so a row holds whole pairs; an odd count ends early)
    const one = (at: string) => `${scaledStore(`(v128.load (i32.add (local.get $pairs) (i32.shl (i32.load8_u ${at}) (i32.const 4))))`)}
            (local.set $c (i32.add (local.get $c) (i32.const 16)))`;
    return `
          (block $codes_done (loop $next
            (br_if $codes_done (i32.ge_u (local.get $c) (local.get $Pb)))${one('(local.get $b)')}
            (br_if $codes_done (i32.ge_u (local.get $c) (local.get $Pb)))${one('offset=1 (local.get $b)')}
            (local.set $b (i32.add (local.get $b) (i32.const 2)))
            (br $next)))`;
  }
  if (paired) {
    // two 2-D codes at once: their 2·bits bits index a table of the pair's four coordinates
    return `
          (block $codes_done (loop $next
            (br_if $codes_done (i32.ge_u (local.get $c) (local.get $Pb)))
            (if (i32.lt_u (local.get $held) (local.get $bits2))
              (then
                (local.set $acc (i64.or (local.get $acc) (i64.shl (i64.extend_i32_u (i32.load (local.get $b))) (i64.extend_i32_u (local.get $held)))))
                (local.set $b (i32.add (local.get $b) (i32.const 4)))
                (local.set $held (i32.add (local.get $held) (i32.const 32)))))
            (local.set $src (i32.add (local.get $pairs) (i32.shl (i32.wrap_i64 (i64.and (local.get $acc) (local.get $mask2))) (i32.const 4))))
            (local.set $acc (i64.shr_u (local.get $acc) (i64.extend_i32_u (local.get $bits2))))
            (local.set $held (i32.sub (local.get $held) (local.get $bits2)))${scaledStore('(v128.load (local.get $src))')}
            (local.set $c (i32.add (local.get $c) (i32.const 16)))
            (br $next)))`;
  }
  // four 8-bit codes from one 32-bit load, ahead of the code-at-a-time loop (which ends the row):
  // one load and one loop turn for four codes (2-D: two vectors; 4-D: four)
  const byte = (k: number) => k === 0 ? '(i32.and (local.get $x) (i32.const 255))'
    : k === 3 ? '(i32.shr_u (local.get $x) (i32.const 24))'
      : `(i32.and (i32.shr_u (local.get $x) (i32.const ${8 * k})) (i32.const 255))`;
  const point = (k: number) => `(i32.add (local.get $pts) (i32.shl ${byte(k)} (i32.const ${d === 2 ? 3 : 4})))`;
  const quads = !bytewise || d === 0 ? '' : `
          (block $quads_done (loop $quad
            (br_if $quads_done (i32.gt_u (i32.add (local.get $c) (i32.const ${d === 2 ? 32 : 64})) (local.get $Pb)))
            (local.set $x (i32.load (local.get $b)))${d === 2
    ? scaledStore(`(v128.load64_lane 1 ${point(1)} (v128.load64_zero ${point(0)}))`) + scaledStore(`(v128.load64_lane 1 ${point(3)} (v128.load64_zero ${point(2)}))`, 16)
    : [0, 1, 2, 3].map((k) => scaledStore(`(v128.load ${point(k)})`, 16 * k)).join('')}
            (local.set $c (i32.add (local.get $c) (i32.const ${d === 2 ? 32 : 64})))
            (local.set $b (i32.add (local.get $b) (i32.const 4)))
            (br $quad)))`;
  const code = (dst: string) => bytewise
    ? `
            (local.set ${dst} (i32.add (local.get $pts) (i32.mul (i32.load8_u (local.get $b)) (local.get $pb))))
            (local.set $b (i32.add (local.get $b) (i32.const 1)))`
    : `
            (if (i32.lt_u (local.get $held) (local.get $bits))
              (then
                (local.set $acc (i64.or (local.get $acc) (i64.shl (i64.extend_i32_u (i32.load (local.get $b))) (i64.extend_i32_u (local.get $held)))))
                (local.set $b (i32.add (local.get $b) (i32.const 4)))
                (local.set $held (i32.add (local.get $held) (i32.const 32)))))
            (local.set ${dst} (i32.add (local.get $pts) (i32.mul (i32.wrap_i64 (i64.and (local.get $acc) (local.get $mask))) (local.get $pb))))
            (local.set $acc (i64.shr_u (local.get $acc) (i64.extend_i32_u (local.get $bits))))
            (local.set $held (i32.sub (local.get $held) (local.get $bits)))`;
  const store = (v: string) => `${scaledStore(v)}
            (local.set $c (i32.add (local.get $c) (i32.const 16)))`;
  const body = d === 2
    ? `${code('$src')}${code('$src2')}${store('(v128.load64_lane 1 (local.get $src2) (v128.load64_zero (local.get $src)))')}`
    : d === 4
      ? `${code('$src')}${store('(v128.load (local.get $src))')}`
      : `${code('$src')}
            (local.set $i (i32.const 0))
            (block $coords_done (loop $coord
              (br_if $coords_done (i32.ge_u (local.get $i) (local.get $pb)))
              (f32.store (i32.add (local.get $dst) (local.get $c))
                (f32.add (f32.mul (f32.load (i32.add (local.get $src) (local.get $i))) (local.get $s)) (f32.load (i32.add (local.get $u) (local.get $c)))))
              (local.set $c (i32.add (local.get $c) (i32.const 4)))
              (local.set $i (i32.add (local.get $i) (i32.const 4)))
              (br $coord)))`;
  return `${quads}
          (block $codes_done (loop $next
            (br_if $codes_done (i32.ge_u (local.get $c) (local.get $Pb)))${body}
            (br $next)))`;
}

/**
 * 3-bit 2-D codes with the pair table: four pairs (24 bits, three whole bytes) from one 32-bit
 * load, without the accumulator's refill test, ahead of the accumulator's loop (which ends the row
 * from a byte boundary). The load reads a byte past the group, which the caller's memory holds.
 */
function pointsRowThreeBitPairs(): string {
  const pair = (k: number) => `(v128.load (i32.add (local.get $pairs) (i32.shl (i32.and ${k === 0 ? '(local.get $x)' : `(i32.shr_u (local.get $x) (i32.const ${6 * k}))`} (i32.const 63)) (i32.const 4))))`;
  return `
          (block $groups_done (loop $group
            (br_if $groups_done (i32.gt_u (i32.add (local.get $c) (i32.const 64)) (local.get $Pb)))
            (local.set $x (i32.load (local.get $b)))${[0, 1, 2, 3].map((k) => scaledStore(pair(k), 16 * k)).join('')}
            (local.set $c (i32.add (local.get $c) (i32.const 64)))
            (local.set $b (i32.add (local.get $b) (i32.const 3)))
            (br $group)))${pointsRow(2, false, true)}`;
}

function pointsScaledKernel(): string {
  const rows = (d: 2 | 4 | 0) => `
        (if (i32.eq (local.get $bits) (i32.const 8)) (then${pointsRow(d, true)}) (else${d === 2 ? `
          (if (local.get $pairs)
            (then (if (i32.eq (local.get $bits) (i32.const 4)) (then${pointsRow(2, true, true)}) (else (if (i32.eq (local.get $bits) (i32.const 3)) (then${pointsRowThreeBitPairs()}) (else${pointsRow(2, false, true)})))))
            (else${pointsRow(2, false)}))` : pointsRow(d, false)}))`;
  return `
  (func (export "points_scaled") (param $codes i32) (param $rows i32) (param $rowBytes i32) (param $perRow i32) (param $bits i32)
    (param $d i32) (param $pts i32) (param $scales i32) (param $u i32) (param $out i32) (param $ld i32) (param $pairs i32)
    (local $t i32) (local $b i32) (local $acc i64) (local $held i32) (local $c i32) (local $Pb i32) (local $pb i32) (local $mask i64)
    (local $src i32) (local $src2 i32) (local $dst i32) (local $i i32) (local $sv v128) (local $s f32) (local $bits2 i32) (local $mask2 i64) (local $x i32)
    (local.set $mask (i64.sub (i64.shl (i64.const 1) (i64.extend_i32_u (local.get $bits))) (i64.const 1)))
    (local.set $bits2 (i32.shl (local.get $bits) (i32.const 1)))
    (local.set $mask2 (i64.sub (i64.shl (i64.const 1) (i64.extend_i32_u (local.get $bits2))) (i64.const 1)))
    (local.set $pb (i32.shl (local.get $d) (i32.const 2)))
    (local.set $Pb (i32.mul (local.get $perRow) (local.get $pb)))
    (block $rows_done (loop $row
      (br_if $rows_done (i32.ge_u (local.get $t) (local.get $rows)))
      (local.set $b (i32.add (local.get $codes) (i32.mul (local.get $t) (local.get $rowBytes))))
      (local.set $dst (i32.add (local.get $out) (i32.shl (i32.mul (local.get $t) (local.get $ld)) (i32.const 2))))
      (local.set $s (f32.load (i32.add (local.get $scales) (i32.shl (local.get $t) (i32.const 2)))))
      (local.set $sv (f32x4.splat (local.get $s)))
      (local.set $acc (i64.const 0))
      (local.set $held (i32.const 0))
      (local.set $c (i32.const 0))
      (if (i32.eq (local.get $d) (i32.const 2)) (then${rows(2)})
        (else (if (i32.eq (local.get $d) (i32.const 4)) (then${rows(4)}) (else${rows(0)}))))
      (local.set $t (i32.add (local.get $t) (i32.const 1)))
      (br $row))))`;
}

function fanRowsKernel(): string {
  // one row's copy into a part of a product's input (ld 0: none)
  const copy = (dst: string, ld: string) => `
      (if (local.get ${ld})
        (then
          (local.set $o (i32.const 0))
          (local.set $out (i32.add (local.get ${dst}) (i32.mul (local.get $t) (i32.shl (local.get ${ld}) (i32.const 2)))))
          (block $${dst}_done (loop $${dst}_vec
            (br_if $${dst}_done (i32.ge_u (local.get $o) (local.get $rowBytes)))
            (v128.store (i32.add (local.get $out) (local.get $o)) (v128.load (i32.add (local.get $row) (local.get $o))))
            (local.set $o (i32.add (local.get $o) (i32.const 16)))
            (br $${dst}_vec)))))`;
  const x1 = '(i32.add (local.get $in) (local.get $o))';
  const x2 = '(i32.add (local.get $in2) (local.get $o))';
  const cs = '(i32.add (local.get $c) (local.get $o))';
  const sn = '(i32.add (local.get $s) (local.get $o))';
  return `
  (func (export "fan_rows") (param $src i32) (param $rows i32) (param $C i32) (param $hd i32) (param $dst1 i32) (param $ld1 i32)
    (param $dst2 i32) (param $ld2 i32) (param $view i32) (param $S i32) (param $cos i32) (param $sin i32)
    (local $t i32) (local $o i32) (local $h i32) (local $row i32) (local $rowBytes i32) (local $hb i32) (local $half i32)
    (local $in i32) (local $in2 i32) (local $out i32) (local $c i32) (local $s i32) (local $headStride i32) (local $vrow i32)
    (local $a1 v128) (local $b1 v128) (local $c1 v128) (local $s1 v128)
    (local.set $rowBytes (i32.shl (local.get $C) (i32.const 2)))
    (local.set $hb (i32.shl (local.get $hd) (i32.const 2)))
    (local.set $half (i32.shr_u (local.get $hb) (i32.const 1)))
    (local.set $headStride (i32.mul (local.get $S) (local.get $hb)))
    (block $rows_done (loop $next_row
      (br_if $rows_done (i32.ge_u (local.get $t) (local.get $rows)))
      (local.set $row (i32.add (local.get $src) (i32.mul (local.get $t) (local.get $rowBytes))))${copy('$dst1', '$ld1')}${copy('$dst2', '$ld2')}
      ;; each head's slice into its rows of the view (S 0: none): rotated (cos given) or copied;
      ;; head h's row t lies at view + h·S·hd + t·hd floats
      (local.set $h (select (i32.const 0) (local.get $rowBytes) (local.get $S)))
      (local.set $vrow (i32.add (local.get $view) (i32.mul (local.get $t) (local.get $hb))))
      (block $heads_done (loop $head
        (br_if $heads_done (i32.ge_u (local.get $h) (local.get $rowBytes)))
        (local.set $in (i32.add (local.get $row) (local.get $h)))
        (local.set $out (local.get $vrow))
        (local.set $o (i32.const 0))
        (if (local.get $cos)
          (then
            (local.set $in2 (i32.add (local.get $in) (local.get $half)))
            (local.set $c (i32.add (local.get $cos) (i32.mul (local.get $t) (local.get $half))))
            (local.set $s (i32.add (local.get $sin) (i32.mul (local.get $t) (local.get $half))))
            (block $pairs_done (loop $pair
              (br_if $pairs_done (i32.ge_u (local.get $o) (local.get $half)))
              ;; four channels of each half at a time, in f32 as the JavaScript rotation computes
              ;; them (and transformers: each product rounded, then their sum)
              (local.set $a1 (v128.load ${x1}))
              (local.set $b1 (v128.load ${x2}))
              (local.set $c1 (v128.load ${cs}))
              (local.set $s1 (v128.load ${sn}))
              (v128.store (i32.add (local.get $out) (local.get $o))
                (f32x4.sub (f32x4.mul (local.get $a1) (local.get $c1)) (f32x4.mul (local.get $b1) (local.get $s1))))
              (v128.store (i32.add (i32.add (local.get $out) (local.get $half)) (local.get $o))
                (f32x4.add (f32x4.mul (local.get $b1) (local.get $c1)) (f32x4.mul (local.get $a1) (local.get $s1))))
              (local.set $o (i32.add (local.get $o) (i32.const 16)))
              (br $pair))))
          (else
            (block $copied (loop $copy
              (br_if $copied (i32.ge_u (local.get $o) (local.get $hb)))
              (v128.store (i32.add (local.get $out) (local.get $o)) (v128.load (i32.add (local.get $in) (local.get $o))))
              (local.set $o (i32.add (local.get $o) (i32.const 16)))
              (br $copy)))))
        (local.set $h (i32.add (local.get $h) (local.get $hb)))
        (local.set $vrow (i32.add (local.get $vrow) (local.get $headStride)))
        (br $head)))
      (local.set $t (i32.add (local.get $t) (i32.const 1)))
      (br $next_row))))`;
}

function gatherRowsKernel(): string {
  return `
  (func (export "gather_rows") (param $view i32) (param $S i32) (param $rows i32) (param $C i32) (param $hd i32) (param $dst i32) (param $ld i32)
    (local $t i32) (local $h i32) (local $o i32) (local $hb i32) (local $rowBytes i32) (local $in i32) (local $out i32) (local $headStride i32)
    (local.set $hb (i32.shl (local.get $hd) (i32.const 2)))
    (local.set $rowBytes (i32.shl (local.get $C) (i32.const 2)))
    (local.set $headStride (i32.mul (local.get $S) (local.get $hb)))
    (block $rows_done (loop $row
      (br_if $rows_done (i32.ge_u (local.get $t) (local.get $rows)))
      (local.set $out (i32.add (local.get $dst) (i32.mul (local.get $t) (i32.shl (local.get $ld) (i32.const 2)))))
      ;; head h's row t lies at view + h·S·hd + t·hd floats
      (local.set $in (i32.add (local.get $view) (i32.mul (local.get $t) (local.get $hb))))
      (local.set $h (i32.const 0))
      (block $heads_done (loop $head
        (br_if $heads_done (i32.ge_u (local.get $h) (local.get $rowBytes)))
        (local.set $o (i32.const 0))
        (block $copied (loop $copy
          (br_if $copied (i32.ge_u (local.get $o) (local.get $hb)))
          (v128.store (i32.add (local.get $out) (local.get $o)) (v128.load (i32.add (local.get $in) (local.get $o))))
          (local.set $o (i32.add (local.get $o) (i32.const 16)))
          (br $copy)))
        (local.set $h (i32.add (local.get $h) (local.get $hb)))
        (local.set $out (i32.add (local.get $out) (local.get $hb)))
        (local.set $in (i32.add (local.get $in) (local.get $headStride)))
        (br $head)))
      (local.set $t (i32.add (local.get $t) (i32.const 1)))
      (br $row))))`;
}

export function kernelsWat(shared = false): string {
  return `;; Generated by tools/make-kernels.ts (npm run kernels:generate); do not edit.
(module
  (memory (import "env" "memory") 1${shared ? ' 65536 shared' : ''})${DTYPES.map(dotKernel).join('')}${widenKernel('bf16')}${widenKernel('f16')}${rowsKernel()}${softmaxKernel()}${higgsRotateKernel()}${nearestKernel(2)}${nearestKernel(4)}${packCodesKernel()}${higgsPointsKernel()}${scaleAddKernel()}${pointsScaledKernel()}${fanRowsKernel()}${gatherRowsKernel()}
)
`;
}

export async function assembleKernels(wat: string): Promise<Uint8Array> {
  const wabt = await (await import('wabt')).default();
  const mod = wabt.parseWat('kernels.wat', wat, { simd: true, threads: true });
  try {
    // wabt's validator refuses shared memories whatever the features; V8 validates those on compile
    if (!wat.includes(' shared)')) mod.validate();
    return new Uint8Array(mod.toBinary({}).buffer);
  } finally {
    mod.destroy();
  }
}

export function kernelsModuleSource(bytes: Uint8Array, sharedBytes: Uint8Array): string {
  const literal = (b: Uint8Array) => {
    const lines = Buffer.from(b).toString('base64').match(/.{1,100}/g) ?? [];
    return lines.map((l, i) => `  '${l}'${i === lines.length - 1 ? ';' : ' +'}`).join('\n');
  };
  return `// Generated by tools/make-kernels.ts from kernels.wat (npm run kernels:generate); do not edit.
/** The WebAssembly SIMD kernels' bytes, base64. */
export const KERNELS_WASM_BASE64 =
${literal(bytes)}

/** The same kernels over a shared memory (for arenas that worker threads also read). */
export const KERNELS_SHARED_WASM_BASE64 =
${literal(sharedBytes)}
`;
}

const isMain = process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1];
if (isMain) {
  const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
  const wat = kernelsWat();
  const bytes = await assembleKernels(wat);
  writeFileSync(join(root, 'src/tensor/kernels.wat'), wat);
  writeFileSync(join(root, 'src/tensor/kernels-wasm.ts'), kernelsModuleSource(bytes, await assembleKernels(kernelsWat(true))));
  console.log(`src/tensor/kernels.wat, src/tensor/kernels-wasm.ts: ${bytes.length} bytes`);
}
