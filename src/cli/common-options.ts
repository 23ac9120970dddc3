/** Options several commands share, described once. */
import { DEFAULT_CACHE_OPTIONS } from '../kv/compressed.js';
import { flag, opt } from './args.js';

export const modelOption = opt('DIR', 'a Hugging Face model directory (config.json, safetensors, tokenizer.json)', 'the embedded model');
export const jsonOption = flag('print JSON on stdout (progress stays on stderr)');
export const predictorsOption = opt('FILE[,FILE…]', 'predictor files from aquakv calibrate; each AQUA-KV method takes the one calibrated for it', 'calibrated on first use and kept in .aquakv-cache');
export const calibrationDataOption = opt('FILE', 'text to calibrate on when no --predictors are given', '@sotu-train for the embedded model');
export const sinksOption = opt('P', 'first tokens kept in full precision (attention sinks)', DEFAULT_CACHE_OPTIONS.sinks);
export const bufferOption = opt('B', 'block size: recent tokens wait in full precision until a block of B is complete', DEFAULT_CACHE_OPTIONS.buffer);
