/** `aquakv demo` (npm start): the whole story on the embedded model, with report.html. */
import { resolve } from 'node:path';
import { DEFAULT_DEMO, runDemo } from '../demo/run-demo.js';
import { AquaError } from '../errors.js';
import { sotuSplit } from '../eval/datasets.js';
import { readText } from '../eval/texts.js';
import { loadTokenizer } from '../io/tokenizer.js';
import { platform } from '../platform/index.js';
import { renderReport } from '../report/html.js';
import { intOpt, parse } from './args.js';
import type { Command } from './command.js';
import { formatLayerErrors, formatResults, formatRetrieval } from './format.js';
import { isEmbedded, openModel, resolveModelDir } from './model-dir.js';
import { progress, type Progress } from './progress.js';

export const demoCommand: Command = {
  summary: 'calibrate, evaluate every method, generate with fp and AQUA-KV, write report.html',
  usage: `[--model DIR] [--text FILE|@moby-dick] [--calibration-data FILE|@sotu-train] [--cache-dir DIR (.aquakv-cache)] [--samples N (${DEFAULT_DEMO.samples})] [--seq-len L (the model's context)] [--max-tokens N (${DEFAULT_DEMO.maxTokens})] [--prompt TEXT] [--prompt-tokens N (${DEFAULT_DEMO.promptTokens})] [--max-new-tokens N (${DEFAULT_DEMO.maxNewTokens})] [--sinks P (${DEFAULT_DEMO.sinks})] [--buffer B (${DEFAULT_DEMO.buffer})] [--retrieval-samples N (${DEFAULT_DEMO.retrievalSamples})] [--out FILE (report.html)]`,
  run(argv) {
    const o = parse(argv, {
      model: { type: 'string' }, text: { type: 'string' }, 'calibration-data': { type: 'string' }, 'cache-dir': { type: 'string' },
      samples: { type: 'string' }, 'seq-len': { type: 'string' }, 'max-tokens': { type: 'string' }, 'max-new-tokens': { type: 'string' },
      prompt: { type: 'string' }, 'prompt-tokens': { type: 'string' }, out: { type: 'string' }, sinks: { type: 'string' }, buffer: { type: 'string' }, 'retrieval-samples': { type: 'string' },
    });
    const dir = resolveModelDir(o.model);
    const embedded = isEmbedded(dir);
    const evalSource = o.text ?? (embedded ? '@moby-dick' : undefined);
    const calibSource = o['calibration-data'] ?? (embedded ? '@sotu-train' : undefined);
    if (!evalSource || !calibSource) throw new AquaError('demo on your own model needs --text FILE and --calibration-data FILE');
    const out = resolve(o.out ?? 'report.html');
    platform.checkWritable(out);
    const cacheDir = resolve(o['cache-dir'] ?? '.aquakv-cache');
    if (platform.exists(cacheDir) && !platform.isDirectory(cacheDir)) throw new AquaError(`--cache-dir ${cacheDir} is not a directory`);
    const model = openModel(dir);
    const tok = loadTokenizer(dir);
    let bar: Progress | null = null;
    let barStage = '';
    const result = runDemo(model, tok, dir, {
      ...DEFAULT_DEMO,
      cacheDir,
      calibrationText: { source: calibSource, text: readText(calibSource) },
      evalText: { source: evalSource, text: readText(evalSource) },
      samples: intOpt(o.samples, 'samples', DEFAULT_DEMO.samples, 2),
      seqLen: intOpt(o['seq-len'], 'seq-len', model.config.maxPositionEmbeddings, 2),
      maxTokens: intOpt(o['max-tokens'], 'max-tokens', DEFAULT_DEMO.maxTokens, 2),
      maxNewTokens: intOpt(o['max-new-tokens'], 'max-new-tokens', DEFAULT_DEMO.maxNewTokens, 1),
      // default prompt: the opening of a held-out address (the embedded model never saw it)
      prompt: o.prompt ?? (embedded ? sotuSplit().heldOut[0].text : readText(evalSource)),
      promptTokens: intOpt(o['prompt-tokens'], 'prompt-tokens', DEFAULT_DEMO.promptTokens, 1),
      sinks: intOpt(o.sinks, 'sinks', DEFAULT_DEMO.sinks, 0),
      buffer: intOpt(o.buffer, 'buffer', DEFAULT_DEMO.buffer, 1),
      retrievalSamples: intOpt(o['retrieval-samples'], 'retrieval-samples', DEFAULT_DEMO.retrievalSamples, 0),
      onStage: (s) => {
        bar?.stop();
        bar = null;
        console.log(`\n== ${s}`);
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
    platform.writeFileAtomic(out, renderReport(result));
    console.log(`\nreport: ${out} (demo took ${result.seconds.toFixed(0)} s)`);
  },
};
