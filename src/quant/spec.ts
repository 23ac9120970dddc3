/**
 * Quantizer specs: what users write, parsed once into a `QuantizerSpec` (no channel count needed),
 * then built into a `Quantizer` for vectors of C channels.
 *   higgs:DxN[:gG]            HIGGS with the shipped d-dimensional n-point grid, group G
 *                             (default: smallest power of two ≥ C, capped at 1024)
 *   uniform:B:AXIS[:gG]       min–max uniform, B ∈ {2,3,4,8} bits, AXIS token|channel, group G (default 32)
 *   none                      keep full precision (stored as f32)
 */
import { AquaError } from '../errors.js';
import { SHIPPED_GRIDS } from './grid.js';
import { HiggsQuantizer } from './higgs.js';
import { IdentityQuantizer } from './identity.js';
import type { Quantizer } from './quantizer.js';
import { UNIFORM_BITS, UniformQuantizer, type UniformAxis } from './uniform.js';

export type QuantizerSpec =
  | { type: 'higgs'; d: number; n: number; group?: number }
  | { type: 'uniform'; bits: number; axis: UniformAxis; group: number }
  | { type: 'none' };

export const QUANTIZER_SPEC_HELP = 'higgs:DxN[:gG] (e.g. higgs:2x16), uniform:B:token|channel[:gG] (e.g. uniform:2:channel:g32), or none';

export function parseQuantizerSpec(text: string): QuantizerSpec {
  const parts = text.trim().split(':');
  const bad = (why: string) => new AquaError(`quantizer spec '${text}': ${why}`, QUANTIZER_SPEC_HELP);
  const group = (s: string | undefined): number | undefined => {
    if (s === undefined) return undefined;
    const m = /^g(\d+)$/.exec(s);
    if (!m || Number(m[1]) < 1) throw bad(`'${s}' is not a group size like g64`);
    return Number(m[1]);
  };
  switch (parts[0]) {
    case 'none':
      if (parts.length > 1) throw bad('takes no parameters');
      return { type: 'none' };
    case 'higgs': {
      const m = /^(\d+)x(\d+)$/.exec(parts[1] ?? '');
      if (!m || parts.length > 3) throw bad('expected higgs:DxN[:gG]');
      const d = Number(m[1]), n = Number(m[2]);
      if (!SHIPPED_GRIDS.some(([gd, gn]) => gd === d && gn === n)) {
        throw new AquaError(`no shipped grid with d=${d}, n=${n}`, `available: ${SHIPPED_GRIDS.map(([gd, gn]) => `${gd}x${gn}`).join(', ')}`);
      }
      const g = group(parts[2]);
      return g === undefined ? { type: 'higgs', d, n } : { type: 'higgs', d, n, group: g };
    }
    case 'uniform': {
      const bits = Number(parts[1]);
      const axis = parts[2] as UniformAxis;
      if (!Number.isInteger(bits) || (axis !== 'token' && axis !== 'channel') || parts.length > 4) {
        throw bad('expected uniform:B:token|channel[:gG]');
      }
      if (!UNIFORM_BITS.includes(bits)) throw new AquaError(`uniform quantizer: bits must be one of ${UNIFORM_BITS.join(', ')}, got ${bits}`);
      return { type: 'uniform', bits, axis, group: group(parts[3]) ?? 32 };
    }
    default:
      throw bad(`unknown quantizer '${parts[0]}'`);
  }
}

/** The spec as written back (higgs groups only when given). */
export function formatQuantizerSpec(s: QuantizerSpec): string {
  switch (s.type) {
    case 'none':
      return 'none';
    case 'higgs':
      return `higgs:${s.d}x${s.n}${s.group === undefined ? '' : `:g${s.group}`}`;
    case 'uniform':
      return `uniform:${s.bits}:${s.axis}:g${s.group}`;
  }
}

/** The quantizer of `spec` for vectors of `cols` channels; its `.spec` has every default resolved. */
export function buildQuantizer(s: QuantizerSpec, cols: number): Quantizer {
  switch (s.type) {
    case 'none':
      return new IdentityQuantizer(cols);
    case 'higgs':
      return HiggsQuantizer.fromGrid(s.d, s.n, cols, s.group);
    case 'uniform':
      return new UniformQuantizer(s.bits, s.axis, s.group, cols);
  }
}

/** Parses and builds in one call (tests, benchmarks). */
export function parseQuantizer(text: string, cols: number): Quantizer {
  return buildQuantizer(parseQuantizerSpec(text), cols);
}
