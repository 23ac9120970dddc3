/**
 * `aquakv serve`: prefix-cache hits equal misses, the store's budget and its refusals of bad
 * entries, the HTTP surface (4xx per field, SSE framing, abort, queue bound), and Redis shared by
 * two server processes, killed and restarted mid-run (a real redis-server, started here).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { request } from 'node:http';
import { createServer as netServer } from 'node:net';
import { calibrate, createCache, loadModel, parseMethod, type CacheOptions, type KVCache } from '../src/index.js';
import { Completer } from '../src/serve/completer.js';
import { PrefixCache } from '../src/serve/prefix-cache.js';
import { RedisStore } from '../src/serve/redis-store.js';
import { createServer } from '../src/serve/server.js';
import { MemoryStore } from '../src/serve/store.js';
import { createClient } from '@redis/client';
import { makeTinyModel, randomWordsText } from './fixture.js';
import { BIN } from './run-cli.js';

const dir = makeTinyModel({ layers: 3, hidden: 64, heads: 4, kvHeads: 2, headDim: 32, maxPositions: 512 });
const lm = loadModel(dir);
const { model, tokenizer } = lm;
const AQUA = 'aquakv[q=higgs:2x16,first=higgs:2x256]';
const predictors = calibrate(model, randomWordsText(3000, 9), tokenizer, { method: parseMethod(AQUA), samples: 8, seqLen: 128 }).set;
const options = (mode: CacheOptions['mode']): CacheOptions => ({ sinks: 3, buffer: 16, mode, background: true });
const words = (n: number, seed: number) => randomWordsText(n, seed);
const children: ChildProcess[] = [];
after(() => {
  for (const c of children) c.kill('SIGKILL');
});

/** Reads tokens [from, to) in steps that never cross a multiple of B; returns every row's logits. */
function feedAligned(cache: KVCache, tokens: number[], from: number, to: number, B: number): Float32Array {
  const V = model.config.vocabSize;
  const out = new Float32Array((to - from) * V);
  for (let pos = from; pos < to;) {
    const end = Math.min(to, (Math.floor(pos / B) + 1) * B);
    out.set(model.forward(tokens.slice(pos, end), cache, { logits: 'all' }), (pos - from) * V);
    pos = end;
  }
  return out;
}

test('a prefix-cache hit continues with the tokens and logits of a miss, for prompt and conversation entries', async () => {
  for (const [name, mode] of [[AQUA, 'compact'], [AQUA, 'materialized'], ['kivi2', 'materialized'], ['fp', 'materialized']] as const) {
    const method = parseMethod(name);
    const p = method.usesPredictors ? predictors : null;
    const prefixes = new PrefixCache(new MemoryStore(64 << 20), model, method, p, options(mode));
    const completer = new Completer(lm, prefixes, 4);
    const prompt = tokenizer.encode(words(60, 1));
    const greedy = { maxTokens: 20, temperature: 0, topP: 1, seed: 0, stop: [] };
    const first = await completer.complete({ ...greedy, prompt });
    assert.equal(first.reusedTokens, 0, `${name}: the first request misses`);
    // the same prompt again: restored from the prompt's entry, same tokens
    const again = await completer.complete({ ...greedy, prompt });
    assert.ok(again.reusedTokens > 0 && again.reusedTokens % 16 === 0, `${name}: reused ${again.reusedTokens}`);
    assert.deepEqual(again.ids, first.ids, `${name}: a hit generates what the miss generated`);
    // a follow-up that extends the whole conversation reuses the conversation's entry
    const followUp = [...prompt, ...first.ids, ...tokenizer.encode(words(10, 2))];
    const hit = await prefixes.lookup(followUp);
    assert.ok(hit.reused > prompt.length, `${name}: conversation entry reused (${hit.reused} of ${followUp.length})`);
    // and its logits are those of reading the same tokens afresh, bit for bit
    const fresh = createCache(model, method, p, options(mode));
    feedAligned(fresh, followUp, 0, hit.reused, 16);
    assert.deepEqual(feedAligned(hit.cache, followUp, hit.reused, followUp.length, 16), feedAligned(fresh, followUp, hit.reused, followUp.length, 16), `${name} ${mode}: logits after a hit`);
    // through the server, a miss and a hit give the same greedy tokens
    const other = new Completer(lm, new PrefixCache(new MemoryStore(64 << 20), model, method, p, options(mode)), 4);
    assert.deepEqual((await other.complete({ ...greedy, prompt: followUp })).ids, (await completer.complete({ ...greedy, prompt: followUp })).ids, `${name}: follow-up tokens`);
  }
});

