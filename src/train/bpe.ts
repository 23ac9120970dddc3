/**
 * Byte-level BPE, trained by us and saved as a standard tokenizer.json (the GPT-2 scheme that
 * Llama 3 and Qwen2 also use): text is split by the GPT-2 pre-tokenizer regex, each piece's
 * UTF-8 bytes are mapped to printable characters (bytes_to_unicode), and merges of the most
 * frequent adjacent pair are learned within pieces.
 *
 * Digits are never merged, so a number is one token per digit: the retrieval task's keys
 * (random 5-digit numbers) then cost the same five tokens wherever they appear.
 */

/** GPT-2's pre-tokenizer pattern, the one a ByteLevel pre_tokenizer with use_regex applies. */
export const GPT2_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/** GPT-2 bytes_to_unicode: printable bytes map to themselves, the rest to U+0100 onwards. */
export function byteToUnicode(): string[] {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  const out = new Array<string>(256);
  bs.forEach((b, i) => (out[b] = String.fromCodePoint(cs[i])));
  return out;
}

const B2U = byteToUnicode();
const encoder = new TextEncoder();

/** A pre-tokenized piece as byte-level symbols (one character per byte). */
function pieceSymbols(piece: string): string[] {
  return [...encoder.encode(piece)].map((b) => B2U[b]);
}

export interface BpeModel {
  vocab: Map<string, number>; // symbol → id
  merges: [string, string][]; // in priority order
  specialTokens: string[]; // ids 0..k−1
}

export interface BpeTrainOptions {
  vocabSize: number;
  specialTokens?: string[];
  onProgress?: (merges: number, target: number) => void;
}

const isDigitSymbol = (s: string) => /[0-9]/.test(s);

/** Learns merges until the vocabulary (specials + 256 bytes + merges) reaches vocabSize. */
export function trainBpe(text: string, opts: BpeTrainOptions): BpeModel {
  const specials = opts.specialTokens ?? ['<|endoftext|>'];
  const vocab = new Map<string, number>();
  for (const s of specials) vocab.set(s, vocab.size);
  for (let b = 0; b < 256; b++) vocab.set(B2U[b], vocab.size);
  const target = opts.vocabSize - vocab.size;
  if (target < 0) throw new Error(`trainBpe: vocabSize ${opts.vocabSize} is below ${vocab.size} (specials + 256 bytes)`);

  // unique pieces with their counts; each is a list of symbol ids
  const counts = new Map<string, number>();
  for (const m of text.matchAll(GPT2_SPLIT)) counts.set(m[0], (counts.get(m[0]) ?? 0) + 1);
  const symbols: string[] = [...vocab.keys()];
  const words: number[][] = [];
  const freq: number[] = [];
  for (const [piece, c] of counts) {
    words.push(pieceSymbols(piece).map((s) => vocab.get(s)!));
    freq.push(c);
  }
  // pair statistics: count and the words that contain it
  const key = (a: number, b: number) => a * 65536 + b;
  const pairCount = new Map<number, number>();
  const pairWords = new Map<number, Set<number>>();
  const mergeable = (a: number, b: number) => !isDigitSymbol(symbols[a]) && !isDigitSymbol(symbols[b]);
  const addWord = (w: number, sign: number) => {
    const s = words[w];
    for (let i = 0; i + 1 < s.length; i++) {
      if (!mergeable(s[i], s[i + 1])) continue;
      const k = key(s[i], s[i + 1]);
      pairCount.set(k, (pairCount.get(k) ?? 0) + sign * freq[w]);
      if (sign > 0) {
        let set = pairWords.get(k);
        if (!set) pairWords.set(k, (set = new Set()));
        set.add(w);
      }
    }
  };
  for (let w = 0; w < words.length; w++) addWord(w, 1);

  const merges: [string, string][] = [];
  while (merges.length < target) {
    let best = -1;
    let bestCount = 0;
    for (const [k, c] of pairCount) if (c > bestCount || (c === bestCount && c > 0 && k < best)) [best, bestCount] = [k, c];
    if (bestCount <= 0) break;
    const a = Math.floor(best / 65536);
    const b = best % 65536;
    const merged = symbols[a] + symbols[b];
    const id = symbols.length;
    symbols.push(merged);
    vocab.set(merged, id);
    merges.push([symbols[a], symbols[b]]);
    for (const w of pairWords.get(best) ?? []) {
      addWord(w, -1);
      const s = words[w];
      const next: number[] = [];
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) {
          next.push(id);
          i++;
        } else next.push(s[i]);
      }
      words[w] = next;
      addWord(w, 1);
    }
    pairWords.delete(best);
    pairCount.delete(best);
    opts.onProgress?.(merges.length, target);
  }
  return { vocab, merges, specialTokens: specials };
}

/** Encodes text with a trained model (merge ranks, per-piece cache); the library must agree. */
export class BpeEncoder {
  private ranks = new Map<string, number>();
  private cache = new Map<string, number[]>();

  constructor(private model: BpeModel) {
    model.merges.forEach(([a, b], i) => this.ranks.set(a + ' ' + b, i));
  }

  encode(text: string): number[] {
    const out: number[] = [];
    for (const m of text.matchAll(GPT2_SPLIT)) {
      let ids = this.cache.get(m[0]);
      if (!ids) {
        ids = this.encodePiece(m[0]);
        this.cache.set(m[0], ids);
      }
      for (const id of ids) out.push(id);
    }
    return out;
  }

  private encodePiece(piece: string): number[] {
    let s = pieceSymbols(piece);
    for (;;) {
      let bestRank = Infinity;
      let at = -1;
      for (let i = 0; i + 1 < s.length; i++) {
        const r = this.ranks.get(s[i] + ' ' + s[i + 1]);
        if (r !== undefined && r < bestRank) [bestRank, at] = [r, i];
      }
      if (at < 0) break;
      s = [...s.slice(0, at), s[at] + s[at + 1], ...s.slice(at + 2)];
    }
    return s.map((sym) => this.model.vocab.get(sym)!);
  }
}

/** The tokenizer.json document for a trained model (HF tokenizers' serialisation). */
export function tokenizerJson(model: BpeModel): object {
  const flags = { single_word: false, lstrip: false, rstrip: false, normalized: false, special: true };
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: model.specialTokens.map((content, id) => ({ id, content, ...flags })),
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: { ...byteLevel, trim_offsets: false },
    decoder: byteLevel,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: Object.fromEntries(model.vocab),
      merges: model.merges.map(([a, b]) => `${a} ${b}`),
    },
  };
}
