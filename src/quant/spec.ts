/**
 * Quantizer specs, the strings users write:
 *   higgs:DxN[:gG]            HIGGS with the shipped d-dimensional n-point grid, group G
 *                             (default: smallest power of two ≥ C, capped at 1024)
 *   uniform:B:AXIS[:gG]       min–max uniform, B ∈ {2,3,4,8} bits, AXIS token|channel, group G (default 32)
 *   none                      keep full precision
 */
import { AquaError } from '../errors.js';
import { HiggsQuantizer } from './higgs.js';
import type { Quantizer } from './quantizer.js';
import { UniformQuantizer, type UniformAxis } from './uniform.js';

export const QUANTIZER_SPEC_HELP = 'higgs:DxN[:gG] (e.g. higgs:2x16), uniform:B:token|channel[:gG] (e.g. uniform:2:channel:g32), or none';

/** Parses `spec` for vectors of `cols` channels; null for 'none'. */
export function parseQuantizer(spec: string, cols: number): Quantizer | null {
  const parts = spec.trim().split(':');
  const bad = (why: string) => new AquaError(`quantizer spec '${spec}': ${why}`, QUANTIZER_SPEC_HELP);
  const group = (s: string | undefined, fallback: number | undefined) => {
    if (s === undefined) return fallback;
    const m = /^g(\d+)$/.exec(s);
    if (!m) throw bad(`'${s}' is not a group size like g64`);
    return Number(m[1]);
  };
  switch (parts[0]) {
    case 'none':
    case 'fp':
      if (parts.length > 1) throw bad('takes no parameters');
      return null;
    case 'higgs': {
      const m = /^(\d+)x(\d+)$/.exec(parts[1] ?? '');
      if (!m || parts.length > 3) throw bad('expected higgs:DxN[:gG]');
      return HiggsQuantizer.fromGrid(Number(m[1]), Number(m[2]), cols, group(parts[2], undefined));
    }
    case 'uniform': {
      const bits = Number(parts[1]);
      const axis = parts[2] as UniformAxis;
      if (!Number.isInteger(bits) || (axis !== 'token' && axis !== 'channel') || parts.length > 4) {
        throw bad('expected uniform:B:token|channel[:gG]');
      }
      return new UniformQuantizer(bits, axis, group(parts[3], 32)!, cols);
    }
    default:
      throw bad(`unknown quantizer '${parts[0]}'`);
  }
}
