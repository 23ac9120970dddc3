/**
 * Cache methods: what every slot (layer × keys/values) of a cache stores, parsed once from a spec
 * string into a `CacheMethod` that calibration, predictor files, caches, eval, the demo and the
 * report share.
 *
 *   fp                       full precision (the f32 cache)
 *   aquakv                   budgeted AQUA-KV: aquakv[bits=2.5]; calibration measures each slot's
 *                            effect on the model's output and chooses every slot's quantizer so the
 *                            average stays within the budget; the plan lives in the predictor file
 *   higgs                    HIGGS alone: q=higgs:2x16 on every layer, no predictors
 *   kivi2, kivi4             uniform min–max, keys per channel (groups of 32 tokens, post-RoPE),
 *                            values per token (groups of 32 channels)
 *   NAME[opt=...,opt=...]    the general form, e.g. aquakv[q=higgs:2x64], higgs[q=higgs:1x16],
 *                            aquakv[q=higgs:4x256,k0=higgs:2x256,k1=higgs:2x256],
 *                            kivi[k=uniform:3:channel:g32,v=uniform:3:token:g32]
 * options: q (keys and values), k, v (each alone), first (layer 0's keys and values; default:
 * 4-bit higgs:2x256 for aquakv, q otherwise), kL / vL (layer L's keys / values alone, overriding
 * the rest), bits (aquakv only: a budget instead of quantizers), and for kivi rope=pre|post
 * (default post, as KIVI quantizes the rotated keys HF caches hold).
 */
import { AquaError } from '../errors.js';
import type { Quantizer } from '../quant/quantizer.js';
import { buildQuantizer, formatQuantizerSpec, parseQuantizerSpec, QUANTIZER_SPEC_HELP, type QuantizerSpec } from '../quant/spec.js';

export type MethodKind = 'fp' | 'aquakv' | 'higgs' | 'kivi';

/** One slot's quantizer, given apart from the rest: layer `layer`'s keys ('k') or values ('v'). */
export interface SlotOverride {
  layer: number;
  part: 'k' | 'v';
  spec: QuantizerSpec;
}

export interface CacheMethod {
  name: string; // as written (for tables)
  kind: MethodKind;
  keys: QuantizerSpec; // layers ≥ 1
  values: QuantizerSpec;
  firstKeys: QuantizerSpec; // layer 0
  firstValues: QuantizerSpec;
  overrides: SlotOverride[]; // in layer order, keys before values
  /** Budgeted AQUA-KV: average bits per value calibration allocates; the slots' quantizers come from the predictors. */
  budget: number | null;
  usesPredictors: boolean;
  keysAfterRope: boolean; // KIVI quantizes rotated keys; everything else stores keys before RoPE
}

/** The budget of the one-word `aquakv` (bits per value, every stored byte counted). */
export const DEFAULT_BUDGET = 2.5;

const PRESETS: Record<string, string> = {
  aquakv: `aquakv[bits=${DEFAULT_BUDGET}]`,
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
    if (!['q', 'k', 'v', 'first', 'rope', 'bits'].includes(key) && !/^[kv]\d+$/.test(key)) throw bad(`unknown option '${key}'`);
    if (key in opts) throw bad(`option '${key}' given twice`);
    opts[key] = part.slice(eq + 1).trim();
  }
  if (kind === 'fp') {
    if (Object.keys(opts).length) throw bad('fp takes no options');
    return { name, kind, keys: NONE, values: NONE, firstKeys: NONE, firstValues: NONE, overrides: [], budget: null, usesPredictors: false, keysAfterRope: false };
  }
  if (opts.bits !== undefined) {
    if (kind !== 'aquakv') throw bad('bits= applies to aquakv only');
    if (Object.keys(opts).length > 1) throw bad('bits= chooses every quantizer; it takes no other option');
    const budget = Number(opts.bits);
    if (!Number.isFinite(budget) || budget <= 0 || budget > 32) throw bad(`bits must be a number of bits per value in (0, 32], got '${opts.bits}'`);
    const base = parseQuantizerSpec(BUDGET_LADDER[1]);
    return { name, kind, keys: base, values: base, firstKeys: base, firstValues: base, overrides: [], budget, usesPredictors: true, keysAfterRope: false };
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
  const overrides = Object.keys(opts)
    .filter((k) => /^[kv]\d+$/.test(k))
    .map((k) => ({ layer: Number(k.slice(1)), part: k[0] as 'k' | 'v', spec: parseQuantizerSpec(opts[k]) }))
    .sort((a, b) => a.layer - b.layer || (a.part === b.part ? 0 : a.part === 'k' ? -1 : 1));
  return {
    name,
    kind,
    keys,
    values,
    firstKeys: firstSpec ?? keys,
    firstValues: firstSpec ?? values,
    overrides,
    budget: null,
    usesPredictors: kind === 'aquakv',
    keysAfterRope: kind === 'kivi' && (opts.rope ?? 'post') === 'post',
  };
}

