/** Async streaming: the same tokens as generate, text deltas, stop strings, AbortSignal, a free event loop. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCache, FullCache, generate, loadModel, parseMethod, stream, type StreamPiece } from '../src/index.js';
import { makeTinyModel } from './fixture.js';

const lm = loadModel(makeTinyModel({ layers: 2, maxPositions: 256 }));
const { model, tokenizer } = lm;
const prompt = 'The Congress shall have';
const sampling = { temperature: 1, topP: 0.95, seed: 7, maxNewTokens: 40, stopIds: [] as number[] };

async function collect(s: AsyncIterable<StreamPiece>, each?: (p: StreamPiece, i: number) => void): Promise<StreamPiece[]> {
  const out: StreamPiece[] = [];
  for await (const p of s) {
    each?.(p, out.length);
    out.push(p);
  }
  return out;
}

test('stream yields the tokens generate chooses, and text deltas that add up to their decoding', async () => {
  for (const method of ['fp', 'kivi2']) {
    const g = generate(model, tokenizer.encode(prompt), createCache(model, parseMethod(method)), sampling);
    const cache = createCache(model, parseMethod(method));
    const s = stream(lm, prompt, { ...sampling, cache });
    const pieces = await collect(s);
    assert.deepEqual(pieces.map((p) => p.id), g.ids, method);
    assert.equal(pieces.map((p) => p.text).join(''), tokenizer.decode(g.ids));
    assert.equal(s.result?.finishReason, 'length');
    assert.equal(s.result?.text, tokenizer.decode(g.ids));
    // the cache holds the prompt and every token yielded
    assert.equal(cache.length, tokenizer.encode(prompt).length + g.ids.length);
    for (const p of pieces.slice(0, -1)) assert.ok(!p.text.endsWith('\uFFFD'), 'a character still being written is held back');
  }
});

test('a stop string ends the stream just before it, even when it spans tokens', async () => {
  const full = tokenizer.decode(generate(model, tokenizer.encode(prompt), new FullCache(model), sampling).ids);
  const stop = full.slice(12, 15); // three characters in the middle of the continuation
  const s = stream(lm, prompt, { ...sampling, cache: new FullCache(model), stop: ['never appears', stop] });
  const pieces = await collect(s);
  assert.equal(pieces.map((p) => p.text).join(''), full.slice(0, full.indexOf(stop)));
  assert.equal(s.result?.finishReason, 'stop');
  for (const p of pieces) assert.ok(!p.text.includes(stop));
});

test('an AbortSignal stops the stream within one token; the cache keeps what was yielded', async () => {
  const controller = new AbortController();
  const cache = new FullCache(model);
  const s = stream(lm, prompt, { ...sampling, cache, signal: controller.signal });
  const pieces = await collect(s, (_, i) => {
    if (i === 2) controller.abort();
  });
  assert.equal(pieces.length, 3);
  assert.equal(s.result?.finishReason, 'abort');
  assert.equal(cache.length, tokenizer.encode(prompt).length + 3);
  // aborted from a timer while decoding
  const timed = new AbortController();
  const t = stream(lm, prompt, { ...sampling, maxNewTokens: 200, cache: new FullCache(model), signal: timed.signal });
  setTimeout(() => timed.abort(), 5);
  const got = await collect(t);
  assert.equal(t.result?.finishReason, 'abort');
  assert.ok(got.length < 200, `stopped after ${got.length} tokens`);
  // already aborted: nothing is generated
  const none = stream(lm, prompt, { ...sampling, cache: new FullCache(model), signal: AbortSignal.abort() });
  assert.deepEqual(await collect(none), []);
  assert.equal(none.result?.finishReason, 'abort');
});

test('leaving the loop early ends generation as an abort; the event loop runs between tokens', async () => {
  const cache = new FullCache(model);
  const s = stream(lm, prompt, { ...sampling, cache });
  let ticks = 0;
  const timer = setInterval(() => ticks++, 0);
  let n = 0;
  for await (const _ of s) if (++n === 25) break;
  clearInterval(timer);
  assert.equal(s.result?.finishReason, 'abort');
  assert.equal(cache.length, tokenizer.encode(prompt).length + 25);
  assert.ok(ticks > 0, 'timers fired while streaming');
});
