/**
 * A fault and bad-input campaign against the built CLI (`npm run campaign`): fuzzed safetensors
 * headers and config.json files, bad arguments, bad text and predictor files, kills while
 * writing, and a full disk (when this process may mount a small tmpfs). Every run is classified:
 *   ok          a valid input ran (exit 0, finite numbers)
 *   refused     exit ≠ 0 with one line `aquakv: …` and no stack
 *   TRACE       a stack trace;   HANG  no exit within 30 s;   MULTILINE  an error over several lines
 *   WRONG       exit 0 with non-finite or missing output;    PARTIAL  a written file that is neither
 *               the old one nor a complete new one
 * It prints a table of counts per category and exits 1 if any of the upper-case outcomes occurred.
 */
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { makeTinyModel, FIXTURE_TEXT } from '../tests/fixture.js';

const BIN = resolve(fileURLToPath(import.meta.url), '../../../bin/aquakv.js');
type Outcome = 'ok' | 'refused' | 'TRACE' | 'HANG' | 'MULTILINE' | 'WRONG' | 'PARTIAL';
const counts = new Map<string, Map<Outcome, number>>();
const examples: string[] = [];
const note = (category: string, o: Outcome, what: string) => {
  const m = counts.get(category) ?? new Map<Outcome, number>();
  m.set(o, (m.get(o) ?? 0) + 1);
  counts.set(category, m);
  if (o !== 'ok' && o !== 'refused' && examples.length < 20) examples.push(`${category} ${o}: ${what}`);
};

function classify(r: { status: number | null; stdout: string; stderr: string; error?: Error }, expectJson: boolean): Outcome {
  if (r.status === null) return 'HANG';
  if (/\n\s+at .+:\d+:\d+\)?/.test(r.stderr)) return 'TRACE';
  if (r.status !== 0) {
    const lines = r.stderr.trim().split('\n').filter((l) => !/^(calibrate|eval|retrieval)[ :]/.test(l)); // progress lines
    return lines.length === 1 && lines[0].startsWith('aquakv: ') ? 'refused' : 'MULTILINE';
  }
  if (expectJson) {
    try {
      const j = JSON.parse(r.stdout) as { logits?: number[][] };
      if (!j.logits || j.logits.length === 0 || !j.logits.every((row) => row.every((v) => typeof v === 'number' && Number.isFinite(v)))) return 'WRONG';
    } catch {
      return 'WRONG';
    }
  }
  return 'ok';
}

const run = (args: string[], cwd?: string) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 30_000, cwd });

const work = mkdtempSync(join(tmpdir(), 'aquakv-campaign-'));
const model = makeTinyModel({ layers: 2, maxPositions: 512, headDim: 32 });
const text = join(work, 'text.txt');
writeFileSync(text, Array.from({ length: 40 }, (_, i) => `${FIXTURE_TEXT} ${i}`).join('\n\n'));

/** A model directory whose `file` is replaced by `bytes` (the other files linked). */
function variantWith(file: string, bytes: Uint8Array | string): string {
  const d = mkdtempSync(join(work, 'm-'));
  for (const f of ['config.json', 'model.safetensors', 'tokenizer.json']) {
    if (f === file) writeFileSync(join(d, f), bytes);
    else symlinkSync(join(model, f), join(d, f));
  }
  return d;
}