test('the in-process store keeps the most recently used entries within its byte budget', async () => {
  const s = new MemoryStore(100);
  await s.set('a', new Uint8Array(40));
  await s.set('b', new Uint8Array(40));
  await s.get('a'); // a is now the most recent
  await s.set('c', new Uint8Array(40)); // evicts b
  assert.equal(await s.get('b'), null);
  assert.ok(await s.get('a'));
  assert.ok(await s.get('c'));
  assert.deepEqual(s.stats(), { bytes: 80, entries: 2, evictions: 1, errors: 0, up: true });
  await s.set('huge', new Uint8Array(101)); // larger than the budget: never held
  assert.equal(await s.get('huge'), null);
  assert.equal(s.stats().evictions, 2);
});

test('a corrupt, partial or foreign entry is a miss, never used, and is deleted', async () => {
  const written: Uint8Array[] = [];
  class Recording extends MemoryStore {
    override async set(key: string, value: Uint8Array): Promise<void> {
      written.push(value);
      return super.set(key, value);
    }
  }
  const prompt = tokenizer.encode(words(40, 3));
  const req = { prompt, maxTokens: 4, temperature: 0, topP: 1, seed: 0, stop: [] };
  const clean = await new Completer(lm, new PrefixCache(new MemoryStore(64 << 20), model, parseMethod('kivi2'), null, options('materialized')), 4).complete(req);
  for (const damage of [
    (e: Uint8Array) => { e[e.length - 70] ^= 0xff; }, // inside the saved cache: its checksum fails
    (e: Uint8Array) => { e[9] ^= 0x01; }, // a token id: another prefix's entry
    (e: Uint8Array) => { e[0] = 0; }, // the frame
  ]) {
    written.length = 0;
    const store = new Recording(64 << 20);
    const c = new Completer(lm, new PrefixCache(store, model, parseMethod('kivi2'), null, options('materialized')), 4);
    await c.complete(req); // a miss: stores entries (recorded)
    assert.ok(written.length >= 1);
    for (const e of written) damage(e);
    const before = store.stats().entries;
    const r = await c.complete(req);
    assert.equal(r.reusedTokens, 0, 'a damaged entry is never used');
    assert.deepEqual(r.ids, clean.ids);
    assert.ok(c.prefixes.counters.corrupt >= 1);
    assert.ok(store.stats().entries <= before, 'damaged entries are deleted');
  }
  // a partial entry (cut short) and one from another model under the right key
  const other = loadModel(makeTinyModel({ layers: 3, hidden: 64, heads: 4, kvHeads: 2, headDim: 32, maxPositions: 512, seed: 7 }));
  const foreign = new PrefixCache(new MemoryStore(1 << 20), other.model, parseMethod('kivi2'), null, options('materialized'));
  const cache = createCache(other.model, parseMethod('kivi2'), null, options('materialized'));
  feedAligned(cache, prompt, 0, 32, 16);
  const entry = foreign.entry(cache, prompt);
  for (const bad of [entry, entry.subarray(0, entry.length - 10)]) {
    const store2 = new MemoryStore(64 << 20);
    const pc = new PrefixCache(store2, model, parseMethod('kivi2'), null, options('materialized'));
    await pc.put(prompt, 32, bad);
    const hit = await pc.lookup(prompt);
    assert.equal(hit.reused, 0);
    assert.equal(pc.counters.corrupt, 1);
    assert.equal(store2.stats().entries, 0);
  }
});

