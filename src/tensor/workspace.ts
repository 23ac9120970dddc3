/**
 * Named scratch buffers reused across calls: the forward pass asks for the sizes a step needs and
 * gets the same memory back every step once it has grown to the largest size seen.
 */
export class Workspace {
  private buffers = new Map<string, Float32Array>();

  /** A buffer of at least `size` floats (contents unspecified), grown geometrically. */
  get(name: string, size: number): Float32Array {
    let b = this.buffers.get(name);
    if (!b || b.length < size) {
      b = new Float32Array(Math.max(size, Math.ceil((b?.length ?? 0) * 1.5)));
      this.buffers.set(name, b);
    }
    return b;
  }

  /** Drops every buffer larger than `size` floats (after a long step, so memory follows the usual step). */
  shrink(size: number): void {
    for (const [name, b] of this.buffers) if (b.length > size) this.buffers.delete(name);
  }

  bytes(): number {
    let s = 0;
    for (const b of this.buffers.values()) s += b.byteLength;
    return s;
  }
}
