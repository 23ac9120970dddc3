/**
 * Cache methods: what every slot of a cache stores, parsed once from a spec string into a
 * `CacheMethod` that calibration, predictor files, caches, eval, the demo and the report share.
 *
 *   fp                       full precision (the f32 cache)
 *   aquakv                   predictors + HIGGS residuals: q=higgs:2x16, first=higgs:2x256
 *   higgs                    the same quantizer, no predictors: q=higgs:2x16 on every layer
 *   kivi2, kivi4             uniform min–max, keys per channel (groups of 32 tokens, post-RoPE),
 *                            values per token (groups of 32 channels)
 *   NAME[opt=...,opt=...]    the general form, e.g. aquakv[q=higgs:2x64], higgs[q=higgs:1x16],
 *                            kivi[k=uniform:3:channel:g32,v=uniform:3:token:g32]
 * options: q (keys and values), k, v (each alone), first (layer 0's keys and values; default:
 * 4-bit higgs:2x256 for aquakv, q otherwise), and for kivi rope=pre|post (default post, as KIVI
 * quantizes the rotated keys HF caches hold).
 */
import { AquaError } from '../errors.js';
import type { Quantizer } from '../quant/quantizer.js';
import { buildQuantizer, formatQuantizerSpec, parseQuantizerSpec, QUANTIZER_SPEC_HELP, type QuantizerSpec } from '../quant/spec.js';

export type MethodKind = 'fp' | 'aquakv' | 'higgs' | 'kivi';

export interface CacheMethod {
  name: string; // as written (for tables)
  kind: MethodKind;
  keys: QuantizerSpec; // layers ≥ 1
  values: QuantizerSpec;
  firstKeys: QuantizerSpec; // layer 0
  firstValues: QuantizerSpec;
  usesPredictors: boolean;
  keysAfterRope: boolean; // KIVI quantizes rotated keys; everything else stores keys before RoPE
}

const PRESETS: Record<string, string> = {
  aquakv: 'aquakv[q=higgs:2x16,first=higgs:2x256]',
  higgs: 'higgs[q=higgs:2x16]',
  kivi2: 'kivi[k=uniform:2:channel:g32,v=uniform:2:token:g32]',
  kivi4: 'kivi[k=uniform:4:channel:g32,v=uniform:4:token:g32]',
};

export const METHOD_SPEC_HELP =
  'fp, aquakv, higgs, kivi2, kivi4, or NAME[q=...,k=...,v=...,first=...] with NAME aquakv|higgs|kivi and quantizers ' + QUANTIZER_SPEC_HELP;

const NONE: QuantizerSpec = { type: 'none' };

export function parseMethod(spec: string): CacheMethod {
  const name = spec.trim();
  const expanded = PRESETS[name] ?? name;
  const m = /^(\w+)(?:\[(.*)\])?$/.exec(expanded);
  const bad = (why: string) => new AquaError(`cache method '${spec}': ${why}`, METHOD_SPEC_HELP);
  if (!m) throw bad('not of the form NAME[opt=value,...]');
  const kind = m[1] as MethodKind;
  if (!['fp', 'aquakv', 'higgs', 'kivi'].includes(kind)) throw bad(`unknown method '${m[1]}'`);
  const opts: Record<string, string> = {};
  for (const part of (m[2] ?? '').split(',').filter((s) => s.trim())) {
    const eq = part.indexOf('=');
    if (eq < 0) throw bad(`option '${part}' has no '='`);
    const key = part.slice(0, eq).trim();
    if (!['q', 'k', 'v', 'first', 'rope'].includes(key)) throw bad(`unknown option '${key}'`);
    opts[key] = part.slice(eq + 1).trim();
  }
  if (kind === 'fp') {
    if (Object.keys(opts).length) throw bad('fp takes no options');
    return { name, kind, keys: NONE, values: NONE, firstKeys: NONE, firstValues: NONE, usesPredictors: false, keysAfterRope: false };
  }
  const k = opts.k ?? opts.q;
  const v = opts.v ?? opts.q;
  if (!k || !v) throw bad('needs q=QUANTIZER, or both k= and v=');
  if (opts.rope && kind !== 'kivi') throw bad('rope= applies to kivi only');
  if (opts.rope && opts.rope !== 'pre' && opts.rope !== 'post') throw bad(`rope must be pre or post, got '${opts.rope}'`);
  const keys = parseQuantizerSpec(k);
  const values = parseQuantizerSpec(v);
  const first = opts.first ?? (kind === 'aquakv' ? 'higgs:2x256' : undefined);
  const firstSpec = first === undefined ? null : parseQuantizerSpec(first);
  return {
    name,
    kind,
    keys,
    values,
    firstKeys: firstSpec ?? keys,
    firstValues: firstSpec ?? values,
    usesPredictors: kind === 'aquakv',
    keysAfterRope: kind === 'kivi' && (opts.rope ?? 'post') === 'post',
  };
}

/** A comma-separated list of method specs (commas inside [...] belong to the spec). */
export function parseMethodList(list: string): CacheMethod[] {
  return list.split(/,(?![^[]*\])/).map(parseMethod);
}

function canonical(m: CacheMethod, q: (s: QuantizerSpec, slot: keyof SlotQuantizers) => string): string {
  if (m.kind === 'fp') return 'fp';
  const [k, v, fk, fv] = [q(m.keys, 'keys'), q(m.values, 'values'), q(m.firstKeys, 'firstKeys'), q(m.firstValues, 'firstValues')];
  const opts = k === v ? [`q=${k}`] : [`k=${k}`, `v=${v}`];
  // layer 0 as written: aquakv always says it (its default differs from q); others when it differs
  if (m.kind === 'aquakv' || fk !== k || fv !== v) {
    if (fk !== fv) throw new Error(`formatMethod: layer 0's keys (${fk}) and values (${fv}) differ, which no spec can say`);
    opts.push(`first=${fk}`);
  }
  if (m.kind === 'kivi' && !m.keysAfterRope) opts.push('rope=pre');
  return `${m.kind}[${opts.join(',')}]`;
}

/** The method as one canonical spec, every option explicit: `aquakv[q=higgs:2x16,first=higgs:2x256]`. */
export function formatMethod(m: CacheMethod): string {
  return canonical(m, formatQuantizerSpec);
}

export interface SlotQuantizers {
  keys: Quantizer;
  values: Quantizer;
  firstKeys: Quantizer;
  firstValues: Quantizer;
}

/** The method's quantizers for vectors of C channels; throws a spec's error (a group that does not fit C) at once. */
export function methodQuantizers(m: CacheMethod, C: number): SlotQuantizers {
  return { keys: buildQuantizer(m.keys, C), values: buildQuantizer(m.values, C), firstKeys: buildQuantizer(m.firstKeys, C), firstValues: buildQuantizer(m.firstValues, C) };
}

/** The canonical spec with every default resolved for C channels (group sizes): what predictors are matched on. */
export function methodKey(m: CacheMethod, C: number): string {
  const q = methodQuantizers(m, C);
  return canonical(m, (_, slot) => q[slot].spec);
}

/** The family a method belongs to, for tables and charts. */
export function methodFamily(m: CacheMethod): string {
  switch (m.kind) {
    case 'fp':
      return 'fp (f32 cache)';
    case 'aquakv':
      return 'AQUA-KV';
    case 'kivi':
      return 'KIVI-style uniform';
    case 'higgs':
      return m.keys.type === 'higgs' && m.keys.d === 1 ? 'rotation + scalar Lloyd–Max' : 'HIGGS alone';
  }
}
