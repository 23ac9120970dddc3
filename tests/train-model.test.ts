/**
 * The tools' guards, which run before any work: bad options, a missing model, and a run directory
 * that belongs to another recipe (resuming it would silently train a mix of two).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const TOOLS = resolve(fileURLToPath(import.meta.url), '../../tools');
const run = (...args: string[]) => spawnSync(process.execPath, [join(TOOLS, 'train-model.js'), ...args], { encoding: 'utf8', timeout: 30_000 });

test('train-model rejects bad options with a message, before doing any work', () => {
  const dir = mkdtempSync(join(tmpdir(), 'aquakv-run-'));
  let r = run('--run-dir', dir, '--steps=-3');
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--steps must be a non-negative integer, got "-3"/);
  r = run('--run-dir', dir, '--retrieval-share', '0.7', '--random-repeat-share', '0.5');
  assert.equal(r.status, 2);
  assert.match(r.stderr, /must be in \[0, 1\] and sum to at most 1/);
  r = run('--run-dir', dir, '--stpes', '10');
  assert.equal(r.status, 2);
  assert.match(r.stderr, /^train-model: Unknown option '--stpes'/);
  assert.doesNotMatch(r.stderr, /at .*\.js:\d+/, 'no stack trace');
  r = run('--run-dir', dir, '--layers', '1', '--warm-start-steps', '5');
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--warm-start-steps needs at least 2 layers/);
});

test('train-model resumes a run directory only with the options it was started with', () => {
  const dir = mkdtempSync(join(tmpdir(), 'aquakv-run-'));
  writeFileSync(join(dir, 'run-options.json'), JSON.stringify({ steps: '700', batch: '8', seq: '1024' }));
  const r = run('--run-dir', dir, '--steps', '700', '--batch', '4');
  assert.equal(r.status, 2);
  assert.match(r.stderr, /holds a run started with other options \(--batch 8 then, 4 now; --lr \(unset\) then, [\d.e-]+ now/);
  assert.match(r.stderr, /give another --run-dir to start afresh/);

  const legacy = mkdtempSync(join(tmpdir(), 'aquakv-run-'));
  writeFileSync(join(legacy, 'checkpoint.safetensors'), '');
  const l = run('--run-dir', legacy);
  assert.equal(l.status, 2);
  assert.match(l.stderr, /holds a checkpoint but no record of its options/);
});

test('evaluate-model reports a bad option or a missing model in one line', () => {
  const evaluate = (...args: string[]) => spawnSync(process.execPath, [join(TOOLS, 'evaluate-model.js'), ...args], { encoding: 'utf8', timeout: 30_000 });
  let r = evaluate('--samples', 'x');
  assert.equal(r.status, 2);
  assert.equal(r.stderr.trim(), "evaluate-model: --samples must be an integer ≥ 1, got 'x'");
  r = evaluate('--model', '/nonexistent-model-dir');
  assert.equal(r.status, 2);
  assert.equal(r.stderr.trim(), 'evaluate-model: model directory /nonexistent-model-dir does not exist');
});
