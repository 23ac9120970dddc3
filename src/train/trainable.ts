/**
 * The Llama forward pass for training, over B sequences of T tokens at once, keeping every
 * activation the backward pass needs, and that backward pass. It computes exactly what
 * `LlamaModel.forward` computes on the same weights (a test holds the two together), with
 * linear layers as gemm over all B·T tokens and attention per sequence and KV head.
 * Legend: B sequences, T tokens each, N = B·T, D hidden, H/KV heads, hd head dim,
 * C = KV·hd, F MLP width, V vocabulary, g = H/KV query heads per KV head.
 */
import type { ModelConfig } from '../model/config.js';
import { gemm } from '../tensor/gemm.js';
import { Rope } from '../model/rope.js';
import { addInPlace, gatherColumns, scatterColumns, softmaxRow } from '../model/ops.js';
import type { ParamArena } from './params.js';
import {
  crossEntropyForwardBackward, rmsNormBackward, rmsNormForward, swigluBackward, swigluForward,
} from './backprop.js';

interface LayerActs {
  xIn: Float32Array; // [N, D] residual stream entering the layer
  r1: Float32Array; // [N]
  xn1: Float32Array; // [N, D]
  q: Float32Array; // [N, H·hd] after RoPE
  k: Float32Array; // [N, C] after RoPE
  v: Float32Array; // [N, C]
  p: Float32Array; // [B, KV, g·T, T] attention probabilities
  att: Float32Array; // [N, H·hd]
  xMid: Float32Array; // [N, D] after the attention residual
  r2: Float32Array; // [N]
  xn2: Float32Array; // [N, D]
  gate: Float32Array; // [N, F] before SiLU
  up: Float32Array; // [N, F]
  h: Float32Array; // [N, F] silu(gate)·up
}

export class TrainableLlama {
  private acts: LayerActs[];
  private xOut: Float32Array; // [N, D]
  private rF: Float32Array; // [N]
  private xnF: Float32Array; // [N, D]
  private logits: Float32Array; // [N, V], becomes dlogits
  private rope: Rope;
  // backward scratch
  private dx: Float32Array; // [N, D]
  private dxn: Float32Array; // [N, D]
  private tmpD: Float32Array; // [N, D]
  private dq: Float32Array; // [N, H·hd]
  private dk: Float32Array; // [N, C]
  private dv: Float32Array; // [N, C]
  private dF1: Float32Array; // [N, F]
  private dF2: Float32Array; // [N, F]
  private dF3: Float32Array; // [N, F]
  private head: { k: Float32Array; v: Float32Array; q: Float32Array; o: Float32Array; s: Float32Array; dk: Float32Array; dv: Float32Array };

  constructor(readonly config: ModelConfig, readonly arena: ParamArena, readonly B: number, readonly T: number) {
    if (config.qkvBias || config.oBias) throw new Error('TrainableLlama: attention biases are not trained here');
    const { hiddenSize: D, qDim, kvDim: C, intermediateSize: F, vocabSize: V, nKvHeads: KV, nHeads: H, headDim: hd } = config;
    const N = B * T;
    const g = H / KV;
    const f = (n: number) => new Float32Array(n);
    this.acts = Array.from({ length: config.nLayers }, () => ({
      xIn: f(N * D), r1: f(N), xn1: f(N * D), q: f(N * qDim), k: f(N * C), v: f(N * C),
      p: f(B * KV * g * T * T), att: f(N * qDim), xMid: f(N * D), r2: f(N), xn2: f(N * D),
      gate: f(N * F), up: f(N * F), h: f(N * F),
    }));
    this.xOut = f(N * D);
    this.rF = f(N);
    this.xnF = f(N * D);
    this.logits = f(N * V);
    this.dx = f(N * D);
    this.dxn = f(N * D);
    this.tmpD = f(N * D);
    this.dq = f(N * qDim);
    this.dk = f(N * C);
    this.dv = f(N * C);
    this.dF1 = f(N * F);
    this.dF2 = f(N * F);
    this.dF3 = f(N * F);
    this.head = { k: f(T * hd), v: f(T * hd), q: f(g * T * hd), o: f(g * T * hd), s: f(g * T * T), dk: f(T * hd), dv: f(T * hd) };
    this.rope = Rope.forConfig(config);
  }