// 1. safetensors headers with 1–3 bytes changed
const weights = readFileSync(join(model, 'model.safetensors'));
const headerEnd = 8 + Number(weights.readBigUInt64LE(0));
fc.assert(fc.property(fc.array(fc.tuple(fc.nat(headerEnd - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 3 }), (edits) => {
  const b = Buffer.from(weights);
  for (const [at, v] of edits) b[at] = v;
  const d = variantWith('model.safetensors', b);
  note('safetensors header', classify(run(['logits', '--model', d, '--ids', '1,2', '--json']), true), JSON.stringify(edits));
  rmSync(d, { recursive: true });
  return true;
}), { numRuns: 150, seed: 11 });

// 2. config.json with one field replaced by arbitrary JSON, or removed
const config = JSON.parse(readFileSync(join(model, 'config.json'), 'utf8')) as Record<string, unknown>;
fc.assert(fc.property(fc.constantFrom(...Object.keys(config)), fc.option(fc.jsonValue({ maxDepth: 2 })), (key, value) => {
  const c = { ...config };
  if (value === null) delete c[key];
  else c[key] = value;
  const d = variantWith('config.json', JSON.stringify(c));
  note('config.json', classify(run(['logits', '--model', d, '--ids', '1,2', '--json']), true), `${key} = ${JSON.stringify(value)}`);
  rmSync(d, { recursive: true });
  return true;
}), { numRuns: 150, seed: 12 });

// 3. bad arguments and bad text files
const binary = join(work, 'binary.txt');
writeFileSync(binary, Buffer.from(Array.from({ length: 4000 }, (_, i) => (i * 37) % 256)));
const empty = join(work, 'empty.txt');
writeFileSync(empty, '   \n');
const argCases: string[][] = [
  ['generate', '--model', model, '--prompt', 'a', '--seed', '-1'], ['generate', '--model', model, '--prompt', 'a', '--top-p', '0', '--temperature', '0.7', '--max-new-tokens', '3'],
  ['generate', '--model', model, '--prompt', 'a', '--temperature', '1e-320', '--max-new-tokens', '3'], ['generate', '--model', model, '--prompt', ''],
  ['generate', '--model', model, '--prompt', 'a', '--max-new-tokens', '100000'], ['generate', '--model', '', '--prompt', 'a'], ['generate', '--model', model],
  ['logits', '--model', model, '--ids', '1,,2', '--json'], ['logits', '--model', model, '--ids', Array.from({ length: 600 }, () => '1').join(','), '--json'],
  ['logits', '--model', model, '--text', 'a'], ['eval', '--model', model, '--text', binary, '--methods', 'fp,kivi2', '--seq-len', '256'],
  ['eval', '--model', model, '--text', empty], ['eval', '--model', model, '--text', work], ['eval', '--model', model, '--text', text, '--methods', 'aquakv[bits=-1]'],
  ['eval', '--model', model, '--text', text, '--methods', 'higgs[q=higgs:2x16:g3]'], ['eval', '--model', model, '--text', text, '--methods', 'kivi[k=uniform:2:diag]'],
  ['eval', '--model', model, '--text', text, '--seq-len', '64', '--buffer', '64', '--methods', 'fp,higgs'], ['eval', '--model', model, '--text', text, '--chunk', '0'],
  ['eval', '--model', model, '--text', text, '--max-tokens', '1e40'], ['eval', '--model', model, '--text', text, '--sinks', '-3'],
  ['calibrate', '--model', model, '--data', text, '--samples', '1e9'], ['calibrate', '--model', model, '--data', text, '--seq-len', '100000'],
  ['calibrate', '--model', model, '--data', text, '--bits', 'abc'], ['calibrate', '--model', model, '--data', text, '--damp', 'NaN'],
  ['calibrate', '--model', model, '--data', text, '--out', '/nonexistent/dir/p.safetensors'], ['calibrate', '--model', model, '--data', text, '--out', work],
  ['calibrate', '--model', model, '--data', text, '--out', '/dev/full'], ['retrieval', '--model', model, '--length', '100000'], ['retrieval', '--model', model, '--distances', 'x'],
  ['grids', '--samples', '1e12'], ['grids', '--seed', '99999999999'], ['demo', '--model', model], ['demo', '--model', model, '--text', text, '--calibration-data', text, '--out', '/nonexistent/r.html'],
  ['bogus'], ['eval'], ['eval', '--text'], ['--help', 'x'],
];
for (const args of argCases) {
  const r = run(args);
  const o = classify(r, false);
  // these must be refused (or, for the sampler cases, run greedily)
  const mayRun = args.includes('--top-p') || args.includes('1e-320') || args[0] === '--help';
  note('arguments and texts', o === 'ok' && !mayRun ? 'WRONG' : o, args.join(' ').slice(0, 120));
}

// 4. predictor files: truncated, random, another model's, mutated metadata
const preds = join(work, 'p.safetensors');
const made = run(['calibrate', '--model', model, '--data', text, '--samples', '3', '--seq-len', '64', '--method', 'aquakv[q=higgs:2x16,first=higgs:2x256]', '--out', preds]);
if (made.status !== 0) throw new Error(`campaign set-up: calibrate failed: ${made.stderr}`);
const good = readFileSync(preds);
const other = makeTinyModel({ layers: 3, maxPositions: 512, headDim: 32 });
const predCases: [string, Uint8Array | null, string[]][] = [
  ['truncated', good.subarray(0, good.length - 10), []], ['half', good.subarray(0, good.length >> 1), []], ['random bytes', Uint8Array.from({ length: 5000 }, (_, i) => (i * 131) % 251), []],
  ['empty', new Uint8Array(0), []], ['another model', null, ['--model', other]], ['a directory', null, ['--predictors', work]],
];
// the info JSON sits escaped inside the header's JSON; same length, so the header length still fits
const text2 = good.toString('latin1').replace('\\"predict\\":\\"both\\"', '\\"predict\\":\\"nope\\"');
if (text2 === good.toString('latin1')) throw new Error('campaign set-up: the metadata mutation found nothing to mutate');
predCases.push(['mutated metadata', Buffer.from(text2, 'latin1'), []]);
for (const [name, bytes, extra] of predCases) {
  const p = join(work, `pred-${name.replace(/ /g, '-')}.safetensors`);
  writeFileSync(p, bytes ?? good);
  const args = ['eval', '--model', model, '--text', text, '--predictors', p, '--methods', 'aquakv[q=higgs:2x16,first=higgs:2x256]', '--seq-len', '256', '--max-tokens', '256', ...extra];
  note('predictor files', classify(run(args), false), name);
}

// 5. killed while writing predictors over an existing file: the file is the old one or a whole new one
for (const delay of [300, 800, 1500, 2500, 4000]) {
  const out = join(work, `kill-${delay}.safetensors`);
  copyFileSync(preds, out);
  const child = spawn(process.execPath, [BIN, 'calibrate', '--model', model, '--data', text, '--samples', '4', '--seq-len', '128', '--method', 'aquakv[q=higgs:2x16,first=higgs:2x256]', '--out', out], { stdio: 'ignore' });
  const exited = new Promise((r) => child.once('exit', r));
  await new Promise((r) => setTimeout(r, delay));
  child.kill('SIGKILL');
  await exited;
  const check = run(['eval', '--model', model, '--text', text, '--predictors', out, '--methods', 'aquakv[q=higgs:2x16,first=higgs:2x256]', '--seq-len', '256', '--max-tokens', '256', '--json']);
  note('killed mid-write', check.status === 0 ? 'ok' : 'PARTIAL', `killed after ${delay} ms: ${check.stderr.trim().slice(0, 200)}`);
}

// 6. a full disk: a 200 KB tmpfs holding an old predictor file; the new one cannot fit
const mnt = join(work, 'full');
mkdirSync(mnt);
let mounted = false;
try {
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=220k', 'tmpfs', mnt], { stdio: 'ignore' });
  mounted = true;
} catch {
  console.log('(full disk: skipped, this process may not mount a tmpfs)');
}
if (mounted) {
  const out = join(mnt, 'p.safetensors');
  copyFileSync(preds, out);
  writeFileSync(join(mnt, 'filler'), Buffer.alloc(Math.max(0, 220 * 1024 - statSync(out).size - 16 * 1024)));
  // enough tokens that calibration has no warning to print: the refusal is then its only line
  const r = run(['calibrate', '--model', model, '--data', text, '--samples', '12', '--seq-len', '64', '--method', 'aquakv[q=higgs:2x16,first=higgs:2x256]', '--out', out]);
  const o = classify(r, false);
  const intact = readFileSync(out).equals(good);
  note('full disk', o === 'refused' && intact ? 'refused' : o === 'ok' ? 'ok' : intact ? o : 'PARTIAL', `${r.stderr.trim().slice(0, 200)} (old file intact: ${intact})`);
  execFileSync('umount', [mnt]);
}

const outcomes: Outcome[] = ['ok', 'refused', 'TRACE', 'HANG', 'MULTILINE', 'WRONG', 'PARTIAL'];
console.log(`category              ${outcomes.map((o) => o.padStart(9)).join('')}`);
for (const [c, m] of counts) console.log(`${c.padEnd(22)}${outcomes.map((o) => String(m.get(o) ?? 0).padStart(9)).join('')}`);
const total = (o: Outcome) => [...counts.values()].reduce((s, m) => s + (m.get(o) ?? 0), 0);
console.log(`${'total'.padEnd(22)}${outcomes.map((o) => String(total(o)).padStart(9)).join('')}`);
for (const e of examples) console.log(`  ${e}`);
rmSync(work, { recursive: true, force: true });
process.exitCode = (['TRACE', 'HANG', 'MULTILINE', 'WRONG', 'PARTIAL'] as Outcome[]).some((o) => total(o) > 0) ? 1 : 0;
