/** `aquakv generate` and `aquakv logits`. */
import { AquaError } from '../errors.js';
import { loadTokenizer } from '../io/tokenizer.js';
import { FullCache } from '../kv/full.js';
import { DEFAULT_GENERATION, generate } from '../model/generate.js';
import { intOpt, MAX_SEED, numOpt, parse } from './args.js';
import type { Command } from './command.js';
import { openModel, resolveModelDir } from './model-dir.js';

const g = DEFAULT_GENERATION;

export const generateCommand: Command = {
  summary: 'stream a continuation of a prompt, then print prefill and decode tokens/s',
  usage: `[--model DIR] --prompt TEXT [--max-new-tokens N (${g.maxNewTokens})] [--temperature T (${g.temperature}; 0 = greedy)] [--top-p P (${g.topP})] [--seed S (${g.seed})]`,
  run(argv) {
    const o = parse(argv, {
      model: { type: 'string' },
      prompt: { type: 'string' },
      'max-new-tokens': { type: 'string' },
      temperature: { type: 'string' },
      'top-p': { type: 'string' },
      seed: { type: 'string' },
    });
    if (o.prompt === undefined) throw new AquaError('generate needs --prompt TEXT');
    const dir = resolveModelDir(o.model);
    const tok = loadTokenizer(dir);
    const model = openModel(dir);
    const prompt = tok.encode(o.prompt);
    if (prompt.length === 0) throw new AquaError('--prompt encodes to no tokens');
    const maxNew = intOpt(o['max-new-tokens'], 'max-new-tokens', g.maxNewTokens, 1);
    const limit = model.config.maxPositionEmbeddings;
    if (prompt.length + maxNew > limit) {
      throw new AquaError(`prompt (${prompt.length} tokens) + --max-new-tokens ${maxNew} exceeds the model's context of ${limit}`);
    }
    const res = generate(model, prompt, new FullCache(model), {
      maxNewTokens: maxNew,
      temperature: numOpt(o.temperature, 'temperature', g.temperature, 0),
      topP: numOpt(o['top-p'], 'top-p', g.topP, 0, 1),
      seed: intOpt(o.seed, 'seed', g.seed, 0, MAX_SEED),
      stopIds: model.config.eosTokenIds,
      // decode the whole continuation each time so multi-byte characters split over tokens print whole
      onToken: (() => {
        const ids: number[] = [];
        let printed = '';
        return (id: number) => {
          ids.push(id);
          const text = tok.decode(ids);
          if (!text.endsWith('\uFFFD')) {
            process.stdout.write(text.slice(printed.length));
            printed = text;
          }
        };
      })(),
    });
    process.stdout.write('\n');
    const rate = (n: number, s: number) => (s > 0 ? (n / s).toFixed(1) : '-');
    console.error(
      `prefill: ${res.prefillTokens} tokens, ${rate(res.prefillTokens, res.prefillSeconds)} tokens/s; ` +
        `decode: ${res.decodeTokens} tokens, ${rate(res.decodeTokens, res.decodeSeconds)} tokens/s`,
    );
  },
};

export const logitsCommand: Command = {
  summary: 'print the logits of one prefill as JSON (conformance checks against other runtimes)',
  usage: '[--model DIR] (--text TEXT | --ids 1,2,3) --json',
  run(argv) {
    const o = parse(argv, {
      model: { type: 'string' },
      text: { type: 'string' },
      ids: { type: 'string' },
      json: { type: 'boolean' },
    });
    if ((o.text === undefined) === (o.ids === undefined)) throw new AquaError('logits needs exactly one of --text TEXT or --ids 1,2,3');
    if (!o.json) throw new AquaError('logits prints JSON only; pass --json');
    const dir = resolveModelDir(o.model);
    let ids: number[];
    if (o.ids !== undefined) {
      ids = o.ids.split(',').map((s) => {
        const n = Number(s.trim());
        if (s.trim() === '' || !Number.isInteger(n)) throw new AquaError(`--ids: '${s}' is not an integer token id`);
        return n;
      });
    } else {
      ids = loadTokenizer(dir).encode(o.text!);
    }
    if (ids.length === 0) throw new AquaError('no tokens to run');
    const model = openModel(dir);
    const V = model.config.vocabSize;
    const bad = ids.find((id) => id < 0 || id >= V);
    if (bad !== undefined) throw new AquaError(`token id ${bad} is outside the vocabulary [0, ${V})`);
    if (ids.length > model.config.maxPositionEmbeddings) throw new AquaError(`${ids.length} tokens exceed the model's context of ${model.config.maxPositionEmbeddings}`);
    const logits = model.forward(ids, new FullCache(model), { logits: 'all' });
    const rows: number[][] = [];
    for (let t = 0; t < ids.length; t++) rows.push(Array.from(logits.subarray(t * V, (t + 1) * V)));
    process.stdout.write(JSON.stringify({ ids, logits: rows }) + '\n');
  },
};