  /**
   * Forward over `inputs` [B, T] token ids. Returns logits [N, V] (a view, overwritten by the
   * next `backward`).
   */
  forward(inputs: ArrayLike<number>): Float32Array {
    const cfg = this.config;
    const w = this.arena.weights;
    const { hiddenSize: D, qDim, kvDim: C, intermediateSize: F, vocabSize: V, rmsNormEps: eps } = cfg;
    const { B, T } = this;
    const N = B * T;
    let x = this.acts.length ? this.acts[0].xIn : this.xOut;
    for (let t = 0; t < N; t++) x.set(w.embed.subarray(inputs[t] * D, (inputs[t] + 1) * D), t * D);
    for (let l = 0; l < cfg.nLayers; l++) {
      const a = this.acts[l];
      const lw = w.layers[l];
      rmsNormForward(a.xn1, a.r1, a.xIn, lw.attnNorm, N, D, eps);
      gemm(a.q, a.xn1, lw.wq, N, D, qDim, false, true);
      gemm(a.k, a.xn1, lw.wk, N, D, C, false, true);
      gemm(a.v, a.xn1, lw.wv, N, D, C, false, true);
      for (let b = 0; b < B; b++) {
        this.rope.apply(a.q.subarray(b * T * qDim), T, cfg.nHeads, 0);
        this.rope.apply(a.k.subarray(b * T * C), T, cfg.nKvHeads, 0);
      }
      this.attentionForward(a);
      a.xMid.set(a.xIn);
      gemm(this.tmpD, a.att, lw.wo, N, qDim, D, false, true);
      addInPlace(a.xMid, this.tmpD, N * D);
      rmsNormForward(a.xn2, a.r2, a.xMid, lw.mlpNorm, N, D, eps);
      gemm(a.gate, a.xn2, lw.wGate, N, D, F, false, true);
      gemm(a.up, a.xn2, lw.wUp, N, D, F, false, true);
      swigluForward(a.h, a.gate, a.up, N * F);
      x = l + 1 < cfg.nLayers ? this.acts[l + 1].xIn : this.xOut;
      x.set(a.xMid);
      gemm(this.tmpD, a.h, lw.wDown, N, F, D, false, true);
      addInPlace(x, this.tmpD, N * D);
    }
    rmsNormForward(this.xnF, this.rF, this.xOut, w.finalNorm, N, D, eps);
    gemm(this.logits, this.xnF, w.lmHead, N, D, V, false, true);
    return this.logits;
  }

  /**
   * One training step's gradient: forward on inputs, mean cross-entropy against targets
   * (both [B, T]), backward into arena.grad (overwritten). Returns the loss.
   */
  forwardBackward(inputs: ArrayLike<number>, targets: ArrayLike<number>): number {
    this.forward(inputs);
    const cfg = this.config;
    const w = this.arena.weights;
    const dW = this.arena.grads;
    const { hiddenSize: D, qDim, kvDim: C, intermediateSize: F, vocabSize: V } = cfg;
    const { B, T } = this;
    const N = B * T;
    this.arena.grad.fill(0);
    const loss = crossEntropyForwardBackward(this.logits, targets, N, V);
    const dlogits = this.logits;
    // LM head (tied): dE = dlogitsᵀ·xnF, dxnF = dlogits·E
    gemm(dW.embed, dlogits, this.xnF, V, N, D, true, false);
    gemm(this.dxn, dlogits, w.lmHead, N, V, D, false, false);
    const dx = this.dx;
    dx.fill(0);
    rmsNormBackward(dx, dW.finalNorm, this.dxn, this.xOut, this.rF, w.finalNorm, N, D);

    for (let l = cfg.nLayers - 1; l >= 0; l--) {
      const a = this.acts[l];
      const lw = w.layers[l];
      const lg = dW.layers[l];
      // MLP: x_out = x_mid + down(swiglu(gate(xn2), up(xn2)))
      gemm(this.dF1, dx, lw.wDown, N, D, F, false, false); // dh
      gemm(lg.wDown, dx, a.h, D, N, F, true, false);
      swigluBackward(this.dF2, this.dF3, this.dF1, a.gate, a.up, N * F); // dgate, dup
      gemm(this.dxn, this.dF2, lw.wGate, N, F, D, false, false);
      gemm(this.tmpD, this.dF3, lw.wUp, N, F, D, false, false);
      addInPlace(this.dxn, this.tmpD, N * D);
      gemm(lg.wGate, this.dF2, a.xn2, F, N, D, true, false);
      gemm(lg.wUp, this.dF3, a.xn2, F, N, D, true, false);
      rmsNormBackward(dx, lg.mlpNorm, this.dxn, a.xMid, a.r2, lw.mlpNorm, N, D);
      // attention: x_mid = x_in + o(attention(rope(q(xn1)), rope(k(xn1)), v(xn1)))
      const datt = this.dF1.subarray(0, N * qDim);
      gemm(datt, dx, lw.wo, N, D, qDim, false, false);
      gemm(lg.wo, dx, a.att, D, N, qDim, true, false);
      this.attentionBackward(a, datt);
      for (let b = 0; b < B; b++) {
        this.rope.apply(this.dq.subarray(b * T * qDim), T, cfg.nHeads, 0, true);
        this.rope.apply(this.dk.subarray(b * T * C), T, cfg.nKvHeads, 0, true);
      }
      gemm(this.dxn, this.dq, lw.wq, N, qDim, D, false, false);
      gemm(this.tmpD, this.dk, lw.wk, N, C, D, false, false);
      addInPlace(this.dxn, this.tmpD, N * D);
      gemm(this.tmpD, this.dv, lw.wv, N, C, D, false, false);
      addInPlace(this.dxn, this.tmpD, N * D);
      gemm(lg.wq, this.dq, a.xn1, qDim, N, D, true, false);
      gemm(lg.wk, this.dk, a.xn1, C, N, D, true, false);
      gemm(lg.wv, this.dv, a.xn1, C, N, D, true, false);
      rmsNormBackward(dx, lg.attnNorm, this.dxn, a.xIn, a.r1, lw.attnNorm, N, D);
    }
    // input embedding: dE[id] += dx[t]
    for (let t = 0; t < N; t++) {
      const o = inputs[t] * D;
      for (let i = 0; i < D; i++) dW.embed[o + i] += dx[t * D + i];
    }
    return loss;
  }

