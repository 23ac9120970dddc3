/** Messages between the page and its worker, and what both sides of a comparison must agree on. */

/** The page's prompt: the opening of the manifest's held-out address, long enough that most of it is compressed (~300 tokens). */
export const PROMPT_CHARS = 1500;
/** The page's sampling (fp and AQUA-KV alike; the seed is the page's input). */
export const PAGE_SAMPLING = { temperature: 0.8, topP: 0.95 };

export interface RunRequest {
  type: 'run';
  /** Where the assets are (the page's origin): manifest.json lists them. */
  base: string;
  prompt: string;
  maxNewTokens: number;
  seed: number;
  temperature: number;
  topP: number;
  /** The AQUA-KV predictor file to use (a budget's), from the manifest. */
  predictors: string;
  /** Also run the pass-key question. */
  passKey: boolean;
}

export interface Manifest {
  model: { config: string; safetensors: string[]; tokenizer: string };
  grids: string[];
  predictors: { label: string; method: string; url: string }[];
  prompt: string;
}

export type WorkerMessage =
  | { type: 'status'; text: string }
  | { type: 'token'; side: 'fp' | 'aquakv'; id: number; text: string; tokensPerSecond: number; cacheBytes: number; fp16Bytes: number; tokens: number }
  | { type: 'side-done'; side: 'fp' | 'aquakv'; ids: number[]; text: string; cacheBytes: number; stored: number; tokensPerSecond: number; bitsPerValue: number }
  | { type: 'passkey'; key: string; answers: { fp: string; aquakv: string }; distance: number }
  | { type: 'done'; loadSeconds: number; firstTokenSeconds: number }
  | { type: 'error'; message: string };
