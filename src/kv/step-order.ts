/** The ordering contract of the KV-cache seam (model/kv-cache.ts), checked at every update. */
/**
 * Enforces the seam's ordering contract: layers 0..L−1 in order, the same n for all layers
 * of a step. Caches keep one and call `enter` at the top of `update`. A cache of the last layers
 * only (`first` > 0: calibration replaying a pass from a recorded layer) runs first..L−1.
 */
export class StepOrder {
  private nextLayer: number;
  private stepTokens = 0;
  /** Tokens fully cached (all layers) before the step in progress. */
  committed = 0;

  constructor(readonly nLayers: number, private readonly where: string, readonly first = 0) {
    this.nextLayer = first;
  }

  enter(layer: number, n: number): void {
    if (layer !== this.nextLayer) {
      throw new Error(`${this.where}.update: expected layer ${this.nextLayer}, got layer ${layer} (layers must be written in order each step)`);
    }
    if (layer === this.first) this.stepTokens = n;
    else if (n !== this.stepTokens) {
      throw new Error(`${this.where}.update: layer ${layer} got ${n} tokens, layer ${this.first} of this step got ${this.stepTokens}`);
    }
    this.nextLayer = layer + 1;
  }

  /** Throws unless no step is in progress (a cache is copied, cut or saved only between steps). */
  checkIdle(what: string): void {
    if (this.nextLayer !== this.first) throw new Error(`${this.where}.${what}: a step is in progress (layer ${this.nextLayer} of ${this.nLayers} next)`);
  }

  /** Call at the end of `update`; closes the step after the last layer. */
  leave(layer: number): void {
    if (layer === this.nLayers - 1) {
      this.committed += this.stepTokens;
      this.nextLayer = this.first;
    }
  }
}
