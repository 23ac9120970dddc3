/** `aquakv demo` (npm start): the whole story on the embedded model, with report.html. */
import { join, resolve } from 'node:path';
import { DEFAULT_DEMO, runDemo } from '../demo/run-demo.js';
import { DEFAULT_EVAL, defaultSeqLen } from '../eval/perplexity.js';
import { AquaError } from '../errors.js';
import { sotuSplit } from '../eval/datasets.js';
import { readText } from '../eval/texts.js';
import { loadTokenizer } from '../io/tokenizer.js';
import { platform } from '../platform/index.js';
import { DEFAULT_PREDICTOR_CACHE_DIR } from '../predictors/cache-dir.js';
import { renderReport } from '../report/html.js';
import { intOpt, MAX_SEED, opt, parse } from './args.js';
import { bufferOption, jsonOption, modelOption, sinksOption } from './common-options.js';
import type { Command } from './command.js';
import { formatLayerErrors, formatResults, formatRetrieval } from './format.js';
import { isEmbedded, openModel, resolveModelDir } from './model-dir.js';
import { progress, type Progress } from './progress.js';

const options = {
  model: modelOption,
  text: opt('FILE', 'text to evaluate on and hide pass keys in', '@moby-dick for the embedded model'),
  'calibration-data': opt('FILE', 'text to calibrate on', '@sotu-train for the embedded model'),
  'cache-dir': opt('DIR', 'where calibrated predictors are kept and reused', DEFAULT_PREDICTOR_CACHE_DIR),
  samples: opt('N', 'calibration windows', DEFAULT_DEMO.samples),
  'seq-len': opt('L', 'tokens per window', `min(the model's context, ${DEFAULT_EVAL.maxSeqLen})`),
  'max-tokens': opt('N', 'tokens of the text to evaluate on', DEFAULT_DEMO.maxTokens),
  prompt: opt('TEXT', 'the text whose start is the generation prompt', 'a held-out address'),
  'prompt-tokens': opt('N', 'prompt length in tokens', DEFAULT_DEMO.promptTokens),
  'max-new-tokens': opt('N', 'tokens to generate', DEFAULT_DEMO.maxNewTokens),
  sinks: sinksOption,
  buffer: bufferOption,
  seed: opt('S', 'sampling seed of both continuations', DEFAULT_DEMO.sampling.seed),
  'retrieval-samples': opt('N', 'pass keys per distance (0 skips retrieval)', DEFAULT_DEMO.retrievalSamples),
  conversation: opt('FILE', 'where the AQUA-KV conversation is saved, then resumed', '<cache-dir>/conversation.aqkv'),
  out: opt('FILE', 'the report', 'report.html'),
  json: jsonOption,
};