  /**
   * Visits every (sequence b, KV head) with that head's keys and values gathered into
   * head.k, head.v [T, hd], its query heads stacked into head.q [g·T, hd], and its slice of the
   * stored probabilities p [g·T, T]. `cols(j)` is query head j's first column in [N, H·hd] rows.
   */
  private forEachKvHead(a: LayerActs, visit: (b: number, kvh: number, p: Float32Array, cols: (j: number) => number) => void): void {
    const { nHeads: H, nKvHeads: KV, headDim: hd, qDim, kvDim: C } = this.config;
    const { B, T } = this;
    const g = H / KV;
    const s = this.head;
    for (let b = 0; b < B; b++) {
      for (let kvh = 0; kvh < KV; kvh++) {
        const cols = (j: number) => (kvh * g + j) * hd;
        gatherColumns(s.k, a.k.subarray(b * T * C), T, C, kvh * hd, hd);
        gatherColumns(s.v, a.v.subarray(b * T * C), T, C, kvh * hd, hd);
        for (let j = 0; j < g; j++) gatherColumns(s.q.subarray(j * T * hd), a.q.subarray(b * T * qDim), T, qDim, cols(j), hd);
        visit(b, kvh, a.p.subarray((b * KV + kvh) * g * T * T, (b * KV + kvh + 1) * g * T * T), cols);
      }
    }
  }

  /** Causal attention per sequence and KV head; keeps the probabilities in a.p. */
  private attentionForward(a: LayerActs): void {
    const { headDim: hd, qDim } = this.config;
    const { T } = this;
    const g = this.config.nHeads / this.config.nKvHeads;
    const scale = 1 / Math.sqrt(hd);
    const s = this.head;
    this.forEachKvHead(a, (b, _kvh, p, cols) => {
      gemm(p, s.q, s.k, g * T, hd, T, false, true);
      for (let r = 0; r < g * T; r++) softmaxRow(p, r * T, (r % T) + 1, T, scale);
      gemm(s.o, p, s.v, g * T, T, hd, false, false);
      for (let j = 0; j < g; j++) scatterColumns(a.att.subarray(b * T * qDim), s.o.subarray(j * T * hd), T, qDim, cols(j), hd);
    });
  }

  /** From datt [N, H·hd] to dq, dk, dv (gradients w.r.t. the rotated q and k). */
  private attentionBackward(a: LayerActs, datt: Float32Array): void {
    const { headDim: hd, qDim, kvDim: C } = this.config;
    const { T } = this;
    const g = this.config.nHeads / this.config.nKvHeads;
    const scale = 1 / Math.sqrt(hd);
    const s = this.head;
    this.forEachKvHead(a, (b, kvh, p, cols) => {
      for (let j = 0; j < g; j++) gatherColumns(s.o.subarray(j * T * hd), datt.subarray(b * T * qDim), T, qDim, cols(j), hd);
      const dP = s.s;
      gemm(dP, s.o, s.v, g * T, hd, T, false, true); // dP = dO·Vᵀ
      gemm(s.dv, p, s.o, T, g * T, hd, true, false); // dV = Pᵀ·dO
      for (let r = 0; r < g * T; r++) {
        // softmax backward: dS = P ⊙ (dP − rowsum(dP ⊙ P)), times the 1/√hd of the scores
        const o = r * T;
        const visible = (r % T) + 1;
        let dot = 0;
        for (let j = 0; j < visible; j++) dot += dP[o + j] * p[o + j];
        for (let j = 0; j < visible; j++) dP[o + j] = p[o + j] * (dP[o + j] - dot) * scale;
        dP.fill(0, o + visible, o + T);
      }
      gemm(s.o, dP, s.k, g * T, T, hd, false, false); // dQ = dS·K
      gemm(s.dk, dP, s.q, T, g * T, hd, true, false); // dK = dSᵀ·Q
      for (let j = 0; j < g; j++) scatterColumns(this.dq.subarray(b * T * qDim), s.o.subarray(j * T * hd), T, qDim, cols(j), hd);
      scatterColumns(this.dk.subarray(b * T * C), s.dk, T, C, kvh * hd, hd);
      scatterColumns(this.dv.subarray(b * T * C), s.dv, T, C, kvh * hd, hd);
    });
  }
}
