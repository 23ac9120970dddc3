import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync, cpSync, unlinkSync, truncateSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeTinyModel } from './fixture.js';
import { aquakv, BIN } from './run-cli.js';
import { execFileSync, spawnSync } from 'node:child_process';

const good = makeTinyModel({});

function editConfig(dir: string, fields: Record<string, unknown>): void {
  const c = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...c, ...fields }));
}

function variant(edit: (dir: string) => void): string {
  const dir = mkdtempSync(join(tmpdir(), 'aquakv-bad-'));
  cpSync(good, dir, { recursive: true });
  edit(dir);
  return dir;
}

test('logits --json prints one row of vocab_size floats per input id', () => {
  const r = aquakv('logits', '--model', good, '--ids', '1,2,3', '--json');
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out) as { ids: number[]; logits: number[][] };
  assert.deepEqual(j.ids, [1, 2, 3]);
  assert.equal(j.logits.length, 3);
  assert.ok(j.logits.every((row) => row.length === 300 && row.every(Number.isFinite)));
  const t = aquakv('logits', '--model', good, '--text', 'the people', '--json');
  assert.equal(t.code, 0, t.err);
  assert.ok((JSON.parse(t.out) as { ids: number[] }).ids.length > 0);
  // for large vocabularies: the last row only, and each row's top K
  const last = JSON.parse(aquakv('logits', '--model', good, '--ids', '1,2,3', '--json', '--last').out) as { positions: number[]; logits: number[][] };
  assert.deepEqual(last.positions, [2]);
  // (one row goes through the matrix-vector product: equal to rounding)
  assert.ok(last.logits[0].every((x, i) => Math.abs(x - j.logits[2][i]) < 1e-4));
  const top = JSON.parse(aquakv('logits', '--model', good, '--ids', '1,2,3', '--json', '--top-k', '5').out) as { logits: { ids: number[]; logits: number[] }[] };
  assert.equal(top.logits.length, 3);
  for (let t = 0; t < 3; t++) {
    const sorted = [...j.logits[t]].sort((a, b) => b - a).slice(0, 5);
    assert.deepEqual(top.logits[t].logits, sorted);
    assert.deepEqual(top.logits[t].ids.map((i) => j.logits[t][i]), sorted);
  }
  assert.match(aquakv('logits', '--model', good, '--ids', '1', '--json', '--top-k', '0').err, /--top-k must be an integer ≥ 1/);
});

test('generate streams text and reports tokens/s', () => {
  const r = aquakv('generate', '--model', good, '--prompt', 'We the people', '--max-new-tokens', '5', '--seed', '1');
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /^fp cache: [\d,]+ bytes stored for \d+ tokens \(16-bit keys and values: [\d,]+, 0\.50×\); prefill [\d.]+ tokens\/s, decode [\d.]+ tokens\/s$/m);
  assert.ok(r.out.trim().length > 0, 'the continuation is streamed on stdout');
});