export const demoCommand: Command = {
  summary: 'calibrate, evaluate every method, generate with fp and AQUA-KV, save and resume the AQUA-KV conversation, write report.html',
  options,
  run(argv) {
    const o = parse(argv, options);
    const dir = resolveModelDir(o.model);
    const embedded = isEmbedded(dir);
    const evalSource = o.text ?? (embedded ? '@moby-dick' : undefined);
    const calibSource = o['calibration-data'] ?? (embedded ? '@sotu-train' : undefined);
    if (!evalSource || !calibSource) throw new AquaError('demo on your own model needs --text FILE and --calibration-data FILE');
    const out = resolve(o.out ?? 'report.html');
    platform.checkWritable(out);
    const cacheDir = resolve(o['cache-dir'] ?? DEFAULT_PREDICTOR_CACHE_DIR);
    if (platform.exists(cacheDir) && !platform.isDirectory(cacheDir)) throw new AquaError(`--cache-dir ${cacheDir} is not a directory`);
    const conversationFile = resolve(o.conversation ?? join(cacheDir, 'conversation.aqkv'));
    if (o.conversation !== undefined) platform.checkWritable(conversationFile);
    const model = openModel(dir);
    const tok = loadTokenizer(dir);
    // with --json, stdout carries the JSON only: stages go to stderr
    const log = o.json ? (s: string) => console.error(s) : (s: string) => console.log(s);
    let bar: Progress | null = null;
    let barStage = '';
    const result = runDemo(model, tok, dir, {
      ...DEFAULT_DEMO,
      cacheDir,
      calibrationText: { source: calibSource, text: readText(calibSource) },
      evalText: { source: evalSource, text: readText(evalSource) },
      samples: intOpt(o.samples, 'samples', DEFAULT_DEMO.samples, 2),
      seqLen: intOpt(o['seq-len'], 'seq-len', defaultSeqLen(model.config.maxPositionEmbeddings), 2),
      maxTokens: intOpt(o['max-tokens'], 'max-tokens', DEFAULT_DEMO.maxTokens, 2),
      maxNewTokens: intOpt(o['max-new-tokens'], 'max-new-tokens', DEFAULT_DEMO.maxNewTokens, 1),
      // default prompt: the opening of a held-out address (the embedded model never saw it)
      prompt: o.prompt ?? (embedded ? sotuSplit().heldOut[0].text : readText(evalSource)),
      promptTokens: intOpt(o['prompt-tokens'], 'prompt-tokens', DEFAULT_DEMO.promptTokens, 1),
      sinks: intOpt(o.sinks, 'sinks', DEFAULT_DEMO.sinks, 0),
      buffer: intOpt(o.buffer, 'buffer', DEFAULT_DEMO.buffer, 1),
      retrievalSamples: intOpt(o['retrieval-samples'], 'retrieval-samples', DEFAULT_DEMO.retrievalSamples, 0),
      sampling: { ...DEFAULT_DEMO.sampling, seed: intOpt(o.seed, 'seed', DEFAULT_DEMO.sampling.seed, 0, MAX_SEED) },
      conversationFile,
      onStage: (s) => {
        bar?.stop();
        bar = null;
        log(`\n== ${s}`);
      },
      onProgress: (stage, d, t, label) => {
        if (stage !== barStage || !bar) {
          bar?.stop();
          bar = progress(stage);
          barStage = stage;
        }
        bar.update(d, t, label);
      },
    });
    (bar as Progress | null)?.stop();
    platform.writeFileAtomic(out, renderReport(result));
    if (o.json) {
      console.log(JSON.stringify({ ...result, report: out }, null, 2));
      return;
    }
    for (const c of result.calibrations) {
      console.log(`\npredictors for ${c.method}: ${c.reused ? 'reused' : `calibrated in ${c.seconds.toFixed(1)} s, saved`} ${c.path}`);
      console.log(formatLayerErrors(c.layers));
    }
    console.log(`\nperplexity on ${result.settings.evalText} (${result.settings.evalTokens} tokens, windows of ${result.settings.seqLen} fed ${result.settings.chunk} at a time)`);
    console.log(formatResults(result.results));
    const p = String(result.settings.prompt);
    console.log(`\nprompt (${result.settings.promptTokens} tokens): ${JSON.stringify(p.slice(0, 60))} … ${JSON.stringify(p.slice(-160))}`);
    for (const g of result.generations) {
      console.log(`\n[${g.method}, ${g.cache}] ${JSON.stringify(g.text)}`);
      console.log(
        `  decode ${g.decodeTokensPerSecond.toFixed(1)} tokens/s; cache of ${g.tokens} tokens: ${g.storedBytes.toLocaleString('en-US')} bytes stored ` +
          `(16-bit keys and values would take ${g.fp16Bytes.toLocaleString('en-US')}: ${(g.fp16Bytes / g.storedBytes).toFixed(2)}× compression), ${g.residentBytes.toLocaleString('en-US')} resident`,
      );
    }
    if (result.retrieval.length > 0) {
      console.log(`\npass-key retrieval (a 5-digit key hidden in ${result.settings.evalText}, asked for at the end of a ${result.settings.seqLen}-token window; ${result.retrieval[0].results[0].samples} samples per distance, greedy answer must match exactly)`);
      console.log(formatRetrieval(result.retrieval));
    }
    const c = result.conversation;
    console.log(`\nthe AQUA-KV conversation (${c.tokens} tokens) saved to ${c.file}: ${c.fileBytes.toLocaleString('en-US')} bytes ` +
      `(16-bit keys and values: ${c.fp16Bytes.toLocaleString('en-US')}, ${(c.fp16Bytes / c.fileBytes).toFixed(2)}×; the fp cache saved: ${c.fullCacheFileBytes.toLocaleString('en-US')}); ` +
      `saved in ${(1000 * c.saveSeconds).toFixed(1)} ms, loaded in ${(1000 * c.loadSeconds).toFixed(1)} ms`);
    console.log(`  resumed and continued with ${JSON.stringify(c.followUp)}: ${JSON.stringify(c.continuation)}`);
    console.log(`  first new token ${(1000 * c.resumeFirstTokenSeconds).toFixed(1)} ms resumed vs ${(1000 * c.rereadFirstTokenSeconds).toFixed(1)} ms re-reading the conversation (${(c.rereadFirstTokenSeconds / c.resumeFirstTokenSeconds).toFixed(1)}×)`);
    console.log(`\nreport: ${out} (demo took ${result.seconds.toFixed(0)} s)`);
  },
};