/** A comma-separated list of method specs (commas inside [...] belong to the spec). */
export function parseMethodList(list: string): CacheMethod[] {
  return list.split(/,(?![^[]*\])/).map(parseMethod);
}

function canonical(m: CacheMethod, q: (s: QuantizerSpec) => string): string {
  if (m.kind === 'fp') return 'fp';
  if (m.budget !== null) return `aquakv[bits=${m.budget}]`;
  const [k, v, fk, fv] = [q(m.keys), q(m.values), q(m.firstKeys), q(m.firstValues)];
  const opts = k === v ? [`q=${k}`] : [`k=${k}`, `v=${v}`];
  // layer 0 as written: aquakv always says it (its default differs from q); others when it differs
  if (m.kind === 'aquakv' || fk !== k || fv !== v) {
    if (fk !== fv) throw new Error(`formatMethod: layer 0's keys (${fk}) and values (${fv}) differ, which no spec can say`);
    opts.push(`first=${fk}`);
  }
  for (const o of m.overrides) opts.push(`${o.part}${o.layer}=${q(o.spec)}`);
  if (m.kind === 'kivi' && !m.keysAfterRope) opts.push('rope=pre');
  return `${m.kind}[${opts.join(',')}]`;
}

/** The method as one canonical spec, every option explicit: `aquakv[q=higgs:2x16,first=higgs:2x256]`. */
export function formatMethod(m: CacheMethod): string {
  return canonical(m, formatQuantizerSpec);
}

/**
 * The quantizers budgeted calibration chooses from, cheapest first (bits per value at G = 128:
 * 1.625, 2.125, 3.125, 4.125). The 4-D grid is the 2-bit choice: same bits as higgs:2x16, lower
 * error. Every slot starts at the cheapest and is upgraded one rung at a time.
 */
export const BUDGET_LADDER = ['higgs:2x8', 'higgs:4x256', 'higgs:2x64', 'higgs:2x256'];

/** The quantizer spec of one slot: its override, else layer 0's or the other layers'. */
export function slotSpec(m: CacheMethod, layer: number, part: 'k' | 'v'): QuantizerSpec {
  const o = m.overrides.find((x) => x.layer === layer && x.part === part);
  if (o) return o.spec;
  if (layer === 0) return part === 'k' ? m.firstKeys : m.firstValues;
  return part === 'k' ? m.keys : m.values;
}

/** Every layer's key and value quantizer for C channels (shared between slots of the same spec). */
export interface LayerQuantizers {
  keys: Quantizer[]; // [L]
  values: Quantizer[]; // [L]
}

/**
 * The method's quantizers for a model of `nLayers` layers and C channels; throws a spec's error
 * (a group that does not fit C, a layer the model does not have) at once. A budgeted method has
 * no quantizers of its own: its plan comes from its predictors (`resolvePlan` in ./factory.ts).
 */
export function layerQuantizers(m: CacheMethod, C: number, nLayers: number): LayerQuantizers {
  if (m.budget !== null) throw new AquaError(`cache method ${m.name} is budgeted: its quantizers are chosen by calibration and read from its predictors`);
  const beyond = m.overrides.find((o) => o.layer >= nLayers);
  if (beyond) throw new AquaError(`cache method ${m.name} sets layer ${beyond.layer}, but the model has ${nLayers} layers`);
  const built = new Map<string, Quantizer>();
  const get = (s: QuantizerSpec) => {
    const key = formatQuantizerSpec(s);
    let q = built.get(key);
    if (!q) built.set(key, (q = buildQuantizer(s, C)));
    return q;
  };
  return {
    keys: Array.from({ length: nLayers }, (_, l) => get(slotSpec(m, l, 'k'))),
    values: Array.from({ length: nLayers }, (_, l) => get(slotSpec(m, l, 'v'))),
  };
}

/** Checks a method against a model's shape now, before any long work (budgeted methods: their budget only). */
export function checkMethod(m: CacheMethod, C: number, nLayers: number): void {
  if (m.budget === null) layerQuantizers(m, C, nLayers);
}

/** The canonical spec with every default resolved for C channels (group sizes): what predictors are matched on. */
export function methodKey(m: CacheMethod, C: number): string {
  const resolved = new Map<string, string>();
  return canonical(m, (s) => {
    const key = formatQuantizerSpec(s);
    if (!resolved.has(key)) resolved.set(key, buildQuantizer(s, C).spec);
    return resolved.get(key)!;
  });
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
