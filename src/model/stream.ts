/**
 * Asynchronous streaming generation: text deltas as tokens are chosen, stop strings, and an
 * AbortSignal that ends generation within one token.
 *
 *   const s = stream({ model, tokenizer }, 'The Congress', { cache, maxNewTokens: 40, stop: ['\n'] });
 *   for await (const piece of s) process.stdout.write(piece.text);
 *   s.result?.finishReason; // 'length' | 'stop' | 'abort'
 *
 * Between tokens the loop yields to the event loop, so a server keeps serving (and hears a
 * client leave) while a long answer is written. When the iteration ends, for whatever reason,
 * the cache holds the prompt and every token yielded (stop-string tokens included): the
 * conversation can be saved or continued.
 */
import { DEFAULT_GENERATION, decodeTokens, type DecodeTimings, type GenerateOptions } from './generate.js';
import type { KVCache } from './kv-cache.js';
import type { LlamaModel } from './llama.js';

/** What streaming needs of a tokenizer. */
export interface TextCodec {
  encode(text: string): number[];
  decode(ids: number[]): string;
}

/** A model with its tokenizer (what `loadModel` returns). */
export interface LanguageModel {
  model: LlamaModel;
  tokenizer: TextCodec;
}

export interface StreamOptions extends Omit<GenerateOptions, 'onToken' | 'stopIds'> {
  cache: KVCache;
  /** Strings that end generation; the text yielded stops just before the first one found. */
  stop: string[];
  /** Token ids that end generation (kept); by default the model's end-of-text ids. */
  stopIds?: number[];
  signal?: AbortSignal;
}

/** One new token and the text it completes (may be empty while a character or a possible stop string is incomplete). */
export interface StreamPiece {
  id: number;
  text: string;
}

export type FinishReason = 'length' | 'stop' | 'abort';

export interface StreamResult extends DecodeTimings {
  ids: number[];
  text: string;
  finishReason: FinishReason;
  prefillTokens: number;
}

export const DEFAULT_STREAM: Readonly<Omit<StreamOptions, 'cache' | 'signal' | 'stopIds'>> = Object.freeze({ ...DEFAULT_GENERATION, stop: [] });

export class GenerationStream implements AsyncIterable<StreamPiece> {
  /** Set when the iteration has ended. */
  result: StreamResult | null = null;
  private started = false;

  constructor(private readonly lm: LanguageModel, private readonly prompt: number[], private readonly opts: StreamOptions) {}

  async *[Symbol.asyncIterator](): AsyncGenerator<StreamPiece, void> {
    if (this.started) throw new Error('a generation stream can be iterated once');
    this.started = true;
    const { model, tokenizer } = this.lm;
    const o = this.opts;
    const stop = o.stop.filter((s) => s.length > 0);
    const timings: DecodeTimings = { prefillSeconds: 0, decodeSeconds: 0, decodeTokens: 0 };
    const ids: number[] = [];
    let emitted = '';
    let finishReason: FinishReason = 'length';
    let ended = false; // false in `finally` only when the consumer left the loop early
    const finish = () => {
      if (!ended) finishReason = 'abort';
      this.result = { ids, text: emitted, finishReason, prefillTokens: this.prompt.length, ...timings };
    };
    if (o.signal?.aborted) {
      finishReason = 'abort';
      ended = true;
      finish();
      return;
    }
    const stopIds = o.stopIds ?? model.config.eosTokenIds;
    const tokens = decodeTokens(model, this.prompt, o.cache, { ...o, stopIds }, timings);
    try {
      for (let next = tokens.next(); !next.done; next = tokens.next()) {
        const id = next.value;
        ids.push(id);
        const full = tokenizer.decode(ids);
        const last = ids.length === o.maxNewTokens || stopIds.includes(id);
        const cut = firstStop(full, stop, Math.max(0, emitted.length - longest(stop)));
        let safe: string;
        if (cut >= 0) {
          safe = full.slice(0, cut);
          finishReason = 'stop';
        } else if (last) {
          safe = full;
          if (stopIds.includes(id)) finishReason = 'stop';
        } else {
          // hold back a character still being written, and a tail that may begin a stop string
          safe = full.endsWith('\uFFFD') ? full.replace(/\uFFFD+$/, '') : full;
          safe = safe.slice(0, safe.length - stopPrefixLength(safe, stop));
        }
        const text = safe.startsWith(emitted) ? safe.slice(emitted.length) : '';
        emitted += text;
        yield { id, text };
        if (cut >= 0 || (o.signal?.aborted && !last)) {
          if (cut < 0) finishReason = 'abort';
          ended = true;
          return;
        }
        // let timers and I/O run between tokens (a server hears a client leave here)
        await nextTurn();
        if (o.signal?.aborted && !last) {
          finishReason = 'abort';
          ended = true;
          return;
        }
      }
      ended = true;
    } finally {
      finish();
    }
  }
}

/** Streams a continuation of `prompt` (text or token ids). Options default to `DEFAULT_STREAM`. */
export function stream(lm: LanguageModel, prompt: string | number[], options: Partial<StreamOptions> & { cache: KVCache }): GenerationStream {
  const ids = typeof prompt === 'string' ? lm.tokenizer.encode(prompt) : prompt;
  if (ids.length === 0) throw new RangeError('stream: the prompt has no tokens');
  return new GenerationStream(lm, ids, { ...DEFAULT_STREAM, ...options });
}

let turnChannel: MessageChannel | null = null;
const turnWaiters: (() => void)[] = [];

/**
 * Resolves after pending I/O and events have had their turn: setImmediate in Node; in browsers a
 * message to ourselves, since a 0 ms timer nested in timers is held back 4 ms (the HTML spec's
 * clamp), which at ~100 tokens/s would be a third of the time.
 */
function nextTurn(): Promise<void> {
  const immediate = (globalThis as { setImmediate?: (f: () => void) => void }).setImmediate;
  if (immediate) return new Promise((resolve) => immediate(resolve));
  if (typeof MessageChannel === 'undefined') return new Promise((resolve) => setTimeout(resolve, 0));
  if (!turnChannel) {
    turnChannel = new MessageChannel();
    turnChannel.port1.onmessage = () => turnWaiters.shift()?.();
  }
  const ch = turnChannel;
  return new Promise((resolve) => {
    turnWaiters.push(resolve);
    ch.port2.postMessage(null);
  });
}

function longest(stop: string[]): number {
  return stop.reduce((m, s) => Math.max(m, s.length), 0);
}

/** Index of the earliest stop string in `text` (searching from `from`), or −1. */
function firstStop(text: string, stop: string[], from: number): number {
  let best = -1;
  for (const s of stop) {
    const i = text.indexOf(s, from);
    if (i >= 0 && (best < 0 || i < best)) best = i;
  }
  return best;
}

/** Length of the longest tail of `text` that is a proper prefix of a stop string. */
function stopPrefixLength(text: string, stop: string[]): number {
  let best = 0;
  for (const s of stop) {
    for (let k = Math.min(s.length - 1, text.length); k > best; k--) {
      if (text.endsWith(s.slice(0, k))) {
        best = k;
        break;
      }
    }
  }
  return best;
}
