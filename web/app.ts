/**
 * The page: fp and AQUA-KV side by side in the embedded model, computed in a worker. Query
 * parameters (for scripts): seed, tokens, chars (prompt length), passkey=0 to skip the question,
 * predictors (a predictor file's URL), base to load assets from elsewhere. When the first side-by-side run has finished, <body data-state="done">; on
 * failure data-state="error" with the message on the page. Results are on window.aquakvResult.
 */
import { PAGE_SAMPLING, PROMPT_CHARS, type Manifest, type RunRequest, type WorkerMessage } from './protocol.js';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const params = new URLSearchParams(location.search);
const base = params.get('base') ?? location.origin;
const fmt = (n: number) => n.toLocaleString('en-US');

interface SideResult { ids: number[]; text: string; stored: number; cacheBytes: number; tokensPerSecond: number; bitsPerValue: number }
const result: { fp?: SideResult; aquakv?: SideResult; passkey?: { key: string; answers: { fp: string; aquakv: string } }; loadSeconds?: number; firstTokenSeconds?: number } = {};
(window as unknown as { aquakvResult: typeof result }).aquakvResult = result;

function setState(state: 'loading' | 'running' | 'done' | 'error', message?: string) {
  document.body.dataset.state = state;
  if (message !== undefined) $('status').textContent = message;
}

function fail(message: string) {
  setState('error', '');
  const box = $('error');
  box.textContent = `Error: ${message}`;
  box.hidden = false;
}

const worker = new Worker('worker.js', { type: 'module' });
worker.onerror = (e) => fail(e.message || 'the worker failed to start');
worker.onmessage = (e: MessageEvent<WorkerMessage>) => {
  const m = e.data;
  switch (m.type) {
    case 'status':
      $('status').textContent = m.text;
      break;
    case 'token': {
      $(`${m.side}-text`).textContent += m.text;
      $(`${m.side}-speed`).textContent = `${m.tokensPerSecond.toFixed(1)} tokens/s`;
      $(`${m.side}-bytes`).textContent = `${fmt(m.cacheBytes)} bytes stored for ${m.tokens} tokens (16-bit: ${fmt(m.fp16Bytes)})`;
      break;
    }
    case 'side-done':
      result[m.side] = { ids: m.ids, text: m.text, stored: m.stored, cacheBytes: m.cacheBytes, tokensPerSecond: m.tokensPerSecond, bitsPerValue: m.bitsPerValue };
      $(`${m.side}-speed`).textContent = `${m.tokensPerSecond.toFixed(1)} tokens/s (decode)`;
      break;
    case 'passkey':
      result.passkey = { key: m.key, answers: m.answers };
      $('passkey').textContent = `Pass key ${m.key}, stated ${m.distance} tokens before the question. fp answers "${m.answers.fp}", AQUA-KV answers "${m.answers.aquakv}".`;
      break;
    case 'done':
      result.loadSeconds = m.loadSeconds;
      result.firstTokenSeconds = m.firstTokenSeconds;
      setState('done', `done: model loaded in ${m.loadSeconds.toFixed(2)} s, first token after ${m.firstTokenSeconds.toFixed(2)} s`);
      ($('run') as HTMLButtonElement).disabled = false;
      break;
    case 'error':
      fail(m.message);
      break;
  }
};

let manifest: Manifest | null = null;


function start() {
  if (!manifest) return;
  for (const side of ['fp', 'aquakv']) {
    $(`${side}-text`).textContent = '';
    $(`${side}-speed`).textContent = '';
    $(`${side}-bytes`).textContent = '';
  }
  $('passkey').textContent = '';
  ($('run') as HTMLButtonElement).disabled = true;
  const slider = $('budget') as HTMLInputElement;
  const chosen = manifest.predictors[Number(slider.value)] ?? manifest.predictors[0];
  const req: RunRequest = {
    type: 'run', base, prompt: manifest.prompt.slice(0, Number(params.get('chars') ?? PROMPT_CHARS)), maxNewTokens: Number(params.get('tokens') ?? 24),
    seed: Number(($('seed') as HTMLInputElement).value), ...PAGE_SAMPLING, predictors: params.get('predictors') ?? chosen.url, passKey: params.get('passkey') !== '0',
  };
  setState('running', 'starting…');
  worker.postMessage(req);
}

async function init() {
  setState('loading', 'loading…');
  ($('seed') as HTMLInputElement).value = params.get('seed') ?? '1';
  try {
    const r = await fetch(`${base}/manifest.json`);
    if (!r.ok) throw new Error(`could not load ${base}/manifest.json: HTTP ${r.status}`);
    manifest = (await r.json()) as Manifest;
  } catch (e) {
    fail((e as Error).message);
    return;
  }
  const slider = $('budget') as HTMLInputElement;
  slider.max = String(manifest.predictors.length - 1);
  // the default budget (2.5 bits) when offered, else the largest
  const preferred = manifest.predictors.findIndex((p) => p.method === 'aquakv[bits=2.5]');
  slider.value = String(preferred >= 0 ? preferred : manifest.predictors.length - 1);
  const label = () => ($('budget-label').textContent = manifest!.predictors[Number(slider.value)]?.label ?? '');
  slider.oninput = label;
  label();
  $('run').onclick = start;
  start();
}

void init();
