/**
 * Forward/backward kernel pairs for training (llm.c style: each backward beside its forward).
 * Legend: N tokens (B sequences × T), D hidden, F MLP width, V vocabulary.
 */

/** Forward RMSNorm that also keeps r[t] = 1/rms(x[t]) for the backward pass. */
export function rmsNormForward(out: Float32Array, r: Float32Array, x: Float32Array, w: Float32Array, N: number, D: number, eps: number): void {
  for (let t = 0; t < N; t++) {
    const o = t * D;
    let ss = 0;
    for (let i = 0; i < D; i++) ss += x[o + i] * x[o + i];
    const rt = 1 / Math.sqrt(ss / D + eps);
    r[t] = rt;
    for (let i = 0; i < D; i++) out[o + i] = x[o + i] * rt * w[i];
  }
}

/**
 * y = x·r·w. Accumulates dw += Σ dy·x·r and dx += r·w·dy − x·r³/D · Σ_j dy_j w_j x_j.
 */
export function rmsNormBackward(
  dx: Float32Array, dw: Float32Array, dy: Float32Array, x: Float32Array, r: Float32Array, w: Float32Array, N: number, D: number,
): void {
  for (let t = 0; t < N; t++) {
    const o = t * D;
    const rt = r[t];
    let dot = 0;
    for (let i = 0; i < D; i++) {
      dot += dy[o + i] * w[i] * x[o + i];
      dw[i] += dy[o + i] * x[o + i] * rt;
    }
    const c = (dot * rt * rt * rt) / D;
    for (let i = 0; i < D; i++) dx[o + i] += rt * w[i] * dy[o + i] - x[o + i] * c;
  }
}

/** h = silu(g)·u. */
export function swigluForward(h: Float32Array, g: Float32Array, u: Float32Array, len: number): void {
  for (let i = 0; i < len; i++) h[i] = (g[i] / (1 + Math.exp(-g[i]))) * u[i];
}

/** dg = dh·u·σ(g)(1 + g(1 − σ(g))), du = dh·silu(g); written over dg and du. */
export function swigluBackward(dg: Float32Array, du: Float32Array, dh: Float32Array, g: Float32Array, u: Float32Array, len: number): void {
  for (let i = 0; i < len; i++) {
    const s = 1 / (1 + Math.exp(-g[i]));
    dg[i] = dh[i] * u[i] * s * (1 + g[i] * (1 - s));
    du[i] = dh[i] * g[i] * s;
  }
}

/**
 * Mean cross-entropy of logits [N, V] against targets [N]; overwrites logits with
 * d(loss)/d(logits) = (softmax − onehot)/N. Returns the mean loss.
 */
export function crossEntropyForwardBackward(logits: Float32Array, targets: ArrayLike<number>, N: number, V: number): number {
  let loss = 0;
  for (let t = 0; t < N; t++) {
    const o = t * V;
    let max = -Infinity;
    for (let j = 0; j < V; j++) if (logits[o + j] > max) max = logits[o + j];
    let sum = 0;
    for (let j = 0; j < V; j++) sum += Math.exp(logits[o + j] - max);
    const lse = max + Math.log(sum);
    loss += lse - logits[o + targets[t]];
    for (let j = 0; j < V; j++) logits[o + j] = Math.exp(logits[o + j] - lse) / N;
    logits[o + targets[t]] -= 1 / N;
  }
  return loss / N;
}

/** db[i] += Σ_t dy[t, i]. */
export function biasBackward(db: Float32Array, dy: Float32Array, N: number): void {
  const w = db.length;
  for (let t = 0; t < N; t++) for (let i = 0; i < w; i++) db[i] += dy[t * w + i];
}
