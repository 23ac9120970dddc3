/**
 * One completion at a time through the model: look up the longest stored prefix of the prompt,
 * prefill the rest in block-aligned steps, stream the continuation, then store the prompt's and
 * the conversation's longest block-aligned prefixes for later requests. Requests wait their turn
 * in a bounded FIFO queue (one model, one forward pass at a time); past the bound they are refused.
 */
import type { KVCache } from '../model/kv-cache.js';
import { stream, type FinishReason, type LanguageModel, type StreamPiece } from '../model/stream.js';
import type { PrefixCache } from './prefix-cache.js';

export interface CompletionRequest {
  prompt: number[];
  maxTokens: number;
  temperature: number;
  topP: number;
  seed: number;
  stop: string[];
  signal?: AbortSignal;
}

export interface CompletionResult {
  text: string;
  ids: number[];
  finishReason: FinishReason;
  promptTokens: number;
  reusedTokens: number; // prompt tokens restored from the prefix cache
  prefillSeconds: number; // store lookup + prefill of the rest + the first token's logits
  decodeSeconds: number;
  decodeTokens: number;
}

export class QueueFullError extends Error {
  constructor(readonly limit: number) {
    super(`the server is busy: ${limit} requests are already waiting`);
  }
}

export interface CompleterTotals {
  requests: number;
  promptTokens: number;
  prefilledTokens: number;
  generatedTokens: number;
  lastDecodeTokensPerSecond: number;
}

export class Completer {
  readonly totals: CompleterTotals = { requests: 0, promptTokens: 0, prefilledTokens: 0, generatedTokens: 0, lastDecodeTokensPerSecond: 0 };
  private busy = false;
  private waiting: (() => void)[] = [];

  constructor(readonly lm: LanguageModel, readonly prefixes: PrefixCache, readonly maxQueue: number) {}

  /** Requests waiting for the model (not counting the one running). */
  get queued(): number {
    return this.waiting.length;
  }

  private async acquire(signal?: AbortSignal): Promise<void> {
    if (!this.busy) {
      this.busy = true;
      return;
    }
    if (this.waiting.length >= this.maxQueue) throw new QueueFullError(this.maxQueue);
    await new Promise<void>((resolve, reject) => {
      const go = () => {
        signal?.removeEventListener('abort', leave);
        resolve();
      };
      const leave = () => {
        this.waiting = this.waiting.filter((w) => w !== go);
        reject(signal?.reason ?? new Error('aborted'));
      };
      this.waiting.push(go);
      signal?.addEventListener('abort', leave, { once: true });
    });
  }

  private release(): void {
    const next = this.waiting.shift();
    if (next) next(); // the model passes straight to the next in line
    else this.busy = false;
  }

  /**
   * Runs one completion, calling `onPiece` with each new token's text as it is chosen. Waits its
   * turn first (throws QueueFullError when the queue is full, or the signal's reason if aborted
   * while waiting).
   */
  async complete(req: CompletionRequest, onPiece?: (piece: StreamPiece) => void | Promise<void>): Promise<CompletionResult> {
    await this.acquire(req.signal);
    try {
      return await this.run(req, onPiece);
    } finally {
      this.release();
    }
  }

  private async run(req: CompletionRequest, onPiece?: (piece: StreamPiece) => void | Promise<void>): Promise<CompletionResult> {
    const { model } = this.lm;
    const tokens = req.prompt;
    const t0 = performance.now();
    const { cache, reused } = await this.prefixes.lookup(tokens);
    // everything but the last prompt token, in steps that never cross a block boundary; a copy of
    // the cache at the prompt's last block boundary is kept to store it (and to extend it below)
    const B = this.prefixes.block;
    const promptBoundary = Math.floor((tokens.length - 1) / B) * B;
    let atBoundary = promptBoundary > 0 && promptBoundary === reused ? cache.fork() : null;
    feedAligned(model, tokens, reused, tokens.length - 1, cache, B, (pos) => {
      if (pos === promptBoundary) atBoundary = cache.fork();
    });
    const s = stream(this.lm, tokens.slice(tokens.length - 1), {
      cache, maxNewTokens: req.maxTokens, temperature: req.temperature, topP: req.topP, seed: req.seed, stop: req.stop, signal: req.signal,
    });
    for await (const piece of s) await onPiece?.(piece);
    const r = s.result!;
    const prefillSeconds = (performance.now() - t0) / 1000 - r.decodeSeconds;
    await this.remember(tokens, r.ids, reused, promptBoundary, atBoundary);
    const t = this.totals;
    t.requests++;
    t.promptTokens += tokens.length;
    t.prefilledTokens += tokens.length - reused;
    t.generatedTokens += r.ids.length;
    if (r.decodeSeconds > 0) t.lastDecodeTokensPerSecond = r.decodeTokens / r.decodeSeconds;
    return {
      text: r.text, ids: r.ids, finishReason: r.finishReason, promptTokens: tokens.length, reusedTokens: reused,
      prefillSeconds, decodeSeconds: r.decodeSeconds, decodeTokens: r.decodeTokens,
    };
  }

  /**
   * Stores the prompt's last block-aligned prefix, and the conversation's (prompt and completion).
   * Entries must hold what a block-aligned prefill of their tokens gives (decode reads one token
   * at a time, which the native product rounds differently), so the conversation's entry is the
   * prompt's extended by reading the completion's whole blocks afresh: a hit then continues bit
   * for bit as a miss would.
   */
  private async remember(prompt: number[], ids: number[], reused: number, promptBoundary: number, atBoundary: KVCache | null): Promise<void> {
    const B = this.prefixes.block;
    const all = [...prompt, ...ids];
    if (atBoundary && promptBoundary > reused) await this.prefixes.put(all, promptBoundary, this.prefixes.entry(atBoundary, all));
    const end = Math.floor((all.length - 1) / B) * B;
    if (end <= promptBoundary) return;
    const cache = atBoundary ?? this.prefixes.fresh();
    feedAligned(this.lm.model, all, cache.length, end, cache, B);
    await this.prefixes.put(all, end, this.prefixes.entry(cache, all));
  }
}

/** Reads tokens [from, to) into the cache in steps that never cross a multiple of B; `at` sees each step's end. */
function feedAligned(model: LanguageModel['model'], tokens: number[], from: number, to: number, cache: KVCache, B: number, at?: (pos: number) => void): void {
  for (let pos = from; pos < to;) {
    const end = Math.min(to, (Math.floor(pos / B) + 1) * B);
    model.forward(tokens.slice(pos, end), cache, { logits: 'none' });
    pos = end;
    at?.(pos);
  }
}