const cases: [string, () => string[], RegExp][] = [
  ['missing directory', () => ['logits', '--model', '/nonexistent/m', '--ids', '1', '--json'], /model directory \/nonexistent\/m does not exist/],
  ['missing weights', () => ['logits', '--model', variant((d) => unlinkSync(join(d, 'model.safetensors'))), '--ids', '1', '--json'], /neither model.safetensors/],
  ['unsupported architecture', () => ['logits', '--model', variant((d) => {
    const c = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8'));
    c.architectures = ['GPT2LMHeadModel'];
    writeFileSync(join(d, 'config.json'), JSON.stringify(c));
  }), '--ids', '1', '--json'], /unsupported architecture "GPT2LMHeadModel"/],
  ['malformed config', () => ['logits', '--model', variant((d) => writeFileSync(join(d, 'config.json'), '{"hidden_size": 32,')), '--ids', '1', '--json'], /config.json is not valid JSON/],
  ['wrong tensor shape', () => ['logits', '--model', variant((d) => {
    const c = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8'));
    c.intermediate_size = 80;
    writeFileSync(join(d, 'config.json'), JSON.stringify(c));
  }), '--ids', '1', '--json'], /tensor model.layers.0.mlp.gate_proj.weight has shape \[72,32\], expected \[80,32\]/],
  ['missing tensor', () => ['logits', '--model', variant((d) => {
    const c = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8'));
    c.num_hidden_layers = 4;
    writeFileSync(join(d, 'config.json'), JSON.stringify(c));
  }), '--ids', '1', '--json'], /missing tensor model.layers.3.input_layernorm.weight/],
  ['truncated safetensors', () => ['logits', '--model', variant((d) => {
    const p = join(d, 'model.safetensors');
    truncateSync(p, statSync(p).size - 100);
  }), '--ids', '1', '--json'], /truncated/],
  ['fewer layers in config than in the checkpoint', () => ['logits', '--model', variant((d) => editConfig(d, { num_hidden_layers: 2 })), '--ids', '1', '--json'], /has tensors of layer 2, but config.json says num_hidden_layers = 2/],
  ['rope_theta 0', () => ['logits', '--model', variant((d) => editConfig(d, { rope_theta: 0 })), '--ids', '1', '--json'], /field "rope_theta" must be positive, got 0/],
  ['negative rms_norm_eps', () => ['logits', '--model', variant((d) => editConfig(d, { rms_norm_eps: -1e-5 })), '--ids', '1', '--json'], /field "rms_norm_eps" must be positive/],
  ['llama3 factor 0', () => ['logits', '--model', variant((d) => editConfig(d, { rope_scaling: { rope_type: 'llama3', factor: 0, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 16 } })), '--ids', '1', '--json'], /field "factor" must be positive/],
  ['sliding window bounds the context', () => ['logits', '--model', variant((d) => editConfig(d, { architectures: ['MistralForCausalLM'], sliding_window: 2 })), '--ids', '1,2,3', '--json'], /3 tokens exceed the model's context of 2/],
  ['non-finite weight', () => ['logits', '--model', variant((d) => {
    const p = join(d, 'model.safetensors');
    const b = readFileSync(p);
    b.writeFloatLE(NaN, b.length - 4); // the last value of the last tensor
    writeFileSync(p, b);
  }), '--ids', '1', '--json'], /holds NaN at index \d+: a checkpoint's weights must be finite/],
  ['id outside vocabulary', () => ['logits', '--model', good, '--ids', '1,300', '--json'], /token id 300 is outside the vocabulary \[0, 300\)/],
  ['non-integer id', () => ['logits', '--model', good, '--ids', '1,x', '--json'], /'x' is not an integer token id/],
  ['unknown option', () => ['generate', '--model', good, '--prompt', 'a', '--bogus'], /Unknown option '--bogus'/],
  ['unknown command', () => ['frobnicate'], /unknown command 'frobnicate'/],
  ['negative number as an option value', () => ['generate', '--model', good, '--prompt', 'a', '--seed', '-1'], /Option '--seed' argument is ambiguous\. Did you forget/],
  ['unbounded samples', () => ['grids', '--samples', '1e12'], /--samples must be at most 100000000/],
  ['empty --model (an unset shell variable)', () => ['logits', '--model', '', '--ids', '1', '--json'], /--model is empty/],
  ['a directory as --predictors', () => ['eval', '--model', good, '--text', join(good, 'config.json'), '--predictors', good, '--methods', 'aquakv[q=higgs:2x16,first=higgs:2x256]'], /is a directory/],
  ['windows no longer than a block', () => ['eval', '--model', good, '--text', join(good, 'tokenizer.json'), '--seq-len', '64', '--buffer', '64', '--methods', 'fp,kivi2'], /windows of 64 tokens never read a compressed block/],
  ['a FIFO as config.json (would hang a reader)', () => ['logits', '--model', variant((d) => {
    unlinkSync(join(d, 'config.json'));
    execFileSync('mkfifo', [join(d, 'config.json')]);
  }), '--ids', '1', '--json'], /config.json: it is not a regular file/],
  ['a FIFO as model.safetensors', () => ['logits', '--model', variant((d) => {
    unlinkSync(join(d, 'model.safetensors'));
    execFileSync('mkfifo', [join(d, 'model.safetensors')]);
  }), '--ids', '1', '--json'], /model.safetensors: it is not a regular file/],
  ['a directory as model.safetensors', () => ['logits', '--model', variant((d) => {
    unlinkSync(join(d, 'model.safetensors'));
    mkdirSync(join(d, 'model.safetensors'));
  }), '--ids', '1', '--json'], /model.safetensors: it is a directory/],
  ['a non-string shard in the index', () => ['logits', '--model', variant((d) => {
    writeFileSync(join(d, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { 'model.norm.weight': 7 } }));
  }), '--ids', '1', '--json'], /weight_map maps model.norm.weight to 7, not a file name/],
  ['a seed past 32 bits', () => ['generate', '--model', good, '--prompt', 'a', '--seed', '4294967296'], /--seed must be at most 4294967295/],
  ['a device as --out', () => ['calibrate', '--model', good, '--data', join(good, 'tokenizer.json'), '--method', 'aquakv[q=higgs:2x16,first=higgs:2x256]', '--out', '/dev/null'], /cannot write \/dev\/null: it is not a regular file/],
  ['bad number', () => ['generate', '--model', good, '--prompt', 'a', '--max-new-tokens', 'ten'], /--max-new-tokens must be an integer/],
];

for (const [name, args, re] of cases) {
  test(`CLI error: ${name} → one clear line, exit 1, no stack trace`, () => {
    const r = aquakv(...args());
    assert.notEqual(r.code, null, 'no hang (killed by the timeout)');
    assert.equal(r.code, 1);
    assert.match(r.err, re);
    assert.equal(r.err.trim().split('\n').length, 1, r.err);
    assert.doesNotMatch(r.err, /\n\s+at /);
    assert.equal(r.out, '');
  });
}

test('a reader that closes the pipe early ends the command quietly', () => {
  const r = spawnSync('sh', ['-c', `"${process.execPath}" "${BIN}" logits --model "${good}" --ids 1,2,3 --json | head -c 10`], { encoding: 'utf8' });
  assert.equal(r.stdout.length, 10);
  assert.equal(r.stderr, '', 'no EPIPE trace');
});

test('--version, and help for every command with every option, its meaning and its default', async () => {
  const v = aquakv('--version');
  assert.equal(v.code, 0);
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  assert.equal(v.out.trim(), `aquakv ${pkg.version}`);
  const { commands } = await import('../src/cli/commands.js');
  for (const [name, cmd] of Object.entries(commands)) {
    for (const args of [['help', name], [name, '--help']]) {
      const r = aquakv(...args);
      assert.equal(r.code, 0, r.err);
      assert.match(r.out, new RegExp(`^usage: aquakv ${name} `));
      for (const [option, spec] of Object.entries(cmd.options)) {
        const line = r.out.split('\n').find((l) => new RegExp(`^\\s+--${option}(\\s|$)`).test(l));
        assert.ok(line && line.includes(spec.help), `${name} --${option} is described`);
        if (spec.shownDefault !== undefined) assert.ok(line!.includes(`(default: ${spec.shownDefault})`), `${name} --${option} shows its default`);
      }
    }
  }
});

test('generate runs through any cache method and reports its bytes, as text or JSON', () => {
  const r = aquakv('generate', '--model', good, '--prompt', 'the people of the united states', '--method', 'kivi2', '--buffer', '4', '--sinks', '1',
    '--max-new-tokens', '6', '--temperature', '0', '--json');
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out) as { method: string; ids: number[]; storedBytes: number; fp16Bytes: number; bitsPerValue: number; cachedTokens: number };
  assert.equal(j.method, 'kivi2');
  assert.equal(j.ids.length, 6);
  assert.ok(j.storedBytes > 0 && j.storedBytes < j.fp16Bytes, JSON.stringify(j));
  assert.ok(j.bitsPerValue > 2 && j.bitsPerValue < 8);
  const t = aquakv('generate', '--model', good, '--prompt', 'the people', '--method', 'higgs', '--max-new-tokens', '3');
  assert.equal(t.code, 0, t.err);
  assert.match(t.err, /^higgs cache: [\d,]+ bytes stored for \d+ tokens \(16-bit keys and values: [\d,]+, [\d.]+×\); prefill [\d.]+ tokens\/s, decode [\d.]+ tokens\/s$/m);
});

test('Ctrl-C ends a command with exit code 130', async () => {
  const { spawn } = await import('node:child_process');
  const child = spawn(process.execPath, [BIN, 'grids', '--samples', '50000000'], { stdio: ['ignore', 'pipe', 'pipe'] });
  await new Promise((r) => setTimeout(r, 1500));
  child.kill('SIGINT');
  const code = await new Promise((r) => child.once('exit', (c) => r(c)));
  assert.equal(code, 130);
});
