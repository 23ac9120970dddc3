/** `aquakv eval`: perplexity and KL divergence of each cache method against full precision. */
import { AquaError } from '../errors.js';
import { DEFAULT_EVAL, defaultSeqLen, evaluatePerplexity } from '../eval/perplexity.js';
import { encodeUpTo, readText } from '../eval/texts.js';
import { loadTokenizer } from '../io/tokenizer.js';
import { DEFAULT_CACHE_OPTIONS } from '../kv/compressed.js';
import { checkMethod, parseMethodList } from '../kv/method.js';
import { intOpt, opt, parse } from './args.js';
import { bufferOption, calibrationDataOption, jsonOption, modelOption, predictorsOption, sinksOption } from './common-options.js';
import type { Command } from './command.js';
import { formatResults } from './format.js';
import { openModel, resolveModelDir } from './model-dir.js';
import { predictorsFor } from './predictors.js';
import { progress } from './progress.js';

const options = {
  model: modelOption,
  text: opt('FILE', 'the text to evaluate on: a file, or @moby-dick, @sotu-heldout, @sotu-train', undefined, true),
  methods: opt('LIST', 'comma-separated cache method specs; fp always runs as the reference', 'fp,aquakv,higgs,kivi2,kivi4'),
  predictors: predictorsOption,
  'calibration-data': calibrationDataOption,
  'seq-len': opt('L', 'tokens per window', `min(the model's context, ${DEFAULT_EVAL.maxSeqLen})`),
  chunk: opt('C', 'tokens per forward step (simulated generation)', DEFAULT_EVAL.chunk),
  'max-tokens': opt('N', 'tokens of the text to use (whole windows)', DEFAULT_EVAL.maxTokens),
  sinks: sinksOption,
  buffer: bufferOption,
  json: jsonOption,
};

export const evalCommand: Command = {
  summary: 'perplexity (simulated generation) and KL divergence of cache methods against fp',
  options,
  run(argv) {
    const o = parse(argv, options);
    if (!o.text) throw new AquaError('eval needs --text FILE (or @moby-dick, @sotu-heldout)');
    const dir = resolveModelDir(o.model);
    const methods = parseMethodList(o.methods ?? 'fp,aquakv,higgs,kivi2,kivi4');
    const model = openModel(dir);
    for (const m of methods) checkMethod(m, model.config.kvDim, model.config.nLayers);
    const seqLen = intOpt(o['seq-len'], 'seq-len', defaultSeqLen(model.config.maxPositionEmbeddings), 2);
    if (seqLen > model.config.maxPositionEmbeddings) throw new AquaError(`--seq-len ${seqLen} exceeds the model's context of ${model.config.maxPositionEmbeddings}`);
    const tok = loadTokenizer(dir);
    const maxTokens = intOpt(o['max-tokens'], 'max-tokens', DEFAULT_EVAL.maxTokens, 2);
    const ids = encodeUpTo(readText(o.text), (t) => tok.encode(t), maxTokens);
    const predictors = predictorsFor(model, dir, () => tok, methods, o.predictors, o['calibration-data'], !!o.json);
    const bar = progress('eval', !!o.json);
    const results = evaluatePerplexity(model, ids, methods, predictors, {
      seqLen,
      chunk: intOpt(o.chunk, 'chunk', DEFAULT_EVAL.chunk, 1),
      maxTokens,
      cache: { sinks: intOpt(o.sinks, 'sinks', DEFAULT_CACHE_OPTIONS.sinks, 0), buffer: intOpt(o.buffer, 'buffer', DEFAULT_CACHE_OPTIONS.buffer, 1), mode: 'materialized' },
      onProgress: (d, t, label) => bar.update(d, t, label),
    });
    bar.stop();
    if (o.json) {
      console.log(JSON.stringify({ results: results.map(({ method, bitsPerValue, perplexity, relativeChange, klDivergence, cacheBytes }) => ({ method, bitsPerValue, perplexity, relativeChange, klDivergence, cacheBytes })) }, null, 2));
      return;
    }
    console.log(formatResults(results));
    const r0 = results[0];
    console.log(`${r0.windows} windows of ${r0.tokens / r0.windows + 1} tokens from ${o.text}, fed ${o.chunk ?? DEFAULT_EVAL.chunk} at a time`);
  },
};
