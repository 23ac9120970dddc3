/**
 * Cache methods: what every variant of the compressed cache stores, from one spec string.
 *
 *   fp                       full precision (no quantization)
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
import { QUANTIZER_SPEC_HELP } from '../quant/spec.js';

export type MethodKind = 'fp' | 'aquakv' | 'higgs' | 'kivi';

export interface CacheMethod {
  name: string; // as written (for tables)
  kind: MethodKind;
  keyQuantizer: string; // quantizer spec (see quant/spec.ts), 'none' for fp
  valueQuantizer: string;
  firstKeyQuantizer: string; // layer 0
  firstValueQuantizer: string;
  usesPredictors: boolean;
  quantizeKeysAfterRope: boolean;
}

const PRESETS: Record<string, string> = {
  fp: 'fp',
  aquakv: 'aquakv[q=higgs:2x16,first=higgs:2x256]',
  higgs: 'higgs[q=higgs:2x16]',
  kivi2: 'kivi[k=uniform:2:channel:g32,v=uniform:2:token:g32]',
  kivi4: 'kivi[k=uniform:4:channel:g32,v=uniform:4:token:g32]',
};

export const METHOD_SPEC_HELP =
  'fp, aquakv, higgs, kivi2, kivi4, or NAME[q=...,k=...,v=...,first=...] with NAME aquakv|higgs|kivi and quantizers ' + QUANTIZER_SPEC_HELP;

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
    return { name, kind, keyQuantizer: 'none', valueQuantizer: 'none', firstKeyQuantizer: 'none', firstValueQuantizer: 'none', usesPredictors: false, quantizeKeysAfterRope: false };
  }
  const k = opts.k ?? opts.q;
  const v = opts.v ?? opts.q;
  if (!k || !v) throw bad('needs q=QUANTIZER, or both k= and v=');
  if (opts.rope && kind !== 'kivi') throw bad('rope= applies to kivi only');
  if (opts.rope && opts.rope !== 'pre' && opts.rope !== 'post') throw bad(`rope must be pre or post, got '${opts.rope}'`);
  const first = opts.first ?? (kind === 'aquakv' ? 'higgs:2x256' : undefined);
  return {
    name,
    kind,
    keyQuantizer: k,
    valueQuantizer: v,
    firstKeyQuantizer: first ?? k,
    firstValueQuantizer: first ?? v,
    usesPredictors: kind === 'aquakv',
    quantizeKeysAfterRope: kind === 'kivi' && (opts.rope ?? 'post') === 'post',
  };
}

/** A comma-separated list of method specs (commas inside [...] belong to the spec). */
export function parseMethodList(list: string): CacheMethod[] {
  return list.split(/,(?![^[]*\])/).map(parseMethod);
}
