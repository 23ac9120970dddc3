/**
 * The embedded model's quality report: `npm run eval:model [-- --model DIR --max-tokens N --samples N]`.
 * Held-out perplexity and bits per byte on Moby Dick and the held-out addresses against a unigram
 * baseline fitted on the training text, pass-key retrieval with the full-precision cache at
 * several distances, and a few greedy and sampled continuations.
 */
import { intOpt, parse, reportUserErrors } from '../src/cli/args.js';
import { embeddedModelDir, loadModel } from '../src/io/load-model.js';
import { FullCache } from '../src/kv/full.js';
import { readText } from '../src/eval/texts.js';
import { scoreText, unigramLogProbs } from '../src/eval/language-model.js';
import { retrievalAccuracy } from '../src/eval/retrieval-eval.js';
import { generate } from '../src/model/generate.js';

reportUserErrors('evaluate-model');
const a = parse(process.argv.slice(2), {
  model: { type: 'string', default: embeddedModelDir() },
  'max-tokens': { type: 'string', default: '32768' },
  samples: { type: 'string', default: '20' },
  json: { type: 'boolean' },
});
const maxTokens = intOpt(a['max-tokens'], 'max-tokens', 32768, 1);
const samples = intOpt(a.samples, 'samples', 20, 1);
const dir = a.model!;
const { model, tokenizer: tok } = loadModel(dir);
const V = model.config.vocabSize;
const T = model.config.maxPositionEmbeddings;
const encoder = new TextEncoder();
const byteLen = new Map<number, number>();
const tokenBytes = (id: number) => {
  let b = byteLen.get(id);
  if (b === undefined) byteLen.set(id, (b = encoder.encode(tok.decode([id])).length));
  return b;
};
const trainIds = tok.encode(readText('@sotu-train'));
const unigram = unigramLogProbs(trainIds, V);
const report: Record<string, unknown> = {};
const lm: Record<string, unknown> = {};
for (const source of ['@moby-dick', '@sotu-heldout']) {
  const ids = tok.encode(readText(source));
  lm[source] = scoreText(model, ids, tokenBytes, unigram, { seqLen: T, maxTokens });
}
report.languageModel = lm;
const filler = tok.encode(readText('@moby-dick'));
report.retrieval = retrievalAccuracy(model, (s) => tok.encode(s), filler, () => new FullCache(model), {
  distances: [32, 128, 256, 512, 768, T - 64], samples, total: T, chunk: 256, seed: 7,
});
const prompts = ['Fellow-Citizens of the Senate and House of Representatives:', 'The condition of our finances', 'Call me Ishmael. Some years ago'];
report.samples = prompts.flatMap((p) => [0, 0.8].map((temperature) => {
  const g = generate(model, tok.encode(p), new FullCache(model), { maxNewTokens: 48, temperature, topP: 0.95, seed: 1, stopIds: [0] });
  return { prompt: p, temperature, text: tok.decode(g.ids) };
}));
if (a.json) console.log(JSON.stringify(report, null, 2));
else {
  console.log('text            tokens    bytes   perplexity  bits/byte   unigram ppl  unigram bits/byte');
  for (const [k, v] of Object.entries(lm) as [string, ReturnType<typeof scoreText>][]) {
    console.log(`${k.padEnd(14)} ${String(v.tokens).padStart(7)} ${String(v.bytes).padStart(8)} ${v.perplexity.toFixed(2).padStart(12)} ${v.bitsPerByte.toFixed(3).padStart(10)} ${v.unigramPerplexity.toFixed(1).padStart(13)} ${v.unigramBitsPerByte.toFixed(3).padStart(18)}`);
  }
  console.log(`\npass-key retrieval, fp cache, sequences of ${T} tokens, ${samples} samples per distance`);
  for (const r of report.retrieval as { distance: number; accuracy: number }[]) console.log(`  distance ${String(r.distance).padStart(4)}: ${(100 * r.accuracy).toFixed(0)}%`);
  console.log('\nsamples');
  for (const s of report.samples as { prompt: string; temperature: number; text: string }[]) console.log(`[T=${s.temperature}] ${s.prompt}${s.text}\n`);
}