// ---- HTTP ----------------------------------------------------------------------------------

async function startServer(maxQueue = 4, storeBytes = 64 << 20) {
  const prefixes = new PrefixCache(new MemoryStore(storeBytes), model, parseMethod('kivi2'), null, options('materialized'));
  const app = await createServer({ lm, prefixes, methodName: 'kivi2', modelName: 'tiny', maxQueue, defaultMaxTokens: 16 });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  return { app, url };
}

async function post(url: string, body: unknown, contentType = 'application/json') {
  const r = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': contentType }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  return { status: r.status, headers: r.headers, text: await r.text() };
}

const metricOf = (text: string, name: string) => Number(new RegExp(`^${name.replace(/[{}"=]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);

test('each malformed body gets a 4xx JSON error naming the field', async () => {
  const { app, url } = await startServer();
  try {
    const cases: [unknown, string | null][] = [
      [{}, 'prompt'], [{ prompt: 5 }, 'prompt'], [{ prompt: '' }, 'prompt'], [{ prompt: 'x', max_tokens: 0 }, 'max_tokens'],
      [{ prompt: 'x', max_tokens: '5' }, 'max_tokens'], [{ prompt: 'x', max_tokens: 2.5 }, 'max_tokens'], [{ prompt: 'x', temperature: -1 }, 'temperature'],
      [{ prompt: 'x', top_p: 2 }, 'top_p'], [{ prompt: 'x', seed: -1 }, 'seed'], [{ prompt: 'x', stop: 5 }, 'stop'],
      [{ prompt: 'x', stop: ['a', 'b', 'c', 'd', 'e'] }, 'stop'], [{ prompt: 'x', stream: 'yes' }, 'stream'], [{ prompt: 'x', n: 2 }, 'n'],
      [{ prompt: 'x', colour: 'red' }, 'colour'], [{ prompt: 'x', max_tokens: 100000 }, 'max_tokens'], [{ prompt: words(600, 4) }, 'prompt'],
    ];
    for (const [body, field] of cases) {
      const r = await post(url, body);
      assert.equal(r.status, 400, `${JSON.stringify(body).slice(0, 80)}: ${r.text}`);
      const e = JSON.parse(r.text) as { error: { message: string; param: string | null } };
      assert.equal(e.error.param, field, `${JSON.stringify(body).slice(0, 80)}: ${r.text}`);
      assert.ok(e.error.message.length > 0);
    }
    const notJson = await post(url, '{"prompt": ', 'application/json');
    assert.equal(notJson.status, 400);
    assert.ok(JSON.parse(notJson.text).error.message);
    const wrongType = await post(url, 'prompt=x', 'application/x-www-form-urlencoded');
    assert.equal(wrongType.status, 415);
    const metrics = await (await fetch(`${url}/metrics`)).text();
    assert.equal(metricOf(metrics, 'aquakv_requests_total{outcome="bad_request"}'), cases.length + 2);
    const health = await (await fetch(`${url}/health`)).json() as { status: string; method: string };
    assert.deepEqual([health.status, health.method], ['ok', 'kivi2']);
  } finally {
    await app.close();
  }
});

test('streaming sends one server-sent event per piece, the finish reason, then [DONE]; the text is the non-streamed text', async () => {
  const { app, url } = await startServer();
  try {
    const body = { prompt: words(30, 5), max_tokens: 12, temperature: 0 };
    const plain = JSON.parse((await post(url, body)).text) as { choices: { text: string; finish_reason: string }[]; usage: { completion_tokens: number } };
    assert.equal(plain.usage.completion_tokens, 12);
    const r = await post(url, { ...body, stream: true });
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /^text\/event-stream/);
    assert.ok(r.text.endsWith('data: [DONE]\n\n'), r.text.slice(-80));
    const events = r.text.split('\n\n').filter(Boolean);
    for (const e of events) assert.match(e, /^data: /);
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e.slice(6)) as { object: string; choices: { text: string; finish_reason: string | null }[] });
    assert.equal(chunks.map((c) => c.choices[0].text).join(''), plain.choices[0].text);
    assert.equal(chunks.at(-1)!.choices[0].finish_reason, 'length');
    assert.ok(chunks.slice(0, -1).every((c) => c.choices[0].finish_reason === null && c.object === 'text_completion'));
  } finally {
    await app.close();
  }
});

test('a client that disconnects mid-stream aborts its generation; past the queue bound a request gets 429', async () => {
  const { app, url } = await startServer(0);
  try {
    const { port } = new URL(url);
    const events: string[] = [];
    await new Promise<void>((done, fail) => {
      const req = request({ host: '127.0.0.1', port, path: '/v1/completions', method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
        res.on('data', (d: Buffer) => {
          events.push(d.toString());
          if (events.length === 2) {
            req.destroy(); // the client leaves after two events
            done();
          }
        });
        res.on('error', () => {});
      });
      req.on('error', () => {});
      req.end(JSON.stringify({ prompt: words(20, 6), max_tokens: 400, stream: true, temperature: 1 }));
      setTimeout(() => fail(new Error('no events')), 20_000);
    });
    let metrics = '';
    for (let i = 0; i < 200; i++) {
      metrics = await (await fetch(`${url}/metrics`)).text();
      if (metricOf(metrics, 'aquakv_requests_total{outcome="aborted"}') === 1) break;
      await new Promise((r) => setTimeout(r, 25));
    }
    assert.equal(metricOf(metrics, 'aquakv_requests_total{outcome="aborted"}'), 1, metrics);
    assert.ok(metricOf(metrics, 'aquakv_generated_tokens_total') < 400, 'generation stopped early');
    // max-queue 0: while one request runs, the next is refused at once
    const running = post(url, { prompt: words(20, 7), max_tokens: 300, temperature: 1 });
    await new Promise((r) => setTimeout(r, 30));
    const refused = await post(url, { prompt: 'x', max_tokens: 2 });
    assert.equal(refused.status, 429, refused.text);
    assert.equal(refused.headers.get('retry-after'), '1');
    assert.equal((await running).status, 200);
  } finally {
    await app.close();
  }
});

// ---- Redis ---------------------------------------------------------------------------------

async function freePort(): Promise<number> {
  return new Promise((done) => {
    const s = netServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => done(port));
    });
  });
}

async function startRedis(port: number): Promise<ChildProcess> {
  const r = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(r);
  await new Promise<void>((done, fail) => {
    let out = '';
    r.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('Ready to accept connections')) done();
    });
    r.on('exit', (code) => fail(new Error(`redis-server exited ${code}: ${out}`)));
  });
  return r;
}

async function startServeProcess(store: string): Promise<{ url: string; proc: ChildProcess; log: string[] }> {
  const proc = spawn(process.execPath, [BIN, 'serve', '--model', dir, '--method', 'kivi2', '--buffer', '16', '--sinks', '3', '--port', '0', '--store', store], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(proc);
  const log: string[] = [];
  proc.stderr!.on('data', (d: Buffer) => log.push(d.toString()));
  const url = await new Promise<string>((done, fail) => {
    proc.stdout!.on('data', (d: Buffer) => {
      const m = /on (http:\/\/[^\s]+)\/v1\/completions/.exec(d.toString());
      if (m) done(m[1]);
    });
    proc.on('exit', (code) => fail(new Error(`serve exited ${code}: ${log.join('')}`)));
  });
  return { url, proc, log };
}

test('with Redis: two servers share prefix entries, a damaged entry is ignored, and Redis killed and restarted mid-run', { timeout: 120_000 }, async () => {
  assert.equal(spawnSync('redis-server', ['--version']).status, 0, 'redis-server is installed (.ci/run installs it)');
  const port = await freePort();
  let redis = await startRedis(port);
  const store = `redis://127.0.0.1:${port}`;
  const a = await startServeProcess(store);
  const b = await startServeProcess(store);
  const prompt = words(50, 8);
  const greedy = { max_tokens: 8, temperature: 0 };
  const first = JSON.parse((await post(a.url, { prompt, ...greedy })).text) as { choices: { text: string }[]; aquakv: { reused_prompt_tokens: number } };
  assert.equal(first.aquakv.reused_prompt_tokens, 0);
  // B never saw this prompt: it restores A's entry from Redis and generates the same tokens
  const second = JSON.parse((await post(b.url, { prompt, ...greedy })).text) as typeof first;
  assert.ok(second.aquakv.reused_prompt_tokens > 0, JSON.stringify(second));
  assert.equal(second.choices[0].text, first.choices[0].text);
  const mb = await (await fetch(`${b.url}/metrics`)).text();
  assert.equal(metricOf(mb, 'aquakv_prefix_cache_hits_total'), 1);
  assert.equal(metricOf(mb, 'aquakv_store_up'), 1);

  // damage every entry in Redis: the next request misses, counts them corrupt, deletes them
  const client = createClient({ url: store });
  await client.connect();
  const keys = await client.keys('aquakv:*');
  assert.ok(keys.length >= 1);
  for (const k of keys) await client.set(k, 'not an entry');
  const third = JSON.parse((await post(b.url, { prompt, ...greedy })).text) as typeof first;
  assert.equal(third.aquakv.reused_prompt_tokens, 0);
  assert.equal(third.choices[0].text, first.choices[0].text);
  assert.ok(metricOf(await (await fetch(`${b.url}/metrics`)).text(), 'aquakv_prefix_cache_corrupt_total') >= 1);
  for (const k of keys) assert.notEqual(await client.get(k), 'not an entry', 'a damaged entry was deleted (or replaced by a good one)');
  await client.close();

  // Redis goes away: requests are still served, uncached, and the server says so once
  redis.kill('SIGKILL');
  await new Promise((r) => redis.once('exit', r));
  const down = await post(a.url, { prompt: words(40, 9), ...greedy });
  assert.equal(down.status, 200, down.text);
  await post(a.url, { prompt: words(40, 10), ...greedy });
  const ma = await (await fetch(`${a.url}/metrics`)).text();
  assert.equal(metricOf(ma, 'aquakv_store_up'), 0);
  assert.equal(a.log.join('').match(/unreachable/g)?.length, 1, a.log.join(''));
  // Redis comes back on the same port: the server reconnects by itself and entries flow again
  redis = await startRedis(port);
  for (const server of [a, b]) {
    let up = 0;
    for (let i = 0; i < 100 && up !== 1; i++) {
      await new Promise((r) => setTimeout(r, 100));
      up = metricOf(await (await fetch(`${server.url}/metrics`)).text(), 'aquakv_store_up');
    }
    assert.equal(up, 1, 'reconnected');
  }
  assert.match(a.log.join(''), /reachable again/);
  const p2 = words(50, 11);
  await post(a.url, { prompt: p2, ...greedy });
  const again = JSON.parse((await post(b.url, { prompt: p2, ...greedy })).text) as typeof first;
  assert.ok(again.aquakv.reused_prompt_tokens > 0, 'entries are shared again after the restart');
  a.proc.kill('SIGTERM');
  b.proc.kill('SIGTERM');
  redis.kill('SIGTERM');
});

test('RedisStore: an unreachable Redis is a miss at once, never an error', async () => {
  const logs: string[] = [];
  const s = new RedisStore({ url: `redis://127.0.0.1:${await freePort()}`, log: (m) => logs.push(m) });
  const t0 = performance.now();
  assert.equal(await s.get('k'), null);
  await s.set('k', new Uint8Array(4));
  assert.ok(performance.now() - t0 < 1000, 'no waiting for a connection');
  assert.equal(s.stats().up, false);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(logs.filter((l) => /unreachable/.test(l)).length, 1, logs.join('\n'));
  await s.close();
});
